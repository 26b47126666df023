// SPDX-License-Identifier: MIT OR Apache-2.0
//! `kafkasink`'s producer: sending records under the queue-full policy, counting delivery
//! reports, and waiting for them at EOS and stop. Knows nothing of GStreamer buffers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use kafkavision::latency::{ByCamera, Histogram};
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};
use rdkafka::types::RDKafkaErrorCode;

use crate::client::ClientLog;
use crate::release::ReleaseToken;

/// How long a blocked send sleeps before retrying a full queue.
const QUEUE_FULL_RETRY: Duration = Duration::from_millis(2);

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

/// Delivery results, written by librdkafka's callback thread and read by the element.
#[derive(Default)]
pub struct Deliveries {
    /// Records handed to librdkafka; minus delivered and failed, those still on their way.
    pub queued: AtomicU64,
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub failures: AtomicU64,
    pub dropped: AtomicU64,
    /// Per camera (record key): capture to the broker's acknowledgement, for records that
    /// carry a capture time.
    pub latency: Mutex<ByCamera<Histogram>>,
    first_failure: Mutex<Option<String>>,
}

impl Deliveries {
    /// Records handed to librdkafka and not reported delivered or failed yet. Our own
    /// count: librdkafka's out-queue length also counts client events, which never drain
    /// while `debug` logging streams them.
    fn undelivered(&self) -> u64 {
        let done = self.records.load(Ordering::Relaxed) + self.failures.load(Ordering::Relaxed);
        self.queued.load(Ordering::Relaxed).saturating_sub(done)
    }

    /// The first delivery failure as an error text, if any record failed.
    pub fn failure(&self, topic: &str) -> Option<String> {
        let failures = self.failures.load(Ordering::Relaxed);
        (failures > 0).then(|| {
            let reason = self
                .first_failure
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_default();
            format!("{failures} record(s) could not be delivered to topic '{topic}': {reason}")
        })
    }
}

pub struct SinkContext {
    pub log: ClientLog,
    pub deliveries: Arc<Deliveries>,
}

impl ClientContext for SinkContext {
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

/// The capture time (Unix ms) a written record carries in its envelope.
fn capture_time_ms(message: &rdkafka::message::BorrowedMessage<'_>) -> Option<i64> {
    use rdkafka::Message;
    use rdkafka::message::Headers;
    let headers = message.headers()?;
    let value = headers
        .iter()
        .find(|h| h.key == kafkavision::envelope::header::CAPTURE_TIME)?
        .value?;
    let ns: u64 = std::str::from_utf8(value).ok()?.parse().ok()?;
    Some((ns / 1_000_000) as i64)
}

/// The token of the `kafkasrc` record a record was written from, if any: the source may
/// commit that record once this one is delivered.
type Source = Box<Option<ReleaseToken>>;

impl ProducerContext for SinkContext {
    type DeliveryOpaque = Source;

    fn delivery(&self, result: &DeliveryResult<'_>, source: Source) {
        use rdkafka::Message;
        match result {
            Ok(message) => {
                self.deliveries.records.fetch_add(1, Ordering::Relaxed);
                self.deliveries
                    .bytes
                    .fetch_add(message.payload_len() as u64, Ordering::Relaxed);
                if let Some(capture_ms) = capture_time_ms(message) {
                    let camera = message
                        .key()
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default();
                    let age_ms = kafkavision::clock::unix_time_ms() - capture_ms;
                    let mut latency = self.deliveries.latency.lock().unwrap();
                    latency.heard(&camera).observe(age_ms as f64);
                }
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

/// One record to send.
pub struct OutRecord<'a> {
    pub topic: &'a str,
    pub key: Option<&'a str>,
    pub partition: Option<i32>,
    pub headers: &'a [(std::borrow::Cow<'a, str>, Vec<u8>)],
    pub value: &'a [u8],
    pub source: Option<ReleaseToken>,
}

/// What became of a record handed to [`SinkProducer::send`].
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    Queued,
    /// Dropped by `queue-full=drop`; counted in the deliveries.
    Dropped,
}

#[derive(Debug)]
pub enum SendError {
    /// The element is flushing while the queue is full.
    Flushing,
    /// The queue is full and the policy is `error`.
    QueueFull,
    TooLarge(usize),
    Other(KafkaError),
}

/// The producer of a started `kafkasink`.
pub struct SinkProducer {
    producer: ThreadedProducer<SinkContext>,
}

impl SinkProducer {
    pub fn new(producer: ThreadedProducer<SinkContext>) -> Self {
        SinkProducer { producer }
    }

    pub fn client(&self) -> &rdkafka::client::Client<SinkContext> {
        self.producer.client()
    }

    pub fn context(&self) -> &SinkContext {
        self.producer.context()
    }

    pub fn deliveries(&self) -> &Deliveries {
        &self.producer.context().deliveries
    }

    /// Records in librdkafka's queues, for `stats`.
    pub fn queue_depth(&self) -> u32 {
        self.producer.in_flight_count().max(0) as u32
    }

    /// Sends one record, applying the queue-full policy.
    pub fn send(
        &self,
        record: &OutRecord<'_>,
        policy: QueueFullPolicy,
        flushing: &AtomicBool,
    ) -> Result<Sent, SendError> {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (name, value) in record.headers {
            headers = headers.insert(Header {
                key: name.as_ref(),
                value: Some(value.as_slice()),
            });
        }
        let mut base = BaseRecord::with_opaque_to(record.topic, Box::new(record.source.clone()))
            .payload(record.value)
            .headers(headers);
        if let Some(key) = record.key {
            base = base.key(key);
        }
        if let Some(partition) = record.partition {
            base = base.partition(partition);
        }
        loop {
            match self.producer.send(base) {
                Ok(()) => {
                    self.deliveries().queued.fetch_add(1, Ordering::Relaxed);
                    return Ok(Sent::Queued);
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    match policy {
                        QueueFullPolicy::Block => {
                            if flushing.load(Ordering::SeqCst) {
                                return Err(SendError::Flushing);
                            }
                            std::thread::sleep(QUEUE_FULL_RETRY);
                            base = back;
                        }
                        QueueFullPolicy::Drop => {
                            self.deliveries().dropped.fetch_add(1, Ordering::Relaxed);
                            return Ok(Sent::Dropped);
                        }
                        QueueFullPolicy::Error => return Err(SendError::QueueFull),
                    }
                }
                Err((
                    KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                    back,
                )) => return Err(SendError::TooLarge(back.payload.map_or(0, <[u8]>::len))),
                Err((err, _)) => return Err(SendError::Other(err)),
            }
        }
    }

    /// Waits until every queued record is delivered, for at most `timeout`, in short
    /// slices so that `flushing` can cut it short. Returns the error text if anything
    /// failed or stayed undelivered.
    pub fn flush(
        &self,
        topic: &str,
        timeout: Duration,
        flushing: &AtomicBool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let deliveries = self.deliveries();
        while deliveries.undelivered() > 0 {
            // Once a record failed the run has failed: waiting for the rest (each up to
            // message.timeout.ms) only delays the error. Purged records count as failed.
            if deliveries.failures.load(Ordering::Relaxed) > 0 {
                self.producer
                    .purge(PurgeConfig::default().queue().inflight());
                let _ = self.producer.flush(Duration::from_millis(100));
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                let reason = self
                    .context()
                    .log
                    .last_error()
                    .map(|r| format!(" (last broker error: {r})"))
                    .unwrap_or_default();
                return Err(format!(
                    "{} record(s) for topic '{topic}' were still undelivered after \
                     flush-timeout={} ms{reason}",
                    deliveries.undelivered(),
                    timeout.as_millis()
                ));
            }
            if flushing.load(Ordering::SeqCst) {
                return Err(format!(
                    "flush interrupted with {} record(s) undelivered",
                    deliveries.undelivered()
                ));
            }
            let _ = self
                .producer
                .flush((deadline - now).min(Duration::from_millis(50)));
        }
        match deliveries.failure(topic) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}
