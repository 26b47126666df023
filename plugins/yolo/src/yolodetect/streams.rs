// SPDX-License-Identifier: MIT OR Apache-2.0
//! What `yolodetect` keeps between frames, per stream: behind `kafkadecodebin` the frames of
//! many cameras interleave in one buffer flow, and a camera's interval, rate, motion
//! reference and carried-over detections must never see another camera's frames.
//!
//! A stream is the record meta's `stream` (one `kafkasink` run of one camera), or one
//! stream for buffers without a record meta. Streams are forgotten after an idle time and
//! beyond [`MAX_STREAMS`], least recently seen first, so memory stays bounded however many
//! cameras come and go.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::motion::MotionGate;
use super::postprocess::Detection;

/// At most this many streams are kept. A worker decodes far fewer cameras than this (each
/// needs its own decoder upstream); the bound only matters when streams churn faster than
/// `idle-timeout` forgets them, e.g. publishers restarting in a loop, each run a new stream.
pub const MAX_STREAMS: usize = 1024;

/// When frames are due for inference: every `interval`th position of a stream, at most once
/// per `period_ns` of frame time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    pub interval: u64,
    /// 1/`max-rate` in ns; `None` without a rate limit.
    pub period_ns: Option<u64>,
}

impl Pace {
    pub fn new(interval: u32, max_rate: f64) -> Pace {
        Pace {
            interval: interval.max(1) as u64,
            // Whole nanoseconds: exact periods for the rates people set (5, 2.5, 0.5), and an
            // integer division per frame, the same on every machine.
            period_ns: (max_rate > 0.0).then(|| (1e9 / max_rate).round().max(1.0) as u64),
        }
    }
}

/// One stream's state.
pub struct Stream {
    /// Frames seen: the position of frames without a record `seq`.
    frames: u64,
    /// The time of the last inferred frame, for `max-rate`.
    last_inferred_ns: Option<u64>,
    /// The last inferred frame's detections, in this stream's frame pixels, carried onto
    /// the frames that are not inferred.
    pub last: Vec<Detection>,
    pub motion: MotionGate,
    /// The caps `last` and `motion` were made under; frames under other caps are another
    /// picture geometry.
    pub info: Option<gst_video::VideoInfo>,
    last_seen: Instant,
}

impl Stream {
    fn new(now: Instant) -> Stream {
        Stream {
            frames: 0,
            last_inferred_ns: None,
            last: Vec::new(),
            motion: MotionGate::default(),
            info: None,
            last_seen: now,
        }
    }

    /// Counts a frame and says whether it is due: its position (the record's `seq`, so
    /// that a worker re-reading the stream after another died picks the same frames; else
    /// this stream's frame count) is a multiple of the interval, and its time (`time_ns`:
    /// capture time, else PTS) falls in another rate period than the last inferred frame's.
    /// A frame without a time cannot be paced by rate and is due by it.
    pub fn due(&mut self, seq: Option<u64>, time_ns: Option<u64>, pace: Pace) -> bool {
        let position = seq.unwrap_or(self.frames);
        self.frames += 1;
        if !position.is_multiple_of(pace.interval) {
            return false;
        }
        match (pace.period_ns, time_ns, self.last_inferred_ns) {
            (Some(period), Some(time), Some(last)) => time / period != last / period,
            _ => true,
        }
    }

    /// The frame at `time_ns` was inferred: the rate counts from it.
    pub fn inferred(&mut self, time_ns: Option<u64>) {
        if time_ns.is_some() {
            self.last_inferred_ns = time_ns;
        }
    }
}

/// Every stream seen, with the count of those forgotten.
#[derive(Default)]
pub struct Streams {
    streams: HashMap<String, Stream>,
    retired: u64,
}

impl Streams {
    /// The state of `stream` for a frame seen at `now`, made fresh when new or idle for
    /// longer than `idle`. Other streams idle for longer than `idle` are retired first, and
    /// the least recently seen when a new one would exceed [`MAX_STREAMS`].
    pub fn get(&mut self, stream: &str, now: Instant, idle: Option<Duration>) -> &mut Stream {
        if let Some(idle) = idle {
            let before = self.streams.len();
            self.streams
                .retain(|_, s| now.duration_since(s.last_seen) <= idle);
            self.retired += (before - self.streams.len()) as u64;
        }
        if !self.streams.contains_key(stream) && self.streams.len() >= MAX_STREAMS {
            let oldest = self
                .streams
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(name, _)| name.clone());
            if let Some(oldest) = oldest {
                self.streams.remove(&oldest);
                self.retired += 1;
            }
        }
        let state = self
            .streams
            .entry(stream.to_owned())
            .or_insert_with(|| Stream::new(now));
        state.last_seen = now;
        state
    }

    /// Streams kept now.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Streams forgotten so far (idle, or beyond [`MAX_STREAMS`]).
    pub fn retired(&self) -> u64 {
        self.retired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dues(stream: &mut Stream, frames: &[(Option<u64>, Option<u64>)], pace: Pace) -> Vec<bool> {
        frames
            .iter()
            .map(|&(seq, time)| {
                let due = stream.due(seq, time, pace);
                if due {
                    stream.inferred(time);
                }
                due
            })
            .collect()
    }

    #[test]
    fn the_interval_follows_the_record_seq_else_the_streams_own_count() {
        let now = Instant::now();
        let pace = Pace::new(3, 0.0);
        // A worker that joined at seq 7: 9 and 12 are due, as for the worker before it.
        let mut joined = Stream::new(now);
        let seqs: Vec<_> = (7..14).map(|s| (Some(s), None)).collect();
        assert_eq!(
            dues(&mut joined, &seqs, pace),
            [false, false, true, false, false, true, false]
        );
        let mut counted = Stream::new(now);
        assert_eq!(
            dues(&mut counted, &[(None, None); 7], pace),
            [true, false, false, true, false, false, true]
        );
    }

    #[test]
    fn the_rate_takes_the_first_frame_of_each_period_and_both_rules_must_hold() {
        let now = Instant::now();
        let ms = |t: u64| Some(t * 1_000_000);
        // 25 frames a second, at most 5 inferred: every 5th.
        let frames: Vec<_> = (0..12).map(|i| (Some(i), ms(40 * i))).collect();
        let due = dues(&mut Stream::new(now), &frames, Pace::new(1, 5.0));
        let inferred: Vec<u64> = (0..12).filter(|&i| due[i as usize]).collect();
        assert_eq!(inferred, [0, 5, 10]);
        // With interval 2 too: even seqs only, the first of each 200 ms period among them.
        let frames: Vec<_> = (0..22).map(|i| (Some(i), ms(40 * i))).collect();
        let due = dues(&mut Stream::new(now), &frames, Pace::new(2, 5.0));
        let inferred: Vec<u64> = (0..22).filter(|&i| due[i as usize]).collect();
        assert_eq!(inferred, [0, 6, 10, 16, 20]);
        // Capture times in Unix ns: the same periods, exactly.
        let base = 1_700_000_000_000_000_000;
        let frames: Vec<_> = (0..12)
            .map(|i| (Some(i), Some(base + 40_000_000 * i)))
            .collect();
        let due = dues(&mut Stream::new(now), &frames, Pace::new(1, 5.0));
        let inferred: Vec<u64> = (0..12).filter(|&i| due[i as usize]).collect();
        assert_eq!(inferred, [0, 5, 10]);
        // No time: the rate cannot tell, every frame is due.
        assert_eq!(
            dues(
                &mut Stream::new(now),
                &[(Some(0), None); 3],
                Pace::new(1, 5.0)
            ),
            [true; 3]
        );
    }

    #[test]
    fn a_frame_not_inferred_leaves_the_rate_to_the_next_one() {
        // A due frame gated as still is not inferred: the next frame of the same period is
        // due again, so motion is seen as soon as it starts.
        let mut stream = Stream::new(Instant::now());
        let pace = Pace::new(1, 1.0);
        assert!(stream.due(Some(0), Some(0), pace));
        assert!(stream.due(Some(1), Some(100_000_000), pace));
        stream.inferred(Some(100_000_000));
        assert!(!stream.due(Some(2), Some(200_000_000), pace));
        assert!(stream.due(Some(3), Some(1_000_000_000), pace));
    }

    #[test]
    fn idle_streams_retire_and_come_back_fresh() {
        let start = Instant::now();
        let idle = Some(Duration::from_millis(100));
        let mut streams = Streams::default();
        streams
            .get("a", start, idle)
            .due(None, None, Pace::new(2, 0.0));
        streams.get("b", start + Duration::from_millis(90), idle);
        assert_eq!((streams.len(), streams.retired()), (2, 0));
        // b was seen 60 ms ago, a 150 ms ago.
        streams.get("b", start + Duration::from_millis(150), idle);
        assert_eq!((streams.len(), streams.retired()), (1, 1));
        // a again: counted from its first frame.
        let a = streams.get("a", start + Duration::from_millis(160), idle);
        assert!(a.due(None, None, Pace::new(2, 0.0)));
        assert_eq!((streams.len(), streams.retired()), (2, 1));
        // Without a timeout, nothing retires for idleness.
        streams.get("c", start + Duration::from_secs(3600), None);
        assert_eq!((streams.len(), streams.retired()), (3, 1));
    }

    #[test]
    fn beyond_the_bound_the_least_recently_seen_stream_retires() {
        let start = Instant::now();
        let at = |i: usize| start + Duration::from_millis(i as u64);
        let mut streams = Streams::default();
        for i in 0..MAX_STREAMS {
            streams.get(&format!("s{i}"), at(i), None);
        }
        // s0 seen again: s1 is now the least recently seen.
        streams
            .get("s0", at(MAX_STREAMS), None)
            .last
            .push(Detection {
                x1: 0.0,
                y1: 0.0,
                x2: 1.0,
                y2: 1.0,
                score: 1.0,
                class_id: 0,
            });
        streams.get("new", at(MAX_STREAMS + 1), None);
        assert_eq!((streams.len(), streams.retired()), (MAX_STREAMS, 1));
        assert_eq!(streams.get("s0", at(MAX_STREAMS + 2), None).last.len(), 1);
        assert!(!streams.streams.contains_key("s1"));
    }
}
