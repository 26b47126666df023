// SPDX-License-Identifier: MIT OR Apache-2.0
//! The buffer metas the Kafka elements share with other elements and applications, with
//! typed accessors so that nobody looks fields up by name:
//!
//! - [`RecordMeta`]: where a buffer came from. `kafkasrc` attaches it to every buffer it
//!   pushes; decoders, encoders and `tee` copy it onto what they derive from the buffer.
//! - [`KafkaHeaders`]: headers that are not part of the envelope. `kafkasrc` attaches the
//!   ones its record carried, converters add their own (e.g. `gkv-detections`), and
//!   `kafkasink` writes them all next to the envelope. The Kafka elements never look inside.
//!
//! Both are `GstCustomMeta`s without tags, so elements that copy metas they do not know
//! (GStreamer's video decoders and encoders do) keep them. From C or Python they are
//! structures: `gst_buffer_get_custom_meta (buffer, "GstKafkaRecordMeta")`.

use gst::glib;
use gst::prelude::*;

use crate::detections::SourceRecord;

/// Caps of the reference timestamp that holds a frame's capture time: the Unix time in ns
/// it entered the system (its first `kafkasink`).
pub const UNIX_TIME_CAPS: &str = "timestamp/x-unix";

/// A reference timestamp of `buffer`, by the name of its reference caps.
pub fn reference_time(buffer: &gst::BufferRef, caps_name: &str) -> Option<u64> {
    buffer
        .iter_meta::<gst::ReferenceTimestampMeta>()
        .find(|m| {
            m.reference()
                .structure(0)
                .is_some_and(|s| s.name() == caps_name)
        })
        .map(|m| m.timestamp().nseconds())
}

/// The capture time of `buffer` in Unix ns, when it has one.
pub fn capture_time(buffer: &gst::BufferRef) -> Option<u64> {
    reference_time(buffer, UNIX_TIME_CAPS)
}

/// Name of the custom meta holding a [`RecordMeta`].
pub const RECORD_META: &str = "GstKafkaRecordMeta";
/// Name of the custom meta holding [`KafkaHeaders`].
pub const HEADERS_META: &str = "GstKafkaHeadersMeta";

/// Registers both metas; idempotent and safe from any thread. Plugins call it when they
/// load, applications may.
pub fn register() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        for name in [RECORD_META, HEADERS_META] {
            if !gst::meta::CustomMeta::is_registered(name) {
                gst::meta::CustomMeta::register_simple(name);
            }
        }
    });
}

/// The Kafka record a buffer was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordMeta {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The record key (e.g. the camera id), decoded as UTF-8 with invalid bytes replaced;
    /// `None` for records without key.
    pub key: Option<String>,
    /// The stream (one `kafkasink` run) the record belongs to, from its envelope; records
    /// without envelope are one stream per partition, `partition-N`.
    pub stream: String,
    /// The record's sequence number in that stream (its offset for records without
    /// envelope).
    pub seq: u64,
}

impl RecordMeta {
    /// The record meta of `buffer`, if it came from `kafkasrc`.
    pub fn of(buffer: &gst::BufferRef) -> Option<RecordMeta> {
        let meta = gst::meta::CustomMeta::from_buffer(buffer, RECORD_META).ok()?;
        let s = meta.structure();
        Some(RecordMeta {
            topic: s.get("topic").ok()?,
            partition: s.get("partition").ok()?,
            offset: s.get("offset").ok()?,
            key: s.get::<Option<String>>("key").ok().flatten(),
            stream: s.get("stream").ok()?,
            seq: s.get("seq").ok()?,
        })
    }

    /// The camera a buffer shows: its record key, else its stream.
    pub fn camera(&self) -> &str {
        self.key.as_deref().unwrap_or(&self.stream)
    }

    /// Attaches this record meta (replacing one already there) and returns its structure
    /// for fields of the element that owns it (`kafkasrc` keeps its release token there).
    pub fn attach<'a>(
        &self,
        buffer: &'a mut gst::BufferRef,
    ) -> Option<gst::MetaRefMut<'a, gst::meta::CustomMeta, gst::meta::Standalone>> {
        register();
        remove_custom(buffer, RECORD_META);
        let mut meta = gst::meta::CustomMeta::add(buffer, RECORD_META).ok()?;
        let s = meta.mut_structure();
        s.set("topic", self.topic.as_str());
        s.set("partition", self.partition);
        s.set("offset", self.offset);
        if let Some(key) = &self.key {
            s.set("key", key.as_str());
        }
        s.set("stream", self.stream.as_str());
        s.set("seq", self.seq);
        Some(meta)
    }
}

/// Where a frame came from, as the detections and events records name it.
impl From<RecordMeta> for SourceRecord {
    fn from(record: RecordMeta) -> SourceRecord {
        SourceRecord {
            topic: record.topic,
            partition: record.partition,
            offset: record.offset,
            stream: record.stream,
            seq: record.seq,
        }
    }
}

/// Copies `from`'s record meta onto `to` with every field, those of the element that
/// read the record included (`kafkasrc` keeps the token there that holds the record open
/// until downstream is done): for elements that make a new buffer out of one they got.
pub fn copy_record_meta(from: &gst::BufferRef, to: &mut gst::BufferRef) {
    let Ok(meta) = gst::meta::CustomMeta::from_buffer(from, RECORD_META) else {
        return;
    };
    let fields: Vec<(glib::GString, glib::SendValue)> = meta
        .structure()
        .iter()
        .map(|(name, value)| (glib::GString::from(name.as_str()), value.clone()))
        .collect();
    remove_custom(to, RECORD_META);
    if let Ok(mut copy) = gst::meta::CustomMeta::add(to, RECORD_META) {
        let s = copy.mut_structure();
        for (name, value) in fields {
            s.set_value(name.as_str(), value);
        }
    }
}

/// Holds a frame's Kafka record open: `kafkasrc` does not commit a record while anything
/// still holds its record meta's fields (its release token among them). Elements whose
/// state covers a frame hold it until that state is saved, so a worker that dies before the
/// save has its frames read again by the next one.
#[derive(Debug)]
pub struct RecordHold {
    _fields: gst::Structure,
}

impl RecordHold {
    /// A hold on `buffer`'s record, if it came from `kafkasrc`.
    pub fn of(buffer: &gst::BufferRef) -> Option<RecordHold> {
        let meta = gst::meta::CustomMeta::from_buffer(buffer, RECORD_META).ok()?;
        Some(RecordHold {
            _fields: meta.structure().to_owned(),
        })
    }
}

/// Kafka record headers that ride with a buffer, outside the envelope: names are text,
/// values bytes, in order, and a name may repeat (as in Kafka).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KafkaHeaders(pub Vec<(String, Vec<u8>)>);

impl KafkaHeaders {
    /// The headers meta of `buffer`; empty when it has none.
    pub fn of(buffer: &gst::BufferRef) -> KafkaHeaders {
        let Ok(meta) = gst::meta::CustomMeta::from_buffer(buffer, HEADERS_META) else {
            return KafkaHeaders::default();
        };
        let s = meta.structure();
        let (Ok(names), Ok(values)) = (s.get::<gst::Array>("names"), s.get::<gst::Array>("values"))
        else {
            return KafkaHeaders::default();
        };
        KafkaHeaders(
            names
                .iter()
                .zip(values.iter())
                .filter_map(|(name, value)| {
                    Some((
                        name.get::<String>().ok()?,
                        value.get::<glib::Bytes>().ok()?.to_vec(),
                    ))
                })
                .collect(),
        )
    }

    /// The value of the first header called `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Sets `name` to `value`, replacing every header of that name.
    pub fn set(&mut self, name: &str, value: &[u8]) {
        self.remove(name);
        self.0.push((name.to_string(), value.to_vec()));
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| n != name);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Stores these headers in `buffer`'s headers meta (removing the meta when empty).
    pub fn attach(&self, buffer: &mut gst::BufferRef) {
        register();
        remove_custom(buffer, HEADERS_META);
        if self.0.is_empty() {
            return;
        }
        let Ok(mut meta) = gst::meta::CustomMeta::add(buffer, HEADERS_META) else {
            return;
        };
        let s = meta.mut_structure();
        s.set(
            "names",
            gst::Array::new(self.0.iter().map(|(n, _)| n.to_send_value())),
        );
        s.set(
            "values",
            gst::Array::new(
                self.0
                    .iter()
                    .map(|(_, v)| glib::Bytes::from(v.as_slice()).to_send_value()),
            ),
        );
    }

    /// Sets one header on `buffer`, keeping its other headers.
    pub fn set_on(buffer: &mut gst::BufferRef, name: &str, value: &[u8]) {
        let mut headers = KafkaHeaders::of(buffer);
        headers.set(name, value);
        headers.attach(buffer);
    }
}

fn remove_custom(buffer: &mut gst::BufferRef, name: &str) {
    while let Ok(meta) = gst::meta::CustomMeta::from_mut_buffer(buffer, name) {
        if meta.remove().is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_meta_round_trip() {
        gst::init().unwrap();
        let record = RecordMeta {
            topic: "frames".into(),
            partition: 3,
            offset: 1187,
            key: Some("cam \"1\"\n".into()),
            stream: "cam1-00ff".into(),
            seq: 42,
        };
        let mut buffer = gst::Buffer::new();
        record.attach(buffer.get_mut().unwrap());
        assert_eq!(RecordMeta::of(&buffer), Some(record.clone()));
        // As the detections and events records name it: without the key.
        assert_eq!(
            SourceRecord::from(record.clone()),
            SourceRecord {
                topic: "frames".into(),
                partition: 3,
                offset: 1187,
                stream: "cam1-00ff".into(),
                seq: 42,
            }
        );
        let keyless = RecordMeta {
            key: None,
            ..record
        };
        keyless.attach(buffer.get_mut().unwrap());
        assert_eq!(RecordMeta::of(&buffer), Some(keyless.clone()));
        assert_eq!(keyless.camera(), "cam1-00ff");
        assert_eq!(RecordMeta::of(&gst::Buffer::new()), None);
    }

    #[test]
    fn a_copied_record_meta_keeps_fields_it_does_not_know() {
        gst::init().unwrap();
        let mut from = gst::Buffer::new();
        let record = RecordMeta {
            topic: "t".into(),
            partition: 0,
            offset: 1,
            key: None,
            stream: "s".into(),
            seq: 1,
        };
        let mut meta = record.attach(from.get_mut().unwrap()).unwrap();
        meta.mut_structure().set("owner-field", 7u32);
        let mut to = gst::Buffer::new();
        copy_record_meta(&from, to.get_mut().unwrap());
        assert_eq!(RecordMeta::of(&to), Some(record));
        let copied = gst::meta::CustomMeta::from_buffer(&to, RECORD_META).unwrap();
        assert_eq!(copied.structure().get::<u32>("owner-field"), Ok(7));
    }

    #[test]
    fn headers_keep_order_repeats_and_bytes() {
        gst::init().unwrap();
        let mut buffer = gst::Buffer::new();
        let headers = KafkaHeaders(vec![
            ("trace id".into(), vec![0xff, 0, 1]),
            ("gkv-detections".into(), b"{}".to_vec()),
            ("trace id".into(), vec![]),
        ]);
        headers.attach(buffer.get_mut().unwrap());
        assert_eq!(KafkaHeaders::of(&buffer), headers);
        KafkaHeaders::set_on(buffer.get_mut().unwrap(), "trace id", b"x");
        let now = KafkaHeaders::of(&buffer);
        assert_eq!(now.get("trace id"), Some(&b"x"[..]));
        assert_eq!(now.0.len(), 2);
        KafkaHeaders::default().attach(buffer.get_mut().unwrap());
        assert!(KafkaHeaders::of(&buffer).is_empty());
    }
}
