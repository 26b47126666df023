// SPDX-License-Identifier: MIT OR Apache-2.0
//! SORT (simple online and realtime tracking): each track's box is predicted by a Kalman
//! filter with constant velocity, detections are matched to the predictions by IoU with an
//! optimal assignment (Hungarian method), and a track gets its id once it was matched
//! `min_hits` times. A confirmed track survives `max_age` frames without a match, so a
//! short miss keeps its id; a tentative one dies at its first miss. Plain Rust, no
//! GStreamer.

use serde::{Deserialize, Serialize};

/// Most tracks a restored state may hold: more is not a state this tracker wrote.
const MAX_RESTORED_TRACKS: usize = 10_000;

/// A box in pixels: top-left corner and size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoxPx {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

impl BoxPx {
    fn iou(&self, other: &BoxPx) -> f64 {
        let left = self.x.max(other.x);
        let top = self.y.max(other.y);
        let right = (self.x + self.width).min(other.x + other.width);
        let bottom = (self.y + self.height).min(other.y + other.height);
        let inter = (right - left).max(0.0) * (bottom - top).max(0.0);
        let union = self.width * self.height + other.width * other.height - inter;
        if union > 0.0 { inter / union } else { 0.0 }
    }
}

/// One detection to track: its box and class (tracks never change class).
#[derive(Clone, Copy, Debug)]
pub struct Observation {
    pub bbox: BoxPx,
    pub class_id: u32,
}

#[derive(Clone, Copy, Debug)]
pub struct TrackerConfig {
    /// Frames a confirmed track survives without a match.
    pub max_age: u32,
    /// Matches before a track is confirmed and its id reported.
    pub min_hits: u32,
    /// Least IoU between a prediction and a detection for them to match.
    pub iou_threshold: f64,
}

/// A constant-velocity Kalman filter of one coordinate (position and velocity, one frame a
/// step). The box's four coordinates are filtered independently: with diagonal noise the
/// joint filter of SORT splits into these four exactly.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Kalman1 {
    x: [f64; 2],
    p: [[f64; 2]; 2],
}

impl Kalman1 {
    fn new(position: f64, scale: f64) -> Self {
        Kalman1 {
            x: [position, 0.0],
            // Velocity unknown at first: a wide prior on it.
            p: [[(0.1 * scale).powi(2), 0.0], [0.0, (0.5 * scale).powi(2)]],
        }
    }

    fn predict(&mut self, scale: f64) {
        let [x, v] = self.x;
        self.x = [x + v, v];
        let p = self.p;
        let q_pos = (0.05 * scale).powi(2);
        let q_vel = (0.01 * scale).powi(2);
        self.p = [
            [
                p[0][0] + p[0][1] + p[1][0] + p[1][1] + q_pos,
                p[0][1] + p[1][1],
            ],
            [p[1][0] + p[1][1], p[1][1] + q_vel],
        ];
    }

    fn update(&mut self, measured: f64, scale: f64) {
        let r = (0.05 * scale).powi(2);
        let s = self.p[0][0] + r;
        let k = [self.p[0][0] / s, self.p[1][0] / s];
        let innovation = measured - self.x[0];
        self.x = [self.x[0] + k[0] * innovation, self.x[1] + k[1] * innovation];
        let p = self.p;
        self.p = [
            [(1.0 - k[0]) * p[0][0], (1.0 - k[0]) * p[0][1]],
            [p[1][0] - k[1] * p[0][0], p[1][1] - k[1] * p[0][1]],
        ];
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Track {
    /// Set once confirmed.
    id: Option<u64>,
    class_id: u32,
    /// Centre x, centre y, width, height.
    filters: [Kalman1; 4],
    hits: u32,
    misses: u32,
}

impl Track {
    fn new(observation: &Observation) -> Track {
        let b = observation.bbox;
        let scale = b.height.max(b.width).max(1.0);
        Track {
            id: None,
            class_id: observation.class_id,
            filters: [
                Kalman1::new(b.x + b.width / 2.0, scale),
                Kalman1::new(b.y + b.height / 2.0, scale),
                Kalman1::new(b.width, scale),
                Kalman1::new(b.height, scale),
            ],
            hits: 1,
            misses: 0,
        }
    }

    fn scale(&self) -> f64 {
        self.filters[2].x[0].max(self.filters[3].x[0]).max(1.0)
    }

    fn predicted(&self) -> BoxPx {
        let [cx, cy, w, h] = self.filters.map(|f| f.x[0]);
        let (w, h) = (w.max(1.0), h.max(1.0));
        BoxPx {
            x: cx - w / 2.0,
            y: cy - h / 2.0,
            width: w,
            height: h,
        }
    }

    fn predict(&mut self) {
        let scale = self.scale();
        for f in &mut self.filters {
            f.predict(scale);
        }
    }

    fn update(&mut self, observation: &Observation) {
        let b = observation.bbox;
        let scale = self.scale();
        let measured = [b.x + b.width / 2.0, b.y + b.height / 2.0, b.width, b.height];
        for (f, m) in self.filters.iter_mut().zip(measured) {
            f.update(m, scale);
        }
        self.hits += 1;
        self.misses = 0;
    }
}

/// The tracks of one camera.
#[derive(Debug)]
pub struct Tracker {
    config: TrackerConfig,
    tracks: Vec<Track>,
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Self {
        Tracker {
            config,
            tracks: Vec::new(),
        }
    }

    /// Every track with its filters, as JSON for a saved camera state.
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({ "tracks": self.tracks })
    }

    /// A tracker continuing from `snapshot`; the error says why it is not one.
    pub fn restored(config: TrackerConfig, snapshot: &serde_json::Value) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Snapshot {
            tracks: Vec<Track>,
        }
        let snapshot = Snapshot::deserialize(snapshot).map_err(|e| format!("tracks: {e}"))?;
        if snapshot.tracks.len() > MAX_RESTORED_TRACKS {
            return Err(format!("{} tracks", snapshot.tracks.len()));
        }
        let finite = |f: &Kalman1| {
            f.x.iter()
                .chain(f.p.iter().flatten())
                .all(|v| v.is_finite())
        };
        if !snapshot.tracks.iter().all(|t| t.filters.iter().all(finite)) {
            return Err("a track's filter holds a number that is not finite".into());
        }
        Ok(Tracker {
            config,
            tracks: snapshot.tracks,
        })
    }

    /// Tracks alive now, confirmed or not.
    pub fn tracks(&self) -> usize {
        self.tracks.len()
    }

    /// One frame's detections in; for each, the id of its confirmed track (None while a
    /// track is tentative). `next_id` hands out ids, so they stay unique across cameras.
    pub fn update(
        &mut self,
        observations: &[Observation],
        next_id: &mut impl FnMut() -> u64,
    ) -> Vec<Option<u64>> {
        for track in &mut self.tracks {
            track.predict();
        }
        let mut ids = vec![None; observations.len()];
        let mut detection_matched = vec![false; observations.len()];
        let mut track_matched = vec![false; self.tracks.len()];
        for (detection, track) in self.associate(observations) {
            detection_matched[detection] = true;
            track_matched[track] = true;
            let t = &mut self.tracks[track];
            t.update(&observations[detection]);
            if t.id.is_none() && t.hits >= self.config.min_hits {
                t.id = Some(next_id());
            }
            ids[detection] = t.id;
        }
        for (track, matched) in self.tracks.iter_mut().zip(&track_matched) {
            if !matched {
                track.misses += 1;
            }
        }
        let max_age = self.config.max_age;
        self.tracks.retain(|t| match t.id {
            Some(_) => t.misses <= max_age,
            None => t.misses == 0,
        });
        for (detection, observation) in observations.iter().enumerate() {
            if detection_matched[detection] {
                continue;
            }
            let mut track = Track::new(observation);
            if self.config.min_hits <= 1 {
                track.id = Some(next_id());
                ids[detection] = track.id;
            }
            self.tracks.push(track);
        }
        ids
    }

    /// (detection, track) pairs: the assignment of highest total IoU, each pair at least
    /// `iou_threshold` and of the same class.
    fn associate(&self, observations: &[Observation]) -> Vec<(usize, usize)> {
        if observations.is_empty() || self.tracks.is_empty() {
            return Vec::new();
        }
        let iou: Vec<Vec<f64>> = observations
            .iter()
            .map(|o| {
                self.tracks
                    .iter()
                    .map(|t| {
                        if t.class_id == o.class_id {
                            o.bbox.iou(&t.predicted())
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect();
        let cost: Vec<Vec<f64>> = iou
            .iter()
            .map(|row| row.iter().map(|v| 1.0 - v).collect())
            .collect();
        assign(&cost)
            .into_iter()
            .filter(|&(d, t)| iou[d][t] >= self.config.iou_threshold)
            .collect()
    }
}

/// The assignment of rows to columns of least total cost (Hungarian method, O(n²m)); every
/// row or every column is assigned, whichever there are fewer of.
pub fn assign(cost: &[Vec<f64>]) -> Vec<(usize, usize)> {
    let rows = cost.len();
    let cols = cost.first().map_or(0, Vec::len);
    if rows == 0 || cols == 0 {
        return Vec::new();
    }
    if rows > cols {
        let transposed: Vec<Vec<f64>> = (0..cols)
            .map(|c| (0..rows).map(|r| cost[r][c]).collect())
            .collect();
        return assign(&transposed)
            .into_iter()
            .map(|(c, r)| (r, c))
            .collect();
    }
    // Potentials u (rows) and v (columns), 1-based with a virtual column 0.
    let (n, m) = (rows, cols);
    let mut u = vec![0.0; n + 1];
    let mut v = vec![0.0; m + 1];
    let mut owner = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    for row in 1..=n {
        owner[0] = row;
        let mut col0 = 0;
        let mut min_to = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[col0] = true;
            let row0 = owner[col0];
            let mut delta = f64::INFINITY;
            let mut col1 = 0;
            for col in 1..=m {
                if used[col] {
                    continue;
                }
                let reduced = cost[row0 - 1][col - 1] - u[row0] - v[col];
                if reduced < min_to[col] {
                    min_to[col] = reduced;
                    way[col] = col0;
                }
                if min_to[col] < delta {
                    delta = min_to[col];
                    col1 = col;
                }
            }
            for col in 0..=m {
                if used[col] {
                    u[owner[col]] += delta;
                    v[col] -= delta;
                } else {
                    min_to[col] -= delta;
                }
            }
            col0 = col1;
            if owner[col0] == 0 {
                break;
            }
        }
        loop {
            let col1 = way[col0];
            owner[col0] = owner[col1];
            col0 = col1;
            if col0 == 0 {
                break;
            }
        }
    }
    (1..=m)
        .filter(|&col| owner[col] != 0)
        .map(|col| (owner[col] - 1, col - 1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TrackerConfig {
        TrackerConfig {
            max_age: 5,
            min_hits: 3,
            iou_threshold: 0.3,
        }
    }

    fn at(x: f64, y: f64) -> Observation {
        Observation {
            bbox: BoxPx {
                x,
                y,
                width: 40.0,
                height: 40.0,
            },
            class_id: 0,
        }
    }

    fn counter() -> impl FnMut() -> u64 {
        let mut next = 0;
        move || {
            next += 1;
            next
        }
    }

    #[test]
    fn the_assignment_has_the_least_total_cost() {
        // Greedy would take (0,0) for 1 and then pay 10 for (1,1).
        let cost = vec![vec![1.0, 2.0], vec![1.5, 10.0]];
        let mut pairs = assign(&cost);
        pairs.sort();
        assert_eq!(pairs, vec![(0, 1), (1, 0)]);
        // More rows than columns: every column assigned.
        let tall = vec![vec![5.0], vec![1.0], vec![3.0]];
        assert_eq!(assign(&tall), vec![(1, 0)]);
        assert!(assign(&[]).is_empty());
    }

    #[test]
    fn an_id_appears_after_min_hits_and_survives_a_three_frame_gap() {
        let mut tracker = Tracker::new(config());
        let mut ids = counter();
        let mut seen = Vec::new();
        for frame in 0..20 {
            let x = 10.0 + 8.0 * frame as f64;
            // Frames 8, 9 and 10: the detector misses the object.
            let observations = if (8..11).contains(&frame) {
                vec![]
            } else {
                vec![at(x, 100.0)]
            };
            let got = tracker.update(&observations, &mut ids);
            seen.push(got.first().copied().flatten());
        }
        assert_eq!(&seen[..2], &[None, None], "tentative for min_hits-1 frames");
        assert!(seen[2..8].iter().all(|id| *id == Some(1)), "{seen:?}");
        assert!(
            seen[11..].iter().all(|id| *id == Some(1)),
            "same id after the gap: {seen:?}"
        );
    }

    #[test]
    fn two_objects_passing_each_other_keep_their_ids() {
        let mut tracker = Tracker::new(config());
        let mut ids = counter();
        let mut last = (None, None);
        for frame in 0..30 {
            let t = frame as f64;
            // One moves right along y=100, the other left along y=160: their x ranges
            // cross, their boxes barely overlap.
            let a = at(20.0 + 10.0 * t, 100.0);
            let b = at(320.0 - 10.0 * t, 150.0);
            let got = tracker.update(&[a, b], &mut ids);
            if frame >= 3 {
                if let (Some(x), Some(y)) = last {
                    assert_eq!((got[0], got[1]), (Some(x), Some(y)), "frame {frame}");
                }
                assert_ne!(got[0], got[1]);
            }
            last = (got[0], got[1]);
        }
    }

    #[test]
    fn a_track_lost_for_longer_than_max_age_gets_a_new_id() {
        let mut tracker = Tracker::new(config());
        let mut ids = counter();
        for _ in 0..4 {
            tracker.update(&[at(50.0, 50.0)], &mut ids);
        }
        for _ in 0..7 {
            tracker.update(&[], &mut ids);
        }
        assert_eq!(tracker.tracks(), 0);
        let mut got = Vec::new();
        for _ in 0..3 {
            got = tracker.update(&[at(50.0, 50.0)], &mut ids);
        }
        assert_eq!(got, vec![Some(2)]);
    }

    #[test]
    fn a_restored_tracker_continues_exactly_as_the_saved_one() {
        let mut original = Tracker::new(config());
        let mut ids = counter();
        for frame in 0..6 {
            original.update(&[at(10.0 + 7.0 * frame as f64, 50.0)], &mut ids);
        }
        let snapshot = original.snapshot();
        let text = serde_json::to_string(&snapshot).unwrap();
        let mut copy = Tracker::restored(config(), &serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(copy.tracks, original.tracks);
        let mut copy_ids = || 1000;
        let mut original_ids = || 1000;
        for frame in 6..12 {
            let seen = [at(10.0 + 7.0 * frame as f64, 50.0)];
            assert_eq!(
                copy.update(&seen, &mut copy_ids),
                original.update(&seen, &mut original_ids)
            );
        }
        assert_eq!(copy.tracks, original.tracks);
        assert!(Tracker::restored(config(), &serde_json::json!({"tracks": 3})).is_err());
        let mut bad = serde_json::to_value(&original.tracks).unwrap();
        bad[0]["filters"][0]["x"][0] = serde_json::json!("far");
        assert!(Tracker::restored(config(), &serde_json::json!({ "tracks": bad })).is_err());
    }

    #[test]
    fn classes_never_share_a_track() {
        let mut tracker = Tracker::new(TrackerConfig {
            min_hits: 1,
            ..config()
        });
        let mut ids = counter();
        let car = tracker.update(&[at(50.0, 50.0)], &mut ids);
        let person = Observation {
            class_id: 1,
            ..at(50.0, 50.0)
        };
        let other = tracker.update(&[person], &mut ids);
        assert_ne!(car, other);
    }
}
