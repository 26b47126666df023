// SPDX-License-Identifier: MIT OR Apache-2.0
//! `objecttrack`: a track id for each detection, per camera. The element is in `imp.rs`,
//! the tracker (SORT: Kalman-predicted boxes, IoU assignment) in `sort.rs`.

use gst::glib;
use gst::prelude::*;

mod imp;
#[cfg(test)]
mod scenes;
pub mod sort;

glib::wrapper! {
    pub struct ObjectTrack(ObjectSubclass<imp::ObjectTrack>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "objecttrack",
        gst::Rank::NONE,
        ObjectTrack::static_type(),
    )
}
