// SPDX-License-Identifier: MIT OR Apache-2.0
//! `objecttrack ! crossingcount` with a state topic on the test broker: a second run that
//! starts from the first one's saved state ignores the frames that state includes and
//! gives the later frames' events again with the same ids, so the two runs together count
//! exactly what one uninterrupted run counts; states that are garbage, of a newer version,
//! of another camera, or for other lines are skipped, counted, and counting starts afresh.

use std::collections::{BTreeMap, BTreeSet};

use gst::prelude::*;
use gst_check::Harness;
use kafkavision::detections::meta as detections_meta;
use kafkavision::detections::{Detection, Rect};
use kafkavision::events::{self, Event};
use kafkavision::meta::RecordMeta;
use testkit::{KeyedRecord, brokers, new_compacted_topic, produce_keyed};

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 480.0;
/// Frames of the path: a car crosses the line at frame 25 (in), another at frame 65 (out).
const FRAMES: u64 = 90;
const LINE: &str = "gate:0.5,0,0.5,1";

fn init() {
    testkit::init(&[gstgkvanalytics::plugin_register_static]);
}

/// `objecttrack ! crossingcount` saving every 10 frames to `state_topic`. The elements read
/// their properties when they start, and a harness starts what it is given: the bin is
/// made whole first.
fn harness(state_topic: &str, lines: &str) -> Harness {
    harness_on(state_topic, lines, &brokers())
}

/// [`harness`] reaching the broker as `brokers`. The elements of one process share a store
/// per (brokers, topic): another spelling of the same broker makes a second worker's.
fn harness_on(state_topic: &str, lines: &str, brokers: &str) -> Harness {
    init();
    let track = gst::ElementFactory::make("objecttrack").build().unwrap();
    let count = gst::ElementFactory::make("crossingcount")
        .property("lines", lines)
        .build()
        .unwrap();
    for element in [&track, &count] {
        element.set_property("state-topic", state_topic);
        element.set_property("state-brokers", brokers);
        element.set_property("state-interval", 10u32);
        element.set_property("state-interval-ms", 0u32);
    }
    let bin = gst::Bin::new();
    bin.add_many([&track, &count]).unwrap();
    track.link(&count).unwrap();
    let sink = gst::GhostPad::with_target(&track.static_pad("sink").unwrap()).unwrap();
    let src = gst::GhostPad::with_target(&count.static_pad("src").unwrap()).unwrap();
    bin.add_pad(&sink).unwrap();
    bin.add_pad(&src).unwrap();
    let mut h = Harness::with_element(&bin, Some("sink"), Some("src"));
    h.set_src_caps_str("video/x-raw, format=(string)RGB, width=(int)640, height=(int)480");
    h
}

/// Where the cars are on frame `seq`: (x of the box's bottom centre, which car).
fn cars_at(seq: u64) -> Vec<(f64, u32)> {
    let mut cars = Vec::new();
    if seq < 48 {
        cars.push((0.1 + 0.8 * seq as f64 / 48.0, 0));
    }
    if (40..88).contains(&seq) {
        cars.push((0.9 - 0.8 * (seq - 40) as f64 / 48.0, 1));
    }
    cars
}

fn frame(camera: &str, seq: u64) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_slice(vec![0u8; 16]);
    {
        let b = buffer.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(seq * 100));
        RecordMeta {
            topic: "frames".into(),
            partition: 0,
            offset: 1000 + seq as i64,
            key: Some(camera.into()),
            stream: format!("{camera}-stream"),
            seq,
        }
        .attach(b)
        .unwrap();
        for (x, lane) in cars_at(seq) {
            let y = if lane == 0 { 0.3 } else { 0.7 };
            let bbox = Rect {
                x: x * WIDTH - 30.0,
                y: y * HEIGHT - 60.0,
                width: 60.0,
                height: 60.0,
            };
            detections_meta::attach(b, &Detection::new("car", 2, 0.9, true, bbox, 640, 480));
        }
    }
    buffer
}

/// Pushes frames `seqs` of `camera`; returns (frame seq, event) for every event.
fn push(h: &mut Harness, camera: &str, seqs: std::ops::Range<u64>) -> Vec<(u64, Event)> {
    let mut out = Vec::new();
    for seq in seqs {
        h.push(frame(camera, seq)).unwrap();
        let buffer = h.pull().unwrap();
        for event in events::meta::of_buffer(&buffer) {
            out.push((seq, event));
        }
    }
    out
}

fn ids(events: &[(u64, Event)]) -> BTreeSet<String> {
    events
        .iter()
        .map(|(_, e)| e.event_id.clone().expect("every event has an id"))
        .collect()
}

fn stat(h: &mut Harness, factory: &str, field: &str) -> u64 {
    h.find_element(factory)
        .unwrap()
        .property::<gst::Structure>("stats")
        .get::<u64>(field)
        .unwrap()
}

/// Waits until the elements' store wrote `n` states (its writes are asynchronous).
fn wait_for_saves(h: &mut Harness, n: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while stat(h, "crossingcount", "state-saved") < n {
        assert!(std::time::Instant::now() < deadline, "states not saved");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_run_resumed_from_the_saved_state_gives_the_same_events_with_the_same_ids() {
    // The reference: one run, start to end.
    let mut whole = harness(&new_compacted_topic("state-whole", 1), "gate:0.5,0,0.5,1");
    let reference = push(&mut whole, "cam1", 0..FRAMES);
    let kinds: Vec<(u64, String)> = reference
        .iter()
        .map(|(seq, e)| (*seq, e.direction.unwrap().as_str().to_string()))
        .collect();
    assert_eq!(kinds, [(25, "in".into()), (65, "out".into())]);

    // A worker that dies after frame 30 (its last save: frame 30 is one, every 10th), and
    // a successor that reads again from frame 21 on, as from an earlier commit.
    let state_topic = new_compacted_topic("state-resume", 1);
    let mut first = harness(&state_topic, "gate:0.5,0,0.5,1");
    let before = push(&mut first, "cam1", 0..34);
    wait_for_saves(&mut first, 4);
    drop(first);
    let mut second = harness(&state_topic, "gate:0.5,0,0.5,1");
    let after = push(&mut second, "cam1", 21..FRAMES);
    assert_eq!(stat(&mut second, "objecttrack", "state-restored"), 1);
    assert_eq!(
        stat(&mut second, "objecttrack", "already-included"),
        10,
        "frames 21..=30"
    );
    assert_eq!(stat(&mut second, "crossingcount", "already-included"), 10);
    assert!(
        after.iter().all(|(seq, _)| *seq > 30),
        "nothing from frames the saved state includes: {after:?}"
    );

    // Together, counted by id, exactly the reference: the crossing at 25 came once (the
    // first worker's, included in its save), the one at 65 once (from the successor), and
    // the track ids are those of the reference run.
    let mut together = ids(&before);
    together.extend(ids(&after));
    assert_eq!(together, ids(&reference));
    let tracks = |events: &[(u64, Event)]| -> BTreeMap<u64, u64> {
        events.iter().map(|(s, e)| (*s, e.track_id)).collect()
    };
    let mut resumed = tracks(&before);
    resumed.extend(tracks(&after));
    assert_eq!(resumed, tracks(&reference));
}

#[test]
fn a_camera_back_from_another_worker_goes_on_from_that_workers_newer_state() {
    let reference = push(
        &mut harness(&new_compacted_topic("state-whole", 1), LINE),
        "cam1",
        0..FRAMES,
    );
    // Worker A has the camera up to frame 20 (saved at 10 and 20), worker B from 21 to 50
    // (restored from A's state, saved at 30, 40, 50), then the camera comes back to A, which
    // still remembers frame 20: its frames skip to 51.
    let state_topic = new_compacted_topic("state-away", 1);
    let mut a = harness(&state_topic, LINE);
    let other_spelling = brokers().replace("127.0.0.1", "localhost");
    let mut b = harness_on(&state_topic, LINE, &other_spelling);
    let mut events = push(&mut a, "cam1", 0..21);
    wait_for_saves(&mut a, 2);
    events.extend(push(&mut b, "cam1", 21..51));
    wait_for_saves(&mut b, 3);
    // A partition moving away and back takes rebalances: A has a quiet spell first.
    std::thread::sleep(gstgkvanalytics::camera_state::element::AWAY_AT_LEAST);
    events.extend(push(&mut a, "cam1", 51..FRAMES));
    // Each of A's elements found its state out of date and restored B's.
    assert_eq!(
        stat(&mut a, "objecttrack", "state-restored"),
        2,
        "A restored B's state"
    );
    // Counted by id, exactly the reference, with the reference's track ids: A did not go on
    // from its own out-of-date tracks and sides.
    assert_eq!(ids(&events), ids(&reference));
    let tracks = |events: &[(u64, Event)]| -> BTreeMap<u64, u64> {
        events.iter().map(|(s, e)| (*s, e.track_id)).collect()
    };
    assert_eq!(tracks(&events), tracks(&reference));
}

#[test]
fn unusable_states_are_skipped_counted_and_counting_starts_afresh() {
    let state_topic = new_compacted_topic("state-bad", 1);
    // A valid state of another layout, made by a run with another line.
    let mut other = harness(&state_topic, "gate:0.3,0,0.3,1");
    push(&mut other, "layout", 0..11);
    wait_for_saves(&mut other, 2);
    drop(other);
    let newer = br#"{"schema":"gkv.camera-state","version":99,"camera":"newer","position":{"topic":"frames","partition":0,"offset":1,"stream":"s","seq":1},"saved_at_ms":1,"parts":{}}"#;
    let foreign = br#"{"schema":"gkv.camera-state","version":1,"camera":"someone-else","position":{"topic":"frames","partition":0,"offset":1020,"stream":"foreign-stream","seq":20},"saved_at_ms":1,"parts":{}}"#;
    let records: Vec<KeyedRecord> = vec![
        ("garbage", b"\x00\xffnot json".to_vec(), vec![]),
        ("newer", newer.to_vec(), vec![]),
        ("foreign", foreign.to_vec(), vec![]),
    ];
    produce_keyed(&state_topic, &records);

    let mut h = harness(&state_topic, "gate:0.5,0,0.5,1");
    for camera in ["garbage", "newer", "foreign", "layout"] {
        let events = push(&mut h, camera, 0..FRAMES);
        let directions: Vec<&str> = events
            .iter()
            .map(|(_, e)| e.direction.unwrap().as_str())
            .collect();
        assert_eq!(directions, ["in", "out"], "{camera}: counted from scratch");
    }
    // Three records unusable for both elements; the layout record is fine for the tracker
    // and refused by the counter.
    assert_eq!(stat(&mut h, "objecttrack", "state-unusable"), 3);
    assert_eq!(stat(&mut h, "crossingcount", "state-unusable"), 4);
    assert_eq!(stat(&mut h, "crossingcount", "state-restored"), 1);
}

/// The error `element` posts when it cannot start: its message and debug text.
fn start_error(element: &gst::Element) -> String {
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    assert!(element.set_state(gst::State::Paused).is_err());
    bus.iter_filtered(&[gst::MessageType::Error])
        .next()
        .map(|m| match m.view() {
            gst::MessageView::Error(e) => {
                format!("{} {}", e.error(), e.debug().unwrap_or_default())
            }
            _ => unreachable!(),
        })
        .unwrap()
}

#[test]
fn a_state_topic_without_brokers_or_that_does_not_exist_fails_at_start_naming_the_property() {
    init();
    let element = gst::ElementFactory::make("crossingcount")
        .property("state-topic", "nowhere")
        .build()
        .unwrap();
    let error = start_error(&element);
    assert!(error.contains("state-brokers"), "{error}");

    let element = gst::ElementFactory::make("objecttrack")
        .property("state-topic", testkit::unique_name("missing-state"))
        .property("state-brokers", brokers())
        .build()
        .unwrap();
    let error = start_error(&element);
    assert!(
        error.contains("does not exist") && error.contains("cleanup.policy=compact"),
        "{error}"
    );
}
