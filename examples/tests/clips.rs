// SPDX-License-Identifier: MIT OR Apache-2.0
//! `clipper` against the broker `scripts/test` starts. Two H.264 cameras of different
//! sizes share a frames topic, their frames captured an hour ago (the events are old by
//! their times: a clipper started long after them); events at known times go to an events
//! topic. Every clip starts at the last keyframe at or before `event - pre`, ends with the
//! last frame at or before `event + post` (the next one is past it), holds exactly that
//! camera's frames (its size, its count) and plays to its end. A clipper killed mid-clip
//! and started again leaves exactly one complete clip per event.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gst::prelude::*;
use kafkavision::events::{Direction, Event, EventKind};
use testkit::*;

const FPS: u64 = 15;
const SECONDS: u64 = 135;

/// (key, width, height) of the cameras.
const CAMERAS: [(&str, u32, u32); 2] = [("cam1", 160, 120), ("cam2", 176, 144)];

/// Each camera's stream, encoded once for every test: a keyframe a second.
fn cameras() -> &'static [EncodedCamera; 2] {
    static CAMERAS_ENCODED: OnceLock<[EncodedCamera; 2]> = OnceLock::new();
    CAMERAS_ENCODED.get_or_init(|| {
        gst_kafka_vision_examples::init().unwrap();
        CAMERAS
            .map(|(_, width, height)| EncodedCamera::encode(SECONDS * FPS, FPS, FPS, width, height))
    })
}

fn camera(key: &str) -> &'static EncodedCamera {
    let index = CAMERAS.iter().position(|(k, _, _)| *k == key).unwrap();
    &cameras()[index]
}

/// A frames topic with both cameras, their first frames captured at `first_ms`, and an
/// empty events topic.
fn topics(first_ms: i64) -> (String, String) {
    let frames = new_topic("clips-frames", 1);
    let [cam1, cam2] = cameras();
    publish_cameras_at(&frames, &[("cam1", cam1), ("cam2", cam2)], first_ms);
    (frames, new_topic("clips-events", 1))
}

/// An event of `camera` at `at_ms` (Unix ms) with id `id` (16 hex digits).
fn publish_event(topic: &str, camera: &str, at_ms: i64, id: &str) {
    let mut event = Event::new(EventKind::LineCrossed, 7, "car");
    event.camera = Some(camera.into());
    event.line = Some("gate".into());
    event.direction = Some(Direction::In);
    event.capture_time_ns = Some(at_ms as u64 * 1_000_000);
    event.event_id = Some(id.into());
    produce_keyed(topic, &[(camera, event.to_json(), vec![])]);
}

fn index(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("index.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn clipper(frames: &str, events: &str, dir: &Path, extra: &[&str]) -> Running {
    let brokers = brokers();
    let mut args = vec![
        "--brokers",
        &brokers,
        "--frames-topic",
        frames,
        "--events-topic",
        events,
        "--group",
        events,
        "--dir",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Running::start(env!("CARGO_BIN_EXE_clipper"), &args)
}

fn wait_for_clips(dir: &Path, count: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while index(dir).len() < count {
        assert!(
            Instant::now() < deadline,
            "{} of {count} clips after {timeout:?}",
            index(dir).len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What `gst-discoverer-1.0` says of a clip: its duration in ms and video width.
fn discover(path: &Path) -> (f64, u32) {
    let output = command("gst-discoverer-1.0")
        .arg(path)
        .output()
        .expect("gst-discoverer-1.0");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{text}");
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    // "Duration: 0:00:20.066666666"
    let duration = field("Duration:");
    let parts: Vec<f64> = duration.split(':').map(|p| p.parse().unwrap()).collect();
    let ms = ((parts[0] * 60.0 + parts[1]) * 60.0 + parts[2]) * 1000.0;
    (ms, field("Width:").parse().unwrap())
}

/// Checks the clip of `camera`'s event at `event_ms` after its first frame, with `pre`
/// and `post` ms around it.
fn assert_clip(
    dir: &Path,
    entry: &serde_json::Value,
    key: &str,
    first_ms: i64,
    window: (i64, i64, i64),
) {
    let (event, pre, post) = window;
    let camera = camera(key);
    let first = camera.last_keyframe_at_or_before(event - pre).unwrap();
    let last = camera.last_frame_at_or_before(event + post);
    let frames = last - first + 1;
    assert_eq!(entry["camera"], key);
    assert_eq!(entry["frames"], frames, "{entry}");
    assert_eq!(entry["start_ms"], first_ms + camera.at_ms(first), "{entry}");
    assert_eq!(entry["end_ms"], first_ms + camera.at_ms(last), "{entry}");
    assert!(entry["start_ms"].as_i64().unwrap() <= entry["from_ms"].as_i64().unwrap());
    // The next frame would be past the window: the clip reaches its end.
    assert!(first_ms + camera.at_ms(last + 1) > entry["to_ms"].as_i64().unwrap());
    let path: PathBuf = dir.join(entry["file"].as_str().unwrap());
    assert_eq!(
        entry["bytes"].as_u64().unwrap(),
        std::fs::metadata(&path).unwrap().len()
    );
    assert_eq!(
        mp4_video_frames(&path),
        Some(frames as usize),
        "{}",
        path.display()
    );
    let (duration_ms, width) = discover(&path);
    assert_eq!(width, CAMERAS.iter().find(|(k, ..)| *k == key).unwrap().1);
    let expected_ms = frames as f64 * 1000.0 / FPS as f64;
    assert!(
        (duration_ms - expected_ms).abs() <= 1000.0 / FPS as f64 + 1.0,
        "{} lasts {duration_ms} ms, {frames} frames make {expected_ms} ms",
        path.display()
    );
}

#[test]
fn events_of_an_hour_ago_get_clips_from_the_keyframe_before_their_pre_roll() {
    let first_ms = unix_now_ms() - 3_600_000;
    let (frames, events) = topics(first_ms);
    let dir = std::env::temp_dir().join(unique_name("clips"));
    // Mid-GOP events; two of cam1 whose windows overlap, and one asking for 120 s of
    // pre-roll (twice Frigate's cap) through --camera-window.
    let wanted = [
        ("cam1", 12_300, "00000000000000a1", (10_000, 10_000)),
        ("cam2", 127_500, "00000000000000b2", (120_000, 3_000)),
        ("cam1", 25_700, "00000000000000a3", (10_000, 10_000)),
    ];
    for (camera, at, id, _) in wanted {
        publish_event(&events, camera, first_ms + at, id);
    }
    let clips_topic = new_topic("clips-kept", 1);
    let mut run = clipper(
        &frames,
        &events,
        &dir,
        &[
            "--camera-window",
            "cam2=120:3",
            "--pre",
            "10",
            "--post",
            "10",
            "--clips-topic",
            &clips_topic,
        ],
    );
    wait_for_clips(&dir, wanted.len(), Duration::from_secs(120));
    run.terminate();
    let entries = index(&dir);
    assert_eq!(entries.len(), wanted.len());
    for (camera, at, id, (pre, post)) in wanted {
        let entry = entries.iter().find(|e| e["event_id"] == id).unwrap();
        assert_eq!(entry["kind"], "line-crossed");
        assert_eq!(entry["place"], "gate");
        assert_clip(&dir, entry, camera, first_ms, (at, pre, post));
        // The clip's frames, kept in the clips topic under the event's id.
        let kept = launch(&format!(
            "kafkasrc name=src brokers={} topic={clips_topic} key={id} start-from=earliest \
             stop-on-eos=true ! fakesink",
            brokers()
        ));
        let source = kept.by_name("src").unwrap();
        assert!(matches!(
            run_until_end(&kept, Duration::from_secs(60)),
            Ended::Eos
        ));
        assert_eq!(
            stat_u64(&source, "buffers-pushed"),
            entry["frames"].as_u64().unwrap()
        );
    }
    the_viewer_lists_and_plays_the_clips(&dir, &wanted.map(|(_, _, id, _)| id));
    std::fs::remove_dir_all(dir).ok();
}

/// The viewer with `--clips-dir`: its page lists every event with its clip, and Chromium
/// plays one in the page (`?clip=ID`).
fn the_viewer_lists_and_plays_the_clips(dir: &Path, ids: &[&str]) {
    let brokers = brokers();
    let topic = new_topic("clips-annotated", 1);
    let mut viewer = Running::start(
        env!("CARGO_BIN_EXE_viewer"),
        &[
            "--brokers",
            &brokers,
            "--topic",
            &topic,
            "--group",
            "",
            "--port",
            "0",
            "--clips-dir",
            dir.to_str().unwrap(),
        ],
    );
    let lines = viewer.wait_for("http://", Duration::from_secs(30));
    let url = lines
        .last()
        .unwrap()
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let address = url.trim_start_matches("http://");
    let (status, listed) = http_get(address, "/clips");
    assert_eq!(status, 200);
    for id in ids {
        assert!(listed.contains(id), "{id} not in {listed}");
    }
    // Only the clipper's names are served: nothing outside the folder.
    assert_eq!(http_get(address, "/clips/..%2Findex.jsonl").0, 404);
    assert_eq!(http_get(address, "/clips/0000000000000000.mp4").0, 404);

    let profile = std::env::temp_dir().join(unique_name("chromium-profile"));
    let played = ids[0];
    let output = headless_chromium(
        &[
            "--autoplay-policy=no-user-gesture-required",
            "--virtual-time-budget=8000",
            "--dump-dom",
            &format!("{url}/?still=1&clip={played}"),
        ],
        &profile,
    );
    let dom = String::from_utf8_lossy(&output.stdout).to_string();
    for id in ids {
        assert!(
            dom.contains(&format!("id=\"clip-{id}\"")),
            "no row for {id}: {dom}"
        );
    }
    let state = dom
        .split("id=\"clip-state\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or_default();
    // Chromium decoded the clip: its size and duration came from the MP4.
    assert!(
        (state.starts_with("loaded ")
            || state.starts_with("playing ")
            || state.starts_with("ended "))
            && state.contains(&format!("{played} 160x120 ")),
        "the clip did not play in the page: {state:?}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    viewer.terminate();
    std::fs::remove_dir_all(&profile).ok();
}

#[test]
fn a_clipper_killed_mid_clip_leaves_one_complete_clip_per_event() {
    let first_ms = unix_now_ms() - 3_600_000;
    let (frames, events) = topics(first_ms);
    let dir = std::env::temp_dir().join(unique_name("clips-killed"));
    publish_event(&events, "cam1", first_ms + 30_000, "00000000000000c1");
    publish_event(&events, "cam2", first_ms + 60_000, "00000000000000c2");

    // A live camera: cam3's frames captured now, at their pace, for 12 s; its event's
    // window ends 8 s after it starts, so its clip waits for frames when the kill comes.
    let live = new_topic("clips-live", 1);
    let live_first_ms = unix_now_ms();
    let live_frames = {
        let live = live.clone();
        std::thread::spawn(move || {
            let cam1 = camera("cam1");
            for seq in 0..12 * FPS {
                let at = live_first_ms + cam1.at_ms(seq);
                while unix_now_ms() < at {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let (record, timestamp) = cam1.record("cam3", seq, at);
                produce_keyed_at(&live, [(&record, timestamp)]);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    // The live camera's frames go to their own topic: this event is clipped from it by a
    // second clipper of the same group and folder, after the kill.
    publish_event(&events, "cam1", first_ms + 90_000, "00000000000000c3");

    let mut run = clipper(&frames, &events, &dir, &["--post", "10"]);
    // SIGKILL while a clip after the first is being cut: its file is half written, its
    // event not committed.
    wait_for_clips(&dir, 1, Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(60);
    let part = loop {
        let part = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|name| name.ends_with(".mp4.part"));
        if let Some(part) = part {
            break part;
        }
        assert!(
            Instant::now() < deadline && index(&dir).len() < 3,
            "no clip was being cut after the first: {:?}",
            index(&dir)
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    run.kill();
    eprintln!("killed while writing {part}");

    let mut run = clipper(&frames, &events, &dir, &["--post", "10"]);
    wait_for_clips(&dir, 3, Duration::from_secs(60));
    run.terminate();
    let entries = index(&dir);
    let ids: Vec<&str> = entries
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    for (id, camera, at) in [
        ("00000000000000c1", "cam1", 30_000),
        ("00000000000000c2", "cam2", 60_000),
        ("00000000000000c3", "cam1", 90_000),
    ] {
        let entry = entries.iter().find(|e| e["event_id"] == id).unwrap();
        assert_clip(&dir, entry, camera, first_ms, (at, 10_000, 10_000));
    }
    // No half-written file is left.
    assert!(
        std::fs::read_dir(&dir).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".part"))
    );

    // The live camera: a clip that waits for its window's end.
    publish_event(&events, "cam3", live_first_ms + 2_000, "00000000000000d4");
    let mut run = clipper(&live, &events, &dir, &["--post", "6"]);
    wait_for_clips(&dir, 4, Duration::from_secs(60));
    run.terminate();
    live_frames.join().unwrap();
    let entries = index(&dir);
    let entry = entries
        .iter()
        .find(|e| e["event_id"] == "00000000000000d4")
        .unwrap();
    // From the camera's first frame (10 s of pre-roll reach before it) to 8 s.
    assert_eq!(entry["frames"], 8 * FPS + 1, "{entry}");
    assert!(unix_now_ms() >= live_first_ms + 8_000);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn jpeg_cameras_are_encoded_into_their_clips() {
    gst_kafka_vision_examples::init().unwrap();
    let frames = new_topic("clips-jpeg", 1);
    let events = new_topic("clips-jpeg-events", 1);
    let dir = std::env::temp_dir().join(unique_name("clips-jpeg"));
    // Three seconds of a live JPEG camera, stamped with their capture times by kafkasink.
    let started_ms = unix_now_ms();
    let camera = launch(&format!(
        "videotestsrc is-live=true num-buffers=45 pattern=ball ! \
         video/x-raw,width=320,height=240,framerate=15/1 ! jpegenc ! \
         kafkasink brokers={} topic={frames} key=jcam",
        brokers()
    ));
    assert!(matches!(
        run_until_end(&camera, Duration::from_secs(60)),
        Ended::Eos
    ));
    publish_event(&events, "jcam", started_ms + 1_500, "00000000000000e1");
    let mut run = clipper(&frames, &events, &dir, &["--pre", "1", "--post", "1"]);
    wait_for_clips(&dir, 1, Duration::from_secs(60));
    run.terminate();
    let entry = &index(&dir)[0];
    let frames = entry["frames"].as_u64().unwrap();
    // Two seconds of 15 frames/s, give or take the camera's start.
    assert!((20..=31).contains(&frames), "{entry}");
    let path = dir.join(entry["file"].as_str().unwrap());
    assert_eq!(mp4_video_frames(&path), Some(frames as usize));
    let (_, width) = discover(&path);
    assert_eq!(width, 320);
    std::fs::remove_dir_all(dir).ok();
}
