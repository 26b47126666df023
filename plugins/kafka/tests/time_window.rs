// SPDX-License-Identifier: MIT OR Apache-2.0
//! `kafkasrc` reading one camera's time window, as a clip does: `key`, `start-from` with
//! `start-keyframe=previous`, `stop-at`. Two H.264 cameras share a partition; their
//! records carry capture times an hour old (and Kafka timestamps to match), so windows
//! long ago are read without waiting for them.

use std::time::{Duration, Instant};

use gst::prelude::*;
use testkit::*;

fn init() {
    testkit::init(&[gstkafka::plugin_register_static]);
}

const FPS: u64 = 15;

/// `frames` frames of camera-sim's kind of stream, a keyframe every `key_interval`.
fn encode(frames: u64, key_interval: u64) -> EncodedCamera {
    init();
    EncodedCamera::encode(frames, FPS, key_interval, 160, 120)
}

/// cam1 and cam2 (the same frames) in a new topic, the first captured at `first_ms`.
fn publish_old_cameras(camera: &EncodedCamera, first_ms: i64) -> String {
    let topic = new_topic("window", 1);
    publish_cameras_at(&topic, &[("cam1", camera), ("cam2", camera)], first_ms);
    topic
}

/// A window's read: every buffer's (key, seq, keyframe), the source's stats and how long
/// the read took.
struct Read {
    frames: Vec<(String, u64, bool)>,
    stats: gst::Structure,
    took: Duration,
}

fn read_window(topic: &str, properties: &str) -> Read {
    init();
    let pipeline = launch(&format!(
        "kafkasrc name=src brokers={} topic={topic} {properties} ! appsink name=out sync=false",
        brokers()
    ));
    let samples = collect_samples(&pipeline, "out");
    let started = Instant::now();
    let ended = run_until_end(&pipeline, Duration::from_secs(60));
    assert!(matches!(ended, Ended::Eos), "{properties}: {ended:?}");
    let took = started.elapsed();
    let stats = stats(&pipeline.by_name("src").unwrap());
    pipeline.set_state(gst::State::Null).unwrap();
    let frames = samples
        .lock()
        .unwrap()
        .iter()
        .map(|sample| {
            let buffer = sample.buffer().unwrap();
            let record = gstkafka::RecordMeta::of(buffer).unwrap();
            let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
            (record.key.unwrap(), record.seq, keyframe)
        })
        .collect();
    Read {
        frames,
        stats,
        took,
    }
}

/// Checks a read of cam1 from `start_ms` to `stop_ms` (after the first frame): cam1's
/// frames only, in order, from `first` to the last frame captured at or before the stop.
fn assert_window(read: &Read, camera: &EncodedCamera, first: u64, stop_ms: i64) {
    let last = camera.last_frame_at_or_before(stop_ms);
    let seqs: Vec<u64> = read.frames.iter().map(|(_, seq, _)| *seq).collect();
    assert!(
        read.frames.iter().all(|(key, _, _)| key == "cam1"),
        "a frame of another camera"
    );
    assert_eq!(seqs, (first..=last).collect::<Vec<_>>());
    assert!(read.frames[0].2, "the window starts on a keyframe");
    let stat = |field: &str| read.stats.get::<u64>(field).unwrap();
    assert_eq!(stat("records-past-stop"), 1);
    assert!(stat("records-other-key") > 0);
}

#[test]
fn a_window_starts_at_the_last_keyframe_at_or_before_its_start() {
    let camera = encode(150, 15);
    let start_ms = unix_now_ms() - 3_600_000;
    let topic = publish_old_cameras(&camera, start_ms);
    // Mid-GOP start: the keyframe before it is up to a second earlier.
    let (from, to) = (3_500, 6_200);
    let window = |keyframe: &str| {
        format!(
            "key=cam1 start-from={} start-keyframe={keyframe} stop-at={}",
            start_ms + from,
            start_ms + to
        )
    };

    let previous = read_window(&topic, &window("previous"));
    let first = camera.last_keyframe_at_or_before(from).unwrap();
    assert!(camera.at_ms(first) < from, "the start is mid-GOP");
    assert_window(&previous, &camera, first, to);

    // `next`, as before: the first keyframe at or after the start, pre-roll lost.
    let next = read_window(&topic, &window("next"));
    let first_after = (0..camera.units.len() as u64)
        .find(|seq| camera.units[*seq as usize].keyframe && camera.at_ms(*seq) >= from)
        .unwrap();
    assert!(first_after > first);
    assert_window(&next, &camera, first_after, to);
}

#[test]
fn a_window_reaches_back_two_minutes_through_a_long_gop() {
    // 135 s of two cameras with a keyframe every 10 s: the keyframe before the start lies
    // past the first span the search reads, so it reads further back.
    let camera = encode(135 * FPS, 10 * FPS);
    let start_ms = unix_now_ms() - 3_600_000;
    let topic = publish_old_cameras(&camera, start_ms);
    let event_ms = 129_900;
    let (from, to) = (event_ms - 120_000, event_ms + 2_000);
    let read = read_window(
        &topic,
        &format!(
            "key=cam1 start-from={} start-keyframe=previous stop-at={}",
            start_ms + from,
            start_ms + to
        ),
    );
    let first = camera.last_keyframe_at_or_before(from).unwrap();
    // 9.9 s of two cameras is ~297 records: more than the first 256 the search reads.
    assert!(from - camera.at_ms(first) > 9_000, "{first}");
    assert_window(&read, &camera, first, to);
}

#[test]
fn a_window_whose_camera_has_no_record_past_the_stop_ends_soon_after_it() {
    let camera = encode(30, 15);
    let start_ms = unix_now_ms() - 60_000;
    let topic = publish_old_cameras(&camera, start_ms);
    // cam1's last frame is before the stop, and no record of it comes after: the read
    // ends once the stop time is 5 s past and nothing was kept for 5 s.
    let read = read_window(
        &topic,
        &format!(
            "key=cam1 start-from={start_ms} start-keyframe=previous stop-at={}",
            start_ms + 10_000
        ),
    );
    assert_eq!(read.frames.len(), camera.units.len());
    assert!(read.took < Duration::from_secs(20), "{:?}", read.took);

    // A stop time still to come is waited for: the read ends after it, not before.
    let stop_ms = unix_now_ms() + 2_000;
    let read = read_window(
        &topic,
        &format!("key=cam1 start-from=earliest stop-at={stop_ms}"),
    );
    assert!(unix_now_ms() >= stop_ms + 5_000);
    assert_eq!(read.frames.len(), camera.units.len());
}
