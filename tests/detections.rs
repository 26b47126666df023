// SPDX-License-Identifier: MIT OR Apache-2.0
//! Detections through Kafka: `yolodetect ! detectionsconvert ! kafkasink` writes the
//! `gkv.detections` JSON; annotated frames carry their detections in a header
//! (`detectionsconvert output=header`) and `detectionsconvert output=metas` attaches them
//! again as metadata after `kafkasrc`; the capture time survives every hop.

use std::path::PathBuf;
use std::time::Duration;

use gst::prelude::*;
use kafkavision::detections::{CAPS, FrameDetections};
use testkit::*;

fn init() {
    testkit::init(&[
        gstkafka::plugin_register_static,
        gstyolo::plugin_register_static,
        gstgkvanalytics::plugin_register_static,
    ]);
}

fn blob_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/blob-yolov8.onnx")
}

/// `frames` frames of a moving ball through yolodetect into `sinks` (a tee'd tail).
fn detect_into(frames: u32, tail: &str) {
    init();
    run_to_eos(
        &format!(
            "videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 ! \
             yolodetect model-location={} ! {tail}",
            blob_model().display()
        ),
        Duration::from_secs(60),
    );
}

#[test]
fn detections_only_records_hold_the_json_schema() {
    let topic = new_topic("detections-only", 1);
    detect_into(
        5,
        &format!(
            "detectionsconvert camera=cam1 ! kafkasink brokers={} topic={topic} key=cam1",
            brokers()
        ),
    );
    let records = consume_raw(&topic, 1, 6, Duration::from_secs(20));
    for (i, record) in records.iter().take(5).enumerate() {
        assert_eq!(record.header("gkv-caps"), Some(CAPS));
        let frame = FrameDetections::from_json(&record.value).unwrap();
        assert_eq!(frame.camera.as_deref(), Some("cam1"));
        assert_eq!(frame.seq, i as u64);
        assert_eq!((frame.width, frame.height), (320, 240));
        assert_eq!(frame.pts_ns, Some(i as u64 * 1_000_000_000 / 30));
        assert!(frame.capture_time_ns.is_some());
        assert_eq!(frame.detections.len(), 1, "one ball: {frame:?}");
        let d = &frame.detections[0];
        assert_eq!((d.label.as_str(), d.class_id), ("sports ball", 32));
        assert!((d.box_normalized.x - d.bbox.x / 320.0).abs() < 1e-9);
        assert!((d.box_normalized.height - d.bbox.height / 240.0).abs() < 1e-9);
        assert!(record.value.len() < 1000, "small records, no image");
    }
}

#[test]
fn annotated_frames_carry_their_detections_back_as_metadata() {
    let topic = new_topic("annotated", 1);
    detect_into(
        5,
        &format!(
            "detectionsconvert output=header camera=cam1 ! jpegenc ! \
             kafkasink brokers={} topic={topic} key=cam1",
            brokers()
        ),
    );
    let records = consume_raw(&topic, 1, 5, Duration::from_secs(20));
    let sent: Vec<FrameDetections> = records
        .iter()
        .map(|r| {
            FrameDetections::from_json(r.header("gkv-detections").unwrap().as_bytes()).unwrap()
        })
        .collect();

    init();
    let pipeline = launch(&format!(
        "kafkasrc brokers={} topic={topic} stop-on-eos=true ! detectionsconvert output=metas ! \
         appsink name=out sync=false",
        brokers()
    ));
    let samples = collect_samples(&pipeline, "out");
    assert!(matches!(
        run_until_end(&pipeline, Duration::from_secs(60)),
        Ended::Eos
    ));
    let samples = samples.lock().unwrap();
    assert_eq!(samples.len(), 5);
    for (sample, sent) in samples.iter().zip(&sent) {
        let metas: Vec<_> = sample
            .buffer()
            .unwrap()
            .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
            .map(|m| {
                let p = m.param("detection").unwrap();
                (
                    m.rect(),
                    p.get::<String>("label").unwrap(),
                    p.get::<f64>("confidence").unwrap(),
                )
            })
            .collect();
        assert_eq!(metas.len(), sent.detections.len());
        for ((rect, label, confidence), d) in metas.iter().zip(&sent.detections) {
            assert_eq!(*label, d.label);
            assert_eq!(*confidence, d.confidence);
            assert_eq!(rect.0, d.bbox.x.round() as u32);
            assert_eq!(rect.3, d.bbox.height.round() as u32);
        }
    }
}

#[test]
fn the_capture_time_survives_a_second_hop() {
    let first = new_topic("hop-one", 1);
    let second = new_topic("hop-two", 1);
    init();
    run_to_eos(
        &format!(
            "videotestsrc num-buffers=3 ! video/x-raw,width=64,height=48 ! jpegenc ! \
             kafkasink brokers={} topic={first}",
            brokers()
        ),
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_millis(50)); // the second hop is measurably later
    run_to_eos(
        &format!(
            "kafkasrc brokers={b} topic={first} stop-on-eos=true ! kafkasink brokers={b} topic={second}",
            b = brokers()
        ),
        Duration::from_secs(30),
    );
    let one = consume_raw(&first, 1, 3, Duration::from_secs(20));
    let two = consume_raw(&second, 1, 3, Duration::from_secs(20));
    for (a, b) in one.iter().zip(&two) {
        assert_eq!(a.header("gkv-capture-time"), b.header("gkv-capture-time"));
        let (sink_a, sink_b): (u64, u64) = (
            a.header("gkv-sink-time").unwrap().parse().unwrap(),
            b.header("gkv-sink-time").unwrap().parse().unwrap(),
        );
        assert!(sink_b > sink_a, "the second sink stamps its own time");
    }
}

#[test]
fn a_garbage_detections_header_passes_the_frame_without_detections_and_warns() {
    let topic = new_topic("bad-detections", 1);
    let envelope = kafkavision::Envelope::buffer("s", 0, Some("application/octet-stream".into()));
    let eos = kafkavision::Envelope::end_of_stream("s", 1);
    let headers = envelope.to_headers();
    let mut borrowed: Vec<(&str, &[u8])> =
        headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    borrowed.push(("gkv-detections", b"{oops"));
    let eos_headers = eos.to_headers();
    let eos_borrowed: Vec<(&str, &[u8])> = eos_headers
        .iter()
        .map(|(k, v)| (*k, v.as_bytes()))
        .collect();
    produce_raw(
        &topic,
        Some(0),
        &[(b"bytes".to_vec(), borrowed), (Vec::new(), eos_borrowed)],
    );
    init();
    let pipeline = launch(&format!(
        "kafkasrc brokers={} topic={topic} stop-on-eos=true ! \
         detectionsconvert name=convert output=metas ! appsink name=out sync=false",
        brokers()
    ));
    let warnings = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = warnings.clone();
    pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
        if let gst::MessageView::Warning(w) = msg.view() {
            store.lock().unwrap().push(w.error().to_string());
        }
        gst::BusSyncReply::Pass
    });
    let samples = collect_samples(&pipeline, "out");
    let convert = pipeline.by_name("convert").unwrap();
    assert!(matches!(
        run_until_end(&pipeline, Duration::from_secs(30)),
        Ended::Eos
    ));
    let samples = samples.lock().unwrap();
    assert_eq!(samples.len(), 1, "the frame is not lost");
    let buffer = samples[0].buffer().unwrap();
    assert_eq!(buffer.map_readable().unwrap().as_slice(), b"bytes");
    assert_eq!(
        buffer
            .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
            .count(),
        0
    );
    assert_eq!(stat_u64(&convert, "bad-detections"), 1);
    let warnings = warnings.lock().unwrap().join("; ");
    assert!(warnings.contains("gkv-detections"), "{warnings}");
}
