// SPDX-License-Identifier: MIT OR Apache-2.0
/**
 * element-yolodetect:
 *
 * YOLO object detection on ONNX Runtime, in place. Takes plain Ultralytics-style ONNX
 * exports (YOLOv5, YOLOv8/v9/v11/v12, end-to-end YOLOv10/YOLO26; the layout is read from the
 * output shape, labels and input size from the model's metadata) and raw video in the
 * usual formats at any size: the letterbox, colour conversion and normalisation happen in
 * one vectorised pass (AVX2/AVX-512 when the CPU has them), so no
 * `videoconvert ! videoscale` is needed before it.
 *
 * On a fixed camera, `motion-threshold` skips inference while nothing moves (a cheap
 * frame difference on the model input); skipped frames carry the last result with
 * `inferred=false`, and `stats` counts them as `skipped-still`.
 *
 * What it keeps between frames, it keeps per stream: behind `kafkadecodebin` the frames of
 * many cameras interleave, and each stream (the record meta's `stream`; buffers without one
 * are one stream) has its own `interval`, `max-rate`, motion reference and carried-over
 * result, so no frame ever carries another camera's boxes. The choice of frames is
 * deterministic: `interval` takes the frames whose record `seq` is a multiple of it, and
 * `max-rate` the first frame of each 1/rate-second period of the frame's capture time (else
 * PTS), so a worker that re-reads a stream after another died infers the same frames. A
 * stream unseen for `idle-timeout` is forgotten, and at most 1024 are kept.
 *
 * Each detection becomes a `GstVideoRegionOfInterestMeta` (roi type = label) in frame
 * pixels, with a `detection` structure (`class-id`, `label`, `confidence`, `inferred`).
 * With `post-messages=true` an element message `yolodetect` per frame lists them.
 *
 * ONNX Runtime is loaded at start from `ort-library`, else `ORT_DYLIB_PATH`, else the
 * system library path; the plugin itself loads without it.
 *
 * ## Example
 * ```sh
 * gst-launch-1.0 videotestsrc pattern=ball num-buffers=100 ! video/x-raw,width=640,height=480 ! \
 *     yolodetect model-location=models/blob-yolov8.onnx draw=true ! videoconvert ! autovideosink
 * # a fixed camera: infer only when at least 0.2% of the picture changed
 * gst-launch-1.0 rtspsrc location=rtsp://camera/stream ! decodebin ! \
 *     yolodetect model-location=yolov8n.onnx motion-threshold=0.002 post-messages=true ! fakesink
 * # many cameras from Kafka: each inferred at most twice a second, each on its own
 * gst-launch-1.0 kafkasrc brokers=127.0.0.1:9092 topic=frames group-id=detectors ! \
 *     kafkadecodebin ! videoconvert ! yolodetect model-location=yolov8n.onnx max-rate=2 ! \
 *     detectionsconvert ! kafkasink brokers=127.0.0.1:9092 topic=detections key-from=record
 * ```
 */
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;

use super::draw::Canvas;
use super::letterbox::{Letterbox, PixelLayout, Planes, Preprocessor, YuvMatrix};
use super::model::{self, Model, Provider, ProviderNote, SessionOptions};
use super::motion::Cells;
use super::postprocess::{self, Detection, Filter};
use super::streams::{MAX_STREAMS, Pace, Streams};
use kafkavision::detections::Rect;
use kafkavision::detections::meta as detections_meta;
use kafkavision::frames_wanted::FramesWanted;
use kafkavision::latency::{ByCamera, Histogram};
use kafkavision::meta::{RecordMeta, capture_time};
use kafkavision::per_run::{COUNTERS, PerRun, counters};

const DEFAULT_CONF_THRESHOLD: f64 = 0.25;
const DEFAULT_IOU_THRESHOLD: f64 = 0.45;
const DEFAULT_CLASS_AGNOSTIC: bool = false;
const DEFAULT_MAX_DETECTIONS: u32 = 300;
const DEFAULT_INTERVAL: u32 = 1;
const DEFAULT_MAX_RATE: f64 = 0.0;
// As kafkadecodebin's: a stream's state goes when its decoder does.
const DEFAULT_IDLE_TIMEOUT_MS: u32 = 30_000;
const DEFAULT_MOTION_THRESHOLD: f64 = 0.0;
const DEFAULT_DRAW: bool = false;
const DEFAULT_POST_MESSAGES: bool = false;
const DEFAULT_THREADS: u32 = 0;
const DEFAULT_SPINNING: bool = false;
// auto: OpenVINO where its plugin offers the CPU (1.2-2.7x the CPU provider's speed on
// the Intel Xeons measured), else the CPU provider at its own speed (AMD): one pipeline
// line runs at its best on every machine.
const DEFAULT_PROVIDER: ExecutionProvider = ExecutionProvider::Auto;

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstYoloDetectExecutionProvider")]
pub enum ExecutionProvider {
    #[enum_value(name = "CPU", nick = "cpu")]
    Cpu = 0,
    #[enum_value(name = "CUDA", nick = "cuda")]
    Cuda = 1,
    #[enum_value(name = "TensorRT", nick = "tensorrt")]
    TensorRt = 2,
    #[enum_value(
        name = "OpenVINO (the onnxruntime-ep-openvino plugin; see openvino-device)",
        nick = "openvino"
    )]
    OpenVino = 3,
    #[enum_value(
        name = "The fastest this machine offers: OpenVINO on the CPU where its plugin offers \
                this CPU (Intel), else the CPU",
        nick = "auto"
    )]
    Auto = 4,
}

const DEFAULT_OPENVINO_DEVICE: OpenVinoDevice = OpenVinoDevice::Cpu;

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstYoloDetectOpenVinoDevice")]
pub enum OpenVinoDevice {
    #[enum_value(name = "CPU", nick = "cpu")]
    Cpu = 0,
    #[enum_value(name = "Intel GPU", nick = "gpu")]
    Gpu = 1,
    #[enum_value(name = "Intel NPU", nick = "npu")]
    Npu = 2,
}

// f32: the CPU provider's results. OpenVINO's own default on a CPU with bf16 support is
// bf16, which moved boxes of the YOLOv8n-sized model and ran slower on this project's CPU.
const DEFAULT_OPENVINO_PRECISION: OpenVinoPrecision = OpenVinoPrecision::F32;

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstYoloDetectOpenVinoPrecision")]
pub enum OpenVinoPrecision {
    #[enum_value(
        name = "The device's default (bf16 on CPUs with AMX or AVX512-BF16)",
        nick = "auto"
    )]
    Auto = 0,
    #[enum_value(name = "32-bit float", nick = "f32")]
    F32 = 1,
    #[enum_value(name = "bfloat16", nick = "bf16")]
    Bf16 = 2,
    #[enum_value(name = "16-bit float", nick = "f16")]
    F16 = 3,
}

const DEFAULT_FALLBACK_TO_CPU: bool = false;

#[derive(Debug, Clone)]
struct Settings {
    model_location: Option<String>,
    labels_file: Option<String>,
    ort_library: Option<String>,
    conf_threshold: f64,
    iou_threshold: f64,
    class_agnostic: bool,
    max_detections: u32,
    classes: Option<String>,
    interval: u32,
    max_rate: f64,
    idle_timeout_ms: u32,
    motion_threshold: f64,
    draw: bool,
    post_messages: bool,
    provider: ExecutionProvider,
    openvino_device: OpenVinoDevice,
    openvino_precision: OpenVinoPrecision,
    openvino_library: Option<String>,
    fallback_to_cpu: bool,
    threads: u32,
    spinning: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            model_location: None,
            labels_file: None,
            ort_library: None,
            conf_threshold: DEFAULT_CONF_THRESHOLD,
            iou_threshold: DEFAULT_IOU_THRESHOLD,
            class_agnostic: DEFAULT_CLASS_AGNOSTIC,
            max_detections: DEFAULT_MAX_DETECTIONS,
            classes: None,
            interval: DEFAULT_INTERVAL,
            max_rate: DEFAULT_MAX_RATE,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            motion_threshold: DEFAULT_MOTION_THRESHOLD,
            draw: DEFAULT_DRAW,
            post_messages: DEFAULT_POST_MESSAGES,
            provider: DEFAULT_PROVIDER,
            openvino_device: DEFAULT_OPENVINO_DEVICE,
            openvino_precision: DEFAULT_OPENVINO_PRECISION,
            openvino_library: None,
            fallback_to_cpu: DEFAULT_FALLBACK_TO_CPU,
            threads: DEFAULT_THREADS,
            spinning: DEFAULT_SPINNING,
        }
    }
}

impl Settings {
    /// What each frame needs, copied without allocating.
    fn per_frame(&self) -> FrameSettings {
        FrameSettings {
            conf_threshold: self.conf_threshold as f32,
            iou_threshold: self.iou_threshold as f32,
            class_agnostic: self.class_agnostic,
            max_detections: self.max_detections as usize,
            pace: Pace::new(self.interval, self.max_rate),
            idle: (self.idle_timeout_ms > 0)
                .then(|| Duration::from_millis(self.idle_timeout_ms as u64)),
            motion_threshold: self.motion_threshold,
            draw: self.draw,
            post_messages: self.post_messages,
        }
    }
}

/// The settings that may change while playing.
#[derive(Clone, Copy, Debug)]
struct FrameSettings {
    conf_threshold: f32,
    iou_threshold: f32,
    class_agnostic: bool,
    max_detections: usize,
    pace: Pace,
    /// Streams unseen for longer are forgotten; `None`: kept until stop.
    idle: Option<Duration>,
    motion_threshold: f64,
    draw: bool,
    post_messages: bool,
}

/// Counters for `stats`; times in microseconds, summed.
#[derive(Default)]
struct Stats {
    /// Frames that reached the element; those neither inferred nor skipped were dropped by
    /// QoS (BaseTransform's, which posts the QoS message and marks the next frame DISCONT).
    frames_in: AtomicU64,
    inferred: AtomicU64,
    skipped: AtomicU64,
    /// Pre-processed, but not inferred: nothing moved (`motion-threshold`).
    still: AtomicU64,
    pre_us: AtomicU64,
    infer_us: AtomicU64,
    post_us: AtomicU64,
    /// Streams kept at the last frame, and those forgotten (idle, or beyond the bound).
    streams: AtomicU64,
    streams_retired: AtomicU64,
    /// The execution provider that runs the model (its nick), once started.
    provider: Mutex<&'static str>,
    /// Per camera (record key): capture to detections, for inferred frames that carry a
    /// capture time.
    latency: Mutex<ByCamera<Histogram>>,
}

struct State {
    model: Model,
    /// Per class: kept by the `classes` allow-list.
    allowed: Option<Vec<bool>>,
    preprocessor: Option<Preprocessor>,
    info: Option<gst_video::VideoInfo>,
    input: Vec<f32>,
    /// Interval, rate, motion reference and carried-over detections, per stream.
    streams: Streams,
    /// The motion cells of the frame at hand, whichever its stream.
    cells: Cells,
}

pub struct YoloDetect {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    stats: PerRun<Stats>,
}

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "yolodetect",
        gst::DebugColorFlags::empty(),
        Some("YOLO detection on ONNX Runtime"),
    )
});

impl Default for YoloDetect {
    fn default() -> Self {
        YoloDetect {
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(None),
            stats: PerRun::default(),
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for YoloDetect {
    const NAME: &'static str = "GstYoloDetect";
    type Type = super::YoloDetect;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for YoloDetect {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("model-location")
                    .nick("Model")
                    .blurb("Path of a YOLO ONNX export, e.g. yolov8n.onnx. Required.")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("labels-file")
                    .nick("Labels file")
                    .blurb(
                        "Text file with one label per line, e.g. labels.txt; used when the \
                         model's metadata has no names.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("ort-library")
                    .nick("ONNX Runtime library")
                    .blurb(
                        "Path of libonnxruntime.so, e.g. the one the onnxruntime Python wheel \
                         ships: <site-packages>/onnxruntime/capi/libonnxruntime.so.1.31.1. \
                         Unset: ORT_DYLIB_PATH, then the system library path.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("conf-threshold")
                    .nick("Confidence threshold")
                    .blurb("Keep detections scoring above this, e.g. 0.25.")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_CONF_THRESHOLD)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("iou-threshold")
                    .nick("IoU threshold")
                    .blurb("Non-maximum suppression drops boxes overlapping a better one by more than this, e.g. 0.45.")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_IOU_THRESHOLD)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("class-agnostic")
                    .nick("Class-agnostic NMS")
                    .blurb("Suppress overlapping boxes whatever their class (default: per class).")
                    .default_value(DEFAULT_CLASS_AGNOSTIC)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("max-detections")
                    .nick("Maximum detections")
                    .blurb("At most this many detections per frame, best first, e.g. 300.")
                    .minimum(1)
                    .default_value(DEFAULT_MAX_DETECTIONS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("classes")
                    .nick("Classes")
                    .blurb(
                        "Only these classes, by label or id, comma-separated, e.g. \
                         person,car,7. Unset: all.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("interval")
                    .nick("Interval")
                    .blurb(
                        "Infer every Nth frame of each stream, e.g. 3: the frames whose record \
                         seq is a multiple of N (the same frames on every worker), else every \
                         Nth frame the stream brings; the frames between carry that stream's \
                         last result, marked inferred=false. With max-rate, a frame must \
                         satisfy both.",
                    )
                    .minimum(1)
                    .default_value(DEFAULT_INTERVAL)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("max-rate")
                    .nick("Maximum rate")
                    .blurb(
                        "Infer each stream at most this many times a second, e.g. 2.5: a frame \
                         is inferred only when its time (capture time, else PTS) falls in \
                         another 1/N-second period than the stream's last inferred frame's. \
                         0 = no limit. With interval, a frame must satisfy both; frames \
                         between carry the last result, marked inferred=false.",
                    )
                    .minimum(0.0)
                    .maximum(1000.0)
                    .default_value(DEFAULT_MAX_RATE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("idle-timeout")
                    .nick("Idle timeout")
                    .blurb(
                        "Milliseconds without a frame after which a stream's state (its last \
                         result, motion reference, interval and rate) is forgotten, e.g. 30000 \
                         (its partition went to another worker, or the camera stopped). 0: \
                         kept until the element stops. At most 1024 streams are kept; beyond, \
                         the least recently seen one is forgotten.",
                    )
                    .default_value(DEFAULT_IDLE_TIMEOUT_MS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("motion-threshold")
                    .nick("Motion threshold")
                    .blurb(
                        "Skip inference on frames where less than this fraction of the picture \
                         changed since the stream's last inferred frame (4x4-pixel cells of the \
                         model input whose brightness moved by more than 4%), e.g. 0.002 for a \
                         fixed camera; those frames carry the stream's last result, marked \
                         inferred=false. 0 infers every frame.",
                    )
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_MOTION_THRESHOLD)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("draw")
                    .nick("Draw")
                    .blurb("Draw boxes and labels onto the frames, for viewers.")
                    .default_value(DEFAULT_DRAW)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("post-messages")
                    .nick("Post messages")
                    .blurb("Post an element message 'yolodetect' per frame listing its detections.")
                    .default_value(DEFAULT_POST_MESSAGES)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("execution-provider", DEFAULT_PROVIDER)
                    .nick("Execution provider")
                    .blurb(
                        "Where ONNX Runtime runs the model: auto, cpu, cuda, tensorrt or \
                         openvino. auto takes OpenVINO where its plugin offers this CPU \
                         (Intel CPUs), else the CPU provider; stats' execution-provider says \
                         which. Any other that cannot be used is an error unless \
                         fallback-to-cpu=true.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default(
                    "openvino-device",
                    DEFAULT_OPENVINO_DEVICE,
                )
                .nick("OpenVINO device")
                .blurb("With execution-provider=openvino: cpu, gpu or npu.")
                .mutable_ready()
                .build(),
                glib::ParamSpecEnum::builder_with_default(
                    "openvino-precision",
                    DEFAULT_OPENVINO_PRECISION,
                )
                .nick("OpenVINO precision")
                .blurb(
                    "With execution-provider=openvino (or auto, when it takes OpenVINO): the \
                     inference precision hint, auto \
                     (the device's default), f32, bf16 or f16.",
                )
                .mutable_ready()
                .build(),
                glib::ParamSpecString::builder("openvino-library")
                    .nick("OpenVINO plugin library")
                    .blurb(
                        "Path of libonnxruntime_providers_openvino_plugin.so (pip package \
                         onnxruntime-ep-openvino). Unset: ORT_OPENVINO_EP_PATH, else the \
                         package installed beside the onnxruntime that ort-library loads.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("fallback-to-cpu")
                    .nick("Fall back to the CPU")
                    .blurb(
                        "When execution-provider cannot be used, run on the CPU with a warning \
                         instead of failing.",
                    )
                    .default_value(DEFAULT_FALLBACK_TO_CPU)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("threads")
                    .nick("Threads")
                    .blurb("ONNX Runtime intra-op threads, e.g. 2; 0 = one per core.")
                    .default_value(DEFAULT_THREADS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("spinning")
                    .nick("Spinning")
                    .blurb(
                        "Let ONNX Runtime's threads spin while idle: lower latency, but they \
                         starve decoders on small machines. Off by default.",
                    )
                    .default_value(DEFAULT_SPINNING)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "Frames in, inferred, skipped by interval or max-rate, skipped as still \
                         (motion-threshold), dropped by QoS, mean pre/infer/post \
                         milliseconds, the execution provider that runs the model, streams \
                         kept and streams forgotten (idle-timeout).",
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
            "model-location" => settings.model_location = value.get().unwrap(),
            "labels-file" => settings.labels_file = value.get().unwrap(),
            "ort-library" => settings.ort_library = value.get().unwrap(),
            "conf-threshold" => settings.conf_threshold = value.get().unwrap(),
            "iou-threshold" => settings.iou_threshold = value.get().unwrap(),
            "class-agnostic" => settings.class_agnostic = value.get().unwrap(),
            "max-detections" => settings.max_detections = value.get().unwrap(),
            "classes" => settings.classes = value.get().unwrap(),
            "interval" => settings.interval = value.get().unwrap(),
            "max-rate" => settings.max_rate = value.get().unwrap(),
            "idle-timeout" => settings.idle_timeout_ms = value.get().unwrap(),
            "motion-threshold" => settings.motion_threshold = value.get().unwrap(),
            "draw" => settings.draw = value.get().unwrap(),
            "post-messages" => settings.post_messages = value.get().unwrap(),
            "execution-provider" => settings.provider = value.get().unwrap(),
            "openvino-device" => settings.openvino_device = value.get().unwrap(),
            "openvino-precision" => settings.openvino_precision = value.get().unwrap(),
            "openvino-library" => settings.openvino_library = value.get().unwrap(),
            "fallback-to-cpu" => settings.fallback_to_cpu = value.get().unwrap(),
            "threads" => settings.threads = value.get().unwrap(),
            "spinning" => settings.spinning = value.get().unwrap(),
            _ => unreachable!(),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        match pspec.name() {
            "model-location" => settings.model_location.to_value(),
            "labels-file" => settings.labels_file.to_value(),
            "ort-library" => settings.ort_library.to_value(),
            "conf-threshold" => settings.conf_threshold.to_value(),
            "iou-threshold" => settings.iou_threshold.to_value(),
            "class-agnostic" => settings.class_agnostic.to_value(),
            "max-detections" => settings.max_detections.to_value(),
            "classes" => settings.classes.to_value(),
            "interval" => settings.interval.to_value(),
            "max-rate" => settings.max_rate.to_value(),
            "idle-timeout" => settings.idle_timeout_ms.to_value(),
            "motion-threshold" => settings.motion_threshold.to_value(),
            "draw" => settings.draw.to_value(),
            "post-messages" => settings.post_messages.to_value(),
            "execution-provider" => settings.provider.to_value(),
            "openvino-device" => settings.openvino_device.to_value(),
            "openvino-precision" => settings.openvino_precision.to_value(),
            "openvino-library" => settings.openvino_library.to_value(),
            "fallback-to-cpu" => settings.fallback_to_cpu.to_value(),
            "threads" => settings.threads.to_value(),
            "spinning" => settings.spinning.to_value(),
            "stats" => self.stats().to_value(),
            _ => unreachable!(),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        // Frames already late downstream are dropped before inference: BaseTransform's
        // QoS, which posts QoS messages and marks the next frame DISCONT.
        self.obj().set_qos(true);
    }
}

impl GstObjectImpl for YoloDetect {}

impl ElementImpl for YoloDetect {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "YOLO Detector",
                "Filter/Analyzer/Video",
                "Detects objects with a YOLO ONNX model and attaches them as region-of-interest metadata",
                "gst-kafka-vision developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            use gst_video::VideoFormat as F;
            let caps = gst_video::VideoCapsBuilder::new()
                .format_list([
                    F::Rgb,
                    F::Bgr,
                    F::Rgbx,
                    F::Bgrx,
                    F::Xrgb,
                    F::Xbgr,
                    F::Rgba,
                    F::Bgra,
                    F::Argb,
                    F::Abgr,
                    F::I420,
                    F::Nv12,
                ])
                .build();
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl YoloDetect {
    fn stats(&self) -> gst::Structure {
        let s = self.stats.current();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let inferred = load(&s.inferred);
        let still = load(&s.still);
        let dropped = load(&s.frames_in).saturating_sub(inferred + still + load(&s.skipped));
        let mean_ms = |c: &AtomicU64, frames: u64| {
            if frames == 0 {
                0.0
            } else {
                load(c) as f64 / frames as f64 / 1000.0
            }
        };
        gst::Structure::builder("yolodetect-stats")
            .field("frames-in", load(&s.frames_in))
            .field("inferred", inferred)
            .field("skipped", load(&s.skipped))
            .field("skipped-still", still)
            .field("dropped", dropped)
            .field("pre-ms", mean_ms(&s.pre_us, inferred + still))
            .field("infer-ms", mean_ms(&s.infer_us, inferred))
            .field("post-ms", mean_ms(&s.post_us, inferred))
            .field("execution-provider", *s.provider.lock().unwrap())
            .field("streams", load(&s.streams))
            .field("streams-retired", load(&s.streams_retired))
            .field("cameras", s.latency.lock().unwrap().to_stats("latency-ms"))
            .field(
                COUNTERS,
                counters(&[
                    "frames-in",
                    "inferred",
                    "skipped",
                    "skipped-still",
                    "dropped",
                    "streams-retired",
                ]),
            )
            .build()
    }

    /// The allow-list from `classes`: labels or ids, checked against the model's classes.
    fn allowed_classes(text: Option<&str>, model: &Model) -> Result<Option<Vec<bool>>, String> {
        let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
            return Ok(None);
        };
        let count = model
            .layout
            .classes()
            .unwrap_or_else(|| model.labels.len().max(1));
        let mut allowed = vec![false; count.max(model.labels.len())];
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let index = item
                .parse::<usize>()
                .ok()
                .or_else(|| model.labels.iter().position(|l| l == item))
                .filter(|i| *i < allowed.len())
                .ok_or_else(|| {
                    format!("classes: '{item}' is neither a label of this model nor a class id below {}", allowed.len())
                })?;
            allowed[index] = true;
        }
        Ok(Some(allowed))
    }

    /// Attaches the detections as region-of-interest metas (the detections schema's
    /// mapping) and returns them as structures for the element message.
    fn attach(
        buffer: &mut gst::BufferRef,
        detections: &[Detection],
        model: &Model,
        inferred: bool,
        frame: (u32, u32),
        messages: bool,
    ) -> Vec<gst::Structure> {
        let mut structures = Vec::with_capacity(if messages { detections.len() } else { 0 });
        for d in detections {
            let label = model.label(d.class_id);
            let bbox = Rect {
                x: d.x1 as f64,
                y: d.y1 as f64,
                width: (d.x2 - d.x1) as f64,
                height: (d.y2 - d.y1) as f64,
            };
            if messages {
                structures.push(
                    gst::Structure::builder("detection")
                        .field("class-id", d.class_id as u32)
                        .field("label", label.as_str())
                        .field("confidence", d.score as f64)
                        .field("x", bbox.x)
                        .field("y", bbox.y)
                        .field("width", bbox.width)
                        .field("height", bbox.height)
                        .build(),
                );
            }
            let detection = kafkavision::detections::Detection::new(
                &label,
                d.class_id as u32,
                d.score as f64,
                inferred,
                bbox,
                frame.0,
                frame.1,
            );
            detections_meta::attach(buffer, &detection);
        }
        structures
    }
}

fn planes_of<'a>(
    frame: &'a gst_video::VideoFrameRef<&'a gst::BufferRef>,
) -> Result<Planes<'a>, glib::BoolError> {
    let mut data: [&[u8]; 3] = [&[], &[], &[]];
    let mut strides = [0usize; 3];
    for plane in 0..frame.n_planes() as usize {
        data[plane] = frame.plane_data(plane as u32)?;
        strides[plane] = frame.plane_stride()[plane] as usize;
    }
    Ok(Planes { data, strides })
}

impl BaseTransformImpl for YoloDetect {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        // A decoder upstream asks how often frames are used, to decode no more than that.
        if direction == gst::PadDirection::Sink {
            let settings = self.settings.lock().unwrap();
            let wanted = FramesWanted {
                max_rate: settings.max_rate,
                interval: settings.interval.max(1),
            };
            drop(settings);
            if wanted.answer(query) {
                return true;
            }
        }
        BaseTransformImplExt::parent_query(self, direction, query)
    }

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let stats = self.stats.restart();
        let settings = self.settings.lock().unwrap().clone();
        let Some(location) = settings.model_location.clone().filter(|l| !l.is_empty()) else {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ("No model set; set model-location to a YOLO ONNX export, e.g. model-location=yolov8n.onnx")
            ));
        };
        let precision = match settings.openvino_precision {
            OpenVinoPrecision::Auto => model::Precision::Auto,
            OpenVinoPrecision::F32 => model::Precision::F32,
            OpenVinoPrecision::Bf16 => model::Precision::Bf16,
            OpenVinoPrecision::F16 => model::Precision::F16,
        };
        let provider = match settings.provider {
            ExecutionProvider::Auto => Provider::Auto { precision },
            ExecutionProvider::Cpu => Provider::Cpu,
            ExecutionProvider::Cuda => Provider::Cuda,
            ExecutionProvider::TensorRt => Provider::TensorRt,
            ExecutionProvider::OpenVino => Provider::OpenVino {
                device: match settings.openvino_device {
                    OpenVinoDevice::Cpu => model::OpenVinoDevice::Cpu,
                    OpenVinoDevice::Gpu => model::OpenVinoDevice::Gpu,
                    OpenVinoDevice::Npu => model::OpenVinoDevice::Npu,
                },
                precision,
            },
        };
        let labels = model::labels_path(settings.labels_file.as_deref());
        let model = Model::load(
            &PathBuf::from(&location),
            labels.as_deref(),
            &SessionOptions {
                provider,
                threads: settings.threads as usize,
                spinning: settings.spinning,
                library: settings.ort_library.as_deref(),
                openvino_library: settings.openvino_library.as_deref(),
                fallback_to_cpu: settings.fallback_to_cpu,
                profile: None,
            },
        )
        .map_err(|err| gst::error_msg!(gst::ResourceError::OpenRead, ("{err}")))?;
        match &model.provider_note {
            Some(ProviderNote::Fallback(warning)) => {
                gst::warning!(CAT, imp = self, "{warning}");
                gst::element_imp_warning!(self, gst::ResourceError::Settings, ("{warning}"));
            }
            // A user who named the OpenVINO plugin expects it to run.
            Some(ProviderNote::Chosen(why))
                if settings.openvino_library.is_some() && model.provider == Provider::Cpu =>
            {
                gst::warning!(CAT, imp = self, "execution-provider=auto runs on {why}");
            }
            Some(ProviderNote::Chosen(why)) => {
                gst::info!(CAT, imp = self, "execution-provider=auto runs on {why}");
            }
            None => {}
        }
        *stats.provider.lock().unwrap() = model.provider.nick();
        let allowed = Self::allowed_classes(settings.classes.as_deref(), &model)
            .map_err(|err| gst::error_msg!(gst::ResourceError::Settings, ("{err}")))?;
        gst::info!(
            CAT,
            imp = self,
            "Loaded {location} on {}: input {}x{}, layout {}, {} labels",
            model.provider.nick(),
            model.input_width,
            model.input_height,
            model.layout,
            model.labels.len()
        );
        let input = vec![0.0; 3 * model.input_width * model.input_height];
        *self.state.lock().unwrap() = Some(State {
            model,
            allowed,
            preprocessor: None,
            info: None,
            input,
            streams: Streams::default(),
            cells: Cells::default(),
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        gst::info!(CAT, imp = self, "Stopped: {:?}", self.stats());
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "Unsupported caps {incaps}"))?;
        let layout = PixelLayout::of(info.format())
            .ok_or_else(|| gst::loggable_error!(CAT, "Unsupported format {}", info.format()))?;
        let mut state = self.state.lock().unwrap();
        let state = state
            .as_mut()
            .ok_or_else(|| gst::loggable_error!(CAT, "Caps before start"))?;
        let colorimetry = info.colorimetry();
        let matrix = YuvMatrix::new(
            colorimetry.matrix() == gst_video::VideoColorMatrix::Bt709,
            colorimetry.range() == gst_video::VideoColorRange::Range0_255,
        );
        let letterbox = Letterbox::new(
            info.width() as usize,
            info.height() as usize,
            state.model.input_width,
            state.model.input_height,
        );
        gst::debug!(CAT, imp = self, "Caps {incaps}: {letterbox:?}");
        let preprocessor = Preprocessor::new(letterbox, layout, matrix);
        preprocessor.pad(&mut state.input);
        // Each stream's motion reference is reset by its first frame under caps other than
        // its reference's (transform_ip): behind kafkadecodebin the caps change at every
        // switch between cameras of different sizes, and resetting every stream here would
        // leave none gated.
        state.preprocessor = Some(preprocessor);
        state.info = Some(info);
        Ok(())
    }

    fn submit_input_buffer(
        &self,
        is_discont: bool,
        inbuf: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.stats
            .current()
            .frames_in
            .fetch_add(1, Ordering::Relaxed);
        self.parent_submit_input_buffer(is_discont, inbuf)
    }

    fn transform_ip(
        &self,
        buffer: &mut gst::BufferRef,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = self.settings.lock().unwrap().per_frame();
        let stats = self.stats.current();
        let record = RecordMeta::of(buffer);
        let time_ns = capture_time(buffer).or_else(|| buffer.pts().map(gst::ClockTime::nseconds));
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::NotNegotiated)?;
        let (Some(pre), Some(info)) = (state.preprocessor.as_ref(), state.info.as_ref()) else {
            return Err(gst::FlowError::NotNegotiated);
        };
        let retired_before = state.streams.retired();
        // Frames without a record meta are one stream.
        let name = record.as_ref().map_or("", |r| r.stream.as_str());
        let stream = state.streams.get(name, Instant::now(), settings.idle);
        if stream.info.as_ref() != Some(info) {
            // Another geometry or colour conversion: the reference cells no longer compare.
            stream.motion.reset();
            // Boxes in the old frame size's pixels would be misplaced on this one.
            if stream
                .info
                .as_ref()
                .is_some_and(|old| (old.width(), old.height()) != (info.width(), info.height()))
            {
                stream.last.clear();
            }
            stream.info = Some(info.clone());
        }
        let due = stream.due(record.as_ref().map(|r| r.seq), time_ns, settings.pace);
        let mut inferred = false;
        let us = |a: Instant, b: Instant| (b - a).as_micros() as u64;

        if due {
            let started = Instant::now();
            {
                let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(&*buffer, info)
                    .map_err(|_| {
                        gst::element_imp_error!(
                            self,
                            gst::CoreError::Failed,
                            ("Could not map the frame")
                        );
                        gst::FlowError::Error
                    })?;
                let planes = planes_of(&frame).map_err(|_| gst::FlowError::Error)?;
                pre.fill_picture(&planes, &mut state.input);
            }
            let pre_done = Instant::now();
            stats
                .pre_us
                .fetch_add(us(started, pre_done), Ordering::Relaxed);
            inferred = settings.motion_threshold <= 0.0
                || stream
                    .motion
                    .changed_fraction(&mut state.cells, &state.input, &pre.letterbox)
                    >= settings.motion_threshold;
        }
        if inferred {
            let pre_done = Instant::now();
            let filter = Filter {
                conf_threshold: settings.conf_threshold,
                iou_threshold: settings.iou_threshold,
                class_agnostic: settings.class_agnostic,
                max_detections: settings.max_detections,
                allowed: state.allowed.as_deref(),
            };
            let layout = state.model.layout;
            let mut infer_done = pre_done;
            let found = state
                .model
                .run(&state.input, |shape, output| {
                    infer_done = Instant::now();
                    postprocess::decode(layout, output, shape, &filter)
                })
                .map_err(|err| {
                    gst::element_imp_error!(self, gst::StreamError::Failed, ("{err}"));
                    gst::FlowError::Error
                })?;
            let letterbox = pre.letterbox;
            stream.last.clear();
            stream.last.extend(
                found
                    .iter()
                    .map(|d| letterbox.to_frame(d))
                    .filter(|d| d.x2 > d.x1 && d.y2 > d.y1),
            );
            if settings.motion_threshold > 0.0 {
                stream.motion.accept(&mut state.cells);
            }
            stream.inferred(time_ns);
            let done = Instant::now();
            stats.inferred.fetch_add(1, Ordering::Relaxed);
            if let Some(captured_ns) = capture_time(buffer) {
                let camera = record.as_ref().and_then(|r| r.key.as_deref()).unwrap_or("");
                let age_ms = kafkavision::clock::unix_time_ms() - (captured_ns / 1_000_000) as i64;
                let mut latency = stats.latency.lock().unwrap();
                latency.heard(camera).observe(age_ms as f64);
            }
            stats
                .infer_us
                .fetch_add(us(pre_done, infer_done), Ordering::Relaxed);
            stats
                .post_us
                .fetch_add(us(infer_done, done), Ordering::Relaxed);
        } else if due {
            stats.still.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.skipped.fetch_add(1, Ordering::Relaxed);
        }

        let frame_size = (info.width(), info.height());
        let structures = Self::attach(
            buffer,
            &stream.last,
            &state.model,
            inferred,
            frame_size,
            settings.post_messages,
        );
        if settings.draw && !stream.last.is_empty() {
            let layout = PixelLayout::of(info.format()).unwrap();
            let mut frame = gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, info)
                .map_err(|_| {
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Failed,
                        ("Could not map the frame for drawing")
                    );
                    gst::FlowError::Error
                })?;
            let strides: Vec<usize> = frame.plane_stride().iter().map(|s| *s as usize).collect();
            let n_planes = frame.n_planes() as usize;
            let mut planes: Vec<&mut [u8]> = Vec::with_capacity(3);
            // Split the frame's planes into independent mutable slices.
            let all = frame.planes_data_mut();
            for plane in all.into_iter().take(n_planes) {
                planes.push(plane);
            }
            while planes.len() < 3 {
                planes.push(&mut []);
            }
            let [p0, p1, p2]: [&mut [u8]; 3] =
                planes.try_into().map_err(|_| gst::FlowError::Error)?;
            let mut canvas = Canvas {
                layout,
                width: info.width() as usize,
                height: info.height() as usize,
                planes: [p0, p1, p2],
                strides: [
                    strides[0],
                    *strides.get(1).unwrap_or(&0),
                    *strides.get(2).unwrap_or(&0),
                ],
            };
            for d in &stream.last {
                canvas.draw(d, &state.model.label(d.class_id));
            }
        }
        let retired = state.streams.retired();
        if retired > retired_before {
            gst::debug!(
                CAT,
                imp = self,
                "Forgot {} stream(s) unseen for longer than idle-timeout or beyond {MAX_STREAMS}",
                retired - retired_before
            );
        }
        stats
            .streams
            .store(state.streams.len() as u64, Ordering::Relaxed);
        stats.streams_retired.store(retired, Ordering::Relaxed);
        drop(guard);

        if settings.post_messages {
            let s = gst::Structure::builder("yolodetect")
                .field("pts", buffer.pts())
                .field("frame-width", frame_size.0)
                .field("frame-height", frame_size.1)
                .field("inferred", inferred)
                .field(
                    "detections",
                    gst::Array::new(structures.iter().map(|s| s.to_send_value())),
                )
                .build();
            let _ = self
                .obj()
                .post_message(gst::message::Element::builder(s).src(&*self.obj()).build());
        }
        Ok(gst::FlowSuccess::Ok)
    }
}
