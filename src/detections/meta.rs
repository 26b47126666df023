// SPDX-License-Identifier: MIT OR Apache-2.0
//! Detections on buffers: the region-of-interest metas a detector attaches ⇄ the
//! `gkv.detections` JSON of [`super`]. Every element and application that turns one into
//! the other goes through here, so a change of the schema touches `detections/` only.
//!
//! On a buffer, each detection is a `GstVideoRegionOfInterestMeta` (roi type = label, box
//! in frame pixels) with a param structure named `detection`:
//!
//! | field        | type    | meaning |
//! |--------------|---------|---------|
//! | `class-id`   | uint    | class index in the model |
//! | `label`      | string  | class name |
//! | `confidence` | double  | score, 0..1 |
//! | `inferred`   | boolean | false when a detector carried the result of an earlier frame forward |
//! | `track-id`   | uint64  | the object's track (`objecttrack`); absent when not tracked |

use super::{Detection, FrameDetections, Rect, SCHEMA, SCHEMA_VERSION, SourceRecord};
use crate::meta::{KafkaHeaders, RecordMeta};

/// Name of the param structure of a detection's region-of-interest meta.
pub const PARAM: &str = "detection";

/// Attaches one detection as a region-of-interest meta; its edges are rounded to whole
/// pixels, negative (and NaN) coordinates become 0.
pub fn attach(buffer: &mut gst::BufferRef, detection: &Detection) {
    let b = &detection.bbox;
    let pixels = |v: f64| v.max(0.0).round() as u32;
    let (x, y) = (pixels(b.x), pixels(b.y));
    let right = pixels(b.x + b.width).max(x);
    let bottom = pixels(b.y + b.height).max(y);
    let rect = (x, y, right - x, bottom - y);
    let mut meta = gst_video::VideoRegionOfInterestMeta::add(buffer, &detection.label, rect);
    let mut param = gst::Structure::builder(PARAM)
        .field("class-id", detection.class_id)
        .field("label", detection.label.as_str())
        .field("confidence", detection.confidence)
        .field("inferred", detection.inferred);
    if let Some(track_id) = detection.track_id {
        param = param.field("track-id", track_id);
    }
    meta.add_param(param.build());
}

/// Replaces the detections of `buffer` (its region-of-interest metas with a `detection`
/// param; others stay) with `detections`.
pub fn replace(buffer: &mut gst::BufferRef, detections: &[Detection]) {
    use std::ops::ControlFlow;
    buffer.foreach_meta_mut(|mut meta| {
        let is_detection = meta
            .downcast_ref::<gst_video::VideoRegionOfInterestMeta>()
            .is_some_and(|roi| roi.param(PARAM).is_some());
        ControlFlow::Continue(if is_detection {
            gst::buffer::BufferMetaForeachAction::Remove
        } else {
            gst::buffer::BufferMetaForeachAction::Keep
        })
    });
    for detection in detections {
        attach(buffer, detection);
    }
}

/// The detections of `buffer`: its region-of-interest metas that carry a `detection`
/// param, boxes normalised by the frame size.
pub fn of_buffer(buffer: &gst::BufferRef, width: u32, height: u32) -> Vec<Detection> {
    buffer
        .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
        .filter_map(|meta| {
            let param = meta.param(PARAM)?;
            let (x, y, w, h) = meta.rect();
            let label = param
                .get::<String>("label")
                .unwrap_or_else(|_| meta.roi_type().to_string());
            let mut detection = Detection::new(
                &label,
                param.get::<u32>("class-id").unwrap_or(0),
                param.get::<f64>("confidence").unwrap_or(0.0),
                param.get::<bool>("inferred").unwrap_or(true),
                Rect {
                    x: x as f64,
                    y: y as f64,
                    width: w as f64,
                    height: h as f64,
                },
                width,
                height,
            );
            detection.track_id = param.get::<u64>("track-id").ok();
            Some(detection)
        })
        .collect()
}

/// What a frame's detections record says besides the detections, and the buffer does not.
pub struct FrameOrigin<'a> {
    pub stream: &'a str,
    pub camera: Option<&'a str>,
    pub seq: u64,
    pub width: u32,
    pub height: u32,
    /// Unix ns the frame entered the system.
    pub capture_time_ns: Option<u64>,
}

/// One frame's detections record, from its region-of-interest metas and, when it came
/// through `kafkasrc`, its record meta (the `source`).
pub fn frame_detections(buffer: &gst::BufferRef, origin: &FrameOrigin<'_>) -> FrameDetections {
    FrameDetections {
        schema: SCHEMA.to_string(),
        version: SCHEMA_VERSION,
        stream: origin.stream.to_string(),
        camera: origin.camera.map(String::from),
        seq: origin.seq,
        pts_ns: buffer.pts().map(|t| t.nseconds()),
        capture_time_ns: origin.capture_time_ns,
        width: origin.width,
        height: origin.height,
        source: RecordMeta::of(buffer).map(SourceRecord::from),
        detections: of_buffer(buffer, origin.width, origin.height),
    }
}

/// Attaches a record's detections to `buffer` as region-of-interest metas.
pub fn attach_frame(buffer: &mut gst::BufferRef, frame: &FrameDetections) {
    for detection in &frame.detections {
        attach(buffer, detection);
    }
}

/// The detections in `buffer`'s `gkv-detections` Kafka header, if it has one.
pub fn from_header(buffer: &gst::BufferRef) -> Option<Result<FrameDetections, String>> {
    let headers = KafkaHeaders::of(buffer);
    let json = headers.get(super::HEADER)?;
    Some(FrameDetections::from_json(json).map_err(|e| format!("header {}: {e}", super::HEADER)))
}

/// The detections a record read by `kafkasrc` carries, as its `caps` say: a detections
/// record (`detectionsconvert ! kafkasink`) is its value; any other record (an annotated
/// frame) carries them in its `gkv-detections` header. `None` when it has neither; the
/// error says what could not be read.
pub fn of_record(
    buffer: &gst::BufferRef,
    caps: Option<&gst::CapsRef>,
) -> Option<Result<FrameDetections, String>> {
    let caps_name = caps.and_then(|c| c.structure(0)).map(|s| s.name());
    // Without caps the value is all there is.
    if caps_name.is_none_or(|name| name == super::CAPS) {
        return Some(match buffer.map_readable() {
            Ok(map) => FrameDetections::from_json(map.as_slice()),
            Err(_) => Err("the record's value could not be read".into()),
        });
    }
    from_header(buffer)
}

/// Puts `frame` into `buffer`'s `gkv-detections` Kafka header, which `kafkasink` writes.
pub fn set_header(buffer: &mut gst::BufferRef, frame: &FrameDetections) {
    KafkaHeaders::set_on(buffer, super::HEADER, &frame.to_json());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_of_interest_metas_to_json_and_back() {
        gst::init().unwrap();
        let mut buffer = gst::Buffer::new();
        {
            let buffer = buffer.get_mut().unwrap();
            buffer.set_pts(gst::ClockTime::from_mseconds(1400));
            RecordMeta {
                topic: "frames".into(),
                partition: 2,
                offset: 17,
                key: Some("cam1".into()),
                stream: "cam1-ab".into(),
                seq: 9,
            }
            .attach(buffer);
            let car = Rect {
                x: 128.0,
                y: 72.0,
                width: 64.0,
                height: 36.0,
            };
            attach(
                buffer,
                &Detection::new("car", 2, 0.5, false, car, 1280, 720),
            );
            // A region of interest some other element added: not a detection.
            gst_video::VideoRegionOfInterestMeta::add(buffer, "face", (1, 2, 3, 4));
        }
        let origin = FrameOrigin {
            stream: "det-1",
            camera: Some("cam1"),
            seq: 3,
            width: 1280,
            height: 720,
            capture_time_ns: Some(5),
        };
        let frame = frame_detections(&buffer, &origin);
        assert_eq!(frame.pts_ns, Some(1_400_000_000));
        assert_eq!(frame.source.as_ref().unwrap().offset, 17);
        assert_eq!(frame.detections.len(), 1);
        let d = &frame.detections[0];
        assert_eq!(
            (d.label.as_str(), d.class_id, d.inferred),
            ("car", 2, false)
        );
        assert_eq!(d.box_normalized.x, 0.1);

        let mut copy = gst::Buffer::new();
        set_header(copy.get_mut().unwrap(), &frame);
        let read = from_header(&copy).unwrap().unwrap();
        assert_eq!(read, frame);
        attach_frame(copy.get_mut().unwrap(), &read);
        assert_eq!(of_buffer(&copy, 1280, 720), frame.detections);

        // Replacing keeps other regions of interest.
        let untracked: Vec<Detection> = frame
            .detections
            .iter()
            .map(|d| Detection {
                track_id: None,
                ..d.clone()
            })
            .collect();
        replace(buffer.get_mut().unwrap(), &untracked);
        assert_eq!(of_buffer(&buffer, 1280, 720), untracked);
        assert_eq!(
            buffer
                .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
                .count(),
            2,
            "the face stays"
        );
    }

    #[test]
    fn a_garbage_header_is_an_error_naming_it() {
        gst::init().unwrap();
        let mut buffer = gst::Buffer::new();
        KafkaHeaders::set_on(buffer.get_mut().unwrap(), super::super::HEADER, b"{oops");
        let err = from_header(&buffer).unwrap().unwrap_err();
        assert!(err.contains("gkv-detections"), "{err}");
        assert!(from_header(&gst::Buffer::new()).is_none());
    }

    #[test]
    fn a_record_holds_detections_as_its_value_or_in_its_header() {
        gst::init().unwrap();
        let frame = FrameDetections::from_json(
            br#"{"schema":"gkv.detections","version":1,"stream":"s","camera":null,"seq":4,
                "pts_ns":null,"capture_time_ns":null,"width":2,"height":2,"detections":[]}"#,
        )
        .unwrap();
        let detections_caps = gst::Caps::new_empty_simple(super::super::CAPS);
        let value = gst::Buffer::from_slice(frame.to_json());
        let read = |buffer: &gst::Buffer, caps: Option<&gst::Caps>| {
            of_record(buffer, caps.map(|c| c.as_ref()))
        };
        assert_eq!(
            read(&value, Some(&detections_caps)),
            Some(Ok(frame.clone()))
        );
        assert_eq!(read(&value, None), Some(Ok(frame.clone())));

        let jpeg_caps = gst::Caps::new_empty_simple("image/jpeg");
        let mut annotated = gst::Buffer::from_slice(vec![0xFF, 0xD8]);
        assert_eq!(read(&annotated, Some(&jpeg_caps)), None);
        set_header(annotated.get_mut().unwrap(), &frame);
        assert_eq!(read(&annotated, Some(&jpeg_caps)), Some(Ok(frame)));

        let garbage = gst::Buffer::from_slice(b"not a detections record");
        let err = read(&garbage, Some(&detections_caps)).unwrap().unwrap_err();
        assert!(err.contains("gkv.detections"), "{err}");
    }
}
