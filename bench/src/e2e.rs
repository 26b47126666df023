// SPDX-License-Identifier: MIT OR Apache-2.0
//! `e2e-bench`: from JPEG frames in Kafka to one detections record per frame in Kafka, end
//! to end, on the YOLOv8n-sized model at each size: a seed-style Python loop (kafka-python,
//! OpenCV, numpy, onnxruntime; `bench/python/seed_loop.py`), our pipeline with the element
//! defaults and with candidate defaults, and the floor (bare JPEG decode plus bare ONNX
//! Runtime inference on a prepared tensor); then the pipeline grown one stage at a time, so
//! the cost of each stage shows. All in one run, medians of rotated rounds. Prints Markdown
//! tables.
//!
//! Usage: `e2e-bench --brokers HOST:PORT --models DIR --ort-library L --python P
//! [--frames 300] [--rounds 3] [--sizes 640,320]`, DIR holding `yolov8n-random-<size>.onnx`
//! (`scripts/bench e2e` makes them, starts a private broker and passes the rest).

mod harness;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gst::prelude::*;
use testkit::{try_create_topic, unique_name};

const USAGE: &str = "e2e-bench --brokers HOST:PORT --models DIR --ort-library L --python P \
[--frames 300] [--rounds 3] [--sizes 640,320]";

struct Options {
    brokers: String,
    models: PathBuf,
    ort_library: String,
    python: String,
    frames: usize,
    rounds: usize,
    sizes: Vec<usize>,
}

fn options() -> Result<Options, String> {
    let mut brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let mut models = None;
    let mut ort_library = std::env::var("ORT_DYLIB_PATH").ok();
    let mut python = None;
    let mut frames = 300;
    let mut rounds = 3;
    let mut sizes = vec![640, 320];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--brokers" => brokers = value()?,
            "--models" => models = Some(PathBuf::from(value()?)),
            "--ort-library" => ort_library = Some(value()?),
            "--python" => python = Some(value()?),
            "--frames" => frames = value()?.parse().map_err(|e| format!("--frames: {e}"))?,
            "--rounds" => rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--sizes" => {
                sizes = value()?
                    .split(',')
                    .map(|s| s.trim().parse().map_err(|e| format!("--sizes: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}; usage: {USAGE}")),
        }
    }
    if frames < 2 || rounds == 0 || sizes.is_empty() {
        return Err("--frames must be at least 2, --rounds and --sizes not empty".into());
    }
    Ok(Options {
        brokers,
        models: models.ok_or("--models is required")?,
        ort_library: ort_library.ok_or("--ort-library (or ORT_DYLIB_PATH) is required")?,
        python: python.ok_or("--python is required")?,
        frames,
        rounds,
        sizes,
    })
}

fn model_path(options: &Options, size: usize) -> PathBuf {
    options.models.join(format!("yolov8n-random-{size}.onnx"))
}

/// A camera's frames: SMPTE bars scrolling sideways (every frame differs, and the JPEGs
/// are ~80 KB, near what a 720p camera sends; the ball pattern's are ~26 KB).
const CAMERA: &str = "videotestsrc name=camera pattern=smpte horizontal-speed=8 ! \
    video/x-raw,width=1280,height=720,framerate=30/1 ! jpegenc";

/// Publishes `frames` JPEG frames and the end-of-stream record into a new topic.
fn publish(options: &Options) -> Result<(String, f64), String> {
    let topic = unique_name("e2e-frames");
    try_create_topic(&options.brokers, "", &topic, 1)?;
    let pipeline = gst::parse::launch(&format!("{CAMERA} ! kafkasink name=sink"))
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    let by_name = |name| pipeline.by_name(name).unwrap();
    by_name("camera").set_property("num-buffers", options.frames as i32);
    by_name("sink").set_property("brokers", &options.brokers);
    by_name("sink").set_property("topic", &topic);
    let sizes = Arc::new(Mutex::new(0usize));
    let total = sizes.clone();
    by_name("sink").static_pad("sink").unwrap().add_probe(
        gst::PadProbeType::BUFFER,
        move |_, info| {
            if let Some(buffer) = info.buffer() {
                *total.lock().unwrap() += buffer.size();
            }
            gst::PadProbeReturn::Ok
        },
    );
    run_to_eos(&pipeline)?;
    let mean_kb = *sizes.lock().unwrap() as f64 / options.frames as f64 / 1000.0;
    Ok((topic, mean_kb))
}

/// Plays `pipeline` to its end; the error says what failed.
fn run_to_eos(pipeline: &gst::Pipeline) -> Result<(), String> {
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("the pipeline did not start: {e}"))?;
    let result = harness::wait_eos(pipeline, 900);
    pipeline.set_state(gst::State::Null).unwrap();
    result
}

/// How a candidate differs from the element defaults.
#[derive(Clone, Copy, PartialEq)]
struct Variant {
    label: &'static str,
    /// A queue between the decoder and yolodetect, so that the next frame is decoded
    /// while this one is inferred.
    queue: bool,
    threads: Option<u32>,
    spinning: Option<bool>,
}

const VARIANTS: [Variant; 6] = [
    Variant {
        label: "defaults",
        queue: false,
        threads: None,
        spinning: None,
    },
    Variant {
        label: "spinning=true",
        queue: false,
        threads: None,
        spinning: Some(true),
    },
    Variant {
        label: "threads=1",
        queue: false,
        threads: Some(1),
        spinning: None,
    },
    Variant {
        label: "queue",
        queue: true,
        threads: None,
        spinning: None,
    },
    Variant {
        label: "queue, spinning=true",
        queue: true,
        threads: None,
        spinning: Some(true),
    },
    Variant {
        label: "queue, threads=1",
        queue: true,
        threads: Some(1),
        spinning: None,
    },
];

/// The pipeline grown one element at a time; the last stage is `Variant` "defaults".
#[derive(Clone, Copy, PartialEq)]
enum Stage {
    Source,
    Decode,
    Convert,
    Detect,
}

const STAGES: [Stage; 4] = [Stage::Source, Stage::Decode, Stage::Convert, Stage::Detect];

impl Stage {
    fn description(self) -> &'static str {
        match self {
            Stage::Source => "kafkasrc name=src ! fakesink sync=false",
            Stage::Decode => "kafkasrc name=src ! jpegdec ! fakesink sync=false",
            Stage::Convert => "kafkasrc name=src ! jpegdec ! videoconvert ! fakesink sync=false",
            Stage::Detect => {
                "kafkasrc name=src ! jpegdec ! videoconvert ! yolodetect name=detect ! \
                 fakesink sync=false"
            }
        }
    }

    fn label(self) -> &'static str {
        match self {
            Stage::Source => "kafkasrc ! fakesink",
            Stage::Decode => "+ jpegdec",
            Stage::Convert => "+ videoconvert",
            Stage::Detect => "+ yolodetect",
        }
    }
}

const OURS: &str = "kafkasrc name=src ! jpegdec ! videoconvert ! yolodetect name=detect ! \
    detectionsconvert ! kafkasink name=sink";
const OURS_WITH_QUEUE: &str = "kafkasrc name=src ! jpegdec ! videoconvert ! queue ! \
    yolodetect name=detect ! detectionsconvert ! kafkasink name=sink";

/// One measured run: frames/s and, where yolodetect ran, its own mean costs.
#[derive(Clone, Default)]
struct Run {
    fps: f64,
    detect_ms: Option<[f64; 3]>,
}

/// Runs `description` over the whole input topic as a fresh group; seconds from the first
/// record out of kafkasrc to the end of stream (kafkasink has flushed every record by then).
fn pipeline_run(
    options: &Options,
    size: usize,
    input: &str,
    description: &'static str,
    variant: Option<Variant>,
) -> Result<Run, String> {
    let pipeline = harness::pipeline(
        description,
        &[
            ("src", "brokers", &options.brokers),
            ("src", "topic", &input),
            ("src", "group-id", &unique_name("e2e")),
            ("src", "start-from", &"earliest"),
            ("src", "stop-on-eos", &true),
        ],
    )?;
    let detect = pipeline.by_name("detect");
    if let Some(detect) = &detect {
        detect.set_property("model-location", model_path(options, size).to_str());
        detect.set_property("ort-library", &options.ort_library);
        if let Some(threads) = variant.and_then(|v| v.threads) {
            detect.set_property("threads", threads);
        }
        if let Some(spinning) = variant.and_then(|v| v.spinning) {
            detect.set_property("spinning", spinning);
        }
    }
    if let Some(sink) = pipeline.by_name("sink") {
        let output = unique_name("e2e-detections");
        try_create_topic(&options.brokers, "", &output, 1)?;
        sink.set_property("brokers", &options.brokers);
        sink.set_property("topic", &output);
    }
    let first = Arc::new(Mutex::new(None::<Instant>));
    let stamp = first.clone();
    pipeline
        .by_name("src")
        .unwrap()
        .static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            stamp.lock().unwrap().get_or_insert_with(Instant::now);
            gst::PadProbeReturn::Ok
        });
    run_to_eos(&pipeline)?;
    let ended = Instant::now();
    let started = first
        .lock()
        .unwrap()
        .ok_or("no frame came out of kafkasrc")?;
    let detect_ms = match &detect {
        Some(detect) => {
            let stats = detect.property::<gst::Structure>("stats");
            let inferred = stats.get::<u64>("inferred").unwrap_or(0);
            if inferred != options.frames as u64 {
                return Err(format!(
                    "yolodetect inferred {inferred} of {} frames",
                    options.frames
                ));
            }
            let get = |f: &str| stats.get::<f64>(f).unwrap_or(0.0);
            Some([get("pre-ms"), get("infer-ms"), get("post-ms")])
        }
        None => None,
    };
    Ok(Run {
        fps: options.frames as f64 / (ended - started).as_secs_f64(),
        detect_ms,
    })
}

fn seed_loop(options: &Options, size: usize, input: &str) -> Result<Run, String> {
    let output = unique_name("e2e-seed-detections");
    try_create_topic(&options.brokers, "", &output, 1)?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/seed_loop.py");
    let result = Command::new(&options.python)
        .arg(script)
        .args(["--brokers", &options.brokers, "--topic", input])
        .args(["--output", &output, "--group", &unique_name("e2e-seed")])
        .arg("--model")
        .arg(model_path(options, size))
        .args(["--frames", &options.frames.to_string()])
        .output()
        .map_err(|e| format!("running the seed-style loop: {e}"))?;
    let text = String::from_utf8_lossy(&result.stdout);
    if !result.status.success() {
        return Err(format!(
            "the seed-style loop failed: {}",
            String::from_utf8_lossy(&result.stderr)
        ));
    }
    // {"frames": 300, "seconds": 17.2, "detections": 1234}
    let field = |key: &str| -> Result<f64, String> {
        let rest = text
            .split_once(&format!("\"{key}\": "))
            .ok_or(format!("no {key} in {text}"))?
            .1;
        let end = rest.find([',', '}']).ok_or("bad JSON")?;
        rest[..end].parse().map_err(|e| format!("{key}: {e}"))
    };
    Ok(Run {
        fps: field("frames")? / field("seconds")?,
        detect_ms: None,
    })
}

/// The parts of the floor, ms per frame. Inference is bare ONNX Runtime on a prepared
/// tensor, in three settings: as yolodetect's defaults (threads=0, one per core; no
/// spinning), spinning, and on one thread.
#[derive(Clone, Default)]
struct Floor {
    /// jpegdec of one of the frames, alone.
    decode: f64,
    /// Inference alone, per setting.
    infer: [f64; 3],
    /// Decoding and inferring the same number of frames at once, in two threads (as a
    /// queue between them lets a pipeline do), per setting: wall time per frame.
    overlapped: [f64; 3],
}

/// Inference settings of the floor: (threads, spinning, name).
const FLOOR_SETTINGS: [(usize, bool, &str); 3] = [
    // 0: ONNX Runtime's default, one thread per core, as yolodetect's threads=0.
    (0, false, "defaults"),
    (0, true, "spinning"),
    (1, false, "one thread"),
];

impl Floor {
    /// Decode, then infer, one after the other (the faster inference setting).
    fn serial(&self) -> f64 {
        self.decode + self.infer.iter().copied().fold(f64::INFINITY, f64::min)
    }

    fn best_overlapped(&self) -> f64 {
        self.overlapped
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
    }

    fn best(&self) -> f64 {
        self.serial().min(self.best_overlapped())
    }
}

/// One of the input's JPEG frames, with its caps.
fn jpeg_frame() -> Result<gst::Sample, String> {
    let pipeline = gst::parse::launch(&format!("{CAMERA} ! appsink name=out"))
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    pipeline
        .by_name("camera")
        .unwrap()
        .set_property("num-buffers", 1);
    let sink = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let sample = sink.pull_sample().map_err(|_| "no JPEG frame")?;
    pipeline.set_state(gst::State::Null).unwrap();
    Ok(sample)
}

/// ms per frame of `appsrc ! jpegdec ! fakesink` over `frames` copies of one frame.
fn decode_ms(frames: usize) -> Result<f64, String> {
    let sample = jpeg_frame()?;
    let pipeline = harness::pipeline(
        "appsrc name=src format=time ! jpegdec ! fakesink sync=false",
        &[("src", "caps", &sample.caps().unwrap().to_owned())],
    )?;
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let memory = sample.buffer().unwrap().all_memory().unwrap();
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    for i in 0..frames {
        let mut buffer = gst::Buffer::new();
        let b = buffer.get_mut().unwrap();
        b.append_memory(memory.clone());
        b.set_pts(gst::ClockTime::from_mseconds(33 * i as u64));
        src.push_buffer(buffer).map_err(|e| format!("{e:?}"))?;
    }
    src.end_of_stream().map_err(|e| format!("{e:?}"))?;
    let result = harness::wait_eos(&pipeline, 900);
    let elapsed = started.elapsed().as_secs_f64();
    pipeline.set_state(gst::State::Null).unwrap();
    result?;
    Ok(elapsed * 1000.0 / frames as f64)
}

/// The model loaded as `yolodetect` would with these settings, and a prepared input.
fn bare_model(
    options: &Options,
    size: usize,
    threads: usize,
    spinning: bool,
) -> Result<(gstyolo::yolodetect::model::Model, Vec<f32>), String> {
    use gstyolo::yolodetect::model::{Model, Provider, SessionOptions};
    let mut model = Model::load(
        &model_path(options, size),
        None,
        &SessionOptions {
            provider: Provider::Cpu,
            threads,
            spinning,
            library: Some(&options.ort_library),
            openvino_library: None,
            fallback_to_cpu: false,
            profile: None,
        },
    )?;
    let input = vec![0.5f32; 3 * model.input_width * model.input_height];
    // The warm-up run yolodetect's start() makes, not timed.
    model.run(&input, |_, output| std::hint::black_box(output.len()))?;
    Ok((model, input))
}

/// ms per frame of `runs` inferences, with `decode_alongside` the same number of JPEG
/// decodes in a second thread at the same time (wall time until both are done).
fn infer_ms(
    options: &Options,
    size: usize,
    (threads, spinning): (usize, bool),
    runs: usize,
    decode_alongside: bool,
) -> Result<f64, String> {
    let (mut model, input) = bare_model(options, size, threads, spinning)?;
    let started = Instant::now();
    let decoder = decode_alongside.then(|| std::thread::spawn(move || decode_ms(runs)));
    for _ in 0..runs {
        model.run(&input, |_, output| std::hint::black_box(output.len()))?;
    }
    if let Some(decoder) = decoder {
        decoder
            .join()
            .map_err(|_| "the decoding thread panicked")??;
    }
    Ok(started.elapsed().as_secs_f64() * 1000.0 / runs as f64)
}

fn floor(options: &Options, size: usize) -> Result<Floor, String> {
    // A quarter of the stream per setting: a stable mean, and the rounds give medians.
    let runs = (options.frames / 4).max(10);
    let mut floor = Floor {
        decode: decode_ms(options.frames)?,
        ..Floor::default()
    };
    for (i, (threads, spinning, _)) in FLOOR_SETTINGS.into_iter().enumerate() {
        floor.infer[i] = infer_ms(options, size, (threads, spinning), runs, false)?;
        floor.overlapped[i] = infer_ms(options, size, (threads, spinning), runs, true)?;
    }
    Ok(floor)
}

/// What one bench step runs.
#[derive(Clone, Copy, PartialEq)]
enum Job {
    Seed,
    Ours(Variant),
    Stage(Stage),
    Floor,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The run with the median frame rate.
fn median_run(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.fps.total_cmp(&b.fps));
    runs.swap_remove(runs.len() / 2)
}

fn median_floor(floors: &[Floor]) -> Floor {
    let of = |part: &dyn Fn(&Floor) -> f64| median(floors.iter().map(part).collect());
    Floor {
        decode: of(&|f| f.decode),
        infer: [0, 1, 2].map(|i| of(&|f| f.infer[i])),
        overlapped: [0, 1, 2].map(|i| of(&|f| f.overlapped[i])),
    }
}

/// The 1, 5 and 15-minute load averages: how busy the shared machine was.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn run() -> Result<(), String> {
    let options = options()?;
    println!("{}", harness::machine_line());
    let load_before = load_average();
    gst::init().map_err(|e| e.to_string())?;
    gstkafka::plugin_register_static().map_err(|e| e.to_string())?;
    gstyolo::plugin_register_static().map_err(|e| e.to_string())?;
    gstgkvanalytics::plugin_register_static().map_err(|e| e.to_string())?;
    for &size in &options.sizes {
        if !model_path(&options, size).is_file() {
            return Err(format!(
                "no {} (models/make_models.py --bench writes it)",
                model_path(&options, size).display()
            ));
        }
    }
    let (input, jpeg_kb) = publish(&options)?;
    eprintln!(
        "published {} frames ({jpeg_kb:.0} KB each on average) to {input}",
        options.frames
    );

    let mut jobs = Vec::new();
    for &size in &options.sizes {
        jobs.push((size, Job::Seed));
        jobs.extend(VARIANTS.map(|v| (size, Job::Ours(v))));
        jobs.extend(STAGES.map(|s| (size, Job::Stage(s))));
        jobs.push((size, Job::Floor));
    }
    // Rounds with the order rotated, medians per job: the machine is shared.
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); jobs.len()];
    let mut floors: Vec<Vec<Floor>> = vec![Vec::new(); options.sizes.len()];
    for round in 0..options.rounds {
        for k in 0..jobs.len() {
            let which = (k + round * 5) % jobs.len();
            let (size, job) = jobs[which];
            eprintln!(
                "round {}/{}: step {}/{}",
                round + 1,
                options.rounds,
                k + 1,
                jobs.len()
            );
            match job {
                Job::Seed => runs[which].push(seed_loop(&options, size, &input)?),
                Job::Ours(v) => {
                    let description = if v.queue { OURS_WITH_QUEUE } else { OURS };
                    runs[which].push(pipeline_run(&options, size, &input, description, Some(v))?)
                }
                Job::Stage(s) => {
                    runs[which].push(pipeline_run(&options, size, &input, s.description(), None)?)
                }
                Job::Floor => {
                    let at = options.sizes.iter().position(|&s| s == size).unwrap();
                    floors[at].push(floor(&options, size)?);
                }
            }
        }
    }
    let medians: Vec<Run> = runs
        .into_iter()
        .map(|r| {
            if r.is_empty() {
                Run::default()
            } else {
                median_run(r)
            }
        })
        .collect();
    let floors: Vec<Floor> = floors.iter().map(|f| median_floor(f)).collect();

    println!();
    println!(
        "Load average (1, 5, 15 min) at the start {load_before}, at the end {}",
        load_average()
    );
    println!();
    println!(
        "{} 1280x720 JPEG frames ({jpeg_kb:.0} KB each) from Kafka to one detections record \
         per frame in Kafka, YOLOv8n-sized model (random weights), CPU provider; medians of \
         {} rounds, timed from the first frame read to the last record flushed",
        options.frames, options.rounds
    );
    for (at, &size) in options.sizes.iter().enumerate() {
        let run_of = |job: Job| {
            let i = jobs
                .iter()
                .position(|&(s, j)| s == size && j == job)
                .unwrap();
            &medians[i]
        };
        let seed = run_of(Job::Seed).fps;
        let floor = &floors[at];
        let floor_ms = floor.best();
        println!();
        println!("Model input {size}x{size}:");
        println!();
        println!(
            "| pipeline | frames/s | ms/frame | vs seed-style loop | over the floor | \
             yolodetect pre / infer / post ms |"
        );
        println!("|---|---:|---:|---:|---:|---|");
        let row = |name: &str, fps: f64, detect: Option<[f64; 3]>| {
            let ms = 1000.0 / fps;
            let detect = detect.map_or(String::new(), |[pre, infer, post]| {
                format!("{pre:.1} / {infer:.1} / {post:.1}")
            });
            println!(
                "| {name} | {fps:.1} | {ms:.1} | {:.2}x | {:+.0} % | {detect} |",
                fps / seed,
                (ms / floor_ms - 1.0) * 100.0
            );
        };
        row("seed-style Python loop", seed, None);
        for variant in VARIANTS {
            let run = run_of(Job::Ours(variant));
            row(&format!("ours, {}", variant.label), run.fps, run.detect_ms);
        }
        row("floor", 1000.0 / floor_ms, None);

        println!();
        println!(
            "The floor at {size}, ms per frame: JPEG decode alone {:.2}; serial (decode, then \
             the fastest inference alone) {:.1}; overlapped (decode in a second thread) {:.1}; \
             the floor is the lower.",
            floor.decode,
            floor.serial(),
            floor.best_overlapped()
        );
        println!();
        println!("| bare inference | alone ms | with decode alongside ms |");
        println!("|---|---:|---:|");
        for (i, (_, _, name)) in FLOOR_SETTINGS.iter().enumerate() {
            println!(
                "| {name} | {:.1} | {:.1} |",
                floor.infer[i], floor.overlapped[i]
            );
        }
        println!();
        println!("| stages (element defaults) | frames/s | ms/frame | added ms/frame |");
        println!("|---|---:|---:|---:|");
        let mut before = 0.0;
        let mut stage_row = |name: &str, fps: f64| {
            let ms = 1000.0 / fps;
            println!("| {name} | {fps:.1} | {ms:.2} | {:+.2} |", ms - before);
            before = ms;
        };
        for stage in STAGES {
            stage_row(stage.label(), run_of(Job::Stage(stage)).fps);
        }
        stage_row(
            "+ detectionsconvert ! kafkasink",
            run_of(Job::Ours(VARIANTS[0])).fps,
        );
    }
    Ok(())
}

fn main() {
    if let Err(err) = run() {
        eprintln!("e2e-bench: {err}");
        std::process::exit(1);
    }
}
