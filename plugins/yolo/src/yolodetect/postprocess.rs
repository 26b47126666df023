// SPDX-License-Identifier: MIT OR Apache-2.0
//! From a YOLO output tensor to boxes: layout detection, decoding, NMS.

use std::fmt;

/// The output layouts of the YOLO families, told apart by the output shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// YOLOv5: `[1, N, 5 + nc]`, rows of cx, cy, w, h, objectness, class scores.
    V5 { classes: usize },
    /// YOLOv8/v9/v11/v12: `[1, 4 + nc, N]`, channel-major, no objectness.
    V8 { classes: usize },
    /// End-to-end YOLOv10/YOLO26: `[1, K, 6]`, rows of x1, y1, x2, y2, score, class; no NMS.
    EndToEnd,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layout::V5 { classes } => write!(f, "YOLOv5 [1, N, 5+{classes}]"),
            Layout::V8 { classes } => write!(f, "YOLOv8 [1, 4+{classes}, N]"),
            Layout::EndToEnd => write!(f, "end-to-end [1, K, 6]"),
        }
    }
}

impl Layout {
    /// The number of classes the output scores, when the layout says (end-to-end rows
    /// carry a class id, not a score per class).
    pub fn classes(self) -> Option<usize> {
        match self {
            Layout::V5 { classes } | Layout::V8 { classes } => Some(classes),
            Layout::EndToEnd => None,
        }
    }

    /// Detects the layout from the output shape. `class_count` is the number of names in
    /// the model's metadata, when it has them; `end2end` its `end2end` flag.
    ///
    /// `[1, K, 6]` is end-to-end unless the names say there is exactly one class (then it
    /// is YOLOv5 with one class) and the model does not say `end2end`. Otherwise the
    /// smaller of the last two dimensions is the per-box one: `[1, small, N]` is YOLOv8,
    /// `[1, N, small]` YOLOv5.
    pub fn detect(
        shape: &[i64],
        class_count: Option<usize>,
        end2end: bool,
    ) -> Result<Layout, String> {
        let unknown = || {
            format!(
                "output shape {shape:?} is not a known YOLO layout (YOLOv5 [1, N, 5+nc], \
                 YOLOv8 [1, 4+nc, N] or end-to-end [1, K, 6])"
            )
        };
        let [batch, a, b] = shape else {
            return Err(unknown());
        };
        if *batch > 1 || *a <= 0 || *b <= 0 {
            return Err(unknown());
        }
        let (a, b) = (*a as usize, *b as usize);
        if b == 6 && (end2end || class_count != Some(1)) && a >= b {
            return Ok(Layout::EndToEnd);
        }
        if a < b {
            if a <= 4 {
                return Err(unknown());
            }
            Ok(Layout::V8 { classes: a - 4 })
        } else {
            if b <= 5 {
                return Err(unknown());
            }
            Ok(Layout::V5 { classes: b - 5 })
        }
    }
}

/// A box in model-input pixels, or (after mapping) frame pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
    pub class_id: usize,
}

impl Detection {
    fn area(&self) -> f32 {
        (self.x2 - self.x1).max(0.0) * (self.y2 - self.y1).max(0.0)
    }

    fn iou(&self, other: &Detection) -> f32 {
        let w = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let h = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        let inter = w * h;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }
}

/// Post-processing settings.
#[derive(Clone, Debug)]
pub struct Filter<'a> {
    pub conf_threshold: f32,
    pub iou_threshold: f32,
    pub class_agnostic: bool,
    pub max_detections: usize,
    /// Classes to keep; `None` keeps all.
    pub allowed: Option<&'a [bool]>,
}

impl Filter<'_> {
    fn keeps_class(&self, class_id: usize) -> bool {
        self.allowed
            .is_none_or(|allowed| allowed.get(class_id).copied().unwrap_or(false))
    }
}

/// Decodes `output` (the model's first output, row-major, of the given layout) into boxes
/// over the threshold, after NMS (not for end-to-end models), best first.
pub fn decode(
    layout: Layout,
    output: &[f32],
    shape: &[i64],
    filter: &Filter<'_>,
) -> Vec<Detection> {
    let (a, b) = (shape[1] as usize, shape[2] as usize);
    let mut candidates = Vec::new();
    match layout {
        Layout::V8 { classes } => {
            let anchors = b;
            let row = |r: usize| &output[r * anchors..(r + 1) * anchors];
            let (cx, cy, w, h) = (row(0), row(1), row(2), row(3));
            // Class-major scan: for each anchor, the best class over the threshold.
            let mut best = vec![(0.0f32, 0usize); anchors];
            for class_id in 0..classes {
                if !filter.keeps_class(class_id) {
                    continue;
                }
                for (i, score) in row(4 + class_id).iter().enumerate() {
                    if *score > best[i].0 {
                        best[i] = (*score, class_id);
                    }
                }
            }
            for (i, (score, class_id)) in best.into_iter().enumerate() {
                if score > filter.conf_threshold {
                    candidates.push(from_center(cx[i], cy[i], w[i], h[i], score, class_id));
                }
            }
        }
        Layout::V5 { classes } => {
            for row in output.chunks_exact(b).take(a) {
                let objectness = row[4];
                if objectness <= filter.conf_threshold {
                    continue; // the product cannot pass either
                }
                let mut best = (0.0f32, 0usize);
                for (class_id, score) in row[5..5 + classes].iter().enumerate() {
                    if filter.keeps_class(class_id) && *score > best.0 {
                        best = (*score, class_id);
                    }
                }
                let score = objectness * best.0;
                if score > filter.conf_threshold {
                    candidates.push(from_center(row[0], row[1], row[2], row[3], score, best.1));
                }
            }
        }
        Layout::EndToEnd => {
            for row in output.chunks_exact(6).take(a) {
                let (score, class) = (row[4], row[5]);
                // NaN scores fail the comparison and are dropped with the low ones.
                if score.partial_cmp(&filter.conf_threshold) != Some(std::cmp::Ordering::Greater)
                    || !class.is_finite()
                    || class < 0.0
                {
                    continue;
                }
                let class_id = class.round() as usize;
                if filter.keeps_class(class_id) {
                    candidates.push(Detection {
                        x1: row[0],
                        y1: row[1],
                        x2: row[2],
                        y2: row[3],
                        score,
                        class_id,
                    });
                }
            }
            sort_by_score(&mut candidates);
            candidates.truncate(filter.max_detections);
            return candidates;
        }
    }
    nms(candidates, filter)
}

fn from_center(cx: f32, cy: f32, w: f32, h: f32, score: f32, class_id: usize) -> Detection {
    Detection {
        x1: cx - w / 2.0,
        y1: cy - h / 2.0,
        x2: cx + w / 2.0,
        y2: cy + h / 2.0,
        score,
        class_id,
    }
}

fn sort_by_score(detections: &mut [Detection]) {
    detections.sort_by(|a, b| b.score.total_cmp(&a.score));
}

/// Greedy non-maximum suppression, per class unless `class_agnostic`.
pub fn nms(mut candidates: Vec<Detection>, filter: &Filter<'_>) -> Vec<Detection> {
    sort_by_score(&mut candidates);
    let mut kept: Vec<Detection> = Vec::new();
    for candidate in candidates {
        if kept.len() >= filter.max_detections {
            break;
        }
        let suppressed = kept.iter().any(|k| {
            (filter.class_agnostic || k.class_id == candidate.class_id)
                && k.iou(&candidate) > filter.iou_threshold
        });
        if !suppressed {
            kept.push(candidate);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Filter<'static> = Filter {
        conf_threshold: 0.25,
        iou_threshold: 0.45,
        class_agnostic: false,
        max_detections: 300,
        allowed: None,
    };

    #[test]
    fn layouts_are_told_apart_by_shape() {
        assert_eq!(
            Layout::detect(&[1, 84, 8400], None, false),
            Ok(Layout::V8 { classes: 80 })
        );
        assert_eq!(
            Layout::detect(&[1, 25200, 85], None, false),
            Ok(Layout::V5 { classes: 80 })
        );
        assert_eq!(
            Layout::detect(&[1, 300, 6], None, false),
            Ok(Layout::EndToEnd)
        );
        assert_eq!(
            Layout::detect(&[1, 300, 6], Some(1), false),
            Ok(Layout::V5 { classes: 1 })
        );
        assert_eq!(
            Layout::detect(&[1, 300, 6], Some(1), true),
            Ok(Layout::EndToEnd)
        );
        assert_eq!(
            Layout::detect(&[1, 5, 8400], None, false),
            Ok(Layout::V8 { classes: 1 })
        );
        for bad in [
            &[1, 84][..],
            &[2, 84, 8400],
            &[1, 4, 8400],
            &[1, 8400, 5],
            &[1, 1, 2, 3],
        ] {
            let err = Layout::detect(bad, None, false).unwrap_err();
            assert!(err.contains("not a known YOLO layout"), "{err}");
        }
    }

    #[test]
    fn a_layout_says_how_many_classes_it_scores() {
        assert_eq!(Layout::V8 { classes: 80 }.classes(), Some(80));
        assert_eq!(Layout::V5 { classes: 1 }.classes(), Some(1));
        assert_eq!(Layout::EndToEnd.classes(), None);
    }

    fn d(x1: f32, y1: f32, x2: f32, y2: f32, score: f32, class_id: usize) -> Detection {
        Detection {
            x1,
            y1,
            x2,
            y2,
            score,
            class_id,
        }
    }

    #[test]
    fn nms_per_class_keeps_overlapping_boxes_of_other_classes() {
        let boxes = vec![
            d(0.0, 0.0, 10.0, 10.0, 0.9, 0),
            d(1.0, 1.0, 11.0, 11.0, 0.8, 0), // IoU 0.68 with the first: suppressed
            d(1.0, 1.0, 11.0, 11.0, 0.7, 1), // other class: kept
            d(20.0, 20.0, 30.0, 30.0, 0.6, 0),
        ];
        let kept = nms(boxes.clone(), &ALL);
        assert_eq!(
            kept.iter().map(|k| k.score).collect::<Vec<_>>(),
            vec![0.9, 0.7, 0.6]
        );
        let agnostic = Filter {
            class_agnostic: true,
            ..ALL
        };
        let kept = nms(boxes.clone(), &agnostic);
        assert_eq!(
            kept.iter().map(|k| k.score).collect::<Vec<_>>(),
            vec![0.9, 0.6]
        );
        let loose = Filter {
            iou_threshold: 0.7,
            ..ALL
        };
        assert_eq!(nms(boxes.clone(), &loose).len(), 4);
        let two = Filter {
            max_detections: 2,
            ..ALL
        };
        assert_eq!(nms(boxes, &two).len(), 2);
    }

    #[test]
    fn v8_decoding_takes_the_best_allowed_class_over_the_threshold() {
        // 3 anchors, 2 classes: rows cx, cy, w, h, class0, class1.
        let output = [
            10.0, 50.0, 90.0, // cx
            10.0, 50.0, 90.0, // cy
            4.0, 4.0, 4.0, // w
            2.0, 2.0, 2.0, // h
            0.9, 0.1, 0.3, // class 0
            0.2, 0.6, 0.2, // class 1
        ];
        let shape = [1, 6, 3];
        let all = decode(Layout::V8 { classes: 2 }, &output, &shape, &ALL);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0], d(8.0, 9.0, 12.0, 11.0, 0.9, 0));
        assert_eq!((all[1].class_id, all[1].score), (1, 0.6));
        let allowed = [false, true];
        let only_1 = Filter {
            allowed: Some(&allowed),
            ..ALL
        };
        let some = decode(Layout::V8 { classes: 2 }, &output, &shape, &only_1);
        assert_eq!(some.iter().map(|d| d.class_id).collect::<Vec<_>>(), vec![1]);
        let strict = Filter {
            conf_threshold: 0.85,
            ..ALL
        };
        assert_eq!(
            decode(Layout::V8 { classes: 2 }, &output, &shape, &strict).len(),
            1
        );
    }

    #[test]
    fn v5_multiplies_objectness_and_class_score() {
        let output = [
            10.0, 10.0, 4.0, 4.0, 0.9, 0.5, 0.9, // 0.81 class 1
            50.0, 50.0, 4.0, 4.0, 0.2, 1.0, 0.0, // objectness under the threshold
            90.0, 90.0, 4.0, 4.0, 0.5, 0.4, 0.0, // 0.2: under
        ];
        let found = decode(Layout::V5 { classes: 2 }, &output, &[1, 3, 7], &ALL);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].class_id, 1);
        assert!((found[0].score - 0.81).abs() < 1e-6);
    }

    #[test]
    fn end_to_end_rows_are_taken_as_they_are() {
        let output = [
            1.0, 2.0, 3.0, 4.0, 0.3, 5.0, //
            5.0, 6.0, 7.0, 8.0, 0.9, 2.0, //
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, //
        ];
        let found = decode(Layout::EndToEnd, &output, &[1, 3, 6], &ALL);
        assert_eq!(
            found,
            vec![d(5.0, 6.0, 7.0, 8.0, 0.9, 2), d(1.0, 2.0, 3.0, 4.0, 0.3, 5)]
        );
        let one = Filter {
            max_detections: 1,
            ..ALL
        };
        assert_eq!(decode(Layout::EndToEnd, &output, &[1, 3, 6], &one).len(), 1);
    }
}
