// SPDX-License-Identifier: MIT OR Apache-2.0
//! `kafkasrc`'s consumer: where partitions start, what the group's rebalance callbacks do
//! with the offsets in flight, storing commit points, and noticing records the fetch
//! limits keep from arriving.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};

use super::streams::Record;
use crate::client::ClientLog;
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
                    gst::error!(
                        *super::imp::CAT,
                        "Could not take the assigned partitions: {e}"
                    );
                }
                self.stats
                    .partitions_assigned
                    .fetch_add(partitions.len() as u32, Ordering::Relaxed);
                gst::info!(*super::imp::CAT, "Assigned partitions {partitions:?}");
                self.gained.lock().unwrap().extend(partitions);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                gst::info!(*super::imp::CAT, "Partitions {partitions:?} revoked");
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
                gst::warning!(
                    *super::imp::CAT,
                    "Rebalance error: {}",
                    RDKafkaErrorCode::from(other)
                );
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
            gst::warning!(
                *super::imp::CAT,
                "Could not give up the revoked partitions: {e}"
            );
        }
    }
}

pub fn start_offsets(
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
            *super::imp::CAT,
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
