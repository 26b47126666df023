// SPDX-License-Identifier: MIT OR Apache-2.0
//! `yolodetect`: YOLO detection on ONNX Runtime. The element is in `imp.rs`; the model
//! (`model.rs`), pre-processing (`letterbox.rs`), motion gating (`motion.rs`),
//! post-processing (`postprocess.rs`), what is kept per stream (`streams.rs`) and drawing
//! (`draw.rs`) are plain Rust, tested on their own.

use gst::glib;
use gst::prelude::*;

mod draw;
mod imp;
mod labels;
pub mod letterbox;
pub mod model;
mod motion;
mod postprocess;
mod streams;

pub use imp::{ExecutionProvider, OpenVinoDevice, OpenVinoPrecision};
/// The process's ONNX Runtime (loaded once), for programs that also run models directly.
pub use model::runtime;

glib::wrapper! {
    pub struct YoloDetect(ObjectSubclass<imp::YoloDetect>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    // Documented with the element (gst-inspect, the plugin docs) as part of its API.
    ExecutionProvider::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    OpenVinoDevice::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    OpenVinoPrecision::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "yolodetect",
        gst::Rank::NONE,
        YoloDetect::static_type(),
    )
}
