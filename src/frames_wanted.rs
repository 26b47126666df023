// SPDX-License-Identifier: MIT OR Apache-2.0
//! How often a stage downstream uses a camera's frames, asked by a decoder upstream so that
//! it decodes no more than that stage needs (`kafkadecodebin decode=auto` asks;
//! `yolodetect` answers with its `max-rate` and `interval`).
//!
//! A custom query travelling downstream: elements that do not know it forward it
//! (`gst_pad_query_default`), so converters and queues in between are transparent.

use gst::prelude::*;

/// Name of the query's structure.
pub const QUERY_NAME: &str = "gkv-frames-wanted";

/// What the stage answered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FramesWanted {
    /// Frames per second per camera the stage uses at most; 0 for every frame.
    pub max_rate: f64,
    /// The stage uses every `interval`th frame of a camera (1: each).
    pub interval: u32,
}

impl FramesWanted {
    /// Asks whatever is linked to `pad` (a source pad); `None` when nothing answered.
    pub fn ask(pad: &gst::Pad) -> Option<FramesWanted> {
        let mut query = gst::query::Custom::new(gst::Structure::new_empty(QUERY_NAME));
        if !pad.peer_query(&mut query) {
            return None;
        }
        let structure = query.structure()?;
        Some(FramesWanted {
            max_rate: structure.get("max-rate").ok()?,
            interval: structure.get("interval").ok()?,
        })
    }

    /// Answers `query` if it is this one; false (not handled) otherwise.
    pub fn answer(self, query: &mut gst::QueryRef) -> bool {
        let gst::QueryViewMut::Custom(custom) = query.view_mut() else {
            return false;
        };
        let structure = custom.structure_mut();
        if structure.name() != QUERY_NAME {
            return false;
        }
        structure.set("max-rate", self.max_rate);
        structure.set("interval", self.interval);
        true
    }
}
