// SPDX-License-Identifier: MIT OR Apache-2.0
//! Helpers shared by the cross-element tests: the broker `scripts/test` started, topics,
//! a bare rdkafka producer/consumer to look at records directly, and running pipelines.
#![allow(dead_code)]

use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use gst::prelude::*;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstkafka::plugin_register_static().expect("registering the kafka plugin");
        gstyolo::plugin_register_static().expect("registering the yolo plugin");
    });
}

/// The broker `scripts/test` started (or any Kafka cluster the caller points at).
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").expect(
        "KAFKA_BROKERS is not set: run the tests through scripts/test, which starts a broker, \
         or set KAFKA_BROKERS=host:port",
    )
}

/// A topic name no other test (or earlier run against the same broker) uses.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn create_topic(topic: &str, partitions: i32) {
    create_topic_on(&brokers(), topic, partitions)
}

/// Creates `topic` on the given brokers (e.g. a test's private broker).
pub fn create_topic_on(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = futures_executor::block_on(admin.create_topics([&new_topic], &options))
        .expect("create_topics request");
    for result in results {
        result.unwrap_or_else(|(name, code)| panic!("creating topic {name}: {code}"));
    }
}

/// A fresh topic with `partitions` partitions.
pub fn new_topic(prefix: &str, partitions: i32) -> String {
    let topic = unique_name(prefix);
    create_topic(&topic, partitions);
    topic
}

/// One record as a bare consumer sees it.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl RawRecord {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| std::str::from_utf8(v).unwrap())
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

/// Writes records with a bare producer; `headers` as (name, value) pairs.
pub fn produce_raw(topic: &str, partition: Option<i32>, records: &[(Vec<u8>, Vec<(&str, &[u8])>)]) {
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

/// How a pipeline run ended.
#[derive(Debug)]
pub enum Ended {
    Eos,
    Error(String),
    Timeout,
}

/// Plays `pipeline` until EOS, an error or `timeout`, then sets it to NULL.
pub fn run_until_end(pipeline: &gst::Pipeline, timeout: Duration) -> Ended {
    pipeline.set_state(gst::State::Playing).ok();
    let bus = pipeline.bus().unwrap();
    let deadline = Instant::now() + timeout;
    let ended = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Ended::Timeout;
        }
        let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(left.as_millis() as u64),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) else {
            break Ended::Timeout;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => break Ended::Eos,
            gst::MessageView::Error(err) => {
                break Ended::Error(format!(
                    "{} ({})",
                    err.error(),
                    err.debug().map(|d| d.to_string()).unwrap_or_default()
                ));
            }
            _ => unreachable!(),
        }
    };
    pipeline.set_state(gst::State::Null).unwrap();
    ended
}

pub fn launch(description: &str) -> gst::Pipeline {
    gst::parse::launch(description)
        .unwrap_or_else(|e| panic!("parsing '{description}': {e}"))
        .downcast::<gst::Pipeline>()
        .unwrap()
}

/// Runs a pipeline to EOS and panics with the error otherwise.
pub fn run_to_eos(description: &str, timeout: Duration) -> gst::Pipeline {
    let pipeline = launch(description);
    match run_until_end(&pipeline, timeout) {
        Ended::Eos => pipeline,
        other => panic!("'{description}' ended with {other:?}"),
    }
}

/// Collects what arrives at the appsink named `name` into a shared vector.
pub fn collect_samples(
    pipeline: &gst::Pipeline,
    name: &str,
) -> std::sync::Arc<std::sync::Mutex<Vec<gst::Sample>>> {
    let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = pipeline
        .by_name(name)
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let store = samples.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                store.lock().unwrap().push(processed(sample));
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    samples
}

/// A copy of the sample to keep for inspection, as if the application had processed and
/// released the original: a kept buffer from `kafkasrc` would otherwise hold its record
/// open (`commit-after=release`) and its offset would never be committed.
pub fn processed(sample: gst::Sample) -> gst::Sample {
    let Some(original) = sample.buffer() else {
        return sample;
    };
    let mut copy = original.copy();
    if let Ok(mut meta) =
        gst::meta::CustomMeta::from_mut_buffer(copy.make_mut(), gstkafka::RECORD_META)
    {
        meta.mut_structure().remove_field("release-token");
    }
    let mut builder = gst::Sample::builder()
        .buffer(&copy)
        .segment(sample.segment().unwrap());
    let caps = sample.caps_owned();
    if let Some(caps) = &caps {
        builder = builder.caps(caps);
    }
    builder.build()
}

pub fn stats(element: &gst::Element) -> gst::Structure {
    element.property::<gst::Structure>("stats")
}

pub fn stat_u64(element: &gst::Element, field: &str) -> u64 {
    stats(element).get::<u64>(field).unwrap()
}

/// The reference timestamp with the given caps name, if the buffer carries one.
pub fn reference_timestamp(buffer: &gst::BufferRef, caps_name: &str) -> Option<gst::ClockTime> {
    buffer
        .iter_meta::<gst::ReferenceTimestampMeta>()
        .find(|m| {
            m.reference()
                .structure(0)
                .is_some_and(|s| s.name() == caps_name)
        })
        .map(|m| m.timestamp())
}
