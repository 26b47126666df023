// SPDX-License-Identifier: MIT OR Apache-2.0
//! Pipelines: GStreamer set up with the plugins a test file uses, run to their end, and
//! what their appsinks and stats hold.

use std::sync::Once;
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use kafkavision::meta::RecordMeta;

/// A plugin crate's `plugin_register_static`.
pub type Register = fn() -> Result<(), glib::BoolError>;

/// Initialises GStreamer once per test binary and registers the given plugins statically,
/// so tests never depend on GST_PLUGIN_PATH.
pub fn init(plugins: &[Register]) {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        kafkavision::meta::register();
        for register in plugins {
            register().expect("registering a plugin");
        }
    });
}

/// How a pipeline run ended.
#[derive(Debug)]
pub enum Ended {
    Eos,
    Error(String),
    Timeout,
}

/// Plays `pipeline` until EOS, an error or `timeout`, then sets it to NULL.
pub fn run_until_end(pipeline: &gst::Pipeline, timeout: Duration) -> Ended {
    pipeline.set_state(gst::State::Playing).ok();
    let bus = pipeline.bus().unwrap();
    // One wait: the filter lets only EOS and errors through.
    let ended = match bus.timed_pop_filtered(
        gst::ClockTime::from_mseconds(timeout.as_millis() as u64),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    ) {
        None => Ended::Timeout,
        Some(msg) => match msg.view() {
            gst::MessageView::Error(err) => Ended::Error(format!(
                "{} ({})",
                err.error(),
                err.debug().map(|d| d.to_string()).unwrap_or_default()
            )),
            _ => Ended::Eos,
        },
    };
    pipeline.set_state(gst::State::Null).unwrap();
    ended
}

pub fn launch(description: &str) -> gst::Pipeline {
    gst::parse::launch(description)
        .unwrap_or_else(|e| panic!("parsing '{description}': {e}"))
        .downcast::<gst::Pipeline>()
        .unwrap()
}

/// Runs a pipeline to EOS and panics with the error otherwise.
pub fn run_to_eos(description: &str, timeout: Duration) -> gst::Pipeline {
    let pipeline = launch(description);
    match run_until_end(&pipeline, timeout) {
        Ended::Eos => pipeline,
        other => panic!("'{description}' ended with {other:?}"),
    }
}

/// Collects what arrives at the appsink named `name` into a shared vector.
pub fn collect_samples(
    pipeline: &gst::Pipeline,
    name: &str,
) -> std::sync::Arc<std::sync::Mutex<Vec<gst::Sample>>> {
    let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = pipeline
        .by_name(name)
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let store = samples.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                store.lock().unwrap().push(processed(sample));
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    samples
}

/// A copy of the sample to keep for inspection, as if the application had processed and
/// released the original: a kept buffer from `kafkasrc` would otherwise hold its record
/// open (`commit-after=release`) and its offset would never be committed.
pub fn processed(sample: gst::Sample) -> gst::Sample {
    let Some(original) = sample.buffer() else {
        return sample;
    };
    let mut copy = original.copy();
    // The record meta again, without the fields kafkasrc keeps for itself (its token).
    if let Some(record) = RecordMeta::of(original) {
        record.attach(copy.make_mut());
    }
    let mut builder = gst::Sample::builder()
        .buffer(&copy)
        .segment(sample.segment().unwrap());
    let caps = sample.caps_owned();
    if let Some(caps) = &caps {
        builder = builder.caps(caps);
    }
    builder.build()
}

pub fn stats(element: &gst::Element) -> gst::Structure {
    element.property::<gst::Structure>("stats")
}

pub fn stat_u64(element: &gst::Element, field: &str) -> u64 {
    stats(element).get::<u64>(field).unwrap()
}

/// The reference timestamp with the given caps name, if the buffer carries one.
pub fn reference_timestamp(buffer: &gst::BufferRef, caps_name: &str) -> Option<gst::ClockTime> {
    buffer
        .iter_meta::<gst::ReferenceTimestampMeta>()
        .find(|m| {
            m.reference()
                .structure(0)
                .is_some_and(|s| s.name() == caps_name)
        })
        .map(|m| m.timestamp())
}

/// The frames of an MP4 file's video track, counted by demuxing it; `None` when it does
/// not demux to its end.
pub fn mp4_video_frames(path: &std::path::Path) -> Option<usize> {
    let pipeline = gst::Pipeline::new();
    let source = gst::ElementFactory::make("filesrc")
        .property("location", path)
        .build()
        .ok()?;
    let demux = gst::ElementFactory::make("qtdemux").build().ok()?;
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("signal-handoffs", true)
        .build()
        .ok()?;
    pipeline.add_many([&source, &demux, &sink]).ok()?;
    source.link(&demux).ok()?;
    let sink_pad = sink.static_pad("sink")?;
    demux.connect_pad_added(move |_, pad| {
        if !sink_pad.is_linked() {
            let _ = pad.link(&sink_pad);
        }
    });
    let frames = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = frames.clone();
    sink.connect("handoff", false, move |_| {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        None
    });
    match run_until_end(&pipeline, Duration::from_secs(60)) {
        Ended::Eos => Some(frames.load(std::sync::atomic::Ordering::Relaxed)),
        _ => None,
    }
}
