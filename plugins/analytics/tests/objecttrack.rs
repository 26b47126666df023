// SPDX-License-Identifier: MIT OR Apache-2.0
//! `objecttrack` in a harness: ids per camera that never mix, and the one warning when a
//! camera's frames skip sequence numbers (spread over several workers).

use gst::prelude::*;
use gst_check::Harness;
use kafkavision::detections::meta as detections_meta;
use kafkavision::detections::{Detection, Rect};
use kafkavision::meta::RecordMeta;

fn init() {
    testkit::init(&[gstgkvanalytics::plugin_register_static]);
}

fn harness() -> Harness {
    init();
    let mut h = Harness::new("objecttrack");
    h.set_src_caps_str("video/x-raw, format=(string)RGB, width=(int)640, height=(int)480");
    h
}

/// A frame of `camera`, sequence number `seq`, with one object at `x`.
fn frame(camera: &str, seq: u64, x: f64) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_slice(vec![0u8; 16]);
    {
        let b = buffer.get_mut().unwrap();
        RecordMeta {
            topic: "frames".into(),
            partition: 0,
            offset: seq as i64,
            key: Some(camera.into()),
            stream: format!("{camera}-run"),
            seq,
        }
        .attach(b);
        let bbox = Rect {
            x,
            y: 100.0,
            width: 60.0,
            height: 60.0,
        };
        detections_meta::attach(b, &Detection::new("car", 2, 0.9, true, bbox, 640, 480));
    }
    buffer
}

fn track_of(buffer: &gst::Buffer) -> Option<u64> {
    detections_meta::of_buffer(buffer, 640, 480)[0].track_id
}

#[test]
fn cameras_keep_tracks_of_their_own() {
    let mut h = harness();
    let mut ids = Vec::new();
    // Two cameras interleaved, each with an object at the same place.
    for seq in 0..6 {
        for camera in ["cam1", "cam2"] {
            h.push(frame(camera, seq, 100.0 + 5.0 * seq as f64))
                .unwrap();
            ids.push((camera, seq, track_of(&h.pull().unwrap())));
        }
    }
    let of = |camera: &str, seq: u64| ids.iter().find(|i| i.0 == camera && i.1 == seq).unwrap().2;
    assert_eq!(of("cam1", 0), None, "tentative until min-hits");
    assert!(of("cam1", 2).is_some() && of("cam2", 2).is_some());
    assert_ne!(
        of("cam1", 5),
        of("cam2", 5),
        "the same place in two cameras: two tracks"
    );
    assert_eq!(of("cam1", 2), of("cam1", 5));
    let stats = h.element().unwrap().property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u32>("cameras"), Ok(2), "{stats}");
    assert_eq!(stats.get::<u64>("sequence-gaps"), Ok(0), "{stats}");
}

#[test]
fn a_camera_spread_over_workers_is_warned_about_once() {
    let mut h = harness();
    let bus = gst::Bus::new();
    h.element().unwrap().set_bus(Some(&bus));
    // This worker sees every second frame of the camera (round-robin over two workers).
    for seq in (0..80).step_by(2) {
        h.push(frame("cam1", seq, 100.0 + seq as f64)).unwrap();
        h.pull().unwrap();
    }
    let warnings: Vec<String> =
        std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Warning]))
            .filter_map(|m| match m.view() {
                gst::MessageView::Warning(w) => Some(w.error().to_string()),
                _ => None,
            })
            .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("partitioner=key"), "{}", warnings[0]);
    let stats = h.element().unwrap().property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("sequence-gaps"), Ok(39), "{stats}");
}

/// Like [`frame`], without a Kafka record (frames straight from a camera).
fn frame_without_record(x: f64) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_slice(vec![0u8; 16]);
    let bbox = Rect {
        x,
        y: 100.0,
        width: 60.0,
        height: 60.0,
    };
    detections_meta::attach(
        buffer.get_mut().unwrap(),
        &Detection::new("car", 2, 0.9, true, bbox, 640, 480),
    );
    buffer
}

#[test]
fn a_hundred_restarts_never_reuse_a_track_id() {
    // Each run is a worker (re)started on a camera: it sees a new object on the camera's
    // next frames (records), and a new object on frames without records, whose numbering
    // starts again at every start.
    let mut first_run_of: std::collections::HashMap<u64, usize> = Default::default();
    for run in 0..100 {
        let mut h = harness();
        let mut ids = std::collections::BTreeSet::new();
        for i in 0..5u64 {
            let x = 100.0 + 5.0 * i as f64;
            h.push(frame("cam1", run as u64 * 5 + i, x)).unwrap();
            ids.extend(track_of(&h.pull().unwrap()));
            h.push(frame_without_record(x)).unwrap();
            ids.extend(track_of(&h.pull().unwrap()));
        }
        assert_eq!(ids.len(), 2, "run {run}: one track per object: {ids:?}");
        for id in ids {
            let first = *first_run_of.entry(id).or_insert(run);
            assert_eq!(
                first, run,
                "track id {id} of run {first} again in run {run}"
            );
        }
    }
    assert_eq!(first_run_of.len(), 200);
}
