// SPDX-License-Identifier: MIT OR Apache-2.0
//! The element inside `kafkadecodebin` that sends each stream's buffers to a pad of its
//! own: one `src_%u` pad per stream (told apart by the record meta), created on the
//! stream's first buffer and removed when the stream is retired. The bin hangs a decoder
//! on each pad. Not registered as a factory: only `kafkadecodebin` makes one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use kafkavision::frames_wanted::FramesWanted;
use kafkavision::meta::{RecordMeta, capture_time};
use kafkavision::per_run::PerRun;

use super::DecodePolicy;
use super::h264::Framing;
use super::imp::CAT;
use super::policy::{Frame, StreamPolicy};

/// Stream id of buffers that carry no record meta (not from `kafkasrc`).
const UNKNOWN_STREAM: &str = "unknown";

struct Branch {
    pad: gst::Pad,
    key: Option<String>,
    /// Caps last sent on the branch's pad.
    caps: Option<gst::Caps>,
    /// False until the branch's first keyframe: a new decoder cannot start on a delta unit.
    synced: bool,
    last_seen: Instant,
    policy: StreamPolicy,
}

#[derive(Default)]
struct RouterState {
    branches: HashMap<String, Branch>,
    caps: Option<gst::Caps>,
    segment: Option<gst::Event>,
    /// One stream-start for every branch, so that a funnel behind the decoders does not
    /// announce a new stream each time it switches between them.
    stream_start: Option<gst::Event>,
    next_pad: u32,
    idle_timeout: Option<Duration>,
    policy: DecodePolicy,
    /// How the current caps delimit H.264 NAL units (`reference` reads them).
    framing: Option<Framing>,
    /// Where EOS goes when no branch exists to carry it (the bin's output).
    output: Option<gst::Pad>,
}

#[derive(Default)]
pub struct Counters {
    pub started: AtomicU64,
    pub retired: AtomicU64,
    pub delta_units_skipped: AtomicU64,
    /// Frames the `decode` policy kept from the decoders.
    pub frames_skipped: AtomicU64,
}

pub struct StreamRouter {
    sinkpad: gst::Pad,
    state: Mutex<RouterState>,
    /// Since the bin's last start.
    pub counters: PerRun<Counters>,
}

#[glib::object_subclass]
impl ObjectSubclass for StreamRouter {
    const NAME: &'static str = "GstKafkaStreamRouter";
    type Type = Router;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let sinkpad = gst::Pad::builder_from_template(&klass.pad_template("sink").unwrap())
            .chain_function(|pad, parent, buffer| {
                StreamRouter::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |router| router.chain(pad, buffer),
                )
            })
            .event_function(|pad, parent, event| {
                StreamRouter::catch_panic_pad_function(
                    parent,
                    || false,
                    |router| router.sink_event(pad, event),
                )
            })
            .build();
        StreamRouter {
            sinkpad,
            state: Mutex::new(RouterState::default()),
            counters: PerRun::default(),
        }
    }
}

impl ObjectImpl for StreamRouter {
    fn constructed(&self) {
        self.parent_constructed();
        self.obj().add_pad(&self.sinkpad).unwrap();
    }
}

impl GstObjectImpl for StreamRouter {}

impl ElementImpl for StreamRouter {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Kafka stream router",
                "Generic",
                "One output pad per stream of the record meta (inside kafkadecodebin)",
                "gst-kafka-vision developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
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
                    "src_%u",
                    gst::PadDirection::Src,
                    gst::PadPresence::Sometimes,
                    &any,
                )
                .unwrap(),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::ReadyToPaused {
            self.counters.restart();
        }
        let result = self.parent_change_state(transition)?;
        if transition == gst::StateChange::PausedToReady {
            self.retire_all();
        }
        Ok(result)
    }
}

glib::wrapper! {
    pub struct Router(ObjectSubclass<StreamRouter>) @extends gst::Element, gst::Object;
}

impl Router {
    pub fn new(output: &gst::Pad) -> Router {
        let router: Router = glib::Object::new();
        router.imp().state.lock().unwrap().output = Some(output.clone());
        router
    }

    pub fn set_idle_timeout(&self, timeout: Option<Duration>) {
        self.imp().state.lock().unwrap().idle_timeout = timeout;
    }

    pub fn active_streams(&self) -> usize {
        self.imp().state.lock().unwrap().branches.len()
    }

    pub fn set_policy(&self, policy: DecodePolicy) {
        self.imp().state.lock().unwrap().policy = policy;
    }

    /// Streams that `decode=auto` decodes keyframes of only, as of their last frame.
    pub fn keyframes_only_streams(&self) -> usize {
        let state = self.imp().state.lock().unwrap();
        state
            .branches
            .values()
            .filter(|b| b.policy.keyframes_only)
            .count()
    }
}

impl StreamRouter {
    fn chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let record = RecordMeta::of(&buffer);
        let stream = record
            .as_ref()
            .map_or_else(|| UNKNOWN_STREAM.to_string(), |r| r.stream.clone());
        let key = record.as_ref().and_then(|r| r.key.clone());
        let seq = record.as_ref().map(|r| r.seq);
        let wanted = self.ask_if_new(&stream);

        let mut retire = Vec::new();
        let (pad, events) = {
            let mut state = self.state.lock().unwrap();
            let now = Instant::now();
            if !state.branches.contains_key(&stream) {
                // A new stream of a camera we decode already: the camera restarted (a new
                // kafkasink run), so its old stream is over.
                if key.is_some() {
                    retire.extend(
                        state
                            .branches
                            .iter()
                            .filter(|(_, b)| b.key == key)
                            .map(|(id, _)| id.clone()),
                    );
                }
            }
            if let Some(idle) = state.idle_timeout {
                retire.extend(
                    state
                        .branches
                        .iter()
                        .filter(|(id, b)| **id != stream && now - b.last_seen > idle)
                        .map(|(id, _)| id.clone()),
                );
            }
            let retired: Vec<Branch> = retire
                .iter()
                .filter_map(|id| state.branches.remove(id))
                .collect();
            drop(state);
            for branch in retired {
                self.retire(branch);
            }
            let mut state = self.state.lock().unwrap();
            let state = &mut *state;
            if !state.branches.contains_key(&stream) {
                let pad =
                    gst::Pad::builder_from_template(&self.obj().pad_template("src_%u").unwrap())
                        .name(format!("src_{}", state.next_pad))
                        .build();
                state.next_pad += 1;
                gst::info!(
                    CAT,
                    imp = self,
                    "New stream {stream:?} (key {key:?}) on {}",
                    pad.name()
                );
                state.branches.insert(
                    stream.clone(),
                    Branch {
                        pad,
                        key: key.clone(),
                        caps: None,
                        synced: false,
                        last_seen: now,
                        policy: StreamPolicy::new(wanted),
                    },
                );
                self.counters
                    .current()
                    .started
                    .fetch_add(1, Ordering::Relaxed);
            }
            let branch = state.branches.get_mut(&stream).unwrap();
            branch.last_seen = now;
            if !branch.synced {
                if buffer.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                    self.counters
                        .current()
                        .delta_units_skipped
                        .fetch_add(1, Ordering::Relaxed);
                    return Ok(gst::FlowSuccess::Ok);
                }
                branch.synced = true;
            }
            let data = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
            let frame = Frame {
                keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
                time_ns: capture_time(&buffer).or(buffer.pts().map(|t| t.nseconds())),
                seq,
                data: &data,
                framing: state.framing,
            };
            let decode = branch.policy.decode(state.policy, &frame);
            drop(data);
            if !decode {
                // Dropping the buffer releases its record: committed like a decoded one.
                self.counters
                    .current()
                    .frames_skipped
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(gst::FlowSuccess::Ok);
            }
            let mut events = Vec::new();
            if branch.pad.parent().is_none() {
                events.push(
                    state
                        .stream_start
                        .get_or_insert_with(|| gst::event::StreamStart::new("kafkadecodebin"))
                        .clone(),
                );
            }
            if branch.caps != state.caps
                && let Some(caps) = &state.caps
            {
                events.push(gst::event::Caps::new(caps));
                branch.caps = state.caps.clone();
            }
            if branch.pad.parent().is_none()
                && let Some(segment) = &state.segment
            {
                events.push(segment.clone());
            }
            (branch.pad.clone(), events)
        };
        if pad.parent().is_none() {
            // Adding the pad makes the bin link a decoder to it (pad-added).
            pad.set_active(true).map_err(|_| gst::FlowError::Error)?;
            self.obj()
                .add_pad(&pad)
                .map_err(|_| gst::FlowError::Error)?;
        }
        for event in events {
            pad.push_event(event);
        }
        pad.push(buffer)
    }

    /// For `decode=auto`, what the stage downstream uses of a new stream's frames.
    fn ask_if_new(&self, stream: &str) -> Option<FramesWanted> {
        let output = {
            let state = self.state.lock().unwrap();
            if state.policy != DecodePolicy::Auto || state.branches.contains_key(stream) {
                return None;
            }
            state.output.clone()?
        };
        let wanted = FramesWanted::ask(&output);
        gst::info!(
            CAT,
            imp = self,
            "Stream {stream:?}: downstream wants {wanted:?}"
        );
        wanted
    }

    /// Drains a branch's decoder (EOS) and removes its pad; the bin tears the decoder down.
    fn retire(&self, branch: Branch) {
        gst::info!(
            CAT,
            imp = self,
            "Retiring {} (key {:?})",
            branch.pad.name(),
            branch.key
        );
        if branch.pad.parent().is_some() {
            branch.pad.push_event(gst::event::Eos::new());
            let _ = branch.pad.set_active(false);
            let _ = self.obj().remove_pad(&branch.pad);
        }
        self.counters
            .current()
            .retired
            .fetch_add(1, Ordering::Relaxed);
    }

    fn retire_all(&self) {
        let branches: Vec<Branch> = {
            let mut state = self.state.lock().unwrap();
            state.caps = None;
            state.segment = None;
            state.stream_start = None;
            state.branches.drain().map(|(_, b)| b).collect()
        };
        for branch in branches {
            let _ = branch.pad.set_active(false);
            let _ = self.obj().remove_pad(&branch.pad);
        }
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        let pads: Vec<gst::Pad> = {
            let mut state = self.state.lock().unwrap();
            match event.view() {
                // Sent to each branch before its next buffer.
                gst::EventView::Caps(caps) => {
                    state.framing = Framing::of(caps.caps());
                    state.caps = Some(caps.caps_owned());
                    return true;
                }
                gst::EventView::StreamStart(_) => {
                    state.stream_start = Some(event.clone());
                    return true;
                }
                gst::EventView::Segment(_) => {
                    state.segment = Some(event.clone());
                }
                _ => {}
            }
            state
                .branches
                .values()
                .map(|b| b.pad.clone())
                .filter(|p| p.parent().is_some())
                .collect()
        };
        if pads.is_empty() {
            if event.type_() == gst::EventType::Eos {
                return self.end_without_streams();
            }
            return gst::Pad::event_default(pad, Some(&*self.obj()), event);
        }
        let mut all = true;
        for branch in pads {
            all &= branch.push_event(event.clone());
        }
        all
    }

    /// EOS before any stream: nothing holds a decoder, so it goes straight to the output.
    fn end_without_streams(&self) -> bool {
        let (output, stream_start, segment) = {
            let state = self.state.lock().unwrap();
            (
                state.output.clone(),
                state.stream_start.clone(),
                state.segment.clone(),
            )
        };
        let Some(output) = output else {
            return false;
        };
        output.push_event(
            stream_start.unwrap_or_else(|| gst::event::StreamStart::new("kafkadecodebin")),
        );
        output.push_event(segment.unwrap_or_else(|| {
            gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new())
        }));
        output.push_event(gst::event::Eos::new())
    }
}
