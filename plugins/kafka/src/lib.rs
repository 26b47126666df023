// SPDX-License-Identifier: MIT OR Apache-2.0
#![allow(clippy::non_send_fields_in_send_ty)]
//! GStreamer plugin `kafka`: carries any stream through Apache Kafka.
//!
//! - [`kafkasink`]: each buffer becomes one Kafka record (value = buffer bytes, headers =
//!   the envelope of `kafkavision::envelope`).
//! - [`kafkasrc`]: a live source that rebuilds the stream from those records, scales out
//!   with consumer groups and commits offsets only after the buffer was pushed.

use gst::glib;

mod common;
pub mod kafkasink;
pub mod kafkasrc;
mod release;

pub use common::RECORD_META;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    common::register_record_meta();
    kafkasink::register(plugin)?;
    kafkasrc::register(plugin)?;
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
