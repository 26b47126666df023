// SPDX-License-Identifier: MIT OR Apache-2.0
//! `cameras-bench`: how many cameras one worker sustains. Cameras are camera-sim's H.264
//! stream (the ball on black, 1280x720, 15 frames/s, a keyframe a second), encoded once and
//! replayed live into a topic by one producer, so that encoding costs the worker's machine
//! nothing. The worker, `kafkasrc ! kafkadecodebin ! videoconvert ! yolodetect max-rate=R !
//! detectionsconvert ! kafkasink`, runs in this process; a checker reads its detections.
//! A count of cameras is sustained when, over the measured window, every decoded frame's
//! detections record arrived and the p99 time from publishing to the record stays under
//! the bound (2 s). The most cameras sustained is searched by doubling, then bisecting.
//! The same with camera-sim's scripted scene (`--scene crossing`: squares crossing a line
//! at known times, still black between), without and with motion gating. Then the cost per
//! camera, split by stage.
//!
//! Usage: `cameras-bench --brokers HOST:PORT --model M [--ort-library L] [--rate 2]
//! [--seconds 20] [--warmup 6] [--max-cameras 64] [--only NAME,...]` (`scripts/bench
//! cameras` passes the broker, the model and ONNX Runtime).

mod harness;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gst::prelude::*;
use kafkavision::Envelope;
use kafkavision::detections::FrameDetections;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const USAGE: &str = "usage: cameras-bench --brokers HOST:PORT --model M [--ort-library L] \
                     [--rate 2] [--seconds 20] [--warmup 6] [--max-cameras 64] [--only NAME,...]";

const FPS: u64 = 15;
/// Ten seconds of camera-sim's stream, looped (a multiple of its keyframe interval).
const CLIP_FRAMES: usize = 150;
/// The scripted scene's period (200 frames) rounded up to whole keyframe intervals.
const SCENE_FRAMES: usize = 210;
/// camera-sim's first camera at 1280x720: the ball drawn small and scaled up, x264 as it
/// runs it (ultrafast, zero latency, a keyframe a second, no B-frames).
const CLIP: &str = "videotestsrc num-buffers=150 pattern=ball motion=wavy animation-mode=frames \
    background-color=0xff000000 foreground-color=0xffffffff ! \
    video/x-raw,format=I420,width=160,height=90,framerate=15/1 ! videoscale ! \
    video/x-raw,width=1280,height=720,pixel-aspect-ratio=1/1 ! \
    x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 bframes=0 ! \
    video/x-h264,profile=constrained-baseline,stream-format=byte-stream,alignment=au ! \
    appsink name=out sync=false";
/// camera-sim `--scene crossing` at 1280x720: the scripted scene, encoded the same way.
const SCENE_CLIP: &str = "appsrc name=src format=time \
    caps=video/x-raw,format=RGB,width=1280,height=720,framerate=15/1 ! videoconvert ! \
    video/x-raw,format=I420 ! \
    x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 bframes=0 ! \
    video/x-h264,profile=constrained-baseline,stream-format=byte-stream,alignment=au ! \
    appsink name=out sync=false";
const WORKER: &str = "kafkasrc name=src ! kafkadecodebin name=decode ! videoconvert ! \
    yolodetect name=detect ! detectionsconvert ! kafkasink name=sink key-from=record";
const DECODE_ONLY: &str = "appsrc name=src format=time ! h264parse ! \
    avdec_h264 max-threads=1 ! fakesink name=sink sync=false";

struct Options {
    brokers: String,
    model: PathBuf,
    ort_library: Option<String>,
    rate: f64,
    seconds: u64,
    warmup: u64,
    max_cameras: u32,
    lag_bound: Duration,
    only: Option<Vec<String>>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        brokers: String::new(),
        model: PathBuf::new(),
        ort_library: std::env::var("ORT_DYLIB_PATH").ok(),
        rate: 2.0,
        seconds: 20,
        warmup: 6,
        max_cameras: 64,
        lag_bound: Duration::from_secs(2),
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        let number = |text: String| {
            text.parse::<u64>()
                .map_err(|e| format!("{arg} {text}: {e}"))
        };
        match arg.as_str() {
            "--brokers" => options.brokers = value()?,
            "--model" => options.model = PathBuf::from(value()?),
            "--ort-library" => options.ort_library = Some(value()?),
            "--rate" => {
                options.rate = value()?.parse().map_err(|e| format!("--rate: {e}"))?;
            }
            "--seconds" => options.seconds = number(value()?)?,
            "--warmup" => options.warmup = number(value()?)?,
            "--max-cameras" => options.max_cameras = number(value()?)? as u32,
            "--only" => {
                options.only = Some(value()?.split(',').map(str::to_string).collect());
            }
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}; {USAGE}")),
        }
    }
    if options.brokers.is_empty() || options.model.as_os_str().is_empty() {
        return Err(USAGE.into());
    }
    if options.seconds == 0 || options.max_cameras == 0 || options.rate <= 0.0 {
        return Err("--seconds, --max-cameras and --rate must be above 0".into());
    }
    Ok(options)
}

/// One way of running the worker.
struct Setup {
    name: &'static str,
    what: &'static str,
    parallel: bool,
    decode: &'static str,
    /// Detections per second per camera, as a multiple of `--rate`.
    rate_factor: f64,
    /// The scripted scene instead of the ball.
    scene: bool,
    /// yolodetect's `motion-threshold` (0: off).
    motion_threshold: f64,
    /// yolodetect's `threads` (0: one per core).
    threads: u32,
}

const SETUPS: [Setup; 7] = [
    Setup {
        name: "serial",
        what: "every camera decoded in the source's thread (parallel=false, before)",
        parallel: false,
        decode: "all",
        rate_factor: 1.0,
        scene: false,
        motion_threshold: 0.0,
        threads: 0,
    },
    Setup {
        name: "parallel",
        what: "a decoding thread per camera (parallel=true)",
        parallel: true,
        decode: "all",
        rate_factor: 1.0,
        scene: false,
        motion_threshold: 0.0,
        threads: 0,
    },
    Setup {
        name: "parallel-one-thread",
        what: "parallel=true, yolodetect threads=1 (decoders keep the other core)",
        parallel: true,
        decode: "all",
        rate_factor: 1.0,
        scene: false,
        motion_threshold: 0.0,
        threads: 1,
    },
    Setup {
        name: "half-rate",
        what: "parallel=true, detecting at half the rate, decode=all",
        parallel: true,
        decode: "all",
        rate_factor: 0.5,
        scene: false,
        motion_threshold: 0.0,
        threads: 0,
    },
    Setup {
        name: "half-rate-keyframes",
        what: "parallel=true, detecting at half the rate, decode=auto (keyframes only)",
        parallel: true,
        decode: "auto",
        rate_factor: 0.5,
        scene: false,
        motion_threshold: 0.0,
        threads: 0,
    },
    Setup {
        name: "scene",
        what: "parallel=true, the scripted scene",
        parallel: true,
        decode: "all",
        rate_factor: 1.0,
        scene: true,
        motion_threshold: 0.0,
        threads: 0,
    },
    Setup {
        name: "scene-motion",
        what: "parallel=true, the scripted scene, motion-threshold=0.002",
        parallel: true,
        decode: "all",
        rate_factor: 1.0,
        scene: true,
        motion_threshold: 0.002,
        threads: 0,
    },
];

/// The clip's access units: (bytes, keyframe).
struct Clip {
    caps: String,
    frames: Vec<(Vec<u8>, bool)>,
}

fn encode_clip(scene: bool) -> Result<Clip, String> {
    let pipeline = harness::pipeline(if scene { SCENE_CLIP } else { CLIP }, &[])?;
    let sink = pipeline
        .by_name("out")
        .and_downcast::<gst_app::AppSink>()
        .ok_or("no appsink")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let wanted = if scene { SCENE_FRAMES } else { CLIP_FRAMES };
    if scene {
        let src = pipeline
            .by_name("src")
            .and_downcast::<gst_app::AppSrc>()
            .ok_or("no appsrc")?;
        for frame in 0..wanted as u64 {
            let rgb = gst_kafka_vision_examples::scene::render_rgb(
                (frame % u64::from(gst_kafka_vision_examples::scene::PERIOD)) as u32,
                1280,
                720,
            );
            let mut buffer = gst::Buffer::from_mut_slice(rgb);
            let buffer_mut = buffer.get_mut().unwrap();
            buffer_mut.set_pts(gst::ClockTime::from_nseconds(frame * 1_000_000_000 / FPS));
            buffer_mut.set_duration(gst::ClockTime::from_nseconds(1_000_000_000 / FPS));
            src.push_buffer(buffer).map_err(|e| e.to_string())?;
        }
        src.end_of_stream().map_err(|e| e.to_string())?;
    }
    let mut frames = Vec::new();
    let mut caps = None;
    while let Ok(sample) = sink.pull_sample() {
        let buffer = sample.buffer().ok_or("a sample without a buffer")?;
        let map = buffer.map_readable().map_err(|e| e.to_string())?;
        frames.push((
            map.to_vec(),
            !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
        ));
        caps = sample.caps().map(|c| c.to_string());
    }
    let _ = pipeline.set_state(gst::State::Null);
    if frames.len() != wanted || !frames[0].1 {
        return Err(format!(
            "the clip has {} frames (wanted {wanted}, the first a keyframe)",
            frames.len()
        ));
    }
    Ok(Clip {
        caps: caps.ok_or("the clip has no caps")?,
        frames,
    })
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Publishes `cameras` cameras live for `seconds`, each starting at a keyframe, keyframes
/// spread over the second. Returns each frame's (capture time, keyframe).
fn publish(
    options: &Options,
    clip: &Clip,
    topic: &str,
    cameras: u32,
    seconds: u64,
) -> Result<Vec<(u64, bool)>, String> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &options.brokers)
        .set("linger.ms", "5")
        .create()
        .map_err(|e| e.to_string())?;
    let frame_time = Duration::from_nanos(1_000_000_000 / FPS);
    let start = Instant::now();
    let mut published = Vec::new();
    let mut seqs = vec![0u64; cameras as usize];
    let streams: Vec<String> = (0..cameras)
        .map(|c| format!("bench-cam{c}-{}", unix_ns()))
        .collect();
    for tick in 0..seconds * FPS {
        if let Some(wait) =
            (start + frame_time * tick as u32).checked_duration_since(Instant::now())
        {
            std::thread::sleep(wait);
        }
        for camera in 0..cameras as usize {
            // Camera c's clip runs c frames ahead; it starts at its first keyframe.
            let shifted = tick as usize + camera;
            let first_keyframe = camera.div_ceil(FPS as usize) * FPS as usize;
            if shifted < first_keyframe {
                continue;
            }
            let (bytes, keyframe) = &clip.frames[shifted % clip.frames.len()];
            let seq = seqs[camera];
            seqs[camera] += 1;
            let mut envelope = Envelope::buffer(&streams[camera], seq, Some(clip.caps.clone()));
            envelope.pts = Some(seq * 1_000_000_000 / FPS);
            envelope.duration = Some(1_000_000_000 / FPS);
            if !keyframe {
                envelope.flags = kafkavision::Flags::DELTA_UNIT;
            }
            let capture = unix_ns();
            envelope.capture_time_ns = Some(capture);
            let mut headers = OwnedHeaders::new();
            for (name, value) in envelope.to_headers() {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value.as_bytes()),
                });
            }
            let key = format!("cam{camera}");
            let record = BaseRecord::to(topic)
                .key(&key)
                .payload(bytes)
                .headers(headers);
            producer.send(record).map_err(|(e, _)| e.to_string())?;
            published.push((capture, *keyframe));
        }
    }
    producer
        .flush(Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    Ok(published)
}

/// Detections records as they arrive: (arrival, capture time), both Unix ns.
fn check(brokers: &str, topic: &str, stop: Arc<AtomicBool>) -> Result<Vec<(u64, u64)>, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("cameras-check-{}", unix_ns()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "20")
        .create()
        .map_err(|e| e.to_string())?;
    consumer.subscribe(&[topic]).map_err(|e| e.to_string())?;
    let mut seen = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let arrival = unix_ns();
        let message = message.map_err(|e| e.to_string())?;
        if let Some(capture) = message
            .payload()
            .and_then(|p| FrameDetections::from_json(p).ok())
            .and_then(|d| d.capture_time_ns)
        {
            seen.push((arrival, capture));
        }
    }
    Ok(seen)
}

struct Trial {
    cameras: u32,
    sustained: bool,
    /// Of the frames published in the measured window.
    detected_share: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// yolodetect's means over the run.
    pre_ms: f64,
    infer_ms: f64,
    inferred: u64,
    frames_skipped: u64,
}

fn trial(options: &Options, clip: &Clip, setup: &Setup, cameras: u32) -> Result<Trial, String> {
    let frames = testkit::unique_name("cameras-frames");
    let detections = testkit::unique_name("cameras-detections");
    testkit::create_topic_on(&options.brokers, &frames, 4);
    testkit::create_topic_on(&options.brokers, &detections, 1);
    let rate = options.rate * setup.rate_factor;
    let group = testkit::unique_name("cameras-worker");
    let model = options.model.to_string_lossy().to_string();
    let mut properties: Vec<(&str, &str, &dyn ToValue)> = vec![
        ("src", "brokers", &options.brokers),
        ("src", "topic", &frames),
        ("src", "group-id", &group),
        ("decode", "parallel", &setup.parallel),
        ("detect", "model-location", &model),
        ("detect", "max-rate", &rate),
        ("detect", "motion-threshold", &setup.motion_threshold),
        ("detect", "threads", &setup.threads),
        ("sink", "brokers", &options.brokers),
        ("sink", "topic", &detections),
    ];
    if let Some(library) = &options.ort_library {
        properties.push(("detect", "ort-library", library));
    }
    let worker = harness::pipeline(WORKER, &properties)?;
    let decode = worker.by_name("decode").ok_or("no decode")?;
    decode.set_property_from_str("decode", setup.decode);
    worker
        .set_state(gst::State::Playing)
        .map_err(|e| format!("the worker did not start: {e}"))?;

    let stop = Arc::new(AtomicBool::new(false));
    let checker = {
        let (brokers, topic, stop) = (options.brokers.clone(), detections.clone(), stop.clone());
        std::thread::spawn(move || check(&brokers, &topic, stop))
    };
    let bus = worker.bus().ok_or("no bus")?;
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let started = unix_ns();
    let published = publish(
        options,
        clip,
        &frames,
        cameras,
        options.warmup + options.seconds,
    )?;
    let ended = unix_ns();
    let window_start = started + options.warmup * 1_000_000_000;
    // Frames still on the way get the bound to arrive; later ones count as not sustained.
    std::thread::sleep(options.lag_bound + Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let seen = checker.join().map_err(|_| "the checker panicked")??;
    while let Some(message) = bus.pop_filtered(&[gst::MessageType::Error]) {
        if let gst::MessageView::Error(err) = message.view() {
            errors.lock().unwrap().push(err.error().to_string());
        }
    }
    let detect = worker.by_name("detect").ok_or("no detect")?;
    let stats = detect.property::<gst::Structure>("stats");
    let decode_stats = decode.property::<gst::Structure>("stats");
    let _ = worker.set_state(gst::State::Null);
    if let Some(error) = errors.lock().unwrap().first() {
        return Err(format!("the worker failed: {error}"));
    }

    let mut latencies: Vec<u64> = seen
        .iter()
        .filter(|(_, capture)| *capture >= window_start && *capture < ended)
        .map(|(arrival, capture)| arrival.saturating_sub(*capture))
        .collect();
    latencies.sort_unstable();
    let frames_skipped = decode_stats.get::<u64>("frames-skipped").unwrap_or(0);
    // Keyframes only (decode=auto turns to them within the warm-up): only keyframes have a
    // record to wait for.
    let keyframes_only = setup.decode != "all";
    let expected = published
        .iter()
        .filter(|(capture, keyframe)| {
            *capture >= window_start && *capture < ended && (*keyframe || !keyframes_only)
        })
        .count()
        .max(1) as f64;
    let detected_share = latencies.len() as f64 / expected;
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::INFINITY, |ns| *ns as f64 / 1e6)
    };
    let (p50_ms, p99_ms) = (at(0.5), at(0.99));
    Ok(Trial {
        cameras,
        sustained: detected_share >= 0.99 && p99_ms <= options.lag_bound.as_secs_f64() * 1e3,
        detected_share,
        p50_ms,
        p99_ms,
        pre_ms: stats.get::<f64>("pre-ms").unwrap_or(f64::NAN),
        infer_ms: stats.get::<f64>("infer-ms").unwrap_or(f64::NAN),
        inferred: stats.get::<u64>("inferred").unwrap_or(0),
        frames_skipped,
    })
}

/// Doubling from 1, then bisecting between the last count sustained and the first not.
fn most_cameras(options: &Options, clip: &Clip, setup: &Setup) -> Result<Vec<Trial>, String> {
    let mut trials: Vec<Trial> = Vec::new();
    let run = |cameras: u32, trials: &mut Vec<Trial>| -> Result<bool, String> {
        let trial = trial(options, clip, setup, cameras)?;
        eprintln!(
            "cameras-bench: {} x{cameras}: {} ({:.1} % detected, p99 {:.0} ms)",
            setup.name,
            if trial.sustained {
                "sustained"
            } else {
                "not sustained"
            },
            trial.detected_share * 100.0,
            trial.p99_ms
        );
        let sustained = trial.sustained;
        trials.push(trial);
        Ok(sustained)
    };
    let (mut good, mut bad) = (0, None);
    let mut cameras = 1;
    while cameras <= options.max_cameras {
        if run(cameras, &mut trials)? {
            good = cameras;
            cameras *= 2;
        } else {
            bad = Some(cameras);
            break;
        }
    }
    if let Some(mut bad) = bad {
        while bad - good > 1 {
            let middle = (good + bad) / 2;
            if run(middle, &mut trials)? {
                good = middle;
            } else {
                bad = middle;
            }
        }
    }
    trials.sort_by_key(|t| t.cameras);
    Ok(trials)
}

/// Decoding one of the clip's frames on one thread, in ms (median of 3 passes).
fn decode_ms(clip: &Clip) -> Result<f64, String> {
    let mut passes = Vec::new();
    for _ in 0..3 {
        let pipeline = harness::pipeline(DECODE_ONLY, &[])?;
        let src = pipeline
            .by_name("src")
            .and_downcast::<gst_app::AppSrc>()
            .ok_or("no appsrc")?;
        src.set_caps(Some(
            &clip
                .caps
                .parse::<gst::Caps>()
                .map_err(|e| format!("clip caps: {e}"))?,
        ));
        for (i, (bytes, keyframe)) in clip.frames.iter().enumerate() {
            let mut buffer = gst::Buffer::from_slice(bytes.clone());
            let buffer_mut = buffer.get_mut().unwrap();
            buffer_mut.set_pts(gst::ClockTime::from_nseconds(
                i as u64 * 1_000_000_000 / FPS,
            ));
            if !keyframe {
                buffer_mut.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
            src.push_buffer(buffer).map_err(|e| e.to_string())?;
        }
        src.end_of_stream().map_err(|e| e.to_string())?;
        let started = Instant::now();
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| e.to_string())?;
        let bus = pipeline.bus().ok_or("no bus")?;
        let done = bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        let took = started.elapsed();
        let _ = pipeline.set_state(gst::State::Null);
        match done.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Eos(_)) => {}
            _ => return Err("decoding the clip failed".into()),
        }
        passes.push(took.as_secs_f64() * 1e3 / clip.frames.len() as f64);
    }
    passes.sort_by(|a, b| a.total_cmp(b));
    Ok(passes[1])
}

fn main() {
    if let Err(e) = run_all() {
        eprintln!("cameras-bench: {e}");
        std::process::exit(1);
    }
}

fn run_all() -> Result<(), String> {
    let options = options()?;
    println!("{}", harness::machine_line());
    gst::init().map_err(|e| e.to_string())?;
    gstkafka::plugin_register_static().map_err(|e| e.to_string())?;
    gstyolo::plugin_register_static().map_err(|e| e.to_string())?;
    gstgkvanalytics::plugin_register_static().map_err(|e| e.to_string())?;
    let clip = encode_clip(false)?;
    let scene = encode_clip(true)?;
    let clip_kb = clip.frames.iter().map(|(b, _)| b.len()).sum::<usize>() as f64
        / clip.frames.len() as f64
        / 1e3;
    println!();
    println!(
        "Cameras per worker: camera-sim's H.264 1280x720 at {FPS} frames/s (a keyframe a \
         second, {clip_kb:.1} KB a frame), detected with {} at {} frames/s per camera unless \
         said; sustained = every decoded frame's detections record arrives, p99 publish-to-record \
         under {} s, over {} s after {} s of warm-up; broker {}",
        options
            .model
            .file_name()
            .map_or("the model".into(), |n| n.to_string_lossy()),
        options.rate,
        options.lag_bound.as_secs(),
        options.seconds,
        options.warmup,
        options.brokers
    );
    println!();
    println!(
        "| worker | cameras sustained | vs serial | tried (cameras: detected %, p50/p99 ms) | \
         inferred per camera-second | frames kept from the decoders |"
    );
    println!("|---|---:|---:|---|---:|---:|");
    // A first trial in a process pays for ONNX Runtime's first runs and the broker's first
    // topics (seen: p99 2.2 s with one camera); not reported.
    let warm_up = Options {
        seconds: 3,
        warmup: 1,
        brokers: options.brokers.clone(),
        model: options.model.clone(),
        ort_library: options.ort_library.clone(),
        only: None,
        ..options
    };
    trial(&warm_up, &clip, &SETUPS[0], 1)?;
    let mut serial = None;
    let mut costs = Vec::new();
    for setup in &SETUPS {
        if let Some(only) = &options.only
            && !only.iter().any(|n| n == setup.name)
        {
            continue;
        }
        let trials = most_cameras(&options, if setup.scene { &scene } else { &clip }, setup)?;
        let best = trials
            .iter()
            .filter(|t| t.sustained)
            .map(|t| t.cameras)
            .max();
        let best_count = best.unwrap_or(0);
        if setup.name == "serial" {
            serial = Some(best_count);
        }
        let tried: Vec<String> = trials
            .iter()
            .map(|t| {
                format!(
                    "{}: {:.0} %, {:.0}/{:.0}",
                    t.cameras,
                    t.detected_share * 100.0,
                    t.p50_ms,
                    t.p99_ms
                )
            })
            .collect();
        let at_best = trials.iter().find(|t| Some(t.cameras) == best);
        let per_camera_second = at_best.map_or(0.0, |t| {
            t.inferred as f64 / f64::from(t.cameras) / (options.warmup + options.seconds) as f64
        });
        println!(
            "| {} | {best_count} | {} | {} | {per_camera_second:.2} | {} |",
            setup.what,
            serial.filter(|s| *s > 0).map_or("".into(), |s| format!(
                "{:.2}",
                f64::from(best_count) / f64::from(s)
            )),
            tried.join("; "),
            at_best.map_or(0, |t| t.frames_skipped)
        );
        if let Some(t) = at_best {
            costs.push((setup.what, setup.rate_factor, t.pre_ms, t.infer_ms));
        }
    }
    let decode = decode_ms(&clip)?;
    println!();
    println!(
        "Cost per camera-second of CPU time at the most cameras sustained: decode ({decode:.2} ms \
         a frame on one thread, every frame), convert (videoconvert passes I420 through to \
         yolodetect: 0), pre-processing and inference (yolodetect's means); on 2 cores the \
         bound is 2000 ms of CPU time a second."
    );
    println!();
    println!(
        "| worker | decode ms | pre-processing ms | inference ms | total ms | cameras it allows on 2 cores |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (what, factor, pre, infer) in costs {
        let rate = options.rate * factor;
        let decoded = if what.contains("keyframes") {
            1.0
        } else {
            FPS as f64
        };
        let split = [decoded * decode, rate * pre, rate * infer];
        let total: f64 = split.iter().sum();
        println!(
            "| {what} | {:.1} | {:.1} | {:.1} | {total:.1} | {:.1} |",
            split[0],
            split[1],
            split[2],
            2000.0 / total
        );
    }
    Ok(())
}
