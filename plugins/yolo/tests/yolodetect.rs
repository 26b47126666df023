// SPDX-License-Identifier: MIT OR Apache-2.0
//! `yolodetect` on our own models (`models/`): the same boxes as an independent Python
//! reference (onnxruntime + numpy, `models/reference.py`) for every layout, frame shape and
//! raw format; thresholds, allow-list, interval, max-detections; bad input; streams
//! interleaved as behind `kafkadecodebin`, each with its own interval, rate, motion gating
//! and carried-over boxes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gst::prelude::*;
use testkit::*;

fn init() {
    testkit::init(&[gstyolo::plugin_register_static]);
}

const MODELS: [&str; 4] = [
    "blob-yolov8",
    "blob-yolov5",
    "blob-yolo26",
    "blob-yolov8-dynamic",
];
const SIZES: [(usize, usize); 3] = [(1920, 1080), (480, 640), (333, 517)];
const FORMATS: [&str; 5] = ["RGB", "BGRx", "RGBA", "I420", "NV12"];

fn model(name: &str) -> PathBuf {
    repo().join("models").join(format!("{name}.onnx"))
}

/// A black RGB frame with white squares at the given (x, y, size) places.
fn frame_with_squares(width: usize, height: usize, squares: &[(usize, usize, usize)]) -> Vec<u8> {
    let mut rgb = vec![0u8; width * height * 3];
    for &(x0, y0, size) in squares {
        for y in y0..(y0 + size).min(height) {
            for x in x0..(x0 + size).min(width) {
                rgb[(y * width + x) * 3..(y * width + x) * 3 + 3].fill(255);
            }
        }
    }
    rgb
}

/// Two squares, far apart, big enough at model scale for any of our frame shapes.
fn two_squares(width: usize, height: usize) -> Vec<(usize, usize, usize)> {
    let side = width.min(height) * 3 / 10;
    vec![
        (width / 10, height / 10, side),
        (width * 6 / 10, height * 6 / 10, side * 3 / 4),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct Found {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    class_id: u32,
    label: String,
    confidence: f64,
    inferred: bool,
}

/// Runs RGB frames through `videoconvert ! <format> ! yolodetect <props>` and returns each
/// frame's detections from its region-of-interest metas, and the element's stats.
fn detect(
    rgb_frames: &[Vec<u8>],
    width: usize,
    height: usize,
    format: &str,
    props: &str,
) -> Result<(Vec<Vec<Found>>, gst::Structure), String> {
    init();
    let pipeline = launch(&format!(
        "appsrc name=src format=time caps=video/x-raw,format=RGB,width={width},height={height},framerate=30/1 ! \
         videoconvert ! video/x-raw,format={format} ! yolodetect name=detect {props} ! \
         appsink name=out sync=false"
    ));
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let samples = collect_samples(&pipeline, "out");
    // GStreamer's RGB rows are padded to 4 bytes (333 pixels: 999 bytes, stride 1000).
    let info =
        gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, width as u32, height as u32)
            .build()
            .unwrap();
    let stride = info.stride()[0] as usize;
    for (i, rgb) in rgb_frames.iter().enumerate() {
        let mut padded = vec![0u8; info.size()];
        for (row, line) in rgb.chunks_exact(width * 3).enumerate() {
            padded[row * stride..row * stride + width * 3].copy_from_slice(line);
        }
        let mut buffer = gst::Buffer::from_slice(padded);
        buffer
            .get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(33 * i as u64));
        src.push_buffer(buffer).unwrap();
    }
    src.end_of_stream().unwrap();
    let detect = pipeline.by_name("detect").unwrap();
    match run_until_end(&pipeline, Duration::from_secs(120)) {
        Ended::Eos => {}
        Ended::Error(err) => return Err(err),
        Ended::Timeout => panic!("timed out"),
    }
    let frames = samples
        .lock()
        .unwrap()
        .iter()
        .map(|sample| {
            let buffer = sample.buffer().unwrap();
            buffer
                .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
                .map(|meta| {
                    let (x, y, w, h) = meta.rect();
                    let param = meta.param("detection").expect("a detection structure");
                    Found {
                        x: x as f64,
                        y: y as f64,
                        w: w as f64,
                        h: h as f64,
                        class_id: param.get("class-id").unwrap(),
                        label: param.get("label").unwrap(),
                        confidence: param.get("confidence").unwrap(),
                        inferred: param.get("inferred").unwrap(),
                    }
                })
                .collect()
        })
        .collect();
    Ok((frames, stats(&detect)))
}

#[derive(Debug)]
struct Reference {
    x1: f64,
    y1: f64,
    x2: f64,
    y2: f64,
    score: f64,
    class_id: u32,
}

/// Boxes from the Python reference for the same model and RGB frame.
fn reference(model: &Path, rgb: &[u8], width: usize, height: usize) -> Vec<Reference> {
    let path = std::env::temp_dir()
        .join(unique_name("frame"))
        .with_extension("rgb");
    std::fs::write(&path, rgb).unwrap();
    let output = command("python")
        .arg(repo().join("models/reference.py"))
        .args([
            "--model",
            model.to_str().unwrap(),
            "--frame",
            path.to_str().unwrap(),
        ])
        .args([
            "--width",
            &width.to_string(),
            "--height",
            &height.to_string(),
        ])
        .output()
        .expect("running models/reference.py");
    std::fs::remove_file(&path).ok();
    assert!(
        output.status.success(),
        "reference: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    parse_reference(&text)
}

/// Reads `{"boxes": [{"x1":..,"y1":..,"x2":..,"y2":..,"score":..,"class_id":..}, ...]}`.
fn parse_reference(json: &str) -> Vec<Reference> {
    let number = |obj: &str, key: &str| -> f64 {
        let at = obj
            .find(&format!("\"{key}\""))
            .unwrap_or_else(|| panic!("{key} in {obj}"));
        let rest = &obj[at + key.len() + 2..];
        let rest = rest.trim_start_matches([':', ' ']);
        let end = rest.find([',', '}']).unwrap();
        rest[..end].trim().parse().unwrap()
    };
    json.split('{')
        .filter(|part| part.contains("\"x1\""))
        .map(|obj| Reference {
            x1: number(obj, "x1"),
            y1: number(obj, "y1"),
            x2: number(obj, "x2"),
            y2: number(obj, "y2"),
            score: number(obj, "score"),
            class_id: number(obj, "class_id") as u32,
        })
        .collect()
}

fn sorted_by_position(mut found: Vec<Found>) -> Vec<Found> {
    found.sort_by(|a, b| (a.x + a.y).total_cmp(&(b.x + b.y)));
    found
}

#[test]
fn boxes_match_the_python_reference_for_every_layout_shape_and_format() {
    let mut checked = 0;
    for name in MODELS {
        for (width, height) in SIZES {
            let squares = two_squares(width, height);
            let rgb = frame_with_squares(width, height, &squares);
            let mut expected = reference(&model(name), &rgb, width, height);
            expected.sort_by(|a, b| (a.x1 + a.y1).total_cmp(&(b.x1 + b.y1)));
            assert_eq!(
                expected.len(),
                2,
                "{name} {width}x{height}: the reference finds both squares"
            );
            // The reference itself is right: each box hugs its square (the models work on a
            // grid of 8 model pixels, a few frame pixels each).
            let tolerance = 6.0 * (width.max(height) as f64 / 320.0);
            for (r, &(x, y, side)) in expected.iter().zip(&squares) {
                for (got, want) in [(r.x1, x), (r.y1, y), (r.x2, x + side), (r.y2, y + side)] {
                    assert!(
                        (got - want as f64).abs() <= tolerance,
                        "{name} {width}x{height}: {r:?} vs square {x},{y} side {side}"
                    );
                }
            }
            for format in FORMATS {
                // The reference runs ONNX Runtime's CPU provider: compare like with like
                // (auto takes OpenVINO on Intel CPUs; its boxes are compared elsewhere).
                let props = format!(
                    "model-location={} execution-provider=cpu",
                    model(name).display()
                );
                let (frames, _) =
                    detect(std::slice::from_ref(&rgb), width, height, format, &props).unwrap();
                let found = sorted_by_position(frames[0].clone());
                assert_eq!(
                    found.len(),
                    2,
                    "{name} {width}x{height} {format}: {found:?}"
                );
                // YUV formats went through videoconvert's colour conversion: the pixels the
                // model sees differ slightly from the RGB frame the reference saw.
                let px = if format == "I420" || format == "NV12" {
                    2.0
                } else {
                    1.0
                };
                for (f, r) in found.iter().zip(&expected) {
                    let close = |a: f64, b: f64| (a - b).abs() <= px;
                    assert!(
                        close(f.x, r.x1.round())
                            && close(f.y, r.y1.round())
                            && close(f.x + f.w, r.x2.round())
                            && close(f.y + f.h, r.y2.round()),
                        "{name} {width}x{height} {format}: {f:?} vs reference {r:?}"
                    );
                    assert_eq!(f.class_id, r.class_id);
                    assert!((f.confidence - r.score).abs() < 0.02, "{f:?} vs {r:?}");
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, MODELS.len() * SIZES.len() * FORMATS.len());
}

#[test]
fn labels_come_from_metadata_or_coco() {
    let rgb = frame_with_squares(640, 480, &two_squares(640, 480));
    for (name, label) in [
        ("blob-yolov8", "sports ball"),
        ("blob-yolov5", "ball"),
        ("blob-yolo26", "sports ball"),
    ] {
        let props = format!("model-location={}", model(name).display());
        let (frames, _) = detect(std::slice::from_ref(&rgb), 640, 480, "RGB", &props).unwrap();
        assert!(!frames[0].is_empty(), "{name}");
        assert!(
            frames[0].iter().all(|f| f.label == label),
            "{name}: {:?}",
            frames[0]
        );
    }
}

#[test]
fn thresholds_allow_list_max_detections_and_interval() {
    let (w, h) = (640, 480);
    let rgb = frame_with_squares(w, h, &two_squares(w, h));
    let base = format!("model-location={}", model("blob-yolov8").display());
    let run = |props: &str, frames: usize| {
        detect(
            &vec![rgb.clone(); frames],
            w,
            h,
            "RGB",
            &format!("{base} {props}"),
        )
        .unwrap()
    };

    let (all, _) = run("", 1);
    assert_eq!(all[0].len(), 2);
    let lowest = all[0].iter().map(|f| f.confidence).fold(1.0, f64::min);
    let (strict, _) = run(&format!("conf-threshold={}", lowest + 1e-4), 1);
    assert_eq!(
        strict[0].len(),
        1,
        "the weaker square is under the threshold"
    );

    let (one, _) = run("max-detections=1", 1);
    assert_eq!(one[0].len(), 1);
    assert!(one[0][0].confidence >= lowest, "the best one is kept");

    let (only_balls, _) = run("classes=sports\\ ball", 1);
    assert_eq!(only_balls[0].len(), 2);
    let (by_id, _) = run("classes=32", 1);
    assert_eq!(by_id[0].len(), 2);
    let (no_people, _) = run("classes=person,car", 1);
    assert!(no_people[0].is_empty());

    let (frames, stats) = run("interval=3", 7);
    assert_eq!(
        stats.get::<u64>("inferred").unwrap(),
        3,
        "frames 0, 3 and 6"
    );
    assert_eq!(stats.get::<u64>("skipped").unwrap(), 4);
    assert_eq!(stats.get::<u64>("frames-in").unwrap(), 7);
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(frame.len(), 2, "frame {i} carries detections");
        assert!(
            frame.iter().all(|f| f.inferred == (i % 3 == 0)),
            "frame {i}: {frame:?}"
        );
    }
    assert!(stats.get::<f64>("infer-ms").unwrap() > 0.0);
}

#[test]
fn draw_marks_the_frame_and_messages_list_detections() {
    let (w, h) = (320, 240);
    let rgb = frame_with_squares(w, h, &two_squares(w, h));
    init();
    let pipeline = launch(&format!(
        "appsrc name=src format=time caps=video/x-raw,format=RGB,width={w},height={h},framerate=30/1 ! \
         yolodetect model-location={} draw=true post-messages=true ! appsink name=out sync=false",
        model("blob-yolov8").display()
    ));
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let samples = collect_samples(&pipeline, "out");
    // Element messages are caught as posted (waiting for EOS discards others).
    let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = messages.clone();
    pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
        if let Some(s) = msg.structure().filter(|s| s.name() == "yolodetect") {
            store.lock().unwrap().push(s.to_owned());
        }
        gst::BusSyncReply::Pass
    });
    src.push_buffer(gst::Buffer::from_slice(rgb.clone()))
        .unwrap();
    src.end_of_stream().unwrap();
    assert!(matches!(
        run_until_end(&pipeline, Duration::from_secs(60)),
        Ended::Eos
    ));
    let out = samples.lock().unwrap()[0]
        .buffer()
        .unwrap()
        .map_readable()
        .unwrap()
        .to_vec();
    assert_ne!(out, rgb, "boxes were drawn");
    let message = messages
        .lock()
        .unwrap()
        .first()
        .cloned()
        .expect("a yolodetect message");
    let detections = message.get::<gst::Array>("detections").unwrap();
    assert_eq!(detections.len(), 2);
}

fn start_error(props: &str, format: &str) -> String {
    match detect(&[vec![0; 64 * 48 * 3]], 64, 48, format, props) {
        Err(err) => err,
        Ok(_) => panic!("'{props}' should fail"),
    }
}

#[test]
fn bad_input_gives_clear_errors() {
    let err = start_error("", "RGB");
    assert!(err.contains("No model set"), "{err}");

    let err = start_error("model-location=/no/such/model.onnx", "RGB");
    assert!(err.contains("is not a file"), "{err}");

    let not_onnx = std::env::temp_dir()
        .join(unique_name("not-onnx"))
        .with_extension("onnx");
    std::fs::write(&not_onnx, b"this is not a protobuf").unwrap();
    let err = start_error(&format!("model-location={}", not_onnx.display()), "RGB");
    assert!(
        err.contains("could not be loaded as an ONNX model"),
        "{err}"
    );
    std::fs::remove_file(&not_onnx).ok();

    // A valid ONNX model whose output is no YOLO layout: the input reshaped to [1, 3, 1024].
    let odd = std::env::temp_dir()
        .join(unique_name("odd-layout"))
        .with_extension("onnx");
    let script = format!(
        "import onnx, numpy as np\n\
         from onnx import helper, TensorProto, numpy_helper\n\
         shape = numpy_helper.from_array(np.array([1, 3, 1024], dtype=np.int64), 'shape')\n\
         node = helper.make_node('Reshape', ['images', 'shape'], ['output0'])\n\
         g = helper.make_graph([node], 'odd', [helper.make_tensor_value_info('images', TensorProto.FLOAT, [1, 3, 32, 32])],\n\
             [helper.make_tensor_value_info('output0', TensorProto.FLOAT, [1, 3, 1024])], [shape])\n\
         m = helper.make_model(g, opset_imports=[helper.make_opsetid('', 17)]); m.ir_version = 8\n\
         onnx.save(m, r'{}')\n",
        odd.display()
    );
    let status = command("python").args(["-c", &script]).status().unwrap();
    assert!(status.success());
    let err = start_error(&format!("model-location={}", odd.display()), "RGB");
    assert!(err.contains("not a known YOLO layout"), "{err}");
    std::fs::remove_file(&odd).ok();

    let err = start_error(
        &format!(
            "model-location={} classes=unicorn",
            model("blob-yolov8").display()
        ),
        "RGB",
    );
    assert!(err.contains("'unicorn'"), "{err}");

    // Unsupported caps: GRAY8 cannot link.
    init();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=1 ! video/x-raw,format=GRAY8 ! yolodetect model-location={} ! fakesink",
        model("blob-yolov8").display()
    ));
    assert!(pipeline.is_err(), "GRAY8 is not accepted");

    // Thresholds out of range are refused when set.
    let element = gst::ElementFactory::make("yolodetect").build().unwrap();
    for (name, value) in [("conf-threshold", 1.5f64), ("iou-threshold", -0.1)] {
        let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            element.set_property(name, value)
        }));
        assert!(refused.is_err(), "{name}={value} must be refused");
        assert_eq!(
            element.property::<f64>(name),
            if name == "conf-threshold" { 0.25 } else { 0.45 }
        );
    }
}

/// `videotestsrc num-buffers=1 ! yolodetect model-location=<blob> PROPERTY ! fakesink` in a
/// fresh gst-launch (ONNX Runtime loads once per process), its environment set by
/// `configure`: whether it succeeded, and what it printed.
fn fresh_gst_launch(
    property: &str,
    configure: impl FnOnce(&mut Command) -> &mut Command,
) -> (bool, String) {
    let mut gst_launch = command("gst-launch-1.0");
    gst_launch
        .args(["videotestsrc", "num-buffers=1", "!", "yolodetect"])
        .arg(format!("model-location={}", model("blob-yolov8").display()))
        .args([property, "!", "fakesink"])
        .env("GST_PLUGIN_PATH", repo().join("target/release"));
    let output = configure(&mut gst_launch).output().expect("gst-launch-1.0");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn a_missing_runtime_fails_in_start_with_install_instructions() {
    // ONNX Runtime loads once per process: a fresh gst-launch shows what a user sees.
    let (succeeded, text) = fresh_gst_launch("ort-library=/no/such/libonnxruntime.so", |command| {
        command
            .env_remove("ORT_DYLIB_PATH")
            .env("LD_LIBRARY_PATH", "/nonexistent")
    });
    assert!(!succeeded);
    assert!(text.contains("could not load ONNX Runtime"), "{text}");
    assert!(text.contains("pip install onnxruntime"), "{text}");
    // The plugin itself loaded: the Kafka elements never depend on the runtime.
    let inspect = command("gst-inspect-1.0")
        .arg("yolodetect")
        .env("GST_PLUGIN_PATH", repo().join("target/release"))
        .env_remove("ORT_DYLIB_PATH")
        .output()
        .unwrap();
    assert!(inspect.status.success());
}

/// Its `stats` count from its last start, as every element's do, and name the provider
/// again.
#[test]
fn stats_count_from_the_last_start() {
    init();
    let pipeline = launch(&format!(
        "videotestsrc num-buffers=3 ! video/x-raw,width=64,height=48 ! \
         yolodetect name=detect model-location={} execution-provider=cpu ! fakesink",
        model("blob-yolov8").display()
    ));
    let detect = pipeline.by_name("detect").unwrap();
    for run in 1..=2 {
        let ended = run_until_end(&pipeline, Duration::from_secs(60));
        assert!(matches!(ended, Ended::Eos), "run {run}: {ended:?}");
        let stats = stats(&detect);
        assert_eq!(stats.get::<u64>("frames-in"), Ok(3), "run {run}: {stats}");
        assert_eq!(stats.get::<u64>("inferred"), Ok(3), "run {run}: {stats}");
        assert_eq!(
            stats.get::<&str>("execution-provider"),
            Ok("cpu"),
            "run {run}: {stats}"
        );
    }
}

#[test]
fn late_frames_are_dropped_under_qos_instead_of_inferred() {
    init();
    // A live camera at 30 frames/s and a sink that needs 100 ms a frame: downstream falls
    // behind, QoS events reach yolodetect, and it drops frames that are already late.
    let pipeline = launch(&format!(
        "videotestsrc is-live=true num-buffers=60 pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 ! \
         yolodetect name=detect model-location={} ! identity sleep-time=100000 ! fakesink sync=true qos=true",
        model("blob-yolov8").display()
    ));
    let detect = pipeline.by_name("detect").unwrap();
    // BaseTransform's QoS: a QoS message per dropped frame, and the frame after a drop
    // marked DISCONT.
    let qos_messages = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = qos_messages.clone();
    pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
        if let gst::MessageView::Qos(_) = msg.view()
            && msg.src().is_some_and(|s| s.name() == "detect")
        {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        gst::BusSyncReply::Pass
    });
    let disconts = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = disconts.clone();
    detect
        .static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer()
                && buffer.flags().contains(gst::BufferFlags::DISCONT)
            {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            gst::PadProbeReturn::Ok
        });
    assert!(matches!(
        run_until_end(&pipeline, Duration::from_secs(60)),
        Ended::Eos
    ));
    let stats = stats(&detect);
    let (dropped, inferred) = (
        stats.get::<u64>("dropped").unwrap(),
        stats.get::<u64>("inferred").unwrap(),
    );
    assert!(dropped > 0, "{stats}");
    assert_eq!(dropped + inferred, 60, "{stats}");
    let qos = qos_messages.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(qos, dropped, "one QoS message per dropped frame");
    // The first frame is DISCONT anyway; every drop makes the next one DISCONT too.
    assert!(
        disconts.load(std::sync::atomic::Ordering::Relaxed) > 1,
        "frames after a drop are DISCONT"
    );
}

#[test]
fn an_unavailable_execution_provider_is_an_error_or_falls_back_when_asked() {
    let (w, h) = (320, 240);
    let rgb = frame_with_squares(w, h, &two_squares(w, h));
    let error = start_error(
        &format!(
            "model-location={} execution-provider=cuda",
            model("blob-yolov8").display()
        ),
        "RGB",
    );
    assert!(
        error.contains("execution provider Cuda is not available"),
        "{error}"
    );
    assert!(error.contains("set fallback-to-cpu=true"), "{error}");

    init();
    let pipeline = launch(&format!(
        "appsrc name=src format=time caps=video/x-raw,format=RGB,width={w},height={h},framerate=30/1 ! \
         yolodetect model-location={} execution-provider=cuda fallback-to-cpu=true ! \
         appsink name=out sync=false",
        model("blob-yolov8").display()
    ));
    let warnings = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = warnings.clone();
    pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
        if let gst::MessageView::Warning(w) = msg.view() {
            store.lock().unwrap().push(w.error().to_string());
        }
        gst::BusSyncReply::Pass
    });
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let samples = collect_samples(&pipeline, "out");
    src.push_buffer(gst::Buffer::from_slice(rgb)).unwrap();
    src.end_of_stream().unwrap();
    assert!(matches!(
        run_until_end(&pipeline, Duration::from_secs(60)),
        Ended::Eos
    ));
    let warnings = warnings.lock().unwrap().join("; ");
    assert!(warnings.contains("using the CPU"), "{warnings}");
    let buffer = samples.lock().unwrap()[0].buffer_owned().unwrap();
    assert_eq!(
        buffer
            .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
            .count(),
        2
    );
}

#[test]
fn motion_gating_skips_still_frames_and_infers_every_moving_one() {
    let (w, h) = (640, 480);
    let props = format!(
        "model-location={} motion-threshold=0.002",
        model("blob-yolov8").display()
    );

    let still = vec![frame_with_squares(w, h, &two_squares(w, h)); 10];
    let (frames, stats) = detect(&still, w, h, "I420", &props).unwrap();
    assert_eq!(stats.get::<u64>("inferred").unwrap(), 1, "{stats}");
    assert_eq!(stats.get::<u64>("skipped-still").unwrap(), 9, "{stats}");
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(frame.len(), 2, "frame {i} carries the detections forward");
        assert!(
            frame.iter().all(|f| f.inferred == (i == 0)),
            "frame {i}: {frame:?}"
        );
    }

    // A square moving 6 px per frame: every frame is inferred and found where it is.
    let side = 120;
    let moving: Vec<Vec<u8>> = (0..10)
        .map(|i| frame_with_squares(w, h, &[(100 + 6 * i, 150, side)]))
        .collect();
    let (frames, stats) = detect(&moving, w, h, "I420", &props).unwrap();
    assert_eq!(stats.get::<u64>("inferred").unwrap(), 10, "{stats}");
    assert_eq!(stats.get::<u64>("skipped-still").unwrap(), 0, "{stats}");
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(frame.len(), 1, "frame {i}: {frame:?}");
        let found = &frame[0];
        assert!(found.inferred);
        assert!(
            (found.x - (100 + 6 * i) as f64).abs() <= 2.0 && (found.w - side as f64).abs() <= 2.0,
            "frame {i}: {found:?}"
        );
    }
}

/// One box as (class, x, y, w, h).
type BoxRow = (u32, f64, f64, f64, f64);

/// The boxes of each frame, sorted.
fn boxes(frames: &[Vec<Found>]) -> Vec<Vec<BoxRow>> {
    frames
        .iter()
        .map(|frame| {
            sorted_by_position(frame.clone())
                .into_iter()
                .map(|f| (f.class_id, f.x, f.y, f.w, f.h))
                .collect()
        })
        .collect()
}

/// Same classes, same number of boxes, every edge within `px`.
fn assert_same_boxes(what: &str, expected: &[Vec<BoxRow>], got: &[Vec<BoxRow>], px: f64) {
    assert_eq!(expected.len(), got.len(), "{what}: frames");
    for (i, (e, g)) in expected.iter().zip(got).enumerate() {
        assert_eq!(e.len(), g.len(), "{what}, frame {i}: {e:?} vs {g:?}");
        assert!(!e.is_empty(), "{what}, frame {i}: nothing found");
        for (a, b) in e.iter().zip(g) {
            let close = (a.1 - b.1).abs() <= px
                && (a.2 - b.2).abs() <= px
                && (a.1 + a.3 - b.1 - b.3).abs() <= px
                && (a.2 + a.4 - b.2 - b.4).abs() <= px;
            assert!(a.0 == b.0 && close, "{what}, frame {i}: {a:?} vs {b:?}");
        }
    }
}

/// Frames with squares of several sizes and places, for comparing providers and models.
fn comparison_frames(w: usize, h: usize) -> Vec<Vec<u8>> {
    (0..4)
        .map(|i| {
            let side = w.min(h) * (2 + i) / 10;
            frame_with_squares(
                w,
                h,
                &[
                    (w / 12 + 37 * i, h / 10 + 23 * i, side),
                    (w * 6 / 10 - 11 * i, h * 5 / 10, side * 2 / 3),
                ],
            )
        })
        .collect()
}

/// This machine's CPU, as /proc/cpuinfo names it.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("an unknown CPU".into(), |rest| {
            rest.trim_start_matches([' ', '\t', ':']).to_string()
        })
}

/// Why OpenVINO cannot run here, naming the CPU; None where its plugin offers this CPU. Its
/// plugin offers Intel CPUs only (on AMD ONNX Runtime's device list holds just the CPU
/// provider). Asked of ONNX Runtime's Python API, not of the element under test.
fn openvino_unavailable() -> Option<String> {
    let script = "import onnxruntime as ort, onnxruntime_ep_openvino as ov\n\
                  ort.register_execution_provider_library('OpenVINOExecutionProvider', ov.get_library_path())\n\
                  print(any(d.ep_name == 'OpenVINOExecutionProvider' and \
                  d.device.type == ort.OrtHardwareDeviceType.CPU for d in ort.get_ep_devices()))";
    let output = command("python").args(["-c", script]).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    match String::from_utf8_lossy(&output.stdout).trim() {
        "True" => None,
        "False" => Some(format!(
            "onnxruntime-ep-openvino offers no OpenVINO device on this CPU ({})",
            cpu_model()
        )),
        other => panic!("unexpected answer {other:?}"),
    }
}

#[test]
fn openvino_boxes_equal_the_cpu_boxes() {
    if let Some(why) = openvino_unavailable() {
        not_run(&why);
        return;
    }
    let (w, h) = (1280, 720);
    let frames = comparison_frames(w, h);
    for name in MODELS {
        let base = format!("model-location={}", model(name).display());
        let cpu_props = format!("{base} execution-provider=cpu");
        let (cpu, _) = detect(&frames, w, h, "I420", &cpu_props).unwrap();
        for precision in ["auto", "f32"] {
            let (openvino, _) = detect(
                &frames,
                w,
                h,
                "I420",
                &format!("{base} execution-provider=openvino openvino-precision={precision}"),
            )
            .unwrap();
            assert_same_boxes(
                &format!("{name}, OpenVINO {precision}"),
                &boxes(&cpu),
                &boxes(&openvino),
                2.0,
            );
        }
    }
}

#[test]
fn a_missing_openvino_plugin_names_the_pip_package() {
    // A given path that is not there.
    let error = start_error(
        &format!(
            "model-location={} execution-provider=openvino openvino-library=/no/such/plugin.so",
            model("blob-yolov8").display()
        ),
        "RGB",
    );
    assert!(
        error.contains("not found at '/no/such/plugin.so'"),
        "{error}"
    );
    assert!(
        error.contains("pip install onnxruntime-ep-openvino=="),
        "{error}"
    );

    // An onnxruntime without the plugin package beside it, as a user without the wheel has
    // it; in a fresh process, since the runtime loads once per process.
    let runtime = PathBuf::from(std::env::var("ORT_DYLIB_PATH").expect("ORT_DYLIB_PATH"));
    let dir = std::env::temp_dir().join(format!("yolodetect-no-plugin-{}", std::process::id()));
    let capi = dir.join("onnxruntime/capi");
    std::fs::create_dir_all(&capi).unwrap();
    let alone = capi.join(runtime.file_name().unwrap());
    std::os::unix::fs::symlink(&runtime, &alone).unwrap();
    let (succeeded, text) = fresh_gst_launch("execution-provider=openvino", |command| {
        command
            .env("ORT_DYLIB_PATH", &alone)
            .env_remove("ORT_OPENVINO_EP_PATH")
    });
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!succeeded, "{text}");
    assert!(
        text.contains("OpenVINO execution provider plugin was not found"),
        "{text}"
    );
    assert!(
        text.contains("pip install onnxruntime-ep-openvino=="),
        "{text}"
    );
}

#[test]
fn the_cpu_provider_stays_on_the_cpu_beside_openvino_which_runs_where_offered() {
    use gstyolo::yolodetect::model::{
        Model, OpenVinoDevice, Precision, Provider, SessionOptions, openvino_offers,
    };
    let dir = std::env::temp_dir().join(format!("yolodetect-profiles-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let providers = |provider: Provider, name: &str| {
        let prefix = dir.join(name);
        let mut model = Model::load(
            &model("blob-yolov8"),
            None,
            &SessionOptions {
                provider,
                threads: 1,
                spinning: false,
                library: None,
                openvino_library: None,
                fallback_to_cpu: false,
                profile: Some(&prefix),
            },
        )
        .unwrap();
        model.node_providers().unwrap()
    };
    // The plugin registered (as auto, the default, does everywhere): ONNX Runtime would
    // hand a session that names no provider to OpenVINO where it offers the CPU.
    let unavailable = openvino_unavailable();
    let offered = openvino_offers(None, None, OpenVinoDevice::Cpu);
    assert_eq!(offered.is_ok(), unavailable.is_none(), "{offered:?}");
    let cpu = providers(Provider::Cpu, "cpu");
    assert_eq!(
        cpu.keys().collect::<Vec<_>>(),
        ["CPUExecutionProvider"],
        "{cpu:?}"
    );
    if let Some(why) = unavailable {
        std::fs::remove_dir_all(&dir).unwrap();
        not_run(&format!("the OpenVINO half: {why}"));
        return;
    }
    let openvino = providers(
        Provider::OpenVino {
            device: OpenVinoDevice::Cpu,
            precision: Precision::F32,
        },
        "openvino",
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        openvino.keys().collect::<Vec<_>>(),
        ["OpenVINOExecutionProvider"],
        "{openvino:?}"
    );
}

#[test]
fn auto_takes_openvino_exactly_where_its_plugin_offers_the_cpu() {
    let (w, h) = (1280, 720);
    let frames = comparison_frames(w, h);
    let base = format!("model-location={}", model("blob-yolov8").display());
    let (cpu, cpu_stats) = detect(
        &frames,
        w,
        h,
        "I420",
        &format!("{base} execution-provider=cpu"),
    )
    .unwrap();
    assert_eq!(
        cpu_stats.get::<String>("execution-provider").unwrap(),
        "cpu"
    );
    // The default is auto.
    let (auto, auto_stats) = detect(&frames, w, h, "I420", &base).unwrap();
    let unavailable = openvino_unavailable();
    let expected = if unavailable.is_none() {
        "openvino"
    } else {
        "cpu"
    };
    assert_eq!(
        auto_stats.get::<String>("execution-provider").unwrap(),
        expected,
        "on {}",
        cpu_model()
    );
    assert_same_boxes("auto", &boxes(&cpu), &boxes(&auto), 2.0);
    if unavailable.is_some() {
        // Asked for by name where it has no device, OpenVINO is an error that says so and
        // points at auto.
        let error = start_error(&format!("{base} execution-provider=openvino"), "RGB");
        assert!(
            error.contains("offers no CPU device on this machine")
                && error.contains("execution-provider=auto"),
            "{error}"
        );
    }

    // Without the plugin (a machine without the wheel, or OpenVINO hidden): the CPU, said
    // in the log, and the same line still runs. In a fresh process: the plugin registers
    // once per process.
    let (succeeded, text) = fresh_gst_launch("execution-provider=auto", |command| {
        command
            .env("ORT_OPENVINO_EP_PATH", "/no/such/openvino-plugin.so")
            .env("GST_DEBUG", "yolodetect:4")
            .env("GST_DEBUG_NO_COLOR", "1")
    });
    assert!(succeeded, "{text}");
    assert!(
        text.contains("execution-provider=auto runs on the CPU provider, because")
            && text.contains("not found at '/no/such/openvino-plugin.so'"),
        "{text}"
    );
    assert!(text.contains(" on cpu: input "), "{text}");
}

#[test]
fn int8_boxes_equal_the_float_boxes_on_the_cpu_and_on_openvino_where_offered() {
    let dir = std::env::temp_dir().join(format!("yolodetect-int8-{}", std::process::id()));
    let calibration = dir.join("calibration");
    let python = |args: &[&std::ffi::OsStr]| {
        let output = command("python").args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    python(&[
        repo().join("models/blob_frames.py").as_os_str(),
        calibration.as_os_str(),
        "--count".as_ref(),
        "24".as_ref(),
        "--seed".as_ref(),
        "1".as_ref(),
    ]);
    let openvino = openvino_unavailable();
    if let Some(why) = &openvino {
        not_run(&format!("the OpenVINO half: {why}"));
    }
    let (w, h) = (1280, 720);
    let frames = comparison_frames(w, h);
    for name in ["blob-yolov8", "blob-yolo26"] {
        let int8 = dir.join(format!("{name}-int8.onnx"));
        // The blob models are coordinate arithmetic: only their score path can be INT8.
        python(&[
            repo().join("models/quantize.py").as_os_str(),
            model(name).as_os_str(),
            int8.as_os_str(),
            "--images".as_ref(),
            calibration.as_os_str(),
            "--keep-float".as_ref(),
            "threshold,index".as_ref(),
        ]);
        let float = format!(
            "model-location={} execution-provider=cpu",
            model(name).display()
        );
        let (expected, _) = detect(&frames, w, h, "I420", &float).unwrap();
        let quantized = format!("model-location={}", int8.display());
        let (cpu, _) = detect(
            &frames,
            w,
            h,
            "I420",
            &format!("{quantized} execution-provider=cpu"),
        )
        .unwrap();
        assert_same_boxes(
            &format!("{name} INT8, CPU"),
            &boxes(&expected),
            &boxes(&cpu),
            2.0,
        );
        if openvino.is_some() {
            continue;
        }
        let (openvino, _) = detect(
            &frames,
            w,
            h,
            "I420",
            &format!("{quantized} execution-provider=openvino"),
        )
        .unwrap();
        assert_same_boxes(
            &format!("{name} INT8, OpenVINO"),
            &boxes(&expected),
            &boxes(&openvino),
            2.0,
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A frame for [`run_streams`]: its record (stream, seq), or none for a buffer without a
/// record meta; its PTS and capture time (Unix) in ms; how long to wait before pushing it.
struct StreamFrame {
    record: Option<(String, u64)>,
    pts_ms: u64,
    capture_ms: Option<u64>,
    wait_ms: u64,
    rgb: Vec<u8>,
}

impl StreamFrame {
    fn new(stream: &str, seq: u64, pts_ms: u64, rgb: Vec<u8>) -> StreamFrame {
        StreamFrame {
            record: Some((stream.to_owned(), seq)),
            pts_ms,
            capture_ms: None,
            wait_ms: 0,
            rgb,
        }
    }
}

/// What came out for one frame: its record, whether it was inferred (the element
/// message), and its detections (the region-of-interest metas).
#[derive(Debug)]
struct StreamOut {
    stream: String,
    seq: u64,
    inferred: bool,
    found: Vec<Found>,
}

/// Pushes `frames` (RGB, `width` a multiple of 4: unpadded rows) through
/// `appsrc ! yolodetect post-messages=true <props> ! appsink` while playing, and returns
/// what came out for each, in order, with the element's stats.
fn run_streams(
    frames: &[StreamFrame],
    width: usize,
    height: usize,
    props: &str,
) -> (Vec<StreamOut>, gst::Structure) {
    init();
    let pipeline = launch(&format!(
        "appsrc name=src format=time caps=video/x-raw,format=RGB,width={width},height={height},framerate=30/1 ! \
         yolodetect name=detect model-location={} post-messages=true {props} ! \
         appsink name=out sync=false",
        model("blob-yolov8").display()
    ));
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let samples = collect_samples(&pipeline, "out");
    let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = messages.clone();
    pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
        if let Some(s) = msg.structure().filter(|s| s.name() == "yolodetect") {
            store
                .lock()
                .unwrap()
                .push(s.get::<bool>("inferred").unwrap());
        }
        gst::BusSyncReply::Pass
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    let unix = gst::Caps::new_empty_simple(kafkavision::meta::UNIX_TIME_CAPS);
    for (offset, frame) in frames.iter().enumerate() {
        std::thread::sleep(Duration::from_millis(frame.wait_ms));
        assert_eq!(frame.rgb.len(), width * height * 3);
        let mut buffer = gst::Buffer::from_slice(frame.rgb.clone());
        let b = buffer.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(frame.pts_ms));
        if let Some(ms) = frame.capture_ms {
            gst::ReferenceTimestampMeta::add(b, &unix, gst::ClockTime::from_mseconds(ms), None);
        }
        if let Some((stream, seq)) = &frame.record {
            kafkavision::meta::RecordMeta {
                topic: "frames".into(),
                partition: 0,
                offset: offset as i64,
                key: Some(stream.clone()),
                stream: stream.clone(),
                seq: *seq,
            }
            .attach(b);
        }
        src.push_buffer(buffer).unwrap();
    }
    src.end_of_stream().unwrap();
    let detect = pipeline.by_name("detect").unwrap();
    let ended = run_until_end(&pipeline, Duration::from_secs(120));
    assert!(matches!(ended, Ended::Eos), "{ended:?}");
    let samples = samples.lock().unwrap();
    let messages = messages.lock().unwrap();
    assert_eq!(samples.len(), frames.len());
    assert_eq!(messages.len(), frames.len(), "one message per frame");
    let outs = samples
        .iter()
        .zip(messages.iter())
        .map(|(sample, &inferred)| {
            let buffer = sample.buffer().unwrap();
            let record = kafkavision::meta::RecordMeta::of(buffer);
            StreamOut {
                stream: record.as_ref().map_or(String::new(), |r| r.stream.clone()),
                seq: record.as_ref().map_or(0, |r| r.seq),
                inferred,
                found: buffer
                    .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
                    .map(|meta| {
                        let (x, y, w, h) = meta.rect();
                        let param = meta.param("detection").unwrap();
                        Found {
                            x: x as f64,
                            y: y as f64,
                            w: w as f64,
                            h: h as f64,
                            class_id: param.get("class-id").unwrap(),
                            label: param.get("label").unwrap(),
                            confidence: param.get("confidence").unwrap(),
                            inferred: param.get("inferred").unwrap(),
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    (outs, stats(&detect))
}

/// The seqs of `stream`'s frames that were inferred.
fn inferred_seqs(outs: &[StreamOut], stream: &str) -> Vec<u64> {
    outs.iter()
        .filter(|o| o.stream == stream && o.inferred)
        .map(|o| o.seq)
        .collect()
}

/// Frames of streams interleaved in the given order, each stream numbered from its first
/// seq, 33 ms apart: the picture of a stream is `picture(stream, seq)`.
fn interleave(
    order: &[usize],
    streams: &[(&'static str, u64)],
    picture: impl Fn(&str, u64) -> Vec<u8>,
) -> Vec<StreamFrame> {
    let mut next: Vec<u64> = streams.iter().map(|s| s.1).collect();
    order
        .iter()
        .map(|&i| {
            let (stream, seq) = (streams[i].0, next[i]);
            next[i] += 1;
            StreamFrame::new(stream, seq, 33 * seq, picture(stream, seq))
        })
        .collect()
}

#[test]
fn interval_is_kept_per_stream_and_no_frame_carries_another_streams_boxes() {
    let (w, h) = (320, 240);
    let squares = frame_with_squares(w, h, &two_squares(w, h));
    let black = vec![0u8; w * h * 3];
    let picture = |stream: &str, _: u64| {
        if stream == "ball" {
            squares.clone()
        } else {
            black.clone()
        }
    };
    // Two streams alternating, then three in an irregular order with one that a worker
    // joined at seq 5 (it infers 6, 8, ... as the worker before it did).
    let two = interleave(&[0, 1].repeat(10), &[("ball", 0), ("black", 0)], picture);
    let three = interleave(
        &[
            0, 1, 1, 2, 0, 2, 2, 0, 1, 0, 1, 2, 0, 0, 1, 2, 1, 2, 0, 1, 1, 0, 2, 2,
        ],
        &[("ball", 0), ("black", 0), ("late-black", 5)],
        picture,
    );
    for (frames, streams) in [(two, 2u64), (three, 3)] {
        let (outs, stats) = run_streams(&frames, w, h, "interval=2");
        for out in &outs {
            assert_eq!(out.inferred, out.seq % 2 == 0, "{out:?}");
            if out.stream == "ball" {
                assert_eq!(out.found.len(), 2, "ball frame carries its own: {out:?}");
                assert!(
                    out.found.iter().all(|f| f.inferred == out.inferred),
                    "{out:?}"
                );
            } else {
                assert!(out.found.is_empty(), "a black frame with boxes: {out:?}");
            }
        }
        let even = outs.iter().filter(|o| o.seq % 2 == 0).count() as u64;
        assert_eq!(stats.get::<u64>("inferred"), Ok(even), "{stats}");
        assert_eq!(
            stats.get::<u64>("skipped"),
            Ok(outs.len() as u64 - even),
            "{stats}"
        );
        assert_eq!(stats.get::<u64>("streams"), Ok(streams), "{stats}");
        assert_eq!(stats.get::<u64>("streams-retired"), Ok(0), "{stats}");
    }
}

#[test]
fn max_rate_infers_each_stream_at_its_own_rate_by_its_frame_times() {
    let (w, h) = (320, 240);
    let squares = frame_with_squares(w, h, &two_squares(w, h));
    let black = vec![0u8; w * h * 3];
    // One second of two cameras: "fast" at 25 frames a second timed by PTS, "slow" at 10
    // timed by capture time (its PTS says nothing: all 0), interleaved by time.
    let base_ms = 1_700_000_000_000;
    let mut frames: Vec<(u64, StreamFrame)> = (0..25)
        .map(|i| (40 * i, StreamFrame::new("fast", i, 40 * i, squares.clone())))
        .chain((0..10).map(|i| {
            let mut frame = StreamFrame::new("slow", i, 0, black.clone());
            frame.capture_ms = Some(base_ms + 100 * i);
            (100 * i, frame)
        }))
        .collect();
    frames.sort_by_key(|(t, _)| *t);
    let frames: Vec<StreamFrame> = frames.into_iter().map(|(_, f)| f).collect();

    // At most 5 a second: the first frame of each 200 ms.
    let (outs, stats) = run_streams(&frames, w, h, "max-rate=5");
    assert_eq!(inferred_seqs(&outs, "fast"), [0, 5, 10, 15, 20]);
    assert_eq!(inferred_seqs(&outs, "slow"), [0, 2, 4, 6, 8]);
    assert_eq!(stats.get::<u64>("inferred"), Ok(10), "{stats}");
    assert_eq!(stats.get::<u64>("skipped"), Ok(25), "{stats}");
    // Both rules: even seqs only, and among them the first of each 200 ms.
    let (both, _) = run_streams(&frames, w, h, "max-rate=5 interval=2");
    assert_eq!(inferred_seqs(&both, "fast"), [0, 6, 10, 16, 20]);
    assert_eq!(inferred_seqs(&both, "slow"), [0, 2, 4, 6, 8]);
    for out in outs.iter().chain(&both) {
        match out.stream.as_str() {
            "fast" => assert_eq!(out.found.len(), 2, "{out:?}"),
            _ => assert!(out.found.is_empty(), "a black frame with boxes: {out:?}"),
        }
    }
}

#[test]
fn motion_gating_compares_each_stream_with_its_own_last_inferred_frame() {
    let (w, h) = (640, 480);
    let still = frame_with_squares(w, h, &two_squares(w, h));
    let side = 120;
    let moving = |seq: u64| frame_with_squares(w, h, &[(100 + 6 * seq as usize, 150, side)]);
    let frames = interleave(
        &[0, 1].repeat(10),
        &[("still", 0), ("moving", 0)],
        |stream, seq| {
            if stream == "still" {
                still.clone()
            } else {
                moving(seq)
            }
        },
    );
    for (props, moving_inferred) in [
        ("motion-threshold=0.002", (0..10).collect::<Vec<u64>>()),
        (
            "motion-threshold=0.002 interval=2",
            (0..10).step_by(2).collect(),
        ),
    ] {
        let (outs, stats) = run_streams(&frames, w, h, props);
        assert_eq!(inferred_seqs(&outs, "still"), [0], "{props}");
        assert_eq!(inferred_seqs(&outs, "moving"), moving_inferred, "{props}");
        let skipped_still = if props.contains("interval") { 4 } else { 9 };
        assert_eq!(
            stats.get::<u64>("skipped-still"),
            Ok(skipped_still),
            "{props}: {stats}"
        );
        for out in &outs {
            if out.stream == "still" {
                assert_eq!(out.found.len(), 2, "{props}: {out:?}");
                continue;
            }
            assert_eq!(out.found.len(), 1, "{props}: {out:?}");
            // Where the square was on this stream's last inferred frame.
            let last = if out.inferred { out.seq } else { out.seq - 1 };
            let at = 100.0 + 6.0 * last as f64;
            assert!((out.found[0].x - at).abs() <= 2.0, "{props}: {out:?}");
        }
    }
}

#[test]
fn idle_streams_are_forgotten_and_come_back_fresh() {
    let (w, h) = (320, 240);
    let still = frame_with_squares(w, h, &two_squares(w, h));
    // A still camera gated after its first frame, silent for a second, then back.
    let frames = |stream_b: &str| {
        let mut frames = vec![
            StreamFrame::new("a", 0, 0, still.clone()),
            StreamFrame::new("a", 1, 33, still.clone()),
            StreamFrame::new(stream_b, 0, 0, still.clone()),
            StreamFrame::new("a", 2, 66, still.clone()),
        ];
        frames[2].wait_ms = 1000;
        frames
    };
    let props = "motion-threshold=0.002 idle-timeout=200";
    let (outs, stats) = run_streams(&frames("b"), w, h, props);
    let inferred: Vec<bool> = outs.iter().map(|o| o.inferred).collect();
    assert_eq!(inferred, [true, false, true, true], "a starts afresh");
    assert_eq!(stats.get::<u64>("streams-retired"), Ok(1), "{stats}");
    assert_eq!(stats.get::<u64>("streams"), Ok(2), "{stats}");
    // Kept until stop: a's reference still holds after the silence.
    let (outs, stats) = run_streams(&frames("b"), w, h, "motion-threshold=0.002 idle-timeout=0");
    let inferred: Vec<bool> = outs.iter().map(|o| o.inferred).collect();
    assert_eq!(inferred, [true, false, true, false]);
    assert_eq!(stats.get::<u64>("streams-retired"), Ok(0), "{stats}");
    // Without a record meta, all frames are one stream, with its own frame count.
    let mut frames = frames("b");
    for frame in &mut frames {
        frame.record = None;
    }
    let (outs, stats) = run_streams(&frames, w, h, "interval=2 idle-timeout=0");
    let inferred: Vec<bool> = outs.iter().map(|o| o.inferred).collect();
    assert_eq!(inferred, [true, false, true, false]);
    assert_eq!(stats.get::<u64>("streams"), Ok(1), "{stats}");
}

#[test]
fn at_most_1024_streams_are_kept_the_least_recently_seen_go_first() {
    let (w, h) = (64, 48);
    // Seq 1 with interval 2: no frame is due, only the bookkeeping runs.
    let frames: Vec<StreamFrame> = (0..1030)
        .map(|i| StreamFrame::new(&format!("s{i}"), 1, 0, vec![0; w * h * 3]))
        .collect();
    let (_, stats) = run_streams(&frames, w, h, "interval=2");
    assert_eq!(stats.get::<u64>("streams"), Ok(1024), "{stats}");
    assert_eq!(stats.get::<u64>("streams-retired"), Ok(6), "{stats}");
    assert_eq!(stats.get::<u64>("skipped"), Ok(1030), "{stats}");
}

/// A decoder upstream (`kafkadecodebin decode=auto`) asks how often frames are used: the
/// answer is `max-rate` and `interval` as set, through elements in between.
#[test]
fn it_tells_a_decoder_upstream_how_often_it_uses_frames() {
    init();
    let pipeline = launch(
        "videotestsrc name=src ! videoconvert ! yolodetect name=detect max-rate=2.5 interval=3 ! \
         fakesink",
    );
    let src = pipeline.by_name("src").unwrap().static_pad("src").unwrap();
    assert_eq!(
        kafkavision::frames_wanted::FramesWanted::ask(&src),
        Some(kafkavision::frames_wanted::FramesWanted {
            max_rate: 2.5,
            interval: 3
        })
    );
    let detect = pipeline.by_name("detect").unwrap();
    detect.set_property("max-rate", 0.0);
    detect.set_property("interval", 1u32);
    assert_eq!(
        kafkavision::frames_wanted::FramesWanted::ask(&src).map(|w| (w.max_rate, w.interval)),
        Some((0.0, 1))
    );
    // Nothing downstream that uses frames: no answer.
    let plain = launch("videotestsrc name=src ! fakesink");
    let src = plain.by_name("src").unwrap().static_pad("src").unwrap();
    assert_eq!(kafkavision::frames_wanted::FramesWanted::ask(&src), None);
}
