// SPDX-License-Identifier: MIT OR Apache-2.0
//! `kafkadecodebin`: one decoder per stream of a topic that interleaves many cameras. See
//! `imp.rs`.

use gst::glib;
use gst::prelude::*;

mod h264;
mod imp;
mod policy;
mod router;

/// Which of a stream's frames are decoded (property `decode`).
#[derive(Debug, Default, Eq, PartialEq, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstKafkaDecodePolicy")]
pub enum DecodePolicy {
    #[default]
    #[enum_value(name = "Every frame", nick = "all")]
    All = 0,
    #[enum_value(
        name = "Skip frames no other frame refers to (H.264 non-reference B-frames)",
        nick = "reference"
    )]
    Reference = 1,
    #[enum_value(name = "Keyframes only", nick = "keyframes")]
    Keyframes = 2,
    #[enum_value(
        name = "Keyframes only while they serve every frame the stage downstream uses (its \
                max-rate or interval, e.g. yolodetect's), else every frame",
        nick = "auto"
    )]
    Auto = 3,
}

glib::wrapper! {
    pub struct KafkaDecodeBin(ObjectSubclass<imp::KafkaDecodeBin>) @extends gst::Bin, gst::Element, gst::Object, @implements gst::ChildProxy;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    DecodePolicy::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "kafkadecodebin",
        gst::Rank::NONE,
        KafkaDecodeBin::static_type(),
    )
}
