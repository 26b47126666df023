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

/// The cells of one stream's last inferred frame.
#[derive(Default)]
pub struct MotionGate {
    reference: Vec<f32>,
}

/// The cells of the frame being looked at: one per element, shared by every stream's gate,
/// so that a stream costs only its reference.
#[derive(Default)]
pub struct Cells(Vec<f32>);

impl MotionGate {
    /// The fraction of cells that changed between the last accepted frame and `tensor`
    /// (1.0 when there is none yet, or its picture had another geometry); `current` receives
    /// the cells of `tensor`.
    pub fn changed_fraction(
        &self,
        current: &mut Cells,
        tensor: &[f32],
        letterbox: &Letterbox,
    ) -> f64 {
        let current = &mut current.0;
        cells(tensor, letterbox, current);
        if current.is_empty() || current.len() != self.reference.len() {
            return 1.0;
        }
        let changed = current
            .iter()
            .zip(&self.reference)
            .filter(|(a, b)| (*a - *b).abs() > CELL_DELTA)
            .count();
        changed as f64 / current.len() as f64
    }

    /// The frame whose cells `current` holds was inferred: compare with it from now on.
    pub fn accept(&mut self, current: &mut Cells) {
        std::mem::swap(&mut self.reference, &mut current.0);
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
        let mut current = Cells::default();
        let first = tensor_with_square(&lb, 100, 100, 40);
        assert_eq!(
            gate.changed_fraction(&mut current, &first, &lb),
            1.0,
            "no reference yet"
        );
        gate.accept(&mut current);
        assert_eq!(gate.changed_fraction(&mut current, &first, &lb), 0.0);
        // Moved by 8 pixels: two columns of cells on each side of the square change.
        let moved = tensor_with_square(&lb, 108, 100, 40);
        let fraction = gate.changed_fraction(&mut current, &moved, &lb);
        let cells = (640 / CELL * (360 / CELL)) as f64;
        assert_eq!(fraction * cells, 2.0 * 2.0 * 10.0, "{fraction}");
        // Not accepted: the reference is still the first frame.
        assert_eq!(gate.changed_fraction(&mut current, &first, &lb), 0.0);
        gate.reset();
        assert_eq!(gate.changed_fraction(&mut current, &first, &lb), 1.0);
    }

    #[test]
    fn pixel_noise_averages_out_in_cells() {
        let lb = Letterbox::new(640, 480, 320, 320);
        let mut gate = MotionGate::default();
        let mut current = Cells::default();
        let still = tensor_with_square(&lb, 10, 10, 20);
        gate.changed_fraction(&mut current, &still, &lb);
        gate.accept(&mut current);
        let noisy: Vec<f32> = still
            .iter()
            .enumerate()
            .map(|(i, v)| v + if i % 2 == 0 { 0.1 } else { -0.1 })
            .collect();
        assert_eq!(gate.changed_fraction(&mut current, &noisy, &lb), 0.0);
    }

    #[test]
    fn gates_sharing_one_scratch_keep_their_own_reference() {
        let lb = Letterbox::new(640, 480, 320, 320);
        let (mut still, mut moving) = (MotionGate::default(), MotionGate::default());
        let mut current = Cells::default();
        let square = tensor_with_square(&lb, 10, 10, 20);
        still.changed_fraction(&mut current, &square, &lb);
        still.accept(&mut current);
        let elsewhere = tensor_with_square(&lb, 200, 150, 20);
        moving.changed_fraction(&mut current, &elsewhere, &lb);
        moving.accept(&mut current);
        // Each compares with its own frame, whatever the other accepted last.
        assert_eq!(still.changed_fraction(&mut current, &square, &lb), 0.0);
        assert_eq!(moving.changed_fraction(&mut current, &elsewhere, &lb), 0.0);
        assert!(moving.changed_fraction(&mut current, &square, &lb) > 0.0);
    }
}
