// SPDX-License-Identifier: MIT OR Apache-2.0
//! Events: what happened in a camera's view, one small JSON record each: a tracked object
//! crossed a line, entered a zone or left it. Written by `eventsconvert` (from the events
//! `crossingcount` attaches), keyed by camera; a frame where nothing happened writes
//! nothing. Written and read here only; [`meta`] holds them on buffers.
//!
//! ```json
//! {"schema": "gkv.events", "version": 1, "kind": "line-crossed",
//!  "event_id": "5a0e7cf2b1d49e38",
//!  "camera": "cam1", "line": "gate", "direction": "in",
//!  "track_id": 7, "label": "car", "pts_ns": 1400000000,
//!  "capture_time_ns": 1763700000000000000,
//!  "source": {"topic": "frames", "partition": 0, "offset": 42, "stream": "cam1-09b1", "seq": 42}}
//! {"schema": "gkv.events", "version": 1, "kind": "zone-left", "camera": "cam1",
//!  "zone": "dock", "track_id": 9, "label": "truck", "dwell_ms": 4200, ...}
//! ```
//!
//! `kind` is `line-crossed` (with `line` and `direction`: `in` when the object came from
//! the right of the line drawn from its first point to its second, `out` from the left),
//! `zone-entered` or `zone-left` (with `zone`; `dwell_ms` on leaving: how long the object
//! was inside). `pts_ns` and `capture_time_ns` are those of the frame where it happened;
//! `source` names the Kafka record of that frame. `event_id` (16 hex digits, [`event_id`])
//! is the same whenever the same crossing is computed again from the same frames, as when
//! a worker replacing a dead one re-reads them: readers count an event once by its id
//! ([`tally`]). Events written before it existed have none (it was added within version
//! 1: an optional field, which older readers ignore). Readers ignore unknown fields; a
//! higher `version` is refused.

use serde::{Deserialize, Serialize};

use crate::detections::SourceRecord;
pub use crate::identity::{event_id, track_id};

#[cfg(feature = "gst")]
pub mod meta;
pub mod tally;

pub const SCHEMA: &str = "gkv.events";
pub const SCHEMA_VERSION: u32 = 1;
/// Caps of event records.
pub const CAPS: &str = "application/x-gkv-events+json";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    LineCrossed,
    ZoneEntered,
    ZoneLeft,
}

impl EventKind {
    /// The name JSON gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::LineCrossed => "line-crossed",
            EventKind::ZoneEntered => "zone-entered",
            EventKind::ZoneLeft => "zone-left",
        }
    }
}

/// Which way a line was crossed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// From the right of the line (looking from its first point to its second) to the left.
    In,
    /// From the left to the right.
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub schema: String,
    pub version: u32,
    pub kind: EventKind,
    /// The same for the same event computed again ([`event_id`]); None in events written
    /// before ids existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    pub camera: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    pub track_id: u64,
    pub label: String,
    pub pts_ns: Option<u64>,
    pub capture_time_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dwell_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRecord>,
}

impl Event {
    /// An event of `kind` for a track; the caller fills in line or zone and the rest.
    pub fn new(kind: EventKind, track_id: u64, label: &str) -> Event {
        Event {
            schema: SCHEMA.to_string(),
            version: SCHEMA_VERSION,
            kind,
            event_id: None,
            camera: None,
            line: None,
            zone: None,
            direction: None,
            track_id,
            label: label.to_string(),
            pts_ns: None,
            capture_time_ns: None,
            dwell_ms: None,
            source: None,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain data always serialises")
    }

    /// Reads one event; the error says what is wrong.
    pub fn from_json(bytes: &[u8]) -> Result<Event, String> {
        let event: Event =
            serde_json::from_slice(bytes).map_err(|e| format!("not gkv.events JSON: {e}"))?;
        if event.schema != SCHEMA {
            return Err(format!("schema '{}' is not {SCHEMA}", event.schema));
        }
        if event.version > SCHEMA_VERSION {
            return Err(format!(
                "events version {} is newer than this reader ({SCHEMA_VERSION})",
                event.version
            ));
        }
        Ok(event)
    }

    /// The line or zone the event is about.
    pub fn place(&self) -> &str {
        self.line.as_deref().or(self.zone.as_deref()).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_the_documented_shape() {
        let mut event = Event::new(EventKind::LineCrossed, 7, "car");
        event.camera = Some("cam1".into());
        event.line = Some("gate".into());
        event.direction = Some(Direction::In);
        event.pts_ns = Some(1_400_000_000);
        let json = event.to_json();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.contains("\"kind\":\"line-crossed\""), "{text}");
        assert!(text.contains("\"direction\":\"in\""), "{text}");
        assert!(!text.contains("zone"), "{text}");
        assert!(!text.contains("event_id"), "no id, no field: {text}");
        assert_eq!(Event::from_json(&json).unwrap(), event);
        assert_eq!(event.place(), "gate");

        event.event_id = Some("5a0e7cf2b1d49e38".into());
        let text = String::from_utf8(event.to_json()).unwrap();
        assert!(text.contains("\"event_id\":\"5a0e7cf2b1d49e38\""), "{text}");
        assert_eq!(Event::from_json(text.as_bytes()).unwrap(), event);
    }

    #[test]
    fn events_of_older_writers_and_unknown_fields_are_read() {
        let old = br#"{"schema":"gkv.events","version":1,"kind":"zone-entered","camera":"cam1",
            "zone":"dock","track_id":9,"label":"truck","pts_ns":null,"capture_time_ns":null}"#;
        let event = Event::from_json(old).unwrap();
        assert_eq!((event.event_id, event.track_id), (None, 9));
        let newer = br#"{"schema":"gkv.events","version":1,"kind":"zone-left","camera":"cam1",
            "zone":"dock","track_id":9,"label":"truck","pts_ns":null,"capture_time_ns":null,
            "event_id":"00000000000000ff","future_field":[1,2]}"#;
        let event = Event::from_json(newer).unwrap();
        assert_eq!(event.event_id.as_deref(), Some("00000000000000ff"));
    }

    #[test]
    fn kind_names_are_those_of_the_json() {
        for kind in [
            EventKind::LineCrossed,
            EventKind::ZoneEntered,
            EventKind::ZoneLeft,
        ] {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
    }

    #[test]
    fn other_schemas_newer_versions_and_garbage_are_refused() {
        let mut event = Event::new(EventKind::ZoneLeft, 1, "person");
        event.version = 2;
        assert!(
            Event::from_json(&event.to_json())
                .unwrap_err()
                .contains("newer")
        );
        event.version = 1;
        event.schema = "gkv.detections".into();
        assert!(
            Event::from_json(&event.to_json())
                .unwrap_err()
                .contains("schema")
        );
        assert!(Event::from_json(b"[]").is_err());
    }
}
