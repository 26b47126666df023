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
    gst::Element::register(
        Some(plugin),
        "crossingcount",
        gst::Rank::NONE,
        CrossingCount::static_type(),
    )
}
