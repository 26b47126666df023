// SPDX-License-Identifier: MIT OR Apache-2.0
//! `archive`: a crop corpus from annotated frames. Every detection with confidence at or
//! above `--min-confidence` is cut out of its frame (box clipped to the frame) and saved as
//! `<out>/<label>/<label>_<n>.jpg`; `n` continues from the files already there.
//!
//! Pipeline: `kafkasrc ! detectionsconvert output=metas ! jpegdec ! videoconvert !
//! video/x-raw,format=RGB ! appsink`. The boxes are the `GstVideoRegionOfInterestMeta`s
//! `detectionsconvert` attaches from each record's `gkv-detections` header. In a
//! single-stream check on GStreamer 1.22 they survived
//! `jpegdec` and `videoconvert`, but decoders are not bound to keep them (the meta carries
//! the "size" tag), so a pad probe on `kafkasrc` also keeps each JPEG buffer's detections
//! in order: a decoded frame without metas takes the next kept list (one decoded frame per
//! JPEG, in order). The summary warns if fewer confident detections were archived than
//! left `kafkasrc`.
//!
//! The crop is written inside the appsink callback, before the push returns, so
//! `kafkasrc` stores a record's offset only after its crops are on disk (at-least-once: a
//! crash re-archives at most the frame in hand).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use gst::prelude::*;
use gst_kafka_vision_examples::Args;
use gst_video::prelude::*;

const USAGE: &str = concat!(
    "\
archive: save every confident detection of annotated frames as a JPEG crop

usage: archive [options]
",
    gst_kafka_vision_examples::kafka_options_help!(),
    "
  --topic NAME             annotated-frames topic (default annotated)
  --group NAME             consumer group (default archive)
  --out DIR                corpus folder; crops go to DIR/<label>/<label>_<n>.jpg (default archive)
  --min-confidence X       keep detections with confidence >= X (default 0.7)
  --quality Q              JPEG quality 1..100 (default 90)
  --stop-on-eos            end once every stream read so far has sent its end-of-stream record
  --frames N               end after N frames (default: run until stopped)
  --metrics HOST:PORT      serve Prometheus metrics at /metrics (the pipeline's, and
                           gkv_archive_frames, gkv_archive_crops_saved) and health at /healthz"
);

fn main() {
    let args = Args::parse(USAGE);
    if let Err(err) = run(&args) {
        eprintln!("archive: {err}");
        std::process::exit(1);
    }
}

struct Settings {
    out: PathBuf,
    min_confidence: f64,
    quality: u8,
    max_frames: u64,
}

#[derive(Default)]
struct State {
    frames: u64,
    /// Crops saved in this run, per label.
    saved: BTreeMap<String, u64>,
    /// Next file number per label folder, found by looking at the folder once.
    next: HashMap<String, u64>,
    /// Confident detections seen after decoding.
    detections: u64,
    /// Confident detections whose box lies outside the frame (nothing to crop).
    empty: u64,
    below_threshold: u64,
    /// The first error (a crop that could not be written); ends the run.
    error: Option<String>,
    /// `--frames` reached: the main thread shuts the pipeline down.
    done: bool,
    /// Set by the main thread before it stops the pipeline.
    shutting_down: bool,
}

type Shared = Arc<(Mutex<State>, Condvar)>;
/// Detections of the JPEG buffers, in order, until their decoded frame arrives.
/// A detection: label, confidence, rect in pixels (x, y, width, height).
type Detection = (String, f64, (u32, u32, u32, u32));
type InOrder = Arc<Mutex<VecDeque<Vec<Detection>>>>;

/// A label as a file and folder name: path separators and dot-names replaced.
fn file_label(label: &str) -> String {
    let clean: String = label
        .chars()
        .map(|c| {
            if matches!(c, '/' | '\\' | '\0') {
                '_'
            } else {
                c
            }
        })
        .collect();
    match clean.as_str() {
        "" => "unlabelled".into(),
        "." | ".." => clean.replace('.', "_"),
        _ => clean,
    }
}

/// The highest `n` of `<label>_<n>.jpg` in `dir`, 0 if none.
fn highest_number(dir: &Path, label: &str) -> u64 {
    let prefix = format!("{label}_");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_prefix(&prefix)?
                        .strip_suffix(".jpg")?
                        .parse::<u64>()
                        .ok()
                })
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Clips a box to the frame: `(x0, y0, x1, y1)`, or None when nothing is left.
fn clip(rect: (u32, u32, u32, u32), width: u32, height: u32) -> Option<(u32, u32, u32, u32)> {
    let (x, y, w, h) = rect;
    let x0 = x.min(width);
    let y0 = y.min(height);
    let x1 = x.saturating_add(w).min(width);
    let y1 = y.saturating_add(h).min(height);
    (x1 > x0 && y1 > y0).then_some((x0, y0, x1, y1))
}

/// The detections of a buffer: (label, confidence, rect in pixels).
fn detections(buffer: &gst::BufferRef) -> Vec<Detection> {
    kafkavision::detections::meta::of_buffer(buffer, 0, 0)
        .into_iter()
        .map(|d| {
            let b = &d.bbox;
            let rect = (b.x as u32, b.y as u32, b.width as u32, b.height as u32);
            (d.label, d.confidence, rect)
        })
        .collect()
}

/// Saves the crops of one decoded RGB frame.
fn archive_frame(
    sample: &gst::Sample,
    settings: &Settings,
    in_order: &InOrder,
    state: &mut State,
) -> Result<(), String> {
    let buffer = sample.buffer().ok_or("sample without buffer")?;
    let kept = in_order.lock().unwrap().pop_front();
    let mut found = detections(buffer);
    if found.is_empty() {
        found = kept.unwrap_or_default();
    }
    let caps = sample.caps().ok_or("sample without caps")?;
    let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| format!("caps: {e}"))?;
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
        .map_err(|e| format!("mapping the frame: {e}"))?;
    let (width, height) = (info.width(), info.height());
    let stride = frame.plane_stride()[0] as usize;
    let data = frame.plane_data(0).map_err(|e| e.to_string())?;

    for (label, confidence, rect) in found {
        if confidence < settings.min_confidence {
            state.below_threshold += 1;
            continue;
        }
        state.detections += 1;
        let Some((x0, y0, x1, y1)) = clip(rect, width, height) else {
            state.empty += 1;
            continue;
        };
        let (w, h) = ((x1 - x0) as usize, (y1 - y0) as usize);
        let mut rgb = Vec::with_capacity(w * h * 3);
        for row in y0 as usize..y1 as usize {
            let start = row * stride + x0 as usize * 3;
            rgb.extend_from_slice(&data[start..start + w * 3]);
        }
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, settings.quality)
            .encode(&rgb, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
            .map_err(|e| format!("encoding a {w}x{h} crop: {e}"))?;

        let name = file_label(&label);
        let dir = settings.out.join(&name);
        if !state.next.contains_key(&name) {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            state
                .next
                .insert(name.clone(), highest_number(&dir, &name) + 1);
        }
        let n = state.next.get_mut(&name).unwrap();
        // create_new: never overwrite a crop (another archive may share the folder).
        loop {
            let path = dir.join(format!("{name}_{n}.jpg"));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    file.write_all(&jpeg)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    *n += 1;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => *n += 1,
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
        *state.saved.entry(label).or_default() += 1;
    }
    Ok(())
}

fn run(args: &Args) -> Result<(), String> {
    let client = gst_kafka_vision_examples::KafkaClient::from_args(args)?;
    let topic = args.get("topic", "annotated");
    let group = args.get("group", "archive");
    let settings = Arc::new(Settings {
        out: PathBuf::from(args.get("out", "archive")),
        min_confidence: args.number("min-confidence", 0.7f64),
        quality: args.number("quality", 90u8).clamp(1, 100),
        max_frames: args.number("frames", 0u64),
    });
    let stop_on_eos = args.flag("stop-on-eos");
    let stop = gst_kafka_vision_examples::stop_on_signal()?;

    gst_kafka_vision_examples::init()?;
    let pipeline = gst::parse::launch(
        "kafkasrc name=src ! detectionsconvert name=detections output=metas ! jpegdec ! \
         videoconvert ! video/x-raw,format=RGB ! appsink name=out sync=false max-buffers=4",
    )
    .map_err(|e| format!("building the pipeline: {e}"))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;
    let src = pipeline.by_name("src").unwrap();
    client.configure(&src);
    src.set_property("topic", &topic);
    src.set_property("group-id", &group);
    src.set_property("stop-on-eos", stop_on_eos);

    // Confident detections as they leave detectionsconvert, still on the JPEG buffers. Video
    // decoders drop region-of-interest metas (their "size" tag), so they are kept here in
    // order and matched to the decoded frames, which come out one per JPEG, in order
    // (timestamps do not do: two cameras' interleaved frames make the decoder re-time them).
    let upstream = Arc::new(AtomicU64::new(0));
    let in_order: InOrder = Arc::new(Mutex::new(VecDeque::new()));
    let min_confidence = settings.min_confidence;
    let counter = upstream.clone();
    let store = in_order.clone();
    pipeline
        .by_name("detections")
        .unwrap()
        .static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                let found = detections(buffer);
                let n = found
                    .iter()
                    .filter(|(_, c, _)| *c >= min_confidence)
                    .count();
                counter.fetch_add(n as u64, Ordering::Relaxed);
                store.lock().unwrap().push_back(found);
            }
            gst::PadProbeReturn::Ok
        });

    let shared: Shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
    let appsink = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let (cb_shared, cb_settings, cb_in_order) =
        (shared.clone(), settings.clone(), in_order.clone());
    appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
                let (lock, cvar) = &*cb_shared;
                let mut state = lock.lock().unwrap();
                if state.done || state.error.is_some() {
                    // Over the limit: hold this frame (its record is not marked handled)
                    // until the main thread stops the pipeline.
                    while !state.shutting_down {
                        state = cvar.wait(state).unwrap();
                    }
                    return Err(gst::FlowError::Flushing);
                }
                if let Err(err) = archive_frame(&sample, &cb_settings, &cb_in_order, &mut state) {
                    state.error = Some(err);
                    cvar.notify_all();
                    return Err(gst::FlowError::Error);
                }
                state.frames += 1;
                if cb_settings.max_frames > 0 && state.frames >= cb_settings.max_frames {
                    state.done = true;
                    cvar.notify_all();
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );

    let monitor = gst_kafka_vision_examples::serve_metrics(
        args,
        &pipeline,
        kafkamonitor::HealthLimits::default(),
    )?;
    let figures = shared.clone();
    monitor.add_stats("archive", move || {
        let state = figures.0.lock().unwrap();
        gst::Structure::builder("archive-stats")
            .field("frames", state.frames)
            .field("crops-saved", state.saved.values().sum::<u64>())
            .build()
    });
    if pipeline.set_state(gst::State::Playing).is_err() {
        let err = pipeline_error(&pipeline, "starting the pipeline failed");
        let _ = pipeline.set_state(gst::State::Null);
        return Err(err);
    }
    let bus = pipeline.bus().unwrap();
    let mut reason = "stopped".to_string();
    let mut failure = None;
    let mut at_eos = false;
    loop {
        {
            let state = shared.0.lock().unwrap();
            if let Some(err) = &state.error {
                failure = Some(err.clone());
                break;
            }
            if state.done {
                reason = "frame limit reached".into();
                break;
            }
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let Some(message) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            continue;
        };
        match message.view() {
            gst::MessageView::Eos(_) => {
                reason = "end of stream".into();
                at_eos = true;
                break;
            }
            gst::MessageView::Error(err) => {
                // An error in our own callback shows up as a data-flow error: say ours.
                let ours = shared.0.lock().unwrap().error.clone();
                failure = Some(ours.unwrap_or_else(|| {
                    format!(
                        "{}: {}",
                        err.src()
                            .map(|s| s.path_string().to_string())
                            .unwrap_or_default(),
                        err.error()
                    )
                }));
                break;
            }
            gst::MessageView::Warning(w) => {
                eprintln!("archive: warning: {}", w.error());
            }
            _ => {}
        }
    }
    {
        let (lock, cvar) = &*shared;
        lock.lock().unwrap().shutting_down = true;
        cvar.notify_all();
    }
    let _ = pipeline.set_state(gst::State::Null);

    let state = shared.0.lock().unwrap();
    let total: u64 = state.saved.values().sum();
    println!(
        "archive: {reason}: {} frames, {total} crops saved under {}",
        state.frames,
        settings.out.display()
    );
    for (label, n) in &state.saved {
        println!("  {label}: {n}");
    }
    if state.below_threshold > 0 {
        println!(
            "  below confidence {}: {} skipped",
            settings.min_confidence, state.below_threshold
        );
    }
    if state.empty > 0 {
        println!("  boxes outside the frame: {}", state.empty);
    }
    let seen_upstream = upstream.load(Ordering::Relaxed);
    if at_eos && seen_upstream != state.detections {
        eprintln!(
            "archive: warning: kafkasrc delivered {seen_upstream} confident detections but only \
             {} were matched to decoded frames",
            state.detections
        );
    }
    match failure {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

fn pipeline_error(pipeline: &gst::Pipeline, fallback: &str) -> String {
    let bus = pipeline.bus().unwrap();
    while let Some(message) = bus.pop() {
        if let gst::MessageView::Error(err) = message.view() {
            return err.error().to_string();
        }
    }
    fallback.to_string()
}
