// SPDX-License-Identifier: MIT OR Apache-2.0
//! Tracks, line crossings and zone visits on the scripted scene (`scene.rs`), whose answers
//! are known: `yolodetect ! objecttrack ! crossingcount ! eventsconvert`. Every scripted
//! crossing is counted once with its direction; the object that touches the line and
//! turns back is not; two objects crossing together get two ids and two events; an id
//! survives a 3-frame gap; zones count entries and exits with dwell times; and a frame
//! where nothing happens writes no event record. Bad lines and zones fail at start,
//! naming the property.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gst::prelude::*;
use gst_kafka_vision_examples::scene::{self, PERIOD};
use kafkavision::detections::meta as detections_meta;
use kafkavision::events::{Event, EventKind};
use testkit::{Ended, run_until_end};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;
/// Black frames after the script, so tracks lost inside the zone time out.
const TAIL: u32 = 30;
const FRAME_NS: u64 = 100_000_000;

fn init() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| gst_kafka_vision_examples::init().expect("GStreamer and our plugins"));
}

/// What came out for one frame: its tracked detections (track id, centre x, centre y) and
/// its events.
#[derive(Debug, Default)]
struct Frame {
    tracks: Vec<(Option<u64>, f64, f64)>,
    events: Vec<Event>,
}

struct Run {
    frames: BTreeMap<u32, Frame>,
    records: Vec<Event>,
    /// The `crossingcount` element messages: (kind, line or zone, direction).
    messages: Vec<(String, String, String)>,
    stats: gst::Structure,
}

fn run_scene(zones: &str) -> Run {
    init();
    let pipeline = gst::parse::launch(
        "appsrc name=src format=time ! yolodetect name=detect ! objecttrack ! \
         crossingcount name=count ! tee name=t \
         t. ! queue ! appsink name=frames sync=false \
         t. ! queue ! eventsconvert ! appsink name=records sync=false",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let model = testkit::repo().join("models/blob-yolov8.onnx");
    pipeline
        .by_name("detect")
        .unwrap()
        .set_property("model-location", model.to_str().unwrap());
    let count = pipeline.by_name("count").unwrap();
    count.set_property("lines", scene::LINE);
    count.set_property("zones", zones);
    count.set_property("camera", "scene");
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    src.set_caps(Some(
        &gst::Caps::builder("video/x-raw")
            .field("format", "RGB")
            .field("width", WIDTH as i32)
            .field("height", HEIGHT as i32)
            .field("framerate", gst::Fraction::new(10, 1))
            .build(),
    ));

    let frames = Arc::new(Mutex::new(BTreeMap::new()));
    let store = frames.clone();
    let sink = pipeline
        .by_name("frames")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buffer = sample.buffer().unwrap();
                let index = (buffer.pts().unwrap().nseconds() / FRAME_NS) as u32;
                let tracks = detections_meta::of_buffer(buffer, WIDTH, HEIGHT)
                    .iter()
                    .map(|d| {
                        let n = &d.box_normalized;
                        (d.track_id, n.x + n.width / 2.0, n.y + n.height / 2.0)
                    })
                    .collect();
                let events = kafkavision::events::meta::of_buffer(buffer);
                store
                    .lock()
                    .unwrap()
                    .insert(index, Frame { tracks, events });
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    let records = Arc::new(Mutex::new(Vec::new()));
    let store = records.clone();
    let sink = pipeline
        .by_name("records")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let map = sample.buffer().unwrap().map_readable().unwrap();
                store
                    .lock()
                    .unwrap()
                    .push(Event::from_json(map.as_slice()).unwrap());
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );

    let messages = Arc::new(Mutex::new(Vec::new()));
    let store = messages.clone();
    pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
        if let gst::MessageView::Element(e) = msg.view()
            && let Some(s) = e.structure()
            && s.name() == "crossingcount"
        {
            let field = |f: &str| s.get::<String>(f).unwrap_or_default();
            let place = s.get::<String>("line").or_else(|_| s.get::<String>("zone"));
            store.lock().unwrap().push((
                field("kind"),
                place.unwrap_or_default(),
                field("direction"),
            ));
        }
        gst::BusSyncReply::Pass
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    for index in 0..PERIOD + TAIL {
        let rgb = if index < PERIOD {
            scene::render_rgb(index, WIDTH, HEIGHT)
        } else {
            vec![0; (WIDTH * HEIGHT * 3) as usize]
        };
        let mut buffer = gst::Buffer::from_mut_slice(rgb);
        {
            let b = buffer.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_nseconds(index as u64 * FRAME_NS));
            b.set_duration(gst::ClockTime::from_nseconds(FRAME_NS));
        }
        src.push_buffer(buffer).unwrap();
    }
    src.end_of_stream().unwrap();
    let count = pipeline.by_name("count").unwrap();
    let ended = run_until_end(&pipeline, Duration::from_secs(120));
    assert!(matches!(ended, Ended::Eos), "{ended:?}");
    let frames = std::mem::take(&mut *frames.lock().unwrap());
    let records = records.lock().unwrap().clone();
    let messages = messages.lock().unwrap().clone();
    let stats = count.property::<gst::Structure>("stats");
    Run {
        frames,
        records,
        messages,
        stats,
    }
}

/// The track seen nearest to (x, y) on `frame`.
fn track_at(run: &Run, frame: u32, y: f64) -> Option<u64> {
    run.frames[&frame]
        .tracks
        .iter()
        .filter(|t| (t.2 - y).abs() < 0.05)
        .find_map(|t| t.0)
}

#[test]
fn the_scripted_scene_gives_exactly_the_scripted_crossings() {
    let run = run_scene("");
    let crossings: Vec<(u32, &Event)> = run
        .frames
        .iter()
        .flat_map(|(i, f)| f.events.iter().map(move |e| (*i, e)))
        .filter(|(_, e)| e.kind == EventKind::LineCrossed)
        .collect();
    let expected = scene::crossings();
    assert_eq!(
        crossings.len(),
        expected.len(),
        "one event per scripted crossing, none for the object that turns back: {crossings:?}"
    );
    for want in &expected {
        // The event comes on the first frame the object's centre is past the line.
        let track = track_at(&run, want.frame + 1, want.y)
            .unwrap_or_else(|| panic!("{} has no track id at frame {}", want.object, want.frame));
        let got = crossings
            .iter()
            .find(|(_, e)| e.track_id == track)
            .unwrap_or_else(|| panic!("no crossing of {} (track {track})", want.object));
        assert!(
            got.0.abs_diff(want.frame) <= 1,
            "{} crossed at frame {}, scripted {}",
            want.object,
            got.0,
            want.frame
        );
        assert_eq!(
            got.1.direction.unwrap().as_str(),
            want.direction,
            "{}",
            want.object
        );
        assert_eq!(got.1.line.as_deref(), Some("gate"));
        assert_eq!(got.1.camera.as_deref(), Some("scene"));
        assert_eq!(got.1.label, "sports ball");
    }
    // c and d crossing together: two ids, two events.
    let c = track_at(&run, 86, 0.2).unwrap();
    let d = track_at(&run, 86, 0.75).unwrap();
    assert_ne!(c, d);
    // f's id survives the three frames the camera missed it.
    assert_eq!(track_at(&run, 165, 0.6), track_at(&run, 172, 0.6));
    assert!(
        run.frames[&167].tracks.is_empty(),
        "f is hidden at frame 167"
    );
    // The event records are the events, one each; frames without events wrote nothing.
    assert_eq!(run.records.len(), crossings.len());
    // One element message per event, and the running counts in stats.
    let mut messages = run.messages.clone();
    messages.sort();
    assert_eq!(
        messages,
        vec![
            ("line-crossed".into(), "gate".into(), "in".into()),
            ("line-crossed".into(), "gate".into(), "in".into()),
            ("line-crossed".into(), "gate".into(), "in".into()),
            ("line-crossed".into(), "gate".into(), "in".into()),
            ("line-crossed".into(), "gate".into(), "out".into()),
        ]
    );
    let lines = run.stats.get::<gst::Array>("lines").unwrap();
    let gate = lines.as_slice()[0].get::<gst::Structure>().unwrap();
    assert_eq!(gate.get::<&str>("camera"), Ok("scene"));
    assert_eq!(
        (gate.get::<u64>("in"), gate.get::<u64>("out")),
        (Ok(4), Ok(1)),
        "{gate}"
    );
    let frames_with_events = run.frames.values().filter(|f| !f.events.is_empty()).count();
    println!(
        "analytics: {} frames, {} detections records (one per frame) vs {} event records \
         ({} frames had events)",
        run.frames.len(),
        run.frames.len(),
        run.records.len(),
        frames_with_events
    );
}

#[test]
fn zones_count_entries_and_exits_with_dwell_times() {
    // The right side of the frame: a, c, d and f enter it (b appears in it), e never does.
    let run = run_scene("right:0.6,0,1,0,1,1,0.6,1");
    let events: Vec<&Event> = run.frames.values().flat_map(|f| f.events.iter()).collect();
    let entered: Vec<u64> = events
        .iter()
        .filter(|e| e.kind == EventKind::ZoneEntered)
        .map(|e| e.track_id)
        .collect();
    let left: Vec<&&Event> = events
        .iter()
        .filter(|e| e.kind == EventKind::ZoneLeft)
        .collect();
    assert_eq!(entered.len(), 5, "{events:?}");
    assert_eq!(
        left.len(),
        5,
        "everyone leaves (b walks out, the others time out)"
    );
    for exit in &left {
        assert!(entered.contains(&exit.track_id));
        assert!(exit.dwell_ms.unwrap() > 0, "{exit:?}");
        assert_eq!(exit.zone.as_deref(), Some("right"));
    }
    // b is inside from its first frame (35) until it walks out at x = 0.6 (frame 46).
    let b = track_at(&run, 40, 0.5).unwrap();
    let b_left = left.iter().find(|e| e.track_id == b).unwrap();
    let dwell = b_left.dwell_ms.unwrap();
    assert!((800..=1300).contains(&dwell), "b dwelt {dwell} ms");
}

#[test]
fn bad_lines_and_zones_fail_at_start_naming_the_property() {
    init();
    for (property, value, expected) in [
        ("lines", "gate:0.5,0", "point(s)"),
        (
            "zones",
            "bow:0.1,0.1,0.4,0.4,0.4,0.1,0.1,0.4",
            "crosses itself",
        ),
        ("config-file", "/nonexistent/layout.json", "cannot read"),
    ] {
        let pipeline = gst::parse::launch(
            "videotestsrc num-buffers=1 ! video/x-raw,width=64,height=48 ! \
             crossingcount name=count ! fakesink",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        pipeline
            .by_name("count")
            .unwrap()
            .set_property(property, value);
        match run_until_end(&pipeline, Duration::from_secs(10)) {
            Ended::Error(err) => {
                assert!(err.contains(property), "{property}: {err}");
                assert!(err.contains(expected), "{property}: {err}");
            }
            other => panic!("{property}={value}: {other:?}"),
        }
    }
    // A file that does not parse.
    let file = std::env::temp_dir().join(testkit::unique_name("layout") + ".json");
    std::fs::write(&file, "{\"lines\": [").unwrap();
    let pipeline = gst::parse::launch(
        "videotestsrc num-buffers=1 ! video/x-raw,width=64,height=48 ! \
         crossingcount name=count ! fakesink",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline
        .by_name("count")
        .unwrap()
        .set_property("config-file", file.to_str().unwrap());
    match run_until_end(&pipeline, Duration::from_secs(10)) {
        Ended::Error(err) => assert!(err.contains("config-file: not a layout file"), "{err}"),
        other => panic!("{other:?}"),
    }
    std::fs::remove_file(file).ok();
}
