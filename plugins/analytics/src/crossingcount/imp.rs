// SPDX-License-Identifier: MIT OR Apache-2.0
/**
 * element-crossingcount:
 *
 * Counts tracked objects (detections with a `track-id`, after `objecttrack`) crossing
 * lines, with their direction, and entering and leaving zones, with how long they stayed.
 * Each such event is attached to its frame (`GstGkvEventsMeta`, read with
 * `kafkavision::events::meta`), posted as an element message `crossingcount` and counted
 * in `stats`; `eventsconvert ! kafkasink` publishes them, one small record each.
 *
 * Coordinates are fractions of the frame (0 to 1, y down), so one layout fits every
 * resolution. A line is two points, `name:x1,y1,x2,y2`; crossing it is `in` when the object
 * comes from its right, looking from its first point to its second, and `out` otherwise:
 * for a line drawn top to bottom, `in` is left to right on the screen. An object that
 * stops on a line and goes back has crossed nothing. A zone is a polygon,
 * `name:x1,y1,x2,y2,x3,y3,...`, corners in order around it. The point of an object that
 * counts is its box's bottom centre (`anchor=bottom`, where it touches the ground) or
 * centre (`anchor=center`).
 *
 * `lines` and `zones` apply to every camera; `config-file` (JSON) can give each camera
 * (record key) its own. Tracks and counts are kept per camera. Time is the frames' capture
 * time when they came through Kafka (the same on every worker), else their PTS.
 *
 * Every event carries an `event_id` derived from the camera, the frame (its record's
 * stream and sequence number) and the line or zone, direction and track: computed again
 * from the same frames, on any worker, the same crossing has the same id, so consumers
 * count events once by id.
 *
 * With `state-topic` (set on `objecttrack` too), each camera's sides, zone visits and
 * counts are saved with its tracks to that compacted Kafka topic, one record per camera,
 * and restored by the next worker that reads the camera: a worker killed mid-crossing
 * loses no count and adds none. A camera without frames for `idle-timeout` is saved and
 * dropped from memory.
 *
 * ## Example
 * ```sh
 * gst-launch-1.0 kafkasrc brokers=127.0.0.1:9092 topic=frames group-id=counters ! \
 *     kafkadecodebin ! videoconvert ! yolodetect model-location=yolov8n.onnx ! objecttrack ! \
 *     crossingcount lines="gate:0.5,0,0.5,1" zones="dock:0.7,0.1,0.9,0.1,0.9,0.5,0.7,0.5" ! \
 *     eventsconvert ! kafkasink brokers=127.0.0.1:9092 topic=events key-from=record
 * ```
 */
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use kafkavision::detections::SourceRecord;
use kafkavision::detections::meta as detections_meta;
use kafkavision::events::{self, Event, EventKind};
use kafkavision::identity::event_id;
use kafkavision::meta::{RecordMeta, capture_time};
use kafkavision::per_run::{COUNTERS, PerRun, counters};

use super::counting::{Counter, Sighting};
use super::geometry::{self, Layouts, Point};
use crate::camera_state::element::{Checkpoint, StateSettings, Sweeper, Verdict};
use crate::camera_state::store::{Membership, StoreStats};

const PART: &str = "crossingcount";

const DEFAULT_ANCHOR: Anchor = Anchor::Bottom;
const DEFAULT_TRACK_TIMEOUT_MS: u32 = 2000;
const DEFAULT_POST_MESSAGES: bool = true;

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstCrossingCountAnchor")]
pub enum Anchor {
    #[enum_value(
        name = "The bottom centre of the box: where an object touches the ground",
        nick = "bottom"
    )]
    Bottom = 0,
    #[enum_value(name = "The centre of the box", nick = "center")]
    Center = 1,
}

#[derive(Debug, Clone)]
struct Settings {
    lines: String,
    zones: String,
    config_file: Option<String>,
    camera: Option<String>,
    anchor: Anchor,
    track_timeout_ms: u32,
    post_messages: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lines: String::new(),
            zones: String::new(),
            config_file: None,
            camera: None,
            anchor: DEFAULT_ANCHOR,
            track_timeout_ms: DEFAULT_TRACK_TIMEOUT_MS,
            post_messages: DEFAULT_POST_MESSAGES,
        }
    }
}

/// One run, from start to stop; the settings that apply to it are fixed at start.
struct State {
    layouts: Layouts,
    camera: Option<String>,
    anchor: Anchor,
    track_timeout_ns: u64,
    counters: HashMap<String, Counter>,
    /// Per camera (beside its counter): where its saved state stands, and its frames.
    checkpoints: HashMap<String, (Checkpoint, u64)>,
    frame_size: (f64, f64),
    membership: Option<Membership>,
    /// Names this run's frames that have no Kafka record, for their event ids.
    origin: String,
}

#[derive(Default)]
struct Stats {
    frames: AtomicU64,
    events: AtomicU64,
    already_included: AtomicU64,
    cameras_retired: AtomicU64,
    unusable_parts: AtomicU64,
    /// The store's counters, kept after stop for `stats`.
    store: Mutex<Option<std::sync::Arc<StoreStats>>>,
}

#[derive(Default)]
pub struct CrossingCount {
    settings: Mutex<Settings>,
    state_settings: Mutex<StateSettings>,
    sweeper: Mutex<Option<Sweeper>>,
    state: Mutex<Option<State>>,
    stats: PerRun<Stats>,
}

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "crossingcount",
        gst::DebugColorFlags::empty(),
        Some("Line crossings and zone visits of tracked objects"),
    )
});

#[glib::object_subclass]
impl ObjectSubclass for CrossingCount {
    const NAME: &'static str = "GstCrossingCount";
    type Type = super::CrossingCount;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for CrossingCount {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut properties = vec![
                glib::ParamSpecString::builder("lines")
                    .nick("Lines")
                    .blurb(
                        "Lines as name:x1,y1,x2,y2;name:... in fractions of the frame (0 to 1, y \
                         down), e.g. gate:0.5,0,0.5,1. Crossing from the line's right (looking \
                         from its first point to its second) is in, from its left out.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("zones")
                    .nick("Zones")
                    .blurb(
                        "Zones as name:x1,y1,x2,y2,x3,y3,...;name:... (at least three corners, \
                         in order around the zone, fractions of the frame), e.g. \
                         dock:0.7,0.1,0.9,0.1,0.9,0.5,0.7,0.5.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("config-file")
                    .nick("Configuration file")
                    .blurb(
                        "A JSON file of lines and zones, with per-camera ones: {\"lines\": \
                         [{\"name\": \"gate\", \"points\": [[0.5, 0], [0.5, 1]]}], \"zones\": [...], \
                         \"cameras\": {\"cam2\": {\"lines\": [...], \"zones\": [...]}}}. Used \
                         instead of lines and zones.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("camera")
                    .nick("Camera")
                    .blurb(
                        "Camera named in the events, e.g. cam1. Unset: the key of the Kafka \
                         record each frame was read from.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("anchor", DEFAULT_ANCHOR)
                    .nick("Anchor")
                    .blurb(
                        "The point of a box that counts: bottom (its bottom centre, where an \
                         object touches the ground) or center.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("track-timeout")
                    .nick("Track timeout")
                    .blurb(
                        "Milliseconds (of stream time) after which a track not seen any more has \
                         left the zones it was in, e.g. 2000.",
                    )
                    .default_value(DEFAULT_TRACK_TIMEOUT_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("post-messages")
                    .nick("Post messages")
                    .blurb("Post an element message crossingcount for every event.")
                    .default_value(DEFAULT_POST_MESSAGES)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "Frames, events, and per camera and line the crossings in and out \
                         (lines: array of line structures), per camera and zone the entries, \
                         exits and objects inside now (zones: array of zone structures), \
                         cameras retired, frames a restored state already included, and camera \
                         states saved, restored and skipped as unusable.",
                    )
                    .read_only()
                    .build(),
            ];
            properties.extend(StateSettings::properties());
            properties
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if self
            .state_settings
            .lock()
            .unwrap()
            .set_property(pspec.name(), value)
        {
            return;
        }
        let mut settings = self.settings.lock().unwrap();
        match pspec.name() {
            "lines" => settings.lines = value.get::<Option<String>>().unwrap().unwrap_or_default(),
            "zones" => settings.zones = value.get::<Option<String>>().unwrap().unwrap_or_default(),
            "config-file" => settings.config_file = value.get().unwrap(),
            "camera" => settings.camera = value.get().unwrap(),
            "anchor" => settings.anchor = value.get().unwrap(),
            "track-timeout" => settings.track_timeout_ms = value.get().unwrap(),
            "post-messages" => settings.post_messages = value.get().unwrap(),
            _ => unreachable!(),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if let Some(value) = self.state_settings.lock().unwrap().property(pspec.name()) {
            return value;
        }
        let settings = self.settings.lock().unwrap();
        match pspec.name() {
            "lines" => settings.lines.to_value(),
            "zones" => settings.zones.to_value(),
            "config-file" => settings.config_file.to_value(),
            "camera" => settings.camera.to_value(),
            "anchor" => settings.anchor.to_value(),
            "track-timeout" => settings.track_timeout_ms.to_value(),
            "post-messages" => settings.post_messages.to_value(),
            "stats" => {
                drop(settings);
                self.stats().to_value()
            }
            _ => unreachable!(),
        }
    }
}

impl GstObjectImpl for CrossingCount {}

impl ElementImpl for CrossingCount {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Line and zone counter",
                "Filter/Analyzer/Video",
                "Events when tracked objects cross lines (with direction) or enter and leave \
                 zones (with dwell time), per camera",
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

impl CrossingCount {
    fn stats(&self) -> gst::Structure {
        let mut lines = Vec::new();
        let mut zones = Vec::new();
        if let Some(state) = self.state.lock().unwrap().as_ref() {
            let mut cameras: Vec<_> = state.counters.iter().collect();
            cameras.sort_by(|a, b| a.0.cmp(b.0));
            for (camera, counter) in cameras {
                for (line, counts) in counter.layout().lines.iter().zip(&counter.line_counts) {
                    lines.push(
                        gst::Structure::builder("line")
                            .field("camera", camera.as_str())
                            .field("name", line.name.as_str())
                            .field("in", counts.crossed_in)
                            .field("out", counts.crossed_out)
                            .field(COUNTERS, counters(&["in", "out"]))
                            .build()
                            .to_send_value(),
                    );
                }
                for (i, (zone, counts)) in counter
                    .layout()
                    .zones
                    .iter()
                    .zip(&counter.zone_counts)
                    .enumerate()
                {
                    zones.push(
                        gst::Structure::builder("zone")
                            .field("camera", camera.as_str())
                            .field("name", zone.name.as_str())
                            .field("entered", counts.entered)
                            .field("left", counts.left)
                            .field("inside", counter.inside(i))
                            .field(COUNTERS, counters(&["entered", "left"]))
                            .build()
                            .to_send_value(),
                    );
                }
            }
        }
        let stats = self.stats.current();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let store = stats.store.lock().unwrap().clone();
        let store_count =
            |pick: fn(&StoreStats) -> &AtomicU64| store.as_deref().map_or(0, |s| load(pick(s)));
        gst::Structure::builder("crossingcount-stats")
            .field("frames", load(&stats.frames))
            .field("events", load(&stats.events))
            .field("cameras-retired", load(&stats.cameras_retired))
            .field("already-included", load(&stats.already_included))
            .field("state-saved", store_count(|s| &s.saved))
            .field("state-saved-bytes", store_count(|s| &s.saved_bytes))
            .field("state-restored", store_count(|s| &s.restored))
            .field(
                "state-unusable",
                store_count(|s| &s.unusable) + load(&stats.unusable_parts),
            )
            .field("lines", gst::Array::new(lines))
            .field("zones", gst::Array::new(zones))
            .field(
                COUNTERS,
                counters(&[
                    "frames",
                    "events",
                    "cameras-retired",
                    "already-included",
                    "state-saved",
                    "state-saved-bytes",
                    "state-restored",
                    "state-unusable",
                ]),
            )
            .build()
    }

    fn layouts(settings: &Settings) -> Result<Layouts, String> {
        match &settings.config_file {
            Some(path) if !path.is_empty() => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("config-file: cannot read '{path}': {e}"))?;
                geometry::parse_file(&text)
            }
            _ => Ok(Layouts {
                default: geometry::parse_properties(&settings.lines, &settings.zones)?,
                cameras: Default::default(),
            }),
        }
    }

    fn message(&self, event: &Event) {
        let mut s = gst::Structure::builder("crossingcount")
            .field(
                "kind",
                match event.kind {
                    EventKind::LineCrossed => "line-crossed",
                    EventKind::ZoneEntered => "zone-entered",
                    EventKind::ZoneLeft => "zone-left",
                },
            )
            .field("camera", event.camera.clone().unwrap_or_default())
            .field("track-id", event.track_id)
            .field("label", event.label.as_str())
            .field("pts", event.pts_ns.map(gst::ClockTime::from_nseconds));
        if let Some(line) = &event.line {
            s = s.field("line", line.as_str());
        }
        if let Some(zone) = &event.zone {
            s = s.field("zone", zone.as_str());
        }
        if let Some(direction) = event.direction {
            s = s.field("direction", direction.as_str());
        }
        if let Some(dwell) = event.dwell_ms {
            s = s.field("dwell-ms", dwell);
        }
        let _ = self.obj().post_message(
            gst::message::Element::builder(s.build())
                .src(&*self.obj())
                .build(),
        );
    }
}

impl BaseTransformImpl for CrossingCount {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        self.stats.restart();
        let settings = self.settings.lock().unwrap().clone();
        let layouts = Self::layouts(&settings)
            .map_err(|err| gst::error_msg!(gst::ResourceError::Settings, ("{err}")))?;
        if layouts.default.lines.is_empty()
            && layouts.default.zones.is_empty()
            && layouts.cameras.is_empty()
        {
            gst::warning!(CAT, imp = self, "No lines or zones: nothing to count");
        }
        let state_settings = self.state_settings.lock().unwrap().clone();
        let membership = state_settings.join(PART)?;
        *self.stats.current().store.lock().unwrap() =
            membership.as_ref().map(|m| m.store.stats.clone());
        *self.state.lock().unwrap() = Some(State {
            layouts,
            camera: settings.camera,
            anchor: settings.anchor,
            track_timeout_ns: settings.track_timeout_ms as u64 * 1_000_000,
            counters: HashMap::new(),
            checkpoints: HashMap::new(),
            frame_size: (0.0, 0.0),
            membership,
            origin: format!("run-{}", kafkavision::clock::random_suffix()),
        });
        *self.sweeper.lock().unwrap() = state_settings.idle_timeout().map(|idle| {
            Sweeper::retiring(&*self.obj(), idle, |element, idle| {
                element.imp().retire_idle(idle)
            })
        });
        Ok(())
    }

    /// The counts stay readable in `stats` until the next start; frames held for a save
    /// that will not come are released without commit (kafkasrc discards releases while
    /// its pipeline shuts down).
    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.sweeper.lock().unwrap().take();
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            state.checkpoints.clear();
            state.membership = None;
        }
        gst::info!(CAT, imp = self, "Stopped: {:?}", self.stats());
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let s = incaps.structure(0);
        let get = |f: &str| s.and_then(|s| s.get::<i32>(f).ok()).unwrap_or(0).max(0) as f64;
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            state.frame_size = (get("width"), get("height"));
        }
        Ok(())
    }

    fn transform_ip(
        &self,
        buffer: &mut gst::BufferRef,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let stats = self.stats.current();
        stats.frames.fetch_add(1, Ordering::Relaxed);
        let record = RecordMeta::of(buffer);
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::NotNegotiated)?;
        let camera = state
            .camera
            .clone()
            .or_else(|| record.as_ref().map(|r| r.camera().to_string()))
            .unwrap_or_default();
        let (width, height) = state.frame_size;
        if width <= 0.0 || height <= 0.0 {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("crossingcount needs frames with a width and height in their caps")
            );
            return Err(gst::FlowError::NotNegotiated);
        }
        let sightings: Vec<Sighting> = detections_meta::of_buffer(buffer, 1, 1)
            .into_iter()
            .filter_map(|d| {
                let track_id = d.track_id?;
                let b = d.bbox;
                let y = match state.anchor {
                    Anchor::Bottom => b.y + b.height,
                    Anchor::Center => b.y + b.height / 2.0,
                };
                Some(Sighting {
                    track_id,
                    label: d.label,
                    point: Point {
                        x: (b.x + b.width / 2.0) / width,
                        y: y / height,
                    },
                })
            })
            .collect();
        // Twice at most: a camera found out of date is restored afresh.
        let verdict = loop {
            if !state.counters.contains_key(&camera) {
                let layout = state.layouts.for_camera(&camera).clone();
                let timeout_ns = state.track_timeout_ns;
                let (checkpoint, counter, unusable) = Checkpoint::start(
                    state.membership.as_ref(),
                    &camera,
                    PART,
                    |saved| Counter::restored(layout.clone(), timeout_ns, saved),
                    || Counter::new(layout.clone(), timeout_ns),
                );
                if let Some(why) = unusable {
                    stats.unusable_parts.fetch_add(1, Ordering::Relaxed);
                    gst::warning!(
                        CAT,
                        imp = self,
                        "Camera {camera:?}: saved counts skipped ({why}); counting starts afresh"
                    );
                }
                state.counters.insert(camera.clone(), counter);
                state.checkpoints.insert(camera.clone(), (checkpoint, 0));
            }
            let (checkpoint, _) = state.checkpoints.entry(camera.clone()).or_default();
            match checkpoint.verdict(state.membership.as_ref(), &camera, buffer, record.as_ref()) {
                Verdict::Outdated => {
                    gst::info!(
                        CAT,
                        imp = self,
                        "Camera {camera:?} is back with a newer saved state"
                    );
                    state.counters.remove(&camera);
                    state.checkpoints.remove(&camera);
                }
                verdict => break verdict,
            }
        };
        if let Verdict::AlreadyIncluded = verdict {
            stats.already_included.fetch_add(1, Ordering::Relaxed);
            return Ok(gst::FlowSuccess::Ok);
        }
        let (checkpoint, frames) = state.checkpoints.get_mut(&camera).unwrap();
        *frames += 1;
        let (origin, seq) = match &record {
            Some(r) => (r.stream.clone(), r.seq),
            None => (state.origin.clone(), *frames),
        };
        let capture = capture_time(buffer);
        let pts = buffer.pts().map(|t| t.nseconds());
        let counter = state.counters.get_mut(&camera).unwrap();
        let happened = counter.frame(capture.or(pts).unwrap_or(0), &sightings);
        checkpoint.processed(
            state.membership.as_ref(),
            &camera,
            PART,
            buffer,
            record.as_ref(),
            || counter.snapshot(),
        );
        drop(guard);
        if happened.is_empty() {
            return Ok(gst::FlowSuccess::Ok);
        }

        let source = record.map(SourceRecord::from);
        let events: Vec<Event> = happened
            .into_iter()
            .map(|h| {
                let mut event = Event::new(h.kind, h.track_id, &h.label);
                event.camera = (!camera.is_empty()).then(|| camera.clone());
                match h.kind {
                    EventKind::LineCrossed => event.line = Some(h.place),
                    _ => event.zone = Some(h.place),
                }
                event.direction = h.direction;
                event.event_id = Some(event_id(
                    &camera,
                    &origin,
                    seq,
                    h.kind,
                    event.place(),
                    h.direction,
                    h.track_id,
                ));
                event.dwell_ms = h.dwell_ms;
                event.pts_ns = pts;
                event.capture_time_ns = capture;
                event.source = source.clone();
                event
            })
            .collect();
        stats
            .events
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        let post_messages = self.settings.lock().unwrap().post_messages;
        for event in &events {
            gst::debug!(
                CAT,
                imp = self,
                "{:?} {} track {}",
                event.kind,
                event.place(),
                event.track_id
            );
            if post_messages {
                self.message(event);
            }
        }
        events::meta::add(buffer, &events);
        Ok(gst::FlowSuccess::Ok)
    }
}

impl CrossingCount {
    /// Saves and drops the cameras without a frame for `idle` (run by the sweeper).
    fn retire_idle(&self, idle: std::time::Duration) {
        let mut guard = self.state.lock().unwrap();
        let state = match &mut *guard {
            Some(state) => state,
            None => return,
        };
        let gone: Vec<String> = state
            .checkpoints
            .iter()
            .filter(|(_, (c, _))| c.idle_for(idle))
            .map(|(name, _)| name.clone())
            .collect();
        for camera in gone {
            let (checkpoint, _) = state.checkpoints.remove(&camera).unwrap();
            let Some(counter) = state.counters.remove(&camera) else {
                continue;
            };
            gst::info!(
                CAT,
                imp = self,
                "Camera {camera:?} idle for {idle:?}: retired"
            );
            checkpoint.retire(state.membership.as_ref(), &camera, PART, || {
                counter.snapshot()
            });
            self.stats
                .current()
                .cameras_retired
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}
