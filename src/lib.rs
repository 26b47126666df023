// SPDX-License-Identifier: MIT OR Apache-2.0
//! Shared code of the gst-kafka-vision plugins and tools.
//!
//! - [`envelope`]: how a GStreamer buffer travels as one Kafka record (value = the bytes,
//!   headers = caps, timestamps, flags, sequence number).
//! - [`clock`]: Unix time as records carry it; random suffixes for names.
//! - [`client_config`]: the `config` property's `key=value,...` list for librdkafka, and
//!   how it is shown without secrets.
//! - [`detections`]: one frame's detections as versioned JSON, and (feature `gst`) as
//!   region-of-interest metas on buffers.
//! - [`events`]: what happened in a camera's view (line crossings, zone entries and
//!   exits) as versioned JSON, one record per event.
//! - [`identity`]: ids that come out the same when the same thing is computed again
//!   (an event's `event_id`, track ids), on every machine.
//! - [`latency`]: capture-to-here latency histograms with the same bounds everywhere.
//! - [`sequence`]: frames missing, repeated and late in a stream, from `gkv-seq`.
//! - [`per_run`]: the counters behind an element's `stats`, fresh at each start.
//! - [`frames_wanted`] (feature `gst`): how often a stage downstream uses a camera's
//!   frames, so that a decoder upstream decodes no more than that.
//! - [`meta`] (feature `gst`): typed accessors of the metas the elements share: where a
//!   buffer's record came from, and the Kafka headers that ride with it.

pub mod client_config;
pub mod clock;
pub mod detections;
pub mod envelope;
pub mod events;
#[cfg(feature = "gst")]
pub mod frames_wanted;
pub mod identity;
pub mod latency;
#[cfg(feature = "gst")]
pub mod meta;
pub mod per_run;
pub mod sequence;

pub use envelope::{ENVELOPE_VERSION, Envelope, EnvelopeError, Flags, RecordKind};
