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
 * a single fast camera. With `key-from=record`, each buffer keeps the key of the record it
 * was read from, and each key is its own output stream: one sink serves many cameras.
 *
 * The sink never looks inside what it carries. Kafka headers a buffer carries in its
 * `GstKafkaHeadersMeta` (those of the record it was read from, or added by a converter
 * such as `detectionsconvert output=header`) are written after the envelope.
 *
 * ## Example
 * ```sh
 * gst-launch-1.0 videotestsrc num-buffers=100 ! jpegenc ! \
 *     kafkasink brokers=127.0.0.1:9092 topic=frames key=cam1
 * ```
 * A worker serving many cameras, keeping each camera's key:
 * ```sh
 * gst-launch-1.0 kafkasrc brokers=127.0.0.1:9092 topic=frames group-id=detectors ! \
 *     kafkadecodebin ! videoconvert ! yolodetect model-location=yolov8n.onnx ! \
 *     detectionsconvert ! kafkasink brokers=127.0.0.1:9092 topic=detections key-from=record
 * ```
 */
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use kafkavision::Envelope;
use kafkavision::meta::{KafkaHeaders, RecordMeta};
use kafkavision::per_run::{COUNTERS, PerRun, counters};

use super::producer::{
    Deliveries, OutRecord, QueueFullPolicy, SendError, Sent, SinkContext, SinkProducer,
};
use crate::client::{self, ClientBlurbs, ClientHealth, ClientLog, ClientSettings};
use crate::record;
use crate::release::ReleaseToken;
use crate::stats::kafkasink as fields;

const DEFAULT_KEY: Option<&str> = None;
const DEFAULT_KEY_FROM: KeyFrom = KeyFrom::Property;
const DEFAULT_PARTITION: i32 = -1;
const DEFAULT_COMPRESSION: Compression = Compression::None;
const DEFAULT_QUEUE_FULL: QueueFullPolicy = QueueFullPolicy::Block;
const DEFAULT_FLUSH_TIMEOUT_MS: u32 = 30_000;
const DEFAULT_EOS_MARKER: bool = true;
const DEFAULT_PARTITIONER: Partitioner = Partitioner::Key;
/// librdkafka's own default; stated so the too-large error can name it.
const LIBRDKAFKA_MESSAGE_MAX_BYTES: usize = 1_000_000;

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

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstKafkaSinkKeyFrom")]
pub enum KeyFrom {
    #[enum_value(name = "The key property: one key for every record", nick = "property")]
    Property = 0,
    #[enum_value(
        name = "The key of the Kafka record each buffer was read from (its record meta), \
                else the key property: one output stream per key",
        nick = "record"
    )]
    Record = 1,
}

#[derive(Debug, Clone)]
struct Settings {
    client: ClientSettings,
    key: Option<String>,
    key_from: KeyFrom,
    partition: i32,
    partitioner: Partitioner,
    compression: Compression,
    queue_full: QueueFullPolicy,
    flush_timeout_ms: u32,
    eos_marker: bool,
    stream_id: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            client: ClientSettings::default(),
            key: DEFAULT_KEY.map(String::from),
            key_from: DEFAULT_KEY_FROM,
            partition: DEFAULT_PARTITION,
            partitioner: DEFAULT_PARTITIONER,
            compression: DEFAULT_COMPRESSION,
            queue_full: DEFAULT_QUEUE_FULL,
            flush_timeout_ms: DEFAULT_FLUSH_TIMEOUT_MS,
            eos_marker: DEFAULT_EOS_MARKER,
            stream_id: None,
        }
    }
}

/// One output stream: the records of one key, numbered from 0.
struct OutStream {
    id: String,
    next_seq: u64,
}

/// What a started sink writes with.
struct Started {
    producer: Arc<SinkProducer>,
    topic: String,
    key: Option<String>,
    key_from: KeyFrom,
    partition: Option<i32>,
    /// Set for `partitioner=round-robin`: the topic's partition count.
    round_robin_over: Option<i32>,
    /// The `stream-id` property, else a random suffix for `<key>-<suffix>` ids.
    stream_base: StreamBase,
    streams: HashMap<Option<String>, OutStream>,
    caps: Option<String>,
    max_message_bytes: usize,
    queue_full: QueueFullPolicy,
    flush_timeout: Duration,
    eos_marker: bool,
}

enum StreamBase {
    Fixed(String),
    Suffix(String),
}

impl Started {
    /// The stream records of `key` belong to, created on first use.
    fn stream(&mut self, key: Option<&str>) -> &mut OutStream {
        let base = &self.stream_base;
        let several = self.key_from == KeyFrom::Record;
        self.streams
            .entry(key.map(String::from))
            .or_insert_with(|| OutStream {
                id: match base {
                    StreamBase::Fixed(id) if several => {
                        format!("{id}-{}", key.unwrap_or("stream"))
                    }
                    StreamBase::Fixed(id) => id.clone(),
                    StreamBase::Suffix(suffix) => {
                        format!("{}-{suffix}", key.unwrap_or("stream"))
                    }
                },
                next_seq: 0,
            })
    }

    /// The key a buffer's record is written with.
    fn key_of(&self, buffer: &gst::BufferRef) -> Option<String> {
        match self.key_from {
            KeyFrom::Property => self.key.clone(),
            KeyFrom::Record => RecordMeta::of(buffer)
                .and_then(|r| r.key)
                .or_else(|| self.key.clone()),
        }
    }

    /// The partition of record `seq` of a stream: fixed, round robin, or by key.
    fn partition_of(&self, seq: u64) -> Option<i32> {
        self.partition
            .or(self.round_robin_over.map(|n| (seq % n as u64) as i32))
    }
}

pub struct KafkaSink {
    settings: Mutex<Settings>,
    state: Mutex<Option<Started>>,
    deliveries: PerRun<Deliveries>,
    /// The running producer, for `stats` to read the queue depth without waiting for
    /// `render` (which may be blocked on a full queue while holding `state`).
    producer: Mutex<Option<Arc<SinkProducer>>>,
    /// Output streams written so far, for `stats` (`render` may hold `state` for long).
    output_streams: AtomicU32,
    /// Broker reachability from librdkafka's statistics, for `stats`.
    health: Arc<ClientHealth>,
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
            state: Mutex::new(None),
            deliveries: PerRun::default(),
            producer: Mutex::new(None),
            output_streams: AtomicU32::new(0),
            health: Arc::default(),
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
            let mut properties = ClientSettings::properties(&ClientBlurbs {
                topic: "Kafka topic the records are written to, e.g. frames. Required.",
                config: "Extra librdkafka producer properties as key=value,key=value, e.g. \
                         linger.ms=5,message.max.bytes=4000000 (write a comma inside a value as \
                         \\,). They override the defaults. Secret values are never shown back.",
            });
            properties.extend([
                glib::ParamSpecString::builder("key")
                    .nick("Key")
                    .blurb(
                        "Record key, e.g. a camera id such as cam1. All records with the same key \
                         land in one partition and stay in order. Unset: no key.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("key-from", DEFAULT_KEY_FROM)
                    .nick("Key from")
                    .blurb(
                        "Where a record's key comes from: property (the key property) or record \
                         (the key of the Kafka record the buffer was read from by kafkasrc, else \
                         the key property), so that one sink writes many cameras, each as its \
                         own stream.",
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
                        "Milliseconds to wait on EOS and on stop until every record is \
                         delivered, e.g. 30000; records still undelivered then are reported as \
                         an error. With the broker gone, a state change to READY or NULL takes \
                         this long: lower it where shutting down fast matters more than \
                         delivering the last records.",
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
                glib::ParamSpecString::builder("stream-id")
                    .nick("Stream id")
                    .blurb(
                        "Id written in the gkv-stream header, e.g. cam1-run7 (with \
                         key-from=record, followed by -<key>). Unset: the key (or 'stream') plus \
                         a random suffix, new for every start.",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "Records and bytes delivered, delivery failures, records dropped by \
                         queue-full=drop, records waiting in the producer queue, the number of \
                         output streams, and how long no broker has been reachable \
                         (broker-down-ms).",
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
            "key" => settings.key = value.get().unwrap(),
            "key-from" => settings.key_from = value.get().unwrap(),
            "partition" => settings.partition = value.get().unwrap(),
            "partitioner" => settings.partitioner = value.get().unwrap(),
            "compression" => settings.compression = value.get().unwrap(),
            "queue-full" => settings.queue_full = value.get().unwrap(),
            "flush-timeout" => settings.flush_timeout_ms = value.get().unwrap(),
            "eos-marker" => settings.eos_marker = value.get().unwrap(),
            "stream-id" => settings.stream_id = value.get().unwrap(),
            _ => unreachable!(),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        if let Some(value) = settings.client.property(pspec.name()) {
            return value;
        }
        match pspec.name() {
            "key" => settings.key.to_value(),
            "key-from" => settings.key_from.to_value(),
            "partition" => settings.partition.to_value(),
            "partitioner" => settings.partitioner.to_value(),
            "compression" => settings.compression.to_value(),
            "queue-full" => settings.queue_full.to_value(),
            "flush-timeout" => settings.flush_timeout_ms.to_value(),
            "eos-marker" => settings.eos_marker.to_value(),
            "stream-id" => settings.stream_id.to_value(),
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
        let deliveries = self.deliveries.current();
        let queued = self
            .producer
            .lock()
            .unwrap()
            .as_ref()
            .map_or(0, |p| p.queue_depth());
        let streams = self.output_streams.load(Ordering::Relaxed);
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        gst::Structure::builder(fields::NAME)
            .field(fields::RECORDS_SENT, load(&deliveries.records))
            .field("bytes-sent", load(&deliveries.bytes))
            .field("delivery-failures", load(&deliveries.failures))
            .field("records-dropped", load(&deliveries.dropped))
            .field("queue-depth", queued)
            .field("streams", streams)
            .field(fields::BROKER_DOWN_MS, self.health.broker_down_ms())
            .field(
                fields::CAMERAS,
                deliveries
                    .latency
                    .lock()
                    .unwrap()
                    .to_stats(fields::LATENCY_MS),
            )
            .field(
                COUNTERS,
                counters(&[
                    fields::RECORDS_SENT,
                    "bytes-sent",
                    "delivery-failures",
                    "records-dropped",
                    "streams",
                ]),
            )
            .build()
    }

    /// Sends one record; posts the element error for what cannot go on.
    fn send(
        &self,
        producer: &SinkProducer,
        record: &OutRecord<'_>,
        policy: QueueFullPolicy,
        max_message_bytes: usize,
    ) -> Result<(), gst::FlowError> {
        match producer.send(record, policy, &self.flushing) {
            Ok(Sent::Queued) => Ok(()),
            Ok(Sent::Dropped) => {
                let dropped = producer.deliveries().dropped.load(Ordering::Relaxed);
                gst::warning!(
                    CAT,
                    imp = self,
                    "Producer queue full: dropped a record ({dropped} so far)"
                );
                Ok(())
            }
            Err(SendError::Flushing) => {
                gst::debug!(CAT, imp = self, "Flushing while the queue is full");
                Err(gst::FlowError::Flushing)
            }
            Err(SendError::QueueFull) => {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Write,
                    ("The Kafka producer queue is full (broker slow or unreachable); raise \
                      queue.buffering.max.messages / queue.buffering.max.kbytes in 'config', or \
                      set queue-full=block")
                );
                Err(gst::FlowError::Error)
            }
            Err(SendError::TooLarge(size)) => {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Write,
                    ("A buffer of {size} bytes is larger than the producer's message.max.bytes \
                      ({max_message_bytes}); raise it with config=message.max.bytes=<bytes> (and \
                      the topic's max.message.bytes on the broker)")
                );
                Err(gst::FlowError::Error)
            }
            Err(SendError::Other(err)) => {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Write,
                    ("Could not queue a record for Kafka: {err}")
                );
                Err(gst::FlowError::Error)
            }
        }
    }

    /// Writes the end-of-stream record of every output stream. With `key-from=record`
    /// only streams that had records end: an empty stream's end would tell a reader with
    /// `stop-on-eos` that everything it has seen so far ended.
    fn write_eos_markers(&self, started: &mut Started) -> Result<(), gst::FlowError> {
        // The EOS marker must not be dropped, whatever the policy for frames.
        let policy = match started.queue_full {
            QueueFullPolicy::Drop => QueueFullPolicy::Block,
            other => other,
        };
        let sink_time = kafkavision::clock::unix_time_ns();
        let no_headers = KafkaHeaders::default();
        for (key, stream) in started.streams.iter_mut() {
            let mut envelope = Envelope::end_of_stream(stream.id.as_str(), stream.next_seq);
            envelope.sink_time_ns = Some(sink_time);
            let headers = record::record_headers(&envelope, &no_headers);
            // Spread over every partition, the stream ends in each of them.
            let partitions = match (started.partition, started.round_robin_over) {
                (None, Some(count)) => (0..count).map(Some).collect(),
                (fixed, _) => vec![fixed],
            };
            for partition in partitions {
                let record = OutRecord {
                    topic: &started.topic,
                    key: key.as_deref(),
                    partition,
                    headers: &headers,
                    value: &[],
                    source: None,
                };
                self.send(
                    &started.producer,
                    &record,
                    policy,
                    started.max_message_bytes,
                )?;
            }
            stream.next_seq += 1;
        }
        Ok(())
    }
}

impl BaseSinkImpl for KafkaSink {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let start = settings.client.for_start()?;
        let topic = start.topic.clone();
        let defaults = [
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("compression.codec", settings.compression.codec()),
            // A camera's frames come one at a time, 33 ms or more apart: waiting 5 ms for
            // another one to batch with (librdkafka's default) only adds 5 ms to each; what
            // queues while a request is in flight is still sent as one batch.
            // (`scripts/bench latency`: p50 from capture to the worker 15 -> 10 ms.)
            ("linger.ms", "0"),
            // librdkafka derives this from linger.ms (twice it): with 0, records without a
            // key or partition would each go to a random partition. 10 ms is what it was
            // with linger.ms=5: a burst of keyless frames stays in one partition, in order.
            ("sticky.partitioning.linger.ms", "10"),
            // Back within a second of a broker restart, not librdkafka's 10 s backoff.
            ("reconnect.backoff.max.ms", "1000"),
            // A misspelt 'topic' is an error at start, not a new topic that brokers with
            // auto-creation on (Kafka's default) make up and no consumer reads.
            ("allow.auto.create.topics", "false"),
        ];
        let config = settings.client.rdkafka_config(&start, &defaults);
        gst::info!(
            CAT,
            imp = self,
            "Starting: brokers={} topic={topic} key={:?} key-from={:?} config={}",
            settings.client.brokers,
            settings.key,
            settings.key_from,
            start.user.redacted()
        );

        let deliveries = self.deliveries.restart();
        let context = SinkContext {
            log: ClientLog::new(*CAT, self.obj().upcast_ref(), {
                self.health.clear();
                self.health.clone()
            }),
            deliveries,
        };
        let producer = SinkProducer::new(config.create_with_context(context).map_err(|err| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                ("Invalid Kafka producer configuration: {err}")
            )
        })?);

        let partitions = client::check_topic(
            producer.client(),
            &settings.client.brokers,
            &topic,
            start.connect_timeout,
            &client::ELEMENT_SETTINGS,
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

        let max_message_bytes = start
            .client
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(LIBRDKAFKA_MESSAGE_MAX_BYTES);
        let stream_base = match settings.stream_id.clone() {
            Some(id) => StreamBase::Fixed(id),
            None => StreamBase::Suffix(kafkavision::clock::random_suffix()),
        };
        gst::info!(
            CAT,
            imp = self,
            "Started: topic '{topic}' has {partitions} partition(s)"
        );

        let producer = Arc::new(producer);
        *self.producer.lock().unwrap() = Some(producer.clone());
        let mut started = Started {
            producer,
            topic,
            key: settings.key,
            key_from: settings.key_from,
            partition: (settings.partition >= 0).then_some(settings.partition),
            round_robin_over: (settings.partitioner == Partitioner::RoundRobin)
                .then_some(partitions as i32),
            stream_base,
            streams: HashMap::new(),
            caps: None,
            max_message_bytes,
            queue_full: settings.queue_full,
            flush_timeout: Duration::from_millis(settings.flush_timeout_ms as u64),
            eos_marker: settings.eos_marker,
        };
        if started.key_from == KeyFrom::Property {
            let key = started.key.clone();
            let id = started.stream(key.as_deref()).id.clone();
            gst::info!(CAT, imp = self, "Writing stream {id}");
        }
        self.output_streams
            .store(started.streams.len() as u32, Ordering::Relaxed);
        *self.state.lock().unwrap() = Some(started);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.producer.lock().unwrap().take();
        let Some(started) = self.state.lock().unwrap().take() else {
            return Ok(());
        };
        // `unlock` may have set flushing; stop's flush must run to its own timeout.
        self.flushing.store(false, Ordering::SeqCst);
        let result = started
            .producer
            .flush(&started.topic, started.flush_timeout, &self.flushing);
        drop(started);
        gst::info!(CAT, imp = self, "Stopped: {:?}", self.stats());
        result.map_err(|err| gst::error_msg!(gst::ResourceError::Write, ("{err}")))
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::LoggableError> {
        gst::debug!(CAT, imp = self, "Caps {caps}");
        if let Some(started) = &mut *self.state.lock().unwrap() {
            started.caps = Some(caps.to_string());
        }
        Ok(())
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut state = self.state.lock().unwrap();
        let Some(started) = state.as_mut() else {
            gst::element_imp_error!(self, gst::CoreError::Failed, ("Not started"));
            return Err(gst::FlowError::Error);
        };
        if let Some(err) = started.producer.deliveries().failure(&started.topic) {
            gst::element_imp_error!(self, gst::ResourceError::Write, ("{err}"));
            return Err(gst::FlowError::Error);
        }
        let map = buffer.map_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::CoreError::Failed, ("Could not map the buffer"));
            gst::FlowError::Error
        })?;

        let key = started.key_of(buffer);
        let caps = started.caps.clone();
        let stream = started.stream(key.as_deref());
        let seq = stream.next_seq;
        // A dropped record still uses its sequence number, so receivers see the gap.
        stream.next_seq += 1;
        let stream_id = stream.id.clone();
        self.output_streams
            .store(started.streams.len() as u32, Ordering::Relaxed);
        let envelope = record::envelope_of(
            buffer,
            &stream_id,
            seq,
            caps.as_deref(),
            kafkavision::clock::unix_time_ns(),
        );
        let extra = KafkaHeaders::of(buffer);
        let headers = record::record_headers(&envelope, &extra);
        gst::trace!(
            CAT,
            imp = self,
            "Sending {} seq {seq} ({} bytes)",
            envelope.stream_id,
            map.len()
        );
        let record = OutRecord {
            topic: &started.topic,
            key: key.as_deref(),
            partition: started.partition_of(seq),
            headers: &headers,
            value: map.as_slice(),
            source: ReleaseToken::of_buffer(buffer),
        };
        self.send(
            &started.producer,
            &record,
            started.queue_full,
            started.max_message_bytes,
        )?;
        Ok(gst::FlowSuccess::Ok)
    }

    fn event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Eos(_) = event.view() {
            let mut state = self.state.lock().unwrap();
            if let Some(started) = state.as_mut() {
                if started.eos_marker && self.write_eos_markers(started).is_err() {
                    return false;
                }
                if let Err(err) =
                    started
                        .producer
                        .flush(&started.topic, started.flush_timeout, &self.flushing)
                {
                    drop(state);
                    gst::element_imp_error!(self, gst::ResourceError::Write, ("{err}"));
                    return false;
                }
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
