// SPDX-License-Identifier: MIT OR Apache-2.0
//! What saving camera state costs: `appsrc ! objecttrack ! crossingcount ! fakesink` over
//! frames of several cameras (each frame with its Kafka record meta, capture time and a few
//! moving detections; no pixels are touched), without a state topic (the baseline), with the
//! default save points (every 100 frames or 2 s of capture time), and saving every frame.
//! Prints frames/s, the cost per frame against the baseline measured in the same run, the
//! state records written per camera and second of video, their size, and so the state
//! topic's size per camera before and after compaction.

mod harness;

use std::time::{Duration, Instant};

use gst::prelude::*;
use kafkavision::detections::meta as detections_meta;
use kafkavision::detections::{Detection, Rect};
use kafkavision::meta::{RecordMeta, UNIX_TIME_CAPS};
use testkit::{try_create_topic_with, unique_name};

const USAGE: &str = "state-bench --brokers HOST:PORT [--cameras 8] [--frames 2000] \
[--objects 4] [--rounds 3]
  --frames: per camera and run; cameras play at 10 frames/s of capture time";

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 480.0;
const FRAME_MS: u64 = 100;

struct Options {
    brokers: String,
    cameras: u32,
    frames: u64,
    objects: u32,
    rounds: u32,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        brokers: std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()),
        cameras: 8,
        frames: 2000,
        objects: 4,
        rounds: 3,
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
            "--cameras" => options.cameras = number(value()?)? as u32,
            "--frames" => options.frames = number(value()?)?,
            "--objects" => options.objects = number(value()?)? as u32,
            "--rounds" => options.rounds = number(value()?)? as u32,
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}; see --help")),
        }
    }
    if options.cameras == 0 || options.frames == 0 || options.rounds == 0 {
        return Err("--cameras, --frames and --rounds must be at least 1".into());
    }
    Ok(options)
}

/// How a run saves state.
#[derive(Clone, Copy)]
enum Saving {
    Off,
    Defaults,
    EveryFrame,
}

impl Saving {
    fn name(self) -> &'static str {
        match self {
            Saving::Off => "no state-topic (baseline)",
            Saving::Defaults => "state-topic, defaults (100 frames or 2 s)",
            Saving::EveryFrame => "state-topic, every frame",
        }
    }
}

/// Frame `seq` of camera `camera`: objects walking back and forth across the middle.
fn frame(options: &Options, camera: u32, seq: u64, start_ms: u64) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_slice(vec![0u8; 16]);
    let b = buffer.get_mut().unwrap();
    let capture_ns = (start_ms + seq * FRAME_MS) * 1_000_000;
    b.set_pts(gst::ClockTime::from_nseconds(seq * FRAME_MS * 1_000_000));
    let caps = gst::Caps::new_empty_simple(UNIX_TIME_CAPS);
    gst::ReferenceTimestampMeta::add(b, &caps, gst::ClockTime::from_nseconds(capture_ns), None);
    RecordMeta {
        topic: "frames".into(),
        partition: 0,
        offset: (seq * u64::from(options.cameras) + u64::from(camera)) as i64,
        key: Some(format!("cam{camera}")),
        stream: format!("cam{camera}-bench"),
        seq,
    }
    .attach(b);
    for object in 0..options.objects {
        // A walk of 80 frames across and 80 back, each object on its own lane and phase.
        let phase = (seq + u64::from(object) * 20) % 160;
        let along = if phase < 80 { phase } else { 160 - phase } as f64 / 80.0;
        let lane = (f64::from(object) + 0.5) / f64::from(options.objects);
        let bbox = Rect {
            x: (0.1 + 0.8 * along) * WIDTH - 20.0,
            y: lane * HEIGHT * 0.8,
            width: 40.0,
            height: 80.0,
        };
        detections_meta::attach(
            b,
            &Detection::new("person", 0, 0.9, true, bbox, WIDTH as u32, HEIGHT as u32),
        );
    }
    buffer
}

struct Run {
    /// The cameras' first frames (restoring their state).
    first_frames: f64,
    /// The frames after them.
    seconds: f64,
    saved: u64,
    saved_bytes: u64,
    events: u64,
}

fn run(options: &Options, saving: Saving) -> Result<Run, String> {
    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .caps(
            &gst::Caps::builder("video/x-raw")
                .field("format", "RGB")
                .field("width", WIDTH as i32)
                .field("height", HEIGHT as i32)
                .build(),
        )
        .format(gst::Format::Time)
        .block(true)
        .max_buffers(64)
        .build();
    let make = |factory: &str| {
        gst::ElementFactory::make(factory)
            .build()
            .map_err(|e| format!("{factory}: {e}"))
    };
    let track = make("objecttrack")?;
    let count = make("crossingcount")?;
    count.set_property("lines", "gate:0.5,0,0.5,1");
    count.set_property("post-messages", false);
    let sink = make("fakesink")?;
    sink.set_property("sync", false);
    if !matches!(saving, Saving::Off) {
        let topic = unique_name("bench-state");
        try_create_topic_with(
            &options.brokers,
            "",
            &topic,
            1,
            &[("cleanup.policy", "compact")],
        )?;
        for element in [&track, &count] {
            element.set_property("state-topic", &topic);
            element.set_property("state-brokers", &options.brokers);
            if let Saving::EveryFrame = saving {
                element.set_property("state-interval", 1u32);
                element.set_property("state-interval-ms", 0u32);
            }
        }
    }
    pipeline
        .add_many([src.upcast_ref(), &track, &count, &sink])
        .map_err(|e| e.to_string())?;
    gst::Element::link_many([src.upcast_ref(), &track, &count, &sink])
        .map_err(|e| e.to_string())?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("the pipeline did not start: {e}"))?;
    let start_ms = kafkavision::clock::unix_time_ns() / 1_000_000;
    // Frames are made before the clock starts: only the elements are timed.
    let mut frames = Vec::new();
    for seq in 0..options.frames {
        for camera in 0..options.cameras {
            frames.push(frame(options, camera, seq, start_ms));
        }
    }
    let stat = |field: &str| {
        count
            .property::<gst::Structure>("stats")
            .get::<u64>(field)
            .unwrap_or(0)
    };
    // Each camera's first frame restores its state (reading the state topic to its end):
    // timed apart from the frames after it.
    let cameras = options.cameras as usize;
    let mut frames = frames.into_iter();
    let first_started = Instant::now();
    for buffer in frames.by_ref().take(cameras) {
        src.push_buffer(buffer).map_err(|e| e.to_string())?;
    }
    while stat("frames") < cameras as u64 {
        if first_started.elapsed() > Duration::from_secs(60) {
            return Err("the first frames did not pass within 60 s".into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let first_frames = first_started.elapsed().as_secs_f64();
    let started = Instant::now();
    for buffer in frames {
        src.push_buffer(buffer).map_err(|e| e.to_string())?;
    }
    src.end_of_stream().map_err(|e| e.to_string())?;
    let bus = pipeline.bus().unwrap();
    match bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(600),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    ) {
        Some(m) if m.type_() == gst::MessageType::Eos => {}
        Some(m) => return Err(format!("{m:?}")),
        None => return Err("no end of stream within 10 minutes".into()),
    }
    let seconds = started.elapsed().as_secs_f64();
    // Saves land asynchronously: wait until the count of saved states stops moving.
    let mut saved = stat("state-saved");
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = stat("state-saved");
        if now == saved {
            break;
        }
        saved = now;
    }
    let run = Run {
        first_frames,
        seconds,
        saved,
        saved_bytes: stat("state-saved-bytes"),
        events: stat("events"),
    };
    pipeline
        .set_state(gst::State::Null)
        .map_err(|e| e.to_string())?;
    Ok(run)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    if let Err(e) = run_all() {
        eprintln!("state-bench: {e}");
        std::process::exit(1);
    }
}

fn run_all() -> Result<(), String> {
    let options = options()?;
    println!("{}", harness::machine_line());
    gst::init().map_err(|e| e.to_string())?;
    gstgkvanalytics::plugin_register_static().map_err(|e| e.to_string())?;
    let modes = [Saving::Off, Saving::Defaults, Saving::EveryFrame];
    let mut seconds: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut first: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut last: Vec<Option<Run>> = modes.iter().map(|_| None).collect();
    // Rounds alternate the modes so the machine's noise falls on all alike.
    for _ in 0..options.rounds {
        for (i, mode) in modes.iter().enumerate() {
            let run = run(&options, *mode)?;
            seconds[i].push(run.seconds);
            first[i].push(run.first_frames);
            last[i] = Some(run);
        }
    }
    // Timed: every frame but each camera's first.
    let frames = (options.frames - 1) * u64::from(options.cameras);
    let video_seconds = options.frames as f64 * FRAME_MS as f64 / 1000.0;
    println!();
    println!(
        "objecttrack ! crossingcount, {} cameras x {} frames (10 frames/s of capture time, {} \
         moving objects each), median of {} rounds, broker {}",
        options.cameras, options.frames, options.objects, options.rounds, options.brokers
    );
    println!();
    println!(
        "| saving | first frame of {} cameras ms | frames/s after | µs per frame | per frame vs \
         baseline | crossings | states written | per camera per video second | bytes per state \
         | written per camera per hour of video |",
        options.cameras
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let base = median(seconds[0].clone());
    for (i, mode) in modes.iter().enumerate() {
        let s = median(seconds[i].clone());
        let run = last[i].as_ref().unwrap();
        let per_camera_second = run.saved as f64 / f64::from(options.cameras) / video_seconds;
        let bytes = if run.saved > 0 {
            run.saved_bytes as f64 / run.saved as f64
        } else {
            0.0
        };
        let first_ms = median(first[i].clone()) * 1e3;
        println!(
            "| {} | {first_ms:.1} | {:.0} | {:.1} | {:.2} | {} | {} | {:.2} | {:.0} | {:.1} MB |",
            mode.name(),
            frames as f64 / s,
            s * 1e6 / frames as f64,
            s / base,
            run.events,
            run.saved,
            per_camera_second,
            bytes,
            per_camera_second * 3600.0 * bytes / 1e6
        );
    }
    println!();
    println!(
        "After compaction the state topic keeps one record per camera (the bytes per state \
         above); before it, what is written per hour. Writes are asynchronous: the cost per \
         frame is building the snapshot and handing it to the producer."
    );
    Ok(())
}
