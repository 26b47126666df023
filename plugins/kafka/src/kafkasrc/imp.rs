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
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;
use kafkavision::client_config::ClientConfig;
use kafkavision::detections::FrameDetections;
use kafkavision::{Envelope, Flags, RecordKind};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};

use crate::common::{self, ClientLog, UNIX_TIME_CAPS};
use crate::release::OffsetTracker;

const DEFAULT_START_FROM: &str = "committed";
const DEFAULT_STOP_ON_EOS: bool = false;
const DEFAULT_ON_BAD_RECORD: BadRecordPolicy = BadRecordPolicy::Skip;
const DEFAULT_COMMIT_AFTER: CommitAfter = CommitAfter::Release;
const DEFAULT_LATENCY_MS: u32 = 200;
/// How long one `poll` may block; `unlock` is noticed within this time.
const POLL_SLICE: Duration = Duration::from_millis(50);
/// How long `stop` waits for the final commit and group leave before giving up on them.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
const ORIGINAL_PTS_CAPS: &str = "timestamp/x-gkv-original-pts";

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

/// Where to start reading partitions that have no committed offset to go on from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StartFrom {
    /// The group's committed offset; partitions without one start at the earliest record.
    Committed,
    Earliest,
    Latest,
    /// The first record at or after this Unix time in ms.
    Time(i64),
}

impl FromStr for StartFrom {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "committed" => Ok(StartFrom::Committed),
            "earliest" => Ok(StartFrom::Earliest),
            "latest" => Ok(StartFrom::Latest),
            other => {
                if let Ok(ms) = other.parse::<i64>() {
                    return Ok(StartFrom::Time(ms));
                }
                glib::DateTime::from_iso8601(other, None)
                    .map(|t| StartFrom::Time(t.to_unix() * 1000 + t.microsecond() as i64 / 1000))
                    .map_err(|_| {
                        format!(
                            "start-from='{other}' is not committed, earliest, latest, a Unix time \
                             in ms (e.g. 1763700000000) or an ISO-8601 time (e.g. \
                             2026-11-21T10:00:00Z)"
                        )
                    })
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Settings {
    brokers: String,
    topic: Option<String>,
    group_id: Option<String>,
    start_from: String,
    config: Result<ClientConfig, String>,
    caps: Option<gst::Caps>,
    stop_on_eos: bool,
    on_bad_record: BadRecordPolicy,
    commit_after: CommitAfter,
    connect_timeout_ms: u32,
    latency_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            brokers: common::DEFAULT_BROKERS.to_string(),
            topic: None,
            group_id: None,
            start_from: DEFAULT_START_FROM.to_string(),
            config: Ok(ClientConfig::default()),
            caps: None,
            stop_on_eos: DEFAULT_STOP_ON_EOS,
            on_bad_record: DEFAULT_ON_BAD_RECORD,
            commit_after: DEFAULT_COMMIT_AFTER,
            connect_timeout_ms: common::DEFAULT_CONNECT_TIMEOUT_MS,
            latency_ms: DEFAULT_LATENCY_MS,
        }
    }
}

#[derive(Default)]
struct Stats {
    records: AtomicU64,
    bytes: AtomicU64,
    buffers_pushed: AtomicU64,
    delta_units_skipped: AtomicU64,
    bad_records: AtomicU64,
    eos_records: AtomicU64,
    sequence_gaps: AtomicU64,
    rebalances: AtomicU64,
    partitions_assigned: AtomicU32,
}

/// Consumer callbacks: log routing, and partition assignments for the streaming thread.
struct SrcContext {
    log: ClientLog,
    stats: Arc<Stats>,
    /// Start offsets for partitions assigned for the first time in this run.
    first_offsets: Mutex<Option<HashMap<i32, Offset>>>,
    seen_partitions: Mutex<HashSet<i32>>,
    /// Partitions gained since the streaming thread last looked.
    gained: Mutex<Vec<i32>>,
    /// Records handed downstream and not yet released.
    tracker: Arc<OffsetTracker>,
}

impl ClientContext for SrcContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.log.log(level, fac, log_message)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason)
    }
}

impl ConsumerContext for SrcContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        self.stats.rebalances.fetch_add(1, Ordering::Relaxed);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut seen = self.seen_partitions.lock().unwrap();
                let first_offsets = self.first_offsets.lock().unwrap();
                let mut gained = Vec::new();
                for elem in tpl.elements() {
                    gained.push(elem.partition());
                }
                let topic = tpl.elements().first().map(|e| e.topic().to_string());
                for partition in &gained {
                    if seen.insert(*partition)
                        && let (Some(topic), Some(offset)) = (
                            &topic,
                            first_offsets.as_ref().and_then(|m| m.get(partition)),
                        )
                    {
                        let _ = tpl.set_partition_offset(topic, *partition, *offset);
                    }
                }
                self.tracker.reset();
                if let Err(e) = consumer.assign(tpl) {
                    gst::error!(*CAT, "Could not take the assigned partitions: {e}");
                }
                self.stats
                    .partitions_assigned
                    .store(gained.len() as u32, Ordering::Relaxed);
                gst::info!(*CAT, "Assigned partitions {gained:?}");
                self.gained.lock().unwrap().extend(gained);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                gst::info!(*CAT, "Partitions revoked");
                // With auto commit on, librdkafka commits the stored offsets here: store what
                // was released so far; what is still in flight is read again by the next
                // owner.
                if let Some(topic) = tpl.elements().first().map(|e| e.topic().to_string()) {
                    for (partition, offset) in self.tracker.take_commit_points() {
                        store_offset(consumer, &topic, partition, offset);
                    }
                }
                self.tracker.reset();
                if let Err(e) = consumer.unassign() {
                    gst::warning!(*CAT, "Could not give up the revoked partitions: {e}");
                }
                self.stats.partitions_assigned.store(0, Ordering::Relaxed);
            }
            other => {
                gst::warning!(*CAT, "Rebalance error: {}", RDKafkaErrorCode::from(other));
                self.tracker.reset();
                let _ = consumer.unassign();
                self.stats.partitions_assigned.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// What the source knows about one stream (one `kafkasink` run) it reads.
struct StreamState {
    partition: i32,
    next_seq: u64,
    /// False until the first keyframe after joining.
    synced: bool,
    /// Running time minus original time, fixed at the first pushed buffer.
    ts_offset: Option<i128>,
    ended: bool,
}

struct Started {
    consumer: BaseConsumer<SrcContext>,
    topic: String,
    grouped: bool,
    /// The record whose buffer was handed to the base class last; its push has returned
    /// when `create` is called again.
    pending_push: Option<(i32, i64)>,
    on_bad_record: BadRecordPolicy,
    commit_after: CommitAfter,
    streams: Streams,
    /// Set when `config` lowers the fetch limits: a record larger than them may never be
    /// delivered (some brokers do not send an oversized first record), which is checked
    /// after this long without records.
    fetch_limits: Option<(String, Duration)>,
    last_record: std::time::Instant,
}

/// What turning records into buffers needs to remember.
struct Streams {
    by_id: HashMap<String, StreamState>,
    /// Caps pushed downstream last, and the header text they were parsed from.
    current_caps: Option<(String, gst::Caps)>,
    fallback_caps: Option<gst::Caps>,
    stop_on_eos: bool,
}

pub struct KafkaSrc {
    settings: Mutex<Settings>,
    state: Mutex<Option<Started>>,
    stats: Mutex<Arc<Stats>>,
    /// The running consumer's tracker, for `stats` to read without waiting for `create`.
    tracker: Mutex<Option<Arc<OffsetTracker>>>,
    flushing: AtomicBool,
}

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
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
            stats: Mutex::new(Arc::new(Stats::default())),
            tracker: Mutex::new(None),
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
            vec![
                glib::ParamSpecString::builder("brokers")
                    .nick("Brokers")
                    .blurb("Kafka bootstrap servers as host:port,host:port, e.g. 127.0.0.1:9092.")
                    .default_value(Some(common::DEFAULT_BROKERS))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("topic")
                    .nick("Topic")
                    .blurb("Kafka topic to read, e.g. frames. Required.")
                    .mutable_ready()
                    .build(),
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
                glib::ParamSpecString::builder("config")
                    .nick("Client configuration")
                    .blurb(
                        "Extra librdkafka consumer properties as key=value,key=value, e.g. \
                         fetch.wait.max.ms=10,security.protocol=SSL (write a comma inside a \
                         value as \\,). Secret values are never shown back.",
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
                glib::ParamSpecUInt::builder("connect-timeout")
                    .nick("Connect timeout")
                    .blurb(
                        "Milliseconds to wait for the brokers when starting, e.g. 10000; then \
                         the element fails with the reason.",
                    )
                    .minimum(1)
                    .default_value(common::DEFAULT_CONNECT_TIMEOUT_MS)
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
                         gaps, rebalances, records in flight downstream (not released yet), \
                         records whose output failed downstream, and partitions assigned.",
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
            "brokers" => {
                settings.brokers = value
                    .get::<Option<String>>()
                    .unwrap()
                    .unwrap_or_else(|| common::DEFAULT_BROKERS.to_string())
            }
            "topic" => settings.topic = value.get().unwrap(),
            "group-id" => {
                settings.group_id = value
                    .get::<Option<String>>()
                    .unwrap()
                    .filter(|g| !g.is_empty())
            }
            "start-from" => {
                settings.start_from = value
                    .get::<Option<String>>()
                    .unwrap()
                    .unwrap_or_else(|| DEFAULT_START_FROM.to_string());
                if let Err(err) = settings.start_from.parse::<StartFrom>() {
                    gst::error!(CAT, imp = self, "{err}");
                }
            }
            "config" => {
                settings.config = common::parse_config(value.get::<Option<&str>>().unwrap());
                if let Err(err) = &settings.config {
                    gst::error!(CAT, imp = self, "Invalid config: {err}");
                }
            }
            "caps" => settings.caps = value.get().unwrap(),
            "stop-on-eos" => settings.stop_on_eos = value.get().unwrap(),
            "on-bad-record" => settings.on_bad_record = value.get().unwrap(),
            "commit-after" => settings.commit_after = value.get().unwrap(),
            "connect-timeout" => settings.connect_timeout_ms = value.get().unwrap(),
            "latency" => settings.latency_ms = value.get().unwrap(),
            _ => unreachable!(),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        match pspec.name() {
            "brokers" => settings.brokers.to_value(),
            "topic" => settings.topic.to_value(),
            "group-id" => settings.group_id.to_value(),
            "start-from" => settings.start_from.to_value(),
            "config" => common::shown_config(&settings.config).to_value(),
            "caps" => settings.caps.to_value(),
            "stop-on-eos" => settings.stop_on_eos.to_value(),
            "on-bad-record" => settings.on_bad_record.to_value(),
            "commit-after" => settings.commit_after.to_value(),
            "connect-timeout" => settings.connect_timeout_ms.to_value(),
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

/// What became of one record.
enum Outcome {
    Push {
        buffer: gst::Buffer,
        caps: Option<(String, gst::Caps)>,
    },
    /// Nothing to push (a delta unit before the first keyframe, an end-of-stream record).
    Consumed,
    /// The last open stream ended and `stop-on-eos` is on.
    EndOfStream,
}

impl KafkaSrc {
    /// EOS goes downstream: the buffer handed out last has been pushed.
    fn end_of_stream(&self) {
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            state.pending_pushed(&self.stats.lock().unwrap());
            state.tracker().end_of_stream();
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
        gst::Structure::builder("kafkasrc-stats")
            .field("records-received", load(&stats.records))
            .field("bytes-received", load(&stats.bytes))
            .field("buffers-pushed", load(&stats.buffers_pushed))
            .field("delta-units-skipped", load(&stats.delta_units_skipped))
            .field("bad-records", load(&stats.bad_records))
            .field("eos-records", load(&stats.eos_records))
            .field("sequence-gaps", load(&stats.sequence_gaps))
            .field("rebalances", load(&stats.rebalances))
            .field("records-in-flight", in_flight)
            .field("records-failed-downstream", failed_downstream)
            .field(
                "partitions-assigned",
                stats.partitions_assigned.load(Ordering::Relaxed),
            )
            .build()
    }

    fn start_offsets(
        consumer: &BaseConsumer<SrcContext>,
        topic: &str,
        partitions: usize,
        start_from: StartFrom,
        timeout: Duration,
    ) -> Result<HashMap<i32, Offset>, String> {
        let partitions = 0..partitions as i32;
        Ok(match start_from {
            StartFrom::Committed => HashMap::new(),
            StartFrom::Earliest => partitions.map(|p| (p, Offset::Beginning)).collect(),
            StartFrom::Latest => partitions.map(|p| (p, Offset::End)).collect(),
            StartFrom::Time(ms) => {
                let mut tpl = TopicPartitionList::new();
                for p in partitions {
                    tpl.add_partition_offset(topic, p, Offset::Offset(ms))
                        .map_err(|e| e.to_string())?;
                }
                let found = consumer
                    .offsets_for_times(tpl, timeout)
                    .map_err(|e| format!("could not look up offsets for time {ms} ms: {e}"))?;
                found
                    .elements()
                    .iter()
                    .map(|e| {
                        // No record at or after the time: start at the end.
                        let offset = match e.offset() {
                            Offset::Offset(o) => Offset::Offset(o),
                            _ => Offset::End,
                        };
                        (e.partition(), offset)
                    })
                    .collect()
            }
        })
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

    /// Turns one record into an outcome; `Err(text)` for a bad record.
    fn read_record(
        &self,
        state: &mut Streams,
        message: &BorrowedMessage<'_>,
    ) -> Result<Outcome, String> {
        let payload = message.payload().unwrap_or_default();
        let partition = message.partition();
        let envelope = match message.headers() {
            Some(headers) => Envelope::from_headers(headers.iter().map(|h| (h.key, h.value))),
            None => Ok(None),
        }
        .map_err(|e| e.to_string())?;

        let Some(envelope) = envelope else {
            return self.read_plain_record(state, message, payload);
        };

        // A bad record must not register its stream: validate before any bookkeeping.
        let caps = if envelope.kind == RecordKind::Buffer {
            let caps = match (&envelope.caps, &state.current_caps) {
                (Some(text), Some((current, caps))) if text == current => {
                    (text.clone(), caps.clone())
                }
                (Some(text), _) => {
                    let caps = gst::Caps::from_str(text)
                        .map_err(|_| format!("header gkv-caps '{text}' is not valid caps"))?;
                    if !caps.is_fixed() {
                        return Err(format!("header gkv-caps '{text}' is not fixed caps"));
                    }
                    (text.clone(), caps)
                }
                (None, _) => match &state.fallback_caps {
                    Some(caps) => (caps.to_string(), caps.clone()),
                    None => {
                        return Err(
                            "record has an envelope but no gkv-caps header; set the caps property"
                                .into(),
                        );
                    }
                },
            };
            check_payload(&caps.1, payload)?;
            Some(caps)
        } else {
            None
        };
        let detections = envelope
            .detections
            .as_deref()
            .map(|json| {
                FrameDetections::from_json(json.as_bytes())
                    .map_err(|e| format!("header gkv-detections: {e}"))
            })
            .transpose()?;

        let stream = state
            .by_id
            .entry(envelope.stream_id.clone())
            .or_insert_with(|| StreamState {
                partition,
                next_seq: envelope.seq,
                synced: false,
                ts_offset: None,
                ended: false,
            });
        let mut discont = false;
        if envelope.seq != stream.next_seq {
            gst::debug!(
                CAT,
                imp = self,
                "Stream {}: seq {} where {} was expected",
                envelope.stream_id,
                envelope.seq,
                stream.next_seq
            );
            self.stats
                .lock()
                .unwrap()
                .sequence_gaps
                .fetch_add(1, Ordering::Relaxed);
            discont = true;
        }
        stream.next_seq = envelope.seq.wrapping_add(1);
        stream.partition = partition;

        let Some(caps) = caps else {
            self.stats
                .lock()
                .unwrap()
                .eos_records
                .fetch_add(1, Ordering::Relaxed);
            stream.ended = true;
            gst::info!(CAT, imp = self, "Stream {} ended", envelope.stream_id);
            let all_ended = state.by_id.values().all(|s| s.ended);
            return Ok(if state.stop_on_eos && all_ended {
                Outcome::EndOfStream
            } else {
                Outcome::Consumed
            });
        };
        stream.ended = false;

        if !stream.synced {
            if envelope.flags.contains(Flags::DELTA_UNIT) {
                self.stats
                    .lock()
                    .unwrap()
                    .delta_units_skipped
                    .fetch_add(1, Ordering::Relaxed);
                gst::trace!(
                    CAT,
                    imp = self,
                    "Stream {}: skipping delta unit {} before the first keyframe",
                    envelope.stream_id,
                    envelope.seq
                );
                return Ok(Outcome::Consumed);
            }
            stream.synced = true;
            discont = true;
        }

        let now = self
            .obj()
            .current_running_time()
            .map_or(0, |t| t.nseconds()) as i128;
        let reference = envelope.dts.or(envelope.pts);
        let ts_offset = *stream
            .ts_offset
            .get_or_insert_with(|| now - reference.map_or(now, |r| r as i128));
        let shift = |t: Option<u64>| {
            // Clamped below GST_CLOCK_TIME_NONE, which ClockTime refuses.
            t.map(|t| {
                let shifted = (t as i128 + ts_offset).clamp(0, (u64::MAX - 1) as i128);
                gst::ClockTime::from_nseconds(shifted as u64)
            })
        };

        let mut buffer = gst::Buffer::from_mut_slice(payload.to_vec());
        {
            let buffer = buffer.get_mut().unwrap();
            match reference {
                Some(_) => {
                    buffer.set_pts(shift(envelope.pts));
                    buffer.set_dts(shift(envelope.dts));
                }
                None => buffer.set_pts(gst::ClockTime::from_nseconds(now as u64)),
            }
            buffer.set_duration(envelope.duration.map(gst::ClockTime::from_nseconds));
            buffer.set_offset(envelope.seq);
            common::add_record_meta(
                buffer,
                &common::RecordOrigin {
                    topic: message.topic(),
                    partition,
                    offset: message.offset(),
                    key: message.key(),
                    stream: &envelope.stream_id,
                    seq: envelope.seq,
                },
            );
            let mut flags = common::buffer_flags(envelope.flags);
            flags.set(
                gst::BufferFlags::DISCONT,
                discont || flags.contains(gst::BufferFlags::DISCONT),
            );
            buffer.set_flags(flags);
            if let Some(pts) = envelope.pts {
                gst::ReferenceTimestampMeta::add(
                    buffer,
                    &gst::Caps::new_empty_simple(ORIGINAL_PTS_CAPS),
                    gst::ClockTime::from_nseconds(pts),
                    gst::ClockTime::NONE,
                );
            }
            // The capture time (older writers only had the sink time).
            if let Some(t) = envelope.capture_time_ns.or(envelope.sink_time_ns) {
                gst::ReferenceTimestampMeta::add(
                    buffer,
                    &gst::Caps::new_empty_simple(UNIX_TIME_CAPS),
                    gst::ClockTime::from_nseconds(t),
                    gst::ClockTime::NONE,
                );
            }
            if let Some(detections) = &detections {
                common::attach_detections(buffer, detections);
            }
        }
        Ok(Outcome::Push {
            buffer,
            caps: Some(caps),
        })
    }

    /// A record without envelope, e.g. from kafka-python: its value with the `caps`
    /// property, stamped with its arrival time.
    fn read_plain_record(
        &self,
        state: &mut Streams,
        message: &BorrowedMessage<'_>,
        payload: &[u8],
    ) -> Result<Outcome, String> {
        let Some(caps) = state.fallback_caps.clone() else {
            return Err(
                "record carries no gkv envelope; set the caps property (e.g. caps=image/jpeg) \
                 to read records written by other clients"
                    .into(),
            );
        };
        check_payload(&caps, payload)?;
        let now = self.obj().current_running_time();
        let mut buffer = gst::Buffer::from_mut_slice(payload.to_vec());
        {
            let buffer = buffer.get_mut().unwrap();
            buffer.set_pts(now);
            buffer.set_offset(message.offset() as u64);
            // Without envelope, a partition is one stream and the offset its sequence.
            common::add_record_meta(
                buffer,
                &common::RecordOrigin {
                    topic: message.topic(),
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key(),
                    stream: &format!("partition-{}", message.partition()),
                    seq: message.offset() as u64,
                },
            );
            if let Some(ms) = message.timestamp().to_millis().filter(|ms| *ms >= 0) {
                gst::ReferenceTimestampMeta::add(
                    buffer,
                    &gst::Caps::new_empty_simple(UNIX_TIME_CAPS),
                    gst::ClockTime::from_mseconds(ms as u64),
                    gst::ClockTime::NONE,
                );
            }
        }
        Ok(Outcome::Push {
            buffer,
            caps: Some((caps.to_string(), caps)),
        })
    }
}

/// Cheap checks that a value is what its caps say, so garbage is caught at the source
/// instead of in a decoder.
fn check_payload(caps: &gst::Caps, payload: &[u8]) -> Result<(), String> {
    if payload.is_empty() {
        return Err("record value is empty".into());
    }
    let Some(s) = caps.structure(0) else {
        return Ok(());
    };
    match s.name().as_str() {
        "image/jpeg" => check_jpeg(payload),
        kafkavision::detections::CAPS => FrameDetections::from_json(payload).map(|_| ()),
        "video/x-raw" => match gst_video::VideoInfo::from_caps(caps) {
            Ok(info) if payload.len() < info.size() => Err(format!(
                "value has {} bytes, but caps {}x{} {} need {}",
                payload.len(),
                info.width(),
                info.height(),
                info.format(),
                info.size()
            )),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// A whole JPEG: the SOI marker, a marker segment after it, and the EOI marker at the end
/// (zero padding after it allowed). Catches garbage and truncated frames, which decoders
/// would drop silently or decode half grey.
fn check_jpeg(payload: &[u8]) -> Result<(), String> {
    if !payload.starts_with(&[0xFF, 0xD8]) {
        return Err(
            "caps say image/jpeg but the value does not start with a JPEG SOI marker".into(),
        );
    }
    if payload.get(2) != Some(&0xFF) {
        return Err("JPEG SOI marker is not followed by a marker segment (corrupt data)".into());
    }
    let end = payload.iter().rposition(|b| *b != 0).unwrap_or(0);
    if end < 3 || payload[end - 1..=end] != [0xFF, 0xD9] {
        return Err(format!(
            "JPEG value of {} bytes does not end with an EOI marker (truncated?)",
            payload.len()
        ));
    }
    Ok(())
}

impl BaseSrcImpl for KafkaSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let Some(topic) = settings.topic.clone().filter(|t| !t.is_empty()) else {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ("No topic set; set the 'topic' property, e.g. topic=frames")
            ));
        };
        let user_config = settings.config.clone().map_err(|err| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                ("Invalid 'config' property: {err}")
            )
        })?;
        // Logged as written (`${NAME}`); the client gets the environment's values.
        let client_config = user_config.with_environment().map_err(|err| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                ("Invalid 'config' property: {err}")
            )
        })?;
        let start_from: StartFrom = settings
            .start_from
            .parse()
            .map_err(|err: String| gst::error_msg!(gst::ResourceError::Settings, ("{err}")))?;

        let reset = if start_from == StartFrom::Latest {
            "latest"
        } else {
            "earliest"
        };
        let mut defaults = vec![
            (
                "enable.auto.commit",
                if settings.group_id.is_some() {
                    "true"
                } else {
                    "false"
                },
            ),
            ("enable.auto.offset.store", "false"),
            ("auto.commit.interval.ms", "1000"),
            ("auto.offset.reset", reset),
            // Low latency while idle; a busy stream is fetched without waiting anyway.
            ("fetch.wait.max.ms", "20"),
            // Back within a second of a broker restart, not librdkafka's 10 s backoff.
            ("reconnect.backoff.max.ms", "1000"),
        ];
        // librdkafka's assign() needs a group id even when nothing is committed: a
        // throw-away one, with commits off, when no group was asked for.
        let private_group = format!("gst-kafka-vision-nogroup-{}", std::process::id());
        match &settings.group_id {
            Some(group) => defaults.push(("group.id", group)),
            None => defaults.push(("group.id", &private_group)),
        }
        let config = common::rdkafka_config(&settings.brokers, &defaults, &client_config);
        gst::info!(
            CAT,
            imp = self,
            "Starting: brokers={} topic={topic} group={:?} start-from={:?} config={}",
            settings.brokers,
            settings.group_id,
            start_from,
            user_config.redacted()
        );

        let stats = Arc::new(Stats::default());
        *self.stats.lock().unwrap() = stats.clone();
        let context = SrcContext {
            log: ClientLog::new(*CAT, self.obj().upcast_ref()),
            stats,
            first_offsets: Mutex::new(None),
            seen_partitions: Mutex::new(HashSet::new()),
            gained: Mutex::new(Vec::new()),
            tracker: OffsetTracker::new(),
        };
        let consumer: BaseConsumer<SrcContext> =
            config.create_with_context(context).map_err(|err| {
                gst::error_msg!(
                    gst::ResourceError::Settings,
                    ("Invalid Kafka consumer configuration: {err}")
                )
            })?;

        let timeout = Duration::from_millis(settings.connect_timeout_ms as u64);
        let partitions = common::check_topic(
            consumer.client(),
            &settings.brokers,
            &topic,
            timeout,
            || consumer.context().log.last_error(),
        )
        .map_err(|err| gst::error_msg!(gst::ResourceError::OpenRead, ("{err}")))?;
        let offsets = Self::start_offsets(&consumer, &topic, partitions, start_from, timeout)
            .map_err(|err| gst::error_msg!(gst::ResourceError::OpenRead, ("{err}")))?;

        let grouped = settings.group_id.is_some();
        let tracker = consumer.context().tracker.clone();
        tracker.watch_shutdown_of(self.obj().upcast_ref());
        *self.tracker.lock().unwrap() = Some(tracker);
        if grouped {
            *consumer.context().first_offsets.lock().unwrap() = Some(offsets);
            consumer.subscribe(&[&topic]).map_err(|err| {
                gst::error_msg!(
                    gst::ResourceError::OpenRead,
                    ("Could not subscribe to '{topic}': {err}")
                )
            })?;
        } else {
            let mut tpl = TopicPartitionList::new();
            for partition in 0..partitions as i32 {
                let offset = offsets
                    .get(&partition)
                    .copied()
                    .unwrap_or(Offset::Beginning);
                tpl.add_partition_offset(&topic, partition, offset)
                    .map_err(|err| gst::error_msg!(gst::ResourceError::OpenRead, ("{err}")))?;
            }
            consumer.assign(&tpl).map_err(|err| {
                gst::error_msg!(
                    gst::ResourceError::OpenRead,
                    ("Could not read '{topic}': {err}")
                )
            })?;
            let stats = self.stats.lock().unwrap().clone();
            stats
                .partitions_assigned
                .store(partitions as u32, Ordering::Relaxed);
        }
        gst::info!(
            CAT,
            imp = self,
            "Started: topic '{topic}' has {partitions} partition(s)"
        );

        *self.state.lock().unwrap() = Some(Started {
            consumer,
            topic,
            grouped,
            pending_push: None,
            on_bad_record: settings.on_bad_record,
            commit_after: settings.commit_after,
            fetch_limits: ["fetch.max.bytes", "max.partition.fetch.bytes"]
                .iter()
                .filter_map(|key| client_config.get(key).map(|v| format!("{key}={v}")))
                .reduce(|a, b| format!("{a}, {b}"))
                .map(|limits| (limits, timeout)),
            last_record: std::time::Instant::now(),
            streams: Streams {
                by_id: HashMap::new(),
                current_caps: None,
                fallback_caps: settings.caps,
                stop_on_eos: settings.stop_on_eos,
            },
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let Some(started) = self.state.lock().unwrap().take() else {
            return Ok(());
        };
        // The pending record's push may not have completed: it is not stored, so it is
        // read again after a restart (at-least-once).
        let grouped = started.grouped;
        if grouped {
            started.tracker().stopping();
            started.store_commit_points();
        }
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        // Closing a group member commits and leaves the group; with the broker gone that
        // can take long, so it runs aside and `stop` waits only a bounded time.
        std::thread::spawn(move || {
            if grouped {
                match started.consumer.commit_consumer_state(CommitMode::Sync) {
                    Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                    Err(err) => gst::warning!(*CAT, "Final commit failed: {err}"),
                }
            }
            drop(started);
            let _ = done_tx.send(());
        });
        if done_rx.recv_timeout(CLOSE_TIMEOUT).is_err() {
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
            .state
            .try_lock()
            .ok()
            .and_then(|s| {
                s.as_ref()
                    .and_then(|s| s.streams.current_caps.as_ref().map(|c| c.1.clone()))
            })
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
    fn create(
        &self,
        _buffer: Option<&mut gst::BufferRef>,
    ) -> Result<CreateSuccess, gst::FlowError> {
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else {
            gst::element_imp_error!(self, gst::CoreError::Failed, ("Not started"));
            return Err(gst::FlowError::Error);
        };
        let stats = self.stats.lock().unwrap().clone();

        // We are called again, so the previous buffer's push has returned.
        state.pending_pushed(&stats);

        loop {
            if state.grouped {
                state.store_commit_points();
            }
            if self.flushing.load(Ordering::SeqCst) {
                gst::debug!(CAT, imp = self, "Flushing");
                return Err(gst::FlowError::Flushing);
            }

            // A partition gained in a rebalance may carry streams joined mid-way: forget
            // them, so they wait for a keyframe and are re-timed.
            let gained = std::mem::take(&mut *state.consumer.context().gained.lock().unwrap());
            if !gained.is_empty() {
                state
                    .streams
                    .by_id
                    .retain(|_, s| !gained.contains(&s.partition));
            }

            let (partition, offset, result) = {
                let message = match state.consumer.poll(POLL_SLICE) {
                    None => {
                        if let Some(why) = state.undelivered_records() {
                            gst::element_imp_error!(self, gst::ResourceError::Read, ("{why}"));
                            return Err(gst::FlowError::Error);
                        }
                        continue;
                    }
                    Some(Ok(message)) => message,
                    Some(Err(err)) => {
                        if let KafkaError::MessageConsumption(
                            code @ (RDKafkaErrorCode::TopicAuthorizationFailed
                            | RDKafkaErrorCode::UnknownTopicOrPartition),
                        ) = err
                        {
                            gst::element_imp_error!(
                                self,
                                gst::ResourceError::Read,
                                ("Cannot read topic '{}': {code}", state.topic)
                            );
                            return Err(gst::FlowError::Error);
                        }
                        gst::warning!(CAT, imp = self, "Consumer error: {err}");
                        continue;
                    }
                };
                state.last_record = std::time::Instant::now();
                stats.records.fetch_add(1, Ordering::Relaxed);
                stats
                    .bytes
                    .fetch_add(message.payload_len() as u64, Ordering::Relaxed);
                let result = self.read_record(&mut state.streams, &message);
                (message.partition(), message.offset(), result)
            };

            match result {
                Err(why) => {
                    self.bad_record(state.on_bad_record, partition, offset, &why)?;
                    state.tracker().handled(partition, offset);
                }
                Ok(Outcome::Consumed) => state.tracker().handled(partition, offset),
                Ok(Outcome::EndOfStream) => {
                    state.tracker().handled(partition, offset);
                    state.store_commit_points();
                    gst::info!(CAT, imp = self, "Every stream has ended: EOS");
                    return Err(gst::FlowError::Eos);
                }
                Ok(Outcome::Push { mut buffer, caps }) => {
                    let caps = caps.filter(|(text, _)| {
                        state
                            .streams
                            .current_caps
                            .as_ref()
                            .is_none_or(|(current, _)| current != text)
                    });
                    // Caps nothing downstream takes would stop the pipeline, and a group
                    // would read the record again after every restart: one bad record.
                    if let Some((_, caps)) = &caps
                        && !self
                            .obj()
                            .static_pad("src")
                            .unwrap()
                            .peer_query_accept_caps(caps)
                    {
                        let why = format!("downstream does not accept caps {caps}");
                        self.bad_record(state.on_bad_record, partition, offset, &why)?;
                        state.tracker().handled(partition, offset);
                        continue;
                    }
                    state.pending_push = Some((partition, offset));
                    if state.grouped && state.commit_after == CommitAfter::Release {
                        let token = state.tracker().hand_out(partition, offset);
                        common::attach_release_token(buffer.make_mut(), token);
                    }
                    if let Some((text, caps)) = caps {
                        gst::debug!(CAT, imp = self, "New caps {caps}");
                        state.streams.current_caps = Some((text, caps.clone()));
                        drop(guard);
                        self.obj().set_caps(&caps).map_err(|_| {
                            gst::element_imp_error!(
                                self,
                                gst::CoreError::Negotiation,
                                ("Downstream does not accept caps {caps}")
                            );
                            gst::FlowError::NotNegotiated
                        })?;
                    }
                    return Ok(CreateSuccess::NewBuffer(buffer));
                }
            }
        }
    }
}

impl Started {
    /// The buffer handed out last has been pushed downstream: count it, and with
    /// `commit-after=push` its record is handled.
    fn pending_pushed(&mut self, stats: &Stats) {
        if let Some((partition, offset)) = self.pending_push.take() {
            stats.buffers_pushed.fetch_add(1, Ordering::Relaxed);
            if self.commit_after == CommitAfter::Push {
                self.tracker().handled(partition, offset);
            }
        }
    }

    /// With lowered fetch limits and no record for a while: a partition whose records are
    /// not arriving, described with the setting to raise.
    fn undelivered_records(&mut self) -> Option<String> {
        let (limits, after) = self.fetch_limits.as_ref()?;
        if self.last_record.elapsed() < *after {
            return None;
        }
        self.last_record = std::time::Instant::now();
        let positions = self.consumer.position().ok()?;
        positions.elements().iter().find_map(|e| {
            let (low, high) = self
                .consumer
                .fetch_watermarks(&self.topic, e.partition(), Duration::from_secs(2))
                .ok()?;
            let position = match e.offset() {
                Offset::Offset(o) => o,
                _ => low,
            };
            (high > position).then(|| {
                format!(
                    "Partition {} of '{}' has records at offsets {position}..{high} that the \
                     broker does not deliver; one is probably larger than the fetch limits \
                     ({limits}): raise fetch.max.bytes / max.partition.fetch.bytes in 'config'",
                    e.partition(),
                    self.topic
                )
            })
        })
    }

    fn tracker(&self) -> &Arc<OffsetTracker> {
        &self.consumer.context().tracker
    }

    /// Hands every partition's new commit point to the consumer's next (auto-)commit.
    fn store_commit_points(&self) {
        for (partition, offset) in self.tracker().take_commit_points() {
            gst::trace!(CAT, "Partition {partition} handled up to offset {offset}");
            store_offset(&self.consumer, &self.topic, partition, offset);
        }
    }
}

fn store_offset<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    offset: i64,
) {
    if let Err(err) = consumer.store_offset(topic, partition, offset) {
        // E.g. the partition was revoked meanwhile; its new owner reads it again.
        gst::debug!(
            CAT,
            "Could not store offset {offset} of partition {partition}: {err}"
        );
    }
}
