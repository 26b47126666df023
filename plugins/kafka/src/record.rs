// SPDX-License-Identifier: MIT OR Apache-2.0
//! One buffer ⇄ one Kafka record, writer and reader side by side: what `kafkasink` puts
//! in a record's headers (the envelope of `kafkavision::envelope`, then the buffer's other
//! Kafka headers) and how `kafkasrc` turns a record back into a buffer (timestamps, flags,
//! the record and headers metas, reference timestamps). Neither side looks inside the
//! value or the extra headers.

pub use kafkavision::meta::UNIX_TIME_CAPS;
use kafkavision::meta::{KafkaHeaders, RecordMeta, capture_time};
use kafkavision::{Envelope, EnvelopeError, Flags};
/// Caps of the reference timestamp holding the PTS the buffer had at `kafkasink`.
pub const ORIGINAL_PTS_CAPS: &str = "timestamp/x-gkv-original-pts";

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

fn envelope_flags(flags: gst::BufferFlags) -> Flags {
    let mut out = Flags::empty();
    for (gst_flag, flag) in FLAG_MAP {
        out.set(flag, flags.contains(gst_flag));
    }
    out
}

fn buffer_flags(flags: Flags) -> gst::BufferFlags {
    let mut out = gst::BufferFlags::empty();
    for (gst_flag, flag) in FLAG_MAP {
        out.set(gst_flag, flags.contains(flag));
    }
    out
}

fn add_reference_time(buffer: &mut gst::BufferRef, caps_name: &str, ns: u64) {
    gst::ReferenceTimestampMeta::add(
        buffer,
        &gst::Caps::new_empty_simple(caps_name),
        gst::ClockTime::from_nseconds(ns),
        gst::ClockTime::NONE,
    );
}

// ---------------------------------------------------------------------------------------
// Writing (kafkasink)
// ---------------------------------------------------------------------------------------

/// The envelope of `buffer` as record `seq` of stream `stream_id`. The first sink a frame
/// meets stamps its capture time (`sink_time_ns`); later hops carry it on.
pub fn envelope_of(
    buffer: &gst::BufferRef,
    stream_id: &str,
    seq: u64,
    caps: Option<&str>,
    sink_time_ns: u64,
) -> Envelope {
    let mut envelope = Envelope::buffer(stream_id, seq, caps.map(String::from));
    envelope.pts = buffer.pts().map(|t| t.nseconds());
    envelope.dts = buffer.dts().map(|t| t.nseconds());
    envelope.duration = buffer.duration().map(|t| t.nseconds());
    envelope.flags = envelope_flags(buffer.flags());
    envelope.sink_time_ns = Some(sink_time_ns);
    envelope.capture_time_ns = Some(capture_time(buffer).unwrap_or(sink_time_ns));
    envelope
}

/// A record's headers: the envelope, then `extra` (minus any that would shadow an envelope
/// header), as (name, value) pairs in the order they are written.
pub fn record_headers<'a>(
    envelope: &Envelope,
    extra: &'a KafkaHeaders,
) -> Vec<(std::borrow::Cow<'a, str>, Vec<u8>)> {
    let mut headers: Vec<(std::borrow::Cow<'a, str>, Vec<u8>)> = envelope
        .to_headers()
        .into_iter()
        .map(|(name, value)| (name.into(), value.into_bytes()))
        .collect();
    for (name, value) in &extra.0 {
        if !kafkavision::envelope::is_envelope_header(name) {
            headers.push((name.as_str().into(), value.clone()));
        }
    }
    headers
}

// ---------------------------------------------------------------------------------------
// Reading (kafkasrc)
// ---------------------------------------------------------------------------------------

/// A record's headers split into its envelope (`None`: written by another client, without
/// one) and the other headers, which ride on in a [`KafkaHeaders`] meta.
pub fn split_headers<'a, I>(headers: I) -> Result<(Option<Envelope>, KafkaHeaders), EnvelopeError>
where
    I: IntoIterator<Item = (&'a str, Option<&'a [u8]>)> + Clone,
{
    let envelope = Envelope::from_headers(headers.clone())?;
    let extra = headers
        .into_iter()
        .filter(|(name, _)| !kafkavision::envelope::is_envelope_header(name))
        .map(|(name, value)| (name.to_string(), value.unwrap_or_default().to_vec()))
        .collect();
    Ok((envelope, KafkaHeaders(extra)))
}

/// How a stream's original timestamps map onto this pipeline's running time.
#[derive(Clone, Copy, Debug)]
pub struct Retime {
    /// Running time minus original time, fixed at the stream's first buffer.
    pub offset: i128,
    /// Running time now, for buffers without timestamps.
    pub now: u64,
}

/// The buffer of a record with an envelope: the value, timestamps moved by `retime`,
/// flags (`discont` added), the original PTS and capture time as reference timestamps,
/// and the record and headers metas.
pub fn buffer_of(
    value: &[u8],
    envelope: &Envelope,
    retime: Retime,
    discont: bool,
    origin: &RecordMeta,
    extra: &KafkaHeaders,
) -> gst::Buffer {
    let shift = |t: Option<u64>| {
        // Clamped below GST_CLOCK_TIME_NONE, which ClockTime refuses.
        t.map(|t| {
            let shifted = (t as i128 + retime.offset).clamp(0, (u64::MAX - 1) as i128);
            gst::ClockTime::from_nseconds(shifted as u64)
        })
    };
    let mut buffer = gst::Buffer::from_mut_slice(value.to_vec());
    {
        let buffer = buffer.get_mut().unwrap();
        if envelope.dts.or(envelope.pts).is_some() {
            buffer.set_pts(shift(envelope.pts));
            buffer.set_dts(shift(envelope.dts));
        } else {
            buffer.set_pts(gst::ClockTime::from_nseconds(retime.now));
        }
        buffer.set_duration(envelope.duration.map(gst::ClockTime::from_nseconds));
        buffer.set_offset(envelope.seq);
        let mut flags = buffer_flags(envelope.flags);
        if discont {
            flags.insert(gst::BufferFlags::DISCONT);
        }
        buffer.set_flags(flags);
        if let Some(pts) = envelope.pts {
            add_reference_time(buffer, ORIGINAL_PTS_CAPS, pts);
        }
        // The capture time (older writers only had the sink time).
        if let Some(t) = envelope.capture_time_ns.or(envelope.sink_time_ns) {
            add_reference_time(buffer, UNIX_TIME_CAPS, t);
        }
        origin.attach(buffer);
        extra.attach(buffer);
    }
    buffer
}

/// The buffer of a record without envelope: the value stamped with its arrival time, its
/// Kafka timestamp as capture time; its partition is its stream and its offset its
/// sequence number.
pub fn plain_buffer_of(
    value: &[u8],
    arrival: Option<gst::ClockTime>,
    kafka_timestamp_ms: Option<i64>,
    origin: &RecordMeta,
    extra: &KafkaHeaders,
) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_mut_slice(value.to_vec());
    {
        let buffer = buffer.get_mut().unwrap();
        buffer.set_pts(arrival);
        buffer.set_offset(origin.offset as u64);
        if let Some(ms) = kafka_timestamp_ms.filter(|ms| *ms >= 0) {
            add_reference_time(buffer, UNIX_TIME_CAPS, ms as u64 * 1_000_000);
        }
        origin.attach(buffer);
        extra.attach(buffer);
    }
    buffer
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafkavision::meta::reference_time;

    fn origin() -> RecordMeta {
        RecordMeta {
            topic: "frames".into(),
            partition: 1,
            offset: 77,
            key: Some("cam1".into()),
            stream: "cam1-ab".into(),
            seq: 5,
        }
    }

    /// What kafkasink writes, read back as kafkasrc does, without a broker.
    #[test]
    fn a_buffer_survives_the_record_round_trip() {
        gst::init().unwrap();
        let mut sent = gst::Buffer::from_slice(b"jpeg bytes".to_vec());
        {
            let b = sent.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_mseconds(1000));
            b.set_dts(gst::ClockTime::from_mseconds(966));
            b.set_duration(gst::ClockTime::from_mseconds(33));
            b.set_flags(gst::BufferFlags::DELTA_UNIT | gst::BufferFlags::MARKER);
            add_reference_time(b, UNIX_TIME_CAPS, 1_763_700_000_000_000_000);
            KafkaHeaders(vec![
                ("trace".into(), vec![0xff, 1]),
                // A header that would shadow the envelope is never written.
                ("gkv-seq".into(), b"999".to_vec()),
            ])
            .attach(b);
        }
        let extra = KafkaHeaders::of(&sent);
        let envelope = envelope_of(&sent, "cam1-ab", 5, Some("image/jpeg"), 1);
        let headers = record_headers(&envelope, &extra);
        assert_eq!(headers.iter().filter(|(n, _)| n == "gkv-seq").count(), 1);

        let (read, read_extra) = split_headers(
            headers
                .iter()
                .map(|(n, v)| (n.as_ref(), Some(v.as_slice()))),
        )
        .unwrap();
        let read = read.unwrap();
        assert_eq!(read, envelope);
        assert_eq!(read.capture_time_ns, Some(1_763_700_000_000_000_000));
        assert_eq!(
            read_extra,
            KafkaHeaders(vec![("trace".into(), vec![0xff, 1])])
        );

        let retime = Retime { offset: 0, now: 0 };
        let got = buffer_of(b"jpeg bytes", &read, retime, true, &origin(), &read_extra);
        assert_eq!(got.pts(), sent.pts());
        assert_eq!(got.dts(), sent.dts());
        assert_eq!(got.duration(), sent.duration());
        assert_eq!(got.offset(), 5);
        assert_eq!(
            got.flags(),
            gst::BufferFlags::DELTA_UNIT | gst::BufferFlags::MARKER | gst::BufferFlags::DISCONT
        );
        assert_eq!(reference_time(&got, ORIGINAL_PTS_CAPS), Some(1_000_000_000));
        assert_eq!(
            reference_time(&got, UNIX_TIME_CAPS),
            Some(1_763_700_000_000_000_000)
        );
        assert_eq!(RecordMeta::of(&got), Some(origin()));
        assert_eq!(KafkaHeaders::of(&got), read_extra);
    }

    #[test]
    fn timestamps_move_onto_running_time_and_stay_below_no_time() {
        gst::init().unwrap();
        let mut envelope = Envelope::buffer("s", 0, None);
        envelope.pts = Some(u64::MAX - 10);
        let retime = Retime {
            offset: 1_000,
            now: 0,
        };
        let b = buffer_of(
            b"x",
            &envelope,
            retime,
            false,
            &origin(),
            &KafkaHeaders::default(),
        );
        assert_eq!(b.pts(), Some(gst::ClockTime::from_nseconds(u64::MAX - 1)));
        // No timestamp at all: the arrival's running time.
        let untimed = Envelope::buffer("s", 1, None);
        let retime = Retime { offset: 0, now: 42 };
        let b = buffer_of(
            b"x",
            &untimed,
            retime,
            false,
            &origin(),
            &KafkaHeaders::default(),
        );
        assert_eq!(b.pts(), Some(gst::ClockTime::from_nseconds(42)));
    }
}
