// SPDX-License-Identifier: MIT OR Apache-2.0
#![allow(clippy::non_send_fields_in_send_ty)]
//! GStreamer plugin `kafka`: carries any stream through Apache Kafka.
//!
//! - [`kafkasink`]: each buffer becomes one Kafka record (value = buffer bytes, headers =
//!   the envelope of `kafkavision::envelope`, then the buffer's other Kafka headers).
//! - [`kafkasrc`]: a live source that rebuilds the stream from those records, scales out
//!   with consumer groups and commits offsets only after downstream released the buffer.
//! - [`kafkadecodebin`]: one decoder per stream of an interleaved multi-camera topic.
//!
//! Applications read where a buffer came from with [`RecordMeta`], and the Kafka headers
//! riding with it with [`KafkaHeaders`]. The `stats` fields programs act on (broker
//! reachability, progress, lag) are named in [`stats`].

use gst::glib;

mod client;
pub mod kafkadecodebin;
pub mod kafkasink;
pub mod kafkasrc;
mod record;
mod release;
pub mod stats;

pub use kafkavision::meta::{HEADERS_META, KafkaHeaders, RECORD_META, RecordMeta};
pub use record::{ORIGINAL_PTS_CAPS, UNIX_TIME_CAPS};

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    kafkavision::meta::register();
    kafkasink::register(plugin)?;
    kafkasrc::register(plugin)?;
    kafkadecodebin::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    kafka,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
