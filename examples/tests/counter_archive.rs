// SPDX-License-Identifier: MIT OR Apache-2.0
//! `counter` and `archive` against a real broker (`KAFKA_BROKERS`, started by
//! `scripts/test`): a ball goes through `yolodetect` into a detections topic
//! (`detectionsconvert ! kafkasink`) and an annotated-frames topic; the expected numbers come from
//! reading those topics with a bare rdkafka consumer and parsing the JSON here. The
//! counter's crossings come from events written here, copies among them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use testkit::{RawRecord, brokers, command, create_topic, read_until, unique_name as unique};

use gst::prelude::*;
use kafkavision::detections::FrameDetections;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const FRAMES: usize = 20;
const COUNT_THRESHOLD: f64 = 0.5;
const CROP_THRESHOLD: f64 = 0.7;

/// A fresh one-partition topic.
fn new_topic(prefix: &str) -> String {
    let topic = unique(prefix);
    create_topic(&topic, 1);
    topic
}

/// Every record of partition 0 of `topic` up to and including the first end-of-stream record.
fn read_until_eos(topic: &str) -> Vec<RawRecord> {
    let records = read_until(topic, 1, Duration::from_secs(20), |r| {
        r.iter().any(RawRecord::is_eos)
    });
    assert!(
        records.iter().any(RawRecord::is_eos),
        "no end-of-stream record in {topic} after {} records",
        records.len()
    );
    let end = records.iter().position(RawRecord::is_eos).unwrap();
    records[..=end].to_vec()
}

fn run_pipeline(description: &str) {
    let pipeline = gst::parse::launch(description).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("the pipeline did not finish within 60 s");
    pipeline.set_state(gst::State::Null).unwrap();
    if let gst::MessageView::Error(err) = message.view() {
        panic!("{description}: {} ({:?})", err.error(), err.debug());
    }
}

/// The two topics, written once for all tests, and what a bare consumer read back.
struct Published {
    detections_topic: String,
    annotated_topic: String,
    /// The detections records that parse, in order.
    frames: Vec<FrameDetections>,
    /// Records of the detections topic that do not parse.
    bad: usize,
    /// The `gkv-detections` headers of the annotated records, in order.
    annotated: Vec<FrameDetections>,
}

fn published() -> &'static Published {
    static PUBLISHED: OnceLock<Published> = OnceLock::new();
    PUBLISHED.get_or_init(|| {
        gst_kafka_vision_examples::init().unwrap();
        let detections_topic = new_topic("counter-detections");
        let annotated_topic = new_topic("archive-annotated");

        // A record no reader can use, first in the detections topic.
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .create()
            .unwrap();
        producer
            .send(
                BaseRecord::<[u8], [u8]>::to(&detections_topic)
                    .key(b"cam1".as_slice())
                    .payload(b"{\"schema\": garbage".as_slice()),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();

        let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/blob-yolov8.onnx");
        let b = brokers();
        run_pipeline(&format!(
            "videotestsrc pattern=ball num-buffers={FRAMES} ! video/x-raw,width=320,height=240 ! \
             yolodetect model-location=\"{}\" ! tee name=t \
             t. ! queue ! detectionsconvert camera=cam1 ! \
                  kafkasink brokers={b} topic={detections_topic} key=cam1 \
             t. ! queue ! detectionsconvert output=header camera=cam1 ! jpegenc ! \
                  kafkasink brokers={b} topic={annotated_topic} key=cam1",
            model.display()
        ));

        let mut frames = Vec::new();
        let mut bad = 0;
        for record in read_until_eos(&detections_topic) {
            if record.header("gkv-kind") == Some("eos") {
                continue;
            }
            match FrameDetections::from_json(&record.value) {
                Ok(frame) => frames.push(frame),
                Err(_) => bad += 1,
            }
        }
        let annotated = read_until_eos(&annotated_topic)
            .iter()
            .filter(|r| r.header("gkv-kind") != Some("eos"))
            .map(|r| {
                FrameDetections::from_json(r.header("gkv-detections").unwrap().as_bytes()).unwrap()
            })
            .collect();
        Published {
            detections_topic,
            annotated_topic,
            frames,
            bad,
            annotated,
        }
    })
}

/// A scratch folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Run {
    stdout: String,
    stderr: String,
}

/// Runs an example binary to its end (at most 45 s); it must succeed.
fn run_bin(exe: &str, args: &[&str], scratch: &Path) -> Run {
    let (out, err) = (scratch.join("stdout"), scratch.join("stderr"));
    let mut child = command(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(45);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{exe} {args:?} did not finish within 45 s; stderr:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let run = Run {
        stdout: std::fs::read_to_string(&out).unwrap(),
        stderr: std::fs::read_to_string(&err).unwrap(),
    };
    assert!(
        status.success(),
        "{exe} {args:?}: {status}\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    run
}

fn run_counter(classes: Option<&str>, csv: &Path, scratch: &Path) -> (Run, Vec<Vec<String>>) {
    let p = published();
    let group = unique("counter");
    let b = brokers();
    let mut args = vec![
        "--mode",
        "detections",
        "--brokers",
        &b,
        "--topic",
        &p.detections_topic,
        "--group",
        &group,
        "--csv",
        csv.to_str().unwrap(),
        "--stop-on-eos",
        "--quiet",
    ];
    if let Some(classes) = classes {
        args.extend(["--classes", classes]);
    }
    let run = run_bin(env!("CARGO_BIN_EXE_counter"), &args, scratch);
    let text = std::fs::read_to_string(csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("camera,seq,pts_ns,capture_time_ns,count,labels")
    );
    let rows = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    (run, rows)
}

#[test]
fn counter_counts_the_detections_of_each_frame_and_skips_a_bad_record() {
    let p = published();
    assert_eq!(p.frames.len(), FRAMES);
    assert_eq!(p.bad, 1, "the garbage record is in the topic");
    let dir = scratch("counter");
    let csv = dir.join("counts.csv");
    let (run, rows) = run_counter(Some("sports ball"), &csv, &dir);

    assert_eq!(rows.len(), FRAMES, "one row per frame: {rows:?}");
    let mut total = 0;
    for (row, frame) in rows.iter().zip(&p.frames) {
        let expected = frame
            .detections
            .iter()
            .filter(|d| d.label == "sports ball" && d.confidence >= COUNT_THRESHOLD)
            .count();
        total += expected;
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        let labels = if expected > 0 {
            format!("sports ball:{expected}")
        } else {
            String::new()
        };
        assert_eq!(
            row,
            &[
                "cam1".to_string(),
                frame.seq.to_string(),
                opt(frame.pts_ns),
                opt(frame.capture_time_ns),
                expected.to_string(),
                labels,
            ],
            "frame {frame:?}"
        );
    }
    assert!(
        total >= FRAMES / 2,
        "the ball is found: {total} in {FRAMES} frames"
    );
    eprintln!("counter: {total} sports balls counted in {FRAMES} frames");
    assert!(
        run.stdout.contains(&format!(
            "{FRAMES} frames from 1 camera(s), {total} counted, 1 bad records skipped"
        )),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("skipping bad record"), "{}", run.stderr);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn counter_with_the_default_vehicle_classes_counts_nothing_here() {
    let dir = scratch("counter-vehicles");
    let csv = dir.join("counts.csv");
    let (run, rows) = run_counter(None, &csv, &dir);
    assert_eq!(rows.len(), FRAMES);
    for row in &rows {
        assert_eq!((row[4].as_str(), row[5].as_str()), ("0", ""), "{row:?}");
    }
    assert!(run.stdout.contains(", 0 counted,"), "{}", run.stdout);
    let _ = std::fs::remove_dir_all(dir);
}

/// Width and height of a JPEG file, decoded by jpegdec.
fn jpeg_size(path: &Path) -> (u32, u32) {
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("filesrc")
        .property("location", path.to_str().unwrap())
        .build()
        .unwrap();
    let dec = gst::ElementFactory::make("jpegdec").build().unwrap();
    let sink = gst_app::AppSink::builder().sync(false).build();
    pipeline.add_many([&src, &dec, sink.upcast_ref()]).unwrap();
    gst::Element::link_many([&src, &dec, sink.upcast_ref()]).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let sample = sink
        .try_pull_sample(gst::ClockTime::from_seconds(10))
        .unwrap_or_else(|| panic!("{} does not decode as JPEG", path.display()));
    pipeline.set_state(gst::State::Null).unwrap();
    let s = sample.caps().unwrap().structure(0).unwrap().to_owned();
    (
        s.get::<i32>("width").unwrap() as u32,
        s.get::<i32>("height").unwrap() as u32,
    )
}

/// Crop files `<label>_<n>.jpg` of a folder, by n.
fn crops(dir: &Path, label: &str) -> Vec<(u64, PathBuf)> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|path| {
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let n = name
                .strip_prefix(&format!("{label}_"))
                .and_then(|r| r.strip_suffix(".jpg"))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected file {name}"));
            (n, path)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn archive_saves_each_confident_detection_as_a_crop_of_its_box() {
    let p = published();
    assert_eq!(p.annotated.len(), FRAMES);
    // Expected crops in record order: (width, height) of each box >= 0.7.
    let expected: Vec<(f64, f64)> = p
        .annotated
        .iter()
        .flat_map(|f| &f.detections)
        .filter(|d| d.confidence >= CROP_THRESHOLD)
        .map(|d| {
            assert_eq!(d.label, "sports ball");
            (d.bbox.width, d.bbox.height)
        })
        .collect();
    assert!(!expected.is_empty());
    eprintln!(
        "archive: {} detections >= {CROP_THRESHOLD} in {FRAMES} annotated frames",
        expected.len()
    );

    let dir = scratch("archive");
    let out = dir.join("corpus");
    let b = brokers();
    let archive = |group: &str| {
        run_bin(
            env!("CARGO_BIN_EXE_archive"),
            &[
                "--brokers",
                &b,
                "--topic",
                &p.annotated_topic,
                "--group",
                group,
                "--out",
                out.to_str().unwrap(),
                "--stop-on-eos",
            ],
            &dir,
        )
    };
    let run = archive(&unique("archive"));
    assert!(
        run.stdout.contains(&format!(
            "end of stream: {FRAMES} frames, {} crops saved",
            expected.len()
        )),
        "{}",
        run.stdout
    );
    assert!(
        !run.stderr.contains("drops the region-of-interest"),
        "{}",
        run.stderr
    );
    let labels: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(labels, ["sports ball"]);
    let folder = out.join("sports ball");
    let files = crops(&folder, "sports ball");
    assert_eq!(files.len(), expected.len());
    for (i, ((n, path), (w, h))) in files.iter().zip(&expected).enumerate() {
        assert_eq!(*n, i as u64 + 1);
        let (cw, ch) = jpeg_size(path);
        assert!(
            (cw as f64 - w).abs() <= 1.0 && (ch as f64 - h).abs() <= 1.0,
            "{}: {cw}x{ch}, box {w}x{h}",
            path.display()
        );
    }

    // Another group reads the topic again: the numbering continues after the files there.
    archive(&unique("archive-again"));
    let files = crops(&folder, "sports ball");
    assert_eq!(files.len(), 2 * expected.len());
    assert!(
        files
            .iter()
            .enumerate()
            .all(|(i, (n, _))| *n == i as u64 + 1)
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Writes `events` to `topic` as `eventsconvert ! kafkasink key=cam1` does: one record
/// each, then the end-of-stream record.
fn publish_events(topic: &str, events: &[kafkavision::events::Event]) {
    use kafkavision::events::CAPS;
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time caps={CAPS} ! kafkasink brokers={} topic={topic} key=cam1",
        brokers()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    for (i, event) in events.iter().enumerate() {
        let mut buffer = gst::Buffer::from_slice(event.to_json());
        buffer
            .get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(100 * i as u64));
        src.push_buffer(buffer).unwrap();
    }
    src.end_of_stream().unwrap();
    let message = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("the events pipeline did not finish within 30 s");
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        matches!(message.view(), gst::MessageView::Eos(_)),
        "{message:?}"
    );
}

#[test]
fn counter_counts_each_event_once_by_its_id() {
    use kafkavision::events::{Direction, Event, EventKind, event_id};
    gst_kafka_vision_examples::init().unwrap();
    let topic = new_topic("counter-events");
    let crossing = |seq: u64, direction: Direction, track: u64, with_id: bool| {
        let mut event = Event::new(EventKind::LineCrossed, track, "car");
        event.camera = Some("cam1".into());
        event.line = Some("gate".into());
        event.direction = Some(direction);
        event.capture_time_ns = Some(kafkavision::clock::unix_time_ns() + seq * 100_000_000);
        if with_id {
            let kind = EventKind::LineCrossed;
            let id = event_id(
                "cam1",
                "cam1-run",
                seq,
                kind,
                "gate",
                Some(direction),
                track,
            );
            event.event_id = Some(id);
        }
        event
    };
    let events = [
        crossing(40, Direction::In, 7, true),
        // Republished by a worker that replaced a dead one: the same id.
        crossing(40, Direction::In, 7, true),
        crossing(70, Direction::Out, 7, true),
        // The same track crossing in again: another event, another id.
        crossing(95, Direction::In, 7, true),
        // An older writer's event (no id), read twice.
        crossing(12, Direction::In, 9, false),
        crossing(12, Direction::In, 9, false),
    ];
    publish_events(&topic, &events);

    let dir = scratch("counter-events");
    let csv = dir.join("crossings.csv");
    let group = unique("counter");
    let b = brokers();
    let args = [
        "--brokers",
        &b,
        "--topic",
        &topic,
        "--group",
        &group,
        "--classes",
        "car",
        "--dedup-window",
        "600",
        "--csv",
        csv.to_str().unwrap(),
        "--stop-on-eos",
        "--quiet",
    ];
    let run = run_bin(env!("CARGO_BIN_EXE_counter"), &args, &dir);
    assert!(
        run.stdout.contains(
            "6 events from 1 camera(s): 3 in, 1 out, 0 entered, 0 left, 2 duplicate events \
             dropped, 0 bad records skipped"
        ),
        "{}",
        run.stdout
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("camera,kind,place,direction,track_id,label,pts_ns,capture_time_ns,event_id")
    );
    let ids: Vec<&str> = lines.map(|l| l.rsplit(',').next().unwrap()).collect();
    let expected: Vec<&str> = [0, 2, 3, 4]
        .iter()
        .map(|&i| events[i].event_id.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(ids, expected, "{text}");

    // A window of 0 would count every copy: refused, naming the option.
    let refused = command(env!("CARGO_BIN_EXE_counter"))
        .args(["--brokers", &b, "--topic", &topic, "--dedup-window", "0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        refused.status.code() == Some(1) && stderr.contains("--dedup-window 0"),
        "{:?}: {stderr}",
        refused.status
    );
    let _ = std::fs::remove_dir_all(dir);
}
