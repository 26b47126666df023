// SPDX-License-Identifier: MIT OR Apache-2.0
//! `kafkasrc`: a live source that rebuilds a stream from Kafka records. See `imp.rs`.

use gst::glib;
use gst::prelude::*;

mod consumer;
mod imp;
mod payload;
mod streams;

pub use imp::BadRecordPolicy;

glib::wrapper! {
    pub struct KafkaSrc(ObjectSubclass<imp::KafkaSrc>) @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "kafkasrc",
        gst::Rank::NONE,
        KafkaSrc::static_type(),
    )
}
