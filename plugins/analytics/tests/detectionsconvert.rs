// SPDX-License-Identifier: MIT OR Apache-2.0
//! `detectionsconvert` on its own, in a harness: region-of-interest metas to a JSON buffer
//! and to a header, and back to metas; cameras and their streams; bad JSON.

use gst::prelude::*;
use gst_check::Harness;
use kafkavision::detections::meta as detections_meta;
use kafkavision::detections::{CAPS, Detection, FrameDetections, Rect};
use kafkavision::meta::{KafkaHeaders, RECORD_META, RecordMeta};

fn init() {
    testkit::init(&[gstgkvanalytics::plugin_register_static]);
}

fn harness(properties: &[(&str, &str)]) -> Harness {
    init();
    let convert = gst::ElementFactory::make("detectionsconvert")
        .name("convert")
        .build()
        .unwrap();
    for (name, value) in properties {
        convert.set_property_from_str(name, value);
    }
    let mut h = Harness::with_element(&convert, Some("sink"), Some("src"));
    h.set_src_caps_str("video/x-raw, format=(string)I420, width=(int)640, height=(int)480");
    h
}

/// A frame of camera `key` with one detection, read from Kafka record `offset`; its record
/// meta carries a field of kafkasrc's own, as the release token rides there.
fn frame(key: &str, offset: i64, pts_ms: u64) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_slice(vec![7u8; 640 * 480 * 3 / 2]);
    {
        let b = buffer.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(pts_ms));
        b.set_flags(gst::BufferFlags::DELTA_UNIT);
        let mut meta = RecordMeta {
            topic: "frames".into(),
            partition: 0,
            offset,
            key: Some(key.into()),
            stream: format!("{key}-run"),
            seq: offset as u64,
        }
        .attach(b)
        .unwrap();
        meta.mut_structure().set("owner-field", 5u32);
        let car = Rect {
            x: 64.0,
            y: 48.0,
            width: 32.0,
            height: 24.0,
        };
        detections_meta::attach(b, &Detection::new("car", 2, 0.75, true, car, 640, 480));
    }
    buffer
}

#[test]
fn json_output_is_one_record_per_frame_numbered_per_camera() {
    let mut h = harness(&[]);
    for (key, offset) in [("cam1", 10), ("cam2", 11), ("cam1", 12)] {
        h.push(frame(key, offset, offset as u64 * 100)).unwrap();
    }
    let caps = h.sinkpad().unwrap().current_caps().unwrap();
    assert_eq!(caps.structure(0).unwrap().name(), CAPS);
    let mut seqs = Vec::new();
    for offset in [10i64, 11, 12] {
        let out = h.pull().unwrap();
        let frame = FrameDetections::from_json(out.map_readable().unwrap().as_slice()).unwrap();
        assert_eq!((frame.width, frame.height), (640, 480));
        assert_eq!(frame.pts_ns, Some(offset as u64 * 100_000_000));
        assert_eq!(frame.source.as_ref().unwrap().offset, offset);
        let d = &frame.detections[0];
        assert_eq!(
            (d.label.as_str(), d.class_id, d.confidence),
            ("car", 2, 0.75)
        );
        assert_eq!((d.bbox.x, d.bbox.width), (64.0, 32.0));
        seqs.push((
            frame.camera.clone().unwrap(),
            frame.stream.clone(),
            frame.seq,
        ));
        // Timestamps and the whole record meta go on (the source record is released only
        // with this buffer); the frame's flags do not.
        assert_eq!(
            out.pts(),
            Some(gst::ClockTime::from_mseconds(offset as u64 * 100))
        );
        assert!(!out.flags().contains(gst::BufferFlags::DELTA_UNIT));
        let meta = gst::meta::CustomMeta::from_buffer(&out, RECORD_META).unwrap();
        assert_eq!(meta.structure().get::<u32>("owner-field"), Ok(5));
    }
    assert_eq!(seqs[0].0, "cam1");
    assert_eq!(seqs[0].2, 0);
    assert_eq!(seqs[1].2, 0, "cam2 has a stream of its own");
    assert_eq!((seqs[2].1.as_str(), seqs[2].2), (seqs[0].1.as_str(), 1));
    assert!(seqs[0].1.starts_with("cam1-") && seqs[1].1.starts_with("cam2-"));
}

#[test]
fn the_camera_property_names_every_record() {
    let mut h = harness(&[("camera", "gate-3")]);
    h.push(frame("cam1", 1, 0)).unwrap();
    let out = h.pull().unwrap();
    let frame = FrameDetections::from_json(out.map_readable().unwrap().as_slice()).unwrap();
    assert_eq!(frame.camera.as_deref(), Some("gate-3"));
}

#[test]
fn header_output_keeps_the_frame_and_metas_output_brings_the_boxes_back() {
    let mut to_header = harness(&[("output", "header")]);
    let sent = frame("cam1", 4, 40);
    to_header.push(sent.clone()).unwrap();
    let annotated = to_header.pull().unwrap();
    assert_eq!(
        annotated.map_readable().unwrap().as_slice(),
        sent.map_readable().unwrap().as_slice()
    );
    assert!(annotated.flags().contains(gst::BufferFlags::DELTA_UNIT));
    let json = KafkaHeaders::of(&annotated)
        .get("gkv-detections")
        .unwrap()
        .to_vec();
    let frame = FrameDetections::from_json(&json).unwrap();

    // As kafkasrc delivers it: the header, no metas.
    let mut received = gst::Buffer::from_slice(vec![1u8; 8]);
    KafkaHeaders(vec![("gkv-detections".into(), json)]).attach(received.get_mut().unwrap());
    let mut to_metas = harness(&[("output", "metas")]);
    to_metas.push(received).unwrap();
    let with_metas = to_metas.pull().unwrap();
    assert_eq!(
        detections_meta::of_buffer(&with_metas, 640, 480),
        frame.detections
    );
}

#[test]
fn json_buffers_become_metas_and_garbage_passes_without_them() {
    init();
    let mut h = harness(&[("output", "metas")]);
    h.set_src_caps_str(CAPS);
    let mut json = harness(&[]);
    json.push(frame("cam1", 1, 0)).unwrap();
    let record = json.pull().unwrap();
    h.push(record).unwrap();
    let out = h.pull().unwrap();
    assert_eq!(detections_meta::of_buffer(&out, 640, 480).len(), 1);

    h.push(gst::Buffer::from_slice(b"{not json".to_vec()))
        .unwrap();
    let garbage = h.pull().unwrap();
    assert_eq!(garbage.map_readable().unwrap().as_slice(), b"{not json");
    assert!(detections_meta::of_buffer(&garbage, 640, 480).is_empty());
    let convert = h.element().unwrap();
    let stats = convert.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("bad-detections"), Ok(1), "{stats}");
    assert_eq!(stats.get::<u64>("frames"), Ok(2), "{stats}");
}
