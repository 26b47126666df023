// SPDX-License-Identifier: MIT OR Apache-2.0
//! What the documentation tests share: which README documents which plugin, and GStreamer
//! set up with every plugin of the workspace.
#![allow(dead_code, reason = "each test file uses part of it")]

use std::path::Path;

/// The README files with runnable examples, in the order their examples build on each other
/// (the plugin READMEs read topics the main README's examples wrote).
pub const READMES: [&str; 4] = [
    "README.md",
    "plugins/kafka/README.md",
    "plugins/yolo/README.md",
    "plugins/analytics/README.md",
];

/// Each plugin's name (as registered) and the README holding its elements' property tables.
pub const PLUGIN_READMES: [(&str, &str); 3] = [
    ("kafka", "plugins/kafka/README.md"),
    ("yolo", "plugins/yolo/README.md"),
    ("gkvanalytics", "plugins/analytics/README.md"),
];

/// A README of this repository, by its path from the repository root.
pub fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// GStreamer with the workspace's plugins registered statically.
pub fn init() {
    testkit::init(&[
        gstkafka::plugin_register_static,
        gstyolo::plugin_register_static,
        gstgkvanalytics::plugin_register_static,
    ]);
}
