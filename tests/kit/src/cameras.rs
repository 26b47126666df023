// SPDX-License-Identifier: MIT OR Apache-2.0
//! H.264 cameras whose records were written long ago: frames encoded once, then written
//! with capture times (and Kafka timestamps to match) in the past, so tests of time
//! windows and clips read old video without waiting for it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafkavision::{Envelope, Flags};

use crate::{Ended, KeyedRecord, collect_samples, launch, produce_keyed_at, run_until_end};

/// One encoded H.264 access unit.
pub struct AccessUnit {
    pub data: Vec<u8>,
    pub keyframe: bool,
}

/// A camera's encoded stream: its access units, caps and frame rate.
pub struct EncodedCamera {
    pub units: Vec<AccessUnit>,
    pub caps: String,
    pub fps: u64,
}

impl EncodedCamera {
    /// `frames` frames of a moving ball at `width`x`height`, `fps` frames a second, a
    /// keyframe every `key_interval` frames (x264 may add one at a scene cut; the flags
    /// say where they are). Plugins must be registered (`testkit::init`).
    pub fn encode(frames: u64, fps: u64, key_interval: u64, width: u32, height: u32) -> Self {
        let pipeline = launch(&format!(
            "videotestsrc num-buffers={frames} pattern=ball ! \
             video/x-raw,width={width},height={height},framerate={fps}/1 ! \
             x264enc tune=zerolatency speed-preset=ultrafast key-int-max={key_interval} ! \
             h264parse ! video/x-h264,stream-format=byte-stream,alignment=au ! \
             appsink name=out sync=false"
        ));
        let samples = collect_samples(&pipeline, "out");
        let ended = run_until_end(&pipeline, Duration::from_secs(300));
        assert!(matches!(ended, Ended::Eos), "{ended:?}");
        let samples = samples.lock().unwrap();
        let caps = samples[0].caps().unwrap().to_string();
        let units = samples
            .iter()
            .map(|sample| {
                let buffer = sample.buffer().unwrap();
                AccessUnit {
                    data: buffer.map_readable().unwrap().to_vec(),
                    keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
                }
            })
            .collect();
        EncodedCamera { units, caps, fps }
    }

    /// Capture time of frame `seq`, in ms after the first frame.
    pub fn at_ms(&self, seq: u64) -> i64 {
        (seq * 1000 / self.fps) as i64
    }

    /// The last keyframe captured at or before `ms` after the first frame.
    pub fn last_keyframe_at_or_before(&self, ms: i64) -> Option<u64> {
        (0..self.units.len() as u64)
            .rfind(|seq| self.units[*seq as usize].keyframe && self.at_ms(*seq) <= ms)
    }

    /// The last frame captured at or before `ms` after the first frame.
    pub fn last_frame_at_or_before(&self, ms: i64) -> u64 {
        (0..self.units.len() as u64)
            .rfind(|seq| self.at_ms(*seq) <= ms)
            .unwrap()
    }
}

/// Writes cameras `(key, stream)` into `topic`, interleaved frame by frame as live cameras
/// are, each camera's first frame captured at `first_ms` (Unix ms).
pub fn publish_cameras_at(topic: &str, cameras: &[(&str, &EncodedCamera)], first_ms: i64) {
    let longest = cameras
        .iter()
        .map(|(_, c)| c.units.len())
        .max()
        .unwrap_or(0);
    let records: Vec<(KeyedRecord, Option<i64>)> = (0..longest as u64)
        .flat_map(|seq| {
            cameras
                .iter()
                .filter(move |(_, camera)| (seq as usize) < camera.units.len())
                .map(move |(key, camera)| camera.record(key, seq, first_ms + camera.at_ms(seq)))
        })
        .collect();
    produce_keyed_at(topic, records.iter().map(|(r, t)| (r, *t)));
}

impl EncodedCamera {
    /// Frame `seq` as camera `key`'s record, captured at `capture_ms` (Unix ms), with its
    /// Kafka timestamp 30 ms later (the time to reach the broker).
    pub fn record<'a>(
        &self,
        key: &'a str,
        seq: u64,
        capture_ms: i64,
    ) -> (KeyedRecord<'a>, Option<i64>) {
        let unit = &self.units[seq as usize];
        let mut envelope = Envelope::buffer(format!("{key}-run"), seq, Some(self.caps.clone()));
        envelope.pts = Some(seq * 1_000_000_000 / self.fps);
        if !unit.keyframe {
            envelope.flags = Flags::DELTA_UNIT;
        }
        envelope.capture_time_ns = Some(capture_ms as u64 * 1_000_000);
        let headers = envelope
            .to_headers()
            .into_iter()
            .map(|(name, value)| (name.to_string(), value.into_bytes()))
            .collect();
        ((key, unit.data.clone(), headers), Some(capture_ms + 30))
    }
}

/// The wall clock in Unix ms.
pub fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
