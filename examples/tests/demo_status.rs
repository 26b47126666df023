// SPDX-License-Identifier: MIT OR Apache-2.0
//! `demo-status` per camera: latency from capture to each topic, and the frames lost,
//! duplicated and late in the frames topic, from records a bare producer writes while it
//! watches (frames numbered with gaps, repeats and a swap on purpose).

use std::time::Duration;

use kafkavision::Envelope;
use testkit::*;

/// (key, value, headers) of a record.
type Written = (String, Vec<u8>, Vec<(String, Vec<u8>)>);

/// A record of `camera`'s stream `run`, frame `seq`, captured 40 ms ago.
fn record(camera: &str, run: &str, seq: u64, value: &[u8]) -> Written {
    let mut envelope = Envelope::buffer(format!("{camera}-{run}"), seq, Some("image/jpeg".into()));
    envelope.capture_time_ns = Some((unix_now_ms() as u64 - 40) * 1_000_000);
    let headers = envelope
        .to_headers()
        .into_iter()
        .map(|(name, value)| (name.to_string(), value.into_bytes()))
        .collect();
    (camera.to_string(), value.to_vec(), headers)
}

fn write(topic: &str, records: &[Written]) {
    let keyed: Vec<KeyedRecord> = records
        .iter()
        .map(|(key, value, headers)| (key.as_str(), value.clone(), headers.clone()))
        .collect();
    produce_keyed(topic, &keyed);
}

#[test]
fn demo_status_shows_each_cameras_latency_per_topic_and_its_lost_and_repeated_frames() {
    let topics = ["frames", "annotated", "detections", "events"].map(|t| new_topic(t, 1));
    let brokers = brokers();
    let args = [
        "--brokers",
        &brokers,
        "--frames-topic",
        &topics[0],
        "--annotated-topic",
        &topics[1],
        "--detections-topic",
        &topics[2],
        "--events-topic",
        &topics[3],
        "--group",
        "demo-status-test",
        "--every",
        "1",
    ];
    let mut status = Running::start(env!("CARGO_BIN_EXE_demo-status"), &args);
    // Its first line: it reads from the end of each topic now.
    status.wait_for("published 0", Duration::from_secs(30));

    // cam1: 3 lost (2, 7, 8), 4 and 5 swapped (late: 1), 6 twice; a restart as a new run
    // that starts from 0 again is no loss. cam2: complete.
    let mut frames: Vec<_> = [0, 1, 3, 5, 4, 6, 6, 9]
        .into_iter()
        .map(|seq| record("cam1", "a", seq, b"frame"))
        .collect();
    frames.extend((0..3).map(|seq| record("cam1", "b", seq, b"frame")));
    frames.extend((0..5).map(|seq| record("cam2", "a", seq, b"frame")));
    write(&topics[0], &frames);
    let detections = br#"{"version":1,"frame":{"stream":"cam1-a","seq":0},"detections":[]}"#;
    write(&topics[2], &[record("cam1", "w", 0, detections)]);
    write(&topics[3], &[record("cam1", "e", 0, b"{}")]);

    // Once every record is in: a line per camera.
    status.wait_for("events p50", Duration::from_secs(30));
    status.wait_for("cam2: frames p50", Duration::from_secs(10));
    let cam1 = status
        .lines()
        .into_iter()
        .rfind(|l| l.contains("cam1:"))
        .unwrap();
    assert!(cam1.trim_start().starts_with("cam1: frames p50 "), "{cam1}");
    assert!(
        cam1.contains(", detections p50 ") && cam1.contains(", events p50 "),
        "{cam1}"
    );
    assert!(
        cam1.ends_with("frames lost 3, duplicated 1, late 1"),
        "{cam1}"
    );
    let cam2 = status
        .lines()
        .into_iter()
        .rfind(|l| l.contains("cam2:"))
        .unwrap();
    assert!(
        cam2.ends_with("frames lost 0, duplicated 0, late 0"),
        "{cam2}"
    );
    status.kill();
}
