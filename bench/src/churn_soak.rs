// SPDX-License-Identifier: MIT OR Apache-2.0
//! `churn-soak-bench`: a pool's churn for many minutes, and whether anything grows.
//!
//! * Cameras come and go: `--cameras` at a time play `videotestsrc pattern=ball` (10
//!   frames/s, 320x240 JPEG) into the frames topic, each for `--camera-minutes`, then a new
//!   camera under a new name takes its place (staggered). They run inside this program.
//! * One `detector-worker` (blob model, a counting line, a state topic, a 20 s idle
//!   timeout) is stopped with SIGTERM and started again every `--restart-minutes`.
//! * One `counter` (events) and one `viewer` (annotated frames and events) run throughout.
//!
//! Every `--sample-seconds` the resident memory (VmRSS) of the worker, the counter and the
//! viewer is read. The table shows it per 5 minutes; the summary compares the end with the
//! end of the warm-up (`--warmup-minutes`): for the counter and viewer their RSS, for the
//! worker its RSS just before each restart (every life is as long).
//!
//! Usage: `churn-soak-bench --brokers HOST:PORT --bin-dir target/release [--minutes 30]
//! [--cameras 3] [--camera-minutes 4] [--restart-minutes 3] [--warmup-minutes 5]
//! [--sample-seconds 10]`. `scripts/bench churn-soak` gives it a private broker.

mod harness;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gst::prelude::*;
use harness::rss_kb;
use testkit::{try_create_topic, try_create_topic_with, unique_name};

const USAGE: &str = "churn-soak-bench --brokers HOST:PORT --bin-dir DIR [--minutes 30] \
[--cameras 3] [--camera-minutes 4] [--restart-minutes 3] [--warmup-minutes 5] \
[--sample-seconds 10]";

struct Options {
    brokers: String,
    bin_dir: PathBuf,
    minutes: f64,
    cameras: u32,
    camera_minutes: f64,
    restart_minutes: f64,
    warmup_minutes: f64,
    sample_seconds: u64,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        brokers: std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()),
        bin_dir: PathBuf::from("target/release"),
        minutes: 30.0,
        cameras: 3,
        camera_minutes: 4.0,
        restart_minutes: 3.0,
        warmup_minutes: 5.0,
        sample_seconds: 10,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        let number = |text: String| {
            text.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or(format!("{arg} {text}: expected a positive number"))
        };
        match arg.as_str() {
            "--brokers" => options.brokers = value()?,
            "--bin-dir" => options.bin_dir = PathBuf::from(value()?),
            "--minutes" => options.minutes = number(value()?)?,
            "--cameras" => options.cameras = number(value()?)? as u32,
            "--camera-minutes" => options.camera_minutes = number(value()?)?,
            "--restart-minutes" => options.restart_minutes = number(value()?)?,
            "--warmup-minutes" => options.warmup_minutes = number(value()?)?,
            "--sample-seconds" => options.sample_seconds = number(value()?)? as u64,
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}; see --help")),
        }
    }
    if options.cameras == 0 || options.sample_seconds == 0 {
        return Err("--cameras and --sample-seconds must be at least 1".into());
    }
    Ok(options)
}

/// One sample: minute, then the worker's, counter's and viewer's RSS in kB.
#[derive(Clone, Copy)]
struct Sample {
    minute: f64,
    worker: Option<u64>,
    counter: Option<u64>,
    viewer: Option<u64>,
}

struct Topics {
    frames: String,
    annotated: String,
    detections: String,
    events: String,
    state: String,
}

/// A live camera in this process: `videotestsrc ! jpegenc ! kafkasink key=NAME`.
struct Camera {
    pipeline: gst::Pipeline,
    until: Instant,
}

fn start_camera(
    options: &Options,
    topics: &Topics,
    name: &str,
    life: Duration,
) -> Result<Camera, String> {
    let pipeline = harness::pipeline(
        "videotestsrc is-live=true pattern=ball ! \
         video/x-raw,width=320,height=240,framerate=10/1 ! jpegenc quality=80 ! \
         kafkasink name=sink",
        &[
            ("sink", "brokers", &options.brokers),
            ("sink", "topic", &topics.frames),
            ("sink", "key", &name),
        ],
    )?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("camera {name}: {e}"))?;
    Ok(Camera {
        pipeline,
        until: Instant::now() + life,
    })
}

fn stop_camera(camera: Camera) {
    camera.pipeline.send_event(gst::event::Eos::new());
    let bus = camera.pipeline.bus().unwrap();
    let _ = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(10),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let _ = camera.pipeline.set_state(gst::State::Null);
}

fn spawn(options: &Options, program: &str, args: &[&str]) -> Result<Child, String> {
    Command::new(options.bin_dir.join(program))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {program} from --bin-dir: {e}"))
}

fn start_worker(options: &Options, topics: &Topics) -> Result<Child, String> {
    spawn(
        options,
        "detector-worker",
        &[
            "--brokers",
            &options.brokers,
            "--topic",
            &topics.frames,
            "--group",
            "soak-workers",
            "--annotated-topic",
            &topics.annotated,
            "--detections-topic",
            &topics.detections,
            "--events-topic",
            &topics.events,
            "--lines",
            "gate:0.5,0,0.5,1",
            "--state-topic",
            &topics.state,
            "--idle-timeout",
            "20000",
            "--name",
            "soak",
        ],
    )
}

fn terminate(child: &mut Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn mb(kb: Option<u64>) -> String {
    kb.map_or("-".into(), |kb| format!("{:.1}", kb as f64 / 1024.0))
}

fn growth(from: Option<u64>, to: Option<u64>) -> String {
    match (from, to) {
        (Some(a), Some(b)) if a > 0 => format!("{:+.1} %", (b as f64 / a as f64 - 1.0) * 100.0),
        _ => "-".into(),
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("churn-soak-bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let options = options()?;
    println!("{}", harness::machine_line());
    gst::init().map_err(|e| e.to_string())?;
    gstkafka::plugin_register_static().map_err(|e| e.to_string())?;
    let topics = Topics {
        frames: unique_name("soak-frames"),
        annotated: unique_name("soak-annotated"),
        detections: unique_name("soak-detections"),
        events: unique_name("soak-events"),
        state: unique_name("soak-state"),
    };
    for topic in [&topics.frames, &topics.annotated, &topics.detections] {
        try_create_topic(&options.brokers, "", topic, 4)?;
    }
    try_create_topic(&options.brokers, "", &topics.events, 1)?;
    try_create_topic_with(
        &options.brokers,
        "",
        &topics.state,
        1,
        &[("cleanup.policy", "compact")],
    )?;

    let mut counter = spawn(
        &options,
        "counter",
        &[
            "--brokers",
            &options.brokers,
            "--topic",
            &topics.events,
            "--group",
            "soak-counter",
        ],
    )?;
    let mut viewer = spawn(
        &options,
        "viewer",
        &[
            "--brokers",
            &options.brokers,
            "--topic",
            &topics.annotated,
            "--events-topic",
            &topics.events,
            "--lines",
            "gate:0.5,0,0.5,1",
            "--port",
            "0",
        ],
    )?;
    let mut worker = start_worker(&options, &topics)?;

    let started = Instant::now();
    let end = started + Duration::from_secs_f64(options.minutes * 60.0);
    let camera_life = Duration::from_secs_f64(options.camera_minutes * 60.0);
    let restart_every = Duration::from_secs_f64(options.restart_minutes * 60.0);
    let warmup = Duration::from_secs_f64(options.warmup_minutes * 60.0);
    let mut cameras_started = 0u32;
    let mut cameras: Vec<Camera> = Vec::new();
    // Staggered: camera i of the first set lives (i + 1) / n of a camera's life.
    for i in 0..options.cameras {
        let life = camera_life.mul_f64(f64::from(i + 1) / f64::from(options.cameras));
        cameras.push(start_camera(
            &options,
            &topics,
            &format!("cam{cameras_started}"),
            life,
        )?);
        cameras_started += 1;
    }
    let mut next_restart = started + restart_every;
    let mut restarts = 0u32;
    let mut samples: Vec<Sample> = Vec::new();
    // The worker's RSS just before each restart: (minute, kB).
    let mut worker_lives: Vec<(f64, Option<u64>)> = Vec::new();
    let mut next_sample = started;
    eprintln!(
        "churn-soak: {} min, {} cameras at a time, a new camera every ~{:.1} min, worker restarted every {} min",
        options.minutes,
        options.cameras,
        options.camera_minutes / f64::from(options.cameras),
        options.restart_minutes
    );
    while Instant::now() < end {
        let now = Instant::now();
        let minute = now.duration_since(started).as_secs_f64() / 60.0;
        for camera in cameras.iter_mut() {
            if camera.until <= now {
                let name = format!("cam{cameras_started}");
                let fresh = start_camera(&options, &topics, &name, camera_life)?;
                cameras_started += 1;
                stop_camera(std::mem::replace(camera, fresh));
            }
        }
        if now >= next_restart {
            worker_lives.push((minute, rss_kb(worker.id())));
            terminate(&mut worker);
            worker = start_worker(&options, &topics)?;
            restarts += 1;
            next_restart += restart_every;
        }
        if now >= next_sample {
            for (name, child) in [("counter", &mut counter), ("viewer", &mut viewer)] {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("{name} ended early: {status}"));
                }
            }
            samples.push(Sample {
                minute,
                worker: rss_kb(worker.id()),
                counter: rss_kb(counter.id()),
                viewer: rss_kb(viewer.id()),
            });
            next_sample += Duration::from_secs(options.sample_seconds);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    worker_lives.push((options.minutes, rss_kb(worker.id())));
    for camera in cameras {
        stop_camera(camera);
    }
    for child in [&mut worker, &mut counter, &mut viewer] {
        terminate(child);
    }

    println!();
    println!(
        "Churn soak, {} min: {} cameras ({} at a time, each {} min), the worker restarted {} times \
         (every {} min), counter and viewer throughout; RSS in MB",
        options.minutes,
        cameras_started,
        options.cameras,
        options.camera_minutes,
        restarts,
        options.restart_minutes
    );
    println!();
    println!("| minute | worker | counter | viewer |");
    println!("|---:|---:|---:|---:|");
    let row = |s: &Sample| {
        println!(
            "| {:.1} | {} | {} | {} |",
            s.minute,
            mb(s.worker),
            mb(s.counter),
            mb(s.viewer)
        )
    };
    let mut next_row = 0.0;
    for sample in &samples {
        if sample.minute >= next_row {
            row(sample);
            next_row += 5.0;
        }
    }
    if let Some(last) = samples.last() {
        row(last);
    }
    let warm = warmup.as_secs_f64() / 60.0;
    let after_warmup = samples.iter().find(|s| s.minute >= warm);
    let last = samples.last();
    println!();
    println!("| process | after warm-up ({warm} min) | end | growth |");
    println!("|---|---:|---:|---:|");
    let first_life = worker_lives
        .iter()
        .find(|l| l.0 >= warm)
        .or(worker_lives.first());
    let last_life = worker_lives.last();
    println!(
        "| worker, just before a restart | {} | {} | {} |",
        mb(first_life.and_then(|l| l.1)),
        mb(last_life.and_then(|l| l.1)),
        growth(first_life.and_then(|l| l.1), last_life.and_then(|l| l.1))
    );
    type Pick = fn(&Sample) -> Option<u64>;
    let processes: [(&str, Pick); 2] = [("counter", |s| s.counter), ("viewer", |s| s.viewer)];
    for (name, pick) in processes {
        println!(
            "| {name} | {} | {} | {} |",
            mb(after_warmup.and_then(pick)),
            mb(last.and_then(pick)),
            growth(after_warmup.and_then(pick), last.and_then(pick))
        );
    }
    Ok(())
}
