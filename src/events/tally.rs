// SPDX-License-Identifier: MIT OR Apache-2.0
//! Events counted once per camera and line or zone: how `counter` and the viewer count
//! crossings, entries and exits. An event counts once however often it is read: a
//! restarted reader, a record delivered twice, or a worker that replaces a dead one,
//! re-reads the frames it had not committed and publishes their events again.
//!
//! - An event with an `event_id` counts once per id: the republished copy has the same id
//!   (the id is computed from the camera, the frame, the place, the direction and the
//!   track), while a second real crossing of the same track has another.
//! - An event without one (written before ids existed) counts once per camera, place,
//!   count (in, out, entered, left) and track id, as before: a track that crosses in twice
//!   counts once, and after a worker's restart a new object with a reused track id is
//!   not counted at all.
//!
//! What was counted is remembered for a window of time (one hour unless
//! [`Tally::with_window`] says otherwise), per camera, on the events' own clock: their
//! `capture_time_ns`, never later than the reader's clock (a camera host's clock running
//! ahead must not push everything out), and the reader's clock for events without one
//! (`pts_ns` is a stream's running time, which starts anew with every stream). A
//! camera's entries older than its newest event minus the window are forgotten as newer
//! ones arrive, and a camera from which nothing arrived for a window (by the reader's
//! clock) is forgotten whole. A copy read after its original was forgotten counts again,
//! so the window must be longer than any redelivery: from an event's first publication to
//! its republication by a replacement worker (the time for the group to notice the dead
//! worker and hand its partitions on, plus however long the pool may stay down). Events
//! arriving out of order by more than the window cannot be checked and count. On top of
//! the window, at most [`MAX_REMEMBERED`] entries are kept: past that the oldest go first.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use super::{Direction, Event, EventKind};
use crate::identity::Fields;

/// How long counted events are remembered unless [`Tally::with_window`] says otherwise.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);

/// At most this many events are remembered over all cameras (about 70 bytes each),
/// whatever the window: a safety net for event rates the window was not chosen for.
pub const MAX_REMEMBERED: usize = 1_000_000;

/// How often, by the reader's clock, cameras gone quiet are looked for.
const SWEEP_EVERY_NS: u64 = 1_000_000_000;

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

/// What one camera's counted events were: fixed-size digests, so a long id costs no more
/// than a short one.
struct Remembered {
    keys: HashSet<u128>,
    /// The same keys with their event times, oldest first.
    by_time: VecDeque<(u64, u128)>,
    /// The newest event time of the camera: the window ends there.
    newest_ns: u64,
    /// When the camera's latest event arrived, by the reader's clock.
    arrived_ns: u64,
}

/// Events counted once per (camera, line or zone).
#[derive(Debug)]
pub struct Tally {
    by_place: BTreeMap<(String, String), Counts>,
    totals: Counts,
    window_ns: u64,
    max_remembered: usize,
    remembered: HashMap<String, Remembered>,
    /// Entries over every camera.
    entries: usize,
    duplicates: u64,
    next_sweep_ns: u64,
}

impl std::fmt::Debug for Remembered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remembered")
            .field("entries", &self.by_time.len())
            .field("newest_ns", &self.newest_ns)
            .finish()
    }
}

impl Default for Tally {
    fn default() -> Tally {
        Tally::with_window(DEFAULT_WINDOW)
    }
}

impl Tally {
    /// A tally remembering counted events for `window` (see the module's doc for why it
    /// must be longer than any redelivery).
    pub fn with_window(window: Duration) -> Tally {
        Tally {
            by_place: BTreeMap::new(),
            totals: Counts::default(),
            window_ns: u64::try_from(window.as_nanos()).unwrap_or(u64::MAX),
            max_remembered: MAX_REMEMBERED,
            remembered: HashMap::new(),
            entries: 0,
            duplicates: 0,
            next_sweep_ns: 0,
        }
    }

    /// How long counted events are remembered.
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.window_ns)
    }

    /// Counts `event` of `camera` unless it was counted already; true when counted.
    pub fn count(&mut self, camera: &str, event: &Event) -> bool {
        self.count_at(camera, event, crate::clock::unix_time_ns())
    }

    /// [`Tally::count`] with the reader's clock at `now_ns` (Unix time).
    fn count_at(&mut self, camera: &str, event: &Event, now_ns: u64) -> bool {
        let which = Which::of(event);
        let place = event.place();
        let key = match event.event_id.as_deref().filter(|id| !id.is_empty()) {
            Some(id) => Fields::new("id").str(id).hash128(),
            None => Fields::new("track")
                .str(place)
                .u64(which as u64)
                .u64(event.track_id)
                .hash128(),
        };
        let time_ns = event.capture_time_ns.unwrap_or(now_ns).min(now_ns);
        if now_ns >= self.next_sweep_ns {
            self.forget_quiet_cameras(now_ns);
            self.next_sweep_ns = now_ns.saturating_add(SWEEP_EVERY_NS);
        }

        if !self.remembered.contains_key(camera) {
            let fresh = Remembered {
                keys: HashSet::new(),
                by_time: VecDeque::new(),
                newest_ns: time_ns,
                arrived_ns: now_ns,
            };
            self.remembered.insert(camera.to_string(), fresh);
        }
        let Some(seen) = self.remembered.get_mut(camera) else {
            return false;
        };
        seen.arrived_ns = now_ns;
        if seen.keys.contains(&key) {
            self.duplicates += 1;
            return false;
        }
        seen.newest_ns = seen.newest_ns.max(time_ns);
        let horizon = seen.newest_ns.saturating_sub(self.window_ns);
        while let Some(&(oldest_ns, oldest)) = seen.by_time.front()
            && oldest_ns < horizon
        {
            seen.by_time.pop_front();
            seen.keys.remove(&oldest);
            self.entries -= 1;
        }
        if time_ns >= horizon {
            // Events of one camera come nearly in order: the place is at or near the end.
            let at = seen.by_time.partition_point(|&(t, _)| t <= time_ns);
            seen.by_time.insert(at, (time_ns, key));
            seen.keys.insert(key);
            self.entries += 1;
        }
        while self.entries > self.max_remembered {
            self.forget_oldest();
        }

        self.by_place
            .entry((camera.to_string(), place.to_string()))
            .or_default()
            .add(which);
        self.totals.add(which);
        true
    }

    /// Forgets the cameras nothing arrived from for a window.
    fn forget_quiet_cameras(&mut self, now_ns: u64) {
        let window_ns = self.window_ns;
        let mut forgotten = 0;
        self.remembered.retain(|_, seen| {
            let keep = now_ns.saturating_sub(seen.arrived_ns) <= window_ns;
            if !keep {
                forgotten += seen.by_time.len();
            }
            keep
        });
        self.entries -= forgotten;
    }

    /// Forgets the oldest entry of all cameras (and the camera, when it was its last).
    fn forget_oldest(&mut self) {
        let oldest = self
            .remembered
            .iter()
            .filter_map(|(camera, seen)| Some((seen.by_time.front()?.0, camera)))
            .min()
            .map(|(_, camera)| camera.clone());
        let Some(camera) = oldest else {
            return;
        };
        if let Some(seen) = self.remembered.get_mut(&camera)
            && let Some((_, key)) = seen.by_time.pop_front()
        {
            seen.keys.remove(&key);
            self.entries -= 1;
            if seen.by_time.is_empty() {
                self.remembered.remove(&camera);
            }
        }
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

    /// Events not counted because they were counted already.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Events remembered now, over every camera.
    pub fn remembered(&self) -> usize {
        self.entries
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
        assert_eq!(tally.duplicates(), 2);
    }

    /// A crossing of `track` at frame `seq`, with the id crossingcount gives it, at
    /// capture time `time_ns`.
    fn identified(camera: &str, track: u64, seq: u64, direction: Direction, time_ns: u64) -> Event {
        let mut event = crossing(track, "gate", direction);
        event.camera = Some(camera.into());
        event.capture_time_ns = Some(time_ns);
        event.event_id = Some(super::super::event_id(
            camera,
            "stream-1",
            seq,
            EventKind::LineCrossed,
            "gate",
            Some(direction),
            track,
        ));
        event
    }

    const S: u64 = 1_000_000_000;
    /// 2025-11-21, a plausible capture time.
    const T0: u64 = 1_763_700_000 * S;

    #[test]
    fn an_event_read_again_counts_once_by_its_id() {
        let mut tally = Tally::default();
        let event = identified("cam1", 7, 40, Direction::In, T0);
        assert!(tally.count_at("cam1", &event, T0));
        // A replacement worker republished it: same id, read later.
        assert!(!tally.count_at("cam1", &event, T0 + 30 * S));
        assert!(!tally.count_at("cam1", &event, T0 + 31 * S));
        assert_eq!(tally.duplicates(), 2);
        assert_eq!(tally.totals().crossed_in, 1);
        assert_eq!(tally.remembered(), 1);
        // The same id in another camera is another event.
        assert!(tally.count_at("cam2", &event, T0 + 32 * S));
    }

    #[test]
    fn two_crossings_of_one_track_at_one_place_both_count() {
        // Track 7 crosses in at frame 40, goes back out at 70 and in again at 95: three
        // events, two of them "in" on the same line by the same track.
        let events = [
            identified("cam1", 7, 40, Direction::In, T0),
            identified("cam1", 7, 70, Direction::Out, T0 + 3 * S),
            identified("cam1", 7, 95, Direction::In, T0 + 5 * S),
        ];
        let mut tally = Tally::default();
        for event in &events {
            assert!(tally.count_at("cam1", event, T0 + 6 * S));
        }
        assert_eq!(tally.totals().crossed_in, 2);
        assert_eq!(tally.totals().crossed_out, 1);
        // The whole run read again (a reader restarted without its commits): nothing more.
        for event in &events {
            assert!(!tally.count_at("cam1", event, T0 + 7 * S));
        }
        assert_eq!(tally.totals().crossed_in, 2);
        assert_eq!(tally.duplicates(), 3);

        // Without ids the second "in" is taken for the first one read again: the bug
        // the ids fix, kept for events written before them.
        let mut old = Tally::default();
        for mut event in events {
            event.event_id = None;
            old.count_at("cam1", &event, T0 + 6 * S);
        }
        assert_eq!(old.totals().crossed_in, 1);
    }

    #[test]
    fn an_empty_id_is_no_id() {
        let mut tally = Tally::default();
        let mut event = identified("cam1", 7, 40, Direction::In, T0);
        event.event_id = Some(String::new());
        assert!(tally.count_at("cam1", &event, T0));
        let mut again = identified("cam1", 7, 41, Direction::In, T0);
        again.event_id = None;
        assert!(!tally.count_at("cam1", &again, T0), "same track key");
    }

    #[test]
    fn memory_stays_within_the_window_over_a_million_events_spread_over_hours() {
        const EVENTS: u64 = 1_000_000;
        const CAMERAS: u64 = 4;
        // 1 million events over 5 hours of capture time, read as they happen.
        const STEP_NS: u64 = 5 * 3600 * S / EVENTS;
        let window = Duration::from_secs(600);
        let mut tally = Tally::with_window(window);
        let window_ns = window.as_nanos() as u64;
        // Events per camera within a window, and one for the newest's own time.
        let holds = (CAMERAS * (window_ns / STEP_NS / CAMERAS + 1)) as usize;
        let mut peak = 0;
        for i in 0..EVENTS {
            let camera = ["cam1", "cam2", "cam3", "cam4"][(i % CAMERAS) as usize];
            let time_ns = T0 + i * STEP_NS;
            let mut event = crossing(i, "gate", Direction::In);
            event.capture_time_ns = Some(time_ns);
            event.event_id = Some(format!("{i:016x}"));
            assert!(tally.count_at(camera, &event, time_ns));
            peak = peak.max(tally.remembered());
        }
        assert!(peak <= holds, "{peak} remembered, the window holds {holds}");
        assert!(
            peak > holds - 10,
            "{peak} remembered, the window holds {holds}"
        );
        assert_eq!(tally.totals().crossed_in, EVENTS);
        assert_eq!(tally.duplicates(), 0);

        // Within the window a copy is still caught; one from hours ago was forgotten.
        let now = T0 + EVENTS * STEP_NS;
        let mut recent = crossing(EVENTS - 4, "gate", Direction::In);
        recent.capture_time_ns = Some(T0 + (EVENTS - 4) * STEP_NS);
        recent.event_id = Some(format!("{:016x}", EVENTS - 4));
        assert!(!tally.count_at("cam1", &recent, now));
        let mut ancient = crossing(0, "gate", Direction::In);
        ancient.capture_time_ns = Some(T0);
        ancient.event_id = Some(format!("{:016x}", 0));
        assert!(tally.count_at("cam1", &ancient, now));
        assert!(tally.remembered() <= holds);
    }

    #[test]
    fn each_camera_keeps_its_own_window_and_quiet_cameras_are_forgotten() {
        let mut tally = Tally::with_window(Duration::from_secs(60));
        // cam2 runs two hours behind cam1 (a backlog being worked off): its copies are
        // still caught, measured on its own clock.
        let behind = identified("cam2", 3, 10, Direction::In, T0);
        assert!(tally.count_at(
            "cam1",
            &identified("cam1", 1, 10, Direction::In, T0 + 7200 * S),
            T0 + 7200 * S
        ));
        assert!(tally.count_at("cam2", &behind, T0 + 7200 * S));
        assert!(!tally.count_at("cam2", &behind, T0 + 7230 * S));
        assert!(tally.count_at(
            "cam1",
            &identified("cam1", 1, 11, Direction::In, T0 + 7240 * S),
            T0 + 7240 * S
        ));
        assert_eq!(tally.remembered(), 3);

        // Nothing from cam2 for more than a window (61 s) by the reader's clock: forgotten
        // whole; cam1 forgets its event older than its newest minus the window.
        let later = T0 + 7291 * S;
        assert!(tally.count_at(
            "cam1",
            &identified("cam1", 1, 12, Direction::In, later),
            later
        ));
        assert_eq!(
            tally.remembered(),
            2,
            "cam1's last two kept, its first and cam2's one forgotten"
        );
    }

    #[test]
    fn a_capture_time_from_the_future_does_not_push_the_others_out() {
        let mut tally = Tally::with_window(Duration::from_secs(60));
        let first = identified("cam1", 1, 10, Direction::In, T0);
        assert!(tally.count_at("cam1", &first, T0));
        let ahead = identified("cam1", 2, 11, Direction::In, T0 + 10 * 3600 * S);
        assert!(tally.count_at("cam1", &ahead, T0 + S));
        assert!(!tally.count_at("cam1", &first, T0 + 2 * S));
        assert_eq!(tally.remembered(), 2);
    }

    #[test]
    fn past_the_cap_the_oldest_are_forgotten_first() {
        let mut tally = Tally {
            max_remembered: 100,
            ..Tally::default()
        };
        for i in 0..1000 {
            let camera = if i % 2 == 0 { "cam1" } else { "cam2" };
            let event = identified(camera, i, i, Direction::In, T0 + i * S);
            assert!(tally.count_at(camera, &event, T0 + i * S));
            assert!(tally.remembered() <= 100);
        }
        assert_eq!(tally.remembered(), 100);
        let newest = identified("cam2", 999, 999, Direction::In, T0 + 999 * S);
        assert!(!tally.count_at("cam2", &newest, T0 + 1000 * S));
        let oldest_kept = identified("cam1", 900, 900, Direction::In, T0 + 900 * S);
        assert!(!tally.count_at("cam1", &oldest_kept, T0 + 1000 * S));
        let forgotten = identified("cam2", 899, 899, Direction::In, T0 + 899 * S);
        assert!(tally.count_at("cam2", &forgotten, T0 + 1000 * S));
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
