// SPDX-License-Identifier: MIT OR Apache-2.0
//! `kafkasrc`: a live source that rebuilds a stream from Kafka records. See `imp.rs`.

use gst::glib;
use gst::prelude::*;

mod consumer;
mod imp;
mod payload;
mod sequence;
mod streams;
mod window;

pub use imp::BadRecordPolicy;

glib::wrapper! {
    pub struct KafkaSrc(ObjectSubclass<imp::KafkaSrc>) @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    // Documented with the element (gst-inspect, the plugin docs) as part of its API.
    BadRecordPolicy::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    imp::CommitAfter::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    imp::StartKeyframe::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "kafkasrc",
        gst::Rank::NONE,
        KafkaSrc::static_type(),
    )
}
