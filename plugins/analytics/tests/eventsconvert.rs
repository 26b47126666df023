// SPDX-License-Identifier: MIT OR Apache-2.0
//! `eventsconvert` in a harness: one `gkv.events` JSON buffer per event a frame carries,
//! with the frame's timestamps, capture time and record meta (what `kafkasink
//! key-from=record` keys it by); a frame without events gives a gap, not a buffer.

use gst::prelude::*;
use gst_check::Harness;
use kafkavision::detections::SourceRecord;
use kafkavision::events::{self, Direction, Event, EventKind};
use kafkavision::meta::{RECORD_META, RecordMeta, UNIX_TIME_CAPS, capture_time};

const CAPTURE_NS: u64 = 1_763_700_000_123_456_789;

fn init() {
    testkit::init(&[gstgkvanalytics::plugin_register_static]);
}

fn harness() -> Harness {
    init();
    let mut h = Harness::new("eventsconvert");
    h.set_src_caps_str("video/x-raw, format=(string)RGB, width=(int)640, height=(int)480");
    h
}

fn record(seq: u64) -> RecordMeta {
    RecordMeta {
        topic: "frames".into(),
        partition: 2,
        offset: 40 + seq as i64,
        key: Some("cam1".into()),
        stream: "cam1-run".into(),
        seq,
    }
}

/// What crossingcount attaches for a car crossing `gate` and a truck leaving `dock`.
fn events_of_frame(seq: u64) -> Vec<Event> {
    let pts_ns = Some(seq * 100_000_000);
    let r = record(seq);
    let source = Some(SourceRecord {
        topic: r.topic,
        partition: r.partition,
        offset: r.offset,
        stream: r.stream,
        seq: r.seq,
    });
    let mut crossed = Event::new(EventKind::LineCrossed, 7, "car");
    crossed.camera = Some("cam1".into());
    crossed.line = Some("gate".into());
    crossed.direction = Some(Direction::In);
    let mut left = Event::new(EventKind::ZoneLeft, 9, "truck");
    left.camera = Some("cam1".into());
    left.zone = Some("dock".into());
    left.dwell_ms = Some(4200);
    [crossed, left]
        .into_iter()
        .map(|mut event| {
            event.pts_ns = pts_ns;
            event.capture_time_ns = Some(CAPTURE_NS);
            event.source = source.clone();
            event
        })
        .collect()
}

/// Frame `seq` of cam1 (PTS `seq` × 100 ms, 100 ms long) with a capture time, its record
/// meta with a field of kafkasrc's own (its release token rides there), and `events`.
fn frame(seq: u64, events: &[Event]) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_slice(vec![0u8; 16]);
    {
        let b = buffer.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(seq * 100));
        b.set_dts(gst::ClockTime::from_mseconds(seq * 100));
        b.set_duration(gst::ClockTime::from_mseconds(100));
        gst::ReferenceTimestampMeta::add(
            b,
            &gst::Caps::new_empty_simple(UNIX_TIME_CAPS),
            gst::ClockTime::from_nseconds(CAPTURE_NS),
            gst::ClockTime::NONE,
        );
        let mut meta = record(seq).attach(b).unwrap();
        meta.mut_structure().set("owner-field", 5u32);
        events::meta::add(b, events);
    }
    buffer
}

#[test]
fn each_event_becomes_one_json_buffer_with_its_frames_timestamps_and_record() {
    let mut h = harness();
    let sent = events_of_frame(3);
    h.push(frame(3, &sent)).unwrap();

    let caps = h.sinkpad().unwrap().current_caps().unwrap();
    assert_eq!(caps.structure(0).unwrap().name(), events::CAPS);
    assert_eq!(h.buffers_in_queue(), 2, "one buffer per event");
    for expected in &sent {
        let out = h.pull().unwrap();
        let json = out.map_readable().unwrap();
        let event = Event::from_json(json.as_slice()).unwrap();
        assert_eq!(&event, expected);
        // The schema's own words, as a reader in another language sees them.
        let value: serde_json::Value = serde_json::from_slice(json.as_slice()).unwrap();
        assert_eq!(value["schema"], "gkv.events");
        assert_eq!(value["version"], 1);
        assert_eq!(value["camera"], "cam1");
        match expected.kind {
            EventKind::LineCrossed => {
                assert_eq!(value["kind"], "line-crossed");
                assert_eq!(value["line"], "gate");
                assert_eq!(value["direction"], "in");
                assert!(value.get("dwell_ms").is_none(), "{value}");
            }
            _ => {
                assert_eq!(value["kind"], "zone-left");
                assert_eq!(value["zone"], "dock");
                assert_eq!(value["dwell_ms"], 4200);
                assert!(value.get("direction").is_none(), "{value}");
            }
        }
        assert_eq!(value["source"]["offset"], 43);

        assert_eq!(out.pts(), Some(gst::ClockTime::from_mseconds(300)));
        assert_eq!(out.dts(), Some(gst::ClockTime::from_mseconds(300)));
        assert_eq!(capture_time(&out), Some(CAPTURE_NS));
        // The record meta whole, kafkasrc's own field included: the frame's record stays
        // open until this event is delivered, and kafkasink key-from=record keys it cam1.
        assert_eq!(RecordMeta::of(&out), Some(record(3)));
        assert_eq!(RecordMeta::of(&out).unwrap().camera(), "cam1");
        let meta = gst::meta::CustomMeta::from_buffer(&out, RECORD_META).unwrap();
        assert_eq!(meta.structure().get::<u32>("owner-field").unwrap(), 5);
    }
    assert_eq!(h.buffers_in_queue(), 0);
}

#[test]
fn a_frame_without_events_gives_a_gap_and_no_record() {
    let mut h = harness();
    h.push(frame(1, &[])).unwrap();
    assert_eq!(
        h.buffers_in_queue(),
        0,
        "nothing happened: nothing to write"
    );
    let gap = std::iter::from_fn(|| h.try_pull_event())
        .find(|e| e.type_() == gst::EventType::Gap)
        .expect("a gap event downstream");
    let gst::EventView::Gap(gap) = gap.view() else {
        unreachable!()
    };
    assert_eq!(
        gap.get(),
        (
            gst::ClockTime::from_mseconds(100),
            Some(gst::ClockTime::from_mseconds(100))
        )
    );

    // A frame with events after it still gives its events.
    h.push(frame(2, &events_of_frame(2))).unwrap();
    assert_eq!(h.buffers_in_queue(), 2);
    let stats = h.element().unwrap().property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("frames").unwrap(), 2);
    assert_eq!(stats.get::<u64>("events").unwrap(), 2);
}
