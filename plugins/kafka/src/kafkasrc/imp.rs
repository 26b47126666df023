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
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

use super::consumer::{self, FetchLimits, SrcContext, StartFrom, StartFromSetting, Stats};
use super::streams::{Outcome, Streams};
use crate::client::{ClientBlurbs, ClientHealth, ClientLog, ClientSettings};
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

#[derive(Debug, Clone)]
struct Settings {
    client: ClientSettings,
    group_id: Option<String>,
    start_from: StartFromSetting,
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
            caps: None,
            stop_on_eos: DEFAULT_STOP_ON_EOS,
            on_bad_record: DEFAULT_ON_BAD_RECORD,
            commit_after: DEFAULT_COMMIT_AFTER,
            latency_ms: DEFAULT_LATENCY_MS,
        }
    }
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
    /// Set when `config` lowers the fetch limits.
    fetch_limits: Option<FetchLimits>,
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
                         gaps, rebalances, records in flight downstream (not released yet), \
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
            .field("broker-down-ms", self.health.broker_down_ms())
            .field("consumer-lag", self.health.consumer_lag())
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
            // Live video: a dead group member's partitions go to the others after 6 s
            // (Kafka's smallest allowed session), not librdkafka's 45 s of frames nobody
            // reads. Heartbeats come from librdkafka's own thread, so a slow pipeline does
            // not count as dead.
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "1000"),
        ];
        // librdkafka's assign() needs a group id even when nothing is committed: a
        // throw-away one, with commits off, when no group was asked for.
        let private_group = format!("gst-kafka-vision-nogroup-{}", std::process::id());
        match &settings.group_id {
            Some(group) => defaults.push(("group.id", group)),
            None => defaults.push(("group.id", &private_group)),
        }
        let config = settings.client.rdkafka_config(&start, &defaults);
        gst::info!(
            CAT,
            imp = self,
            "Starting: brokers={} topic={topic} group={:?} start-from={:?} config={}",
            settings.client.brokers,
            settings.group_id,
            start_from,
            start.user.redacted()
        );

        let stats = Arc::new(Stats::default());
        *self.stats.lock().unwrap() = stats.clone();
        let context = SrcContext {
            log: ClientLog::new(*CAT, self.obj().upcast_ref(), {
                self.health.clear();
                self.health.clone()
            }),
            stats: stats.clone(),
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

        let timeout = start.connect_timeout;
        let partitions = crate::client::check_topic(
            consumer.client(),
            &settings.client.brokers,
            &topic,
            timeout,
            &crate::client::ELEMENT_SETTINGS,
            || {
                // Serves the error callbacks; nothing is assigned yet, so no record comes.
                let _ = consumer.poll(Duration::ZERO);
                consumer.context().log.last_error()
            },
        )
        .map_err(|err| gst::error_msg!(gst::ResourceError::OpenRead, ("{err}")))?;
        let offsets = consumer::start_offsets(&consumer, &topic, partitions, start_from, timeout)
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

        let streams = Streams::new(
            &topic,
            settings.caps,
            settings.stop_on_eos,
            stats,
            self.obj().name(),
        );
        *self.pushed_caps.lock().unwrap() = None;
        *self.state.lock().unwrap() = Some(Started {
            consumer,
            topic,
            grouped,
            pending_push: None,
            on_bad_record: settings.on_bad_record,
            commit_after: settings.commit_after,
            fetch_limits: ["fetch.max.bytes", "max.partition.fetch.bytes"]
                .iter()
                .filter_map(|key| start.client.get(key).map(|v| format!("{key}={v}")))
                .reduce(|a, b| format!("{a}, {b}"))
                .map(|limits| FetchLimits {
                    limits,
                    after: timeout,
                    last_record: std::time::Instant::now(),
                }),
            streams,
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
        state.pending_pushed(&self.stats.lock().unwrap());

        loop {
            self.before_poll(state)?;
            let (partition, offset, outcome) = {
                let Some(message) =
                    self.poll(&state.consumer, &state.topic, &mut state.fetch_limits)?
                else {
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
                    state.hand_out(partition, offset, buffer.make_mut());
                    if let Some(caps) = new_caps {
                        drop(guard);
                        self.set_new_caps(&caps)?;
                    }
                    return Ok(CreateSuccess::NewBuffer(buffer));
                }
                Outcome::Skip => state.tracker().handled(partition, offset),
                Outcome::Bad(why) => {
                    self.bad_record(state.on_bad_record, partition, offset, &why)?;
                    state.tracker().handled(partition, offset);
                }
                Outcome::End => {
                    state.tracker().handled(partition, offset);
                    state.store_commit_points();
                    gst::info!(CAT, imp = self, "Every stream has ended: EOS");
                    return Err(gst::FlowError::Eos);
                }
            }
        }
    }
}

impl KafkaSrc {
    /// Between records: hands on the commit points, notices flushing, and forgets the
    /// streams of partitions gained in a rebalance (they may be joined mid-way, so they
    /// wait for a keyframe and are re-timed).
    fn before_poll(&self, state: &mut Started) -> Result<(), gst::FlowError> {
        if state.grouped {
            state.store_commit_points();
        }
        if self.flushing.load(Ordering::SeqCst) {
            gst::debug!(CAT, imp = self, "Flushing");
            return Err(gst::FlowError::Flushing);
        }
        let gained = std::mem::take(&mut *state.consumer.context().gained.lock().unwrap());
        if !gained.is_empty() {
            state.streams.forget_partitions(&gained);
        }
        Ok(())
    }

    /// Waits up to `POLL_SLICE` for a record. `Err` for an error the pipeline cannot go
    /// on from (the topic cannot be read, records the fetch limits keep back).
    fn poll<'c>(
        &self,
        consumer: &'c BaseConsumer<SrcContext>,
        topic: &str,
        fetch_limits: &mut Option<FetchLimits>,
    ) -> Result<Option<BorrowedMessage<'c>>, gst::FlowError> {
        match consumer.poll(POLL_SLICE) {
            None => {
                let why = fetch_limits
                    .as_mut()
                    .and_then(|limits| limits.undelivered(consumer, topic, &self.flushing));
                if let Some(why) = why {
                    gst::element_imp_error!(self, gst::ResourceError::Read, ("{why}"));
                    return Err(gst::FlowError::Error);
                }
                Ok(None)
            }
            Some(Ok(message)) => {
                if let Some(limits) = fetch_limits {
                    limits.last_record = std::time::Instant::now();
                }
                Ok(Some(message))
            }
            Some(Err(KafkaError::MessageConsumption(
                code @ (RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::UnknownTopicOrPartition),
            ))) => {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Read,
                    ("Cannot read topic '{topic}': {code}")
                );
                Err(gst::FlowError::Error)
            }
            Some(Err(err)) => {
                gst::warning!(CAT, imp = self, "Consumer error: {err}");
                Ok(None)
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

impl Started {
    /// The record's buffer is handed to the base class: its push has returned when
    /// `create` is called again; with `commit-after=release` the buffer carries the token
    /// that marks the record handled once downstream released it.
    fn hand_out(&mut self, partition: i32, offset: i64, buffer: &mut gst::BufferRef) {
        self.pending_push = Some((partition, offset));
        if self.grouped && self.commit_after == CommitAfter::Release {
            let token = self.tracker().hand_out(partition, offset);
            token.attach(buffer);
        }
    }

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

    fn tracker(&self) -> &Arc<OffsetTracker> {
        &self.consumer.context().tracker
    }

    /// Hands every partition's new commit point to the consumer's next (auto-)commit.
    fn store_commit_points(&self) {
        for (partition, offset) in self.tracker().take_commit_points() {
            gst::trace!(CAT, "Partition {partition} handled up to offset {offset}");
            consumer::store_offset(&self.consumer, &self.topic, partition, offset);
        }
    }
}
