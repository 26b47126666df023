// SPDX-License-Identifier: MIT OR Apache-2.0
//! The clips folder `clipper` writes and the viewer serves: `EVENT_ID.mp4` files and an
//! `index.jsonl` with a line per clipped event.

use std::io::{BufRead, BufReader};
use std::path::Path;

/// The index's file name in the clips folder.
pub const INDEX: &str = "index.jsonl";

/// One line of the index: an event and its clip.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct IndexEntry {
    pub camera: String,
    pub event_id: String,
    pub kind: String,
    pub place: String,
    /// The event's capture time, Unix ms.
    pub event_ms: i64,
    /// The window asked for: `event - pre` to `event + post`.
    pub from_ms: i64,
    pub to_ms: i64,
    /// Capture times of the clip's first and last frames.
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub frames: u64,
    /// The file's name in the folder; none for an event without frames to clip.
    pub file: Option<String>,
    pub bytes: u64,
}

/// A clip's file name for an event id: only 16 hex digits make one, so that no id read
/// from a record or a URL names a path outside the folder.
pub fn file_name(event_id: &str) -> Option<String> {
    (event_id.len() == 16 && event_id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("{}.mp4", event_id.to_ascii_lowercase()))
}

/// The index's entries in file order. A line cut short by a crash while it was written is
/// not an entry.
pub fn read_index(dir: &Path) -> std::io::Result<Vec<IndexEntry>> {
    let file = match std::fs::File::open(dir.join(INDEX)) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut entries = Vec::new();
    for line in BufReader::new(file).lines() {
        if let Ok(entry) = serde_json::from_str::<IndexEntry>(&line?) {
            entries.push(entry);
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hex_ids_name_files() {
        assert_eq!(
            file_name("5A0E7CF2B1D49E38").as_deref(),
            Some("5a0e7cf2b1d49e38.mp4")
        );
        for bad in [
            "../../etc/passwd",
            "5a0e7cf2b1d49e3",
            "5a0e7cf2b1d49e3g",
            "",
        ] {
            assert_eq!(file_name(bad), None, "{bad}");
        }
    }
}
