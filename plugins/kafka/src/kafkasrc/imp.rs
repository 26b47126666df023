// SPDX-License-Identifier: MIT OR Apache-2.0
/**
 * element-kafkasrc:
 *
 * A live source that reads Kafka records and rebuilds the stream `kafkasink` wrote: caps
 * (renegotiated when they change), timestamps, buffer flags. Records without the envelope
 * (written by other Kafka clients) are read with the `caps` property.
 *
 * Several `kafkasrc` with the same `group-id` split the topic's partitions between them,
 * each record going to one of them: that is how detectors scale out.
 *
 * ## No record lost
 * Delivery is at-least-once. By default (`commit-after=release`) a record counts as
 * handled only when downstream has released the last buffer that came from it: decoded
 * frames, encoded images and tee branches carry its record meta, and a `kafkasink` keeps
 * it until the broker acknowledged the record written from it. Offsets are committed in
 * order every second and on stop, up to the oldest record still in flight. A worker that
 * is killed, or whose output cannot be delivered, has not committed what it had not
 * finished: the group's next owner of the partition reads those records again. Buffers
 * discarded while the pipeline shuts down before end-of-stream do not count as handled
 * (after EOS, what sinks still hold was processed). The duplicates after a crash are
 * bounded by the records in flight plus one commit interval.
 *
 * When a stream is joined mid-way (start, or a partition gained in a rebalance), delta
 * units are skipped until that stream's next keyframe, so decoders never see a broken
 * start.
 *
 * ## Timestamps
 * Output timestamps keep the original spacing of PTS and DTS, shifted so that the first
 * buffer of each stream lands on the pipeline's running time when it arrived. The
 * original PTS rides in a `GstReferenceTimestampMeta` with caps
 * `timestamp/x-gkv-original-pts`, and the wall-clock time the buffer reached `kafkasink`
 * (Unix ns) in one with caps `timestamp/x-unix`. Buffer offsets carry the stream's
 * sequence number. Records without envelope are stamped with their arrival time.
 *
 * ## Example
 * ```sh
 * gst-launch-1.0 kafkasrc brokers=127.0.0.1:9092 topic=frames group-id=viewers ! \
 *     jpegdec ! videoconvert ! autovideosink
 * ```
 */
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;
use rdkafka::message::BorrowedMessage;

use super::consumer::{
    self, NoRecord, OpenSettings, SrcContext, StartFrom, StartFromSetting, Stats, StopAtSetting,
    TopicConsumer,
};
use super::streams::{Outcome, Streams, Window};
use super::window::StopAt;
use crate::client::{ClientBlurbs, ClientHealth, ClientLog, ClientSettings};
use crate::release::OffsetTracker;
use crate::stats::kafkasrc as fields;
use kafkavision::per_run::{COUNTERS, counters};

const DEFAULT_START_FROM: &str = "committed";
const DEFAULT_STOP_ON_EOS: bool = false;
const DEFAULT_ON_BAD_RECORD: BadRecordPolicy = BadRecordPolicy::Skip;
const DEFAULT_COMMIT_AFTER: CommitAfter = CommitAfter::Release;
const DEFAULT_LATENCY_MS: u32 = 200;
const DEFAULT_START_KEYFRAME: StartKeyframe = StartKeyframe::Next;
/// Past `stop-at` by this much, with no record kept for as long, the read ends without a
/// record past it: the camera went away, or nothing of the key is left to read.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long one `poll` may block; `unlock` is noticed within this time.
const POLL_SLICE: Duration = Duration::from_millis(50);
/// How long `stop` waits for the final commit and group leave before giving up on them.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstKafkaSrcBadRecordPolicy")]
pub enum BadRecordPolicy {
    #[enum_value(
        name = "Skip the record with a warning and count it in stats",
        nick = "skip"
    )]
    Skip = 0,
    #[enum_value(name = "Fail the pipeline with an error", nick = "error")]
    Error = 1,
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstKafkaSrcCommitAfter")]
pub enum CommitAfter {
    #[enum_value(
        name = "Downstream released every buffer made from the record (processed, or delivered \
                by kafkasink)",
        nick = "release"
    )]
    Release = 0,
    #[enum_value(
        name = "The buffer's push returned (records waiting in downstream queues count as done)",
        nick = "push"
    )]
    Push = 1,
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstKafkaSrcStartKeyframe")]
pub enum StartKeyframe {
    #[enum_value(
        name = "Each stream starts at its first keyframe at or after the time",
        nick = "next"
    )]
    Next = 0,
    #[enum_value(
        name = "Each stream starts at its last keyframe at or before the time (pre-roll for \
                clips)",
        nick = "previous"
    )]
    Previous = 1,
}

#[derive(Debug, Clone)]
struct Settings {
    client: ClientSettings,
    group_id: Option<String>,
    start_from: StartFromSetting,
    start_keyframe: StartKeyframe,
    key: Option<String>,
    stop_at: StopAtSetting,
    max_age_ms: u32,
    caps: Option<gst::Caps>,
    stop_on_eos: bool,
    on_bad_record: BadRecordPolicy,
    commit_after: CommitAfter,
    latency_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            client: ClientSettings::default(),
            group_id: None,
            start_from: StartFromSetting::new(DEFAULT_START_FROM),
            start_keyframe: DEFAULT_START_KEYFRAME,
            key: None,
            stop_at: StopAtSetting::new(None),
            max_age_ms: 0,
            caps: None,
            stop_on_eos: DEFAULT_STOP_ON_EOS,
            on_bad_record: DEFAULT_ON_BAD_RECORD,
            commit_after: DEFAULT_COMMIT_AFTER,
            latency_ms: DEFAULT_LATENCY_MS,
        }
    }
}

struct Started {
    input: TopicConsumer,
    streams: Streams,
    on_bad_record: BadRecordPolicy,
    /// When a record was last pushed, for ending a read whose stop time passed.
    last_push: std::time::Instant,
}

pub struct KafkaSrc {
    settings: Mutex<Settings>,
    state: Mutex<Option<Started>>,
    /// The caps pushed last, for caps queries from any thread (`create` holds `state`
    /// while it waits for records).
    pushed_caps: Mutex<Option<gst::Caps>>,
    stats: Mutex<Arc<Stats>>,
    /// The running consumer's tracker, for `stats` to read without waiting for `create`.
    tracker: Mutex<Option<Arc<OffsetTracker>>>,
    /// Broker reachability and lag from librdkafka's statistics, for `stats`.
    health: Arc<ClientHealth>,
    flushing: AtomicBool,
}

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "kafkasrc",
        gst::DebugColorFlags::empty(),
        Some("Kafka source"),
    )
});

impl Default for KafkaSrc {
    fn default() -> Self {
        KafkaSrc {
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(None),
            pushed_caps: Mutex::new(None),
            stats: Mutex::new(Arc::new(Stats::default())),
            tracker: Mutex::new(None),
            health: Arc::default(),
            flushing: AtomicBool::new(false),
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for KafkaSrc {
    const NAME: &'static str = "GstKafkaSrc";
    type Type = super::KafkaSrc;
    type ParentType = gst_base::PushSrc;
}

impl ObjectImpl for KafkaSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut properties = ClientSettings::properties(&ClientBlurbs {
                topic: "Kafka topic to read, e.g. frames. Required.",
                config: "Extra librdkafka consumer properties as key=value,key=value, e.g. \
                         fetch.wait.max.ms=10,security.protocol=SSL (write a comma inside a \
                         value as \\,). Secret values are never shown back.",
            });
            properties.extend([
                glib::ParamSpecString::builder("group-id")
                    .nick("Consumer group")
                    .blurb(
                        "Consumer group, e.g. detectors. Sources with the same group split the \
                         partitions and commit offsets. Unset: read every partition, commit \
                         nothing.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("start-from")
                    .nick("Start from")
                    .blurb(
                        "Where to start: committed (the group's committed offsets, else the \
                         earliest record), earliest, latest, or a time as Unix ms \
                         (1763700000000) or ISO-8601 (2026-11-21T10:00:00Z).",
                    )
                    .default_value(Some(DEFAULT_START_FROM))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("start-keyframe", DEFAULT_START_KEYFRAME)
                    .nick("Start keyframe")
                    .blurb(
                        "With a time in start-from, where each video stream starts: next (its \
                         first keyframe at or after the time) or previous (its last keyframe at \
                         or before the time, found by reading the records just before it).",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("key")
                    .nick("Key")
                    .blurb(
                        "Read only records with this Kafka key, e.g. a camera's cam1; others are \
                         skipped and counted (records-other-key). Unset: every record.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("stop-at")
                    .nick("Stop at")
                    .blurb(
                        "End with EOS at the first record (of key, when set) captured after this \
                         time, as Unix ms or ISO-8601; without key, once every partition has one. \
                         Waits for it when the time is still to come; 5 s after it, with no \
                         record kept for 5 s, ends anyway. Unset: no stop time.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-age")
                    .nick("Maximum age")
                    .blurb(
                        "Fresh over complete, for live consumers (a viewer, an alarm): records \
                         captured longer ago than this many ms when they arrive are skipped \
                         (committed, counted in records-too-old; a video stream then waits for \
                         its next keyframe), so a consumer that fell behind catches up with now. \
                         0: every record, however old.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Caps>("caps")
                    .nick("Caps")
                    .blurb(
                        "Caps of records that carry no envelope (written by other Kafka \
                         clients), e.g. image/jpeg. Records with an envelope use their own.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("stop-on-eos")
                    .nick("Stop on end-of-stream")
                    .blurb(
                        "End with EOS once every stream read so far has sent its end-of-stream \
                         record (kafkasink eos-marker). Off: keep waiting for new records.",
                    )
                    .default_value(DEFAULT_STOP_ON_EOS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("on-bad-record", DEFAULT_ON_BAD_RECORD)
                    .nick("On bad record")
                    .blurb(
                        "What to do with a record that cannot be read (unknown envelope version, \
                         unparsable headers, a value that does not match its caps): skip (warn \
                         and count) or error.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("commit-after", DEFAULT_COMMIT_AFTER)
                    .nick("Commit after")
                    .blurb(
                        "When a record counts as handled and its offset may be committed \
                         (with group-id): release (downstream released every buffer made from \
                         it, so a crash loses nothing queued) or push (the push returned).",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("latency")
                    .nick("Latency")
                    .blurb(
                        "Latency in ms reported to the pipeline: how much later than the first \
                         one a record may arrive and still be on time at a synchronised sink, \
                         e.g. 200.",
                    )
                    .default_value(DEFAULT_LATENCY_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "Records and bytes received, buffers pushed, delta units skipped while \
                         waiting for a keyframe, bad records, end-of-stream records, sequence \
                         gaps, frames missing, duplicated and out of order (from each stream's \
                         gkv-seq; duplicated and out-of-order ones are skipped), records skipped \
                         for another key, past stop-at or older than max-age, rebalances, records \
                         in flight downstream (not released yet), \
                         records whose output failed downstream, partitions assigned, how long \
                         no broker has been reachable (broker-down-ms) and the lag per partition \
                         (consumer-lag: newest minus committed offset), from librdkafka's \
                         statistics every statistics.interval.ms (1000 by default).",
                    )
                    .read_only()
                    .build(),
            ]);
            properties
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        match settings.client.set_property(pspec.name(), value) {
            Ok(true) => return,
            Err(err) => return gst::error!(CAT, imp = self, "{err}"),
            Ok(false) => {}
        }
        match pspec.name() {
            "group-id" => {
                settings.group_id = value
                    .get::<Option<String>>()
                    .unwrap()
                    .filter(|g| !g.is_empty())
            }
            "start-from" => {
                let text = value.get::<Option<&str>>().unwrap();
                settings.start_from = StartFromSetting::new(text.unwrap_or(DEFAULT_START_FROM));
                if let Err(err) = &settings.start_from.parsed {
                    gst::error!(CAT, imp = self, "{err}");
                }
            }
            "start-keyframe" => settings.start_keyframe = value.get().unwrap(),
            "key" => {
                settings.key = value
                    .get::<Option<String>>()
                    .unwrap()
                    .filter(|k| !k.is_empty())
            }
            "stop-at" => {
                settings.stop_at = StopAtSetting::new(value.get::<Option<&str>>().unwrap());
                if let Err(err) = &settings.stop_at.parsed {
                    gst::error!(CAT, imp = self, "{err}");
                }
            }
            "max-age" => settings.max_age_ms = value.get().unwrap(),
            "caps" => settings.caps = value.get().unwrap(),
            "stop-on-eos" => settings.stop_on_eos = value.get().unwrap(),
            "on-bad-record" => settings.on_bad_record = value.get().unwrap(),
            "commit-after" => settings.commit_after = value.get().unwrap(),
            "latency" => settings.latency_ms = value.get().unwrap(),
            _ => unreachable!(),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        if let Some(value) = settings.client.property(pspec.name()) {
            return value;
        }
        match pspec.name() {
            "group-id" => settings.group_id.to_value(),
            "start-from" => settings.start_from.text.to_value(),
            "start-keyframe" => settings.start_keyframe.to_value(),
            "key" => settings.key.to_value(),
            "stop-at" => settings.stop_at.text.to_value(),
            "max-age" => settings.max_age_ms.to_value(),
            "caps" => settings.caps.to_value(),
            "stop-on-eos" => settings.stop_on_eos.to_value(),
            "on-bad-record" => settings.on_bad_record.to_value(),
            "commit-after" => settings.commit_after.to_value(),
            "latency" => settings.latency_ms.to_value(),
            "stats" => {
                drop(settings);
                self.stats().to_value()
            }
            _ => unreachable!(),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.set_live(true);
        obj.set_format(gst::Format::Time);
        obj.set_do_timestamp(false);

        // EOS leaves the streaming thread after the last buffer's push returned, without
        // another `create` call: the last record is handled, so store its offset here.
        let weak = obj.downgrade();
        obj.static_pad("src").unwrap().add_probe(
            gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                if let Some(gst::PadProbeData::Event(event)) = &info.data
                    && event.type_() == gst::EventType::Eos
                    && let Some(obj) = weak.upgrade()
                {
                    obj.imp().end_of_stream();
                }
                gst::PadProbeReturn::Ok
            },
        );
    }
}

impl GstObjectImpl for KafkaSrc {}

impl ElementImpl for KafkaSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Kafka Source",
                "Source/Network",
                "Reads Kafka records as buffers, restoring caps and timestamps from headers",
                "gst-kafka-vision developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &gst::Caps::new_any(),
                )
                .unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl KafkaSrc {
    /// EOS goes downstream: the buffer handed out last has been pushed.
    fn end_of_stream(&self) {
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            state.input.pending_pushed();
            state.input.tracker().end_of_stream();
        }
    }

    fn stats(&self) -> gst::Structure {
        let stats = self.stats.lock().unwrap().clone();
        let (in_flight, failed_downstream) = self
            .tracker
            .lock()
            .unwrap()
            .as_ref()
            .map_or((0, 0), |t| t.open_records());
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (missing, cameras) = {
            let cameras = stats.cameras.lock().unwrap();
            let per_camera: gst::Array = cameras
                .iter()
                .map(|(camera, figures)| {
                    gst::Structure::builder(fields::CAMERA)
                        .field("camera", camera)
                        .field(fields::FRAMES_MISSING, figures.missing)
                        .field(fields::FRAMES_DUPLICATED, figures.duplicated)
                        .field(fields::FRAMES_OUT_OF_ORDER, figures.out_of_order)
                        .field(fields::LATENCY_MS, figures.latency.to_structure())
                        .field(
                            COUNTERS,
                            counters(&[fields::FRAMES_DUPLICATED, fields::FRAMES_OUT_OF_ORDER]),
                        )
                        .build()
                        .to_send_value()
                })
                .collect();
            (cameras.missing(), per_camera)
        };
        gst::Structure::builder(fields::NAME)
            .field("records-received", load(&stats.records))
            .field("bytes-received", load(&stats.bytes))
            .field(fields::BUFFERS_PUSHED, load(&stats.buffers_pushed))
            .field("delta-units-skipped", load(&stats.delta_units_skipped))
            .field("bad-records", load(&stats.bad_records))
            .field("eos-records", load(&stats.eos_records))
            .field("sequence-gaps", load(&stats.sequence_gaps))
            .field("records-other-key", load(&stats.records_other_key))
            .field("records-past-stop", load(&stats.records_past_stop))
            .field("records-too-old", load(&stats.records_too_old))
            .field(fields::FRAMES_MISSING, missing)
            .field(fields::FRAMES_DUPLICATED, load(&stats.frames_duplicated))
            .field(
                fields::FRAMES_OUT_OF_ORDER,
                load(&stats.frames_out_of_order),
            )
            .field(fields::CAMERAS, cameras)
            .field("rebalances", load(&stats.rebalances))
            .field(fields::RECORDS_IN_FLIGHT, in_flight)
            .field("records-failed-downstream", failed_downstream)
            .field(
                fields::PARTITIONS_ASSIGNED,
                stats.partitions_assigned.load(Ordering::Relaxed),
            )
            .field(fields::BROKER_DOWN_MS, self.health.broker_down_ms())
            .field(fields::CONSUMER_LAG, self.health.consumer_lag())
            .field(
                COUNTERS,
                counters(&[
                    "records-received",
                    "bytes-received",
                    fields::BUFFERS_PUSHED,
                    "delta-units-skipped",
                    "bad-records",
                    "eos-records",
                    "sequence-gaps",
                    "records-other-key",
                    "records-past-stop",
                    "records-too-old",
                    fields::FRAMES_DUPLICATED,
                    fields::FRAMES_OUT_OF_ORDER,
                    "rebalances",
                ]),
            )
            .build()
    }

    /// Posts the bad-record warning or error; `Err` when the policy is to fail.
    fn bad_record(
        &self,
        policy: BadRecordPolicy,
        partition: i32,
        offset: i64,
        why: &str,
    ) -> Result<(), gst::FlowError> {
        let bad = self
            .stats
            .lock()
            .unwrap()
            .bad_records
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        match policy {
            BadRecordPolicy::Skip => {
                gst::warning!(
                    CAT,
                    imp = self,
                    "Skipping bad record at partition {partition} offset {offset}: {why}"
                );
                gst::element_imp_warning!(
                    self,
                    gst::StreamError::Decode,
                    ("Skipped bad record at partition {partition} offset {offset} ({bad} so far): {why}")
                );
                Ok(())
            }
            BadRecordPolicy::Error => {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Decode,
                    ("Bad record at partition {partition} offset {offset}: {why} (set on-bad-record=skip to skip such records)")
                );
                Err(gst::FlowError::Error)
            }
        }
    }
}

impl BaseSrcImpl for KafkaSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let start = settings.client.for_start()?;
        let topic = start.topic.clone();
        let start_from = settings
            .start_from
            .parsed
            .clone()
            .map_err(|err| gst::error_msg!(gst::ResourceError::Settings, ("{err}")))?;
        let stop_at = settings
            .stop_at
            .parsed
            .clone()
            .map_err(|err| gst::error_msg!(gst::ResourceError::Settings, ("{err}")))?;
        let key = settings.key.as_ref().map(|k| k.as_bytes().to_vec());
        let keyframe_before = match (start_from, settings.start_keyframe) {
            (StartFrom::Time(_), StartKeyframe::Previous) => Some(key.as_deref()),
            _ => None,
        };

        gst::info!(
            CAT,
            imp = self,
            "Starting: brokers={} topic={topic} group={:?} start-from={:?} \
             start-keyframe={:?} key={:?} stop-at={:?} config={}",
            settings.client.brokers,
            settings.group_id,
            start_from,
            settings.start_keyframe,
            settings.key,
            stop_at,
            start.user.redacted()
        );

        let stats = Arc::new(Stats::default());
        *self.stats.lock().unwrap() = stats.clone();
        self.health.clear();
        let log = ClientLog::new(*CAT, self.obj().upcast_ref(), self.health.clone());
        let context = SrcContext::new(log, stats.clone());
        let open = OpenSettings {
            client: &settings.client,
            start: &start,
            group_id: settings.group_id.as_deref(),
            start_from,
            keyframe_before,
            commit_after: settings.commit_after,
        };
        let (input, partitions) = TopicConsumer::open(open, context)?;
        let tracker = input.tracker().clone();
        tracker.watch_shutdown_of(self.obj().upcast_ref());
        *self.tracker.lock().unwrap() = Some(tracker);
        gst::info!(
            CAT,
            imp = self,
            "Started: topic '{topic}' has {partitions} partition(s)"
        );

        let streams = Streams::new(
            &topic,
            settings.caps,
            settings.stop_on_eos,
            Window {
                stop: stop_at.map(|at_ms| StopAt::new(at_ms, key.is_some())),
                key,
                max_age_ms: (settings.max_age_ms > 0).then_some(i64::from(settings.max_age_ms)),
            },
            stats,
            self.obj().name(),
        );
        *self.pushed_caps.lock().unwrap() = None;
        *self.state.lock().unwrap() = Some(Started {
            input,
            streams,
            on_bad_record: settings.on_bad_record,
            last_push: std::time::Instant::now(),
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let Some(started) = self.state.lock().unwrap().take() else {
            return Ok(());
        };
        if !started.input.close(CLOSE_TIMEOUT) {
            gst::warning!(
                CAT,
                imp = self,
                "Closing the consumer did not finish within {} s (broker unreachable?); \
                 offsets stored since the last auto-commit may be read again",
                CLOSE_TIMEOUT.as_secs()
            );
        }
        gst::info!(CAT, imp = self, "Stopped: {:?}", self.stats());
        Ok(())
    }

    fn is_seekable(&self) -> bool {
        false
    }

    fn caps(&self, filter: Option<&gst::Caps>) -> Option<gst::Caps> {
        let caps = self
            .pushed_caps
            .lock()
            .unwrap()
            .clone()
            .or_else(|| self.settings.lock().unwrap().caps.clone())
            .unwrap_or_else(gst::Caps::new_any);
        Some(match filter {
            Some(filter) => filter.intersect_with_mode(&caps, gst::CapsIntersectMode::First),
            None => caps,
        })
    }

    fn query(&self, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            let latency =
                gst::ClockTime::from_mseconds(self.settings.lock().unwrap().latency_ms as u64);
            q.set(true, latency, gst::ClockTime::NONE);
            return true;
        }
        BaseSrcImplExt::parent_query(self, query)
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        self.flushing.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        self.flushing.store(false, Ordering::SeqCst);
        Ok(())
    }
}

impl PushSrcImpl for KafkaSrc {
    /// Polls the next record, turns it into a buffer (or skips it, or reports it as
    /// bad) and hands the buffer out, with new caps set first.
    fn create(
        &self,
        _buffer: Option<&mut gst::BufferRef>,
    ) -> Result<CreateSuccess, gst::FlowError> {
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else {
            gst::element_imp_error!(self, gst::CoreError::Failed, ("Not started"));
            return Err(gst::FlowError::Error);
        };
        // We are called again, so the previous buffer's push has returned.
        state.input.pending_pushed();

        loop {
            self.before_poll(state)?;
            let (partition, offset, outcome) = {
                let Some(message) = self.poll(&mut state.input)? else {
                    if stop_overdue(state) {
                        gst::info!(
                            CAT,
                            imp = self,
                            "Past stop-at with nothing more to read: EOS"
                        );
                        return Err(gst::FlowError::Eos);
                    }
                    continue;
                };
                let record = consumer::record_of(&message);
                let now = self.obj().current_running_time();
                let outcome = state.streams.read(&record, now, |caps| {
                    let pad = self.obj().static_pad("src").unwrap();
                    pad.peer_query_accept_caps(caps)
                });
                (record.partition, record.offset, outcome)
            };
            match outcome {
                Outcome::Push {
                    mut buffer,
                    new_caps,
                } => {
                    state.input.hand_out(partition, offset, buffer.make_mut());
                    state.last_push = std::time::Instant::now();
                    if let Some(caps) = new_caps {
                        drop(guard);
                        self.set_new_caps(&caps)?;
                    }
                    return Ok(CreateSuccess::NewBuffer(buffer));
                }
                Outcome::Skip => {}
                Outcome::Bad(why) => {
                    self.bad_record(state.on_bad_record, partition, offset, &why)?
                }
                Outcome::End(why) => {
                    state.input.tracker().handled(partition, offset);
                    state.input.store_commit_points();
                    gst::info!(CAT, imp = self, "End of the read ({why}): EOS");
                    return Err(gst::FlowError::Eos);
                }
            }
            state.input.tracker().handled(partition, offset);
            if stop_overdue(state) {
                gst::info!(
                    CAT,
                    imp = self,
                    "Past stop-at with no record of the key: EOS"
                );
                return Err(gst::FlowError::Eos);
            }
        }
    }
}

/// `stop-at` passed on the clock by `STOP_GRACE`, and nothing was pushed for as long.
fn stop_overdue(state: &Started) -> bool {
    let Some(at_ms) = state.streams.stop_at_ms() else {
        return false;
    };
    let now_ms = kafkavision::clock::unix_time_ms();
    now_ms > at_ms.saturating_add(STOP_GRACE.as_millis() as i64)
        && state.last_push.elapsed() > STOP_GRACE
}

impl KafkaSrc {
    /// Between records: hands on the commit points, notices flushing, and forgets the
    /// streams of partitions gained in a rebalance (they may be joined mid-way, so they
    /// wait for a keyframe and are re-timed).
    fn before_poll(&self, state: &mut Started) -> Result<(), gst::FlowError> {
        if state.input.grouped {
            state.input.store_commit_points();
        }
        if self.flushing.load(Ordering::SeqCst) {
            gst::debug!(CAT, imp = self, "Flushing");
            return Err(gst::FlowError::Flushing);
        }
        let gained = state.input.take_gained();
        if !gained.is_empty() {
            state.streams.forget_partitions(&gained);
        }
        Ok(())
    }

    /// Waits up to `POLL_SLICE` for a record; `Err` when reading cannot go on.
    fn poll<'c>(
        &self,
        input: &'c mut TopicConsumer,
    ) -> Result<Option<BorrowedMessage<'c>>, gst::FlowError> {
        match input.poll(POLL_SLICE, &self.flushing) {
            Ok(message) => Ok(Some(message)),
            Err(NoRecord::Idle) => Ok(None),
            Err(NoRecord::ClientError(err)) => {
                gst::warning!(CAT, imp = self, "Consumer error: {err}");
                Ok(None)
            }
            Err(NoRecord::Unreadable(why)) => {
                gst::element_imp_error!(self, gst::ResourceError::Read, ("{why}"));
                Err(gst::FlowError::Error)
            }
        }
    }

    /// Sets caps the streams' reader found changed (downstream accepted them); they also
    /// answer caps queries from now on.
    fn set_new_caps(&self, caps: &gst::Caps) -> Result<(), gst::FlowError> {
        gst::debug!(CAT, imp = self, "New caps {caps}");
        *self.pushed_caps.lock().unwrap() = Some(caps.clone());
        self.obj().set_caps(caps).map_err(|_| {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("Downstream does not accept caps {caps}")
            );
            gst::FlowError::NotNegotiated
        })
    }
}
