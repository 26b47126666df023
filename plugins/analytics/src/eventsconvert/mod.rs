// SPDX-License-Identifier: MIT OR Apache-2.0
//! `eventsconvert`: a frame's events into `gkv.events` JSON buffers. See `imp.rs`.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct EventsConvert(ObjectSubclass<imp::EventsConvert>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "eventsconvert",
        gst::Rank::NONE,
        EventsConvert::static_type(),
    )
}
