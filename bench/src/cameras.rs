// SPDX-License-Identifier: MIT OR Apache-2.0
//! `cameras-bench`: how many cameras one worker sustains. Cameras are camera-sim's H.264
//! stream (the ball on black, 1280x720, 15 frames/s, a keyframe a second), encoded once and
//! replayed live into a topic by one producer, so that encoding costs the worker's machine
//! nothing. The worker, `kafkasrc ! kafkadecodebin ! videoconvert ! yolodetect max-rate=R !
//! detectionsconvert ! kafkasink`, runs in this process; a checker reads its detections.
//! A count of cameras is sustained when, over the measured window, every decoded frame's
//! detections record arrived and the p99 time from publishing to the record stays under
//! the bound (2 s). The most cameras sustained is searched by doubling, then bisecting.
//! Two workers of one consumer group in the process (a core each, the way a 2-core machine
//! can also be run), with the model in fp32 and quantized to INT8.
//! The same with camera-sim's scripted scene (`--scene crossing`: squares crossing a line
//! at known times, still black between), without and with motion gating. Then the cost per
//! camera, split by stage.
//!
//! Usage: `cameras-bench --brokers HOST:PORT --model M [--int8-model M] [--ort-library L]
//! [--rate 2] [--seconds 20] [--warmup 10] [--max-cameras 64] [--only NAME,...]
//! [--cameras N]` (`scripts/bench cameras` passes the broker, the models and ONNX Runtime).
//! With `CAMERAS_BENCH_TRACE` set, every detections record of the window goes to stderr as
//! `trace SECONDS-INTO-THE-WINDOW LAG-MS`, to see when lag grew.

mod harness;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gst::prelude::*;
use kafkavision::Envelope;
use kafkavision::detections::FrameDetections;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const USAGE: &str = "usage: cameras-bench --brokers HOST:PORT --model M [--int8-model M] [--ort-library L] \
                     [--rate 2] [--seconds 20] [--warmup 10] [--max-cameras 64] [--only NAME,...] [--cameras N]";

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
/// Texture and motion in every block at a bit rate IP cameras use for 720p.
const TEXTURED_CLIP: &str = "videotestsrc num-buffers=150 pattern=zone-plate kx2=20 ky2=20 \
    kt=1 ! video/x-raw,format=I420,width=1280,height=720,framerate=15/1 ! \
    x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 bframes=0 bitrate=3000 ! \
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
    /// The same model quantized to INT8, for the INT8 setups.
    int8_model: Option<PathBuf>,
    ort_library: Option<String>,
    rate: f64,
    seconds: u64,
    warmup: u64,
    max_cameras: u32,
    lag_bound: Duration,
    only: Option<Vec<String>>,
    /// One trial per setup at this many cameras, with the CPU time by thread, instead of
    /// the search.
    cameras: Option<u32>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        brokers: String::new(),
        model: PathBuf::new(),
        int8_model: None,
        ort_library: std::env::var("ORT_DYLIB_PATH").ok(),
        rate: 2.0,
        seconds: 20,
        // Cameras start together, decoding every frame until each stream's second keyframe,
        // while ONNX Runtime makes its first runs: at 20 cameras that backlog took ~3 s to
        // drain, and a 4 s warm-up counted it as lag.
        warmup: 10,
        max_cameras: 64,
        lag_bound: Duration::from_secs(2),
        only: None,
        cameras: None,
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
            "--int8-model" => options.int8_model = Some(PathBuf::from(value()?)),
            "--ort-library" => options.ort_library = Some(value()?),
            "--rate" => {
                options.rate = value()?.parse().map_err(|e| format!("--rate: {e}"))?;
            }
            "--seconds" => options.seconds = number(value()?)?,
            "--warmup" => options.warmup = number(value()?)?,
            "--max-cameras" => options.max_cameras = number(value()?)? as u32,
            "--cameras" => options.cameras = Some(number(value()?)? as u32),
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

/// The camera stream, encoded once and replayed by every camera.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    /// camera-sim's ball on black: 9 KB a frame, 0.8 ms to decode.
    Ball,
    /// camera-sim's scripted scene.
    Scene,
    /// A moving zone plate at 3 Mbit/s: texture everywhere, as real cameras' streams are
    /// heavier to decode than the ball.
    Textured,
}

/// One way of running the worker.
struct Setup {
    name: &'static str,
    what: &'static str,
    parallel: bool,
    decode: &'static str,
    /// Detections per second per camera, as a multiple of `--rate`.
    rate_factor: f64,
    /// What the cameras show.
    stream: Stream,
    /// yolodetect's `motion-threshold` (0: off).
    motion_threshold: f64,
    /// yolodetect's `threads` (0: one per core).
    threads: u32,
    /// Worker pipelines in the consumer group, in this process.
    workers: u32,
    /// The INT8 model (`--int8-model`) instead of `--model`.
    int8: bool,
}

/// What a setup is unless it says otherwise: the default worker.
const DEFAULT_SETUP: Setup = Setup {
    name: "",
    what: "",
    parallel: true,
    decode: "all",
    rate_factor: 1.0,
    stream: Stream::Ball,
    motion_threshold: 0.0,
    threads: 0,
    workers: 1,
    int8: false,
};

const SETUPS: [Setup; 11] = [
    Setup {
        name: "serial",
        what: "every camera decoded in the source's thread (parallel=false, before)",
        parallel: false,
        ..DEFAULT_SETUP
    },
    Setup {
        name: "parallel",
        what: "a decoding thread per camera (parallel=true)",
        ..DEFAULT_SETUP
    },
    Setup {
        name: "parallel-one-thread",
        what: "parallel=true, yolodetect threads=1 (decoders keep the other core)",
        threads: 1,
        ..DEFAULT_SETUP
    },
    Setup {
        name: "two-workers",
        what: "two workers in one group (a core each: parallel=false, yolodetect threads=1)",
        parallel: false,
        threads: 1,
        workers: 2,
        ..DEFAULT_SETUP
    },
    Setup {
        name: "two-workers-int8",
        what: "two workers as above, the model quantized to INT8",
        parallel: false,
        threads: 1,
        workers: 2,
        int8: true,
        ..DEFAULT_SETUP
    },
    Setup {
        name: "textured-serial",
        what: "a 3 Mbit/s textured stream, decoded in the source's thread (parallel=false)",
        parallel: false,
        stream: Stream::Textured,
        ..DEFAULT_SETUP
    },
    Setup {
        name: "textured-parallel",
        what: "the textured stream, a decoding thread per camera (parallel=true)",
        stream: Stream::Textured,
        ..DEFAULT_SETUP
    },
    Setup {
        name: "half-rate",
        what: "parallel=true, detecting at half the rate, decode=all",
        rate_factor: 0.5,
        ..DEFAULT_SETUP
    },
    Setup {
        name: "half-rate-keyframes",
        what: "parallel=true, detecting at half the rate, decode=auto (keyframes only)",
        decode: "auto",
        rate_factor: 0.5,
        ..DEFAULT_SETUP
    },
    Setup {
        name: "scene",
        what: "parallel=true, the scripted scene",
        stream: Stream::Scene,
        ..DEFAULT_SETUP
    },
    Setup {
        name: "scene-motion",
        what: "parallel=true, the scripted scene, motion-threshold=0.002",
        stream: Stream::Scene,
        motion_threshold: 0.002,
        ..DEFAULT_SETUP
    },
];

/// The clip's access units: (bytes, keyframe).
struct Clip {
    caps: String,
    frames: Vec<(Vec<u8>, bool)>,
}

fn encode_clip(stream: Stream) -> Result<Clip, String> {
    let scene = stream == Stream::Scene;
    let description = match stream {
        Stream::Ball => CLIP,
        Stream::Scene => SCENE_CLIP,
        Stream::Textured => TEXTURED_CLIP,
    };
    let pipeline = harness::pipeline(description, &[])?;
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
    /// CPU ms a second by thread name over the measured window (this process: the worker,
    /// the publisher and the checker).
    cpu_by_thread: Vec<(String, f64)>,
    /// The machine's busy share over the window (the broker included).
    machine_busy: f64,
}

fn trial(options: &Options, clip: &Clip, setup: &Setup, cameras: u32) -> Result<Trial, String> {
    let frames = testkit::unique_name("cameras-frames");
    let detections = testkit::unique_name("cameras-detections");
    testkit::create_topic_on(&options.brokers, &frames, 4);
    testkit::create_topic_on(&options.brokers, &detections, 1);
    let rate = options.rate * setup.rate_factor;
    let group = testkit::unique_name("cameras-worker");
    let model = match (&options.int8_model, setup.int8) {
        (Some(int8), true) => int8,
        (None, true) => return Err("no --int8-model for an INT8 setup".into()),
        (_, false) => &options.model,
    }
    .to_string_lossy()
    .to_string();
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
    // Workers of one group split the partitions (so the cameras) between them.
    let mut workers = Vec::new();
    for _ in 0..setup.workers {
        let worker = harness::pipeline(WORKER, &properties)?;
        let decode = worker.by_name("decode").ok_or("no decode")?;
        decode.set_property_from_str("decode", setup.decode);
        worker
            .set_state(gst::State::Playing)
            .map_err(|e| format!("the worker did not start: {e}"))?;
        workers.push(worker);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let checker = {
        let (brokers, topic, stop) = (options.brokers.clone(), detections.clone(), stop.clone());
        std::thread::Builder::new()
            .name("checker".into())
            .spawn(move || check(&brokers, &topic, stop))
            .map_err(|e| e.to_string())?
    };
    let mut errors = Vec::new();
    let sampler = {
        let (warmup, seconds) = (options.warmup, options.seconds);
        std::thread::Builder::new()
            .name("cpu-sampler".into())
            .spawn(move || {
                std::thread::sleep(Duration::from_secs(warmup));
                let before = cpu_snapshot();
                std::thread::sleep(Duration::from_secs(seconds));
                cpu_between(&before, &cpu_snapshot(), seconds as f64)
            })
            .map_err(|e| e.to_string())?
    };
    let started = unix_ns();
    // In a thread of its own name, so that the CPU time by thread tells it from the worker.
    let published = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("publisher".into())
            .spawn_scoped(scope, || {
                publish(
                    options,
                    clip,
                    &frames,
                    cameras,
                    options.warmup + options.seconds,
                )
            })
            .map_err(|e| e.to_string())?
            .join()
            .map_err(|_| "the publisher panicked".to_string())?
    })?;
    let ended = unix_ns();
    let window_start = started + options.warmup * 1_000_000_000;
    // Frames still on the way get the bound to arrive; later ones count as not sustained.
    std::thread::sleep(options.lag_bound + Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let seen = checker.join().map_err(|_| "the checker panicked")??;
    let (cpu_by_thread, machine_busy) = sampler.join().map_err(|_| "the sampler panicked")?;
    let (mut inferred, mut pre_ms, mut infer_ms, mut frames_skipped) = (0, 0.0, 0.0, 0);
    for worker in &workers {
        let bus = worker.bus().ok_or("no bus")?;
        while let Some(message) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(err) = message.view() {
                errors.push(err.error().to_string());
            }
        }
        let detect = worker.by_name("detect").ok_or("no detect")?;
        let decode = worker.by_name("decode").ok_or("no decode")?;
        let stats = detect.property::<gst::Structure>("stats");
        let count = stats.get::<u64>("inferred").unwrap_or(0);
        // Means weighted by each worker's inferences.
        pre_ms += stats.get::<f64>("pre-ms").unwrap_or(0.0) * count as f64;
        infer_ms += stats.get::<f64>("infer-ms").unwrap_or(0.0) * count as f64;
        inferred += count;
        frames_skipped += decode
            .property::<gst::Structure>("stats")
            .get::<u64>("frames-skipped")
            .unwrap_or(0);
        let _ = worker.set_state(gst::State::Null);
    }
    if let Some(error) = errors.first() {
        return Err(format!("the worker failed: {error}"));
    }
    let (pre_ms, infer_ms) = if inferred > 0 {
        (pre_ms / inferred as f64, infer_ms / inferred as f64)
    } else {
        (f64::NAN, f64::NAN)
    };

    let mut latencies: Vec<u64> = seen
        .iter()
        .filter(|(_, capture)| *capture >= window_start && *capture < ended)
        .map(|(arrival, capture)| arrival.saturating_sub(*capture))
        .collect();
    if std::env::var_os("CAMERAS_BENCH_TRACE").is_some() {
        let mut by_capture: Vec<(u64, u64)> = seen.clone();
        by_capture.sort_unstable_by_key(|(_, c)| *c);
        for (arrival, capture) in by_capture.iter().filter(|(_, c)| *c >= window_start) {
            eprintln!(
                "trace {:.3} {:.0}",
                (capture - window_start) as f64 / 1e9,
                (arrival.saturating_sub(*capture)) as f64 / 1e6
            );
        }
    }
    latencies.sort_unstable();
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
        pre_ms,
        infer_ms,
        inferred,
        frames_skipped,
        cpu_by_thread,
        machine_busy,
    })
}

/// CPU time (user + system, in ms) of each thread of this process by thread id, with its
/// name, and of the whole machine: (busy, all).
struct CpuSnapshot {
    threads: HashMap<u32, (String, f64)>,
    machine_busy_ms: f64,
    machine_all_ms: f64,
}

/// /proc counts in USER_HZ, which is 100 on every Linux architecture we run.
const TICK_MS: f64 = 10.0;

fn cpu_snapshot() -> CpuSnapshot {
    let mut threads = HashMap::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let Ok(tid) = task.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            // "tid (name) state ..." where the name may hold spaces and parentheses.
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
            // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
            let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
                f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
            });
            threads.insert(tid, (stat[open + 1..close].to_string(), ticks * TICK_MS));
        }
    }
    let (mut busy, mut all) = (0.0, 0.0);
    if let Some(line) = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().next().map(str::to_string))
    {
        // user nice system idle iowait irq softirq steal
        let values: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|v| v.parse().ok())
            .collect();
        all = values.iter().sum::<f64>() * TICK_MS;
        busy = all
            - values
                .get(3..5)
                .map_or(0.0, |v| v.iter().sum::<f64>() * TICK_MS);
    }
    CpuSnapshot {
        threads,
        machine_busy_ms: busy,
        machine_all_ms: all,
    }
}

/// CPU ms a second by thread name (threads of one name summed, digits dropped so that a
/// name per camera groups), busiest first, and the machine's busy share.
fn cpu_between(
    before: &CpuSnapshot,
    after: &CpuSnapshot,
    seconds: f64,
) -> (Vec<(String, f64)>, f64) {
    let mut by_name: HashMap<String, f64> = HashMap::new();
    for (tid, (name, ms)) in &after.threads {
        let was = before.threads.get(tid).map_or(0.0, |(_, ms)| *ms);
        let group: String = name.chars().filter(|c| !c.is_ascii_digit()).collect();
        *by_name.entry(group).or_default() += (ms - was) / seconds;
    }
    let mut rows: Vec<(String, f64)> = by_name.into_iter().filter(|(_, ms)| *ms > 0.0).collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let all = after.machine_all_ms - before.machine_all_ms;
    let busy_share = if all > 0.0 {
        (after.machine_busy_ms - before.machine_busy_ms) / all
    } else {
        0.0
    };
    (rows, busy_share)
}

/// What a thread of the worker's process does, by its name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// kafkadecodebin's per-stream queue threads (`parallel=true`), which decode.
    Decoders,
    /// kafkasrc's streaming thread (with `parallel=false` it decodes and runs downstream too).
    Source,
    /// kafkadecodebin's output queue thread: videoconvert, yolodetect (calling ONNX Runtime),
    /// detectionsconvert, kafkasink.
    Downstream,
    /// Threads that inherit the process's name: ONNX Runtime's intra-op pool.
    OnnxRuntime,
    /// librdkafka's threads.
    Kafka,
    /// The bench's own publisher, checker and sampler.
    Bench,
}

fn role_of(thread: &str) -> Role {
    if thread.starts_with("queue-src_") {
        Role::Decoders
    } else if thread == "src:src" {
        Role::Source
    } else if thread == "output:src" {
        Role::Downstream
    } else if thread.starts_with("rdk:") {
        Role::Kafka
    } else if thread == "cameras-bench" {
        Role::OnnxRuntime
    } else {
        Role::Bench
    }
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

/// One trial's outcome with the CPU time by thread (`--cameras N`).
fn print_threads(options: &Options, setup: &Setup, trial: &Trial) {
    println!(
        "| {} | {} | {:.1} % detected, p50/p99 {:.0}/{:.0} ms, {:.2} inferred per \
         camera-second, machine {:.0} % busy, inference {:.1} ms a frame (wall) | {} |",
        setup.what,
        trial.cameras,
        trial.detected_share * 100.0,
        trial.p50_ms,
        trial.p99_ms,
        trial.inferred as f64
            / f64::from(trial.cameras)
            / (options.warmup + options.seconds) as f64,
        trial.machine_busy * 100.0,
        trial.infer_ms,
        trial
            .cpu_by_thread
            .iter()
            .take(8)
            .map(|(name, ms)| format!("{name} {ms:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
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
    let clip = encode_clip(Stream::Ball)?;
    let scene = encode_clip(Stream::Scene)?;
    let textured = encode_clip(Stream::Textured)?;
    let kb = |clip: &Clip| {
        clip.frames.iter().map(|(b, _)| b.len()).sum::<usize>() as f64
            / clip.frames.len() as f64
            / 1e3
    };
    let (clip_kb, textured_kb) = (kb(&clip), kb(&textured));
    println!();
    println!(
        "Cameras per worker: camera-sim's H.264 1280x720 at {FPS} frames/s (a keyframe a \
         second, {clip_kb:.1} KB a frame; the textured stream {textured_kb:.1} KB a frame), \
         detected with {} at {} frames/s per camera unless said; sustained = every decoded frame's detections record arrives, p99 publish-to-record \
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
    if options.cameras.is_some() {
        println!("| worker | cameras | outcome | CPU ms a second by thread, busiest first |");
        println!("|---|---:|---|---|");
    } else {
        println!(
            "| worker | cameras sustained | vs serial | tried (cameras: detected %, p50/p99 ms) | \
         inferred per camera-second | frames kept from the decoders |"
        );
        println!("|---|---:|---:|---|---:|---:|");
    }
    // A first trial in a process pays for ONNX Runtime's first runs and the broker's first
    // topics (seen: p99 2.2 s with one camera); not reported.
    let warm_up = Options {
        seconds: 3,
        warmup: 1,
        brokers: options.brokers.clone(),
        model: options.model.clone(),
        int8_model: None,
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
        if setup.int8 && options.int8_model.is_none() {
            println!("| {} | not run: no --int8-model |", setup.what);
            continue;
        }
        let setup_clip = match setup.stream {
            Stream::Ball => &clip,
            Stream::Scene => &scene,
            Stream::Textured => &textured,
        };
        if let Some(cameras) = options.cameras {
            print_threads(
                &options,
                setup,
                &trial(&options, setup_clip, setup, cameras)?,
            );
            continue;
        }
        let trials = most_cameras(&options, setup_clip, setup)?;
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
        if let Some(t) = trials.into_iter().find(|t| Some(t.cameras) == best) {
            costs.push((setup.what, t));
        }
    }
    if options.cameras.is_some() {
        return Ok(());
    }
    let (decode, textured_decode) = (decode_ms(&clip)?, decode_ms(&textured)?);
    println!();
    println!(
        "CPU time per camera-second at the most cameras sustained, measured by thread over the \
         window (ms); decoding one frame alone takes {decode:.2} ms on one thread (the \
         textured stream's: {textured_decode:.2} ms). \
         In serial, the source's thread decodes too. The ONNX Runtime pool is the threads the \
         element's session starts beside the calling (downstream) thread. Kafka clients \
         include the publisher's and the checker's. On 2 cores, 2000 ms a second is the bound."
    );
    println!();
    println!(
        "| worker | cameras | decoders | source | downstream (convert, detect, publish) | \
         ONNX Runtime pool | Kafka clients | worker total | machine busy | cameras its CPU \
         allows on 2 cores | yolodetect's pre-processing / inference ms a frame (wall) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (what, trial) in costs {
        let per_camera = |role: Role| {
            trial
                .cpu_by_thread
                .iter()
                .filter(|(name, _)| role_of(name) == role)
                // (A sum of no f64 is -0.0.)
                .fold(0.0, |sum, (_, ms)| sum + ms)
                / f64::from(trial.cameras)
        };
        let roles = [
            Role::Decoders,
            Role::Source,
            Role::Downstream,
            Role::OnnxRuntime,
            Role::Kafka,
        ];
        let split: Vec<f64> = roles.iter().map(|role| per_camera(*role)).collect();
        // The publisher's Kafka client is not the worker's; counting it makes the bound
        // a little low, never high.
        let total: f64 = split.iter().sum();
        println!(
            "| {what} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {total:.1} | {:.0} % | {:.1} \
             | {:.1} / {:.1} |",
            trial.cameras,
            split[0],
            split[1],
            split[2],
            split[3],
            split[4],
            trial.machine_busy * 100.0,
            2000.0 / total,
            trial.pre_ms,
            trial.infer_ms
        );
    }
    Ok(())
}
