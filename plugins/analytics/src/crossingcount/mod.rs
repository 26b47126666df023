// SPDX-License-Identifier: MIT OR Apache-2.0
//! `crossingcount`: events when tracked objects cross lines or enter and leave zones. The
//! element is in `imp.rs`; lines, zones and their configuration in `geometry.rs`; what a
//! frame's tracks did in `counting.rs`.

use gst::glib;
use gst::prelude::*;

mod counting;
pub mod geometry;
mod imp;

pub use imp::Anchor;

glib::wrapper! {
    pub struct CrossingCount(ObjectSubclass<imp::CrossingCount>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    // Documented with the element (gst-inspect, the plugin docs) as part of its API.
    Anchor::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "crossingcount",
        gst::Rank::NONE,
        CrossingCount::static_type(),
    )
}
