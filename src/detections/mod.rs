// SPDX-License-Identifier: MIT OR Apache-2.0
//! The detections of one frame as JSON: the schema detections-only Kafka records carry
//! (`detectionsconvert ! kafkasink`) and that rides with annotated frames in the
//! `gkv-detections` header (`detectionsconvert output=header`). Written and read here only;
//! [`meta`] maps it to and from the region-of-interest metas detectors attach.
//!
//! ```json
//! {"schema": "gkv.detections", "version": 1,
//!  "stream": "cam1-5f3a9c0e", "camera": "cam1", "seq": 42,
//!  "pts_ns": 1400000000, "capture_time_ns": 1763700000000000000,
//!  "width": 1280, "height": 720,
//!  "source": {"topic": "frames", "partition": 3, "offset": 1187,
//!             "stream": "cam1-09b1d2aa", "seq": 1187},
//!  "detections": [
//!    {"label": "car", "class_id": 2, "confidence": 0.91, "inferred": true,
//!     "box": {"x": 100.0, "y": 200.0, "width": 50.0, "height": 40.0},
//!     "box_normalized": {"x": 0.078, "y": 0.278, "width": 0.039, "height": 0.056},
//!     "track_id": 7}]}
//! ```
//!
//! Boxes are in frame pixels (`box`) and as fractions of the frame size
//! (`box_normalized`). `camera` is the record key the frame was published with (null if
//! none); `capture_time_ns` the Unix time the frame entered the system (its first
//! `kafkasink`); `inferred` is false for frames a detector skipped (`interval`), which
//! carry the last result. `track_id` (optional) is the object's track after `objecttrack`:
//! the same id on every frame while the object stays in view. `source` names the Kafka record the frame was read from (when it
//! came through `kafkasrc`): where to fetch the frame, and the sequence number loss and
//! duplicate checks count on. Readers ignore unknown fields; a higher `version` is refused.

use serde::{Deserialize, Serialize};

#[cfg(feature = "gst")]
pub mod meta;

pub const SCHEMA: &str = "gkv.detections";
pub const SCHEMA_VERSION: u32 = 1;
/// Caps of detections-only records.
pub const CAPS: &str = "application/x-gkv-detections+json";
/// The Kafka header that carries a frame's detections next to the frame itself.
pub const HEADER: &str = "gkv-detections";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rect {
    #[serde(deserialize_with = "number_or_null")]
    pub x: f64,
    #[serde(deserialize_with = "number_or_null")]
    pub y: f64,
    #[serde(deserialize_with = "number_or_null")]
    pub width: f64,
    #[serde(deserialize_with = "number_or_null")]
    pub height: f64,
}

/// A number, or null read as NaN: JSON has no NaN or infinity and serde_json writes them as
/// null, so one odd value from a detector must not make the whole frame unreadable.
fn number_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub label: String,
    pub class_id: u32,
    #[serde(deserialize_with = "number_or_null")]
    pub confidence: f64,
    #[serde(default = "default_true")]
    pub inferred: bool,
    #[serde(rename = "box")]
    pub bbox: Rect,
    pub box_normalized: Rect,
    /// The object's track id (`objecttrack`), stable while it stays in view; absent for
    /// untracked detections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_id: Option<u64>,
}

fn default_true() -> bool {
    true
}

impl Detection {
    /// A detection from a pixel box; the normalised box is derived from the frame size.
    pub fn new(
        label: &str,
        class_id: u32,
        confidence: f64,
        inferred: bool,
        bbox: Rect,
        width: u32,
        height: u32,
    ) -> Self {
        let (w, h) = (width.max(1) as f64, height.max(1) as f64);
        Detection {
            label: label.to_string(),
            class_id,
            confidence,
            inferred,
            box_normalized: Rect {
                x: bbox.x / w,
                y: bbox.y / h,
                width: bbox.width / w,
                height: bbox.height / h,
            },
            bbox,
            track_id: None,
        }
    }

    /// The same detection with a track id.
    pub fn with_track(mut self, track_id: u64) -> Self {
        self.track_id = Some(track_id);
        self
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameDetections {
    pub schema: String,
    pub version: u32,
    pub stream: String,
    pub camera: Option<String>,
    pub seq: u64,
    pub pts_ns: Option<u64>,
    pub capture_time_ns: Option<u64>,
    pub width: u32,
    pub height: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRecord>,
    pub detections: Vec<Detection>,
}

/// The Kafka record a frame was read from, and its place in the stream that wrote it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub stream: String,
    pub seq: u64,
}

impl FrameDetections {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain data always serialises")
    }

    /// Reads one frame's detections; the error says what is wrong.
    pub fn from_json(bytes: &[u8]) -> Result<FrameDetections, String> {
        let frame: FrameDetections =
            serde_json::from_slice(bytes).map_err(|e| format!("not gkv.detections JSON: {e}"))?;
        if frame.schema != SCHEMA {
            return Err(format!("schema '{}' is not {SCHEMA}", frame.schema));
        }
        if frame.version > SCHEMA_VERSION {
            return Err(format!(
                "detections version {} is newer than this reader ({SCHEMA_VERSION})",
                frame.version
            ));
        }
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FrameDetections {
        FrameDetections {
            schema: SCHEMA.into(),
            version: SCHEMA_VERSION,
            stream: "cam1-00ff".into(),
            camera: Some("cam1".into()),
            seq: 42,
            pts_ns: Some(1_400_000_000),
            capture_time_ns: Some(1_763_700_000_000_000_000),
            width: 1280,
            height: 720,
            source: Some(SourceRecord {
                topic: "frames".into(),
                partition: 3,
                offset: 1187,
                stream: "cam1-09b1d2aa".into(),
                seq: 1187,
            }),
            detections: vec![Detection::new(
                "car",
                2,
                0.91,
                true,
                Rect {
                    x: 128.0,
                    y: 72.0,
                    width: 64.0,
                    height: 36.0,
                },
                1280,
                720,
            )],
        }
    }

    #[test]
    fn round_trip_and_normalised_boxes() {
        let frame = sample();
        let json = frame.to_json();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.contains("\"box\":{\"x\":128.0"), "{text}");
        assert_eq!(FrameDetections::from_json(&json).unwrap(), frame);
        let n = &frame.detections[0].box_normalized;
        assert_eq!((n.x, n.y, n.width, n.height), (0.1, 0.1, 0.05, 0.05));
    }

    #[test]
    fn wrong_schema_newer_version_and_garbage_are_refused() {
        let mut frame = sample();
        frame.version = 2;
        assert!(
            FrameDetections::from_json(&frame.to_json())
                .unwrap_err()
                .contains("newer")
        );
        frame.version = 1;
        frame.schema = "other".into();
        assert!(
            FrameDetections::from_json(&frame.to_json())
                .unwrap_err()
                .contains("schema")
        );
        assert!(FrameDetections::from_json(b"{not json").is_err());
    }
}
