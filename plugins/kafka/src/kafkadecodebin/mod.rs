// SPDX-License-Identifier: MIT OR Apache-2.0
//! `kafkadecodebin`: one decoder per stream of a topic that interleaves many cameras. See
//! `imp.rs`.

use gst::glib;
use gst::prelude::*;

mod imp;
mod router;

glib::wrapper! {
    pub struct KafkaDecodeBin(ObjectSubclass<imp::KafkaDecodeBin>) @extends gst::Bin, gst::Element, gst::Object, @implements gst::ChildProxy;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "kafkadecodebin",
        gst::Rank::NONE,
        KafkaDecodeBin::static_type(),
    )
}
