// SPDX-License-Identifier: MIT OR Apache-2.0
//! Which H.264 access units no other frame refers to, read from their NAL unit headers
//! (`nal_ref_idc` 0 on every slice): a decoder that skips them decodes every other frame
//! unharmed. Camera encoders make them as B-frames; streams without B-frames have none.

/// How the stream's NAL units are delimited, from its caps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Framing {
    /// Annex B start codes (`stream-format=byte-stream`).
    StartCodes,
    /// Each NAL unit after its length in this many bytes (`avc`/`avc3`, from `codec_data`).
    Lengths(usize),
}

impl Framing {
    /// `None` for caps that are not H.264, or AVC caps without a readable `codec_data`.
    pub fn of(caps: &gst::CapsRef) -> Option<Framing> {
        let structure = caps.structure(0)?;
        if structure.name() != "video/x-h264" {
            return None;
        }
        match structure.get::<&str>("stream-format").ok() {
            Some("avc") | Some("avc3") => {
                let codec_data = structure.get::<gst::Buffer>("codec_data").ok()?;
                let map = codec_data.map_readable().ok()?;
                // AVCDecoderConfigurationRecord: lengthSizeMinusOne in byte 4's low bits.
                Some(Framing::Lengths((*map.get(4)? & 0x03) as usize + 1))
            }
            _ => Some(Framing::StartCodes),
        }
    }
}

/// True when the access unit has slices and none of them is a reference.
pub fn is_non_reference(access_unit: &[u8], framing: Framing) -> bool {
    let mut slices = 0;
    for header in nal_headers(access_unit, framing) {
        let kind = header & 0x1f;
        // 1: slice of a non-IDR picture, 5: IDR slice (always a reference).
        if kind == 1 || kind == 5 {
            if header & 0x60 != 0 {
                return false;
            }
            slices += 1;
        }
    }
    slices > 0
}

/// The first byte of each NAL unit.
fn nal_headers(data: &[u8], framing: Framing) -> Vec<u8> {
    let mut headers = Vec::new();
    match framing {
        Framing::StartCodes => {
            let mut i = 0;
            while i + 3 < data.len() {
                if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
                    headers.push(data[i + 3]);
                    i += 3;
                } else {
                    i += 1;
                }
            }
        }
        Framing::Lengths(size) => {
            let mut i = 0;
            while i + size < data.len() {
                let length = data[i..i + size]
                    .iter()
                    .fold(0usize, |n, b| (n << 8) | *b as usize);
                headers.push(data[i + size]);
                i = i.saturating_add(size).saturating_add(length);
            }
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annex_b(headers: &[u8]) -> Vec<u8> {
        headers
            .iter()
            .flat_map(|h| [0, 0, 0, 1, *h, 0x88, 0x84])
            .collect()
    }

    #[test]
    fn a_unit_is_non_reference_only_when_every_slice_is() {
        // SPS (0x67), PPS (0x68), IDR slice (0x65): a reference.
        assert!(!is_non_reference(
            &annex_b(&[0x67, 0x68, 0x65]),
            Framing::StartCodes
        ));
        // P slice with nal_ref_idc 2 (0x41): a reference.
        assert!(!is_non_reference(
            &annex_b(&[0x09, 0x41]),
            Framing::StartCodes
        ));
        // B slices with nal_ref_idc 0 (0x01), after an access unit delimiter and SEI.
        assert!(is_non_reference(
            &annex_b(&[0x09, 0x06, 0x01, 0x01]),
            Framing::StartCodes
        ));
        // One referenced slice among them makes the picture a reference.
        assert!(!is_non_reference(
            &annex_b(&[0x01, 0x21]),
            Framing::StartCodes
        ));
        // No slice at all (parameter sets only): never skipped.
        assert!(!is_non_reference(
            &annex_b(&[0x67, 0x68]),
            Framing::StartCodes
        ));
        assert!(!is_non_reference(&[], Framing::StartCodes));
    }

    #[test]
    fn length_prefixed_units_are_read_by_their_lengths() {
        // Two NAL units with 4-byte lengths; the payload of the first holds a fake start code.
        let unit = [0, 0, 0, 5, 0x06, 0, 0, 1, 0x41, 0, 0, 0, 2, 0x01, 0x88];
        assert!(is_non_reference(&unit, Framing::Lengths(4)));
        let unit = [0, 3, 0x41, 0x9a, 0x02];
        assert!(!is_non_reference(&unit, Framing::Lengths(2)));
        // A length past the end stops the walk without a panic.
        assert!(!is_non_reference(
            &[0xff, 0xff, 0xff, 0xff, 0x41],
            Framing::Lengths(4)
        ));
    }
}
