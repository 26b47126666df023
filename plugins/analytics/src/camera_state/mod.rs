// SPDX-License-Identifier: MIT OR Apache-2.0
//! A camera's analytics state that outlives the worker computing it: `objecttrack`'s
//! tracks and `crossingcount`'s sides, zone visits and counts, saved together as one
//! `gkv.camera-state` record per camera to a compacted Kafka topic (`state-topic`), and
//! restored by whichever worker reads the camera's frames next.
//!
//! One record holds every stateful element's part, all as of the same frame (its
//! [`Position`]): the elements of one pipeline that name the same state topic share one
//! [`store::StateStore`], each hands it its part at the same save points, and the record is
//! written once every part is in. A frame's Kafka record is held (not committed) until a
//! saved state includes it, so the next worker reads again exactly the frames the saved
//! state lacks; frames at or before the saved position update nothing and emit nothing,
//! and the frames after it give the same tracks, events and event ids as the first time.
//!
//! ```json
//! {"schema": "gkv.camera-state", "version": 1, "camera": "cam1",
//!  "position": {"topic": "frames", "partition": 0, "offset": 4242, "stream": "cam1-09b1", "seq": 420},
//!  "saved_at_ms": 1763700000000,
//!  "parts": {"objecttrack": {...}, "crossingcount": {...}}}
//! ```

use std::collections::BTreeMap;

use kafkavision::meta::RecordMeta;
use serde::{Deserialize, Serialize};

pub mod element;
pub mod store;

pub const SCHEMA: &str = "gkv.camera-state";
pub const SCHEMA_VERSION: u32 = 1;
/// Largest state record read back: a bigger one is not ours.
pub const MAX_RECORD_BYTES: usize = 8 << 20;

/// The Kafka record of the last frame a state includes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub stream: String,
    pub seq: u64,
}

impl Position {
    pub fn of(record: &RecordMeta) -> Position {
        Position {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            stream: record.stream.clone(),
            seq: record.seq,
        }
    }

    /// True when the state saved at this position already includes `frame`: an earlier
    /// record of the same partition, or an earlier frame of the same stream.
    pub fn covers(&self, frame: &RecordMeta) -> bool {
        if frame.topic == self.topic && frame.partition == self.partition {
            frame.offset <= self.offset
        } else {
            frame.stream == self.stream && frame.seq <= self.seq
        }
    }

    /// True when this position is later in the same partition than `other`: a state saved
    /// at `other` is older.
    pub fn is_after(&self, other: &Position) -> bool {
        if self.topic == other.topic && self.partition == other.partition {
            self.offset > other.offset
        } else {
            self.stream == other.stream && self.seq > other.seq
        }
    }
}

/// One camera's saved state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateRecord {
    pub schema: String,
    pub version: u32,
    pub camera: String,
    pub position: Position,
    pub saved_at_ms: i64,
    /// Per element (`objecttrack`, `crossingcount`): its own state, read only by it.
    pub parts: BTreeMap<String, serde_json::Value>,
}

impl StateRecord {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain data always serialises")
    }

    /// Reads the state record stored under `camera`; the error says why it is not usable.
    pub fn from_json(bytes: &[u8], camera: &str) -> Result<StateRecord, String> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(format!(
                "{} bytes, more than a camera state holds",
                bytes.len()
            ));
        }
        let record: StateRecord =
            serde_json::from_slice(bytes).map_err(|e| format!("not {SCHEMA} JSON: {e}"))?;
        if record.schema != SCHEMA {
            return Err(format!("schema '{}' is not {SCHEMA}", record.schema));
        }
        if record.version > SCHEMA_VERSION {
            return Err(format!(
                "state version {} is newer than this element ({SCHEMA_VERSION})",
                record.version
            ));
        }
        if record.camera != camera {
            return Err(format!(
                "it is the state of camera {:?}, stored under {camera:?}",
                record.camera
            ));
        }
        Ok(record)
    }
}

/// When a camera's state is saved: every `frames` frames (by the frames' sequence numbers)
/// or when the frames' capture time enters a new `interval_ms` slot, whichever comes first.
/// A function of the frames alone, so every element of the pipeline picks the same frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SavePolicy {
    pub frames: u32,
    pub interval_ms: u32,
}

impl SavePolicy {
    /// True when the state after `frame` is to be saved; `previous_capture_ms` is the
    /// capture time of the camera's previous frame.
    pub fn due(
        &self,
        frame: &RecordMeta,
        capture_ms: Option<u64>,
        previous_capture_ms: Option<u64>,
    ) -> bool {
        let by_frames = self.frames > 0 && frame.seq.is_multiple_of(u64::from(self.frames));
        let by_time = match (self.interval_ms, capture_ms, previous_capture_ms) {
            (0, _, _) | (_, None, _) => false,
            (_, Some(_), None) => true,
            (ms, Some(now), Some(before)) => now / u64::from(ms) != before / u64::from(ms),
        };
        by_frames || by_time
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(partition: i32, offset: i64, stream: &str, seq: u64) -> RecordMeta {
        RecordMeta {
            topic: "frames".into(),
            partition,
            offset,
            key: Some("cam1".into()),
            stream: stream.into(),
            seq,
        }
    }

    #[test]
    fn a_position_covers_earlier_records_of_its_partition_or_stream() {
        let saved = Position::of(&frame(0, 100, "s1", 50));
        assert!(saved.covers(&frame(0, 100, "s1", 50)));
        assert!(saved.covers(&frame(0, 90, "s1", 40)));
        assert!(!saved.covers(&frame(0, 101, "s1", 51)));
        // Another partition (the camera moved): its stream decides.
        assert!(saved.covers(&frame(1, 7, "s1", 49)));
        assert!(!saved.covers(&frame(1, 7, "s2", 1)));
        assert!(Position::of(&frame(0, 101, "s1", 51)).is_after(&saved));
        assert!(!saved.is_after(&saved));
    }

    #[test]
    fn garbage_newer_versions_and_other_cameras_are_refused() {
        let record = StateRecord {
            schema: SCHEMA.into(),
            version: SCHEMA_VERSION,
            camera: "cam1".into(),
            position: Position::of(&frame(0, 1, "s1", 1)),
            saved_at_ms: 1,
            parts: BTreeMap::new(),
        };
        let json = record.to_json();
        assert_eq!(StateRecord::from_json(&json, "cam1").unwrap(), record);
        assert!(
            StateRecord::from_json(&json, "cam2")
                .unwrap_err()
                .contains("cam1")
        );
        let newer = StateRecord {
            version: SCHEMA_VERSION + 1,
            ..record.clone()
        };
        assert!(
            StateRecord::from_json(&newer.to_json(), "cam1")
                .unwrap_err()
                .contains("newer")
        );
        assert!(StateRecord::from_json(b"\x00garbage", "cam1").is_err());
        assert!(StateRecord::from_json(b"{}", "cam1").is_err());
    }

    #[test]
    fn save_points_depend_on_the_frame_alone() {
        let policy = SavePolicy {
            frames: 10,
            interval_ms: 1000,
        };
        assert!(policy.due(&frame(0, 0, "s", 20), None, None));
        assert!(!policy.due(&frame(0, 0, "s", 21), None, None));
        assert!(policy.due(&frame(0, 0, "s", 21), Some(5_000), Some(4_999)));
        assert!(!policy.due(&frame(0, 0, "s", 21), Some(5_500), Some(5_000)));
        assert!(policy.due(&frame(0, 0, "s", 21), Some(5_500), None));
        let never = SavePolicy {
            frames: 0,
            interval_ms: 0,
        };
        assert!(!never.due(&frame(0, 0, "s", 0), Some(1), None));
    }
}
