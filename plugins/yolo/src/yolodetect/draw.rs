// SPDX-License-Identifier: MIT OR Apache-2.0
//! Draws boxes and labels onto raw frames, for viewers (`draw=true`).

use super::letterbox::PixelLayout;
use super::postprocess::Detection;

const THICKNESS: usize = 2;
const GLYPH_W: usize = 5;
const GLYPH_H: usize = 7;
const TEXT_SCALE: usize = 2;

/// A 5x7 font: each glyph is 7 rows of 5 bits (bit 4 = leftmost column).
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        'A' => [14, 17, 17, 31, 17, 17, 17],
        'B' => [30, 17, 17, 30, 17, 17, 30],
        'C' => [14, 17, 16, 16, 16, 17, 14],
        'D' => [30, 17, 17, 17, 17, 17, 30],
        'E' => [31, 16, 16, 30, 16, 16, 31],
        'F' => [31, 16, 16, 30, 16, 16, 16],
        'G' => [14, 17, 16, 23, 17, 17, 15],
        'H' => [17, 17, 17, 31, 17, 17, 17],
        'I' => [14, 4, 4, 4, 4, 4, 14],
        'J' => [7, 2, 2, 2, 2, 18, 12],
        'K' => [17, 18, 20, 24, 20, 18, 17],
        'L' => [16, 16, 16, 16, 16, 16, 31],
        'M' => [17, 27, 21, 21, 17, 17, 17],
        'N' => [17, 17, 25, 21, 19, 17, 17],
        'O' => [14, 17, 17, 17, 17, 17, 14],
        'P' => [30, 17, 17, 30, 16, 16, 16],
        'Q' => [14, 17, 17, 17, 21, 18, 13],
        'R' => [30, 17, 17, 30, 20, 18, 17],
        'S' => [15, 16, 16, 14, 1, 1, 30],
        'T' => [31, 4, 4, 4, 4, 4, 4],
        'U' => [17, 17, 17, 17, 17, 17, 14],
        'V' => [17, 17, 17, 17, 17, 10, 4],
        'W' => [17, 17, 17, 21, 21, 21, 10],
        'X' => [17, 17, 10, 4, 10, 17, 17],
        'Y' => [17, 17, 10, 4, 4, 4, 4],
        'Z' => [31, 1, 2, 4, 8, 16, 31],
        '0' => [14, 17, 19, 21, 25, 17, 14],
        '1' => [4, 12, 4, 4, 4, 4, 14],
        '2' => [14, 17, 1, 2, 4, 8, 31],
        '3' => [31, 2, 4, 2, 1, 17, 14],
        '4' => [2, 6, 10, 18, 31, 2, 2],
        '5' => [31, 16, 30, 1, 1, 17, 14],
        '6' => [6, 8, 16, 30, 17, 17, 14],
        '7' => [31, 1, 2, 4, 8, 8, 8],
        '8' => [14, 17, 17, 14, 17, 17, 14],
        '9' => [14, 17, 17, 15, 1, 2, 12],
        '.' => [0, 0, 0, 0, 0, 12, 12],
        '%' => [24, 25, 2, 4, 8, 19, 3],
        '-' => [0, 0, 0, 31, 0, 0, 0],
        _ => [0; 7],
    }
}

/// A colour per class, bright enough to see on video.
pub fn class_colour(class_id: usize) -> [u8; 3] {
    const PALETTE: [[u8; 3]; 8] = [
        [255, 56, 56],
        [255, 157, 151],
        [255, 112, 31],
        [255, 178, 29],
        [207, 210, 49],
        [72, 249, 10],
        [26, 147, 52],
        [0, 212, 187],
    ];
    PALETTE[class_id % PALETTE.len()]
}

/// One writable frame.
pub struct Canvas<'a> {
    pub layout: PixelLayout,
    pub width: usize,
    pub height: usize,
    pub planes: [&'a mut [u8]; 3],
    pub strides: [usize; 3],
}

impl Canvas<'_> {
    fn set(&mut self, x: usize, y: usize, rgb: [u8; 3]) {
        if x >= self.width || y >= self.height {
            return;
        }
        match self.layout {
            PixelLayout::Packed { bytes, r, g, b } => {
                let at = y * self.strides[0] + x * bytes;
                let px = &mut self.planes[0][at..at + bytes];
                (px[r], px[g], px[b]) = (rgb[0], rgb[1], rgb[2]);
            }
            PixelLayout::I420 | PixelLayout::Nv12 => {
                // BT.601 limited range: good enough for an overlay.
                let [r, g, b] = rgb.map(f32::from);
                let luma = 16.0 + 0.257 * r + 0.504 * g + 0.098 * b;
                let u = 128.0 - 0.148 * r - 0.291 * g + 0.439 * b;
                let v = 128.0 + 0.439 * r - 0.368 * g - 0.071 * b;
                self.planes[0][y * self.strides[0] + x] = luma as u8;
                let (cx, cy) = (x / 2, y / 2);
                if self.layout == PixelLayout::I420 {
                    self.planes[1][cy * self.strides[1] + cx] = u as u8;
                    self.planes[2][cy * self.strides[2] + cx] = v as u8;
                } else {
                    let at = cy * self.strides[1] + cx * 2;
                    self.planes[1][at] = u as u8;
                    self.planes[1][at + 1] = v as u8;
                }
            }
        }
    }

    fn fill(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, rgb: [u8; 3]) {
        for y in y0..y1.min(self.height) {
            for x in x0..x1.min(self.width) {
                self.set(x, y, rgb);
            }
        }
    }

    /// A box outline and, above it (or inside when at the top), its label on a tag.
    pub fn draw(&mut self, d: &Detection, label: &str) {
        let rgb = class_colour(d.class_id);
        let (x1, y1) = (d.x1.max(0.0) as usize, d.y1.max(0.0) as usize);
        let (x2, y2) = (d.x2.max(0.0) as usize, d.y2.max(0.0) as usize);
        self.fill(x1, y1, x2 + 1, y1 + THICKNESS, rgb);
        self.fill(x1, y2.saturating_sub(THICKNESS - 1), x2 + 1, y2 + 1, rgb);
        self.fill(x1, y1, x1 + THICKNESS, y2 + 1, rgb);
        self.fill(x2.saturating_sub(THICKNESS - 1), y1, x2 + 1, y2 + 1, rgb);

        let text = format!("{label} {:.0}%", d.score * 100.0);
        let advance = (GLYPH_W + 1) * TEXT_SCALE;
        let tag_h = (GLYPH_H + 2) * TEXT_SCALE;
        let tag_y = if y1 >= tag_h { y1 - tag_h } else { y1 };
        self.fill(
            x1,
            tag_y,
            x1 + advance * text.chars().count() + TEXT_SCALE,
            tag_y + tag_h,
            rgb,
        );
        for (i, c) in text.chars().enumerate() {
            let rows = glyph(c);
            let gx = x1 + TEXT_SCALE + i * advance;
            for (row, bits) in rows.iter().enumerate() {
                for col in 0..GLYPH_W {
                    if bits & (1 << (GLYPH_W - 1 - col)) != 0 {
                        let (px, py) =
                            (gx + col * TEXT_SCALE, tag_y + TEXT_SCALE + row * TEXT_SCALE);
                        self.fill(px, py, px + TEXT_SCALE, py + TEXT_SCALE, [0, 0, 0]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_outline_is_drawn_in_the_class_colour() {
        let (w, h) = (64, 48);
        let mut rgb = vec![0u8; w * h * 3];
        let (mut u, mut v) = (vec![], vec![]);
        let mut canvas = Canvas {
            layout: PixelLayout::Packed {
                bytes: 3,
                r: 0,
                g: 1,
                b: 2,
            },
            width: w,
            height: h,
            planes: [&mut rgb, &mut u, &mut v],
            strides: [w * 3, 0, 0],
        };
        let d = Detection {
            x1: 10.0,
            y1: 30.0,
            x2: 40.0,
            y2: 45.0,
            score: 0.9,
            class_id: 0,
        };
        canvas.draw(&d, "ball");
        let px = |x: usize, y: usize| &rgb[(y * w + x) * 3..(y * w + x) * 3 + 3];
        assert_eq!(px(25, 45), &class_colour(0)[..], "bottom edge");
        assert_eq!(px(10, 40), &class_colour(0)[..], "left edge");
        assert_eq!(px(25, 40), &[0, 0, 0][..], "inside stays untouched");
    }
}
