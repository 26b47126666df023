// SPDX-License-Identifier: MIT OR Apache-2.0
//! The buffers the converters make out of a frame.

use kafkavision::meta::copy_record_meta;

/// A new buffer holding `bytes` that stands for `frame` downstream: the frame's PTS and
/// DTS, its record meta (which keeps the frame's Kafka record open until this buffer is
/// done with) and its reference timestamps (the capture time). Not its flags: every
/// record stands alone.
pub(crate) fn buffer_for_frame(frame: &gst::BufferRef, bytes: Vec<u8>) -> gst::Buffer {
    let mut output = gst::Buffer::from_mut_slice(bytes);
    {
        let output = output.get_mut().expect("a new buffer is writable");
        output.set_pts(frame.pts());
        output.set_dts(frame.dts());
        copy_record_meta(frame, output);
        for meta in frame.iter_meta::<gst::ReferenceTimestampMeta>() {
            gst::ReferenceTimestampMeta::add(
                output,
                &meta.reference().to_owned(),
                meta.timestamp(),
                meta.duration(),
            );
        }
    }
    output
}
