// SPDX-License-Identifier: MIT OR Apache-2.0
//! What tracked objects did on one camera's lines and zones, frame by frame. Plain Rust,
//! no GStreamer.
//!
//! A line is crossed when a track's anchor point moves from one side of it to the other
//! and its path meets the line between its two ends. The side it left counts, not where it
//! is now: an object that stops on the line and goes back has crossed nothing, and one
//! that stops on it and goes on is counted once. A zone is entered when the anchor moves
//! inside and left when it moves out (or when its track has not been seen for
//! `track_timeout`, which is how long it then dwelt).

use std::collections::{BTreeMap, HashMap};

use kafkavision::events::{Direction, EventKind};
use serde::{Deserialize, Serialize};

use super::geometry::{Layout, Point, segments_meet, side};

/// One tracked detection on a frame.
#[derive(Clone, Debug)]
pub struct Sighting {
    pub track_id: u64,
    pub label: String,
    /// The anchor point, in fractions of the frame.
    pub point: Point,
}

/// Something that happened on a frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Happening {
    pub kind: EventKind,
    /// The line or zone.
    pub place: String,
    pub direction: Option<Direction>,
    pub track_id: u64,
    pub label: String,
    pub dwell_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct TrackState {
    label: String,
    point: Point,
    /// Per line: the side the track was last seen on (never 0) and where.
    last_side: HashMap<usize, (i8, Point)>,
    /// Per zone it is inside: when it entered (ns).
    inside: BTreeMap<usize, u64>,
    last_seen_ns: u64,
}

/// Counts of one line or zone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub crossed_in: u64,
    pub crossed_out: u64,
    pub entered: u64,
    pub left: u64,
}

/// One camera's lines and zones, its tracks' recent positions, and running counts.
#[derive(Debug)]
pub struct Counter {
    layout: Layout,
    tracks: HashMap<u64, TrackState>,
    pub line_counts: Vec<Counts>,
    pub zone_counts: Vec<Counts>,
    track_timeout_ns: u64,
}

impl Counter {
    pub fn new(layout: Layout, track_timeout_ns: u64) -> Counter {
        Counter {
            line_counts: vec![Counts::default(); layout.lines.len()],
            zone_counts: vec![Counts::default(); layout.zones.len()],
            layout,
            tracks: HashMap::new(),
            track_timeout_ns,
        }
    }

    /// Tracks' sides, zone visits and counts, as JSON for a saved camera state; the layout
    /// goes with them, since they mean nothing for another one.
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "layout": self.layout,
            "tracks": self.tracks,
            "line_counts": self.line_counts,
            "zone_counts": self.zone_counts,
        })
    }

    /// A counter continuing from `snapshot`, if it was saved for this `layout`; the error
    /// says why not.
    pub fn restored(
        layout: Layout,
        track_timeout_ns: u64,
        snapshot: &serde_json::Value,
    ) -> Result<Counter, String> {
        #[derive(Deserialize)]
        struct Snapshot {
            layout: serde_json::Value,
            tracks: HashMap<u64, TrackState>,
            line_counts: Vec<Counts>,
            zone_counts: Vec<Counts>,
        }
        let snapshot = Snapshot::deserialize(snapshot).map_err(|e| format!("counts: {e}"))?;
        let here = serde_json::to_value(&layout).map_err(|e| e.to_string())?;
        if snapshot.layout != here {
            return Err(format!(
                "saved for other lines and zones ({}), not this camera's ({here})",
                snapshot.layout
            ));
        }
        let (lines, zones) = (layout.lines.len(), layout.zones.len());
        let fits = snapshot.line_counts.len() == lines
            && snapshot.zone_counts.len() == zones
            && snapshot.tracks.values().all(|t| {
                t.last_side.keys().all(|i| *i < lines) && t.inside.keys().all(|i| *i < zones)
            });
        if !fits {
            return Err("counts that do not fit the lines and zones".into());
        }
        Ok(Counter {
            layout,
            tracks: snapshot.tracks,
            line_counts: snapshot.line_counts,
            zone_counts: snapshot.zone_counts,
            track_timeout_ns,
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Objects inside each zone now.
    pub fn inside(&self, zone: usize) -> u64 {
        self.tracks
            .values()
            .filter(|t| t.inside.contains_key(&zone))
            .count() as u64
    }

    /// One frame at `time_ns` (its PTS) with its tracked objects.
    pub fn frame(&mut self, time_ns: u64, sightings: &[Sighting]) -> Vec<Happening> {
        let mut happened = Vec::new();
        for sighting in sightings {
            let previous = self.tracks.remove(&sighting.track_id);
            let mut state = match previous {
                Some(mut state) => {
                    self.moved(&mut state, sighting, time_ns, &mut happened);
                    state
                }
                None => self.appeared(sighting, time_ns, &mut happened),
            };
            state.point = sighting.point;
            state.label = sighting.label.clone();
            state.last_seen_ns = time_ns;
            self.tracks.insert(sighting.track_id, state);
        }
        // Tracks gone for good leave the zones they were in.
        let timeout = self.track_timeout_ns;
        let gone: Vec<u64> = self
            .tracks
            .iter()
            .filter(|(_, t)| time_ns.saturating_sub(t.last_seen_ns) > timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            let state = self.tracks.remove(&id).unwrap();
            for (zone, entered) in state.inside {
                happened.push(self.left(zone, id, &state.label, state.last_seen_ns, entered));
            }
        }
        happened
    }

    fn appeared(
        &mut self,
        s: &Sighting,
        time_ns: u64,
        happened: &mut Vec<Happening>,
    ) -> TrackState {
        let mut state = TrackState {
            label: s.label.clone(),
            point: s.point,
            last_side: HashMap::new(),
            inside: BTreeMap::new(),
            last_seen_ns: time_ns,
        };
        for (i, line) in self.layout.lines.iter().enumerate() {
            let d = side(line.a, line.b, s.point);
            if d != 0 {
                state.last_side.insert(i, (d, s.point));
            }
        }
        // Appearing inside a zone is entering it.
        for (i, zone) in self.layout.zones.iter().enumerate() {
            if zone.contains(s.point) {
                state.inside.insert(i, time_ns);
                self.zone_counts[i].entered += 1;
                happened.push(Happening {
                    kind: EventKind::ZoneEntered,
                    place: zone.name.clone(),
                    direction: None,
                    track_id: s.track_id,
                    label: s.label.clone(),
                    dwell_ms: None,
                });
            }
        }
        state
    }

    fn moved(
        &mut self,
        state: &mut TrackState,
        s: &Sighting,
        time_ns: u64,
        happened: &mut Vec<Happening>,
    ) {
        for (i, line) in self.layout.lines.iter().enumerate() {
            let now = side(line.a, line.b, s.point);
            if now == 0 {
                continue; // on the line: the side it came from still counts
            }
            if let Some(&(before, from)) = state.last_side.get(&i)
                && before != now
                && segments_meet(from, s.point, line.a, line.b)
            {
                let direction = if before > 0 {
                    Direction::In
                } else {
                    Direction::Out
                };
                match direction {
                    Direction::In => self.line_counts[i].crossed_in += 1,
                    Direction::Out => self.line_counts[i].crossed_out += 1,
                }
                happened.push(Happening {
                    kind: EventKind::LineCrossed,
                    place: line.name.clone(),
                    direction: Some(direction),
                    track_id: s.track_id,
                    label: s.label.clone(),
                    dwell_ms: None,
                });
            }
            state.last_side.insert(i, (now, s.point));
        }
        for i in 0..self.layout.zones.len() {
            let now_inside = self.layout.zones[i].contains(s.point);
            match (state.inside.get(&i).copied(), now_inside) {
                (None, true) => {
                    state.inside.insert(i, time_ns);
                    self.zone_counts[i].entered += 1;
                    happened.push(Happening {
                        kind: EventKind::ZoneEntered,
                        place: self.layout.zones[i].name.clone(),
                        direction: None,
                        track_id: s.track_id,
                        label: s.label.clone(),
                        dwell_ms: None,
                    });
                }
                (Some(entered), false) => {
                    state.inside.remove(&i);
                    let left = self.left(i, s.track_id, &s.label, time_ns, entered);
                    happened.push(left);
                }
                _ => {}
            }
        }
    }

    fn left(
        &mut self,
        zone: usize,
        track_id: u64,
        label: &str,
        at_ns: u64,
        entered_ns: u64,
    ) -> Happening {
        self.zone_counts[zone].left += 1;
        Happening {
            kind: EventKind::ZoneLeft,
            place: self.layout.zones[zone].name.clone(),
            direction: None,
            track_id,
            label: label.to_string(),
            dwell_ms: Some(at_ns.saturating_sub(entered_ns) / 1_000_000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crossingcount::geometry::parse_properties;

    const FRAME: u64 = 100_000_000; // 10 frames/s

    fn counter() -> Counter {
        let layout =
            parse_properties("gate:0.5,0,0.5,1", "dock:0.7,0.1,0.9,0.1,0.9,0.5,0.7,0.5").unwrap();
        Counter::new(layout, 2_000_000_000)
    }

    fn at(track_id: u64, x: f64, y: f64) -> Sighting {
        Sighting {
            track_id,
            label: "car".into(),
            point: Point { x, y },
        }
    }

    /// Runs `path` (x per frame, one track at y) and returns what happened.
    fn run(counter: &mut Counter, path: &[f64], y: f64) -> Vec<Happening> {
        path.iter()
            .enumerate()
            .flat_map(|(i, x)| counter.frame(i as u64 * FRAME, &[at(1, *x, y)]))
            .collect()
    }

    #[test]
    fn crossing_left_to_right_is_in_and_back_is_out() {
        let mut c = counter();
        let events = run(&mut c, &[0.2, 0.4, 0.6, 0.8], 0.7);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].direction, Some(Direction::In));
        let events = run(&mut c, &[0.8, 0.6, 0.4], 0.7);
        assert_eq!(events[0].direction, Some(Direction::Out));
        assert_eq!(
            c.line_counts[0],
            Counts {
                crossed_in: 1,
                crossed_out: 1,
                ..Counts::default()
            }
        );
    }

    #[test]
    fn touching_the_line_and_turning_back_is_no_crossing() {
        let mut c = counter();
        assert!(run(&mut c, &[0.3, 0.45, 0.5, 0.5, 0.45, 0.3], 0.7).is_empty());
        // Stopping on the line and going on is one crossing.
        let mut c = counter();
        let events = run(&mut c, &[0.3, 0.5, 0.5, 0.5, 0.7], 0.7);
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn two_objects_crossing_together_are_two_events() {
        let mut c = counter();
        let mut events = Vec::new();
        for (i, x) in [0.3, 0.45, 0.55, 0.7].iter().enumerate() {
            events.extend(c.frame(i as u64 * FRAME, &[at(1, *x, 0.3), at(2, *x, 0.6)]));
        }
        let mut ids: Vec<u64> = events
            .iter()
            .filter(|e| e.kind == EventKind::LineCrossed)
            .map(|e| e.track_id)
            .collect();
        ids.sort();
        assert_eq!(ids, vec![1, 2]);
        assert_eq!(c.line_counts[0].crossed_in, 2);
    }

    #[test]
    fn a_zone_counts_entries_exits_and_dwell() {
        let mut c = counter();
        let events = run(&mut c, &[0.6, 0.75, 0.8, 0.85, 0.95], 0.3);
        let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, vec![EventKind::ZoneEntered, EventKind::ZoneLeft]);
        assert_eq!(events[1].dwell_ms, Some(300));
        assert_eq!(
            c.zone_counts[0],
            Counts {
                entered: 1,
                left: 1,
                ..Counts::default()
            }
        );
    }

    #[test]
    fn a_restored_counter_continues_exactly_as_the_saved_one() {
        let mut original = counter();
        run(&mut original, &[0.2, 0.4, 0.45], 0.7);
        original.frame(3 * FRAME, &[at(2, 0.8, 0.3)]);
        let text = serde_json::to_string(&original.snapshot()).unwrap();
        let layout = original.layout().clone();
        let mut copy = Counter::restored(
            layout.clone(),
            2_000_000_000,
            &serde_json::from_str(&text).unwrap(),
        )
        .unwrap();
        // The rest of the path: the half-way object crosses once, in both.
        for (i, x) in [0.6, 0.8].iter().enumerate() {
            let frame = [at(1, *x, 0.7), at(2, 0.95, 0.3)];
            let t = (4 + i as u64) * FRAME;
            assert_eq!(copy.frame(t, &frame), original.frame(t, &frame));
        }
        assert_eq!(copy.line_counts[0].crossed_in, 1);
        assert_eq!(copy.zone_counts, original.zone_counts);

        let other = parse_properties("gate:0.4,0,0.4,1", "").unwrap();
        let err = Counter::restored(other, 1, &original.snapshot()).unwrap_err();
        assert!(err.contains("other lines"), "{err}");
        assert!(Counter::restored(layout, 1, &serde_json::json!({"tracks": []})).is_err());
    }

    #[test]
    fn a_track_lost_inside_a_zone_leaves_it_after_the_timeout() {
        let mut c = counter();
        let entered = c.frame(0, &[at(5, 0.8, 0.3)]);
        assert_eq!(entered[0].kind, EventKind::ZoneEntered);
        assert_eq!(c.inside(0), 1);
        assert!(c.frame(FRAME, &[]).is_empty());
        let left = c.frame(30 * FRAME, &[]);
        assert_eq!(left[0].kind, EventKind::ZoneLeft);
        assert_eq!(left[0].dwell_ms, Some(0));
        assert_eq!(c.inside(0), 0);
    }
}
