// SPDX-License-Identifier: MIT OR Apache-2.0
//! Records read and written with bare rdkafka clients, to look at what the elements wrote
//! and to feed them what other clients (or attackers) write.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::{brokers, unique_name};

/// One record as a bare consumer sees it.
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// The record's Kafka timestamp (its producer's create time), in Unix ms.
    pub timestamp_ms: Option<i64>,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl RawRecord {
    /// The key as text (invalid UTF-8 replaced), empty for records without key.
    pub fn key_text(&self) -> String {
        self.key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default()
    }

    /// True for a record carrying a buffer (not an end-of-stream record).
    pub fn is_buffer(&self) -> bool {
        self.header("gkv-kind") == Some("buffer")
    }

    /// True for a stream's end-of-stream record.
    pub fn is_eos(&self) -> bool {
        self.header("gkv-kind") == Some("eos")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| std::str::from_utf8(v).unwrap_or("<not UTF-8>"))
    }
}

/// Reads `count` records from the start of every partition of `topic`, without a group.
pub fn consume_raw(
    topic: &str,
    partitions: i32,
    count: usize,
    timeout: Duration,
) -> Vec<RawRecord> {
    let consumer = raw_reader(&brokers(), topic, partitions, false);
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    while records.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} records arrived from {topic} within {timeout:?}",
            records.len()
        );
        let Some(result) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = result.expect("consumer error");
        records.push(RawRecord::of(&message));
    }
    records
}

/// Reads every record of `topic` on the given brokers, from the start of each partition
/// to its end (as it is when the reader gets there).
pub fn consume_all_on(
    brokers: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Vec<RawRecord> {
    let consumer = raw_reader(brokers, topic, partitions, true);
    let deadline = Instant::now() + timeout;
    let mut at_end = std::collections::HashSet::new();
    let mut records = Vec::new();
    while at_end.len() < partitions as usize {
        assert!(
            Instant::now() < deadline,
            "{topic} on {brokers}: not at the end of every partition within {timeout:?} \
             ({} records so far)",
            records.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => records.push(RawRecord::of(&message)),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(err)) => panic!("reading {topic} on {brokers}: {err}"),
        }
    }
    records
}

/// Reads `topic` from the start of every partition until `enough` says so and nothing
/// more arrived for a second, or until `timeout`.
pub fn read_all(
    topic: &str,
    partitions: i32,
    timeout: Duration,
    enough: impl FnMut(&[RawRecord]) -> bool,
) -> Vec<RawRecord> {
    read_all_from(&brokers(), topic, partitions, timeout, enough)
}

/// Reads `topic` from the start of every partition until `done` says so, or `timeout`.
pub fn read_until(
    topic: &str,
    partitions: i32,
    timeout: Duration,
    mut done: impl FnMut(&[RawRecord]) -> bool,
) -> Vec<RawRecord> {
    let consumer = raw_reader(&brokers(), topic, partitions, false);
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    while !done(&records) && Instant::now() < deadline {
        if let Some(result) = consumer.poll(Duration::from_millis(100)) {
            records.push(RawRecord::of(&result.expect("consumer error")));
        }
    }
    records
}

/// [`read_all`] from another cluster than the test broker.
pub fn read_all_from(
    brokers: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
    mut enough: impl FnMut(&[RawRecord]) -> bool,
) -> Vec<RawRecord> {
    let consumer = raw_reader(brokers, topic, partitions, false);
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    let mut idle_since = Instant::now();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                idle_since = Instant::now();
                records.push(RawRecord::of(&message));
            }
            _ => {
                if enough(&records) && idle_since.elapsed() > Duration::from_secs(1) {
                    break;
                }
            }
        }
    }
    records
}

/// A consumer assigned to every partition of `topic` from the beginning, without a group.
fn raw_reader(brokers: &str, topic: &str, partitions: i32, eof: bool) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.partition.eof", if eof { "true" } else { "false" })
        // librdkafka needs a group for assign(), even when nothing is committed.
        .set("group.id", unique_name("raw-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    consumer
}

impl RawRecord {
    fn of(message: &rdkafka::message::BorrowedMessage<'_>) -> RawRecord {
        RawRecord {
            timestamp_ms: message.timestamp().to_millis(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().unwrap_or_default().to_vec(),
            headers: message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// One record for [`produce_raw`]: its value and its headers as (name, value) pairs.
pub type ProducedRecord<'a> = (Vec<u8>, Vec<(&'a str, &'a [u8])>);

/// A keyed record for [`produce_keyed`]: (key, value, headers).
pub type KeyedRecord<'a> = (&'a str, Vec<u8>, Vec<(String, Vec<u8>)>);

/// Writes records with a bare producer.
pub fn produce_raw(topic: &str, partition: Option<i32>, records: &[ProducedRecord]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("message.max.bytes", "10000000")
        .create()
        .unwrap();
    for (value, headers) in records {
        let mut owned = OwnedHeaders::new();
        for (k, v) in headers {
            owned = owned.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        let mut record = BaseRecord::<(), [u8]>::to(topic)
            .payload(value)
            .headers(owned);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Writes keyed records with a bare producer: (key, value, headers).
pub fn produce_keyed(topic: &str, records: &[KeyedRecord]) {
    produce_keyed_at(topic, records.iter().map(|record| (record, None)));
}

/// Writes keyed records with a bare producer, each with the Kafka timestamp (Unix ms)
/// given, or the producer's clock for `None`: records that look written long ago.
pub fn produce_keyed_at<'r, 'a: 'r>(
    topic: &str,
    records: impl IntoIterator<Item = (&'r KeyedRecord<'a>, Option<i64>)>,
) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    for ((key, value, headers), timestamp_ms) in records {
        let mut owned = OwnedHeaders::new();
        for (k, v) in headers {
            owned = owned.insert(Header {
                key: k,
                value: Some(v.as_slice()),
            });
        }
        let mut record = BaseRecord::to(topic)
            .key(*key)
            .payload(value.as_slice())
            .headers(owned);
        if let Some(ms) = timestamp_ms {
            record = record.timestamp(ms);
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Records of `topic` that consumer group `group` has not committed yet: written but not
/// handled by any of its members.
pub fn group_lag(brokers: &str, topic: &str, partitions: i32, group: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    (0..partitions)
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap();
            let done = match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => 0,
            };
            high - done
        })
        .sum()
}
