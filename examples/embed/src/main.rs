// SPDX-License-Identifier: MIT OR Apache-2.0
//! `embed-detect`: YOLO detection on frames read from Kafka, inside a Rust application that
//! links the plugins statically. It builds
//!
//! ```text
//! kafkasrc ! kafkadecodebin ! videoconvert ! yolodetect ! appsink
//! ```
//!
//! from element factories with typed properties (no launch description, no
//! `GST_PLUGIN_PATH`), and prints one line per frame from the typed metas: where the record
//! came from (`gstkafka::RecordMeta`) and its detections
//! (`kafkavision::detections::meta::of_buffer`).
//!
//! `embed-detect --brokers HOST:PORT --topic frames --model M [--ort-library L] [--frames N]`
//! reads from the earliest record until N frames were detected, or until the streams end
//! (their `kafkasink` end-of-stream records).

use gst::prelude::*;

struct Options {
    brokers: String,
    topic: String,
    model: String,
    ort_library: Option<String>,
    frames: Option<u64>,
}

const USAGE: &str = "usage: embed-detect --brokers HOST:PORT --topic TOPIC --model MODEL.onnx \
                     [--ort-library libonnxruntime.so] [--frames N]";

fn options() -> Result<Options, String> {
    let (mut brokers, mut topic, mut model, mut ort_library, mut frames) =
        (None, None, None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--brokers" => brokers = Some(value()?),
            "--topic" => topic = Some(value()?),
            "--model" => model = Some(value()?),
            "--ort-library" => ort_library = Some(value()?),
            "--frames" => frames = Some(value()?.parse().map_err(|e| format!("--frames: {e}"))?),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(Options {
        brokers: brokers.ok_or(USAGE)?,
        topic: topic.ok_or(USAGE)?,
        model: model.ok_or(USAGE)?,
        ort_library,
        frames,
    })
}

fn element(factory: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|e| format!("{factory}: {e}"))
}

fn run() -> Result<(), String> {
    let options = options()?;
    gst::init().map_err(|e| e.to_string())?;
    // Statically linked plugins: registered in this process, found without a plugin path.
    gstkafka::plugin_register_static().map_err(|e| e.to_string())?;
    gstyolo::plugin_register_static().map_err(|e| e.to_string())?;

    let source = element("kafkasrc")?;
    source.set_property("brokers", &options.brokers);
    source.set_property("topic", &options.topic);
    source.set_property_from_str("start-from", "earliest");
    source.set_property("stop-on-eos", true);
    let decode = element("kafkadecodebin")?;
    let convert = element("videoconvert")?;
    let detect = element("yolodetect")?;
    detect.set_property("model-location", &options.model);
    if let Some(library) = &options.ort_library {
        detect.set_property("ort-library", library);
    }
    let sink = gst_app::AppSink::builder().sync(false).build();

    let pipeline = gst::Pipeline::new();
    pipeline
        .add_many([&source, &decode, &convert, &detect, sink.upcast_ref()])
        .map_err(|e| e.to_string())?;
    gst::Element::link_many([&source, &decode, &convert, &detect, sink.upcast_ref()])
        .map_err(|e| e.to_string())?;

    let limit = options.frames;
    let frames = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = frames.clone();
    let weak = pipeline.downgrade();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                let record = gstkafka::RecordMeta::of(buffer);
                let detections = kafkavision::detections::meta::of_buffer(buffer, 0, 0);
                let place = record.map_or("?".to_string(), |r| {
                    format!("{} {}/{}@{}", r.camera(), r.topic, r.partition, r.offset)
                });
                let found: Vec<String> = detections
                    .iter()
                    .map(|d| {
                        format!(
                            "{} {:.2} [{:.0},{:.0} {:.0}x{:.0}]",
                            d.label, d.confidence, d.bbox.x, d.bbox.y, d.bbox.width, d.bbox.height
                        )
                    })
                    .collect();
                println!("frame {place}: {}", found.join("; "));
                let n = seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if limit.is_some_and(|limit| n >= limit)
                    && let Some(pipeline) = weak.upgrade()
                {
                    pipeline.send_event(gst::event::Eos::new());
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );

    if pipeline.set_state(gst::State::Playing).is_err() {
        let why = bus_error(&pipeline).unwrap_or_else(|| "the pipeline did not start".into());
        pipeline.set_state(gst::State::Null).unwrap();
        return Err(why);
    }
    let bus = pipeline.bus().unwrap();
    let result = loop {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(1)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => break Ok(()),
            gst::MessageView::Error(e) => {
                break Err(format!(
                    "{}: {}",
                    e.src().map(|s| s.name()).unwrap_or_default(),
                    e.error()
                ));
            }
            _ => {}
        }
    };
    pipeline.set_state(gst::State::Null).unwrap();
    eprintln!(
        "{} frames",
        frames.load(std::sync::atomic::Ordering::Relaxed)
    );
    result
}

/// The first error the pipeline posted, for a start that failed.
fn bus_error(pipeline: &gst::Pipeline) -> Option<String> {
    let bus = pipeline.bus()?;
    let msg = bus.timed_pop_filtered(gst::ClockTime::ZERO, &[gst::MessageType::Error])?;
    match msg.view() {
        gst::MessageView::Error(e) => Some(e.error().to_string()),
        _ => None,
    }
}

fn main() {
    if let Err(err) = run() {
        eprintln!("embed-detect: {err}");
        std::process::exit(1);
    }
}
