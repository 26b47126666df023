// SPDX-License-Identifier: MIT OR Apache-2.0
//! GStreamer plugin `gkvanalytics`: elements that work on the detections detectors attach
//! as region-of-interest metas.
//!
//! - [`detectionsconvert`]: region-of-interest metas ⇄ `gkv.detections` JSON (a record
//!   value, or the `gkv-detections` Kafka header of a frame).
//!
//! A plugin of its own: it needs neither Kafka nor ONNX Runtime.

use gst::glib;

pub mod detectionsconvert;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    kafkavision::meta::register();
    detectionsconvert::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    gkvanalytics,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
