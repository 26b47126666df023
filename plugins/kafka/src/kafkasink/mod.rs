// SPDX-License-Identifier: MIT OR Apache-2.0
//! `kafkasink`: writes each buffer as one Kafka record. See `imp.rs` for the details.

use gst::glib;
use gst::prelude::*;

mod imp;
mod producer;

pub use imp::{Compression, KeyFrom, Partitioner};
pub use producer::QueueFullPolicy;

glib::wrapper! {
    pub struct KafkaSink(ObjectSubclass<imp::KafkaSink>) @extends gst_base::BaseSink, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    // Documented with the element (gst-inspect, the plugin docs) as part of its API.
    Compression::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    KeyFrom::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    Partitioner::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    QueueFullPolicy::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "kafkasink",
        gst::Rank::NONE,
        KafkaSink::static_type(),
    )
}
