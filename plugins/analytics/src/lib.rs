// SPDX-License-Identifier: MIT OR Apache-2.0
//! GStreamer plugin `gkvanalytics`: elements that work on the detections detectors attach
//! as region-of-interest metas.
//!
//! - [`detectionsconvert`]: region-of-interest metas ⇄ `gkv.detections` JSON (a record
//!   value, or the `gkv-detections` Kafka header of a frame).
//! - [`objecttrack`]: a track id for each detection, stable while the object is in view,
//!   per camera.
//! - [`crossingcount`]: events when tracked objects cross lines or enter and leave zones.
//! - [`eventsconvert`]: a frame's events as `gkv.events` JSON, one buffer each.
//!
//! A plugin of its own: it needs no ONNX Runtime, and a Kafka broker only for the camera
//! states that `objecttrack` and `crossingcount` save with `state-topic`
//! ([`camera_state`]).

use gst::glib;

pub mod camera_state;
pub mod crossingcount;
pub mod detectionsconvert;
pub mod eventsconvert;
pub mod objecttrack;
mod output;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    kafkavision::meta::register();
    kafkavision::events::meta::register();
    detectionsconvert::register(plugin)?;
    objecttrack::register(plugin)?;
    crossingcount::register(plugin)?;
    eventsconvert::register(plugin)?;
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
