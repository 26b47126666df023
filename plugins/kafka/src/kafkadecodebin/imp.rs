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
 * ## Example
 * Three cameras' H.264 in one topic, detected by one worker:
 * ```sh
 * gst-launch-1.0 kafkasrc brokers=127.0.0.1:9092 topic=h264 group-id=detectors ! \
 *     kafkadecodebin ! videoconvert ! yolodetect model-location=yolov8n.onnx ! \
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

use super::router::Router;

const DEFAULT_IDLE_TIMEOUT_MS: u32 = 30_000;

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "kafkadecodebin",
        gst::DebugColorFlags::empty(),
        Some("One decoder per Kafka stream"),
    )
});

/// The elements of one stream's branch.
struct Branch {
    decoder: gst::Element,
    /// The funnel's pad the decoder's output is linked to, once it has one.
    funnel_pad: Option<gst::Pad>,
}

struct Inner {
    router: Router,
    funnel: gst::Element,
    /// By the router's pad name.
    branches: Mutex<HashMap<String, Branch>>,
    /// EOS came from upstream: from now on the decoders' EOS goes out (the funnel ends the
    /// output once every branch ended). Before, a decoder's EOS only means it was drained
    /// for retirement.
    ending: Arc<AtomicBool>,
}

pub struct KafkaDecodeBin {
    idle_timeout_ms: Mutex<u32>,
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
            idle_timeout_ms: Mutex::new(DEFAULT_IDLE_TIMEOUT_MS),
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
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "Streams decoding now, streams started and retired so far, and delta \
                         units skipped while a new stream waited for its first keyframe.",
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
                *self.idle_timeout_ms.lock().unwrap() = ms;
                self.inner()
                    .router
                    .set_idle_timeout((ms > 0).then(|| Duration::from_millis(ms as u64)));
            }
            _ => unreachable!(),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "idle-timeout" => self.idle_timeout_ms.lock().unwrap().to_value(),
            "stats" => {
                let counters = self.inner().router.imp().counters.current();
                gst::Structure::builder("kafkadecodebin-stats")
                    .field(
                        "streams-active",
                        self.inner().router.active_streams() as u32,
                    )
                    .field("streams-started", counters.started.load(Ordering::Relaxed))
                    .field("streams-retired", counters.retired.load(Ordering::Relaxed))
                    .field(
                        "delta-units-skipped",
                        counters.delta_units_skipped.load(Ordering::Relaxed),
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
        }
        let result = self.parent_change_state(transition)?;
        if transition == gst::StateChange::PausedToReady {
            // The router removed its pads; the branches' decoders go with them.
            let branches: Vec<Branch> = self
                .inner()
                .branches
                .lock()
                .unwrap()
                .drain()
                .map(|(_, b)| b)
                .collect();
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

    /// A new stream: a decoder on the router's new pad, its output into the funnel.
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
        let funnel = self.inner().funnel.clone();
        let ending = self.inner().ending.clone();
        let weak = obj.downgrade();
        let router_pad = pad.name().to_string();
        decoder.connect_pad_added(move |_, decoded| {
            let Some(funnel_pad) = funnel.request_pad_simple("sink_%u") else {
                return;
            };
            // A decoder drained for retirement ends only its branch, not the output.
            let ending = ending.clone();
            decoded.add_probe(
                gst::PadProbeType::EVENT_DOWNSTREAM,
                move |_, info| match &info.data {
                    Some(gst::PadProbeData::Event(event))
                        if event.type_() == gst::EventType::Eos
                            && !ending.load(Ordering::SeqCst) =>
                    {
                        gst::PadProbeReturn::Drop
                    }
                    _ => gst::PadProbeReturn::Ok,
                },
            );
            if let Err(err) = decoded.link(&funnel_pad) {
                gst::warning!(CAT, "Could not link {}: {err:?}", decoded.name());
            }
            if let Some(bin) = weak.upgrade()
                && let Some(branch) = bin
                    .imp()
                    .inner()
                    .branches
                    .lock()
                    .unwrap()
                    .get_mut(&router_pad)
            {
                branch.funnel_pad = Some(funnel_pad);
            }
        });
        if obj.add(&decoder).is_err() || decoder.sync_state_with_parent().is_err() {
            gst::element_imp_error!(
                self,
                gst::CoreError::StateChange,
                ("Could not start a decoder for stream pad {}", pad.name())
            );
            return;
        }
        if let Err(err) = pad.link(&decoder.static_pad("sink").unwrap()) {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                (
                    "Could not link a decoder for stream pad {}: {err:?}",
                    pad.name()
                )
            );
            return;
        }
        self.inner().branches.lock().unwrap().insert(
            pad.name().to_string(),
            Branch {
                decoder,
                funnel_pad: None,
            },
        );
    }

    fn remove_branch(&self, pad: &gst::Pad) {
        let branch = self
            .inner()
            .branches
            .lock()
            .unwrap()
            .remove(pad.name().as_str());
        if let Some(branch) = branch {
            self.tear_down(branch);
        }
    }

    fn tear_down(&self, branch: Branch) {
        let _ = branch.decoder.set_state(gst::State::Null);
        let _ = self.obj().remove(&branch.decoder);
        if let Some(funnel_pad) = branch.funnel_pad {
            self.inner().funnel.release_request_pad(&funnel_pad);
        }
    }
}
