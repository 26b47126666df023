// SPDX-License-Identifier: MIT OR Apache-2.0
//! SORT (simple online and realtime tracking): each track's box is predicted by a Kalman
//! filter with constant velocity, detections are matched to the predictions by IoU with an
//! optimal assignment (Hungarian method), and a track gets its id once it was matched
//! `min_hits` times. A confirmed track survives `max_age` frames without a match, so a
//! short miss keeps its id; a tentative one dies at its first miss.
//!
//! With `observation_centric` (OC-SORT, Cao et al. 2023), three additions keep identities
//! through occlusions and crossing paths: the match cost also weighs whether a detection
//! lies in the direction the track's observations were moving (a person crossing another
//! keeps going the same way); tracks left unmatched get a second chance against their last
//! observed box rather than a prediction that drifted; and a track found again after a gap
//! re-runs its filter along a straight path between its last observation and the new one,
//! so the velocity it guessed while unseen does not linger. Two more keep a hidden track
//! within reach: tracks seen on the last frame are matched first (DeepSORT's matching
//! cascade), and an unseen track's predicted size stays as it was. Plain Rust, no
//! GStreamer.

use serde::{Deserialize, Serialize};

/// Most tracks a restored state may hold: more is not a state this tracker wrote.
const MAX_RESTORED_TRACKS: usize = 10_000;

/// A box in pixels: top-left corner and size.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
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
    /// OC-SORT's direction term, second association and re-update (see the module).
    pub observation_centric: bool,
}

/// Weight of the direction term beside IoU in a match's score (OC-SORT's λ).
const DIRECTION_WEIGHT: f64 = 0.2;
/// Frames between the two observations a track's direction is measured over.
const DIRECTION_SPAN: u32 = 3;
/// Observations a track keeps for its direction.
const KEPT_OBSERVATIONS: usize = DIRECTION_SPAN as usize + 1;

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
    /// Frames since the track began.
    #[serde(default)]
    age: u32,
    /// The last observations (frame of the track, box), oldest first.
    #[serde(default)]
    observed: Vec<(u32, BoxPx)>,
    /// The filters just after the last observation, to re-run from after a gap.
    #[serde(default)]
    filters_observed: Option<[Kalman1; 4]>,
}

fn centre(b: &BoxPx) -> [f64; 2] {
    [b.x + b.width / 2.0, b.y + b.height / 2.0]
}

impl Track {
    fn new(observation: &Observation) -> Track {
        let b = observation.bbox;
        let scale = b.height.max(b.width).max(1.0);
        let filters = [
            Kalman1::new(b.x + b.width / 2.0, scale),
            Kalman1::new(b.y + b.height / 2.0, scale),
            Kalman1::new(b.width, scale),
            Kalman1::new(b.height, scale),
        ];
        Track {
            id: None,
            class_id: observation.class_id,
            filters,
            hits: 1,
            misses: 0,
            age: 0,
            observed: vec![(0, b)],
            filters_observed: Some(filters),
        }
    }

    fn last_observed(&self) -> Option<&BoxPx> {
        self.observed.last().map(|(_, b)| b)
    }

    /// The unit vector of the track's motion between two of its observations at least
    /// [`DIRECTION_SPAN`] frames apart, if it has them and moved.
    fn direction(&self) -> Option<[f64; 2]> {
        let (last_frame, last) = self.observed.last()?;
        let (_, earlier) = self
            .observed
            .iter()
            .rev()
            .find(|(frame, _)| last_frame - frame >= DIRECTION_SPAN)?;
        unit(centre(earlier), centre(last))
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

    fn update(&mut self, observation: &Observation, observation_centric: bool) {
        let b = observation.bbox;
        if observation_centric
            && self.misses > 0
            && let (Some(filters), Some(last)) = (self.filters_observed, self.last_observed())
        {
            // Re-update: from the filters as they were at the last observation, along a
            // straight path to this one, one virtual observation per unseen frame.
            let last = *last;
            let steps = self.misses + 1;
            self.filters = filters;
            for step in 1..steps {
                let t = f64::from(step) / f64::from(steps);
                let lerp = |a: f64, b: f64| a + (b - a) * t;
                let virtual_box = BoxPx {
                    x: lerp(last.x, b.x),
                    y: lerp(last.y, b.y),
                    width: lerp(last.width, b.width),
                    height: lerp(last.height, b.height),
                };
                self.predict();
                self.correct(&virtual_box);
            }
            self.predict();
        }
        self.correct(&b);
        self.filters_observed = Some(self.filters);
        self.observed.push((self.age, b));
        if self.observed.len() > KEPT_OBSERVATIONS {
            self.observed.remove(0);
        }
        self.hits += 1;
        self.misses = 0;
    }

    fn correct(&mut self, b: &BoxPx) {
        let scale = self.scale();
        let measured = [b.x + b.width / 2.0, b.y + b.height / 2.0, b.width, b.height];
        for (f, m) in self.filters.iter_mut().zip(measured) {
            f.update(m, scale);
        }
    }
}

fn unit(from: [f64; 2], to: [f64; 2]) -> Option<[f64; 2]> {
    let (dx, dy) = (to[0] - from[0], to[1] - from[1]);
    let length = dx.hypot(dy);
    (length > 1e-6).then(|| [dx / length, dy / length])
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
            if self.config.observation_centric && track.misses > 0 {
                // A hidden object keeps its size: a size velocity guessed from noisy boxes
                // would otherwise shrink or swell its prediction out of reach.
                track.filters[2].x[1] = 0.0;
                track.filters[3].x[1] = 0.0;
            }
            track.predict();
            track.age += 1;
        }
        let mut ids = vec![None; observations.len()];
        let mut detection_matched = vec![false; observations.len()];
        let mut track_matched = vec![false; self.tracks.len()];
        let pairs = if self.config.observation_centric {
            // Tracks seen on the last frame choose first (as DeepSORT's matching cascade):
            // where two people overlap completely, the one still in sight keeps the
            // detection, the hidden one waits.
            let unseen: Vec<bool> = self.tracks.iter().map(|t| t.misses > 0).collect();
            let mut pairs = self.associate(observations, &detection_matched, &unseen, false);
            for &(detection, track) in &pairs {
                detection_matched[detection] = true;
                track_matched[track] = true;
            }
            let more = self.associate(observations, &detection_matched, &track_matched, false);
            for &(detection, track) in &more {
                detection_matched[detection] = true;
                track_matched[track] = true;
            }
            pairs.extend(more);
            // Second chance for what is left: a track's last observed box, not its
            // prediction, which drifts while the track is unseen.
            let recovered = self.associate(observations, &detection_matched, &track_matched, true);
            pairs.extend(recovered);
            pairs
        } else {
            self.associate(observations, &detection_matched, &track_matched, false)
        };
        let observation_centric = self.config.observation_centric;
        for (detection, track) in pairs {
            detection_matched[detection] = true;
            track_matched[track] = true;
            let t = &mut self.tracks[track];
            t.update(&observations[detection], observation_centric);
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

    /// (detection, track) pairs among the detections and tracks not matched yet: the
    /// assignment of highest total score, each pair of the same class with an IoU of at
    /// least `iou_threshold`. The IoU is with the track's prediction, or with its last
    /// observed box when `last_observed`; with `observation_centric`, the score adds how
    /// well the detection lies in the direction the track was moving.
    fn associate(
        &self,
        observations: &[Observation],
        detection_taken: &[bool],
        track_taken: &[bool],
        last_observed: bool,
    ) -> Vec<(usize, usize)> {
        let detections: Vec<usize> = (0..observations.len())
            .filter(|&d| !detection_taken[d])
            .collect();
        let tracks: Vec<usize> = (0..self.tracks.len())
            .filter(|&t| !track_taken[t])
            .collect();
        if detections.is_empty() || tracks.is_empty() {
            return Vec::new();
        }
        let iou: Vec<Vec<f64>> = detections
            .iter()
            .map(|&d| {
                let o = &observations[d];
                tracks
                    .iter()
                    .map(|&t| {
                        let track = &self.tracks[t];
                        let reference = if last_observed {
                            track.last_observed().copied()
                        } else {
                            Some(track.predicted())
                        };
                        match reference {
                            Some(b) if track.class_id == o.class_id => o.bbox.iou(&b),
                            _ => 0.0,
                        }
                    })
                    .collect()
            })
            .collect();
        let cost: Vec<Vec<f64>> = detections
            .iter()
            .zip(&iou)
            .map(|(&d, row)| {
                tracks
                    .iter()
                    .zip(row)
                    .map(|(&t, iou)| {
                        1.0 - iou - self.direction_score(&self.tracks[t], &observations[d])
                    })
                    .collect()
            })
            .collect();
        assign(&cost)
            .into_iter()
            .filter(|&(d, t)| iou[d][t] >= self.config.iou_threshold)
            .map(|(d, t)| (detections[d], tracks[t]))
            .collect()
    }

    /// OC-SORT's direction consistency, weighted: from +λ/2 for a detection straight
    /// ahead of the track's motion to -λ/2 straight behind; 0 without a direction.
    fn direction_score(&self, track: &Track, observation: &Observation) -> f64 {
        if !self.config.observation_centric {
            return 0.0;
        }
        let (Some(moving), Some(last)) = (track.direction(), track.last_observed()) else {
            return 0.0;
        };
        let Some(towards) = unit(centre(last), centre(&observation.bbox)) else {
            return 0.0;
        };
        let cos = (moving[0] * towards[0] + moving[1] * towards[1]).clamp(-1.0, 1.0);
        DIRECTION_WEIGHT * (std::f64::consts::FRAC_PI_2 - cos.acos()) / std::f64::consts::PI
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
            observation_centric: true,
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
