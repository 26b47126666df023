// SPDX-License-Identifier: MIT OR Apache-2.0
//! Per stream, whether a frame is decoded under the bin's `decode` policy. A skipped frame
//! is dropped before its decoder; dropping it releases its record, so it is committed like
//! a decoded one.

use kafkavision::frames_wanted::FramesWanted;

use super::DecodePolicy;
use super::h264::{self, Framing};

/// Keyframe spacings remembered: the longest of them decides, so that an extra keyframe
/// (a scene cut) does not make a stream look denser than it is.
const SPACINGS: usize = 4;
/// Keyframes this much further apart than the downstream rate asks still serve it
/// (capture times jitter).
const RATE_SLACK: f64 = 1.05;

/// What a stream's keyframes look like so far.
#[derive(Default)]
struct Keyframes {
    /// Time (ns) and seq of the last one.
    last: Option<(Option<u64>, Option<u64>)>,
    /// Between consecutive ones, newest last.
    periods_ns: Vec<u64>,
    frames_between: Vec<u64>,
}

impl Keyframes {
    fn seen(&mut self, time_ns: Option<u64>, seq: Option<u64>) {
        if let Some((last_time, last_seq)) = self.last {
            if let (Some(a), Some(b)) = (last_time, time_ns)
                && b > a
            {
                push_bounded(&mut self.periods_ns, b - a);
            }
            if let (Some(a), Some(b)) = (last_seq, seq)
                && b > a
            {
                push_bounded(&mut self.frames_between, b - a);
            }
        }
        self.last = Some((time_ns, seq));
    }

    /// Whether decoding keyframes alone hands downstream every frame it uses: each frame
    /// its interval picks is a keyframe, or (interval 1) keyframes come at least as often
    /// as its rate.
    fn serve(&self, wanted: FramesWanted) -> bool {
        let by_interval = wanted.interval > 1
            && !self.frames_between.is_empty()
            && self
                .frames_between
                .iter()
                .all(|gop| *gop > 0 && u64::from(wanted.interval).is_multiple_of(*gop))
            && self
                .last
                .and_then(|(_, seq)| seq)
                .is_some_and(|seq| seq.is_multiple_of(self.frames_between[0]));
        let by_rate = wanted.interval == 1
            && wanted.max_rate > 0.0
            && !self.periods_ns.is_empty()
            && self
                .periods_ns
                .iter()
                .all(|p| *p as f64 <= RATE_SLACK * 1e9 / wanted.max_rate);
        by_interval || by_rate
    }
}

fn push_bounded(values: &mut Vec<u64>, value: u64) {
    if values.len() == SPACINGS {
        values.remove(0);
    }
    values.push(value);
}

/// One stream's side of the policy.
#[derive(Default)]
pub struct StreamPolicy {
    keyframes: Keyframes,
    /// What the stage downstream answered when the stream started (`auto` only).
    wanted: Option<FramesWanted>,
    /// `auto` decided keyframes only, as of the last frame.
    pub keyframes_only: bool,
}

/// One frame as the policy sees it.
pub struct Frame<'a> {
    pub keyframe: bool,
    pub time_ns: Option<u64>,
    pub seq: Option<u64>,
    /// The encoded bytes and how to read them, for `reference` on H.264.
    pub data: &'a [u8],
    pub framing: Option<Framing>,
}

impl StreamPolicy {
    pub fn new(wanted: Option<FramesWanted>) -> StreamPolicy {
        StreamPolicy {
            wanted,
            ..StreamPolicy::default()
        }
    }

    /// Whether the frame goes to the decoder.
    pub fn decode(&mut self, policy: DecodePolicy, frame: &Frame) -> bool {
        if frame.keyframe {
            self.keyframes.seen(frame.time_ns, frame.seq);
            self.keyframes_only = policy == DecodePolicy::Auto
                && self.wanted.is_some_and(|w| self.keyframes.serve(w));
            return true;
        }
        match policy {
            DecodePolicy::All => true,
            DecodePolicy::Keyframes => false,
            DecodePolicy::Auto => !self.keyframes_only,
            DecodePolicy::Reference => !frame
                .framing
                .is_some_and(|framing| h264::is_non_reference(frame.data, framing)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    /// Runs `frames` frames at `fps` with a keyframe every `gop`, returns the seqs decoded.
    fn decoded(policy: DecodePolicy, wanted: Option<FramesWanted>, gop: u64, fps: u64) -> Vec<u64> {
        let mut stream = StreamPolicy::new(wanted);
        (0..60)
            .filter(|seq| {
                stream.decode(
                    policy,
                    &Frame {
                        keyframe: seq % gop == 0,
                        time_ns: Some(seq * SECOND / fps),
                        seq: Some(*seq),
                        data: &[],
                        framing: None,
                    },
                )
            })
            .collect()
    }

    fn wanted(max_rate: f64, interval: u32) -> Option<FramesWanted> {
        Some(FramesWanted { max_rate, interval })
    }

    #[test]
    fn keyframes_and_all_are_fixed() {
        assert_eq!(decoded(DecodePolicy::All, None, 15, 15).len(), 60);
        assert_eq!(
            decoded(DecodePolicy::Keyframes, None, 15, 15),
            vec![0, 15, 30, 45]
        );
    }

    #[test]
    fn auto_takes_keyframes_once_two_of_them_show_they_come_often_enough() {
        // 1 keyframe/s serves a detector at 1 frame/s: from the second keyframe on, only
        // keyframes.
        assert_eq!(
            decoded(DecodePolicy::Auto, wanted(1.0, 1), 15, 15),
            (0..=15).chain([30, 45]).collect::<Vec<_>>()
        );
        // Not one at 2 frames/s, nor a stage that wants every frame, nor no answer.
        for wanted in [wanted(2.0, 1), wanted(0.0, 1), None] {
            assert_eq!(decoded(DecodePolicy::Auto, wanted, 15, 15).len(), 60);
        }
    }

    #[test]
    fn auto_follows_an_interval_that_picks_only_keyframes() {
        // Every 30th frame with a keyframe every 15 (or 30): each picked frame is a keyframe.
        for gop in [15, 30] {
            let frames = decoded(DecodePolicy::Auto, wanted(0.0, 30), gop, 15);
            assert!(
                frames.ends_with(&[45]) || frames.ends_with(&[30]),
                "{frames:?}"
            );
            assert!(frames.len() < 60, "{gop}: {frames:?}");
        }
        // Every 10th with a keyframe every 15: frame 10 is not a keyframe.
        assert_eq!(
            decoded(DecodePolicy::Auto, wanted(0.0, 10), 15, 15).len(),
            60
        );
    }
}
