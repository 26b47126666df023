// SPDX-License-Identifier: MIT OR Apache-2.0
//! Cheap checks that a record's value is what its caps say, so garbage is caught at the
//! source instead of in a decoder. Only container formats GStreamer itself defines (JPEG,
//! raw video) are checked; anything else passes as it is.

/// Checks a value against its caps; the error says what is wrong.
pub fn check_payload(caps: &gst::Caps, payload: &[u8]) -> Result<(), String> {
    if payload.is_empty() {
        return Err("record value is empty".into());
    }
    let Some(s) = caps.structure(0) else {
        return Ok(());
    };
    match s.name().as_str() {
        "image/jpeg" => check_jpeg(payload),
        "video/x-raw" => match gst_video::VideoInfo::from_caps(caps) {
            Ok(info) if payload.len() < info.size() => Err(format!(
                "value has {} bytes, but caps {}x{} {} need {}",
                payload.len(),
                info.width(),
                info.height(),
                info.format(),
                info.size()
            )),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// A whole JPEG: the SOI marker, a marker segment after it, and the EOI marker at the end
/// (zero padding after it allowed). Catches garbage and truncated frames, which decoders
/// would drop silently or decode half grey.
fn check_jpeg(payload: &[u8]) -> Result<(), String> {
    if !payload.starts_with(&[0xFF, 0xD8]) {
        return Err(
            "caps say image/jpeg but the value does not start with a JPEG SOI marker".into(),
        );
    }
    if payload.get(2) != Some(&0xFF) {
        return Err("JPEG SOI marker is not followed by a marker segment (corrupt data)".into());
    }
    let end = payload.iter().rposition(|b| *b != 0).unwrap_or(0);
    if end < 3 || payload[end - 1..=end] != [0xFF, 0xD9] {
        return Err(format!(
            "JPEG value of {} bytes does not end with an EOI marker (truncated?)",
            payload.len()
        ));
    }
    Ok(())
}
