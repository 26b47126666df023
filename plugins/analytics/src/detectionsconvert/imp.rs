// SPDX-License-Identifier: MIT OR Apache-2.0
/**
 * element-detectionsconvert:
 *
 * Converts a frame's detections between the region-of-interest metas a detector attaches
 * (`yolodetect`) and the `gkv.detections` JSON schema that travels through Kafka:
 *
 * - `output=json` (default): each frame becomes one small buffer holding its detections as
 *   JSON, caps `application/x-gkv-detections+json`: `kafkasink` writes detections-only
 *   records. The buffer keeps the frame's timestamps, capture time and record meta, so
 *   the frame's Kafka record is committed only once its detections are delivered.
 * - `output=header`: the frame passes unchanged, with its detections JSON in the
 *   `gkv-detections` Kafka header that `kafkasink` writes next to it (annotated frames).
 * - `output=metas`: the way back. The detections of a `gkv-detections` header, or of a
 *   JSON buffer, become region-of-interest metas again. A header or buffer that is not
 *   valid JSON is warned about and counted, and the buffer passes without detections.
 *
 * The record names the camera (the `camera` property, else the key of the Kafka record the
 * frame was read from), the frame's size, PTS and capture time, and the record it was read
 * from (`source`). Each camera's records form a stream of their own, numbered from 0.
 *
 * ## Example
 * ```sh
 * gst-launch-1.0 videotestsrc num-buffers=100 ! video/x-raw,width=640,height=480 ! \
 *     yolodetect model-location=yolov8n.onnx ! detectionsconvert camera=cam1 ! \
 *     kafkasink brokers=127.0.0.1:9092 topic=detections key=cam1
 * gst-launch-1.0 kafkasrc brokers=127.0.0.1:9092 topic=annotated ! \
 *     detectionsconvert output=metas ! jpegdec ! videoconvert ! autovideosink
 * ```
 */
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::base_transform::GenerateOutputSuccess;
use gst_base::subclass::prelude::*;
use kafkavision::detections::meta::{self as detections_meta, FrameOrigin};
use kafkavision::detections::{self, FrameDetections};
use kafkavision::meta::{RecordMeta, capture_time};
use kafkavision::per_run::{COUNTERS, PerRun, counters};

use crate::output::buffer_for_frame;

const DEFAULT_OUTPUT: Output = Output::Json;

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstDetectionsConvertOutput")]
pub enum Output {
    #[enum_value(
        name = "The frame's detections as gkv.detections JSON (caps \
                application/x-gkv-detections+json), one buffer per frame",
        nick = "json"
    )]
    Json = 0,
    #[enum_value(
        name = "The frame unchanged, its detections JSON in the gkv-detections Kafka header",
        nick = "header"
    )]
    Header = 1,
    #[enum_value(
        name = "Region-of-interest metas from a gkv-detections header or a JSON buffer",
        nick = "metas"
    )]
    Metas = 2,
}

#[derive(Debug, Clone)]
struct Settings {
    output: Output,
    camera: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            output: DEFAULT_OUTPUT,
            camera: None,
        }
    }
}

/// A camera's output stream: its id and the next sequence number.
struct CameraStream {
    id: String,
    next_seq: u64,
}

#[derive(Default)]
struct State {
    width: u32,
    height: u32,
    /// The input is gkv.detections JSON (for `output=metas`).
    json_input: bool,
    streams: HashMap<Option<String>, CameraStream>,
    suffix: String,
}

#[derive(Default)]
struct Stats {
    frames: AtomicU64,
    detections: AtomicU64,
    bad_detections: AtomicU64,
}

#[derive(Default)]
pub struct DetectionsConvert {
    settings: Mutex<Settings>,
    state: Mutex<State>,
    stats: PerRun<Stats>,
}

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "detectionsconvert",
        gst::DebugColorFlags::empty(),
        Some("Detections metas to and from gkv.detections JSON"),
    )
});

#[glib::object_subclass]
impl ObjectSubclass for DetectionsConvert {
    const NAME: &'static str = "GstDetectionsConvert";
    type Type = super::DetectionsConvert;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for DetectionsConvert {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecEnum::builder_with_default("output", DEFAULT_OUTPUT)
                    .nick("Output")
                    .blurb(
                        "json: the frame's detections as a gkv.detections JSON buffer; header: \
                         the frame with its detections in the gkv-detections Kafka header; \
                         metas: region-of-interest metas from that header or a JSON buffer.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("camera")
                    .nick("Camera")
                    .blurb(
                        "Camera named in the records, e.g. cam1. Unset: the key of the Kafka \
                         record each frame was read from (none for frames from elsewhere).",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "Frames converted, detections in them, and headers or buffers that were \
                         not valid gkv.detections JSON (output=metas).",
                    )
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        match pspec.name() {
            "output" => settings.output = value.get().unwrap(),
            "camera" => settings.camera = value.get().unwrap(),
            _ => unreachable!(),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        match pspec.name() {
            "output" => settings.output.to_value(),
            "camera" => settings.camera.to_value(),
            "stats" => {
                let stats = self.stats.current();
                let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
                gst::Structure::builder("detectionsconvert-stats")
                    .field("frames", load(&stats.frames))
                    .field("detections", load(&stats.detections))
                    .field("bad-detections", load(&stats.bad_detections))
                    .field(
                        COUNTERS,
                        counters(&["frames", "detections", "bad-detections"]),
                    )
                    .build()
                    .to_value()
            }
            _ => unreachable!(),
        }
    }
}

impl GstObjectImpl for DetectionsConvert {}

impl ElementImpl for DetectionsConvert {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Detections converter",
                "Filter/Converter/Video",
                "Turns region-of-interest detections into gkv.detections JSON (a buffer or a \
                 Kafka header) and back",
                "gst-kafka-vision developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let any = gst::Caps::new_any();
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &any,
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &any,
                )
                .unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl DetectionsConvert {
    fn output(&self) -> Output {
        self.settings.lock().unwrap().output
    }

    /// The frame's detections record, numbered in its camera's stream.
    fn record_of(&self, buffer: &gst::BufferRef) -> FrameDetections {
        let camera = self
            .settings
            .lock()
            .unwrap()
            .camera
            .clone()
            .or_else(|| RecordMeta::of(buffer).and_then(|r| r.key));
        let mut state = self.state.lock().unwrap();
        let state = &mut *state;
        let suffix = &state.suffix;
        let stream = state
            .streams
            .entry(camera.clone())
            .or_insert_with(|| CameraStream {
                id: format!("{}-{suffix}", camera.as_deref().unwrap_or("detections")),
                next_seq: 0,
            });
        let seq = stream.next_seq;
        stream.next_seq += 1;
        let capture_time_ns = capture_time(buffer).unwrap_or_else(kafkavision::clock::unix_time_ns);
        let frame = detections_meta::frame_detections(
            buffer,
            &FrameOrigin {
                stream: &stream.id,
                camera: camera.as_deref(),
                seq,
                width: state.width,
                height: state.height,
                capture_time_ns: Some(capture_time_ns),
            },
        );
        let stats = self.stats.current();
        stats.frames.fetch_add(1, Ordering::Relaxed);
        stats
            .detections
            .fetch_add(frame.detections.len() as u64, Ordering::Relaxed);
        frame
    }

    /// A buffer holding `frame` as JSON, standing for the frame it describes, with its
    /// duration and offset too: one record per frame.
    fn json_buffer(&self, input: &gst::BufferRef, frame: &FrameDetections) -> gst::Buffer {
        let mut output = buffer_for_frame(input, frame.to_json());
        let writable = output.get_mut().expect("a new buffer is writable");
        writable.set_duration(input.duration());
        writable.set_offset(input.offset());
        output
    }

    /// `output=metas`: the detections of the header or JSON value as metas.
    fn attach_metas(&self, buffer: &mut gst::BufferRef) {
        let json_input = self.state.lock().unwrap().json_input;
        let parsed = match detections_meta::from_header(buffer) {
            Some(parsed) => Some(parsed),
            None if json_input => Some(
                buffer
                    .map_readable()
                    .map_err(|_| "could not read the buffer".to_string())
                    .and_then(|map| FrameDetections::from_json(map.as_slice())),
            ),
            None => None,
        };
        let stats = self.stats.current();
        stats.frames.fetch_add(1, Ordering::Relaxed);
        match parsed {
            Some(Ok(frame)) => {
                stats
                    .detections
                    .fetch_add(frame.detections.len() as u64, Ordering::Relaxed);
                detections_meta::attach_frame(buffer, &frame);
            }
            Some(Err(why)) => {
                let bad = stats.bad_detections.fetch_add(1, Ordering::Relaxed) + 1;
                let at = RecordMeta::of(buffer)
                    .map(|r| format!(" (partition {} offset {})", r.partition, r.offset))
                    .unwrap_or_default();
                gst::element_imp_warning!(
                    self,
                    gst::StreamError::Decode,
                    ("Frame{at} passed without detections ({bad} so far): {why}")
                );
            }
            None => {}
        }
    }
}

impl BaseTransformImpl for DetectionsConvert {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::NeverInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        self.stats.restart();
        *self.state.lock().unwrap() = State {
            suffix: kafkavision::clock::random_suffix(),
            ..State::default()
        };
        Ok(())
    }

    fn transform_caps(
        &self,
        direction: gst::PadDirection,
        caps: &gst::Caps,
        filter: Option<&gst::Caps>,
    ) -> Option<gst::Caps> {
        let other = match (self.output(), direction) {
            (Output::Json, gst::PadDirection::Sink) => {
                gst::Caps::new_empty_simple(detections::CAPS)
            }
            (Output::Json, _) => gst::Caps::new_any(),
            _ => caps.clone(),
        };
        Some(match filter {
            Some(filter) => filter.intersect_with_mode(&other, gst::CapsIntersectMode::First),
            None => other,
        })
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let s = incaps.structure(0);
        let get = |f: &str| s.and_then(|s| s.get::<i32>(f).ok()).unwrap_or(0).max(0) as u32;
        let mut state = self.state.lock().unwrap();
        state.width = get("width");
        state.height = get("height");
        state.json_input = s.is_some_and(|s| s.name() == detections::CAPS);
        Ok(())
    }

    fn generate_output(&self) -> Result<GenerateOutputSuccess, gst::FlowError> {
        let Some(mut buffer) = self.take_queued_buffer() else {
            return Ok(GenerateOutputSuccess::NoOutput);
        };
        Ok(GenerateOutputSuccess::Buffer(match self.output() {
            Output::Json => {
                let frame = self.record_of(&buffer);
                gst::trace!(CAT, imp = self, "{} detection(s)", frame.detections.len());
                self.json_buffer(&buffer, &frame)
            }
            Output::Header => {
                let frame = self.record_of(&buffer);
                detections_meta::set_header(buffer.make_mut(), &frame);
                buffer
            }
            Output::Metas => {
                self.attach_metas(buffer.make_mut());
                buffer
            }
        }))
    }
}
