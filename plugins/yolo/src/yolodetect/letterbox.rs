// SPDX-License-Identifier: MIT OR Apache-2.0
//! Letterbox, colour conversion and normalisation in one pass, from a raw video frame
//! straight into the model's `[1, 3, H, W]` RGB float input; and mapping boxes back.
//!
//! The geometry (shared with `models/reference.py`): r = min(Wm / W, Hm / H), the frame is
//! resized to round(W r) x round(H r) with bilinear interpolation at half-pixel centres
//! (as OpenCV's INTER_LINEAR), centred, and the rest is padded with 114.

use super::postprocess::Detection;

const PAD: f32 = 114.0 / 255.0;

/// Where the frame lands inside the model input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Letterbox {
    pub frame_width: usize,
    pub frame_height: usize,
    pub model_width: usize,
    pub model_height: usize,
    pub width: usize,
    pub height: usize,
    pub left: usize,
    pub top: usize,
}

impl Letterbox {
    pub fn new(
        frame_width: usize,
        frame_height: usize,
        model_width: usize,
        model_height: usize,
    ) -> Self {
        let r = (model_width as f64 / frame_width as f64)
            .min(model_height as f64 / frame_height as f64);
        let width = ((frame_width as f64 * r + 0.5).floor() as usize).clamp(1, model_width);
        let height = ((frame_height as f64 * r + 0.5).floor() as usize).clamp(1, model_height);
        Letterbox {
            frame_width,
            frame_height,
            model_width,
            model_height,
            width,
            height,
            left: (model_width - width) / 2,
            top: (model_height - height) / 2,
        }
    }

    /// Maps a box from model-input pixels to frame pixels, clipped to the frame.
    pub fn to_frame(&self, d: &Detection) -> Detection {
        let sx = self.width as f32 / self.frame_width as f32;
        let sy = self.height as f32 / self.frame_height as f32;
        let (fw, fh) = (self.frame_width as f32, self.frame_height as f32);
        Detection {
            x1: ((d.x1 - self.left as f32) / sx).clamp(0.0, fw),
            y1: ((d.y1 - self.top as f32) / sy).clamp(0.0, fh),
            x2: ((d.x2 - self.left as f32) / sx).clamp(0.0, fw),
            y2: ((d.y2 - self.top as f32) / sy).clamp(0.0, fh),
            ..*d
        }
    }
}

/// Source index pair and weight of the second, for one output coordinate.
#[derive(Clone, Copy, Debug)]
struct Tap {
    first: usize,
    second: usize,
    weight: f32,
}

/// Bilinear taps for `output` samples covering `input` samples, half-pixel centres.
fn taps(input: usize, output: usize) -> Vec<Tap> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|o| {
            let s = ((o as f32 + 0.5) * scale - 0.5).clamp(0.0, (input - 1) as f32);
            let first = s.floor() as usize;
            Tap {
                first,
                second: (first + 1).min(input - 1),
                weight: s - first as f32,
            }
        })
        .collect()
}

/// How the pixels of a raw format are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelLayout {
    /// One plane, `stride` bytes per pixel, red/green/blue at these byte offsets.
    Packed {
        bytes: usize,
        r: usize,
        g: usize,
        b: usize,
    },
    /// Y plane, then U and V planes at half resolution.
    I420,
    /// Y plane, then interleaved UV at half resolution.
    Nv12,
}

impl PixelLayout {
    pub fn of(format: gst_video::VideoFormat) -> Option<PixelLayout> {
        use gst_video::VideoFormat as F;
        let packed = |bytes, r, g, b| Some(PixelLayout::Packed { bytes, r, g, b });
        match format {
            F::Rgb => packed(3, 0, 1, 2),
            F::Bgr => packed(3, 2, 1, 0),
            F::Rgbx | F::Rgba => packed(4, 0, 1, 2),
            F::Bgrx | F::Bgra => packed(4, 2, 1, 0),
            F::Xrgb | F::Argb => packed(4, 1, 2, 3),
            F::Xbgr | F::Abgr => packed(4, 3, 2, 1),
            F::I420 => Some(PixelLayout::I420),
            F::Nv12 => Some(PixelLayout::Nv12),
            _ => None,
        }
    }
}

/// YUV to RGB, on 0..255 values.
#[derive(Clone, Copy, Debug)]
pub struct YuvMatrix {
    y_offset: f32,
    y_scale: f32,
    uv_scale: f32,
    rv: f32,
    gu: f32,
    gv: f32,
    bu: f32,
}

impl YuvMatrix {
    /// `bt709` picks BT.709 over BT.601; `full_range` 0..255 luma over 16..235.
    pub fn new(bt709: bool, full_range: bool) -> Self {
        let (kr, kb) = if bt709 {
            (0.2126f32, 0.0722f32)
        } else {
            (0.299, 0.114)
        };
        let kg = 1.0 - kr - kb;
        let (y_offset, y_scale, uv_scale) = if full_range {
            (0.0, 1.0, 1.0)
        } else {
            (16.0, 255.0 / 219.0, 255.0 / 224.0)
        };
        YuvMatrix {
            y_offset,
            y_scale,
            uv_scale,
            rv: 2.0 * (1.0 - kr),
            gu: -2.0 * (1.0 - kb) * kb / kg,
            gv: -2.0 * (1.0 - kr) * kr / kg,
            bu: 2.0 * (1.0 - kb),
        }
    }

    /// [`YuvMatrix::rgb`] over whole rows, times `scale`; written so that it vectorises.
    #[inline(always)]
    fn rows_to_rgb(&self, [y, u, v]: [&[f32]; 3], [r, g, b]: [&mut [f32]; 3], scale: f32) {
        let n = r
            .len()
            .min(g.len())
            .min(b.len())
            .min(y.len())
            .min(u.len())
            .min(v.len());
        let (y, u, v) = (&y[..n], &u[..n], &v[..n]);
        let (r, g, b) = (&mut r[..n], &mut g[..n], &mut b[..n]);
        for i in 0..n {
            let [red, green, blue] = self.rgb(y[i], u[i], v[i]);
            r[i] = red * scale;
            g[i] = green * scale;
            b[i] = blue * scale;
        }
    }

    #[inline(always)]
    fn rgb(&self, y: f32, u: f32, v: f32) -> [f32; 3] {
        let y = (y - self.y_offset) * self.y_scale;
        let u = (u - 128.0) * self.uv_scale;
        let v = (v - 128.0) * self.uv_scale;
        [
            (y + self.rv * v).clamp(0.0, 255.0),
            (y + self.gu * u + self.gv * v).clamp(0.0, 255.0),
            (y + self.bu * u).clamp(0.0, 255.0),
        ]
    }
}

/// One frame's planes as byte slices with their strides.
pub struct Planes<'a> {
    pub data: [&'a [u8]; 3],
    pub strides: [usize; 3],
}

/// Prepared resampling for one frame size, format and model size.
///
/// [`Preprocessor::fill`] resamples separably: each output row first blends its two source
/// rows over the whole row (a straight loop the compiler vectorises), then picks and blends
/// columns, then converts colour on whole rows. Built once more for AVX2 and AVX-512 and
/// chosen at run time, it runs several times faster than [`Preprocessor::fill_scalar`],
/// the per-pixel version kept as the reference it is tested and measured against.
pub struct Preprocessor {
    pub letterbox: Letterbox,
    layout: PixelLayout,
    matrix: YuvMatrix,
    xs: Vec<Tap>,
    ys: Vec<Tap>,
    chroma_xs: Vec<Tap>,
    chroma_ys: Vec<Tap>,
    simd: Simd,
}

/// The widest vector instructions this CPU has that the fast path was built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Simd {
    Avx512,
    Avx2,
    Baseline,
}

impl Simd {
    pub fn detect() -> Simd {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
            {
                return Simd::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Simd::Avx2;
            }
        }
        Simd::Baseline
    }
}

impl Preprocessor {
    pub fn new(letterbox: Letterbox, layout: PixelLayout, matrix: YuvMatrix) -> Self {
        let lb = &letterbox;
        let half = |n: usize| n.div_ceil(2);
        Preprocessor {
            xs: taps(lb.frame_width, lb.width),
            ys: taps(lb.frame_height, lb.height),
            chroma_xs: taps(half(lb.frame_width), lb.width),
            chroma_ys: taps(half(lb.frame_height), lb.height),
            letterbox,
            layout,
            matrix,
            simd: Simd::detect(),
        }
    }

    /// Runs the fast path with the given instructions (no wider than [`Simd::detect`]'s).
    pub fn with_simd(mut self, simd: Simd) -> Self {
        let widest = Simd::detect();
        let rank = |s: Simd| match s {
            Simd::Baseline => 0,
            Simd::Avx2 => 1,
            Simd::Avx512 => 2,
        };
        self.simd = if rank(simd) <= rank(widest) {
            simd
        } else {
            widest
        };
        self
    }

    pub fn simd(&self) -> Simd {
        self.simd
    }

    /// Fills `tensor` (3 x Hm x Wm, RGB, 0..1) from the frame: padding and picture.
    pub fn fill(&self, planes: &Planes<'_>, tensor: &mut [f32]) {
        self.pad(tensor);
        self.fill_picture(planes, tensor);
    }

    /// Paints the letterbox padding, which no frame changes: once per tensor and caps.
    pub fn pad(&self, tensor: &mut [f32]) {
        let lb = &self.letterbox;
        let plane_size = lb.model_width * lb.model_height;
        assert_eq!(tensor.len(), 3 * plane_size, "tensor size");
        for channel in tensor.chunks_exact_mut(plane_size) {
            pad_margins(channel, lb);
        }
    }

    /// Writes the picture area of `tensor` from the frame; the padding is left as it is.
    pub fn fill_picture(&self, planes: &Planes<'_>, tensor: &mut [f32]) {
        match self.simd {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Simd::detect` saw these features on this CPU (`with_simd` never
            // asks for more than it saw).
            Simd::Avx512 => unsafe { self.fill_avx512(planes, tensor) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Simd::Avx2 => unsafe { self.fill_avx2(planes, tensor) },
            _ => self.fill_rows(planes, tensor),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
    unsafe fn fill_avx512(&self, planes: &Planes<'_>, tensor: &mut [f32]) {
        self.fill_rows(planes, tensor)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn fill_avx2(&self, planes: &Planes<'_>, tensor: &mut [f32]) {
        self.fill_rows(planes, tensor)
    }

    /// The fast path; inlined into each `target_feature` wrapper so that every loop in it is
    /// compiled for that wrapper's instructions.
    #[inline(always)]
    fn fill_rows(&self, planes: &Planes<'_>, tensor: &mut [f32]) {
        let lb = &self.letterbox;
        let plane_size = lb.model_width * lb.model_height;
        assert_eq!(tensor.len(), 3 * plane_size, "tensor size");
        let (red, rest) = tensor.split_at_mut(plane_size);
        let (green, blue) = rest.split_at_mut(plane_size);
        let scale = 1.0 / 255.0;
        match self.layout {
            PixelLayout::Packed { bytes, r, g, b } => {
                let stride = planes.strides[0];
                let mut blended = vec![0.0f32; lb.frame_width * bytes];
                for (oy, ty) in self.ys.iter().enumerate() {
                    let line = |y: usize| &planes.data[0][y * stride..y * stride + blended.len()];
                    blend_rows(line(ty.first), line(ty.second), ty.weight, &mut blended);
                    let row = (lb.top + oy) * lb.model_width + lb.left;
                    for (channel, offset) in [(&mut *red, r), (&mut *green, g), (&mut *blue, b)] {
                        let out = &mut channel[row..row + lb.width];
                        blend_columns(&blended, &self.xs, bytes, offset, scale, out);
                    }
                }
            }
            PixelLayout::I420 | PixelLayout::Nv12 => {
                let chroma_width = lb.frame_width.div_ceil(2);
                let mut blended_y = vec![0.0f32; lb.frame_width];
                // I420: U then V, one plane each; NV12: one plane of interleaved U, V.
                let (chroma_planes, step): (&[usize], usize) = if self.layout == PixelLayout::I420 {
                    (&[1, 2], 1)
                } else {
                    (&[1], 2)
                };
                let mut blended_uv = vec![vec![0.0f32; chroma_width * step]; chroma_planes.len()];
                let mut luma = vec![0.0f32; lb.width];
                let mut u = vec![0.0f32; lb.width];
                let mut v = vec![0.0f32; lb.width];
                for (oy, (ty, cy)) in self.ys.iter().zip(&self.chroma_ys).enumerate() {
                    let line = |p: usize, y: usize, len: usize| {
                        let stride = planes.strides[p];
                        &planes.data[p][y * stride..y * stride + len]
                    };
                    let n = lb.frame_width;
                    blend_rows(
                        line(0, ty.first, n),
                        line(0, ty.second, n),
                        ty.weight,
                        &mut blended_y,
                    );
                    blend_columns(&blended_y, &self.xs, 1, 0, 1.0, &mut luma);
                    for (&p, blended) in chroma_planes.iter().zip(&mut blended_uv) {
                        let n = blended.len();
                        blend_rows(
                            line(p, cy.first, n),
                            line(p, cy.second, n),
                            cy.weight,
                            blended,
                        );
                    }
                    if self.layout == PixelLayout::I420 {
                        blend_columns(&blended_uv[0], &self.chroma_xs, 1, 0, 1.0, &mut u);
                        blend_columns(&blended_uv[1], &self.chroma_xs, 1, 0, 1.0, &mut v);
                    } else {
                        blend_columns(&blended_uv[0], &self.chroma_xs, 2, 0, 1.0, &mut u);
                        blend_columns(&blended_uv[0], &self.chroma_xs, 2, 1, 1.0, &mut v);
                    }
                    let row = (lb.top + oy) * lb.model_width + lb.left;
                    self.matrix.rows_to_rgb(
                        [&luma, &u, &v],
                        [
                            &mut red[row..row + lb.width],
                            &mut green[row..row + lb.width],
                            &mut blue[row..row + lb.width],
                        ],
                        scale,
                    );
                }
            }
        }
    }

    /// The per-pixel reference: the same result as [`Preprocessor::fill`] to float rounding.
    pub fn fill_scalar(&self, planes: &Planes<'_>, tensor: &mut [f32]) {
        let lb = &self.letterbox;
        let plane_size = lb.model_width * lb.model_height;
        assert_eq!(tensor.len(), 3 * plane_size, "tensor size");
        tensor.fill(PAD);
        let (red, rest) = tensor.split_at_mut(plane_size);
        let (green, blue) = rest.split_at_mut(plane_size);
        let lerp = |a: f32, b: f32, w: f32| a + (b - a) * w;
        let scale = 1.0 / 255.0;

        for (oy, ty) in self.ys.iter().enumerate() {
            let row = (lb.top + oy) * lb.model_width + lb.left;
            let (red, green, blue) = (
                &mut red[row..row + lb.width],
                &mut green[row..row + lb.width],
                &mut blue[row..row + lb.width],
            );
            match self.layout {
                PixelLayout::Packed { bytes, r, g, b } => {
                    let stride = planes.strides[0];
                    let line0 = &planes.data[0][ty.first * stride..];
                    let line1 = &planes.data[0][ty.second * stride..];
                    for (ox, tx) in self.xs.iter().enumerate() {
                        let (p0, p1) = (tx.first * bytes, tx.second * bytes);
                        let sample = |c: usize| {
                            let top = lerp(line0[p0 + c] as f32, line0[p1 + c] as f32, tx.weight);
                            let bottom =
                                lerp(line1[p0 + c] as f32, line1[p1 + c] as f32, tx.weight);
                            lerp(top, bottom, ty.weight) * scale
                        };
                        red[ox] = sample(r);
                        green[ox] = sample(g);
                        blue[ox] = sample(b);
                    }
                }
                PixelLayout::I420 | PixelLayout::Nv12 => {
                    let cy = &self.chroma_ys[oy];
                    let ys = planes.strides[0];
                    let y0 = &planes.data[0][ty.first * ys..];
                    let y1 = &planes.data[0][ty.second * ys..];
                    // A chroma sample from plane `p`, `step` bytes per sample, at `offset`.
                    let chroma = |p: usize, step: usize, offset: usize, cx: &Tap| {
                        let stride = planes.strides[p];
                        let l0 = &planes.data[p][cy.first * stride..];
                        let l1 = &planes.data[p][cy.second * stride..];
                        let (a, b) = (cx.first * step + offset, cx.second * step + offset);
                        lerp(
                            lerp(l0[a] as f32, l0[b] as f32, cx.weight),
                            lerp(l1[a] as f32, l1[b] as f32, cx.weight),
                            cy.weight,
                        )
                    };
                    for (ox, tx) in self.xs.iter().enumerate() {
                        let luma = lerp(
                            lerp(y0[tx.first] as f32, y0[tx.second] as f32, tx.weight),
                            lerp(y1[tx.first] as f32, y1[tx.second] as f32, tx.weight),
                            ty.weight,
                        );
                        let cx = &self.chroma_xs[ox];
                        let (u, v) = if self.layout == PixelLayout::I420 {
                            (chroma(1, 1, 0, cx), chroma(2, 1, 0, cx))
                        } else {
                            (chroma(1, 2, 0, cx), chroma(1, 2, 1, cx))
                        };
                        let [r, g, b] = self.matrix.rgb(luma, u, v);
                        red[ox] = r * scale;
                        green[ox] = g * scale;
                        blue[ox] = b * scale;
                    }
                }
            }
        }
    }
}

/// Paints the letterbox padding of one channel: whole rows above and below the picture,
/// and the columns left and right of it.
fn pad_margins(channel: &mut [f32], lb: &Letterbox) {
    let w = lb.model_width;
    channel[..lb.top * w].fill(PAD);
    channel[(lb.top + lb.height) * w..].fill(PAD);
    if lb.width < w {
        for row in channel[lb.top * w..(lb.top + lb.height) * w].chunks_exact_mut(w) {
            row[..lb.left].fill(PAD);
            row[lb.left + lb.width..].fill(PAD);
        }
    }
}

/// `out = top + (bottom - top) * weight`, element-wise over a row of bytes.
#[inline(always)]
fn blend_rows(top: &[u8], bottom: &[u8], weight: f32, out: &mut [f32]) {
    for ((out, &a), &b) in out.iter_mut().zip(top).zip(bottom) {
        let a = a as f32;
        *out = a + (b as f32 - a) * weight;
    }
}

/// Picks and blends the two columns of each tap from a blended row of interleaved samples
/// (`step` per pixel, this channel at `offset`), times `scale`.
#[inline(always)]
fn blend_columns(
    row: &[f32],
    taps: &[Tap],
    step: usize,
    offset: usize,
    scale: f32,
    out: &mut [f32],
) {
    let n = out.len().min(taps.len());
    let (out, taps) = (&mut out[..n], &taps[..n]);
    // Taps are ascending, so the last one holds the highest index.
    let Some(last) = taps.last() else { return };
    assert!(
        last.second * step + offset < row.len(),
        "taps beyond the row"
    );
    for (out, tap) in out.iter_mut().zip(taps) {
        // SAFETY: `first <= second` for every tap, both ascending, and the highest index is
        // within the row (asserted above). Unchecked, the loop compiles to vector gathers.
        let (a, b) = unsafe {
            (
                *row.get_unchecked(tap.first * step + offset),
                *row.get_unchecked(tap.second * step + offset),
            )
        };
        *out = (a + (b - a) * tap.weight) * scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_geometry_for_landscape_portrait_square_and_odd_frames() {
        let lb = Letterbox::new(1920, 1080, 640, 640);
        assert_eq!((lb.width, lb.height, lb.left, lb.top), (640, 360, 0, 140));
        let lb = Letterbox::new(480, 640, 640, 640);
        assert_eq!((lb.width, lb.height, lb.left, lb.top), (480, 640, 80, 0));
        let lb = Letterbox::new(333, 517, 320, 320);
        // r = 320/517; 333 r = 206.1
        assert_eq!((lb.width, lb.height, lb.left, lb.top), (206, 320, 57, 0));
        let lb = Letterbox::new(100, 100, 320, 320);
        assert_eq!((lb.width, lb.height, lb.left, lb.top), (320, 320, 0, 0));
    }

    #[test]
    fn boxes_map_back_to_frame_pixels_and_are_clipped() {
        let lb = Letterbox::new(1920, 1080, 640, 640);
        let d = Detection {
            x1: 320.0,
            y1: 140.0,
            x2: 640.0,
            y2: 320.0,
            score: 1.0,
            class_id: 0,
        };
        let f = lb.to_frame(&d);
        assert_eq!((f.x1, f.y1, f.x2, f.y2), (960.0, 0.0, 1920.0, 540.0));
        let outside = Detection {
            x1: -10.0,
            y1: 0.0,
            x2: 700.0,
            y2: 700.0,
            ..d
        };
        let f = lb.to_frame(&outside);
        assert_eq!((f.x1, f.y1, f.x2, f.y2), (0.0, 0.0, 1920.0, 1080.0));
    }

    /// Deterministic noise (xorshift), so the frames exercise every blend weight.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn the_fast_path_equals_the_scalar_reference_within_one_level() {
        let layouts = [
            (
                PixelLayout::Packed {
                    bytes: 3,
                    r: 0,
                    g: 1,
                    b: 2,
                },
                "RGB",
            ),
            (
                PixelLayout::Packed {
                    bytes: 4,
                    r: 2,
                    g: 1,
                    b: 0,
                },
                "BGRx",
            ),
            (PixelLayout::I420, "I420"),
            (PixelLayout::Nv12, "NV12"),
        ];
        // Down 2x, down by an odd ratio, up, portrait, odd sizes, and padded strides.
        let sizes: [(usize, usize, usize); 5] = [
            (1280, 720, 640),
            (1920, 1080, 320),
            (333, 517, 320),
            (100, 60, 320),
            (7, 5, 32),
        ];
        for simd in [Simd::Baseline, Simd::Avx2, Simd::Avx512] {
            for &(layout, name) in &layouts {
                for &(w, h, model) in &sizes {
                    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
                    let pad = 24;
                    let (strides, lens) = match layout {
                        PixelLayout::Packed { bytes, .. } => {
                            ([w * bytes + pad, 0, 0], [(w * bytes + pad) * h, 0, 0])
                        }
                        PixelLayout::I420 => (
                            [w + pad, cw + pad, cw + pad],
                            [(w + pad) * h, (cw + pad) * ch, (cw + pad) * ch],
                        ),
                        PixelLayout::Nv12 => (
                            [w + pad, 2 * cw + pad, 0],
                            [(w + pad) * h, (2 * cw + pad) * ch, 0],
                        ),
                    };
                    let data: Vec<Vec<u8>> = (0..3)
                        .map(|p| noise(lens[p], (w * 31 + h + p) as u64))
                        .collect();
                    let planes = Planes {
                        data: [&data[0], &data[1], &data[2]],
                        strides,
                    };
                    let lb = Letterbox::new(w, h, model, model);
                    let pre =
                        Preprocessor::new(lb, layout, YuvMatrix::new(true, false)).with_simd(simd);
                    let mut fast = vec![f32::NAN; 3 * model * model];
                    let mut reference = vec![f32::NAN; 3 * model * model];
                    pre.fill(&planes, &mut fast);
                    pre.fill_scalar(&planes, &mut reference);
                    let worst = fast
                        .iter()
                        .zip(&reference)
                        .map(|(a, b)| (a - b).abs())
                        .fold(
                            0.0f32,
                            |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
                        );
                    assert!(
                        worst <= 1.0 / 255.0,
                        "{name} {w}x{h} -> {model} on {:?}: differs by {worst} (over one level)",
                        pre.simd()
                    );
                }
            }
        }
    }

    #[test]
    fn packed_and_planar_frames_fill_the_same_tensor() {
        // A 4x2 frame: left half white, right half black, in RGB and in BGRx.
        let rgb: Vec<u8> = (0..8)
            .flat_map(|i| if i % 4 < 2 { [255u8; 3] } else { [0u8; 3] })
            .collect();
        let bgrx: Vec<u8> = (0..8)
            .flat_map(|i| {
                if i % 4 < 2 {
                    [255u8; 4]
                } else {
                    [0, 0, 0, 255]
                }
            })
            .collect();
        let lb = Letterbox::new(4, 2, 8, 8);
        let fill = |layout, data: &[u8], stride| {
            let pre = Preprocessor::new(lb, layout, YuvMatrix::new(false, false));
            let mut tensor = vec![0.0; 3 * 64];
            pre.fill(
                &Planes {
                    data: [data, &[], &[]],
                    strides: [stride, 0, 0],
                },
                &mut tensor,
            );
            tensor
        };
        let a = fill(
            PixelLayout::Packed {
                bytes: 3,
                r: 0,
                g: 1,
                b: 2,
            },
            &rgb,
            12,
        );
        let b = fill(
            PixelLayout::Packed {
                bytes: 4,
                r: 2,
                g: 1,
                b: 0,
            },
            &bgrx,
            16,
        );
        assert_eq!(a, b);
        // Rows 0, 1 and 6, 7 are padding; row 2 starts white and ends black.
        assert!((a[0] - PAD).abs() < 1e-6 && (a[7 * 8 + 7] - PAD).abs() < 1e-6);
        assert!((a[2 * 8] - 1.0).abs() < 1e-6 && a[2 * 8 + 7].abs() < 1e-6);

        // The same picture in I420, full-range BT.601: white Y=255 U=V=128, black Y=0.
        let y: Vec<u8> = (0..8).map(|i| if i % 4 < 2 { 255 } else { 0 }).collect();
        let uv = [128u8; 2];
        let pre = Preprocessor::new(lb, PixelLayout::I420, YuvMatrix::new(false, true));
        let mut c = vec![0.0; 3 * 64];
        pre.fill(
            &Planes {
                data: [&y, &uv, &uv],
                strides: [4, 2, 2],
            },
            &mut c,
        );
        for (i, (x, z)) in a.iter().zip(&c).enumerate() {
            assert!((x - z).abs() < 1e-5, "element {i}: {x} vs {z}");
        }
    }
}
