// SPDX-License-Identifier: MIT OR Apache-2.0
//! Motion gating: skip inference when nothing moved since the last inferred frame.
//!
//! The comparison runs on the model's input tensor, which is computed anyway: the picture's
//! green channel (close to luma) averaged over 4x4-pixel cells, so sensor noise and JPEG
//! ringing average out, compared cell by cell with the cells of the last inferred frame.

use super::letterbox::Letterbox;

/// Cell side in model-input pixels.
const CELL: usize = 4;
/// A cell has changed when its mean brightness moved by more than this (0..1 scale):
/// about 10 of 255 levels, well above the noise of a 16-pixel mean.
pub const CELL_DELTA: f32 = 0.04;

/// The cells of the last inferred frame, and a scratch for the current one.
#[derive(Default)]
pub struct MotionGate {
    reference: Vec<f32>,
    current: Vec<f32>,
}

impl MotionGate {
    /// The fraction of cells that changed between the last accepted frame and `tensor`
    /// (1.0 when there is none yet, or its picture had another geometry).
    pub fn changed_fraction(&mut self, tensor: &[f32], letterbox: &Letterbox) -> f64 {
        cells(tensor, letterbox, &mut self.current);
        if self.current.is_empty() || self.current.len() != self.reference.len() {
            return 1.0;
        }
        let changed = self
            .current
            .iter()
            .zip(&self.reference)
            .filter(|(a, b)| (*a - *b).abs() > CELL_DELTA)
            .count();
        changed as f64 / self.current.len() as f64
    }

    /// The frame last passed to `changed_fraction` was inferred: compare with it from now on.
    pub fn accept(&mut self) {
        std::mem::swap(&mut self.reference, &mut self.current);
    }

    /// Forgets the reference (new caps, a discontinuity): the next frame is inferred.
    pub fn reset(&mut self) {
        self.reference.clear();
    }
}

/// Mean of the green plane over each `CELL` x `CELL` cell of the picture (not the padding).
fn cells(tensor: &[f32], lb: &Letterbox, out: &mut Vec<f32>) {
    let plane = lb.model_width * lb.model_height;
    let green = &tensor[plane..2 * plane];
    let (columns, rows) = (lb.width / CELL, lb.height / CELL);
    out.clear();
    out.resize(columns * rows, 0.0);
    for (cell_row, sums) in out.chunks_exact_mut(columns.max(1)).enumerate().take(rows) {
        for y in 0..CELL {
            let start = (lb.top + cell_row * CELL + y) * lb.model_width + lb.left;
            let line = &green[start..start + columns * CELL];
            for (sum, pixels) in sums.iter_mut().zip(line.chunks_exact(CELL)) {
                *sum += pixels.iter().sum::<f32>();
            }
        }
    }
    let scale = 1.0 / (CELL * CELL) as f32;
    out.iter_mut().for_each(|sum| *sum *= scale);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor_with_square(lb: &Letterbox, x: usize, y: usize, side: usize) -> Vec<f32> {
        let plane = lb.model_width * lb.model_height;
        let mut tensor = vec![0.2; 3 * plane];
        for row in y..y + side {
            for column in x..x + side {
                tensor[plane + (lb.top + row) * lb.model_width + lb.left + column] = 0.9;
            }
        }
        tensor
    }

    #[test]
    fn a_moved_square_changes_cells_and_a_still_one_does_not() {
        let lb = Letterbox::new(1280, 720, 640, 640);
        let mut gate = MotionGate::default();
        let first = tensor_with_square(&lb, 100, 100, 40);
        assert_eq!(gate.changed_fraction(&first, &lb), 1.0, "no reference yet");
        gate.accept();
        assert_eq!(gate.changed_fraction(&first, &lb), 0.0);
        // Moved by 8 pixels: two columns of cells on each side of the square change.
        let moved = tensor_with_square(&lb, 108, 100, 40);
        let fraction = gate.changed_fraction(&moved, &lb);
        let cells = (640 / CELL * (360 / CELL)) as f64;
        assert_eq!(fraction * cells, 2.0 * 2.0 * 10.0, "{fraction}");
        // Not accepted: the reference is still the first frame.
        assert_eq!(gate.changed_fraction(&first, &lb), 0.0);
        gate.reset();
        assert_eq!(gate.changed_fraction(&first, &lb), 1.0);
    }

    #[test]
    fn pixel_noise_averages_out_in_cells() {
        let lb = Letterbox::new(640, 480, 320, 320);
        let mut gate = MotionGate::default();
        let still = tensor_with_square(&lb, 10, 10, 20);
        gate.changed_fraction(&still, &lb);
        gate.accept();
        let noisy: Vec<f32> = still
            .iter()
            .enumerate()
            .map(|(i, v)| v + if i % 2 == 0 { 0.1 } else { -0.1 })
            .collect();
        assert_eq!(gate.changed_fraction(&noisy, &lb), 0.0);
    }
}
