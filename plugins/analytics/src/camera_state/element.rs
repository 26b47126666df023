// SPDX-License-Identifier: MIT OR Apache-2.0
//! What `objecttrack` and `crossingcount` share to keep a camera's state: the `state-*`
//! and `idle-timeout` properties (added here once, both elements have them) and, per
//! camera, where its saved state stands.

use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use kafkavision::client_config::ClientConfig;
use kafkavision::meta::{RecordHold, RecordMeta};

use super::store::{Membership, Restored, StateStore, StoreSettings};
use super::{Position, SavePolicy};

pub const DEFAULT_STATE_INTERVAL: u32 = 100;
pub const DEFAULT_STATE_INTERVAL_MS: u32 = 2000;
pub const DEFAULT_IDLE_TIMEOUT_MS: u32 = 60_000;
const STATE_TIMEOUT: Duration = Duration::from_secs(10);

/// The properties, as set.
#[derive(Clone, Debug)]
pub struct StateSettings {
    pub brokers: String,
    pub topic: String,
    pub config: String,
    pub interval: u32,
    pub interval_ms: u32,
    pub idle_timeout_ms: u32,
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            brokers: String::new(),
            topic: String::new(),
            config: String::new(),
            interval: DEFAULT_STATE_INTERVAL,
            interval_ms: DEFAULT_STATE_INTERVAL_MS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
        }
    }
}

impl StateSettings {
    pub fn properties() -> Vec<glib::ParamSpec> {
        vec![
            glib::ParamSpecString::builder("state-topic")
                .nick("State topic")
                .blurb(
                    "A compacted Kafka topic (cleanup.policy=compact) where each camera's state is \
                     saved, keyed by camera, and restored from by the next worker that reads the \
                     camera; empty: state lives and dies with this element. Set it, and \
                     state-brokers, on objecttrack and crossingcount alike: they save together.",
                )
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("state-brokers")
                .nick("State brokers")
                .blurb("Kafka bootstrap servers of state-topic, e.g. 127.0.0.1:9092.")
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("state-config")
                .nick("State client configuration")
                .blurb(
                    "librdkafka settings for the state-topic clients, key=value,key=value (a \
                     value ${NAME} is read from the environment), e.g. security.protocol=ssl.",
                )
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("state-interval")
                .nick("State interval (frames)")
                .blurb(
                    "Save a camera's state on frames whose sequence number is a multiple of this, \
                     e.g. 100; 0: by time only. A worker that dies has the frames since the last \
                     save read again by the next one.",
                )
                .default_value(DEFAULT_STATE_INTERVAL)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("state-interval-ms")
                .nick("State interval (ms)")
                .blurb(
                    "Also save a camera's state when its frames' capture time enters a new slot \
                     of this many milliseconds, e.g. 2000; 0: by frames only.",
                )
                .default_value(DEFAULT_STATE_INTERVAL_MS)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("idle-timeout")
                .nick("Idle timeout")
                .blurb(
                    "Milliseconds without a frame of a camera after which its state is saved (with \
                     state-topic) and dropped from memory, e.g. 60000 (its partition moved to \
                     another worker, or the camera stopped); 0: never.",
                )
                .default_value(DEFAULT_IDLE_TIMEOUT_MS)
                .mutable_ready()
                .build(),
        ]
    }

    /// Sets one of these properties; false when `name` is not one of them.
    pub fn set_property(&mut self, name: &str, value: &glib::Value) -> bool {
        let text = || value.get::<Option<String>>().unwrap().unwrap_or_default();
        match name {
            "state-topic" => self.topic = text(),
            "state-brokers" => self.brokers = text(),
            "state-config" => self.config = text(),
            "state-interval" => self.interval = value.get().unwrap(),
            "state-interval-ms" => self.interval_ms = value.get().unwrap(),
            "idle-timeout" => self.idle_timeout_ms = value.get().unwrap(),
            _ => return false,
        }
        true
    }

    pub fn property(&self, name: &str) -> Option<glib::Value> {
        Some(match name {
            "state-topic" => self.topic.to_value(),
            "state-brokers" => self.brokers.to_value(),
            "state-config" => ClientConfig::parse(&self.config)
                .map_or_else(|_| String::new(), |c| c.redacted())
                .to_value(),
            "state-interval" => self.interval.to_value(),
            "state-interval-ms" => self.interval_ms.to_value(),
            "idle-timeout" => self.idle_timeout_ms.to_value(),
            _ => return None,
        })
    }

    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_ms > 0).then(|| Duration::from_millis(u64::from(self.idle_timeout_ms)))
    }

    /// The element's place in its state store, when `state-topic` is set.
    pub fn join(&self, part: &'static str) -> Result<Option<Membership>, gst::ErrorMessage> {
        if self.topic.is_empty() {
            return Ok(None);
        }
        let fail =
            |message: String| gst::error_msg!(gst::ResourceError::OpenReadWrite, ("{}", message));
        if self.brokers.is_empty() {
            return Err(fail(format!(
                "state-topic '{}' is set but state-brokers is empty: name the Kafka brokers",
                self.topic
            )));
        }
        if self.interval == 0 && self.interval_ms == 0 {
            return Err(fail(
                "state-interval and state-interval-ms are both 0: a camera state would never \
                 be saved"
                    .into(),
            ));
        }
        let config = ClientConfig::parse(&self.config)
            .and_then(|c| c.with_environment())
            .map_err(|e| fail(format!("state-config: {e}")))?;
        let settings = StoreSettings {
            brokers: self.brokers.clone(),
            topic: self.topic.clone(),
            config,
            policy: SavePolicy {
                frames: self.interval,
                interval_ms: self.interval_ms,
            },
            timeout: STATE_TIMEOUT,
        };
        StateStore::join(&settings, part).map(Some).map_err(fail)
    }
}

/// Least time without frames of a camera before a gap in them is taken for the camera
/// having been on another worker: a partition moving away and back takes two rebalances.
pub const AWAY_AT_LEAST: Duration = Duration::from_millis(500);

/// Where one camera's saved state stands in one element.
#[derive(Default)]
pub struct Checkpoint {
    /// The restored state's position while its frames come again.
    replaying_until: Option<Position>,
    /// Frames since the last save, held uncommitted until a save includes them.
    holds: Vec<RecordHold>,
    last_capture_ms: Option<u64>,
    last_position: Option<Position>,
    last_frame: Option<Instant>,
}

/// What an element does with a frame of a camera.
pub enum Verdict {
    /// The camera's state includes it: update nothing, emit nothing.
    AlreadyIncluded,
    Process,
    /// The camera was away on another worker, which saved a newer state than this
    /// element's: the caller drops its state and restores the camera afresh.
    Outdated,
}

impl Checkpoint {
    /// A camera's first frame in this element: its checkpoint and its state, made by
    /// `restore` from its saved `part` or by `fresh` when there is none, or when `restore`
    /// refuses it (the reason is returned for the caller to count and warn about).
    pub fn start<T>(
        membership: Option<&Membership>,
        camera: &str,
        part: &str,
        restore: impl FnOnce(&serde_json::Value) -> Result<T, String>,
        fresh: impl FnOnce() -> T,
    ) -> (Checkpoint, T, Option<String>) {
        let mut checkpoint = Checkpoint::default();
        match checkpoint
            .restore(membership, camera, part)
            .map(|saved| restore(&saved))
        {
            Some(Ok(state)) => (checkpoint, state, None),
            Some(Err(why)) => {
                checkpoint.discard_restored();
                (checkpoint, fresh(), Some(why))
            }
            None => (checkpoint, fresh(), None),
        }
    }

    /// A camera's first frame in this element: its saved state's `part`, if there is one
    /// (the caller starts from scratch otherwise; an unusable one was warned about).
    fn restore(
        &mut self,
        membership: Option<&Membership>,
        camera: &str,
        part: &str,
    ) -> Option<serde_json::Value> {
        let store = &membership?.store;
        match store.restore(camera) {
            Restored::Found(record) => {
                let state = record.parts.get(part)?.clone();
                self.replaying_until = Some(record.position.clone());
                Some(state)
            }
            Restored::Nothing | Restored::Unusable(_) => None,
        }
    }

    /// Gives up a restored state that did not fit: the camera's frames are processed from
    /// here on.
    fn discard_restored(&mut self) {
        self.replaying_until = None;
    }

    /// Whether `buffer`'s frame (its Kafka record `record`) is to be processed.
    pub fn verdict(
        &mut self,
        membership: Option<&Membership>,
        camera: &str,
        buffer: &gst::BufferRef,
        record: Option<&RecordMeta>,
    ) -> Verdict {
        let quiet_for = self.last_frame.map(|t| t.elapsed());
        self.last_frame = Some(Instant::now());
        let Some(record) = record else {
            return Verdict::Process;
        };
        if let Some(saved) = &self.replaying_until {
            if saved.covers(record) {
                return Verdict::AlreadyIncluded;
            }
            self.replaying_until = None;
        }
        let Some(last) = &self.last_position else {
            return Verdict::Process;
        };
        if last.covers(record) {
            // Read again: its partition was revoked and given back to this process, which
            // resumes from the last commit. The state here includes the frame but may not
            // be saved yet, so its record is held like the ones processed since the save.
            if membership.is_some() {
                self.holds.extend(RecordHold::of(buffer));
            }
            return Verdict::AlreadyIncluded;
        }
        // A gap in the camera's frames after a quiet spell: another worker may have had
        // them (the partition went away and came back, which takes a rebalance). Its saved
        // state is then newer than this one. Gaps without a pause (a camera spread over
        // workers, frames dropped upstream) ask the topic nothing.
        if record.stream == last.stream
            && record.seq > last.seq + 1
            && quiet_for.is_some_and(|quiet| quiet >= AWAY_AT_LEAST)
            && let Some(membership) = membership
            && membership.store.saved_after(camera, last)
        {
            membership.store.forget(camera);
            return Verdict::Outdated;
        }
        Verdict::Process
    }

    /// After a processed frame: remembers its position (a frame read again is not counted
    /// twice), holds its record and saves the state (`snapshot`) when the frame is a save
    /// point. Frames without a Kafka record have no position: nothing to save them at.
    pub fn processed(
        &mut self,
        membership: Option<&Membership>,
        camera: &str,
        part: &str,
        buffer: &gst::BufferRef,
        record: Option<&RecordMeta>,
        snapshot: impl FnOnce() -> serde_json::Value,
    ) {
        let Some(record) = record else {
            return;
        };
        let Some(membership) = membership else {
            self.last_position = Some(Position::of(record));
            return;
        };
        let capture_ms = kafkavision::meta::capture_time(buffer).map(|ns| ns / 1_000_000);
        let due = membership
            .store
            .policy()
            .due(record, capture_ms, self.last_capture_ms);
        self.last_capture_ms = capture_ms.or(self.last_capture_ms);
        let position = Position::of(record);
        self.holds.extend(RecordHold::of(buffer));
        if due {
            let holds = std::mem::take(&mut self.holds);
            membership
                .store
                .stage(camera, &position, part, snapshot(), holds);
        }
        self.last_position = Some(position);
    }

    /// True when the camera has had no frame for `idle`.
    pub fn idle_for(&self, idle: Duration) -> bool {
        self.last_frame.is_some_and(|t| t.elapsed() >= idle)
    }

    /// The camera leaves this element (idle): its state as of its last frame is saved.
    pub fn retire(
        mut self,
        membership: Option<&Membership>,
        camera: &str,
        part: &str,
        snapshot: impl FnOnce() -> serde_json::Value,
    ) {
        let Some(membership) = membership else {
            return;
        };
        // A camera that moved to another worker, which saved it since, keeps that newer
        // state: this element's is out of date and must not replace it.
        if let Some(position) = self.last_position.take()
            && !self.holds.is_empty()
            && !membership.store.saved_after(camera, &position)
        {
            let holds = std::mem::take(&mut self.holds);
            membership
                .store
                .stage(camera, &position, part, snapshot(), holds);
        }
        membership.store.forget(camera);
    }
}

/// A thread that runs `sweep` every `period` until dropped (or until `sweep` returns
/// false): cameras retire after their idle time even when no other frame arrives to
/// notice it.
pub struct Sweeper {
    stop: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sweeper {
    /// Calls `retire(element, idle)` every [`sweep_period`] while `element` lives.
    pub fn retiring<E: ObjectType + Send + Sync>(
        element: &E,
        idle: Duration,
        retire: fn(&E, Duration),
    ) -> Sweeper {
        let element = element.downgrade();
        Sweeper::every(sweep_period(idle), move || {
            let Some(element) = element.upgrade() else {
                return false;
            };
            retire(&element, idle);
            true
        })
    }

    pub fn every(period: Duration, mut sweep: impl FnMut() -> bool + Send + 'static) -> Sweeper {
        let stop = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let signal = stop.clone();
        let thread = std::thread::Builder::new()
            .name("camera-sweeper".into())
            .spawn(move || {
                let (stopped, wake) = &*signal;
                let mut stopped = stopped.lock().unwrap();
                loop {
                    // Checked before waiting too: a stop that came while this thread was
                    // starting or sweeping notified no one, and would cost a whole period.
                    if *stopped {
                        return;
                    }
                    stopped = wake.wait_timeout(stopped, period).unwrap().0;
                    if *stopped {
                        return;
                    }
                    drop(stopped);
                    if !sweep() {
                        return;
                    }
                    stopped = signal.0.lock().unwrap();
                }
            })
            .ok();
        Sweeper { stop, thread }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        *self.stop.0.lock().unwrap() = true;
        self.stop.1.notify_all();
        // The sweeper itself may drop the last reference to its element: no join then.
        if let Some(thread) = self.thread.take()
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

/// How often cameras are checked for `idle`: often enough that one retires within a tenth
/// of its idle time, at most once a second.
pub fn sweep_period(idle: Duration) -> Duration {
    (idle / 10).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(offset: i64, seq: u64) -> RecordMeta {
        RecordMeta {
            topic: "frames".into(),
            partition: 0,
            offset,
            key: Some("cam".into()),
            stream: "s1".into(),
            seq,
        }
    }

    #[test]
    fn frames_read_again_after_a_rebalance_are_already_included() {
        gst::init().unwrap();
        let buffer = gst::Buffer::new();
        let mut checkpoint = Checkpoint::default();
        for (offset, seq) in [(10, 1), (12, 2), (13, 3)] {
            let record = frame(offset, seq);
            assert!(matches!(
                checkpoint.verdict(None, "cam", &buffer, Some(&record)),
                Verdict::Process
            ));
            checkpoint.processed(None, "cam", "part", &buffer, Some(&record), || {
                serde_json::Value::Null
            });
        }
        // The partition came back: the records after the last commit come again.
        for (offset, seq) in [(12, 2), (13, 3)] {
            assert!(matches!(
                checkpoint.verdict(None, "cam", &buffer, Some(&frame(offset, seq))),
                Verdict::AlreadyIncluded
            ));
        }
        assert!(matches!(
            checkpoint.verdict(None, "cam", &buffer, Some(&frame(15, 4))),
            Verdict::Process
        ));
        // Without a Kafka record there is no position to compare.
        assert!(matches!(
            checkpoint.verdict(None, "cam", &buffer, None),
            Verdict::Process
        ));
    }
}
