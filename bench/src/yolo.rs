// SPDX-License-Identifier: MIT OR Apache-2.0
//! `yolo-bench`: `yolodetect` on a 1280x720 stream with the YOLOv8n-sized model at 640 and
//! 320, on the CPU provider and OpenVINO (each precision), float and INT8, each beside the
//! bare ONNX Runtime run of the same model and provider on a prepared tensor (the floor),
//! and a Python onnxruntime + OpenCV pipeline doing the same letterbox and NMS (the
//! baseline), all in one run; then pre-processing alone per format. Prints Markdown tables.
//!
//! Usage: `yolo-bench --models DIR --ort-library L --python P [--sizes 640,320] [--frames N]
//! [--threads T] [--rounds R] [--preprocessing-only]`, DIR holding
//! `yolov8n-random-<size>.onnx` and, for the INT8 rows, `yolov8n-random-<size>-int8.onnx`
//! (`scripts/bench yolo` fills these in).

mod harness;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use gst::prelude::*;

struct Options {
    models: PathBuf,
    sizes: Vec<usize>,
    ort_library: String,
    python: String,
    frames: usize,
    threads: usize,
    rounds: usize,
    preprocessing_only: bool,
}

fn options() -> Result<Options, String> {
    let mut models = None;
    let mut sizes = vec![640, 320];
    let mut ort_library = std::env::var("ORT_DYLIB_PATH").ok();
    let mut python = None;
    let mut frames = 60;
    let mut threads = 2;
    let mut rounds = 3;
    let mut preprocessing_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--models" => models = Some(PathBuf::from(value()?)),
            "--sizes" => {
                sizes = value()?
                    .split(',')
                    .map(|s| s.trim().parse().map_err(|e| format!("--sizes: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--ort-library" => ort_library = Some(value()?),
            "--python" => python = Some(value()?),
            "--frames" => frames = value()?.parse().map_err(|e| format!("--frames: {e}"))?,
            "--threads" => threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--rounds" => rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--preprocessing-only" => preprocessing_only = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Options {
        models: models.unwrap_or_default(),
        sizes,
        ort_library: ort_library.ok_or("--ort-library (or ORT_DYLIB_PATH) is required")?,
        python: python.unwrap_or_default(),
        frames,
        threads,
        rounds: rounds.max(1),
        preprocessing_only,
    })
}

#[derive(Clone)]
struct Row {
    name: String,
    fps: f64,
    pre_ms: f64,
    infer_ms: f64,
    post_ms: f64,
}

/// Where `yolodetect` runs the model.
#[derive(Clone, Copy, PartialEq)]
enum On {
    Cpu,
    /// OpenVINO on the CPU with this precision (auto, f32, bf16).
    OpenVino(&'static str),
    /// `execution-provider=auto`, the default.
    Auto,
}

/// One way of running the model: provider, precision, weights, gating.
#[derive(Clone, Copy, PartialEq)]
struct Config {
    label: &'static str,
    on: On,
    int8: bool,
    /// `motion-threshold` on a still scene (every frame the same).
    still_gating: bool,
}

const CONFIGS: [Config; 8] = [
    Config {
        label: "CPU fp32",
        on: On::Cpu,
        int8: false,
        still_gating: false,
    },
    Config {
        label: "auto fp32 (the default)",
        on: On::Auto,
        int8: false,
        still_gating: false,
    },
    Config {
        label: "OpenVINO f32",
        on: On::OpenVino("f32"),
        int8: false,
        still_gating: false,
    },
    Config {
        label: "OpenVINO bf16",
        on: On::OpenVino("bf16"),
        int8: false,
        still_gating: false,
    },
    Config {
        label: "OpenVINO auto",
        on: On::OpenVino("auto"),
        int8: false,
        still_gating: false,
    },
    Config {
        label: "INT8 CPU",
        on: On::Cpu,
        int8: true,
        still_gating: false,
    },
    Config {
        label: "INT8 OpenVINO",
        on: On::OpenVino("auto"),
        int8: true,
        still_gating: false,
    },
    Config {
        label: "CPU fp32, motion-threshold=0.002, still scene",
        on: On::Cpu,
        int8: false,
        still_gating: true,
    },
];

fn model_path(options: &Options, size: usize, int8: bool) -> PathBuf {
    let suffix = if int8 { "-int8" } else { "" };
    options
        .models
        .join(format!("yolov8n-random-{size}{suffix}.onnx"))
}

/// One 1280x720 I420 frame of a busy picture (the ball pattern; snow would be unrealistic
/// noise for YOLO).
fn test_frame(caps: &gst::Caps) -> Result<gst::Buffer, String> {
    let pipeline = harness::pipeline(
        "videotestsrc pattern=ball num-buffers=1 ! capsfilter name=format ! appsink name=out",
        &[("format", "caps", caps)],
    )?;
    let sink = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let sample = sink.pull_sample().map_err(|_| "no frame")?;
    pipeline.set_state(gst::State::Null).unwrap();
    Ok(sample.buffer_owned().unwrap())
}

/// `appsrc ! yolodetect ! fakesink` over `frames` 1280x720 I420 frames.
fn yolodetect(options: &Options, size: usize, config: Config) -> Result<Row, String> {
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", 1280)
        .field("height", 720)
        .field("framerate", gst::Fraction::new(30, 1))
        .build();
    let frame = test_frame(&caps)?;
    let model = model_path(options, size, config.int8).display().to_string();
    let pipeline = harness::pipeline(
        "appsrc name=src format=time ! yolodetect name=detect ! fakesink sync=false",
        &[
            ("src", "caps", &caps),
            ("detect", "model-location", &model),
            ("detect", "ort-library", &options.ort_library),
            ("detect", "threads", &(options.threads as u32)),
        ],
    )?;
    let detect = pipeline.by_name("detect").unwrap();
    match config.on {
        On::Cpu => detect.set_property_from_str("execution-provider", "cpu"),
        On::OpenVino(precision) => {
            detect.set_property_from_str("execution-provider", "openvino");
            detect.set_property_from_str("openvino-precision", precision);
        }
        On::Auto => detect.set_property_from_str("execution-provider", "auto"),
    }
    if config.still_gating {
        detect.set_property("motion-threshold", 0.002f64);
    }
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    pipeline
        .set_state(gst::State::Paused)
        .map_err(|e| e.to_string())?;
    // yolodetect's start (the model load and its warm-up run) ran inside set_state: not
    // timed. The sink prerolls on the first frame, so there is nothing to wait for.
    let memory = frame.all_memory().ok_or("empty frame")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    for i in 0..options.frames {
        let mut buffer = gst::Buffer::new();
        let b = buffer.get_mut().unwrap();
        b.append_memory(memory.clone());
        b.set_pts(gst::ClockTime::from_mseconds(33 * i as u64));
        src.push_buffer(buffer).map_err(|e| format!("{e:?}"))?;
    }
    src.end_of_stream().map_err(|e| format!("{e:?}"))?;
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(600),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .ok_or("timed out")?;
    let elapsed = started.elapsed().as_secs_f64();
    if let gst::MessageView::Error(e) = msg.view() {
        pipeline.set_state(gst::State::Null).unwrap();
        return Err(format!("{}: {} {:?}", config.label, e.error(), e.debug()));
    }
    let stats = detect.property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    let get = |f: &str| stats.get::<f64>(f).unwrap_or(0.0);
    let ran_on = stats
        .get::<String>("execution-provider")
        .unwrap_or_default();
    Ok(Row {
        name: format!("yolodetect, {} (ran on {ran_on})", config.label),
        fps: options.frames as f64 / elapsed,
        pre_ms: get("pre-ms"),
        infer_ms: get("infer-ms"),
        post_ms: get("post-ms"),
    })
}

/// The floor: the same model, provider and threads run on a prepared input, no element.
fn bare_run(options: &Options, size: usize, config: Config) -> Result<Row, String> {
    use gstyolo::yolodetect::model::{Model, OpenVinoDevice, Precision, Provider, SessionOptions};
    let provider = match config.on {
        On::Cpu => Provider::Cpu,
        On::OpenVino(precision) => Provider::OpenVino {
            device: OpenVinoDevice::Cpu,
            precision: match precision {
                "f32" => Precision::F32,
                "bf16" => Precision::Bf16,
                _ => Precision::Auto,
            },
        },
        // The element's default OpenVINO precision.
        On::Auto => Provider::Auto {
            precision: Precision::F32,
        },
    };
    let mut model = Model::load(
        &model_path(options, size, config.int8),
        None,
        &SessionOptions {
            provider,
            threads: options.threads,
            spinning: false,
            library: Some(&options.ort_library),
            openvino_library: None,
            fallback_to_cpu: false,
            profile: None,
        },
    )?;
    let input = vec![0.5f32; 3 * model.input_width * model.input_height];
    let started = Instant::now();
    for _ in 0..options.frames {
        model.run(&input, |_, output| std::hint::black_box(output.len()))?;
    }
    let per_frame = started.elapsed().as_secs_f64() / options.frames as f64;
    Ok(Row {
        name: format!("bare run, {}", config.label),
        fps: 1.0 / per_frame,
        pre_ms: 0.0,
        infer_ms: per_frame * 1000.0,
        post_ms: 0.0,
    })
}

/// The Python pipeline of hand-written projects: OpenCV letterbox, onnxruntime, numpy NMS.
fn python_pipeline(options: &Options, size: usize) -> Result<Row, String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/reference.py");
    let output = Command::new(&options.python)
        .arg(script)
        .arg("--bench")
        .arg("--model")
        .arg(model_path(options, size, false))
        .args(["--width", "1280", "--height", "720"])
        .args([
            "--frames",
            &options.frames.to_string(),
            "--threads",
            &options.threads.to_string(),
        ])
        .output()
        .map_err(|e| format!("running the Python pipeline: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "Python pipeline failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |key: &str| -> Result<f64, String> {
        let at = text
            .find(&format!("\"{key}\""))
            .ok_or(format!("no {key} in {text}"))?;
        let rest = text[at + key.len() + 2..].trim_start_matches([':', ' ']);
        let end = rest.find([',', '}']).ok_or("bad JSON")?;
        rest[..end]
            .trim()
            .parse()
            .map_err(|e| format!("{key}: {e}"))
    };
    Ok(Row {
        name: "Python onnxruntime (CPU fp32) + OpenCV/numpy".into(),
        fps: field("fps")?,
        pre_ms: field("pre_ms")?,
        infer_ms: field("infer_ms")?,
        post_ms: field("post_ms")?,
    })
}

/// Pre-processing alone (letterbox + colour conversion + normalisation of one 1280x720
/// frame into the model's float tensor), per format and instruction set, ms per frame.
fn preprocessing_table(frames: usize) {
    use gstyolo::yolodetect::letterbox::{
        Letterbox, PixelLayout, Planes, Preprocessor, Simd, YuvMatrix,
    };
    let (w, h) = (1280usize, 720usize);
    // Varied bytes, so no blend is trivially cheap.
    let bytes: Vec<u8> = (0..w * h * 4).map(|i| (i * 7 % 251) as u8).collect();
    let formats: [(&str, PixelLayout, [usize; 3]); 4] = [
        ("I420", PixelLayout::I420, [w, w / 2, w / 2]),
        ("NV12", PixelLayout::Nv12, [w, w, 0]),
        (
            "RGB",
            PixelLayout::Packed {
                bytes: 3,
                r: 0,
                g: 1,
                b: 2,
            },
            [3 * w, 0, 0],
        ),
        (
            "BGRx",
            PixelLayout::Packed {
                bytes: 4,
                r: 2,
                g: 1,
                b: 0,
            },
            [4 * w, 0, 0],
        ),
    ];
    let widest = Simd::detect();
    println!();
    println!(
        "Pre-processing one {w}x{h} frame into the model tensor, ms per frame (median of 5 x {frames}); \
         this CPU's widest: {widest:?}. The fast path, like yolodetect, paints the letterbox \
         padding once per caps; the scalar reference repaints it every frame, as before."
    );
    println!();
    println!("| format | model | scalar reference | baseline (SSE2) | AVX2 | AVX-512 | speed-up |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, layout, strides) in formats {
        for model in [640usize, 320] {
            let pre = Preprocessor::new(
                Letterbox::new(w, h, model, model),
                layout,
                YuvMatrix::new(true, false),
            );
            let planes = Planes {
                data: [&bytes, &bytes, &bytes],
                strides,
            };
            let mut tensor = vec![0.0f32; 3 * model * model];
            pre.pad(&mut tensor);
            let mut time = |fill: &dyn Fn(&mut [f32])| {
                let mut samples: Vec<f64> = (0..5)
                    .map(|_| {
                        let started = Instant::now();
                        for _ in 0..frames {
                            fill(&mut tensor);
                            std::hint::black_box(&tensor);
                        }
                        started.elapsed().as_secs_f64() * 1000.0 / frames as f64
                    })
                    .collect();
                samples.sort_by(f64::total_cmp);
                samples[2]
            };
            let scalar = time(&|t| pre.fill_scalar(&planes, t));
            let mut fast = Vec::new();
            for simd in [Simd::Baseline, Simd::Avx2, Simd::Avx512] {
                let pre = Preprocessor::new(pre.letterbox, layout, YuvMatrix::new(true, false))
                    .with_simd(simd);
                fast.push((pre.simd() == simd).then(|| time(&|t| pre.fill_picture(&planes, t))));
            }
            let cell = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.2}"));
            let best = fast.iter().flatten().copied().fold(f64::INFINITY, f64::min);
            println!(
                "| {name} | {model} | {scalar:.2} | {} | {} | {} | {:.1}x |",
                cell(fast[0]),
                cell(fast[1]),
                cell(fast[2]),
                scalar / best
            );
        }
    }
}

/// The run with the median frame rate.
fn median_row(mut rows: Vec<Row>) -> Row {
    rows.sort_by(|a, b| a.fps.total_cmp(&b.fps));
    let middle = rows.len() / 2;
    rows.swap_remove(middle)
}

/// What one bench step runs.
#[derive(Clone, Copy, PartialEq)]
enum Job {
    Python,
    Element(Config),
    Bare(Config),
}

fn run() -> Result<(), String> {
    let options = options()?;
    println!("{}", harness::machine_line());
    gst::init().map_err(|e| e.to_string())?;
    gstyolo::plugin_register_static().map_err(|e| e.to_string())?;
    if options.preprocessing_only {
        preprocessing_table(options.frames.max(20));
        return Ok(());
    }
    if options.python.is_empty() || options.models.as_os_str().is_empty() {
        return Err("--python and --models are required".into());
    }
    let mut skipped = Vec::new();
    let openvino = gstyolo::yolodetect::model::openvino_offers(
        Some(&options.ort_library),
        None,
        gstyolo::yolodetect::model::OpenVinoDevice::Cpu,
    );
    if let Err(why) = &openvino {
        skipped.push(format!("the OpenVINO rows: {why}"));
    }
    let mut jobs = Vec::new();
    for &size in &options.sizes {
        if !model_path(&options, size, false).is_file() {
            return Err(format!(
                "no {} (models/make_models.py --bench writes it)",
                model_path(&options, size, false).display()
            ));
        }
        jobs.push((size, Job::Python));
        for config in CONFIGS {
            if matches!(config.on, On::OpenVino(_)) && openvino.is_err() {
                continue;
            }
            if config.int8 && !model_path(&options, size, true).is_file() {
                skipped.push(format!("{} at {size}: no INT8 model", config.label));
                continue;
            }
            jobs.push((size, Job::Element(config)));
            if !config.still_gating {
                jobs.push((size, Job::Bare(config)));
            }
        }
    }
    // Rounds with the order rotated, medians per job: the machine is shared.
    let mut runs: Vec<Vec<Row>> = vec![Vec::new(); jobs.len()];
    for round in 0..options.rounds {
        for k in 0..jobs.len() {
            let which = (k + round * 3) % jobs.len();
            let (size, job) = jobs[which];
            eprintln!(
                "round {}/{}: step {}/{}",
                round + 1,
                options.rounds,
                k + 1,
                jobs.len()
            );
            runs[which].push(match job {
                Job::Python => python_pipeline(&options, size)?,
                Job::Element(config) => yolodetect(&options, size, config)?,
                Job::Bare(config) => bare_run(&options, size, config)?,
            });
        }
    }
    let rows: Vec<Row> = runs.into_iter().map(median_row).collect();

    println!();
    println!(
        "YOLOv8n-sized model (random weights), 1280x720 I420 frames, {} frames x {} rounds \
         (medians), {} threads, spinning off",
        options.frames, options.rounds, options.threads
    );
    println!();
    println!(
        "| size | pipeline | frames/s | pre ms | infer ms | post ms | per frame vs its bare run | \
         frames/s vs Python |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for &size in &options.sizes {
        let row_of = |job: Job| {
            jobs.iter()
                .position(|&(s, j)| s == size && j == job)
                .map(|i| &rows[i])
        };
        let python = row_of(Job::Python).unwrap();
        for (i, &(s, job)) in jobs.iter().enumerate() {
            if s != size {
                continue;
            }
            let row = &rows[i];
            let vs_bare = match job {
                Job::Element(config) if !config.still_gating => row_of(Job::Bare(config))
                    .map_or("".to_string(), |bare| format!("{:.2}", bare.fps / row.fps)),
                _ => String::new(),
            };
            println!(
                "| {size} | {} | {:.2} | {:.2} | {:.1} | {:.2} | {vs_bare} | {:.2} |",
                row.name,
                row.fps,
                row.pre_ms,
                row.infer_ms,
                row.post_ms,
                row.fps / python.fps
            );
        }
    }
    for line in skipped {
        println!("\nnot run: {line}");
    }
    preprocessing_table(options.frames.max(20));
    Ok(())
}

fn main() {
    if let Err(err) = run() {
        eprintln!("yolo-bench: {err}");
        std::process::exit(1);
    }
}
