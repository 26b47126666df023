// SPDX-License-Identifier: MIT OR Apache-2.0
//! A detector worker: frames from Kafka (any number of cameras), YOLO detection, and back to
//! Kafka as annotated JPEG frames and as detections-only JSON records. Start several with
//! the same `--group`: they share the partitions.
//!
//! One `kafkasrc` reads the topic; each camera (record key) gets its own decode → detect →
//! publish branch, so interleaved H.264 streams never share a decoder:
//!
//! ```text
//! kafkasrc group-id=detectors ! appsink
//!     └─ per camera: appsrc ! decodebin ! videoconvert ! yolodetect draw=true ! tee
//!          ├─ jpegenc ! kafkasink topic=annotated key=<camera>
//!          └─ kafkasink topic=detections payload=detections key=<camera>
//! ```
//!
//! Nothing is lost if a worker dies: `kafkasrc` commits a frame's offset only once the
//! records written from it were acknowledged by the broker, so the frames a killed worker
//! held (at most a few per camera: every queue here is short) are read again by the group.
//! Corrupt frames are skipped (GStreamer 1.22 decoders default to `max-errors=-1`); a
//! worker stops only on errors it cannot step over.
//!
//! `--fixed-cost-ms N` adds N ms per frame after detection (`identity sleep-time`), standing
//! in for a heavier model when testing overload and scale-out.
//!
//! `cargo run --release -p gst-kafka-vision-examples --bin detector-worker -- --brokers B`

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_kafka_vision_examples::{Args, init};

const USAGE: &str =
    "usage: detector-worker --brokers HOST:PORT [--topic frames] [--group detectors]
    [--annotated-topic annotated] [--detections-topic detections] [--model models/blob-yolov8.onnx]
    [--conf 0.25] [--threads 1] [--interval 1] [--fixed-cost-ms 0] [--config k=v,k=v]
    [--frames N] [--stop-on-eos] [--name worker]";

/// Frames a worker holds between Kafka and its output, per stage: what a crash makes the
/// group read again.
const STAGE_DEPTH: u32 = 4;

/// One camera's decode → detect → publish pipeline.
struct Branch {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    caps: Option<gst::Caps>,
}

struct Worker {
    args: Args,
    branches: HashMap<String, Branch>,
}

impl Worker {
    fn branch(&mut self, camera: &str) -> Result<&mut Branch, String> {
        if !self.branches.contains_key(camera) {
            let pipeline = build_branch(&self.args, camera)
                .map_err(|e| format!("camera {camera:?}: {e}"))?;
            let src = pipeline
                .by_name("src")
                .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
                .ok_or("the detection branch has no appsrc")?;
            pipeline.set_state(gst::State::Playing).map_err(|_| {
                format!("camera {camera:?}: the detection branch did not start")
            })?;
            // Debug-quoted: the key is whatever the frame's writer chose (newlines included).
            eprintln!("{}: new camera {camera:?}", self.args.get("name", "worker"));
            self.branches.insert(
                camera.to_string(),
                Branch {
                    pipeline,
                    src,
                    caps: None,
                },
            );
        }
        Ok(self.branches.get_mut(camera).unwrap())
    }

    /// The first error any branch posted.
    fn branch_error(&self) -> Option<String> {
        self.branches.iter().find_map(|(camera, b)| {
            let msg = b.pipeline.bus()?.pop_filtered(&[gst::MessageType::Error])?;
            match msg.view() {
                gst::MessageView::Error(e) => {
                    Some(format!("camera {camera:?}: {} ({:?})", e.error(), e.debug()))
                }
                _ => None,
            }
        })
    }

    /// Stops every branch at once, discarding what is queued: after an error, with the
    /// Kafka reader already stopped, so nothing discarded counts as done.
    fn abandon(&mut self) {
        for (_, b) in self.branches.drain() {
            let _ = b.pipeline.set_state(gst::State::Null);
        }
    }

    /// EOS into every branch, so the sinks deliver everything, then stop them.
    fn finish(&mut self) {
        for (camera, b) in self.branches.drain() {
            let _ = b.src.end_of_stream();
            let bus = b.pipeline.bus().unwrap();
            let done = bus.timed_pop_filtered(
                gst::ClockTime::from_seconds(30),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            );
            if !matches!(
                done.as_ref().map(|m| m.view()),
                Some(gst::MessageView::Eos(_))
            ) {
                eprintln!("camera {camera:?}: did not finish cleanly: {done:?}");
            }
            let _ = b.pipeline.set_state(gst::State::Null);
        }
    }
}

/// The branch's shape is a constant; every value that comes from the command line or a
/// record (the camera key above all: whoever writes to the frames topic chooses it) is set
/// as a typed property, never formatted into the description.
const BRANCH_HEAD: &str = "appsrc name=src format=time is-live=false block=true \
     max-bytes=20000000 ! decodebin ! videoconvert ! yolodetect name=detect draw=true ! ";
/// `--fixed-cost-ms`: a heavier model's cost, in its own thread so it is all a frame costs.
const FIXED_COST: &str = "queue name=cost-queue ! identity name=cost ! ";
const BRANCH_TAIL: &str = "tee name=t \
     t. ! queue name=annotated-queue ! jpegenc quality=85 ! kafkasink name=annotated \
     t. ! queue name=detections-queue ! kafkasink name=detections payload=detections";

fn build_branch(args: &Args, camera: &str) -> Result<gst::Pipeline, String> {
    let fixed_cost_ms: u64 = args.number("fixed-cost-ms", 0);
    let cost = if fixed_cost_ms > 0 { FIXED_COST } else { "" };
    let pipeline = gst::parse::launch(&[BRANCH_HEAD, cost, BRANCH_TAIL].concat())
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    let element = |name: &str| {
        pipeline
            .by_name(name)
            .ok_or_else(|| format!("no element {name}"))
    };
    element("src")?.set_property("max-buffers", STAGE_DEPTH as u64);
    let detect = element("detect")?;
    detect.set_property("model-location", args.get("model", "models/blob-yolov8.onnx"));
    detect.set_property("conf-threshold", args.number::<f64>("conf", 0.25));
    detect.set_property("threads", args.number::<u32>("threads", 1));
    detect.set_property("interval", args.number::<u32>("interval", 1).max(1));
    for queue in ["annotated-queue", "detections-queue"] {
        element(queue)?.set_property("max-size-buffers", STAGE_DEPTH);
    }
    if fixed_cost_ms > 0 {
        element("cost-queue")?.set_property("max-size-buffers", STAGE_DEPTH);
        element("cost")?.set_property("sleep-time", (fixed_cost_ms * 1000) as u32);
    }
    let brokers = args.get("brokers", "127.0.0.1:9092");
    for (sink, topic) in [
        ("annotated", args.get("annotated-topic", "annotated")),
        ("detections", args.get("detections-topic", "detections")),
    ] {
        let sink = element(sink)?;
        sink.set_property("brokers", &brokers);
        sink.set_property("topic", topic);
        sink.set_property("key", camera);
    }
    Ok(pipeline)
}

fn camera_of(buffer: &gst::BufferRef) -> String {
    gst::meta::CustomMeta::from_buffer(buffer, gstkafka::RECORD_META)
        .ok()
        .and_then(|m| {
            let s = m.structure();
            s.get::<String>("key")
                .or_else(|_| s.get::<String>("stream"))
                .ok()
        })
        .unwrap_or_else(|| "unknown".into())
}

fn run() -> Result<(), String> {
    let args = Args::parse(USAGE);
    init()?;
    let name = args.get("name", "worker");
    let limit: u64 = args.number("frames", 0);
    let reader = gst::parse::launch("kafkasrc name=src ! appsink name=in sync=false")
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .unwrap();
    let source = reader.by_name("src").unwrap();
    source.set_property("brokers", args.get("brokers", "127.0.0.1:9092"));
    source.set_property("topic", args.get("topic", "frames"));
    source.set_property("group-id", args.get("group", "detectors"));
    source.set_property("stop-on-eos", args.flag("stop-on-eos"));
    let config = args.get("config", "");
    if !config.is_empty() {
        source.set_property("config", &config);
    }
    let appsink = reader
        .by_name("in")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    appsink.set_max_buffers(STAGE_DEPTH);
    reader.set_state(gst::State::Playing).map_err(|_| {
        reader_error(&reader).unwrap_or_else(|| "the Kafka reader did not start".into())
    })?;

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .map_err(|e| format!("installing the signal handler: {e}"))?;
    }

    let mut worker = Worker {
        args,
        branches: HashMap::new(),
    };
    let mut frames = 0u64;
    let mut last_report = Instant::now();
    let mut partitions_held = 0u32;
    let result = loop {
        if stop.load(Ordering::SeqCst) || (limit > 0 && frames >= limit) {
            break Ok(());
        }
        let held = source
            .property::<gst::Structure>("stats")
            .get::<u32>("partitions-assigned")
            .unwrap_or(0);
        if held != partitions_held {
            partitions_held = held;
            println!("{name}: holds {held} partition(s)");
        }
        if let Some(err) = reader_error(&reader).or_else(|| worker.branch_error()) {
            break Err(err);
        }
        let Some(sample) = appsink.try_pull_sample(gst::ClockTime::from_mseconds(100)) else {
            if appsink.is_eos() {
                break Ok(());
            }
            continue;
        };
        let (Some(buffer), Some(caps)) = (sample.buffer_owned(), sample.caps_owned()) else {
            continue;
        };
        let camera = camera_of(&buffer);
        let branch = match worker.branch(&camera) {
            Ok(branch) => branch,
            Err(err) => break Err(err),
        };
        if branch.caps.as_ref() != Some(&caps) {
            branch.src.set_caps(Some(&caps));
            branch.caps = Some(caps);
        }
        if branch.src.push_buffer(buffer).is_err() {
            break Err(worker
                .branch_error()
                .unwrap_or_else(|| format!("camera {camera:?}: branch stopped")));
        }
        frames += 1;
        if last_report.elapsed() > Duration::from_secs(5) {
            println!(
                "{name}: {frames} frames handed to detection, {} camera(s)",
                worker.branches.len()
            );
            last_report = Instant::now();
        }
    };
    if result.is_ok() {
        worker.finish();
        let _ = reader.set_state(gst::State::Null);
    } else {
        let _ = reader.set_state(gst::State::Null);
        worker.abandon();
    }
    println!("{name}: done, {frames} frames");
    result
}

fn reader_error(reader: &gst::Pipeline) -> Option<String> {
    let msg = reader.bus()?.pop_filtered(&[gst::MessageType::Error])?;
    match msg.view() {
        gst::MessageView::Error(e) => Some(e.error().to_string()),
        _ => None,
    }
}

fn main() {
    if let Err(err) = run() {
        eprintln!("detector-worker: {err}");
        std::process::exit(1);
    }
}
