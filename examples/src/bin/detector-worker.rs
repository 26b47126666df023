// SPDX-License-Identifier: MIT OR Apache-2.0
//! A detector worker: frames from Kafka (any number of cameras), YOLO detection, and back to
//! Kafka as annotated JPEG frames and as detections-only JSON records. Start several with
//! the same `--group`: they share the partitions.
//!
//! The worker is one pipeline, the same as this gst-launch line:
//!
//! ```text
//! kafkasrc group-id=detectors ! kafkadecodebin ! videoconvert ! yolodetect draw=true !
//!   objecttrack ! crossingcount ! tee name=t
//!     t. ! queue ! detectionsconvert output=header ! jpegenc ! kafkasink topic=annotated key-from=record
//!     t. ! queue ! detectionsconvert ! kafkasink topic=detections key-from=record
//!     t. ! queue ! eventsconvert ! kafkasink topic=events key-from=record   (with --lines/--zones)
//! ```
//!
//! Detections carry track ids (`objecttrack`, per camera). With `--lines` or `--zones`
//! (the `crossingcount` syntax), line crossings and zone visits go to the events topic, one
//! record per event. Tracking needs every frame of a camera in one worker, in order: publish
//! analytics cameras with the default `partitioner=key`. With `--state-topic NAME` (a
//! compacted topic, `cleanup.policy=compact`), each camera's tracks and counts are saved
//! there and restored by whichever worker reads the camera next: a worker killed or a
//! camera moved by a rebalance neither loses a crossing nor counts one twice (its events
//! come again with the same `event_id`, which `counter` and the viewer count once).
//!
//! `kafkadecodebin` keeps one decoder per camera (interleaved H.264 streams must never
//! share one); every frame keeps the record meta of the record it came from, so each output
//! record is written under its camera's key. The pipeline is built from a constant
//! description; every value from the command line is set as a typed property, and nothing
//! read from Kafka (a record key above all: whoever writes to the frames topic chooses it)
//! ever becomes part of a description.
//!
//! Nothing is lost if a worker dies: `kafkasrc` commits a frame's offset only once the
//! records written from it were acknowledged by the broker, so the frames a killed worker
//! held (at most a few: every queue here is short) are read again by the group. Corrupt
//! frames are skipped (GStreamer 1.22 decoders default to `max-errors=-1`); a worker stops
//! only on errors it cannot step over.
//!
//! `--fixed-cost-ms N` adds N ms per frame after detection (`identity sleep-time`), standing
//! in for a heavier model when testing overload and scale-out.
//!
//! `--metrics HOST:PORT` serves the pipeline's element stats as Prometheus text at
//! `/metrics` and its health at `/healthz` (`kafkamonitor`): unhealthy after
//! `--health-timeout` seconds (30) without a reachable broker, or with records waiting and
//! no frame moving.
//!
//! `cargo run --release -p gst-kafka-vision-examples --bin detector-worker -- --brokers B`

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_kafka_vision_examples::{Args, KafkaClient, init, serve_metrics, stop_on_signal};
use gstkafka::RecordMeta;
use kafkamonitor::HealthLimits;

const USAGE: &str = concat!(
    "usage: detector-worker [--topic frames] [--group detectors]
    [--annotated-topic annotated] [--detections-topic detections] [--model models/blob-yolov8.onnx]
    [--conf 0.25] [--threads 1] [--interval 1] [--fixed-cost-ms 0] [--config k=v,k=v]
    [--lines name:x1,y1,x2,y2;...] [--zones name:x1,y1,x2,y2,x3,y3,...;...]
    [--events-topic events] [--state-topic NAME] [--idle-timeout MS]
    [--frames N] [--stop-on-eos] [--name worker]
    [--metrics HOST:PORT] [--health-timeout 30] [Kafka client options]

",
    gst_kafka_vision_examples::kafka_options_help!(),
    "
  --config K=V,...         librdkafka settings for the frames consumer only, after
                           --kafka-config (e.g. partition.assignment.strategy=cooperative-sticky)"
);

/// Frames a worker holds between Kafka and its output, per stage: what a crash makes the
/// group read again.
const STAGE_DEPTH: u32 = 4;

const HEAD: &str = "kafkasrc name=src ! kafkadecodebin name=decode ! videoconvert ! \
     yolodetect name=detect draw=true ! objecttrack name=track ! crossingcount name=count ! ";
/// `--fixed-cost-ms`: a heavier model's cost, in its own thread so it is all a frame costs.
const FIXED_COST: &str = "queue name=cost-queue ! identity name=cost ! ";
const TAIL: &str = "tee name=t \
     t. ! queue name=annotated-queue ! detectionsconvert output=header ! jpegenc quality=85 ! \
          kafkasink name=annotated key-from=record \
     t. ! queue name=detections-queue ! detectionsconvert ! \
          kafkasink name=detections key-from=record";
/// `--lines`/`--zones`: events only, one record per line crossing or zone visit.
const EVENTS: &str = " t. ! queue name=events-queue ! eventsconvert ! \
          kafkasink name=events key-from=record";

fn build(args: &Args) -> Result<gst::Pipeline, String> {
    let fixed_cost_ms: u64 = args.number("fixed-cost-ms", 0);
    let cost = if fixed_cost_ms > 0 { FIXED_COST } else { "" };
    let (lines, zones) = (args.get("lines", ""), args.get("zones", ""));
    let counting = !lines.is_empty() || !zones.is_empty();
    let events = if counting { EVENTS } else { "" };
    let pipeline = gst::parse::launch(&[HEAD, cost, TAIL, events].concat())
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    let element = |name: &str| {
        pipeline
            .by_name(name)
            .ok_or_else(|| format!("no element {name}"))
    };
    let client = KafkaClient::from_args(args)?;
    // Output streams are `NAME-PID-KEY` (e.g. worker1-4242-cam1): readers tell the workers
    // apart, and two workers of the same name never share a stream.
    let stream = format!("{}-{}", args.get("name", "worker"), std::process::id());
    let source = element("src")?;
    // The shared settings plus --config: the consumer's own `config`.
    source.set_property("brokers", &client.brokers);
    let consumer_config = client
        .config_property(&args.get("config", ""))
        .map_err(|e| format!("--config: {e}"))?;
    source.set_property("config", consumer_config);
    source.set_property("topic", args.get("topic", "frames"));
    source.set_property("group-id", args.get("group", "detectors"));
    source.set_property("stop-on-eos", args.flag("stop-on-eos"));
    let detect = element("detect")?;
    detect.set_property(
        "model-location",
        args.get("model", "models/blob-yolov8.onnx"),
    );
    detect.set_property("conf-threshold", args.number::<f64>("conf", 0.25));
    detect.set_property("threads", args.number::<u32>("threads", 1));
    detect.set_property("interval", args.number::<u32>("interval", 1).max(1));
    for queue in ["annotated-queue", "detections-queue"] {
        element(queue)?.set_property("max-size-buffers", STAGE_DEPTH);
    }
    let count = element("count")?;
    count.set_property("lines", &lines);
    count.set_property("zones", &zones);
    let state_topic = args.get("state-topic", "");
    if !state_topic.is_empty() {
        // Tracks and counts saved per camera: the worker that reads a camera next goes on
        // from them.
        let state_config = client
            .config_property("")
            .map_err(|e| format!("--kafka-config: {e}"))?;
        for stateful in [element("track")?, count.clone()] {
            stateful.set_property("state-topic", &state_topic);
            stateful.set_property("state-brokers", &client.brokers);
            stateful.set_property("state-config", &state_config);
        }
    }
    // Cameras without frames this long are saved and dropped from memory.
    let idle_ms: u32 = args.number("idle-timeout", 60_000);
    for stateful in [element("track")?, count.clone()] {
        stateful.set_property("idle-timeout", idle_ms);
    }
    if counting {
        element("events-queue")?.set_property("max-size-buffers", STAGE_DEPTH);
        let sink = element("events")?;
        sink.set_property("stream-id", &stream);
        client.configure(&sink);
        sink.set_property("topic", args.get("events-topic", "events"));
    }
    if fixed_cost_ms > 0 {
        element("cost-queue")?.set_property("max-size-buffers", STAGE_DEPTH);
        element("cost")?.set_property("sleep-time", (fixed_cost_ms * 1000) as u32);
    }
    for (sink, topic) in [
        ("annotated", args.get("annotated-topic", "annotated")),
        ("detections", args.get("detections-topic", "detections")),
    ] {
        let sink = element(sink)?;
        client.configure(&sink);
        sink.set_property("topic", topic);
        sink.set_property("stream-id", &stream);
    }
    Ok(pipeline)
}

/// Frames handed to detection, and the cameras seen, counted as frames enter `yolodetect`.
#[derive(Default)]
struct Progress {
    frames: AtomicU64,
    cameras: Mutex<HashSet<String>>,
}

fn watch(pipeline: &gst::Pipeline, name: &str) -> Arc<Progress> {
    let progress = Arc::new(Progress::default());
    let seen = progress.clone();
    let name = name.to_string();
    let pad = pipeline
        .by_name("detect")
        .unwrap()
        .static_pad("sink")
        .unwrap();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buffer) = info.buffer() {
            seen.frames.fetch_add(1, Ordering::Relaxed);
            let camera = RecordMeta::of(buffer)
                .map_or_else(|| "unknown".to_string(), |r| r.camera().to_string());
            if seen.cameras.lock().unwrap().insert(camera.clone()) {
                // Debug-quoted: the key is whatever the frame's writer chose (newlines included).
                eprintln!("{name}: new camera {camera:?}");
            }
        }
        gst::PadProbeReturn::Ok
    });
    progress
}

fn error_text(msg: &gst::Message) -> Option<String> {
    match msg.view() {
        gst::MessageView::Error(e) => Some(format!(
            "{}: {}",
            msg.src().map(|s| s.name().to_string()).unwrap_or_default(),
            e.error()
        )),
        _ => None,
    }
}

fn run() -> Result<(), String> {
    let args = Args::parse(USAGE);
    init()?;
    let name = args.get("name", "worker");
    let limit: u64 = args.number("frames", 0);
    let pipeline = build(&args)?;
    let progress = watch(&pipeline, &name);
    // Unhealthy after this long without a broker, or with records waiting and no frame moving.
    let health_timeout = Duration::from_secs(args.number("health-timeout", 30));
    let limits = HealthLimits {
        broker_down: health_timeout,
        stalled: health_timeout,
        live_input: false,
    };
    let monitor = serve_metrics(&args, &pipeline, limits)?;
    let source = pipeline.by_name("src").unwrap();
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).map_err(|_| {
        bus.pop_filtered(&[gst::MessageType::Error])
            .and_then(|m| error_text(&m))
            .unwrap_or_else(|| "the pipeline did not start".into())
    })?;
    let stop = stop_on_signal()?;

    let mut last_report = Instant::now();
    let mut partitions_held = 0u32;
    let mut ending: Option<Instant> = None;
    let result = loop {
        let frames = progress.frames.load(Ordering::Relaxed);
        if ending.is_none() && (stop.load(Ordering::SeqCst) || (limit > 0 && frames >= limit)) {
            // EOS through the pipeline: every sink delivers what it holds, then it ends.
            ending = Some(Instant::now());
            pipeline.send_event(gst::event::Eos::new());
        }
        let held = source
            .property::<gst::Structure>("stats")
            .get::<u32>("partitions-assigned")
            .unwrap_or(0);
        if held != partitions_held {
            partitions_held = held;
            println!("{name}: holds {held} partition(s)");
        }
        if let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(100),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) {
            match msg.view() {
                gst::MessageView::Eos(_) => break Ok(()),
                _ => {
                    let error = error_text(&msg).unwrap_or_default();
                    monitor.failed(&error);
                    break Err(error);
                }
            }
        }
        if ending.is_some_and(|since| since.elapsed() > Duration::from_secs(30)) {
            break Err("the pipeline did not finish within 30 s of end-of-stream".into());
        }
        if ending.is_none() && last_report.elapsed() > Duration::from_secs(5) {
            println!(
                "{name}: {frames} frames handed to detection, {} camera(s)",
                progress.cameras.lock().unwrap().len()
            );
            last_report = Instant::now();
        }
    };
    // After an error the queued frames are discarded, and not committed: the group reads
    // them again.
    let _ = pipeline.set_state(gst::State::Null);
    println!(
        "{name}: done, {} frames",
        progress.frames.load(Ordering::Relaxed)
    );
    result
}

fn main() {
    if let Err(err) = run() {
        eprintln!("detector-worker: {err}");
        std::process::exit(1);
    }
}
