// SPDX-License-Identifier: MIT OR Apache-2.0
//! `kafkasrc`'s consumer: opening it (defaults, topic check, where partitions start), what
//! the group's rebalance callbacks do with the offsets in flight, handing records out and
//! storing commit points, closing it, and noticing records the fetch limits keep from
//! arriving.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use kafkavision::client_config::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};

use super::imp::{CAT, CommitAfter};
use super::streams::Record;
use super::window::{Scanned, keyframe_start};
use crate::client::{ClientLog, ClientSettings, StartConfig};
use crate::release::OffsetTracker;

/// Where to start reading partitions that have no committed offset to go on from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
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
            other => parse_time_ms(other).map(StartFrom::Time).ok_or_else(|| {
                format!(
                    "start-from='{other}' is not committed, earliest, latest, a Unix time in ms \
                     (e.g. 1763700000000) or an ISO-8601 time (e.g. 2026-11-21T10:00:00Z)"
                )
            }),
        }
    }
}

/// A time as Unix ms (`1763700000000`) or ISO-8601 (`2026-11-21T10:00:00Z`).
fn parse_time_ms(text: &str) -> Option<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    glib::DateTime::from_iso8601(text, None)
        .ok()
        .map(|t| t.to_unix() * 1000 + t.microsecond() as i64 / 1000)
}

/// The `stop-at` property as set, and the time it says, parsed when set like
/// `start-from`; empty for no stop time.
#[derive(Debug, Clone)]
pub struct StopAtSetting {
    pub text: Option<String>,
    pub parsed: Result<Option<i64>, String>,
}

impl StopAtSetting {
    pub fn new(text: Option<&str>) -> StopAtSetting {
        let text = text.map(str::trim).filter(|t| !t.is_empty());
        StopAtSetting {
            text: text.map(str::to_string),
            parsed: match text {
                None => Ok(None),
                Some(text) => parse_time_ms(text).map(Some).ok_or_else(|| {
                    format!(
                        "stop-at='{text}' is not a Unix time in ms (e.g. 1763700000000) or an \
                         ISO-8601 time (e.g. 2026-11-21T10:00:30Z)"
                    )
                }),
            },
        }
    }
}

/// The `start-from` property as set, and where it says to start: parsed once, when set,
/// so a bad value is logged at once and fails `start`.
#[derive(Debug, Clone)]
pub struct StartFromSetting {
    pub text: String,
    pub parsed: Result<StartFrom, String>,
}

impl StartFromSetting {
    pub fn new(text: &str) -> StartFromSetting {
        StartFromSetting {
            text: text.to_string(),
            parsed: text.parse(),
        }
    }
}

#[derive(Default)]
pub struct Stats {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub buffers_pushed: AtomicU64,
    pub delta_units_skipped: AtomicU64,
    pub bad_records: AtomicU64,
    pub eos_records: AtomicU64,
    pub sequence_gaps: AtomicU64,
    /// Skipped for not having the `key` asked for.
    pub records_other_key: AtomicU64,
    /// Skipped for being past `stop-at`.
    pub records_past_stop: AtomicU64,
    /// Frames seen before in their stream, and frames that came after later ones: both
    /// skipped (either would take its stream back in time).
    pub frames_duplicated: AtomicU64,
    pub frames_out_of_order: AtomicU64,
    /// Skipped for being older than `max-age` on arrival.
    pub records_too_old: AtomicU64,
    /// Per camera: frames missing, duplicated, out of order, latency to arrival.
    pub cameras: Mutex<super::sequence::Cameras>,
    pub rebalances: AtomicU64,
    pub partitions_assigned: AtomicU32,
}

/// Consumer callbacks: log routing, and partition assignments for the streaming thread.
pub struct SrcContext {
    pub log: ClientLog,
    pub stats: Arc<Stats>,
    /// Start offsets for partitions assigned for the first time in this run.
    pub first_offsets: Mutex<Option<HashMap<i32, Offset>>>,
    pub seen_partitions: Mutex<HashSet<i32>>,
    /// Partitions gained since the streaming thread last looked.
    pub gained: Mutex<Vec<i32>>,
    /// Records handed downstream and not yet released.
    pub tracker: Arc<OffsetTracker>,
}

impl SrcContext {
    /// A fresh context for one run: nothing assigned, handed out or gained yet.
    pub fn new(log: ClientLog, stats: Arc<Stats>) -> SrcContext {
        SrcContext {
            log,
            stats,
            first_offsets: Mutex::new(None),
            seen_partitions: Mutex::new(HashSet::new()),
            gained: Mutex::new(Vec::new()),
            tracker: OffsetTracker::new(),
        }
    }
}

impl ClientContext for SrcContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.log.log(level, fac, log_message)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason)
    }

    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        self.log.stats(statistics)
    }
}

impl ConsumerContext for SrcContext {
    /// Eager rebalancing (librdkafka's default) revokes every partition and assigns the new
    /// set; cooperative (`partition.assignment.strategy=cooperative-sticky`) revokes and
    /// assigns only the partitions that move, so the others keep flowing meanwhile.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        self.stats.rebalances.fetch_add(1, Ordering::Relaxed);
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut seen = self.seen_partitions.lock().unwrap();
                let first_offsets = self.first_offsets.lock().unwrap();
                let topic = tpl.elements().first().map(|e| e.topic().to_string());
                for partition in &partitions {
                    if seen.insert(*partition)
                        && let (Some(topic), Some(offset)) = (
                            &topic,
                            first_offsets.as_ref().and_then(|m| m.get(partition)),
                        )
                    {
                        let _ = tpl.set_partition_offset(topic, *partition, *offset);
                    }
                }
                let assigned = if cooperative {
                    self.tracker.forget(&partitions);
                    consumer.incremental_assign(tpl)
                } else {
                    self.tracker.reset();
                    self.stats.partitions_assigned.store(0, Ordering::Relaxed);
                    consumer.assign(tpl)
                };
                if let Err(e) = assigned {
                    gst::error!(CAT, "Could not take the assigned partitions: {e}");
                }
                self.stats
                    .partitions_assigned
                    .fetch_add(partitions.len() as u32, Ordering::Relaxed);
                gst::info!(CAT, "Assigned partitions {partitions:?}");
                self.gained.lock().unwrap().extend(partitions);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                gst::info!(CAT, "Partitions {partitions:?} revoked");
                // With auto commit on, librdkafka commits the stored offsets here: store what
                // was released so far; what is still in flight is read again by the next
                // owner.
                if let Some(topic) = tpl.elements().first().map(|e| e.topic().to_string()) {
                    for (partition, offset) in self.tracker.take_commit_points() {
                        store_offset(consumer, &topic, partition, offset);
                    }
                }
                self.give_up(consumer, tpl, &partitions, cooperative);
            }
            other => {
                gst::warning!(CAT, "Rebalance error: {}", RDKafkaErrorCode::from(other));
                self.give_up(consumer, tpl, &partitions, cooperative);
            }
        }
    }
}

impl SrcContext {
    fn give_up(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &TopicPartitionList,
        partitions: &[i32],
        cooperative: bool,
    ) {
        let given_up = if cooperative {
            self.tracker.forget(partitions);
            let left = self.stats.partitions_assigned.load(Ordering::Relaxed);
            self.stats.partitions_assigned.store(
                left.saturating_sub(partitions.len() as u32),
                Ordering::Relaxed,
            );
            consumer.incremental_unassign(tpl)
        } else {
            self.tracker.reset();
            self.stats.partitions_assigned.store(0, Ordering::Relaxed);
            consumer.unassign()
        };
        if let Err(e) = given_up {
            gst::warning!(CAT, "Could not give up the revoked partitions: {e}");
        }
    }
}

/// A started source's consumer, subscribed to its topic (with a group) or assigned every
/// partition (without), and the records it handed downstream.
pub struct TopicConsumer {
    pub consumer: BaseConsumer<SrcContext>,
    pub topic: String,
    /// Has a group id: offsets are committed.
    pub grouped: bool,
    commit_after: CommitAfter,
    /// The record whose buffer was handed to the base class last; its push has returned
    /// when `create` is called again.
    pending_push: Option<(i32, i64)>,
    /// Set when `config` lowers the fetch limits.
    pub fetch_limits: Option<FetchLimits>,
}

/// Why a poll gave no record.
pub enum NoRecord {
    /// None arrived in time.
    Idle,
    /// An error the client recovers from (e.g. a broker connection lost).
    ClientError(KafkaError),
    /// The topic cannot be read, or records the fetch limits keep back: reading cannot go
    /// on. Says what to change.
    Unreadable(String),
}

/// What opening the consumer takes from the element's settings.
pub struct OpenSettings<'a> {
    pub client: &'a ClientSettings,
    pub start: &'a StartConfig,
    pub group_id: Option<&'a str>,
    pub start_from: StartFrom,
    /// With a start time: each stream starts at its last keyframe at or before it, among
    /// records of this key when there is one.
    pub keyframe_before: Option<Option<&'a [u8]>>,
    pub commit_after: CommitAfter,
}

impl TopicConsumer {
    /// Creates the consumer, checks its brokers and topic, and subscribes or assigns the
    /// partitions at their start offsets. Returns it with the topic's partition count.
    pub fn open(
        settings: OpenSettings<'_>,
        context: SrcContext,
    ) -> Result<(TopicConsumer, usize), gst::ErrorMessage> {
        let OpenSettings {
            client,
            start,
            group_id,
            start_from,
            keyframe_before,
            commit_after,
        } = settings;
        let topic = start.topic.clone();
        let grouped = group_id.is_some();
        // librdkafka's assign() needs a group id even when nothing is committed: a
        // throw-away one, with commits off, when no group was asked for.
        let private_group = format!("gst-kafka-vision-nogroup-{}", std::process::id());
        let defaults = [
            ("enable.auto.commit", if grouped { "true" } else { "false" }),
            ("enable.auto.offset.store", "false"),
            ("auto.commit.interval.ms", "1000"),
            (
                "auto.offset.reset",
                if start_from == StartFrom::Latest {
                    "latest"
                } else {
                    "earliest"
                },
            ),
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
            ("group.id", group_id.unwrap_or(&private_group)),
        ];
        let consumer: BaseConsumer<SrcContext> = client
            .rdkafka_config(start, &defaults)
            .create_with_context(context)
            .map_err(|err| {
                gst::error_msg!(
                    gst::ResourceError::Settings,
                    ("Invalid Kafka consumer configuration: {err}")
                )
            })?;

        let open_read =
            |err: &dyn std::fmt::Display| gst::error_msg!(gst::ResourceError::OpenRead, ("{err}"));
        let timeout = start.connect_timeout;
        let partitions = crate::client::check_topic(
            consumer.client(),
            &client.brokers,
            &topic,
            timeout,
            &crate::client::ELEMENT_SETTINGS,
            || {
                // Serves the error callbacks; nothing is assigned yet, so no record comes.
                let _ = consumer.poll(Duration::ZERO);
                consumer.context().log.last_error()
            },
        )
        .map_err(|err| open_read(&err))?;
        let mut offsets = start_offsets(&consumer, &topic, partitions, start_from, timeout)
            .map_err(|err| open_read(&err))?;
        if let (StartFrom::Time(time_ms), Some(key)) = (start_from, keyframe_before) {
            let search = KeyframeSearch {
                client,
                start,
                time_ms,
                key,
            };
            search
                .move_back(&mut offsets)
                .map_err(|err| open_read(&err))?;
        }

        if grouped {
            *consumer.context().first_offsets.lock().unwrap() = Some(offsets);
            consumer
                .subscribe(&[&topic])
                .map_err(|err| open_read(&format!("Could not subscribe to '{topic}': {err}")))?;
        } else {
            let mut tpl = TopicPartitionList::new();
            for partition in 0..partitions as i32 {
                let offset = offsets
                    .get(&partition)
                    .copied()
                    .unwrap_or(Offset::Beginning);
                tpl.add_partition_offset(&topic, partition, offset)
                    .map_err(|err| open_read(&err))?;
            }
            consumer
                .assign(&tpl)
                .map_err(|err| open_read(&format!("Could not read '{topic}': {err}")))?;
            consumer
                .context()
                .stats
                .partitions_assigned
                .store(partitions as u32, Ordering::Relaxed);
        }
        let opened = TopicConsumer {
            consumer,
            topic,
            grouped,
            commit_after,
            pending_push: None,
            fetch_limits: FetchLimits::lowered(&start.client, timeout),
        };
        Ok((opened, partitions))
    }

    /// Waits up to `timeout` for the next record. While none comes, checks the lowered
    /// fetch limits (giving up when `flushing` is set).
    pub fn poll(
        &mut self,
        timeout: Duration,
        flushing: &AtomicBool,
    ) -> Result<BorrowedMessage<'_>, NoRecord> {
        match self.consumer.poll(timeout) {
            Some(Ok(message)) => {
                if let Some(limits) = &mut self.fetch_limits {
                    limits.last_record = Instant::now();
                }
                Ok(message)
            }
            None => match self
                .fetch_limits
                .as_mut()
                .and_then(|limits| limits.undelivered(&self.consumer, &self.topic, flushing))
            {
                Some(why) => Err(NoRecord::Unreadable(why)),
                None => Err(NoRecord::Idle),
            },
            Some(Err(KafkaError::MessageConsumption(
                code @ (RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::UnknownTopicOrPartition),
            ))) => Err(NoRecord::Unreadable(format!(
                "Cannot read topic '{}': {code}",
                self.topic
            ))),
            Some(Err(err)) => Err(NoRecord::ClientError(err)),
        }
    }

    /// Records handed downstream and not yet released.
    pub fn tracker(&self) -> &Arc<OffsetTracker> {
        &self.consumer.context().tracker
    }

    /// Partitions gained in a rebalance since the last call.
    pub fn take_gained(&self) -> Vec<i32> {
        std::mem::take(&mut *self.consumer.context().gained.lock().unwrap())
    }

    /// The record's buffer goes to the base class: its push has returned when `create` is
    /// called again; with `commit-after=release` the buffer carries the token that marks
    /// the record handled once downstream released it.
    pub fn hand_out(&mut self, partition: i32, offset: i64, buffer: &mut gst::BufferRef) {
        self.pending_push = Some((partition, offset));
        if self.grouped && self.commit_after == CommitAfter::Release {
            let token = self.tracker().hand_out(partition, offset);
            token.attach(buffer);
        }
    }

    /// The buffer handed out last has been pushed downstream: count it, and with
    /// `commit-after=push` its record is handled.
    pub fn pending_pushed(&mut self) {
        if let Some((partition, offset)) = self.pending_push.take() {
            let stats = &self.consumer.context().stats;
            stats.buffers_pushed.fetch_add(1, Ordering::Relaxed);
            if self.commit_after == CommitAfter::Push {
                self.tracker().handled(partition, offset);
            }
        }
    }

    /// Hands every partition's new commit point to the consumer's next (auto-)commit.
    pub fn store_commit_points(&self) {
        for (partition, offset) in self.tracker().take_commit_points() {
            gst::trace!(CAT, "Partition {partition} handled up to offset {offset}");
            store_offset(&self.consumer, &self.topic, partition, offset);
        }
    }

    /// Stores what was released, then commits and leaves the group; with the broker gone
    /// that can take long, so it runs aside. False when it did not finish in `timeout`.
    pub fn close(self, timeout: Duration) -> bool {
        // The pending record's push may not have completed: it is not stored, so it is
        // read again after a restart (at-least-once).
        if self.grouped {
            self.tracker().stopping();
            self.store_commit_points();
        }
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if self.grouped {
                match self.consumer.commit_consumer_state(CommitMode::Sync) {
                    Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                    Err(err) => gst::warning!(CAT, "Final commit failed: {err}"),
                }
            }
            drop(self);
            let _ = done_tx.send(());
        });
        done_rx.recv_timeout(timeout).is_ok()
    }
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

/// Records read before the first record at the start time, at first; the span grows
/// fourfold while a stream open at the time has no keyframe in it.
const FIRST_SPAN: i64 = 256;
/// Records are read this far past the start time: a frame captured before it may reach
/// the broker after frames of other cameras captured after it.
const LATE_MS: i64 = 5_000;
/// A stream whose keyframes are further apart than this is not searched further back: it
/// starts at its first keyframe after the time, as without the search.
const SEARCH_BACK_MS: i64 = 60_000;

/// Moves start offsets back from the first record at a start time to each stream's last
/// keyframe at or before it (`start-keyframe=previous`). Kafka's time lookup finds the
/// first record at or after a time, and a stream joined there waits for its next
/// keyframe, up to a GOP late: the search reads the records just before, with a consumer
/// of its own, growing the span until every stream open at the time has a keyframe.
struct KeyframeSearch<'a> {
    client: &'a ClientSettings,
    start: &'a StartConfig,
    time_ms: i64,
    /// Only this key's streams are searched for.
    key: Option<&'a [u8]>,
}

impl KeyframeSearch<'_> {
    fn move_back(&self, offsets: &mut HashMap<i32, Offset>) -> Result<(), String> {
        let group = format!("gst-kafka-vision-search-{}", std::process::id());
        let defaults = [
            ("group.id", group.as_str()),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("fetch.wait.max.ms", "20"),
        ];
        let searcher: BaseConsumer = self
            .client
            .rdkafka_config(self.start, &defaults)
            .create()
            .map_err(|err| format!("Invalid Kafka consumer configuration: {err}"))?;
        for (&partition, offset) in offsets.iter_mut() {
            if let Some(found) = self.search(&searcher, partition, *offset)? {
                gst::debug!(
                    CAT,
                    "Partition {partition}: starting at offset {found}, a keyframe at or \
                     before {} ms (the time lookup gave {offset:?})",
                    self.time_ms
                );
                *offset = Offset::Offset(found);
            }
        }
        Ok(())
    }

    /// The offset to start `partition` at, when it is before the time lookup's `first`.
    fn search(
        &self,
        searcher: &BaseConsumer,
        partition: i32,
        first: Offset,
    ) -> Result<Option<i64>, String> {
        let topic = &self.start.topic;
        let timeout = self.start.connect_timeout;
        let (low, high) = searcher
            .fetch_watermarks(topic, partition, timeout)
            .map_err(|err| format!("Could not read partition {partition} of '{topic}': {err}"))?;
        let until = match first {
            Offset::Offset(o) => o.min(high),
            _ => high,
        };
        let mut span = FIRST_SPAN;
        loop {
            let from = until.saturating_sub(span).max(low);
            let (records, earliest_ms) = self.read(searcher, partition, from, high)?;
            let found = keyframe_start(&records, self.time_ms);
            let searched_back =
                from == low || earliest_ms.is_some_and(|t| t < self.time_ms - SEARCH_BACK_MS);
            if found.complete || searched_back {
                return Ok(found.offset.filter(|o| *o < until));
            }
            span = span.saturating_mul(4);
        }
    }

    /// The records of the key from `from` until the first one past the time (plus
    /// `LATE_MS`) or the end, `high`; and the time of the first record read.
    fn read(
        &self,
        searcher: &BaseConsumer,
        partition: i32,
        from: i64,
        high: i64,
    ) -> Result<(Vec<Scanned>, Option<i64>), String> {
        let topic = &self.start.topic;
        let unreadable = |err: &dyn std::fmt::Display| {
            format!("Could not read partition {partition} of '{topic}': {err}")
        };
        let mut records = Vec::new();
        let mut earliest_ms = None;
        if from >= high {
            return Ok((records, earliest_ms));
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(from))
            .map_err(|err| unreadable(&err))?;
        searcher.assign(&tpl).map_err(|err| unreadable(&err))?;
        let mut last_record = Instant::now();
        loop {
            let message = match searcher.poll(Duration::from_millis(100)) {
                None if last_record.elapsed() > self.start.connect_timeout => {
                    return Err(unreadable(&format!(
                        "no record within {} s while searching offsets {from}..{high} for a \
                         keyframe",
                        self.start.connect_timeout.as_secs()
                    )));
                }
                None => continue,
                Some(Err(err)) => return Err(unreadable(&err)),
                Some(Ok(message)) => message,
            };
            last_record = Instant::now();
            let record = record_of(&message);
            earliest_ms = earliest_ms.or(record.timestamp_ms);
            if record
                .timestamp_ms
                .is_some_and(|t| t > self.time_ms + LATE_MS)
            {
                break;
            }
            if self.key.is_none_or(|key| record.key == Some(key)) {
                let envelope = crate::record::split_headers(record.headers.iter().copied())
                    .map(|(envelope, _)| envelope)
                    .map_err(|_| ());
                records.extend(Scanned::of(
                    record.offset,
                    partition,
                    envelope,
                    record.timestamp_ms,
                ));
            }
            if record.offset >= high - 1 {
                break;
            }
        }
        searcher.unassign().map_err(|err| unreadable(&err))?;
        Ok((records, earliest_ms))
    }
}

/// The record a consumed message holds, for [`super::streams::Streams::read`].
pub fn record_of<'a>(message: &'a BorrowedMessage<'_>) -> Record<'a> {
    Record {
        key: message.key(),
        value: message.payload().unwrap_or_default(),
        headers: message
            .headers()
            .map(|h| h.iter().map(|h| (h.key, h.value)).collect())
            .unwrap_or_default(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis(),
    }
}

pub fn store_offset<C: ConsumerContext>(
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

/// Lowered fetch limits (`fetch.max.bytes`, `max.partition.fetch.bytes` in `config`): a
/// record larger than them may never be delivered (some brokers do not send an oversized
/// first record). Checked after `after` without any record.
pub struct FetchLimits {
    pub limits: String,
    pub after: Duration,
    pub last_record: Instant,
}

impl FetchLimits {
    /// The fetch limits `config` lowers, if any, checked after `after` without a record.
    pub fn lowered(config: &ClientConfig, after: Duration) -> Option<FetchLimits> {
        ["fetch.max.bytes", "max.partition.fetch.bytes"]
            .iter()
            .filter_map(|key| config.get(key).map(|v| format!("{key}={v}")))
            .reduce(|a, b| format!("{a}, {b}"))
            .map(|limits| FetchLimits {
                limits,
                after,
                last_record: Instant::now(),
            })
    }
}

/// How long one watermark query may take: the streaming thread checks for flushing
/// between partitions, so `unlock` is noticed within this time.
const WATERMARK_TIMEOUT: Duration = Duration::from_millis(200);

impl FetchLimits {
    /// A partition whose records are not arriving, described with the setting to raise.
    pub fn undelivered<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        topic: &str,
        flushing: &AtomicBool,
    ) -> Option<String> {
        if self.last_record.elapsed() < self.after {
            return None;
        }
        self.last_record = Instant::now();
        let positions = consumer.position().ok()?;
        for e in positions.elements() {
            if flushing.load(Ordering::SeqCst) {
                return None;
            }
            let Ok((low, high)) =
                consumer.fetch_watermarks(topic, e.partition(), WATERMARK_TIMEOUT)
            else {
                continue;
            };
            let position = match e.offset() {
                Offset::Offset(o) => o,
                _ => low,
            };
            if high > position {
                return Some(format!(
                    "Partition {} of '{topic}' has records at offsets {position}..{high} that the \
                     broker does not deliver; one is probably larger than the fetch limits \
                     ({}): raise fetch.max.bytes / max.partition.fetch.bytes in 'config'",
                    e.partition(),
                    self.limits
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_from_is_parsed_once_when_set() {
        for (text, expected) in [
            ("committed", StartFrom::Committed),
            ("earliest", StartFrom::Earliest),
            (" latest ", StartFrom::Latest),
            ("1763700000000", StartFrom::Time(1_763_700_000_000)),
            ("2026-11-21T10:00:00Z", StartFrom::Time(1_795_255_200_000)),
            (
                "2026-11-21T10:00:00.250+01:00",
                StartFrom::Time(1_795_251_600_250),
            ),
        ] {
            let setting = StartFromSetting::new(text);
            assert_eq!(setting.parsed, Ok(expected), "{text}");
            assert_eq!(setting.text, text);
        }
        let bad = StartFromSetting::new("yesterday");
        let why = bad.parsed.unwrap_err();
        assert!(
            why.starts_with("start-from='yesterday' is not committed"),
            "{why}"
        );
        assert_eq!(bad.text, "yesterday");
    }
}
