// SPDX-License-Identifier: MIT OR Apache-2.0
//! A scripted scene with known answers, for the line-counting demo and its tests: white
//! squares (which the demo detector `models/blob-yolov8.onnx` finds to the pixel) moving on
//! black across a vertical line, at known frames:
//!
//! | object | what it does                                                    | expected         |
//! |--------|-----------------------------------------------------------------|------------------|
//! | `a`    | crosses left to right                                           | `gate` in        |
//! | `b`    | crosses right to left                                           | `gate` out       |
//! | `c`, `d` | cross left to right together, one above the other             | two `gate` in, two ids |
//! | `e`    | comes up to the line, touches it, stays, and goes back          | nothing          |
//! | `f`    | crosses left to right, missed by the camera for 3 frames before | `gate` in, one id |
//!
//! Positions are fractions of the frame; the script repeats every [`PERIOD`] frames.

/// The line the scene is scripted around, in `crossingcount lines=` form.
pub const LINE: &str = "gate:0.5,0,0.5,1";
/// Frames in one run of the script.
pub const PERIOD: u32 = 200;
/// The side of every square as a fraction of the frame's height.
const SIZE: f64 = 0.18;

/// One object's path: waypoints (frame, x, y) of its centre, linearly between them; it is
/// drawn from its first waypoint's frame to its last, except on the `hidden` frames.
struct Path {
    name: &'static str,
    waypoints: &'static [(u32, f64, f64)],
    hidden: std::ops::Range<u32>,
}

const PATHS: [Path; 6] = [
    Path {
        name: "a",
        waypoints: &[(0, 0.1, 0.3), (30, 0.9, 0.3)],
        hidden: 0..0,
    },
    Path {
        name: "b",
        waypoints: &[(35, 0.9, 0.5), (65, 0.1, 0.5)],
        hidden: 0..0,
    },
    Path {
        name: "c",
        waypoints: &[(70, 0.1, 0.2), (100, 0.9, 0.2)],
        hidden: 0..0,
    },
    Path {
        name: "d",
        waypoints: &[(70, 0.1, 0.75), (100, 0.9, 0.75)],
        hidden: 0..0,
    },
    // Its right edge reaches past the line (0.47 + half its width at 640x360 = 0.52);
    // its centre never does.
    Path {
        name: "e",
        waypoints: &[
            (105, 0.1, 0.5),
            (125, 0.47, 0.5),
            (135, 0.47, 0.5),
            (155, 0.1, 0.5),
        ],
        hidden: 0..0,
    },
    Path {
        name: "f",
        waypoints: &[(160, 0.1, 0.6), (195, 0.9, 0.6)],
        hidden: 166..169,
    },
];

/// A crossing the script makes: which object, which way, and when its centre passes the
/// line (frame within the period).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Crossing {
    pub object: &'static str,
    pub direction: &'static str,
    pub frame: u32,
    /// The object's height in the frame, which tells objects crossing together apart.
    pub y: f64,
}

/// The crossings of one run of the script, in order.
pub fn crossings() -> Vec<Crossing> {
    vec![
        Crossing {
            object: "a",
            direction: "in",
            frame: 15,
            y: 0.3,
        },
        Crossing {
            object: "b",
            direction: "out",
            frame: 50,
            y: 0.5,
        },
        Crossing {
            object: "c",
            direction: "in",
            frame: 85,
            y: 0.2,
        },
        Crossing {
            object: "d",
            direction: "in",
            frame: 85,
            y: 0.75,
        },
        Crossing {
            object: "f",
            direction: "in",
            frame: 178,
            y: 0.6,
        },
    ]
}

/// The objects visible at `frame` (any frame; the script repeats): (name, x, y).
pub fn objects_at(frame: u32) -> Vec<(&'static str, f64, f64)> {
    let frame = frame % PERIOD;
    PATHS
        .iter()
        .filter(|p| !p.hidden.contains(&frame))
        .filter_map(|p| {
            let (first, last) = (p.waypoints.first()?, p.waypoints.last()?);
            if frame < first.0 || frame > last.0 {
                return None;
            }
            let pair = p.waypoints.windows(2).find(|w| frame <= w[1].0)?;
            let (a, b) = (pair[0], pair[1]);
            let t = (frame - a.0) as f64 / (b.0 - a.0).max(1) as f64;
            Some((p.name, a.1 + (b.1 - a.1) * t, a.2 + (b.2 - a.2) * t))
        })
        .collect()
}

/// Frame `frame` as packed RGB, `width` x `height`.
pub fn render_rgb(frame: u32, width: u32, height: u32) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let mut rgb = vec![0u8; w * h * 3];
    let side = (SIZE * height as f64).round() as usize;
    for (_, x, y) in objects_at(frame) {
        let left = ((x * width as f64).round() as usize).saturating_sub(side / 2);
        let top = ((y * height as f64).round() as usize).saturating_sub(side / 2);
        for row in top..(top + side).min(h) {
            let start = (row * w + left) * 3;
            let end = (row * w + (left + side).min(w)) * 3;
            rgb[start..end].fill(255);
        }
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_crosses_where_it_says() {
        for c in crossings() {
            let before = objects_at(c.frame - 1);
            let after = objects_at(c.frame + 1);
            let x = |list: &[(&str, f64, f64)]| list.iter().find(|o| o.0 == c.object).unwrap().1;
            let (x0, x1) = (x(&before), x(&after));
            assert!((x0 - 0.5) * (x1 - 0.5) < 0.0, "{c:?}: {x0} -> {x1}");
        }
        // e never crosses; f is hidden for three frames.
        assert!(
            (0..PERIOD)
                .flat_map(objects_at)
                .filter(|o| o.0 == "e")
                .all(|o| o.1 < 0.5)
        );
        assert_eq!((160..196).filter(|f| objects_at(*f).is_empty()).count(), 3);
    }

    #[test]
    fn squares_are_drawn_white_on_black() {
        let rgb = render_rgb(15, 640, 360);
        let at = |x: usize, y: usize| rgb[(y * 640 + x) * 3];
        assert_eq!(at(320, 108), 255, "a is at the line at frame 15");
        assert_eq!(at(10, 10), 0);
    }
}
