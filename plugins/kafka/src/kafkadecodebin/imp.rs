// SPDX-License-Identifier: MIT OR Apache-2.0
/**
 * element-kafkadecodebin:
 *
 * Decodes a topic that interleaves the streams of many cameras, each with a decoder of its
 * own. Interleaved H.264 streams must never share a decoder (each frame refers to earlier
 * frames of its own camera); this bin tells the streams apart by the record meta
 * `kafkasrc` attaches (its `stream`), hangs a `decodebin` on each, and merges the raw
 * frames into one output. Every frame keeps its record meta, so downstream knows its
 * camera (`key`): `kafkasink key-from=record` writes each camera's results under its key.
 *
 * A stream's first buffers are skipped until its first keyframe. A stream is retired
 * (its decoder drained and removed) when a new stream of the same key appears (the camera's
 * publisher restarted) or after `idle-timeout` without a frame (its partition moved to
 * another worker). Frames of different cameras may differ in size: the output renegotiates
 * caps whenever it switches to a camera with other caps.
 *
 * Each stream decodes in a thread of its own, behind a short queue, and a queue after the
 * merge hands frames downstream from another thread: a worker decodes on every core while
 * its detector runs (`parallel=false`: every stream in the source's thread). `decode`
 * keeps frames downstream does not need from the
 * decoders (H.264 non-reference frames, or all but keyframes, or `auto`: keyframes only
 * while they serve the rate the stage downstream asks for); their records are released
 * and committed like the rest, and counted in `stats`.
 *
 * ## Example
 * Three cameras' H.264 in one topic, detected by one worker:
 * ```sh
 * gst-launch-1.0 kafkasrc brokers=127.0.0.1:9092 topic=h264 group-id=detectors ! \
 *     kafkadecodebin ! videoconvert ! yolodetect model-location=yolov8n.onnx ! \
 *     detectionsconvert ! kafkasink brokers=127.0.0.1:9092 topic=detections key-from=record
 * ```
 * Detecting each camera once a second, decoding only keyframes when they come that often:
 * ```sh
 * gst-launch-1.0 kafkasrc brokers=127.0.0.1:9092 topic=h264 group-id=detectors ! \
 *     kafkadecodebin decode=auto ! yolodetect model-location=yolov8n.onnx max-rate=1 ! \
 *     detectionsconvert ! kafkasink brokers=127.0.0.1:9092 topic=detections key-from=record
 * ```
 */
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use kafkavision::per_run::{COUNTERS, counters};

use super::DecodePolicy;
use super::router::Router;

const DEFAULT_IDLE_TIMEOUT_MS: u32 = 30_000;
const DEFAULT_PARALLEL: bool = true;
/// Encoded frames waiting for a stream's decoder thread: about half a second of a
/// 15 frames/s camera, a few hundred KB of H.264.
const STREAM_QUEUE_FRAMES: u32 = 8;
/// Decoded frames waiting for the stage downstream: decoders go on while it infers,
/// holding a few frames (1.4 MB each at 720p I420) at most.
const OUTPUT_QUEUE_FRAMES: u32 = 4;

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "kafkadecodebin",
        gst::DebugColorFlags::empty(),
        Some("One decoder per Kafka stream"),
    )
});

/// The elements of one stream's branch.
struct Branch {
    /// The stream's own thread in front of its decoder (`parallel`).
    queue: Option<gst::Element>,
    decoder: gst::Element,
    /// The funnel's pad the decoder's output is linked to once it makes one.
    funnel_pad: gst::Pad,
    /// The decoder let the end-of-stream of a retirement out.
    drained: Arc<AtomicBool>,
}

struct Inner {
    router: Router,
    funnel: gst::Element,
    /// By the router's pad name.
    branches: Mutex<HashMap<String, Branch>>,
    /// Branches whose stream was retired, by the router's pad name, kept until their
    /// decoder's end-of-stream comes out (every queued frame decoded), then torn down.
    retiring: Mutex<HashMap<String, Branch>>,
    /// Between the funnel and the bin's output while `parallel`.
    output_queue: Mutex<Option<gst::Element>>,
    /// EOS came from upstream: from now on the decoders' EOS goes out (the funnel ends the
    /// output once every branch ended). Before, a decoder's EOS only means it was drained
    /// for retirement.
    ending: Arc<AtomicBool>,
}

#[derive(Clone, Copy)]
struct Settings {
    idle_timeout_ms: u32,
    decode: DecodePolicy,
    parallel: bool,
}

pub struct KafkaDecodeBin {
    settings: Mutex<Settings>,
    /// Made in `constructed`.
    inner: OnceLock<Inner>,
}

#[glib::object_subclass]
impl ObjectSubclass for KafkaDecodeBin {
    const NAME: &'static str = "GstKafkaDecodeBin";
    type Type = super::KafkaDecodeBin;
    type ParentType = gst::Bin;

    fn new() -> Self {
        KafkaDecodeBin {
            settings: Mutex::new(Settings {
                idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
                decode: DecodePolicy::default(),
                parallel: DEFAULT_PARALLEL,
            }),
            inner: OnceLock::new(),
        }
    }
}

impl ObjectImpl for KafkaDecodeBin {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecUInt::builder("idle-timeout")
                    .nick("Idle timeout")
                    .blurb(
                        "Milliseconds without a frame after which a stream's decoder is drained \
                         and removed, e.g. 30000 (its partition went to another worker, or the \
                         camera stopped). 0: keep decoders until the pipeline stops.",
                    )
                    .default_value(DEFAULT_IDLE_TIMEOUT_MS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder::<DecodePolicy>("decode")
                    .nick("Decode")
                    .blurb(
                        "Which frames of each stream are decoded: all; reference (skip H.264 \
                         frames no other frame refers to); keyframes; auto (keyframes only \
                         while they come as often as the stage downstream uses frames, e.g. \
                         yolodetect's max-rate or interval, else all). Skipped frames are \
                         committed like decoded ones and counted in stats.",
                    )
                    .default_value(DecodePolicy::default())
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("parallel")
                    .nick("Parallel")
                    .blurb(
                        "Decode each stream in a thread of its own, in parallel with the \
                         other streams and with the stage downstream (true), or every \
                         stream in the source's thread (false). Frames of one stream keep \
                         their order either way.",
                    )
                    .default_value(DEFAULT_PARALLEL)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "Streams decoding now, streams started and retired so far, delta \
                         units skipped while a new stream waited for its first keyframe, \
                         frames the decode policy skipped, and streams decode=auto decodes \
                         keyframes of only.",
                    )
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        match pspec.name() {
            "idle-timeout" => {
                let ms: u32 = value.get().unwrap();
                self.settings.lock().unwrap().idle_timeout_ms = ms;
                self.inner()
                    .router
                    .set_idle_timeout((ms > 0).then(|| Duration::from_millis(ms as u64)));
            }
            "decode" => {
                let policy = value.get().unwrap();
                self.settings.lock().unwrap().decode = policy;
                self.inner().router.set_policy(policy);
            }
            "parallel" => self.settings.lock().unwrap().parallel = value.get().unwrap(),
            _ => unreachable!(),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "idle-timeout" => self.settings.lock().unwrap().idle_timeout_ms.to_value(),
            "decode" => self.settings.lock().unwrap().decode.to_value(),
            "parallel" => self.settings.lock().unwrap().parallel.to_value(),
            "stats" => {
                let run = self.inner().router.imp().counters.current();
                gst::Structure::builder("kafkadecodebin-stats")
                    .field(
                        "streams-active",
                        self.inner().router.active_streams() as u32,
                    )
                    .field("streams-started", run.started.load(Ordering::Relaxed))
                    .field("streams-retired", run.retired.load(Ordering::Relaxed))
                    .field(
                        "delta-units-skipped",
                        run.delta_units_skipped.load(Ordering::Relaxed),
                    )
                    .field("frames-skipped", run.frames_skipped.load(Ordering::Relaxed))
                    .field(
                        "streams-keyframes-only",
                        self.inner().router.keyframes_only_streams() as u32,
                    )
                    .field(
                        COUNTERS,
                        counters(&[
                            "streams-started",
                            "streams-retired",
                            "delta-units-skipped",
                            "frames-skipped",
                        ]),
                    )
                    .build()
                    .to_value()
            }
            _ => unreachable!(),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        let funnel = gst::ElementFactory::make("funnel")
            .name("merge")
            .build()
            .expect("funnel is a core element");
        let router = Router::new(&funnel.static_pad("src").unwrap());
        let inner = self.inner.get_or_init(|| Inner {
            router,
            funnel,
            branches: Mutex::new(HashMap::new()),
            retiring: Mutex::new(HashMap::new()),
            output_queue: Mutex::new(None),
            ending: Arc::new(AtomicBool::new(false)),
        });
        inner
            .router
            .set_idle_timeout(Some(Duration::from_millis(DEFAULT_IDLE_TIMEOUT_MS as u64)));
        obj.add_many([inner.router.upcast_ref::<gst::Element>(), &inner.funnel])
            .unwrap();

        let sink = gst::GhostPad::builder_from_template_with_target(
            &obj.pad_template("sink").unwrap(),
            &inner.router.static_pad("sink").unwrap(),
        )
        .unwrap()
        .build();
        let src = gst::GhostPad::builder_from_template_with_target(
            &obj.pad_template("src").unwrap(),
            &inner.funnel.static_pad("src").unwrap(),
        )
        .unwrap()
        .build();
        obj.add_pad(&sink).unwrap();
        obj.add_pad(&src).unwrap();

        let ending = inner.ending.clone();
        inner.router.static_pad("sink").unwrap().add_probe(
            gst::PadProbeType::EVENT_DOWNSTREAM | gst::PadProbeType::EVENT_FLUSH,
            move |_, info| {
                if let Some(gst::PadProbeData::Event(event)) = &info.data {
                    match event.type_() {
                        gst::EventType::Eos => ending.store(true, Ordering::SeqCst),
                        gst::EventType::FlushStop => ending.store(false, Ordering::SeqCst),
                        _ => {}
                    }
                }
                gst::PadProbeReturn::Ok
            },
        );

        let weak = obj.downgrade();
        inner.router.connect_pad_added(move |_, pad| {
            if let Some(bin) = weak.upgrade() {
                bin.imp().add_branch(pad);
            }
        });
        let weak = obj.downgrade();
        inner.router.connect_pad_removed(move |_, pad| {
            if let Some(bin) = weak.upgrade() {
                bin.imp().remove_branch(pad);
            }
        });
    }
}

impl GstObjectImpl for KafkaDecodeBin {}

impl ElementImpl for KafkaDecodeBin {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Kafka multi-stream decoder",
                "Codec/Decoder/Video/Bin",
                "Decodes each stream of a Kafka topic (told apart by the record meta) with a \
                 decoder of its own, and merges the raw frames",
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

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::ReadyToPaused {
            self.inner().ending.store(false, Ordering::SeqCst);
            self.arrange_output().map_err(|err| {
                gst::element_imp_error!(self, gst::CoreError::StateChange, ("{err}"));
                gst::StateChangeError
            })?;
        }
        let result = self.parent_change_state(transition)?;
        if transition == gst::StateChange::PausedToReady {
            // The router removed its pads; the branches' decoders go with them.
            let mut branches: Vec<Branch> = self
                .inner()
                .branches
                .lock()
                .unwrap()
                .drain()
                .map(|(_, b)| b)
                .collect();
            branches.extend(
                self.inner()
                    .retiring
                    .lock()
                    .unwrap()
                    .drain()
                    .map(|(_, b)| b),
            );
            for branch in branches {
                self.tear_down(branch);
            }
        }
        Ok(result)
    }
}

impl BinImpl for KafkaDecodeBin {}

impl KafkaDecodeBin {
    fn inner(&self) -> &Inner {
        self.inner.get().expect("constructed")
    }

    /// With `parallel`, a queue between the funnel and the bin's output, so that the stage
    /// downstream runs in a thread of its own while the decoders go on; without, none.
    fn arrange_output(&self) -> Result<(), String> {
        let obj = self.obj();
        let parallel = self.settings.lock().unwrap().parallel;
        let inner = self.inner();
        let src = obj
            .static_pad("src")
            .and_downcast::<gst::GhostPad>()
            .ok_or("the bin has no src ghost pad")?;
        let funnel_src = inner.funnel.static_pad("src").unwrap();
        let mut output_queue = inner.output_queue.lock().unwrap();
        match (parallel, output_queue.as_ref()) {
            (true, None) => {
                let queue = gst::ElementFactory::make("queue")
                    .name("output")
                    .property("max-size-buffers", OUTPUT_QUEUE_FRAMES)
                    .property("max-size-bytes", 0u32)
                    .property("max-size-time", 0u64)
                    .build()
                    .map_err(|_| "queue is missing; install GStreamer's core plugins")?;
                obj.add(&queue).map_err(|err| err.to_string())?;
                src.set_target(Some(&queue.static_pad("src").unwrap()))
                    .map_err(|err| err.to_string())?;
                funnel_src
                    .link(&queue.static_pad("sink").unwrap())
                    .map_err(|err| format!("{err:?}"))?;
                queue
                    .sync_state_with_parent()
                    .map_err(|err| err.to_string())?;
                *output_queue = Some(queue);
            }
            (false, Some(queue)) => {
                let _ = queue.set_state(gst::State::Null);
                let _ = obj.remove(queue);
                src.set_target(Some(&funnel_src))
                    .map_err(|err| err.to_string())?;
                *output_queue = None;
            }
            _ => {}
        }
        Ok(())
    }

    /// A new stream: a decoder on the router's new pad (behind a queue of its own with
    /// `parallel`), its output into the funnel.
    fn add_branch(&self, pad: &gst::Pad) {
        let obj = self.obj();
        let Ok(decoder) = gst::ElementFactory::make("decodebin")
            .name(format!("decode-{}", pad.name()))
            .build()
        else {
            gst::element_imp_error!(
                self,
                gst::CoreError::MissingPlugin,
                ("decodebin is missing; install GStreamer's base plugins")
            );
            return;
        };
        let queue = if self.settings.lock().unwrap().parallel {
            let Ok(queue) = gst::ElementFactory::make("queue")
                .name(format!("queue-{}", pad.name()))
                .property("max-size-buffers", STREAM_QUEUE_FRAMES)
                .property("max-size-bytes", 0u32)
                .property("max-size-time", 0u64)
                .build()
            else {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::MissingPlugin,
                    ("queue is missing; install GStreamer's core plugins")
                );
                return;
            };
            Some(queue)
        } else {
            None
        };
        // The funnel's pad is taken now, not when the decoder makes its output: the funnel
        // ends the output once all its pads ended, and a decoder still starting (typefinding,
        // holding its first frames) at the end of a bounded read would otherwise have its
        // frames arrive after that end.
        let Some(funnel_pad) = self.inner().funnel.request_pad_simple("sink_%u") else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Pad,
                (
                    "Could not add an input to the merge for stream pad {}",
                    pad.name()
                )
            );
            return;
        };
        let ending = self.inner().ending.clone();
        let drained = Arc::new(AtomicBool::new(false));
        let weak = obj.downgrade();
        let router_pad = pad.name().to_string();
        let drained_flag = drained.clone();
        let output = funnel_pad.clone();
        decoder.connect_pad_added(move |_, decoded| {
            if output.is_linked() {
                // A Kafka stream carries one elementary stream: decodebin makes one output.
                gst::warning!(
                    CAT,
                    "Stream pad {router_pad}: ignoring a second decoded output {}",
                    decoded.name()
                );
                return;
            }
            // A decoder drained for retirement ends only its branch, not the output; once
            // its end comes out, every frame it was given is decoded and it can go.
            let ending = ending.clone();
            let retired = weak.clone();
            let retired_pad = router_pad.clone();
            let drained = drained_flag.clone();
            decoded.add_probe(
                gst::PadProbeType::EVENT_DOWNSTREAM,
                move |_, info| match &info.data {
                    Some(gst::PadProbeData::Event(event))
                        if event.type_() == gst::EventType::Eos
                            && !ending.load(Ordering::SeqCst) =>
                    {
                        drained.store(true, Ordering::SeqCst);
                        if let Some(bin) = retired.upgrade() {
                            let pad = retired_pad.clone();
                            bin.call_async(move |bin| bin.imp().drained(&pad));
                        }
                        gst::PadProbeReturn::Drop
                    }
                    _ => gst::PadProbeReturn::Ok,
                },
            );
            if let Err(err) = decoded.link(&output) {
                gst::warning!(CAT, "Could not link {}: {err:?}", decoded.name());
            }
        });
        let elements: Vec<&gst::Element> = queue.iter().chain([&decoder]).collect();
        let started = obj.add_many(elements.iter().copied()).is_ok()
            && gst::Element::link_many(elements.iter().copied()).is_ok()
            && elements.iter().all(|e| e.sync_state_with_parent().is_ok());
        if !started {
            gst::element_imp_error!(
                self,
                gst::CoreError::StateChange,
                ("Could not start a decoder for stream pad {}", pad.name())
            );
            self.inner().funnel.release_request_pad(&funnel_pad);
            return;
        }
        if let Err(err) = pad.link(&elements[0].static_pad("sink").unwrap()) {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                (
                    "Could not link a decoder for stream pad {}: {err:?}",
                    pad.name()
                )
            );
            self.inner().funnel.release_request_pad(&funnel_pad);
            return;
        }
        self.inner().branches.lock().unwrap().insert(
            pad.name().to_string(),
            Branch {
                queue,
                decoder,
                funnel_pad,
                drained,
            },
        );
    }

    /// The router retired a stream: its end-of-stream is on the way to the decoder, which
    /// is torn down once that end comes out (`drained`), every frame it holds decoded.
    /// A decoder still starting makes its output at the end-of-stream, so it waits too
    /// (the router gives a decoder its first frame before the bin sees its pad).
    fn remove_branch(&self, pad: &gst::Pad) {
        let branch = self
            .inner()
            .branches
            .lock()
            .unwrap()
            .remove(pad.name().as_str());
        let Some(branch) = branch else { return };
        // Under the lock `drained` takes: either it finds the branch here, or the flag
        // says it already came out.
        let mut retiring = self.inner().retiring.lock().unwrap();
        if !branch.drained.load(Ordering::SeqCst) {
            retiring.insert(pad.name().to_string(), branch);
        } else {
            drop(retiring);
            self.tear_down(branch);
        }
    }

    /// A retired stream's decoder let its end-of-stream out (from a thread of its own: not
    /// the decoder's, which cannot stop itself).
    fn drained(&self, router_pad: &str) {
        let branch = self.inner().retiring.lock().unwrap().remove(router_pad);
        if let Some(branch) = branch {
            self.tear_down(branch);
        }
    }

    fn tear_down(&self, branch: Branch) {
        for element in branch.queue.iter().chain([&branch.decoder]) {
            let _ = element.set_state(gst::State::Null);
            let _ = self.obj().remove(element);
        }
        self.inner().funnel.release_request_pad(&branch.funnel_pad);
    }
}
