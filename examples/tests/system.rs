// SPDX-License-Identifier: MIT OR Apache-2.0
//! A short version of the demo, end to end, with the real programs: two simulated RTSP
//! cameras → publishers → Kafka → two detector workers in one group → Kafka → counter,
//! archive and viewer. Checks that every published decodable frame is detected exactly
//! once by the pool, that the counter's totals match the detections published, that the
//! archive holds the expected crops, and that the viewer serves both cameras.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use testkit::{brokers, create_topic, unique_name as unique};

use kafkavision::detections::FrameDetections;
use testkit::{RawRecord, Running, read_all};

const FRAMES_PER_CAMERA: usize = 30;

#[test]
fn the_whole_system_detects_every_frame_once_and_counts_and_archives_them() {
    let frames = unique("sys-frames");
    let annotated = unique("sys-annotated");
    let detections = unique("sys-detections");
    let events = unique("sys-events");
    for topic in [&frames, &annotated, &detections, &events] {
        create_topic(topic, 2);
    }
    let group = unique("sys-detectors");
    let b = brokers();
    let out = std::env::temp_dir().join(unique("sys-out"));
    std::fs::create_dir_all(&out).unwrap();

    // Workers first: both must own a partition before frames flow.
    let mut workers: Vec<Running> = (1..=2)
        .map(|i| {
            let name = format!("worker{i}");
            Running::start(
                env!("CARGO_BIN_EXE_detector-worker"),
                &[
                    "--brokers",
                    &b,
                    "--topic",
                    &frames,
                    "--group",
                    &group,
                    "--annotated-topic",
                    &annotated,
                    "--detections-topic",
                    &detections,
                    "--events-topic",
                    &events,
                    "--lines",
                    gst_kafka_vision_examples::scene::LINE,
                    "--name",
                    &name,
                ],
            )
        })
        .collect();
    let mut cameras = Running::start(
        env!("CARGO_BIN_EXE_camera-sim"),
        &[
            "--cameras",
            "2",
            "--port",
            "0",
            "--fps",
            "10",
            "--scene",
            "crossing",
        ],
    );
    let urls: Vec<String> = cameras
        .wait_for("camera-sim: ready", Duration::from_secs(30))
        .iter()
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("rtsp://"))
                .map(String::from)
        })
        .collect();
    assert_eq!(urls.len(), 2, "{urls:?}");
    // The group needs a moment to give both workers a partition (tansu rebalances slowly).
    std::thread::sleep(Duration::from_secs(12));

    let count = FRAMES_PER_CAMERA.to_string();
    let mut publishers: Vec<Running> = urls
        .iter()
        .enumerate()
        .map(|(i, url)| {
            let camera = format!("cam{}", i + 1);
            Running::start(
                env!("CARGO_BIN_EXE_publisher"),
                &[
                    "--url",
                    url,
                    "--brokers",
                    &b,
                    "--topic",
                    &frames,
                    "--camera",
                    &camera,
                    "--frames",
                    &count,
                ],
            )
        })
        .collect();
    for p in &mut publishers {
        assert!(
            p.wait(Duration::from_secs(60)).success(),
            "publisher failed"
        );
    }

    // What was published, from the first keyframe of each camera on (a stream joined
    // mid-GOP starts at its keyframe): identified by camera and capture time.
    let published = read_all(&frames, 2, Duration::from_secs(20), |r| {
        r.iter().filter(|r| r.is_buffer()).count() >= 2 * FRAMES_PER_CAMERA
    });
    let mut expected = BTreeSet::new();
    let mut synced = BTreeSet::new();
    for r in published.iter().filter(|r| r.is_buffer()) {
        let delta = r
            .header("gkv-flags")
            .is_some_and(|f| f.contains("delta-unit"));
        if !delta {
            synced.insert(r.key_text());
        }
        if synced.contains(&r.key_text()) {
            expected.insert((
                r.key_text(),
                r.header("gkv-capture-time").unwrap().to_string(),
            ));
        }
    }
    assert!(
        expected.len() >= FRAMES_PER_CAMERA,
        "{} decodable frames published",
        expected.len()
    );

    // Every one is detected once by the pool. A decoder holds its newest frame until more
    // come or the stream ends: wait for all but those, then stop the workers cleanly (they
    // drain their branches) and look at everything.
    let detection_records =
        |records: &[RawRecord]| records.iter().filter(|r| r.is_buffer()).count();
    read_all(&detections, 2, Duration::from_secs(90), |r| {
        detection_records(r) + 2 >= expected.len()
    });
    for w in &mut workers {
        w.terminate();
    }
    for w in &mut workers {
        assert!(w.wait(Duration::from_secs(40)).success(), "a worker failed");
    }
    cameras.terminate();
    let detected = read_all(&detections, 2, Duration::from_secs(30), |r| {
        detection_records(r) >= expected.len()
    });
    let mut seen = BTreeMap::new();
    for r in detected.iter().filter(|r| r.is_buffer()) {
        let frame = FrameDetections::from_json(&r.value).unwrap();
        let id = (
            frame.camera.clone().unwrap(),
            frame.capture_time_ns.unwrap().to_string(),
        );
        *seen.entry(id).or_insert(0) += 1;
    }
    let missing: Vec<_> = expected
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} frames never detected: {missing:?}",
        missing.len()
    );
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "detected more than once: {twice:?}");

    // The counter's totals match the detections published (confidence >= 0.5).
    let csv = out.join("counts.csv");
    let mut counter = Running::start(
        env!("CARGO_BIN_EXE_counter"),
        &[
            "--mode",
            "detections",
            "--brokers",
            &b,
            "--topic",
            &detections,
            "--classes",
            "sports ball",
            "--csv",
            csv.to_str().unwrap(),
            "--stop-on-eos",
            "--quiet",
        ],
    );
    assert!(counter.wait(Duration::from_secs(60)).success());
    let published_count: usize = detected
        .iter()
        .filter(|r| r.is_buffer())
        .map(|r| FrameDetections::from_json(&r.value).unwrap())
        .map(|f| {
            f.detections
                .iter()
                .filter(|d| d.label == "sports ball" && d.confidence >= 0.5)
                .count()
        })
        .sum();
    let text = std::fs::read_to_string(&csv).unwrap();
    let counted: usize = text
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .nth(4)
                .unwrap()
                .trim()
                .parse::<usize>()
                .unwrap()
        })
        .sum();
    assert_eq!(counted, published_count, "counter CSV:\n{text}");
    assert!(published_count > 0);

    // The archive holds one crop per detection >= 0.7 in the annotated frames.
    let annotated_records = read_all(&annotated, 2, Duration::from_secs(20), |r| {
        r.iter().filter(|r| r.is_buffer()).count() >= expected.len()
    });
    let expected_crops: usize = annotated_records
        .iter()
        .filter(|r| r.is_buffer())
        .filter_map(|r| r.header("gkv-detections"))
        .map(|json| FrameDetections::from_json(json.as_bytes()).unwrap())
        .map(|f| f.detections.iter().filter(|d| d.confidence >= 0.7).count())
        .sum();
    let archive_dir = out.join("archive");
    let mut archive = Running::start(
        env!("CARGO_BIN_EXE_archive"),
        &[
            "--brokers",
            &b,
            "--topic",
            &annotated,
            "--out",
            archive_dir.to_str().unwrap(),
            "--stop-on-eos",
        ],
    );
    assert!(archive.wait(Duration::from_secs(60)).success());
    let crops = std::fs::read_dir(archive_dir.join("sports ball"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(crops, expected_crops);

    // The viewer serves both cameras.
    let mut viewer = Running::start(
        env!("CARGO_BIN_EXE_viewer"),
        &[
            "--brokers",
            &b,
            "--topic",
            &annotated,
            "--group",
            &unique("sys-viewer"),
            "--port",
            "0",
        ],
    );
    let url = viewer
        .wait_for("viewer: http", Duration::from_secs(30))
        .last()
        .and_then(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("http://"))
                .map(String::from)
        })
        .unwrap();
    let address = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        write!(stream, "GET /stats HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).unwrap();
        if body.contains("cam1") && body.contains("cam2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "viewer /stats never showed both cameras: {body}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // The scripted scene's first square crosses the line in the first 3 s of both cameras:
    // the workers wrote events, and the counter's crossings are the unique ones among them.
    let event_records: Vec<kafkavision::events::Event> =
        read_all(&events, 2, Duration::from_secs(20), |r| {
            r.iter().any(|r| r.is_buffer())
        })
        .iter()
        .filter(|r| r.is_buffer())
        .map(|r| kafkavision::events::Event::from_json(&r.value).unwrap())
        .collect();
    assert!(
        !event_records.is_empty(),
        "no line crossing in the events topic"
    );
    for e in &event_records {
        assert_eq!(e.line.as_deref(), Some("gate"));
        let camera = e.camera.clone().unwrap();
        assert!(camera == "cam1" || camera == "cam2", "{camera}");
    }
    // Each event once: by its id, or (events without one) once per track and direction.
    let unique_crossings: BTreeSet<(String, String)> = event_records
        .iter()
        .map(|e| {
            let once = e
                .event_id
                .clone()
                .unwrap_or_else(|| format!("{} {}", e.track_id, e.direction.unwrap().as_str()));
            (e.camera.clone().unwrap(), once)
        })
        .collect();
    let crossings_csv = out.join("crossings.csv");
    let mut counter = Running::start(
        env!("CARGO_BIN_EXE_counter"),
        &[
            "--brokers",
            &b,
            "--topic",
            &events,
            "--classes",
            "sports ball",
            "--csv",
            crossings_csv.to_str().unwrap(),
            "--stop-on-eos",
            "--quiet",
        ],
    );
    assert!(counter.wait(Duration::from_secs(60)).success());
    let text = std::fs::read_to_string(&crossings_csv).unwrap();
    assert_eq!(
        text.lines().count() - 1,
        unique_crossings.len(),
        "counter crossings CSV:\n{text}"
    );
    std::fs::remove_dir_all(&out).ok();
}
