// SPDX-License-Identifier: MIT OR Apache-2.0
//! Shared code of the gst-kafka-vision plugins and tools.
//!
//! - [`envelope`]: how a GStreamer buffer travels as one Kafka record (value = the bytes,
//!   headers = caps, timestamps, flags, sequence number).
//! - [`client_config`]: the `config` property's `key=value,...` list for librdkafka, and
//!   how it is shown without secrets.
//! - [`detections`]: one frame's detections as versioned JSON.

pub mod client_config;
pub mod detections;
pub mod envelope;

pub use envelope::{ENVELOPE_VERSION, Envelope, EnvelopeError, Flags, RecordKind};
