// SPDX-License-Identifier: MIT OR Apache-2.0
//! `yolodetect` behind `kafkadecodebin`, end to end on the test broker: two cameras
//! interleaved in one partition, one showing a ball and one black. Each camera's `interval`
//! is its own, and the black camera's detections records never carry the ball's boxes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use gst::prelude::*;
use kafkavision::detections::FrameDetections;
use testkit::*;

fn init() {
    testkit::init(&[
        gstkafka::plugin_register_static,
        gstyolo::plugin_register_static,
        gstgkvanalytics::plugin_register_static,
    ]);
}

const FRAMES: u64 = 40;

/// (key, videotestsrc pattern)
const CAMERAS: [(&str, &str); 2] = [("cam1", "ball"), ("cam2", "black")];

#[test]
fn interleaved_cameras_keep_their_own_interval_and_their_own_boxes() {
    init();
    let frames = new_topic("cameras-frames", 1);
    let detections = new_topic("cameras-detections", 1);
    // Live cameras running at once: their records interleave in the one partition.
    let cameras: Vec<gst::Pipeline> = CAMERAS
        .iter()
        .map(|(key, pattern)| {
            launch(&format!(
                "videotestsrc is-live=true num-buffers={FRAMES} pattern={pattern} ! \
                 video/x-raw,width=320,height=240,framerate=20/1 ! jpegenc ! \
                 kafkasink brokers={} topic={frames} key={key}",
                brokers()
            ))
        })
        .collect();
    for camera in &cameras {
        camera.set_state(gst::State::Playing).unwrap();
    }
    for camera in &cameras {
        let ended = run_until_end(camera, Duration::from_secs(60));
        assert!(matches!(ended, Ended::Eos), "{ended:?}");
    }
    let keys: Vec<String> = consume_raw(
        &frames,
        1,
        CAMERAS.len() * (FRAMES as usize + 1),
        Duration::from_secs(20),
    )
    .iter()
    .filter(|r| r.is_buffer())
    .map(|r| r.key_text())
    .collect();
    let switches = keys.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        switches > 10,
        "the cameras interleave in the topic: {switches} switches"
    );

    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/blob-yolov8.onnx");
    run_to_eos(
        &format!(
            "kafkasrc brokers={b} topic={frames} stop-on-eos=true ! kafkadecodebin ! \
             videoconvert ! yolodetect model-location={} interval=2 ! detectionsconvert ! \
             kafkasink brokers={b} topic={detections} key-from=record",
            model.display(),
            b = brokers()
        ),
        Duration::from_secs(120),
    );
    let records = read_until(&detections, 1, Duration::from_secs(30), |records| {
        records.iter().filter(|r| r.is_buffer()).count() >= CAMERAS.len() * FRAMES as usize
    });

    // Per camera, by its frames' seq: (detections, inferred).
    let mut cameras = BTreeMap::<String, BTreeMap<u64, (usize, bool)>>::new();
    for record in records.iter().filter(|r| r.is_buffer()) {
        let frame = FrameDetections::from_json(&record.value).unwrap();
        let source = frame.source.expect("each record names its source frame");
        let inferred = frame.detections.iter().any(|d| d.inferred);
        cameras
            .entry(record.key_text())
            .or_default()
            .insert(source.seq, (frame.detections.len(), inferred));
    }
    let all: Vec<u64> = (0..FRAMES).collect();
    let black = &cameras["cam2"];
    assert_eq!(
        black.keys().copied().collect::<Vec<_>>(),
        all,
        "cam2's frames"
    );
    let with_boxes: Vec<u64> = black
        .iter()
        .filter(|(_, (count, _))| *count > 0)
        .map(|(seq, _)| *seq)
        .collect();
    assert!(
        with_boxes.is_empty(),
        "{} of cam2's {FRAMES} detections records carry boxes: frames {with_boxes:?}",
        with_boxes.len()
    );
    let ball = &cameras["cam1"];
    assert_eq!(
        ball.keys().copied().collect::<Vec<_>>(),
        all,
        "cam1's frames"
    );
    for (seq, (count, inferred)) in ball {
        assert_eq!(*count, 1, "cam1 frame {seq}: one ball");
        assert_eq!(*inferred, seq % 2 == 0, "cam1 frame {seq}: inferred");
    }
}
