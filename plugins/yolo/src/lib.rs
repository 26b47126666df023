// SPDX-License-Identifier: MIT OR Apache-2.0
//! GStreamer plugin `yolo`: [`yolodetect`], YOLO object detection on ONNX Runtime.
//!
//! A plugin of its own so that the Kafka elements work on machines without ONNX Runtime;
//! the runtime is loaded when the element starts, never when the plugin loads.

use gst::glib;

pub mod yolodetect;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    yolodetect::register(plugin)
}

gst::plugin_define!(
    yolo,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
