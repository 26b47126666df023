// SPDX-License-Identifier: MIT OR Apache-2.0
//! The hop camera → broker → worker at the rate of a site: N cameras at F frames/s (4 at
//! 30 by default), each a `kafkasink` fed pre-encoded JPEG frames on time (no encoder
//! competing for the CPU), into one topic with a partition per camera; one `kafkasrc` of a
//! consumer group reads them all, as a worker does. For each client configuration, in the
//! same run and on the same broker: capture to the broker's acknowledgement (kafkasink's
//! per-camera histograms, as `/metrics` shows them) and capture to `kafkasrc`'s push (every
//! frame timed exactly), p50/p99/max; the frames written, read, missing and duplicated per
//! camera. Then a soak with the defaults: the same figures, and it fails unless every frame
//! of every camera arrived once.
//!
//! Usage: `latency-bench --brokers HOST:PORT [--cameras N] [--fps F] [--seconds S]
//! [--soak-seconds S] [--configs NAME,...]`

mod harness;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstkafka::stats;
use kafkavision::latency::{buckets_of, quantile_of};
use kafkavision::meta::{RecordMeta, capture_time};
use testkit::{try_create_topic_with, unique_name};

/// One client configuration under test: what is added to kafkasink's and kafkasrc's
/// `config` (empty: the element's defaults).
struct Variant {
    name: &'static str,
    why: &'static str,
    sink_config: &'static str,
    source_config: &'static str,
}

const VARIANTS: [Variant; 6] = [
    Variant {
        name: "defaults",
        why: "kafkasink linger.ms=0, acks=all, idempotence; kafkasrc fetch.wait.max.ms=20",
        sink_config: "",
        source_config: "",
    },
    Variant {
        name: "linger5",
        why: "kafkasink linger.ms=5 (librdkafka's default, and ours before issue 23)",
        sink_config: "linger.ms=5",
        source_config: "",
    },
    Variant {
        name: "fetch5",
        why: "kafkasrc fetch.wait.max.ms=5",
        sink_config: "",
        source_config: "fetch.wait.max.ms=5",
    },
    Variant {
        name: "acks1",
        why: "kafkasink acks=1 without idempotence (may lose or repeat frames on faults)",
        sink_config: "acks=1,enable.idempotence=false",
        source_config: "",
    },
    Variant {
        name: "acks-all-only",
        why: "kafkasink acks=all without idempotence",
        sink_config: "enable.idempotence=false",
        source_config: "",
    },
    Variant {
        name: "librdkafka",
        why: "librdkafka's own fetch.wait.max.ms=500 on kafkasrc",
        sink_config: "",
        source_config: "fetch.wait.max.ms=500",
    },
];

struct Options {
    brokers: String,
    cameras: usize,
    fps: u32,
    seconds: u64,
    soak_seconds: u64,
    variants: Vec<&'static Variant>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        brokers: String::new(),
        cameras: 4,
        fps: 30,
        seconds: 30,
        soak_seconds: 600,
        variants: VARIANTS.iter().collect(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        let number = |text: String| -> Result<u64, String> {
            text.parse().map_err(|e| format!("{arg}: {e}"))
        };
        match arg.as_str() {
            "--brokers" => options.brokers = value()?,
            "--cameras" => options.cameras = number(value()?)?.clamp(1, 64) as usize,
            "--fps" => options.fps = number(value()?)?.clamp(1, 120) as u32,
            "--seconds" => options.seconds = number(value()?)?.max(5),
            "--soak-seconds" => options.soak_seconds = number(value()?)?,
            "--configs" => {
                let names = value()?;
                options.variants = names
                    .split(',')
                    .map(|name| {
                        VARIANTS.iter().find(|v| v.name == name).ok_or_else(|| {
                            let known: Vec<&str> = VARIANTS.iter().map(|v| v.name).collect();
                            format!("--configs: unknown '{name}' (known: {})", known.join(", "))
                        })
                    })
                    .collect::<Result<_, _>>()?;
            }
            _ => {
                return Err(format!(
                    "unknown argument {arg}; usage: latency-bench --brokers HOST:PORT \
                     [--cameras N] [--fps F] [--seconds S] [--soak-seconds S] \
                     [--configs NAME,...]"
                ));
            }
        }
    }
    if options.brokers.is_empty() {
        return Err("--brokers is required".into());
    }
    Ok(options)
}

/// Frames of a 1280x720 moving ball, JPEG-encoded once before any clock starts.
fn encoded_frames(count: usize) -> Result<Vec<gst::glib::Bytes>, String> {
    let pipeline = harness::pipeline(
        "videotestsrc name=camera pattern=ball ! video/x-raw,width=1280,height=720 ! \
         jpegenc ! appsink name=out sync=false",
        &[("camera", "num-buffers", &(count as i32))],
    )?;
    let sink = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let mut frames = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let map = sample.buffer().unwrap().map_readable().unwrap();
        frames.push(gst::glib::Bytes::from(map.as_slice()));
    }
    pipeline.set_state(gst::State::Null).unwrap();
    if frames.len() != count {
        return Err(format!("encoded {} of {count} frames", frames.len()));
    }
    Ok(frames)
}

/// What the reader saw of one camera.
#[derive(Default)]
struct Arrivals {
    frames: u64,
    latency_ms: Vec<f64>,
}

struct Outcome {
    /// Every camera's kafkasink histogram, added up: (upper bound, cumulative count).
    ack: Vec<(f64, u64)>,
    /// The same over each camera's first second (see `run_variant`).
    ack_startup: Vec<(f64, u64)>,
    arrival_ms: Vec<f64>,
    written: u64,
    read: u64,
    missing: u64,
    duplicated: u64,
    per_camera_read: BTreeMap<String, u64>,
}

fn run_variant(
    options: &Options,
    variant: &Variant,
    seconds: u64,
    frames: &[gst::glib::Bytes],
) -> Result<Outcome, String> {
    let topic = unique_name("bench-hop");
    try_create_topic_with(
        &options.brokers,
        "",
        &topic,
        options.cameras as i32,
        &[("max.message.bytes", "4000000")],
    )?;
    let reader = harness::pipeline(
        "kafkasrc name=src ! fakesink name=out signal-handoffs=true sync=false \
         enable-last-sample=false",
        &[
            ("src", "brokers", &options.brokers),
            ("src", "topic", &topic),
            ("src", "group-id", &unique_name("bench-hop-worker")),
            ("src", "config", &variant.source_config),
        ],
    )?;
    let arrivals: Arc<Mutex<BTreeMap<String, Arrivals>>> = Arc::default();
    let store = arrivals.clone();
    let measured_from_ns = Arc::new(AtomicU64::new(u64::MAX));
    let measuring = measured_from_ns.clone();
    reader
        .by_name("out")
        .unwrap()
        .connect("handoff", false, move |values| {
            let buffer = values[1].get::<gst::Buffer>().ok()?;
            let now_ns = kafkavision::clock::unix_time_ns();
            let meta = RecordMeta::of(&buffer)?;
            let mut arrivals = store.lock().unwrap();
            let camera = arrivals.entry(meta.camera().to_string()).or_default();
            camera.frames += 1;
            if let Some(captured) = capture_time(&buffer)
                && captured >= measuring.load(Ordering::SeqCst)
            {
                camera
                    .latency_ms
                    .push(now_ns.saturating_sub(captured) as f64 / 1e6);
            }
            None
        });
    reader
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    // The group has its partitions before the cameras start.
    let deadline = Instant::now() + Duration::from_secs(30);
    while reader
        .by_name("src")
        .unwrap()
        .property::<gst::Structure>("stats")
        .get::<u32>(stats::kafkasrc::PARTITIONS_ASSIGNED)
        .unwrap_or(0)
        < options.cameras as u32
    {
        if Instant::now() > deadline {
            return Err("the reader got no partitions within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let warmup = u64::from(options.fps);
    let per_camera = warmup + seconds * u64::from(options.fps);
    let period = Duration::from_secs(1) / options.fps;
    let mut cameras = Vec::new();
    for index in 0..options.cameras {
        let camera = harness::pipeline(
            "appsrc name=frames is-live=true format=time do-timestamp=true \
             caps=image/jpeg,width=1280,height=720,framerate=30/1 ! kafkasink name=sink",
            &[
                ("sink", "brokers", &options.brokers),
                ("sink", "topic", &topic),
                ("sink", "key", &format!("cam{}", index + 1)),
                ("sink", "partition", &(index as i32)),
                ("sink", "config", &variant.sink_config),
            ],
        )?;
        camera
            .set_state(gst::State::Playing)
            .map_err(|e| e.to_string())?;
        cameras.push(camera);
    }
    let sources: Vec<gst_app::AppSrc> = cameras
        .iter()
        .map(|c| c.by_name("frames").unwrap().downcast().unwrap())
        .collect();
    let sinks: Vec<gst::Element> = cameras.iter().map(|c| c.by_name("sink").unwrap()).collect();
    // Each camera's first second is written and acknowledged before the measurement: a new
    // idempotent producer holds its first records until the broker gave it a producer id
    // (up to ~0.5 s here), a start-up cost, reported apart.
    pace(&sources, frames, 0..warmup, period)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while sinks.iter().any(|sink| sent(sink) < warmup) {
        if Instant::now() > deadline {
            return Err("a camera's first second was not acknowledged within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let startup = ack_buckets(&sinks)?;
    measured_from_ns.store(kafkavision::clock::unix_time_ns(), Ordering::SeqCst);
    pace(&sources, frames, warmup..per_camera, period)?;
    for source in &sources {
        let _ = source.end_of_stream();
    }
    for camera in &cameras {
        harness::wait_eos(camera, 60)?;
    }
    let written = sinks.iter().map(sent).sum();
    let mut ack = ack_buckets(&sinks)?;
    for (total, (_, before)) in ack.iter_mut().zip(&startup) {
        total.1 -= before;
    }
    for camera in &cameras {
        camera.set_state(gst::State::Null).unwrap();
    }
    // Every frame (and each camera's end-of-stream record) has had time to arrive.
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrivals
        .lock()
        .unwrap()
        .values()
        .map(|a| a.frames)
        .sum::<u64>()
        < per_camera * options.cameras as u64
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let source_stats = reader
        .by_name("src")
        .unwrap()
        .property::<gst::Structure>("stats");
    reader.set_state(gst::State::Null).unwrap();
    let field = |name: &str| source_stats.get::<u64>(name).unwrap_or(0);
    let arrivals = std::mem::take(&mut *arrivals.lock().unwrap());
    let mut arrival_ms: Vec<f64> = arrivals
        .values()
        .flat_map(|a| a.latency_ms.iter().copied())
        .collect();
    arrival_ms.sort_by(f64::total_cmp);
    Ok(Outcome {
        ack_startup: startup,
        ack,
        arrival_ms,
        written,
        read: arrivals.values().map(|a| a.frames).sum(),
        missing: field(stats::kafkasrc::FRAMES_MISSING),
        duplicated: field(stats::kafkasrc::FRAMES_DUPLICATED),
        per_camera_read: arrivals
            .iter()
            .map(|(k, a)| (k.clone(), a.frames))
            .collect(),
    })
}

/// Pushes frames `range` of every camera on time, one thread pacing all, each camera
/// offset by a fraction of the period (cameras are not in phase).
fn pace(
    sources: &[gst_app::AppSrc],
    frames: &[gst::glib::Bytes],
    range: std::ops::Range<u64>,
    period: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    let first = range.start;
    for i in range {
        for (index, source) in sources.iter().enumerate() {
            let due = started
                + period * (i - first) as u32
                + period * index as u32 / sources.len() as u32;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let frame = &frames[(i as usize + index) % frames.len()];
            let mut buffer = gst::Buffer::from_slice(frame.clone());
            buffer
                .get_mut()
                .unwrap()
                .set_duration(gst::ClockTime::from_nseconds(period.as_nanos() as u64));
            source
                .push_buffer(buffer)
                .map_err(|e| format!("camera {index}: {e:?}"))?;
        }
    }
    Ok(())
}

/// Records the broker acknowledged to this kafkasink.
fn sent(sink: &gst::Element) -> u64 {
    sink.property::<gst::Structure>("stats")
        .get::<u64>(stats::kafkasink::RECORDS_SENT)
        .unwrap_or(0)
}

/// Every camera's capture-to-acknowledgement histogram, added up: (upper bound,
/// cumulative count), one set of bounds for all (kafkavision::latency::BOUNDS_MS).
fn ack_buckets(sinks: &[gst::Element]) -> Result<Vec<(f64, u64)>, String> {
    let mut total: Vec<(f64, u64)> = Vec::new();
    for sink in sinks {
        let sink_stats = sink.property::<gst::Structure>("stats");
        let cameras = sink_stats
            .get::<gst::Array>(stats::kafkasink::CAMERAS)
            .map_err(|e| e.to_string())?;
        for camera in cameras.iter() {
            let camera = camera.get::<gst::Structure>().map_err(|e| e.to_string())?;
            let histogram = camera
                .get::<gst::Structure>(stats::kafkasink::LATENCY_MS)
                .map_err(|e| e.to_string())?;
            let buckets = buckets_of(&histogram);
            if total.is_empty() {
                total = buckets;
            } else {
                for (sum, (_, count)) in total.iter_mut().zip(buckets) {
                    sum.1 += count;
                }
            }
        }
    }
    Ok(total)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn print_row(name: &str, outcome: &Outcome) {
    let arrival = &outcome.arrival_ms;
    println!(
        "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} |",
        quantile_of(&outcome.ack, 0.5).unwrap_or(f64::NAN),
        quantile_of(&outcome.ack, 0.99).unwrap_or(f64::NAN),
        quantile_of(&outcome.ack_startup, 0.99).unwrap_or(f64::NAN),
        percentile(arrival, 0.5),
        percentile(arrival, 0.99),
        arrival.last().copied().unwrap_or(f64::NAN),
        outcome.written,
        outcome.read,
        outcome.missing,
        outcome.duplicated,
    );
}

fn table_head() {
    println!(
        "| clients | ack p50 ms | ack p99 ms | first second's ack p99 ms | push p50 ms | push p99 ms | \
         push max ms | frames written | frames read | missing | duplicated |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
}

fn run() -> Result<(), String> {
    let options = options()?;
    println!("{}", harness::machine_line());
    gst::init().map_err(|e| e.to_string())?;
    gstkafka::plugin_register_static().map_err(|e| e.to_string())?;
    let frames = encoded_frames(30)?;
    let bytes: usize = frames.iter().map(|f| f.len()).sum();
    let header = format!(
        "{} cameras at {} frames/s, 1280x720 JPEG ({} KB a frame), a partition each, one \
         kafkasrc reading all; broker {}",
        options.cameras,
        options.fps,
        bytes / frames.len() / 1000,
        options.brokers
    );
    // Not reported: the broker's first topics of a run (its storage files created, its
    // caches cold) would weigh on whichever row came first.
    eprintln!("latency-bench: warming the broker up (5 s, not reported)");
    run_variant(&options, &VARIANTS[0], 5, &frames)?;
    println!();
    println!(
        "Hop camera → broker → worker, {} s per row; {header}",
        options.seconds
    );
    println!(
        "(ack: capture to the broker's acknowledgement, kafkasink's histograms, quantiles \
         interpolated in their buckets; push: capture to kafkasrc's push, every frame)"
    );
    println!();
    table_head();
    for variant in &options.variants {
        eprintln!("latency-bench: {} ({})", variant.name, variant.why);
        let outcome = run_variant(&options, variant, options.seconds, &frames)?;
        print_row(variant.name, &outcome);
    }
    println!();
    for variant in &options.variants {
        println!("- {}: {}", variant.name, variant.why);
    }
    if options.soak_seconds == 0 {
        return Ok(());
    }
    eprintln!(
        "latency-bench: soak of {} s with the defaults",
        options.soak_seconds
    );
    let outcome = run_variant(&options, &VARIANTS[0], options.soak_seconds, &frames)?;
    println!();
    println!(
        "Soak with the defaults, {} s; {header}",
        options.soak_seconds
    );
    println!();
    table_head();
    print_row("defaults", &outcome);
    // The first second, before the measurement, included.
    let expected = (options.soak_seconds + 1) * u64::from(options.fps);
    let short: Vec<String> = (1..=options.cameras)
        .map(|i| format!("cam{i}"))
        .filter(|camera| outcome.per_camera_read.get(camera).copied().unwrap_or(0) != expected)
        .collect();
    if outcome.missing > 0 || outcome.duplicated > 0 || !short.is_empty() {
        return Err(format!(
            "the soak lost or repeated frames: {} missing, {} duplicated, cameras without \
             exactly {expected} frames: {short:?} ({:?})",
            outcome.missing, outcome.duplicated, outcome.per_camera_read
        ));
    }
    println!();
    println!(
        "Every camera's {expected} frames arrived once ({} in all).",
        expected * options.cameras as u64
    );
    Ok(())
}

fn main() {
    if let Err(err) = run() {
        eprintln!("latency-bench: {err}");
        std::process::exit(1);
    }
}
