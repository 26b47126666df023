// SPDX-License-Identifier: MIT OR Apache-2.0
//! `crossingcount` in a harness: a tracked object crossing a line gives one event with its
//! direction, on the frame where it crossed (events meta, element message, stats), named
//! after the camera and the Kafka record of that frame; cameras count apart; untracked
//! detections count nothing.

use gst::prelude::*;
use gst_check::Harness;
use kafkavision::detections::meta as detections_meta;
use kafkavision::detections::{Detection, Rect, SourceRecord};
use kafkavision::events::{self, Direction, Event, EventKind};
use kafkavision::meta::RecordMeta;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 480.0;

fn init() {
    testkit::init(&[gstgkvanalytics::plugin_register_static]);
}

/// A harness around `crossingcount` with a vertical line `gate` down the middle of the
/// frame, and a bus of its own for the element messages.
fn harness(properties: &[(&str, &str)]) -> (Harness, gst::Bus) {
    init();
    let count = gst::ElementFactory::make("crossingcount")
        .name("count")
        .property("lines", "gate:0.5,0,0.5,1")
        .build()
        .unwrap();
    for (name, value) in properties {
        count.set_property_from_str(name, value);
    }
    let bus = gst::Bus::new();
    count.set_bus(Some(&bus));
    let mut h = Harness::with_element(&count, Some("sink"), Some("src"));
    h.set_src_caps_str("video/x-raw, format=(string)RGB, width=(int)640, height=(int)480");
    (h, bus)
}

fn record(camera: &str, seq: u64) -> RecordMeta {
    RecordMeta {
        topic: "frames".into(),
        partition: 1,
        offset: 100 + seq as i64,
        key: Some(camera.into()),
        stream: format!("{camera}-run"),
        seq,
    }
}

/// Frame `seq` of `camera` (PTS `seq` × 100 ms) with a car whose box's bottom centre is at
/// `x` (a fraction of the width), tracked as `track` (None: not tracked).
fn frame(camera: &str, seq: u64, x: f64, track: Option<u64>) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_slice(vec![0u8; 16]);
    {
        let b = buffer.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(seq * 100));
        record(camera, seq).attach(b).unwrap();
        let bbox = Rect {
            x: x * WIDTH - 30.0,
            y: 0.5 * HEIGHT - 60.0,
            width: 60.0,
            height: 60.0,
        };
        let car = Detection::new("car", 2, 0.9, true, bbox, 640, 480);
        let car = match track {
            Some(id) => car.with_track(id),
            None => car,
        };
        detections_meta::attach(b, &car);
    }
    buffer
}

/// Pushes frames of `camera` at the given positions of track `track` (seq numbering from
/// `first_seq`); returns the events each output frame carries.
fn push_path(
    h: &mut Harness,
    camera: &str,
    first_seq: u64,
    path: &[f64],
    track: Option<u64>,
) -> Vec<Vec<Event>> {
    path.iter()
        .enumerate()
        .map(|(i, &x)| {
            h.push(frame(camera, first_seq + i as u64, x, track))
                .unwrap();
            let out = h.pull().unwrap();
            events::meta::of_buffer(&out)
        })
        .collect()
}

/// The `crossingcount` element messages posted so far: (kind, line, direction, camera).
fn messages(bus: &gst::Bus) -> Vec<(String, String, String, String)> {
    std::iter::from_fn(|| bus.pop())
        .filter_map(|msg| {
            let gst::MessageView::Element(element) = msg.view() else {
                return None;
            };
            let s = element.structure()?;
            (s.name() == "crossingcount").then(|| {
                let text = |field: &str| s.get::<String>(field).unwrap_or_default();
                (
                    text("kind"),
                    text("line"),
                    text("direction"),
                    text("camera"),
                )
            })
        })
        .collect()
}

/// (in, out) of `line` on `camera` in the element's stats.
fn line_stats(h: &Harness, camera: &str, line: &str) -> (u64, u64) {
    let stats = h.element().unwrap().property::<gst::Structure>("stats");
    let lines = stats.get::<gst::Array>("lines").unwrap();
    lines
        .iter()
        .map(|v| v.get::<gst::Structure>().unwrap())
        .find(|s| {
            s.get::<&str>("camera").unwrap() == camera && s.get::<&str>("name").unwrap() == line
        })
        .map(|s| (s.get::<u64>("in").unwrap(), s.get::<u64>("out").unwrap()))
        .unwrap_or_else(|| panic!("no stats for {camera}/{line}: {stats}"))
}

#[test]
fn crossing_the_line_gives_one_event_with_its_direction_on_the_frame_it_happened() {
    let (mut h, bus) = harness(&[]);
    // Left to right across a line drawn top to bottom: in.
    let per_frame = push_path(&mut h, "cam1", 0, &[0.2, 0.3, 0.4, 0.6, 0.7, 0.8], Some(7));
    let counts: Vec<usize> = per_frame.iter().map(Vec::len).collect();
    assert_eq!(counts, [0, 0, 0, 1, 0, 0], "{per_frame:?}");
    let event = &per_frame[3][0];
    assert_eq!(event.schema, events::SCHEMA);
    assert_eq!(event.kind, EventKind::LineCrossed);
    assert_eq!(event.line.as_deref(), Some("gate"));
    assert_eq!(event.zone, None);
    assert_eq!(event.direction, Some(Direction::In));
    assert_eq!((event.track_id, event.label.as_str()), (7, "car"));
    assert_eq!(
        event.camera.as_deref(),
        Some("cam1"),
        "the record key names the camera"
    );
    assert_eq!(
        event.pts_ns,
        Some(300_000_000),
        "the PTS of the frame where it crossed"
    );
    let source = record("cam1", 3);
    assert_eq!(
        event.source,
        Some(SourceRecord {
            topic: source.topic,
            partition: source.partition,
            offset: source.offset,
            stream: source.stream,
            seq: source.seq,
        })
    );

    // And back, right to left: out.
    let back = push_path(&mut h, "cam1", 6, &[0.7, 0.55, 0.45, 0.3], Some(7));
    let crossed: Vec<_> = back.iter().flatten().collect();
    assert_eq!(crossed.len(), 1, "{back:?}");
    assert_eq!(crossed[0].direction, Some(Direction::Out));
    assert_eq!(crossed[0].pts_ns, Some(800_000_000));

    assert_eq!(
        messages(&bus),
        [
            (
                "line-crossed".into(),
                "gate".into(),
                "in".into(),
                "cam1".into()
            ),
            (
                "line-crossed".into(),
                "gate".into(),
                "out".into(),
                "cam1".into()
            ),
        ]
    );
    assert_eq!(line_stats(&h, "cam1", "gate"), (1, 1));
    let stats = h.element().unwrap().property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("frames").unwrap(), 10);
    assert_eq!(stats.get::<u64>("events").unwrap(), 2);
}

#[test]
fn an_object_that_stops_on_the_line_crosses_only_if_it_goes_on() {
    let (mut h, bus) = harness(&[]);
    // Onto the line (its box's bottom centre exactly on it) and back: nothing crossed.
    let back = push_path(&mut h, "cam1", 0, &[0.2, 0.4, 0.5, 0.5, 0.4, 0.2], Some(3));
    assert!(back.iter().all(Vec::is_empty), "{back:?}");
    assert!(messages(&bus).is_empty());
    assert_eq!(line_stats(&h, "cam1", "gate"), (0, 0));
    // Onto the line and on: one crossing, on the frame that left the line.
    let on = push_path(&mut h, "cam1", 6, &[0.4, 0.5, 0.5, 0.6, 0.7], Some(4));
    let counts: Vec<usize> = on.iter().map(Vec::len).collect();
    assert_eq!(counts, [0, 0, 0, 1, 0], "{on:?}");
    assert_eq!(on[3][0].direction, Some(Direction::In));
    assert_eq!(line_stats(&h, "cam1", "gate"), (1, 0));
}

#[test]
fn cameras_count_apart_and_untracked_detections_count_nothing() {
    let (mut h, _bus) = harness(&[]);
    // The same track id on two cameras is two objects: cam2's first sighting on the right
    // is not a crossing of cam1's track 5, which was last seen on the left.
    push_path(&mut h, "cam1", 0, &[0.2, 0.3], Some(5));
    let cam2 = push_path(&mut h, "cam2", 0, &[0.8, 0.7, 0.3], Some(5));
    let cam2_events: Vec<_> = cam2.iter().flatten().collect();
    assert_eq!(cam2_events.len(), 1, "{cam2:?}");
    assert_eq!(cam2_events[0].camera.as_deref(), Some("cam2"));
    assert_eq!(cam2_events[0].direction, Some(Direction::Out));
    assert_eq!(line_stats(&h, "cam1", "gate"), (0, 0));
    assert_eq!(line_stats(&h, "cam2", "gate"), (0, 1));

    // A detection without a track (no objecttrack in front) cannot be followed.
    let untracked = push_path(&mut h, "cam3", 0, &[0.2, 0.4, 0.6, 0.8], None);
    assert!(untracked.iter().all(Vec::is_empty), "{untracked:?}");
}

#[test]
fn the_camera_property_names_the_camera_instead_of_the_record_key() {
    let (mut h, bus) = harness(&[("camera", "gate-cam"), ("post-messages", "false")]);
    let per_frame = push_path(&mut h, "cam1", 0, &[0.3, 0.7], Some(1));
    assert_eq!(per_frame[1].len(), 1, "{per_frame:?}");
    assert_eq!(per_frame[1][0].camera.as_deref(), Some("gate-cam"));
    assert_eq!(line_stats(&h, "gate-cam", "gate"), (1, 0));
    assert!(
        messages(&bus).is_empty(),
        "post-messages=false posts nothing"
    );
}
