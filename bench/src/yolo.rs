// SPDX-License-Identifier: MIT OR Apache-2.0
//! `yolo-bench`: `yolodetect` on a 1280x720 stream with the YOLOv8n-sized model at 640,
//! beside the bare ONNX Runtime `run` on a prepared tensor with the same threads (the
//! floor) and a Python onnxruntime + OpenCV pipeline doing the same letterbox and NMS,
//! all in one run. Prints a Markdown table.
//!
//! Usage: `yolo-bench --model M --ort-library L --python P [--frames N] [--threads T] [--rounds R]
//! [--preprocessing-only]`
//! (`scripts/bench yolo` fills these in).

mod harness;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use gst::prelude::*;
use ort::session::Session;
use ort::value::TensorRef;

struct Options {
    model: PathBuf,
    ort_library: String,
    python: String,
    frames: usize,
    threads: usize,
    rounds: usize,
    preprocessing_only: bool,
}

fn options() -> Result<Options, String> {
    let mut model = None;
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
            "--model" => model = Some(PathBuf::from(value()?)),
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
        model: model.ok_or("--model is required")?,
        ort_library: ort_library.ok_or("--ort-library (or ORT_DYLIB_PATH) is required")?,
        python: python.ok_or("--python is required")?,
        frames,
        threads,
        rounds: rounds.max(1),
        preprocessing_only,
    })
}

struct Row {
    name: String,
    fps: f64,
    pre_ms: f64,
    infer_ms: f64,
    post_ms: f64,
}

/// `appsrc ! yolodetect ! fakesink` over `frames` 1280x720 frames of `format`.
fn yolodetect(options: &Options, format: &str) -> Result<Row, String> {
    let (w, h) = (1280, 720);
    // A busy picture (the ball pattern moves; snow would be unrealistic noise for YOLO).
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", format)
        .field("width", w)
        .field("height", h)
        .field("framerate", gst::Fraction::new(30, 1))
        .build();
    let frame = {
        let pipeline = harness::pipeline(
            "videotestsrc pattern=ball num-buffers=1 ! capsfilter name=format ! appsink name=out",
            &[("format", "caps", &caps)],
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
        sample.buffer_owned().unwrap()
    };
    let pipeline = harness::pipeline(
        "appsrc name=src format=time ! yolodetect name=detect ! fakesink sync=false",
        &[
            ("src", "caps", &caps),
            (
                "detect",
                "model-location",
                &options.model.display().to_string(),
            ),
            ("detect", "ort-library", &options.ort_library),
            ("detect", "threads", &(options.threads as u32)),
        ],
    )?;
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let detect = pipeline.by_name("detect").unwrap();
    pipeline
        .set_state(gst::State::Paused)
        .map_err(|e| e.to_string())?;
    // Loading the model (and its warm-up run) happens in start: not timed.
    let _ = pipeline.state(gst::ClockTime::from_seconds(60));
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
        return Err(format!("{} {:?}", e.error(), e.debug()));
    }
    let stats = detect.property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    let get = |f: &str| stats.get::<f64>(f).unwrap_or(0.0);
    Ok(Row {
        name: format!("yolodetect, {format} frames"),
        fps: options.frames as f64 / elapsed,
        pre_ms: get("pre-ms"),
        infer_ms: get("infer-ms"),
        post_ms: get("post-ms"),
    })
}

/// The floor: `Session::run` on a prepared input, same threads and spinning off.
fn bare_run(options: &Options) -> Result<Row, String> {
    // ONNX Runtime allows one environment per process: share yolodetect's.
    let env = gstyolo::yolodetect::runtime(Some(&options.ort_library))?;
    let mut session = Session::builder(&env)
        .map_err(|e| e.to_string())?
        .with_intra_threads(options.threads)
        .map_err(|e| e.to_string())?
        .with_inter_threads(1)
        .map_err(|e| e.to_string())?
        .with_intra_op_spinning(false)
        .map_err(|e| e.to_string())?
        .with_inter_op_spinning(false)
        .map_err(|e| e.to_string())?
        .commit_from_file(&options.model)
        .map_err(|e| e.to_string())?;
    let input = vec![0.5f32; 3 * 640 * 640];
    let name = session.inputs()[0].name().to_string();
    let run = |session: &mut Session| -> Result<(), String> {
        let tensor = TensorRef::from_array_view(([1usize, 3, 640, 640], &input[..]))
            .map_err(|e| e.to_string())?;
        let outputs = session
            .run(ort::inputs![name.as_str() => tensor])
            .map_err(|e| e.to_string())?;
        std::hint::black_box(
            outputs[0]
                .try_extract_tensor::<f32>()
                .map_err(|e| e.to_string())?,
        );
        Ok(())
    };
    run(&mut session)?; // warm-up, as yolodetect's start does
    let started = Instant::now();
    for _ in 0..options.frames {
        run(&mut session)?;
    }
    let per_frame = started.elapsed().as_secs_f64() / options.frames as f64;
    Ok(Row {
        name: "bare ONNX Runtime run (floor)".into(),
        fps: 1.0 / per_frame,
        pre_ms: 0.0,
        infer_ms: per_frame * 1000.0,
        post_ms: 0.0,
    })
}

/// The Python pipeline of hand-written projects: OpenCV letterbox, onnxruntime, numpy NMS.
fn python_pipeline(options: &Options) -> Result<Row, String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/reference.py");
    let output = Command::new(&options.python)
        .arg(script)
        .args(["--bench", "--model", options.model.to_str().unwrap()])
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
        name: "Python onnxruntime + OpenCV/numpy".into(),
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

fn run() -> Result<(), String> {
    let options = options()?;
    gst::init().map_err(|e| e.to_string())?;
    gstyolo::plugin_register_static().map_err(|e| e.to_string())?;
    if options.preprocessing_only {
        preprocessing_table(options.frames.max(20));
        return Ok(());
    }
    // Rounds with the order rotated, medians per pipeline: the machine is shared.
    let mut runs: [Vec<Row>; 4] = Default::default();
    for round in 0..options.rounds {
        for k in 0..4 {
            let which = (k + round) % 4;
            eprintln!("round {}/{}: pipeline {which}", round + 1, options.rounds);
            runs[which].push(match which {
                0 => yolodetect(&options, "BGR")?,
                1 => yolodetect(&options, "I420")?,
                2 => bare_run(&options)?,
                _ => python_pipeline(&options)?,
            });
        }
    }
    let [bgr, i420, bare, python] = runs.map(median_row);
    preprocessing_table(options.frames.max(20));
    println!();
    println!(
        "YOLOv8n-sized model (random weights) at 640, 1280x720 frames, {} frames x {} rounds \
         (medians), {} threads, spinning off",
        options.frames, options.rounds, options.threads
    );
    println!();
    println!("| pipeline | frames/s | pre ms | infer ms | post ms | vs bare run | vs Python |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in [&bgr, &i420, &bare, &python] {
        println!(
            "| {} | {:.2} | {:.2} | {:.1} | {:.2} | {:.2} | {:.2} |",
            row.name,
            row.fps,
            row.pre_ms,
            row.infer_ms,
            row.post_ms,
            row.fps / bare.fps,
            row.fps / python.fps
        );
    }
    Ok(())
}

fn main() {
    if let Err(err) = run() {
        eprintln!("yolo-bench: {err}");
        std::process::exit(1);
    }
}
