// SPDX-License-Identifier: MIT OR Apache-2.0
/**
 * element-kafkasink:
 *
 * Writes every buffer as one Kafka record. The record value is exactly the buffer's bytes
 * (a JPEG, an H.264 access unit, a raw frame), so any Kafka tool can read it; caps,
 * timestamps, flags and a per-stream sequence number travel in record headers (the
 * envelope, see `kafkavision::envelope`), so `kafkasrc` rebuilds the stream on another
 * machine.
 *
 * Defaults favour losing nothing: `acks=all`, idempotent producer, a full producer queue
 * blocks the pipeline (`queue-full=block`), undelivered records become element errors, and
 * on EOS the sink writes an end-of-stream record and waits until everything is delivered.
 * Buffers read by `kafkasrc` stay open there until the record written from them is
 * acknowledged, so a worker's input offsets are committed only for delivered output.
 *
 * Records with the same key land in one partition, in order: right for H.264, whose frames
 * depend on each other. Independent frames (JPEG, raw) from one camera can be spread over
 * every partition with `partitioner=round-robin`, so a consumer group of detectors shares
 * a single fast camera.
 *
 * ## Example
 * ```sh
 * gst-launch-1.0 videotestsrc num-buffers=100 ! jpegenc ! \
 *     kafkasink brokers=127.0.0.1:9092 topic=frames key=cam1
 * ```
 */
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use kafkavision::client_config::ClientConfig;
use kafkavision::{Envelope, RecordKind};
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};
use rdkafka::types::RDKafkaErrorCode;

use crate::common::{self, ClientLog};
use crate::release::ReleaseToken;

const DEFAULT_TOPIC: Option<&str> = None;
const DEFAULT_KEY: Option<&str> = None;
const DEFAULT_PARTITION: i32 = -1;
const DEFAULT_COMPRESSION: Compression = Compression::None;
const DEFAULT_QUEUE_FULL: QueueFullPolicy = QueueFullPolicy::Block;
const DEFAULT_FLUSH_TIMEOUT_MS: u32 = 30_000;
const DEFAULT_EOS_MARKER: bool = true;
const DEFAULT_PARTITIONER: Partitioner = Partitioner::Key;
/// librdkafka's own default; stated so the too-large error can name it.
const LIBRDKAFKA_MESSAGE_MAX_BYTES: usize = 1_000_000;
/// How long a blocked `render` sleeps before retrying a full queue.
const QUEUE_FULL_RETRY: Duration = Duration::from_millis(2);

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstKafkaSinkCompression")]
pub enum Compression {
    #[enum_value(
        name = "No compression (best for JPEG and H.264, already compressed)",
        nick = "none"
    )]
    None = 0,
    #[enum_value(name = "gzip", nick = "gzip")]
    Gzip = 1,
    #[enum_value(name = "Snappy", nick = "snappy")]
    Snappy = 2,
    #[enum_value(name = "LZ4", nick = "lz4")]
    Lz4 = 3,
    #[enum_value(name = "Zstandard", nick = "zstd")]
    Zstd = 4,
}

impl Compression {
    fn codec(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstKafkaSinkQueueFullPolicy")]
pub enum QueueFullPolicy {
    #[enum_value(
        name = "Block the pipeline until the producer queue has room (nothing is lost)",
        nick = "block"
    )]
    Block = 0,
    #[enum_value(name = "Drop the buffer, count it in stats and warn", nick = "drop")]
    Drop = 1,
    #[enum_value(name = "Fail the pipeline with an error", nick = "error")]
    Error = 2,
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstKafkaSinkPayload")]
pub enum Payload {
    #[enum_value(
        name = "The buffer's bytes (detections, if any, in the gkv-detections header)",
        nick = "buffer"
    )]
    Buffer = 0,
    #[enum_value(
        name = "Only the frame's detections as gkv.detections JSON (small, no image)",
        nick = "detections"
    )]
    Detections = 1,
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstKafkaSinkPartitioner")]
pub enum Partitioner {
    #[enum_value(
        name = "By key: one key's records stay in one partition, in order (random without key)",
        nick = "key"
    )]
    Key = 0,
    #[enum_value(
        name = "Round robin: frame n goes to partition n mod partitions, spreading one stream \
                evenly (independent frames only, e.g. JPEG)",
        nick = "round-robin"
    )]
    RoundRobin = 1,
}

#[derive(Debug, Clone)]
struct Settings {
    brokers: String,
    topic: Option<String>,
    key: Option<String>,
    partition: i32,
    partitioner: Partitioner,
    compression: Compression,
    /// The parsed `config`, or why it could not be parsed (reported by `start`).
    config: Result<ClientConfig, String>,
    queue_full: QueueFullPolicy,
    flush_timeout_ms: u32,
    eos_marker: bool,
    connect_timeout_ms: u32,
    stream_id: Option<String>,
    payload: Payload,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            brokers: common::DEFAULT_BROKERS.to_string(),
            topic: DEFAULT_TOPIC.map(String::from),
            key: DEFAULT_KEY.map(String::from),
            partition: DEFAULT_PARTITION,
            partitioner: DEFAULT_PARTITIONER,
            compression: DEFAULT_COMPRESSION,
            config: Ok(ClientConfig::default()),
            queue_full: DEFAULT_QUEUE_FULL,
            flush_timeout_ms: DEFAULT_FLUSH_TIMEOUT_MS,
            eos_marker: DEFAULT_EOS_MARKER,
            connect_timeout_ms: common::DEFAULT_CONNECT_TIMEOUT_MS,
            stream_id: None,
            payload: Payload::Buffer,
        }
    }
}

/// Delivery results, written by librdkafka's callback thread and read by the element.
#[derive(Default)]
struct Deliveries {
    /// Records handed to librdkafka; minus delivered and failed, those still on their way.
    queued: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    failures: AtomicU64,
    dropped: AtomicU64,
    first_failure: Mutex<Option<String>>,
}

struct SinkContext {
    log: ClientLog,
    deliveries: Arc<Deliveries>,
}

impl ClientContext for SinkContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.log.log(level, fac, log_message)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason)
    }
}

/// A record on its way to Kafka, with the token of the `kafkasrc` record it came from (if
/// any): the source may commit that record once this one is delivered.
type Record<'a> = BaseRecord<'a, str, [u8], Box<Option<ReleaseToken>>>;

impl ProducerContext for SinkContext {
    type DeliveryOpaque = Box<Option<ReleaseToken>>;

    fn delivery(&self, result: &DeliveryResult<'_>, source: Box<Option<ReleaseToken>>) {
        use rdkafka::Message;
        match result {
            Ok(message) => {
                self.deliveries.records.fetch_add(1, Ordering::Relaxed);
                self.deliveries
                    .bytes
                    .fetch_add(message.payload_len() as u64, Ordering::Relaxed);
            }
            Err((err, message)) => {
                if let Some(token) = source.as_ref() {
                    token.mark_failed();
                }
                self.deliveries.failures.fetch_add(1, Ordering::Relaxed);
                let mut first = self.deliveries.first_failure.lock().unwrap();
                if first.is_none() {
                    *first = Some(format!(
                        "{err} (topic '{}', partition {})",
                        message.topic(),
                        message.partition()
                    ));
                }
            }
        }
    }
}

enum State {
    Stopped,
    Started {
        producer: Arc<ThreadedProducer<SinkContext>>,
        topic: String,
        key: Option<String>,
        partition: Option<i32>,
        /// Set for `partitioner=round-robin`: the topic's partition count.
        round_robin_over: Option<i32>,
        stream_id: String,
        next_seq: u64,
        caps: Option<String>,
        frame_size: (u32, u32),
        payload: Payload,
        max_message_bytes: usize,
        queue_full: QueueFullPolicy,
        flush_timeout: Duration,
        eos_marker: bool,
    },
}

pub struct KafkaSink {
    settings: Mutex<Settings>,
    state: Mutex<State>,
    deliveries: Mutex<Arc<Deliveries>>,
    /// The running producer, for `stats` to read the queue depth without waiting for
    /// `render` (which may be blocked on a full queue while holding `state`).
    producer: Mutex<Option<Arc<ThreadedProducer<SinkContext>>>>,
    flushing: AtomicBool,
}

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "kafkasink",
        gst::DebugColorFlags::empty(),
        Some("Kafka sink"),
    )
});

impl Default for KafkaSink {
    fn default() -> Self {
        KafkaSink {
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(State::Stopped),
            deliveries: Mutex::new(Arc::new(Deliveries::default())),
            producer: Mutex::new(None),
            flushing: AtomicBool::new(false),
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for KafkaSink {
    const NAME: &'static str = "GstKafkaSink";
    type Type = super::KafkaSink;
    type ParentType = gst_base::BaseSink;
}

impl ObjectImpl for KafkaSink {
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
                    .blurb("Kafka topic the records are written to, e.g. frames. Required.")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("key")
                    .nick("Key")
                    .blurb(
                        "Record key, e.g. a camera id such as cam1. All records with the same key \
                         land in one partition and stay in order. Unset: no key.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("partition")
                    .nick("Partition")
                    .blurb(
                        "Write every record to this partition, e.g. 0. -1 lets the partitioner \
                         choose from the key.",
                    )
                    .minimum(-1)
                    .default_value(DEFAULT_PARTITION)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("partitioner", DEFAULT_PARTITIONER)
                    .nick("Partitioner")
                    .blurb(
                        "How records are spread when partition=-1: key (by key hash; one \
                         camera's records stay in order) or round-robin (frame n to partition n \
                         mod partitions; lets a consumer group share one camera's independent \
                         frames, e.g. JPEG; not for H.264).",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("compression", DEFAULT_COMPRESSION)
                    .nick("Compression")
                    .blurb("Compression codec of record batches, e.g. lz4 for raw video.")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("config")
                    .nick("Client configuration")
                    .blurb(
                        "Extra librdkafka producer properties as key=value,key=value, e.g. \
                         linger.ms=5,message.max.bytes=4000000 (write a comma inside a value as \
                         \\,). They override the defaults. Secret values are never shown back.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("queue-full", DEFAULT_QUEUE_FULL)
                    .nick("When the queue is full")
                    .blurb(
                        "What to do when the producer queue is full (broker slow or away): \
                         block (default, nothing lost), drop (counted in stats) or error.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("flush-timeout")
                    .nick("Flush timeout")
                    .blurb(
                        "Milliseconds to wait on EOS and stop until every record is delivered, \
                         e.g. 30000; records still undelivered then are reported as an error.",
                    )
                    .default_value(DEFAULT_FLUSH_TIMEOUT_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("eos-marker")
                    .nick("End-of-stream record")
                    .blurb(
                        "On EOS, write an end-of-stream record (empty value, gkv-kind=eos) so \
                         that kafkasrc stop-on-eos=true can end a finite stream downstream.",
                    )
                    .default_value(DEFAULT_EOS_MARKER)
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
                glib::ParamSpecString::builder("stream-id")
                    .nick("Stream id")
                    .blurb(
                        "Id written in the gkv-stream header, e.g. cam1-run7. Unset: the key (or \
                         'stream') plus a random suffix, new for every start.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("payload", Payload::Buffer)
                    .nick("Payload")
                    .blurb(
                        "What a record's value holds: buffer (the bytes; detections of a \
                         detector upstream ride in the gkv-detections header) or detections \
                         (only the frame's detections as gkv.detections JSON, one small record \
                         per frame).",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "Records and bytes delivered, delivery failures, records dropped by \
                         queue-full=drop, and records waiting in the producer queue.",
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
            "key" => settings.key = value.get().unwrap(),
            "partition" => settings.partition = value.get().unwrap(),
            "partitioner" => settings.partitioner = value.get().unwrap(),
            "compression" => settings.compression = value.get().unwrap(),
            "config" => {
                settings.config = common::parse_config(value.get::<Option<&str>>().unwrap());
                if let Err(err) = &settings.config {
                    gst::error!(CAT, imp = self, "Invalid config: {err}");
                }
            }
            "queue-full" => settings.queue_full = value.get().unwrap(),
            "flush-timeout" => settings.flush_timeout_ms = value.get().unwrap(),
            "eos-marker" => settings.eos_marker = value.get().unwrap(),
            "connect-timeout" => settings.connect_timeout_ms = value.get().unwrap(),
            "stream-id" => settings.stream_id = value.get().unwrap(),
            "payload" => settings.payload = value.get().unwrap(),
            _ => unreachable!(),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        match pspec.name() {
            "brokers" => settings.brokers.to_value(),
            "topic" => settings.topic.to_value(),
            "key" => settings.key.to_value(),
            "partition" => settings.partition.to_value(),
            "partitioner" => settings.partitioner.to_value(),
            "compression" => settings.compression.to_value(),
            "config" => common::shown_config(&settings.config).to_value(),
            "queue-full" => settings.queue_full.to_value(),
            "flush-timeout" => settings.flush_timeout_ms.to_value(),
            "eos-marker" => settings.eos_marker.to_value(),
            "connect-timeout" => settings.connect_timeout_ms.to_value(),
            "stream-id" => settings.stream_id.to_value(),
            "payload" => settings.payload.to_value(),
            "stats" => {
                drop(settings);
                self.stats().to_value()
            }
            _ => unreachable!(),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        // Kafka is the buffer between machines: pacing is the source's job, not ours.
        self.obj().set_sync(false);
        // A last-sample reference would keep the newest record's source open until the next
        // buffer, or past shutdown.
        self.obj().set_enable_last_sample(false);
    }
}

impl GstObjectImpl for KafkaSink {}

impl ElementImpl for KafkaSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Kafka Sink",
                "Sink/Network",
                "Writes each buffer as one Kafka record, with caps and timestamps in headers",
                "gst-kafka-vision developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &gst::Caps::new_any(),
                )
                .unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl KafkaSink {
    fn stats(&self) -> gst::Structure {
        let deliveries = self.deliveries.lock().unwrap().clone();
        let queued = self
            .producer
            .lock()
            .unwrap()
            .as_ref()
            .map_or(0, |p| p.in_flight_count().max(0) as u32);
        gst::Structure::builder("kafkasink-stats")
            .field("records-sent", deliveries.records.load(Ordering::Relaxed))
            .field("bytes-sent", deliveries.bytes.load(Ordering::Relaxed))
            .field(
                "delivery-failures",
                deliveries.failures.load(Ordering::Relaxed),
            )
            .field(
                "records-dropped",
                deliveries.dropped.load(Ordering::Relaxed),
            )
            .field("queue-depth", queued)
            .build()
    }

    /// The first delivery failure as an error text, if any record failed.
    fn delivery_failure(deliveries: &Deliveries, topic: &str) -> Option<String> {
        let failures = deliveries.failures.load(Ordering::Relaxed);
        (failures > 0).then(|| {
            let reason = deliveries
                .first_failure
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_default();
            format!("{failures} record(s) could not be delivered to topic '{topic}': {reason}")
        })
    }

    /// Sends one record, applying the queue-full policy. `Ok(false)`: dropped by policy.
    fn send(
        &self,
        producer: &ThreadedProducer<SinkContext>,
        mut record: Record<'_>,
        policy: QueueFullPolicy,
        max_message_bytes: usize,
    ) -> Result<bool, gst::FlowError> {
        loop {
            match producer.send(record) {
                Ok(()) => {
                    let deliveries = &producer.context().deliveries;
                    deliveries.queued.fetch_add(1, Ordering::Relaxed);
                    return Ok(true);
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    match policy {
                        QueueFullPolicy::Block => {
                            if self.flushing.load(Ordering::SeqCst) {
                                gst::debug!(CAT, imp = self, "Flushing while the queue is full");
                                return Err(gst::FlowError::Flushing);
                            }
                            std::thread::sleep(QUEUE_FULL_RETRY);
                            record = back;
                        }
                        QueueFullPolicy::Drop => {
                            let dropped = self
                                .deliveries
                                .lock()
                                .unwrap()
                                .dropped
                                .fetch_add(1, Ordering::Relaxed)
                                + 1;
                            gst::warning!(
                                CAT,
                                imp = self,
                                "Producer queue full: dropped a record ({dropped} so far)"
                            );
                            return Ok(false);
                        }
                        QueueFullPolicy::Error => {
                            gst::element_imp_error!(
                                self,
                                gst::ResourceError::Write,
                                ("The Kafka producer queue is full (broker slow or unreachable); \
                                     raise queue.buffering.max.messages / queue.buffering.max.kbytes \
                                     in 'config', or set queue-full=block")
                            );
                            return Err(gst::FlowError::Error);
                        }
                    }
                }
                Err((
                    KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                    back,
                )) => {
                    let size = back.payload.map_or(0, <[u8]>::len);
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::Write,
                        ("A buffer of {size} bytes is larger than the producer's \
                             message.max.bytes ({max_message_bytes}); raise it with \
                             config=message.max.bytes=<bytes> (and the topic's max.message.bytes \
                             on the broker)")
                    );
                    return Err(gst::FlowError::Error);
                }
                Err((err, _)) => {
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::Write,
                        ("Could not queue a record for Kafka: {err}")
                    );
                    return Err(gst::FlowError::Error);
                }
            }
        }
    }

    /// Waits until every queued record is delivered, for at most `timeout`, in short
    /// slices so that `unlock` can cut it short. Returns the error text if anything failed.
    fn flush(
        &self,
        producer: &ThreadedProducer<SinkContext>,
        topic: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let deliveries = &producer.context().deliveries;
        // Our own count: librdkafka's out-queue length also counts client events, which
        // never drain while `debug` logging streams them.
        let undelivered = || {
            let done = deliveries.records.load(Ordering::Relaxed)
                + deliveries.failures.load(Ordering::Relaxed);
            deliveries
                .queued
                .load(Ordering::Relaxed)
                .saturating_sub(done)
        };
        while undelivered() > 0 {
            // Once a record failed the run has failed: waiting for the rest (each up to
            // message.timeout.ms) only delays the error. Purged records count as failed.
            if deliveries.failures.load(Ordering::Relaxed) > 0 {
                producer.purge(PurgeConfig::default().queue().inflight());
                let _ = producer.flush(Duration::from_millis(100));
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                let waiting = undelivered();
                let reason = producer
                    .context()
                    .log
                    .last_error()
                    .map(|r| format!(" (last broker error: {r})"))
                    .unwrap_or_default();
                return Err(format!(
                    "{waiting} record(s) for topic '{topic}' were still undelivered after \
                     flush-timeout={} ms{reason}",
                    timeout.as_millis()
                ));
            }
            if self.flushing.load(Ordering::SeqCst) {
                return Err(format!(
                    "flush interrupted with {} record(s) undelivered",
                    undelivered()
                ));
            }
            let _ = producer.flush((deadline - now).min(Duration::from_millis(50)));
        }
        match Self::delivery_failure(deliveries, topic) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    fn write_eos_marker(&self) -> Result<(), gst::FlowError> {
        let mut state = self.state.lock().unwrap();
        let State::Started {
            producer,
            topic,
            key,
            partition,
            round_robin_over,
            stream_id,
            next_seq,
            queue_full,
            max_message_bytes,
            ..
        } = &mut *state
        else {
            return Ok(());
        };
        let envelope = Envelope {
            kind: RecordKind::EndOfStream,
            stream_id: stream_id.clone(),
            seq: *next_seq,
            caps: None,
            pts: None,
            dts: None,
            duration: None,
            flags: kafkavision::Flags::empty(),
            sink_time_ns: Some(common::unix_time_ns()),
            capture_time_ns: None,
            detections: None,
        };
        // The EOS marker must not be dropped, whatever the policy for frames.
        let policy = if *queue_full == QueueFullPolicy::Drop {
            QueueFullPolicy::Block
        } else {
            *queue_full
        };
        // Spread over every partition, the stream ends in each of them.
        let partitions = match (*partition, *round_robin_over) {
            (None, Some(count)) => (0..count).map(Some).collect(),
            (fixed, _) => vec![fixed],
        };
        for partition in partitions {
            let record = build_record(topic, key.as_deref(), partition, &envelope, &[], None);
            self.send(producer, record, policy, *max_message_bytes)?;
        }
        *next_seq += 1;
        Ok(())
    }
}

fn build_record<'a>(
    topic: &'a str,
    key: Option<&'a str>,
    partition: Option<i32>,
    envelope: &Envelope,
    payload: &'a [u8],
    source: Option<ReleaseToken>,
) -> Record<'a> {
    let header_values = envelope.to_headers();
    let mut headers = OwnedHeaders::new_with_capacity(header_values.len());
    for (name, value) in &header_values {
        headers = headers.insert(Header {
            key: name,
            value: Some(value.as_str()),
        });
    }
    let mut record = BaseRecord::with_opaque_to(topic, Box::new(source))
        .payload(payload)
        .headers(headers);
    if let Some(key) = key {
        record = record.key(key);
    }
    if let Some(partition) = partition {
        record = record.partition(partition);
    }
    record
}

fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(common::unix_time_ns());
    format!("{:08x}", hasher.finish() as u32)
}

impl BaseSinkImpl for KafkaSink {
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

        let defaults = [
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("compression.codec", settings.compression.codec()),
            ("linger.ms", "5"),
            // Back within a second of a broker restart, not librdkafka's 10 s backoff.
            ("reconnect.backoff.max.ms", "1000"),
        ];
        let config = common::rdkafka_config(&settings.brokers, &defaults, &client_config);
        gst::info!(
            CAT,
            imp = self,
            "Starting: brokers={} topic={topic} key={:?} config={}",
            settings.brokers,
            settings.key,
            user_config.redacted()
        );

        let deliveries = Arc::new(Deliveries::default());
        *self.deliveries.lock().unwrap() = deliveries.clone();
        let context = SinkContext {
            log: ClientLog::new(*CAT, self.obj().upcast_ref()),
            deliveries,
        };
        let producer: ThreadedProducer<SinkContext> =
            config.create_with_context(context).map_err(|err| {
                gst::error_msg!(
                    gst::ResourceError::Settings,
                    ("Invalid Kafka producer configuration: {err}")
                )
            })?;

        let partitions = common::check_topic(
            producer.client(),
            &settings.brokers,
            &topic,
            Duration::from_millis(settings.connect_timeout_ms as u64),
            || producer.context().log.last_error(),
        )
        .map_err(|err| gst::error_msg!(gst::ResourceError::OpenWrite, ("{err}")))?;
        if settings.partition >= partitions as i32 {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                (
                    "partition={} but topic '{topic}' has {partitions} partition(s) (0..{})",
                    settings.partition,
                    partitions - 1
                )
            ));
        }

        let max_message_bytes = client_config
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(LIBRDKAFKA_MESSAGE_MAX_BYTES);
        let stream_id = settings.stream_id.clone().unwrap_or_else(|| {
            format!(
                "{}-{}",
                settings.key.as_deref().unwrap_or("stream"),
                random_suffix()
            )
        });
        gst::info!(
            CAT,
            imp = self,
            "Started: topic '{topic}' has {partitions} partition(s), stream id {stream_id}"
        );

        let producer = Arc::new(producer);
        *self.producer.lock().unwrap() = Some(producer.clone());
        *self.state.lock().unwrap() = State::Started {
            producer,
            topic,
            key: settings.key,
            partition: (settings.partition >= 0).then_some(settings.partition),
            round_robin_over: (settings.partitioner == Partitioner::RoundRobin)
                .then_some(partitions as i32),
            stream_id,
            next_seq: 0,
            caps: None,
            frame_size: (0, 0),
            payload: settings.payload,
            max_message_bytes,
            queue_full: settings.queue_full,
            flush_timeout: Duration::from_millis(settings.flush_timeout_ms as u64),
            eos_marker: settings.eos_marker,
        };
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.producer.lock().unwrap().take();
        let state = std::mem::replace(&mut *self.state.lock().unwrap(), State::Stopped);
        let State::Started {
            producer,
            topic,
            flush_timeout,
            ..
        } = state
        else {
            return Ok(());
        };
        // `unlock` may have set flushing; stop's flush must run to its own timeout.
        self.flushing.store(false, Ordering::SeqCst);
        let result = self.flush(&producer, &topic, flush_timeout);
        drop(producer);
        gst::info!(CAT, imp = self, "Stopped: {:?}", self.stats());
        result.map_err(|err| gst::error_msg!(gst::ResourceError::Write, ("{err}")))
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::LoggableError> {
        gst::debug!(CAT, imp = self, "Caps {caps}");
        if let State::Started {
            caps: current,
            frame_size,
            ..
        } = &mut *self.state.lock().unwrap()
        {
            *current = Some(caps.to_string());
            *frame_size = common::frame_size(caps);
        }
        Ok(())
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut state = self.state.lock().unwrap();
        let State::Started {
            producer,
            topic,
            key,
            partition,
            round_robin_over,
            stream_id,
            next_seq,
            caps,
            frame_size,
            payload,
            max_message_bytes,
            queue_full,
            ..
        } = &mut *state
        else {
            gst::element_imp_error!(self, gst::CoreError::Failed, ("Not started"));
            return Err(gst::FlowError::Error);
        };

        let deliveries = self.deliveries.lock().unwrap().clone();
        if let Some(err) = Self::delivery_failure(&deliveries, topic) {
            gst::element_imp_error!(self, gst::ResourceError::Write, ("{err}"));
            return Err(gst::FlowError::Error);
        }

        let map = buffer.map_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::CoreError::Failed, ("Could not map the buffer"));
            gst::FlowError::Error
        })?;
        let sink_time = common::unix_time_ns();
        // The first sink a frame meets stamps its capture time; later hops carry it on.
        let capture_time = common::unix_reference_time(buffer).unwrap_or(sink_time);
        let detections = common::frame_detections(
            buffer,
            &common::FrameOrigin {
                stream: stream_id,
                camera: key.as_deref(),
                seq: *next_seq,
                width: frame_size.0,
                height: frame_size.1,
                capture_time_ns: Some(capture_time),
            },
        );
        let mut envelope = Envelope {
            kind: RecordKind::Buffer,
            stream_id: stream_id.clone(),
            seq: *next_seq,
            caps: caps.clone(),
            pts: buffer.pts().map(|t| t.nseconds()),
            dts: buffer.dts().map(|t| t.nseconds()),
            duration: buffer.duration().map(|t| t.nseconds()),
            flags: common::envelope_flags(buffer.flags()),
            sink_time_ns: Some(sink_time),
            capture_time_ns: Some(capture_time),
            detections: None,
        };
        let json;
        let value: &[u8] = match payload {
            Payload::Buffer => {
                if !detections.detections.is_empty() {
                    envelope.detections =
                        Some(String::from_utf8(detections.to_json()).expect("JSON is UTF-8"));
                }
                map.as_slice()
            }
            Payload::Detections => {
                envelope.caps = Some(kafkavision::detections::CAPS.to_string());
                // The image's flags do not apply: every detections record stands alone.
                envelope.flags = kafkavision::Flags::empty();
                json = detections.to_json();
                &json
            }
        };
        gst::trace!(
            CAT,
            imp = self,
            "Sending seq {} ({} bytes)",
            *next_seq,
            value.len()
        );
        let partition = partition.or(round_robin_over.map(|n| (*next_seq % n as u64) as i32));
        let source = ReleaseToken::of_buffer(buffer);
        let record = build_record(topic, key.as_deref(), partition, &envelope, value, source);
        // A dropped record still uses its sequence number, so receivers see the gap.
        self.send(producer, record, *queue_full, *max_message_bytes)?;
        *next_seq += 1;
        Ok(gst::FlowSuccess::Ok)
    }

    fn event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Eos(_) = event.view() {
            let eos_marker = matches!(
                &*self.state.lock().unwrap(),
                State::Started {
                    eos_marker: true,
                    ..
                }
            );
            if eos_marker && self.write_eos_marker().is_err() {
                return false;
            }
            let state = self.state.lock().unwrap();
            if let State::Started {
                producer,
                topic,
                flush_timeout,
                ..
            } = &*state
                && let Err(err) = self.flush(producer, topic, *flush_timeout)
            {
                drop(state);
                gst::element_imp_error!(self, gst::ResourceError::Write, ("{err}"));
                return false;
            }
            gst::debug!(CAT, imp = self, "EOS: everything delivered");
        }
        self.parent_event(event)
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
