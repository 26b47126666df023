// SPDX-License-Identifier: MIT OR Apache-2.0
//! The envelope: how a GStreamer buffer travels as one Kafka record.
//!
//! The record value is exactly the buffer's bytes, so any Kafka tool sees a plain JPEG,
//! H.264 access unit or raw frame. Everything a receiver needs to rebuild the stream rides
//! in record headers whose values are UTF-8 text (decimal numbers, caps strings, flag
//! names), so a consumer written in any language can read them without GStreamer.
//!
//! | header            | value                                                      |
//! |-------------------|------------------------------------------------------------|
//! | `gkv-version`     | envelope version, `1`                                      |
//! | `gkv-kind`        | `buffer` or `eos` (end-of-stream record, empty value)      |
//! | `gkv-stream`      | id of the stream (one `kafkasink` run), e.g. `cam1-5f3a9c0e` |
//! | `gkv-seq`         | sequence number within the stream, from 0, no gaps         |
//! | `gkv-caps`        | caps of the buffer, e.g. `image/jpeg, width=(int)640, ...` |
//! | `gkv-pts`         | presentation timestamp in ns (absent if none)             |
//! | `gkv-dts`         | decoding timestamp in ns (absent if none)                 |
//! | `gkv-duration`    | duration in ns (absent if none)                            |
//! | `gkv-flags`       | comma-separated buffer flags, e.g. `delta-unit,discont`    |
//! | `gkv-sink-time`   | Unix time in ns when the buffer reached `kafkasink`         |
//! | `gkv-capture-time`| Unix time in ns the frame entered the system: its first `kafkasink`, carried on by later hops |
//!
//! Times are below 2^64-1 (GStreamer's "no time"), which readers refuse.
//! Readers ignore headers they do not know, so later minor additions stay compatible; a
//! record whose `gkv-version` is higher than [`ENVELOPE_VERSION`] is refused. Other headers
//! (e.g. `gkv-detections`, see `detections`) are not part of the envelope: the Kafka
//! elements carry them without reading them.

use std::fmt;

/// The envelope version this code writes, and the highest it reads.
pub const ENVELOPE_VERSION: u32 = 1;

/// Header names, stated once.
pub mod header {
    pub const VERSION: &str = "gkv-version";
    pub const KIND: &str = "gkv-kind";
    pub const STREAM: &str = "gkv-stream";
    pub const SEQ: &str = "gkv-seq";
    pub const CAPS: &str = "gkv-caps";
    pub const PTS: &str = "gkv-pts";
    pub const DTS: &str = "gkv-dts";
    pub const DURATION: &str = "gkv-duration";
    pub const FLAGS: &str = "gkv-flags";
    pub const SINK_TIME: &str = "gkv-sink-time";
    pub const CAPTURE_TIME: &str = "gkv-capture-time";

    /// Every envelope header, in the order they are written.
    pub const ALL: [&str; 11] = [
        VERSION,
        KIND,
        STREAM,
        SEQ,
        CAPS,
        PTS,
        DTS,
        DURATION,
        FLAGS,
        SINK_TIME,
        CAPTURE_TIME,
    ];
}

/// True for the headers the envelope is made of; any other header is the application's.
pub fn is_envelope_header(name: &str) -> bool {
    header::ALL.contains(&name)
}

/// What a record carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// One buffer; the record value is its bytes.
    Buffer,
    /// The stream ended (EOS reached the sink); the value is empty.
    EndOfStream,
}

impl RecordKind {
    fn as_str(self) -> &'static str {
        match self {
            RecordKind::Buffer => "buffer",
            RecordKind::EndOfStream => "eos",
        }
    }
}

/// Buffer flags that survive the trip, as a small bit set independent of GStreamer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags(u32);

impl Flags {
    pub const DISCONT: Flags = Flags(1 << 0);
    pub const DELTA_UNIT: Flags = Flags(1 << 1);
    pub const HEADER: Flags = Flags(1 << 2);
    pub const GAP: Flags = Flags(1 << 3);
    pub const DROPPABLE: Flags = Flags(1 << 4);
    pub const MARKER: Flags = Flags(1 << 5);
    pub const CORRUPTED: Flags = Flags(1 << 6);
    pub const RESYNC: Flags = Flags(1 << 7);

    const NAMES: [(Flags, &'static str); 8] = [
        (Flags::DISCONT, "discont"),
        (Flags::DELTA_UNIT, "delta-unit"),
        (Flags::HEADER, "header"),
        (Flags::GAP, "gap"),
        (Flags::DROPPABLE, "droppable"),
        (Flags::MARKER, "marker"),
        (Flags::CORRUPTED, "corrupted"),
        (Flags::RESYNC, "resync"),
    ];

    pub const fn empty() -> Flags {
        Flags(0)
    }

    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn insert(&mut self, other: Flags) {
        self.0 |= other.0;
    }

    pub fn set(&mut self, other: Flags, on: bool) {
        if on {
            self.0 |= other.0
        } else {
            self.0 &= !other.0
        }
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Parses `delta-unit,header`; unknown names are ignored so newer writers stay readable.
    pub fn parse(text: &str) -> Flags {
        let mut flags = Flags::empty();
        for name in text.split(',').map(str::trim) {
            if let Some((flag, _)) = Self::NAMES.iter().find(|(_, n)| *n == name) {
                flags.insert(*flag);
            }
        }
        flags
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (flag, name) in Self::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// Everything the headers of one record say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub kind: RecordKind,
    pub stream_id: String,
    pub seq: u64,
    pub caps: Option<String>,
    pub pts: Option<u64>,
    pub dts: Option<u64>,
    pub duration: Option<u64>,
    pub flags: Flags,
    /// Unix time in ns when the buffer reached the sink.
    pub sink_time_ns: Option<u64>,
    /// Unix time in ns when the frame entered the system (its first sink).
    pub capture_time_ns: Option<u64>,
}

/// Why a record's headers could not be read as an envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Written by a newer version of the envelope than this reader knows.
    UnsupportedVersion(String),
    /// A header the envelope requires is absent.
    Missing(&'static str),
    /// A header holds a value that cannot be read.
    Invalid { header: &'static str, value: String },
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvelopeError::UnsupportedVersion(v) => write!(
                f,
                "envelope version '{v}' is not supported (this reader knows up to {ENVELOPE_VERSION}); upgrade the reader"
            ),
            EnvelopeError::Missing(h) => write!(f, "header '{h}' is missing"),
            EnvelopeError::Invalid { header, value } => {
                write!(f, "header '{header}' has an invalid value '{value}'")
            }
        }
    }
}

impl std::error::Error for EnvelopeError {}

impl Envelope {
    /// Record `seq` of stream `stream_id`, carrying one buffer with these caps; no
    /// timestamps, flags or times yet.
    pub fn buffer(stream_id: impl Into<String>, seq: u64, caps: Option<String>) -> Envelope {
        Envelope {
            kind: RecordKind::Buffer,
            stream_id: stream_id.into(),
            seq,
            caps,
            pts: None,
            dts: None,
            duration: None,
            flags: Flags::empty(),
            sink_time_ns: None,
            capture_time_ns: None,
        }
    }

    /// The end-of-stream record of stream `stream_id`, numbered `seq`.
    pub fn end_of_stream(stream_id: impl Into<String>, seq: u64) -> Envelope {
        Envelope {
            kind: RecordKind::EndOfStream,
            ..Envelope::buffer(stream_id, seq, None)
        }
    }

    /// The headers of this envelope, in the order they are written.
    pub fn to_headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = Vec::with_capacity(10);
        headers.push((header::VERSION, ENVELOPE_VERSION.to_string()));
        headers.push((header::KIND, self.kind.as_str().to_string()));
        headers.push((header::STREAM, self.stream_id.clone()));
        headers.push((header::SEQ, self.seq.to_string()));
        if let Some(caps) = &self.caps {
            headers.push((header::CAPS, caps.clone()));
        }
        for (name, value) in [
            (header::PTS, self.pts),
            (header::DTS, self.dts),
            (header::DURATION, self.duration),
        ] {
            if let Some(v) = value {
                headers.push((name, v.to_string()));
            }
        }
        if !self.flags.is_empty() {
            headers.push((header::FLAGS, self.flags.to_string()));
        }
        if let Some(t) = self.sink_time_ns {
            headers.push((header::SINK_TIME, t.to_string()));
        }
        if let Some(t) = self.capture_time_ns {
            headers.push((header::CAPTURE_TIME, t.to_string()));
        }
        headers
    }

    /// Reads an envelope from record headers given as (name, value) pairs.
    ///
    /// `Ok(None)` means the record carries no envelope at all (no `gkv-version` header),
    /// e.g. it was written by another Kafka client.
    pub fn from_headers<'a, I>(headers: I) -> Result<Option<Envelope>, EnvelopeError>
    where
        I: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    {
        let mut version = None;
        let mut kind = None;
        let mut stream_id = None;
        let mut seq = None;
        let mut caps = None;
        let mut pts = None;
        let mut dts = None;
        let mut duration = None;
        let mut flags = None;
        let mut sink_time_ns = None;
        let mut capture_time_ns = None;

        for (name, value) in headers {
            let (name, slot): (&'static str, &mut Option<String>) = match name {
                header::VERSION => (header::VERSION, &mut version),
                header::KIND => (header::KIND, &mut kind),
                header::STREAM => (header::STREAM, &mut stream_id),
                header::SEQ => (header::SEQ, &mut seq),
                header::CAPS => (header::CAPS, &mut caps),
                header::PTS => (header::PTS, &mut pts),
                header::DTS => (header::DTS, &mut dts),
                header::DURATION => (header::DURATION, &mut duration),
                header::FLAGS => (header::FLAGS, &mut flags),
                header::SINK_TIME => (header::SINK_TIME, &mut sink_time_ns),
                header::CAPTURE_TIME => (header::CAPTURE_TIME, &mut capture_time_ns),
                _ => continue,
            };
            *slot = Some(text(name, value)?);
        }

        let Some(version) = version else {
            return Ok(None);
        };
        match version.trim().parse::<u32>() {
            Ok(v) if (1..=ENVELOPE_VERSION).contains(&v) => {}
            _ => return Err(EnvelopeError::UnsupportedVersion(version)),
        }

        let kind = match kind.as_deref() {
            Some("buffer") | None => RecordKind::Buffer,
            Some("eos") => RecordKind::EndOfStream,
            Some(other) => {
                return Err(EnvelopeError::Invalid {
                    header: header::KIND,
                    value: other.to_string(),
                });
            }
        };

        Ok(Some(Envelope {
            kind,
            stream_id: stream_id.ok_or(EnvelopeError::Missing(header::STREAM))?,
            seq: number(header::SEQ, seq)?.ok_or(EnvelopeError::Missing(header::SEQ))?,
            caps,
            pts: time(header::PTS, pts)?,
            dts: time(header::DTS, dts)?,
            duration: time(header::DURATION, duration)?,
            flags: flags.as_deref().map(Flags::parse).unwrap_or_default(),
            sink_time_ns: time(header::SINK_TIME, sink_time_ns)?,
            capture_time_ns: time(header::CAPTURE_TIME, capture_time_ns)?,
        }))
    }
}

fn text(header: &'static str, value: Option<&[u8]>) -> Result<String, EnvelopeError> {
    let bytes = value.unwrap_or_default();
    String::from_utf8(bytes.to_vec()).map_err(|_| EnvelopeError::Invalid {
        header,
        value: String::from_utf8_lossy(bytes).into_owned(),
    })
}

fn number(header: &'static str, value: Option<String>) -> Result<Option<u64>, EnvelopeError> {
    value
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| EnvelopeError::Invalid { header, value: v })
        })
        .transpose()
}

/// A time in ns. u64::MAX is GStreamer's "no time": no writer sends it, and a reader that
/// built a `gst::ClockTime` from it would panic.
fn time(header: &'static str, value: Option<String>) -> Result<Option<u64>, EnvelopeError> {
    match number(header, value)? {
        Some(u64::MAX) => Err(EnvelopeError::Invalid {
            header,
            value: u64::MAX.to_string(),
        }),
        t => Ok(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        let mut flags = Flags::DELTA_UNIT;
        flags.insert(Flags::DISCONT);
        Envelope {
            pts: Some(1_000_000_000),
            dts: Some(966_666_667),
            duration: Some(33_333_333),
            flags,
            sink_time_ns: Some(1_763_700_000_000_000_000),
            capture_time_ns: Some(1_763_699_999_000_000_000),
            ..Envelope::buffer(
                "cam1-00ff",
                42,
                Some("video/x-h264, stream-format=(string)byte-stream".into()),
            )
        }
    }

    fn round_trip(env: &Envelope) -> Result<Option<Envelope>, EnvelopeError> {
        let headers = env.to_headers();
        Envelope::from_headers(headers.iter().map(|(k, v)| (*k, Some(v.as_bytes()))))
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let env = sample();
        assert_eq!(round_trip(&env).unwrap(), Some(env));
    }

    #[test]
    fn absent_optional_fields_stay_absent() {
        let env = Envelope::end_of_stream("cam1-00ff", 43);
        let headers = env.to_headers();
        assert!(
            !headers
                .iter()
                .any(|(k, _)| *k == header::PTS || *k == header::FLAGS)
        );
        assert_eq!(round_trip(&env).unwrap(), Some(env));
    }

    #[test]
    fn every_written_header_is_an_envelope_header() {
        for (name, _) in sample().to_headers() {
            assert!(is_envelope_header(name), "{name}");
        }
        assert!(!is_envelope_header("gkv-detections"));
    }

    #[test]
    fn no_version_header_means_no_envelope() {
        let headers = [("other", Some(&b"x"[..]))];
        assert_eq!(Envelope::from_headers(headers), Ok(None));
    }

    #[test]
    fn future_version_is_refused() {
        let headers = [
            (header::VERSION, Some(&b"2"[..])),
            (header::STREAM, Some(&b"s"[..])),
            (header::SEQ, Some(&b"0"[..])),
        ];
        assert_eq!(
            Envelope::from_headers(headers),
            Err(EnvelopeError::UnsupportedVersion("2".into()))
        );
    }

    #[test]
    fn garbage_numbers_are_reported_with_their_header() {
        let headers = [
            (header::VERSION, Some(&b"1"[..])),
            (header::STREAM, Some(&b"s"[..])),
            (header::SEQ, Some(&b"0"[..])),
            (header::PTS, Some(&b"12abc"[..])),
        ];
        let err = Envelope::from_headers(headers).unwrap_err();
        assert_eq!(
            err,
            EnvelopeError::Invalid {
                header: header::PTS,
                value: "12abc".into()
            }
        );
        assert!(err.to_string().contains("gkv-pts"));
    }

    #[test]
    fn non_utf8_and_missing_required_headers_are_errors() {
        let bad_utf8 = [
            (header::VERSION, Some(&b"1"[..])),
            (header::STREAM, Some(&[0xff, 0xfe][..])),
        ];
        assert!(matches!(
            Envelope::from_headers(bad_utf8),
            Err(EnvelopeError::Invalid {
                header: header::STREAM,
                ..
            })
        ));
        let no_seq = [
            (header::VERSION, Some(&b"1"[..])),
            (header::STREAM, Some(&b"s"[..])),
        ];
        assert_eq!(
            Envelope::from_headers(no_seq),
            Err(EnvelopeError::Missing(header::SEQ))
        );
    }

    #[test]
    fn unknown_flag_names_are_ignored() {
        let flags = Flags::parse("delta-unit, from-the-future ,header");
        assert!(flags.contains(Flags::DELTA_UNIT) && flags.contains(Flags::HEADER));
        assert_eq!(flags.to_string(), "delta-unit,header");
    }
}
