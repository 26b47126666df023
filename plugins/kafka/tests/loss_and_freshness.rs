// SPDX-License-Identifier: MIT OR Apache-2.0
//! What `kafkasrc` tells of a camera's frames between its sink and here: frames lost,
//! duplicated and reordered (from each stream's `gkv-seq`), latency from capture, per
//! camera; and `max-age`, which lets a consumer that fell behind skip to the newest frames.
//! Records are written by a bare producer, so the damage is exactly the one made here.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use testkit::*;

fn init() {
    testkit::init(&[gstkafka::plugin_register_static]);
}

/// Waits until `done` holds, panicking with `what` after `timeout`.
fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// (missing, duplicated, out of order, latency count) of `camera` in `stats`.
fn camera_figures(stats: &gst::Structure, camera: &str) -> (u64, u64, u64, u64) {
    let cameras = stats.get::<gst::Array>("cameras").unwrap();
    let figures = cameras
        .iter()
        .map(|value| value.get::<gst::Structure>().unwrap())
        .find(|s| s.get::<String>("camera").unwrap() == camera)
        .unwrap_or_else(|| panic!("no {camera} in {stats}"));
    let latency = figures.get::<gst::Structure>("latency-ms").unwrap();
    (
        figures.get("frames-missing").unwrap(),
        figures.get("frames-duplicated").unwrap(),
        figures.get("frames-out-of-order").unwrap(),
        latency.get("count").unwrap(),
    )
}

#[test]
fn dropped_duplicated_and_reordered_frames_are_counted_exactly_per_camera() {
    init();
    let camera = EncodedCamera::encode(30, 15, 1, 160, 120);
    let topic = new_topic("loss", 1);
    let now_ms = unix_now_ms();
    // cam1: 5, 17 and 18 dropped; 8 and 20 written twice; 11/12 and 25/26 swapped.
    let mut cam1: Vec<u64> = (0..30).filter(|s| ![5, 17, 18].contains(s)).collect();
    for again in [8, 20] {
        let at = cam1.iter().position(|s| *s == again).unwrap();
        cam1.insert(at + 1, again);
    }
    for (a, b) in [(11, 12), (25, 26)] {
        let (i, j) = (
            cam1.iter().position(|s| *s == a).unwrap(),
            cam1.iter().position(|s| *s == b).unwrap(),
        );
        cam1.swap(i, j);
    }
    let records: Vec<_> = cam1
        .iter()
        .map(|seq| camera.record("cam1", *seq, now_ms))
        .chain((0..30).map(|seq| camera.record("cam2", seq, now_ms)))
        .collect();
    produce_keyed_at(&topic, records.iter().map(|(r, t)| (r, *t)));

    let pipeline = launch(&format!(
        "kafkasrc name=src brokers={} topic={topic} start-from=earliest ! \
         appsink name=out sync=false",
        brokers()
    ));
    let samples = collect_samples(&pipeline, "out");
    pipeline.set_state(gst::State::Playing).unwrap();
    let src = pipeline.by_name("src").unwrap();
    // Everything read: 29 records of cam1 and 30 of cam2.
    wait_until("every record read", Duration::from_secs(60), || {
        stat_u64(&src, "records-received") == records.len() as u64
    });
    let stats = stats(&src);
    pipeline.set_state(gst::State::Null).unwrap();

    assert_eq!(camera_figures(&stats, "cam1"), (3, 2, 2, 29));
    assert_eq!(camera_figures(&stats, "cam2"), (0, 0, 0, 30));
    assert_eq!(stats.get::<u64>("frames-missing").unwrap(), 3);
    assert_eq!(stats.get::<u64>("frames-duplicated").unwrap(), 2);
    assert_eq!(stats.get::<u64>("frames-out-of-order").unwrap(), 2);
    // Late and repeated frames are not pushed: each camera's frames go forward only.
    let mut pushed: Vec<(String, u64)> = samples
        .lock()
        .unwrap()
        .iter()
        .map(|sample| {
            let record = gstkafka::RecordMeta::of(sample.buffer().unwrap()).unwrap();
            (record.key.unwrap(), record.seq)
        })
        .collect();
    let cam1_pushed: Vec<u64> = pushed
        .iter()
        .filter(|(key, _)| key == "cam1")
        .map(|(_, seq)| *seq)
        .collect();
    let expected: Vec<u64> = (0..30)
        .filter(|s| ![5, 11, 17, 18, 25].contains(s))
        .collect();
    assert_eq!(cam1_pushed, expected);
    pushed.retain(|(key, _)| key == "cam2");
    assert_eq!(pushed.len(), 30);
}

#[test]
fn a_stalled_consumer_with_max_age_skips_to_the_newest_frames_and_commits_the_skipped() {
    init();
    const FPS: u64 = 10;
    const STALL: Duration = Duration::from_secs(10);
    const MAX_AGE_MS: i64 = 1000;
    let camera = Arc::new(EncodedCamera::encode(300, FPS, FPS, 160, 120));
    let topic = new_topic("fresh", 1);
    let group = unique_name("fresh");

    // A live camera: a frame every 100 ms, captured now; seq -> capture time.
    let captured = Arc::new(Mutex::new(Vec::<i64>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = {
        let (camera, captured, stop, topic) = (
            camera.clone(),
            captured.clone(),
            stop.clone(),
            topic.clone(),
        );
        std::thread::spawn(move || {
            let start = Instant::now();
            for seq in 0..camera.units.len() as u64 {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let due = start + Duration::from_millis(seq * 1000 / FPS);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                let now_ms = unix_now_ms();
                captured.lock().unwrap().push(now_ms);
                let (record, timestamp) = camera.record("cam1", seq, now_ms);
                produce_keyed_at(&topic, [(&record, timestamp)]);
            }
        })
    };

    // The consumer stalls for 10 s on its fifth frame.
    let pipeline = launch(&format!(
        "kafkasrc name=src brokers={} topic={topic} group-id={group} start-from=earliest \
         max-age={MAX_AGE_MS} ! fakesink name=sink sync=false enable-last-sample=false",
        brokers()
    ));
    // (seq, ms from capture to the sink) of every frame.
    let arrived = Arc::new(Mutex::new(Vec::<(u64, i64)>::new()));
    let stalled_at = Arc::new(Mutex::new(None::<u64>));
    {
        let (arrived, stalled_at, captured) =
            (arrived.clone(), stalled_at.clone(), captured.clone());
        let pad = pipeline
            .by_name("sink")
            .unwrap()
            .static_pad("sink")
            .unwrap();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(buffer) = info.buffer() else {
                return gst::PadProbeReturn::Ok;
            };
            let seq = gstkafka::RecordMeta::of(buffer).unwrap().seq;
            let age = unix_now_ms() - captured.lock().unwrap()[seq as usize];
            let mut arrived = arrived.lock().unwrap();
            arrived.push((seq, age));
            if arrived.len() == 5 {
                drop(arrived);
                *stalled_at.lock().unwrap() = Some(seq);
                std::thread::sleep(STALL);
            }
            gst::PadProbeReturn::Ok
        });
    }
    pipeline.set_state(gst::State::Playing).unwrap();
    let src = pipeline.by_name("src").unwrap();
    // Caught up: frames arriving again after the stall, for 3 s.
    wait_until("frames after the stall", Duration::from_secs(60), || {
        arrived.lock().unwrap().len() > 5 + 3 * FPS as usize
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    producer.join().unwrap();
    let written = captured.lock().unwrap().len() as i64;
    // Everything written is handled and committed, the skipped frames too.
    wait_until(
        "the group committed every record",
        Duration::from_secs(30),
        || group_lag(&brokers(), &topic, 1, &group) == 0,
    );
    let stats = stats(&src);
    pipeline.set_state(gst::State::Null).unwrap();

    let stalled_at = stalled_at.lock().unwrap().unwrap();
    let arrived = arrived.lock().unwrap();
    let after: Vec<(u64, i64)> = arrived[5..].to_vec();
    // The frames of the stall are skipped, not replayed: the next frame pushed is one
    // captured at most max-age before it reached the source (then a keyframe), about a
    // stall's worth of frames later. Half of that leaves room for a slow machine.
    let skipped = stats.get::<u64>("records-too-old").unwrap();
    let (first_seq, first_age_ms) = after[0];
    eprintln!(
        "stalled at frame {stalled_at} for {STALL:?}: next frame {first_seq}, {first_age_ms} ms \
         after its capture; {skipped} skipped as too old"
    );
    let stall_frames = STALL.as_millis() as u64 * FPS / 1000;
    assert!(
        first_seq >= stalled_at + stall_frames / 2,
        "after the stall at {stalled_at}, frame {first_seq} came next ({skipped} skipped)"
    );
    assert!(skipped >= stall_frames / 2, "{skipped} skipped");
    let pushed = stats.get::<u64>("buffers-pushed").unwrap();
    let waiting_for_keyframe = stats.get::<u64>("delta-units-skipped").unwrap();
    assert_eq!(
        pushed + skipped + waiting_for_keyframe,
        written as u64,
        "every record pushed or counted as skipped"
    );
    assert_eq!(stats.get::<u64>("frames-missing").unwrap(), 0);
    let seqs: Vec<u64> = after.iter().map(|(seq, _)| *seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
}
