// SPDX-License-Identifier: MIT OR Apache-2.0
/**
 * element-eventsconvert:
 *
 * Turns the events a frame carries (`GstGkvEventsMeta`, from `crossingcount`) into one
 * buffer each, holding the event as `gkv.events` JSON (caps `application/x-gkv-events+json`),
 * with the frame's timestamps and record meta; a frame without events gives nothing but a
 * gap event (so sinks preroll on a stream where nothing happens). In
 * front of `kafkasink key-from=record` that is one small record per event, keyed by camera,
 * and none while nothing happens. Each output keeps its frame's Kafka record open until it
 * is delivered; frames without events release theirs at once.
 *
 * ## Example
 * ```sh
 * gst-launch-1.0 kafkasrc brokers=127.0.0.1:9092 topic=frames group-id=counters ! \
 *     kafkadecodebin ! videoconvert ! yolodetect model-location=yolov8n.onnx ! objecttrack ! \
 *     crossingcount lines="gate:0.5,0,0.5,1" ! eventsconvert ! \
 *     kafkasink brokers=127.0.0.1:9092 topic=events key-from=record
 * ```
 */
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::base_transform::GenerateOutputSuccess;
use gst_base::subclass::prelude::*;
use kafkavision::events::{self, Event};
use kafkavision::per_run::{COUNTERS, PerRun, counters};

use crate::output::buffer_for_frame;

/// The events of the frame being converted, and the frame for their timestamps and metas.
#[derive(Default)]
struct Pending {
    frame: Option<gst::Buffer>,
    events: VecDeque<Event>,
}

#[derive(Default)]
struct Stats {
    frames: AtomicU64,
    events: AtomicU64,
}

#[derive(Default)]
pub struct EventsConvert {
    pending: Mutex<Pending>,
    stats: PerRun<Stats>,
}

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "eventsconvert",
        gst::DebugColorFlags::empty(),
        Some("Events of frames to gkv.events JSON"),
    )
});

#[glib::object_subclass]
impl ObjectSubclass for EventsConvert {
    const NAME: &'static str = "GstEventsConvert";
    type Type = super::EventsConvert;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for EventsConvert {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("Frames seen and events written.")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "stats" => {
                let stats = self.stats.current();
                gst::Structure::builder("eventsconvert-stats")
                    .field("frames", stats.frames.load(Ordering::Relaxed))
                    .field("events", stats.events.load(Ordering::Relaxed))
                    .field(COUNTERS, counters(&["frames", "events"]))
                    .build()
                    .to_value()
            }
            _ => unreachable!(),
        }
    }
}

impl GstObjectImpl for EventsConvert {}

impl ElementImpl for EventsConvert {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Events converter",
                "Filter/Converter",
                "One gkv.events JSON buffer per event a frame carries; nothing for frames \
                 without events",
                "gst-kafka-vision developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &gst::Caps::new_any(),
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &gst::Caps::new_empty_simple(events::CAPS),
                )
                .unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for EventsConvert {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::NeverInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        self.stats.restart();
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.pending.lock().unwrap() = Pending::default();
        Ok(())
    }

    fn transform_caps(
        &self,
        direction: gst::PadDirection,
        _caps: &gst::Caps,
        filter: Option<&gst::Caps>,
    ) -> Option<gst::Caps> {
        let other = match direction {
            gst::PadDirection::Sink => gst::Caps::new_empty_simple(events::CAPS),
            _ => gst::Caps::new_any(),
        };
        Some(match filter {
            Some(filter) => filter.intersect_with_mode(&other, gst::CapsIntersectMode::First),
            None => other,
        })
    }

    /// Called until it has no more output: one event of the current frame each time.
    fn generate_output(&self) -> Result<GenerateOutputSuccess, gst::FlowError> {
        let mut pending = self.pending.lock().unwrap();
        if pending.events.is_empty() {
            pending.frame = None;
            let Some(frame) = self.take_queued_buffer() else {
                return Ok(GenerateOutputSuccess::NoOutput);
            };
            self.stats.current().frames.fetch_add(1, Ordering::Relaxed);
            pending.events = events::meta::of_buffer(&frame).into();
            if pending.events.is_empty() {
                // Nothing happened: nothing to write, and the frame's record is done. A gap
                // says so downstream, so a sink prerolls without waiting for an event.
                if let Some(pts) = frame.pts() {
                    let gap = gst::event::Gap::builder(pts)
                        .duration(frame.duration())
                        .build();
                    drop(pending);
                    self.obj().static_pad("src").unwrap().push_event(gap);
                }
                return Ok(GenerateOutputSuccess::NoOutput);
            }
            gst::trace!(CAT, imp = self, "{} event(s)", pending.events.len());
            pending.frame = Some(frame);
        }
        let event = pending.events.pop_front().unwrap();
        let frame = pending.frame.as_ref().unwrap();
        let output = buffer_for_frame(frame, event.to_json());
        self.stats.current().events.fetch_add(1, Ordering::Relaxed);
        Ok(GenerateOutputSuccess::Buffer(output))
    }
}
