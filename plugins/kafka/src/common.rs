// SPDX-License-Identifier: MIT OR Apache-2.0
//! What `kafkasink` and `kafkasrc` share: building the librdkafka client configuration,
//! routing librdkafka's log into GStreamer's, checking the broker and topic before
//! streaming, and mapping buffer flags to the envelope's.

use std::sync::Mutex;
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use kafkavision::Flags;
use kafkavision::client_config::{ClientConfig, is_secret_key};
use kafkavision::detections::{Detection, FrameDetections, Rect, SourceRecord};
use rdkafka::client::{Client, ClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::release::{ReleaseToken, TOKEN_FIELD};

pub const DEFAULT_BROKERS: &str = "localhost:9092";
pub const DEFAULT_CONNECT_TIMEOUT_MS: u32 = 10_000;

/// Client context shared by both elements: librdkafka's log goes to the element's debug
/// category, and the last client-level error (e.g. "all brokers down") is kept so that
/// error messages can name the broker's own reason.
pub struct ClientLog {
    cat: gst::DebugCategory,
    element: glib::WeakRef<gst::Element>,
    last_error: Mutex<Option<String>>,
}

impl ClientLog {
    pub fn new(cat: gst::DebugCategory, element: &gst::Element) -> Self {
        ClientLog {
            cat,
            element: element.downgrade(),
            last_error: Mutex::new(None),
        }
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap().clone()
    }
}

impl ClientContext for ClientLog {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let level = match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => gst::DebugLevel::Error,
            RDKafkaLogLevel::Warning => gst::DebugLevel::Warning,
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => gst::DebugLevel::Info,
            RDKafkaLogLevel::Debug => gst::DebugLevel::Debug,
        };
        match self.element.upgrade() {
            Some(element) => gst::log_with_level!(
                self.cat,
                level,
                obj = element,
                "librdkafka {facility}: {message}"
            ),
            None => gst::log_with_level!(self.cat, level, "librdkafka {facility}: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        gst::warning!(self.cat, "librdkafka error: {error}: {reason}");
        // "All brokers down" follows the error that says why (TLS handshake, SASL, refused
        // connection): keep that one for the element's error message.
        let all_down = error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown);
        let mut last_error = self.last_error.lock().unwrap();
        if !(all_down && last_error.is_some()) {
            *last_error = Some(format!("{error}: {reason}"));
        }
    }
}

/// The librdkafka configuration: our defaults first, then the user's `config` entries
/// (which win), and `bootstrap.servers` from the `brokers` property.
pub fn rdkafka_config(
    brokers: &str,
    defaults: &[(&str, &str)],
    user: &ClientConfig,
) -> rdkafka::ClientConfig {
    let mut config = rdkafka::ClientConfig::new();
    for (key, value) in defaults {
        config.set(*key, *value);
    }
    for (key, value) in user.entries() {
        // librdkafka's error for a setting it refuses quotes the value (seen: OAuth secrets
        // in this build without libcurl, Java's sasl.jaas.config): a refused secret goes
        // in masked, so the client fails with the same error minus the secret.
        if is_secret_key(key) && !librdkafka_accepts(key, value) {
            config.set(key, "***");
        } else {
            config.set(key, value);
        }
    }
    if user.get("bootstrap.servers").is_none() {
        config.set("bootstrap.servers", brokers);
    }
    // librdkafka's `debug` contexts log at debug level: without this they were dropped.
    config.set_log_level(if user.get("debug").is_some() {
        RDKafkaLogLevel::Debug
    } else {
        RDKafkaLogLevel::Info
    });
    config
}

fn librdkafka_accepts(key: &str, value: &str) -> bool {
    rdkafka::ClientConfig::new()
        .set(key, value)
        .create_native_config()
        .is_ok()
}

/// Checks within `timeout` that the brokers answer and `topic` exists; returns its
/// partition count. The error names what to change.
pub fn check_topic<C: ClientContext>(
    client: &Client<C>,
    brokers: &str,
    topic: &str,
    timeout: Duration,
    last_error: impl Fn() -> Option<String>,
) -> Result<usize, String> {
    let metadata = client.fetch_metadata(Some(topic), timeout).map_err(|err| {
        let reason = last_error().unwrap_or_else(|| err.to_string());
        format!(
            "could not reach Kafka brokers '{brokers}' within {} ms ({reason}); check the \
                 'brokers' property (host:port,...) and that the broker is up, or raise \
                 'connect-timeout'",
            timeout.as_millis()
        )
    })?;
    let Some(topic_meta) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(format!(
            "broker '{brokers}' returned no metadata for topic '{topic}'"
        ));
    };
    if let Some(err) = topic_meta.error() {
        let code = RDKafkaErrorCode::from(err);
        return Err(if code == RDKafkaErrorCode::UnknownTopicOrPartition {
            format!(
                "topic '{topic}' does not exist on brokers '{brokers}'; create it (e.g. \
                 scripts/broker topic {topic} 4) or enable auto-creation on the broker"
            )
        } else {
            format!("topic '{topic}' on brokers '{brokers}' is not usable: {code}")
        });
    }
    if topic_meta.partitions().is_empty() {
        return Err(format!(
            "topic '{topic}' on brokers '{brokers}' has no partitions"
        ));
    }
    Ok(topic_meta.partitions().len())
}

const FLAG_MAP: [(gst::BufferFlags, Flags); 8] = [
    (gst::BufferFlags::DISCONT, Flags::DISCONT),
    (gst::BufferFlags::DELTA_UNIT, Flags::DELTA_UNIT),
    (gst::BufferFlags::HEADER, Flags::HEADER),
    (gst::BufferFlags::GAP, Flags::GAP),
    (gst::BufferFlags::DROPPABLE, Flags::DROPPABLE),
    (gst::BufferFlags::MARKER, Flags::MARKER),
    (gst::BufferFlags::CORRUPTED, Flags::CORRUPTED),
    (gst::BufferFlags::RESYNC, Flags::RESYNC),
];

pub fn envelope_flags(flags: gst::BufferFlags) -> Flags {
    let mut out = Flags::empty();
    for (gst_flag, flag) in FLAG_MAP {
        out.set(flag, flags.contains(gst_flag));
    }
    out
}

pub fn buffer_flags(flags: Flags) -> gst::BufferFlags {
    let mut out = gst::BufferFlags::empty();
    for (gst_flag, flag) in FLAG_MAP {
        out.set(gst_flag, flags.contains(flag));
    }
    out
}

/// Parses the `config` property; an error is kept and reported when the element starts.
pub fn parse_config(text: Option<&str>) -> Result<ClientConfig, String> {
    ClientConfig::parse(text.unwrap_or_default()).map_err(|e| e.to_string())
}

/// What reading the `config` property returns: never a secret.
pub fn shown_config(config: &Result<ClientConfig, String>) -> String {
    match config {
        Ok(config) => config.redacted(),
        Err(err) => format!("<invalid: {err}>"),
    }
}

/// Unix time now, in ns.
pub fn unix_time_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_map_both_ways() {
        let gst_flags = gst::BufferFlags::DELTA_UNIT | gst::BufferFlags::DISCONT;
        let flags = envelope_flags(gst_flags);
        assert_eq!(flags.to_string(), "discont,delta-unit");
        assert_eq!(buffer_flags(flags), gst_flags);
    }
}

/// The `timestamp/x-unix` reference timestamp of a buffer (capture time), in Unix ns.
pub fn unix_reference_time(buffer: &gst::BufferRef) -> Option<u64> {
    buffer
        .iter_meta::<gst::ReferenceTimestampMeta>()
        .find(|m| {
            m.reference()
                .structure(0)
                .is_some_and(|s| s.name() == UNIX_TIME_CAPS)
        })
        .map(|m| m.timestamp().nseconds())
}

pub const UNIX_TIME_CAPS: &str = "timestamp/x-unix";

/// Name of the custom meta `kafkasrc` puts on every buffer: where its record came from.
/// Its structure holds `topic` (string), `partition` (int), `offset` (int64), `key`
/// (string, absent for records without key), `stream` (string) and `seq` (uint64).
pub const RECORD_META: &str = "GstKafkaRecordMeta";

pub fn register_record_meta() {
    if !gst::meta::CustomMeta::is_registered(RECORD_META) {
        gst::meta::CustomMeta::register_simple(RECORD_META);
    }
}

/// Where a record came from, for the record meta.
pub struct RecordOrigin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub stream: &'a str,
    pub seq: u64,
}

pub fn add_record_meta(buffer: &mut gst::BufferRef, origin: &RecordOrigin<'_>) {
    let Ok(mut meta) = gst::meta::CustomMeta::add(buffer, RECORD_META) else {
        return;
    };
    let s = meta.mut_structure();
    s.set("topic", origin.topic);
    s.set("partition", origin.partition);
    s.set("offset", origin.offset);
    if let Some(key) = origin.key {
        s.set("key", String::from_utf8_lossy(key).as_ref());
    }
    s.set("stream", origin.stream);
    s.set("seq", origin.seq);
}

/// Puts the token that keeps the record open into the buffer's record meta.
pub fn attach_release_token(buffer: &mut gst::BufferRef, token: ReleaseToken) {
    if let Ok(mut meta) = gst::meta::CustomMeta::from_mut_buffer(buffer, RECORD_META) {
        meta.mut_structure().set(TOKEN_FIELD, token);
    }
}

/// Where one frame came from, for its detections record.
pub struct FrameOrigin<'a> {
    pub stream: &'a str,
    pub camera: Option<&'a str>,
    pub seq: u64,
    pub width: u32,
    pub height: u32,
    pub capture_time_ns: Option<u64>,
}

/// The frame's detections, read from the region-of-interest metas a detector attached
/// (those with a `detection` structure, as `yolodetect` writes them).
pub fn frame_detections(buffer: &gst::BufferRef, origin: &FrameOrigin<'_>) -> FrameDetections {
    let detections = buffer
        .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
        .filter_map(|meta| {
            let param = meta.param("detection")?;
            let (x, y, w, h) = meta.rect();
            let label = param
                .get::<String>("label")
                .unwrap_or_else(|_| meta.roi_type().to_string());
            Some(Detection::new(
                &label,
                param.get::<u32>("class-id").unwrap_or(0),
                param.get::<f64>("confidence").unwrap_or(0.0),
                param.get::<bool>("inferred").unwrap_or(true),
                Rect {
                    x: x as f64,
                    y: y as f64,
                    width: w as f64,
                    height: h as f64,
                },
                origin.width,
                origin.height,
            ))
        })
        .collect();
    FrameDetections {
        schema: kafkavision::detections::SCHEMA.to_string(),
        version: kafkavision::detections::SCHEMA_VERSION,
        stream: origin.stream.to_string(),
        camera: origin.camera.map(String::from),
        seq: origin.seq,
        pts_ns: buffer.pts().map(|t| t.nseconds()),
        capture_time_ns: origin.capture_time_ns,
        width: origin.width,
        height: origin.height,
        source: record_source(buffer),
        detections,
    }
}

/// The record a buffer was read from, from the record meta `kafkasrc` attached.
pub fn record_source(buffer: &gst::BufferRef) -> Option<SourceRecord> {
    let meta = gst::meta::CustomMeta::from_buffer(buffer, RECORD_META).ok()?;
    let s = meta.structure();
    Some(SourceRecord {
        topic: s.get("topic").ok()?,
        partition: s.get("partition").ok()?,
        offset: s.get("offset").ok()?,
        stream: s.get("stream").ok()?,
        seq: s.get("seq").ok()?,
    })
}

/// Attaches detections as region-of-interest metas, as `yolodetect` does.
pub fn attach_detections(buffer: &mut gst::BufferRef, frame: &FrameDetections) {
    for d in &frame.detections {
        let b = &d.bbox;
        let rect = (
            b.x.max(0.0).round() as u32,
            b.y.max(0.0).round() as u32,
            b.width.max(0.0).round() as u32,
            b.height.max(0.0).round() as u32,
        );
        let mut meta = gst_video::VideoRegionOfInterestMeta::add(buffer, &d.label, rect);
        meta.add_param(
            gst::Structure::builder("detection")
                .field("class-id", d.class_id)
                .field("label", d.label.as_str())
                .field("confidence", d.confidence)
                .field("inferred", d.inferred)
                .build(),
        );
    }
}

/// Width and height of caps that have them (raw video, JPEG, H.264 after parsing).
pub fn frame_size(caps: &gst::CapsRef) -> (u32, u32) {
    let s = caps.structure(0);
    let get = |f: &str| s.and_then(|s| s.get::<i32>(f).ok()).unwrap_or(0).max(0) as u32;
    (get("width"), get("height"))
}
