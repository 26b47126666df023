// SPDX-License-Identifier: MIT OR Apache-2.0
//! Unique objects per camera and line or zone, from events: how `counter` and the viewer
//! count crossings. An object counts once per place and count (crossed in, crossed out,
//! entered, left), however often its event is read again (a restarted reader, a record
//! delivered twice).

use std::collections::{BTreeMap, HashSet};

use super::{Direction, Event, EventKind};

/// The counts of one place (or of all of them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub crossed_in: u64,
    pub crossed_out: u64,
    pub entered: u64,
    pub left: u64,
}

/// Which of the [`Counts`] an event adds to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Which {
    CrossedIn,
    CrossedOut,
    Entered,
    Left,
}

impl Which {
    fn of(event: &Event) -> Which {
        match (event.kind, event.direction) {
            (EventKind::LineCrossed, Some(Direction::In)) => Which::CrossedIn,
            (EventKind::LineCrossed, _) => Which::CrossedOut,
            (EventKind::ZoneEntered, _) => Which::Entered,
            (EventKind::ZoneLeft, _) => Which::Left,
        }
    }
}

impl Counts {
    fn add(&mut self, which: Which) {
        match which {
            Which::CrossedIn => self.crossed_in += 1,
            Which::CrossedOut => self.crossed_out += 1,
            Which::Entered => self.entered += 1,
            Which::Left => self.left += 1,
        }
    }
}

/// Unique objects per (camera, line or zone).
#[derive(Debug, Default)]
pub struct Tally {
    by_place: BTreeMap<(String, String), Counts>,
    totals: Counts,
    /// (camera, place, which count, track id) already counted.
    seen: HashSet<(String, String, Which, u64)>,
}

impl Tally {
    /// Counts `event` of `camera` unless its object was counted for it already; true when
    /// counted.
    pub fn count(&mut self, camera: &str, event: &Event) -> bool {
        let which = Which::of(event);
        let place = event.place();
        if !self
            .seen
            .insert((camera.to_string(), place.to_string(), which, event.track_id))
        {
            return false;
        }
        self.by_place
            .entry((camera.to_string(), place.to_string()))
            .or_default()
            .add(which);
        self.totals.add(which);
        true
    }

    /// Every (camera, place) counted so far with its counts, ordered by camera and place.
    pub fn places(&self) -> impl Iterator<Item = (&str, &str, &Counts)> {
        self.by_place
            .iter()
            .map(|((camera, place), counts)| (camera.as_str(), place.as_str(), counts))
    }

    /// The counts over every camera and place.
    pub fn totals(&self) -> Counts {
        self.totals
    }

    /// How many cameras have a count.
    pub fn cameras(&self) -> usize {
        let cameras: HashSet<&str> = self.by_place.keys().map(|(c, _)| c.as_str()).collect();
        cameras.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crossing(track_id: u64, line: &str, direction: Direction) -> Event {
        let mut event = Event::new(EventKind::LineCrossed, track_id, "car");
        event.line = Some(line.into());
        event.direction = Some(direction);
        event
    }

    fn zone(kind: EventKind, track_id: u64, zone: &str) -> Event {
        let mut event = Event::new(kind, track_id, "car");
        event.zone = Some(zone.into());
        event
    }

    #[test]
    fn an_object_counts_once_per_place_and_direction() {
        let mut tally = Tally::default();
        assert!(tally.count("cam1", &crossing(7, "gate", Direction::In)));
        assert!(!tally.count("cam1", &crossing(7, "gate", Direction::In)));
        assert!(tally.count("cam1", &crossing(7, "gate", Direction::Out)));
        assert!(tally.count("cam1", &crossing(7, "exit", Direction::In)));
        assert!(tally.count("cam2", &crossing(7, "gate", Direction::In)));
        assert!(tally.count("cam1", &crossing(8, "gate", Direction::In)));
        assert!(tally.count("cam1", &zone(EventKind::ZoneEntered, 7, "dock")));
        assert!(tally.count("cam1", &zone(EventKind::ZoneLeft, 7, "dock")));
        assert!(!tally.count("cam1", &zone(EventKind::ZoneLeft, 7, "dock")));

        let places: Vec<_> = tally.places().map(|(c, p, n)| (c, p, *n)).collect();
        let counts = |crossed_in, crossed_out, entered, left| Counts {
            crossed_in,
            crossed_out,
            entered,
            left,
        };
        assert_eq!(
            places,
            [
                ("cam1", "dock", counts(0, 0, 1, 1)),
                ("cam1", "exit", counts(1, 0, 0, 0)),
                ("cam1", "gate", counts(2, 1, 0, 0)),
                ("cam2", "gate", counts(1, 0, 0, 0)),
            ]
        );
        assert_eq!(tally.totals(), counts(4, 1, 1, 1));
        assert_eq!(tally.cameras(), 2);
    }

    #[test]
    fn a_crossing_without_direction_counts_as_out() {
        let mut tally = Tally::default();
        let mut event = crossing(1, "gate", Direction::In);
        event.direction = None;
        assert!(tally.count("cam1", &event));
        assert_eq!(tally.totals().crossed_out, 1);
    }
}
