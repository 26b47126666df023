// SPDX-License-Identifier: MIT OR Apache-2.0
//! Whoever can write to the frames topic chooses the record keys. A detector worker must
//! treat them as plain names: a key that looks like a piece of a gst-launch line (`!`, `=`,
//! quotes, an element with a file location), spans lines, is 10 KB long or is not UTF-8
//! names a camera and nothing else. No file is written and no element created from it.

use std::collections::BTreeMap;
use std::time::Duration;

use gst::prelude::*;
use kafkavision::detections::FrameDetections;
use kafkavision::{Envelope, RecordKind};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use testkit::{RawRecord, Running, read_all};
use testkit::{brokers, create_topic, unique_name as unique};

const FRAMES_PER_KEY: u64 = 3;

/// JPEG frames and their caps, from GStreamer.
fn jpeg_frames(count: u64) -> (String, Vec<Vec<u8>>) {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc pattern=ball num-buffers={count} ! video/x-raw,width=320,height=240 ! \
         jpegenc ! appsink name=out sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut caps = String::new();
    let mut frames = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        caps = sample.caps().unwrap().to_string();
        frames.push(sample.buffer().unwrap().map_readable().unwrap().to_vec());
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(frames.len() as u64, count);
    (caps, frames)
}

#[test]
fn hostile_record_keys_are_plain_camera_names_to_the_worker() {
    let frames_topic = unique("keys-frames");
    let annotated = unique("keys-annotated");
    let detections = unique("keys-detections");
    for topic in [&frames_topic, &annotated, &detections] {
        create_topic(topic, 1);
    }
    let trap = std::env::temp_dir().join(unique("keys-trap"));
    std::fs::create_dir_all(&trap).unwrap();
    let written = trap.join("written-by-a-key");
    let keys: Vec<Vec<u8>> = vec![
        // The attack of the issue: another branch that writes a file.
        format!("cam1 t. ! queue ! filesink location={}", written.display()).into_bytes(),
        // Property injection: a second key= and another topic.
        b"cam2 key=evil topic=elsewhere".to_vec(),
        br#"cam "3" 'quoted' a!b=c"#.to_vec(),
        b"cam4\nname=src ! fakesink\r\n".to_vec(),
        "k".repeat(10 * 1024).into_bytes(),
        vec![0xff, 0xfe, b'c', b'a', b'm', 0xc3],
    ];

    let (caps, jpegs) = jpeg_frames(FRAMES_PER_KEY);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    // Every key's frames first, interleaved, then the end-of-stream records: the worker
    // (stop-on-eos) ends once every stream it has seen has ended.
    for seq in 0..=FRAMES_PER_KEY {
        for (i, key) in keys.iter().enumerate() {
            let stream_id = format!("hostile-{i}");
            let envelope = if seq < FRAMES_PER_KEY {
                Envelope {
                    pts: Some(seq * 100_000_000),
                    duration: Some(100_000_000),
                    ..Envelope::buffer(stream_id, seq, Some(caps.clone()))
                }
            } else {
                Envelope::end_of_stream(stream_id, seq)
            };
            let mut headers = OwnedHeaders::new();
            for (name, value) in envelope.to_headers() {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value.as_bytes()),
                });
            }
            let value: &[u8] = match envelope.kind {
                RecordKind::Buffer => &jpegs[seq as usize],
                RecordKind::EndOfStream => &[],
            };
            let record = BaseRecord::<[u8], [u8]>::to(&frames_topic)
                .key(key.as_slice())
                .payload(value)
                .headers(headers);
            producer.send(record).map_err(|(e, _)| e).unwrap();
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let b = brokers();
    let mut worker = Running::start_with_env(
        env!("CARGO_BIN_EXE_detector-worker"),
        &[
            "--brokers",
            &b,
            "--topic",
            &frames_topic,
            "--group",
            &unique("keys-group"),
            "--annotated-topic",
            &annotated,
            "--detections-topic",
            &detections,
            "--stop-on-eos",
        ],
        // Every element the worker creates, named in its log.
        &[
            ("GST_DEBUG", "GST_ELEMENT_FACTORY:4"),
            ("GST_DEBUG_NO_COLOR", "1"),
        ],
    );
    assert!(
        worker.wait(Duration::from_secs(120)).success(),
        "the worker failed: {:?}",
        worker.stderr()
    );

    // One camera per key, each key exactly as sent (lossily decoded when not UTF-8); shown
    // shortened, the 10 KB key would drown a failure message.
    let short = |key: &str| {
        format!(
            "{:?} ({} bytes)",
            key.chars().take(48).collect::<String>(),
            key.len()
        )
    };
    let expected: BTreeMap<String, u64> = keys
        .iter()
        .map(|k| (short(&String::from_utf8_lossy(k)), FRAMES_PER_KEY))
        .collect();
    let count_by_key = |records: &[RawRecord]| {
        let mut counts = BTreeMap::<String, u64>::new();
        for r in records.iter().filter(|r| r.is_buffer()) {
            *counts.entry(short(&r.key_text())).or_default() += 1;
        }
        counts
    };
    for topic in [&annotated, &detections] {
        let records = read_all(topic, 1, Duration::from_secs(30), |r| {
            count_by_key(r) == expected
        });
        assert_eq!(count_by_key(&records), expected, "records in {topic}");
        if topic == &detections {
            for r in records.iter().filter(|r| r.is_buffer()) {
                let frame = FrameDetections::from_json(&r.value).unwrap();
                assert_eq!(frame.camera, Some(r.key_text()));
            }
        }
    }

    assert!(
        !written.exists(),
        "a record key wrote {}",
        written.display()
    );
    assert_eq!(std::fs::read_dir(&trap).unwrap().count(), 0);
    let log = worker.stderr();
    let created: std::collections::BTreeSet<&str> = log
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("creating element \"")? + "creating element \"".len()..];
            rest.split('"').next()
        })
        .collect();
    assert!(!created.is_empty(), "the element log is empty: {log}");
    for factory in ["filesink", "fakesink"] {
        assert!(
            !created.contains(factory),
            "a key created a {factory}: {created:?}"
        );
    }
    // One detection branch per camera, however odd its name.
    let branches = log.lines().filter(|l| l.contains(": new camera ")).count();
    assert_eq!(branches, keys.len(), "{log}");
    std::fs::remove_dir_all(&trap).ok();
}
