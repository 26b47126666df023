// SPDX-License-Identifier: MIT OR Apache-2.0
//! `detectionsconvert`: region-of-interest metas ⇄ `gkv.detections` JSON. See `imp.rs`.

use gst::glib;
use gst::prelude::*;

mod imp;

pub use imp::Output;

glib::wrapper! {
    pub struct DetectionsConvert(ObjectSubclass<imp::DetectionsConvert>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    // Documented with the element (gst-inspect, the plugin docs) as part of its API.
    Output::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "detectionsconvert",
        gst::Rank::NONE,
        DetectionsConvert::static_type(),
    )
}
