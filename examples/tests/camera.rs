// SPDX-License-Identifier: MIT OR Apache-2.0
//! The camera simulator and the publisher, as real processes against the broker that
//! `scripts/test` started (KAFKA_BROKERS): 30 frames arrive decodable; the publisher
//! survives a camera restart (two streams in Kafka, both decodable); without retries a
//! lost camera fails clearly; a missing topic is fatal; the README's one-line
//! `gst-launch-1.0` camera publishes, ends when the camera goes away and publishes a new
//! stream when run again.
//!
//! Every child process sits in a guard that kills it on drop, so a failing test leaves
//! nothing behind.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};
use testkit::{
    RawRecord, Running, brokers, create_topic, free_port, http_get, read_until,
    unique_name as unique,
};

use gst::prelude::*;

// ---- Kafka ---------------------------------------------------------------------------

/// The records of each stream (`gkv-stream`), in order of first appearance.
fn by_stream(records: &[RawRecord]) -> Vec<(String, Vec<&RawRecord>)> {
    let mut streams: Vec<(String, Vec<&RawRecord>)> = Vec::new();
    for r in records {
        let id = r.header("gkv-stream").unwrap_or("").to_string();
        match streams.iter_mut().find(|(s, _)| *s == id) {
            Some((_, list)) => list.push(r),
            None => streams.push((id, vec![r])),
        }
    }
    streams
}

/// One stream as the publisher should write it: a keyframe first, seq 0.. without gaps,
/// H.264 byte-stream caps, the end-of-stream record last. Returns its frame count.
fn check_stream(id: &str, records: &[&RawRecord], key: &str) -> usize {
    assert!(
        records.last().is_some_and(|r| r.is_eos()),
        "stream {id} does not end with its end-of-stream record"
    );
    let buffers: Vec<&&RawRecord> = records.iter().filter(|r| !r.is_eos()).collect();
    assert!(!buffers.is_empty(), "stream {id} has no frames");
    assert!(
        !buffers[0]
            .header("gkv-flags")
            .unwrap_or("")
            .contains("delta-unit"),
        "stream {id} does not start with a keyframe: {:?}",
        buffers[0].headers
    );
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            r.header("gkv-seq"),
            Some(i.to_string().as_str()),
            "stream {id}: sequence"
        );
        assert_eq!(r.key_text(), key, "stream {id}: key");
    }
    for r in &buffers {
        assert!(
            r.header("gkv-caps")
                .unwrap_or("")
                .starts_with("video/x-h264")
                && r.header("gkv-caps").unwrap_or("").contains("byte-stream"),
            "stream {id}: caps {:?}",
            r.header("gkv-caps")
        );
        assert!(!r.value.is_empty(), "stream {id}: an empty frame");
    }
    buffers.len()
}

// ---- processes -----------------------------------------------------------------------

/// camera-sim on `port` (0: a free one); returns it once ready, with its camera URLs.
fn camera_sim(cameras: u32, port: u16) -> (Running, Vec<String>) {
    let mut process = Running::start(
        env!("CARGO_BIN_EXE_camera-sim"),
        &[
            "--cameras",
            &cameras.to_string(),
            "--port",
            &port.to_string(),
            "--fps",
            "10",
        ],
    );
    let urls: Vec<String> = process
        .wait_for("camera-sim: ready", Duration::from_secs(15))
        .iter()
        .filter_map(|line| line.strip_prefix("camera-sim: "))
        .filter(|rest| rest.starts_with("rtsp://"))
        .map(String::from)
        .collect();
    assert_eq!(urls.len(), cameras as usize, "{urls:?}");
    for (i, url) in urls.iter().enumerate() {
        assert!(
            url.starts_with("rtsp://127.0.0.1:") && url.ends_with(&format!("/cam{}", i + 1)),
            "{url}"
        );
    }
    (process, urls)
}

fn port_of(url: &str) -> u16 {
    url.trim_start_matches("rtsp://127.0.0.1:")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn publisher(url: &str, topic: &str, extra: &[&str]) -> Running {
    let brokers = brokers();
    let mut args = vec!["--url", url, "--brokers", &brokers, "--topic", topic];
    args.extend_from_slice(extra);
    Running::start(env!("CARGO_BIN_EXE_publisher"), &args)
}

// ---- in-process reading --------------------------------------------------------------

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| gst_kafka_vision_examples::init().expect("GStreamer and our plugins"));
}

/// What `kafkasrc ! h264parse ! avdec_h264 ! appsink` made of a topic.
struct Decoded {
    /// Buffers kafkasrc pushed, and the caps it pushed them with.
    pushed: u64,
    source_caps: Vec<String>,
    /// Decoded frames, and their caps.
    frames: u64,
    frame_caps: Option<gst::Caps>,
    errors: Vec<String>,
    stats: gst::Structure,
}

/// Decodes `topic`. With `expect_buffers`, runs without `stop-on-eos` until kafkasrc has
/// pushed that many buffers, then ends the stream itself (a publisher that reconnects
/// writes one stream per connection, and `stop-on-eos` ends at the first one's EOS);
/// without, runs with `stop-on-eos=true`.
fn decode_topic(topic: &str, expect_buffers: Option<u64>, timeout: Duration) -> Decoded {
    init();
    let pipeline = gst::parse::launch(&format!(
        "kafkasrc name=src brokers={} topic={topic} stop-on-eos={} ! h264parse ! \
         avdec_h264 ! appsink name=sink sync=false",
        brokers(),
        expect_buffers.is_none(),
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = pipeline.by_name("src").unwrap();
    let pushed = Arc::new(AtomicU64::new(0));
    let source_caps = Arc::new(Mutex::new(Vec::new()));
    {
        let (pushed, source_caps) = (pushed.clone(), source_caps.clone());
        src.static_pad("src").unwrap().add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                match &info.data {
                    Some(gst::PadProbeData::Buffer(_)) => {
                        pushed.fetch_add(1, Ordering::SeqCst);
                    }
                    Some(gst::PadProbeData::Event(event)) => {
                        if let gst::EventView::Caps(caps) = event.view() {
                            source_caps.lock().unwrap().push(caps.caps().to_string());
                        }
                    }
                    _ => {}
                }
                gst::PadProbeReturn::Ok
            },
        );
    }
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let frames = Arc::new(AtomicU64::new(0));
    let frame_caps = Arc::new(Mutex::new(None));
    {
        let (frames, frame_caps) = (frames.clone(), frame_caps.clone());
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    *frame_caps.lock().unwrap() = sample.caps_owned();
                    frames.fetch_add(1, Ordering::SeqCst);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let deadline = Instant::now() + timeout;
    let mut errors = Vec::new();
    let mut eos_sent = false;
    loop {
        if let Some(expected) = expect_buffers
            && !eos_sent
            && pushed.load(Ordering::SeqCst) >= expected
        {
            // The decoder may hold back its newest frame until the stream ends.
            pipeline.send_event(gst::event::Eos::new());
            eos_sent = true;
        }
        if Instant::now() >= deadline {
            errors.push(format!(
                "timed out after {timeout:?} ({} buffers pushed, {} frames decoded)",
                pushed.load(Ordering::SeqCst),
                frames.load(Ordering::SeqCst)
            ));
            break;
        }
        let Some(message) = bus.timed_pop(gst::ClockTime::from_mseconds(50)) else {
            continue;
        };
        match message.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(err) => {
                errors.push(format!(
                    "{}: {} ({:?})",
                    message
                        .src()
                        .map(|s| s.name().to_string())
                        .unwrap_or_default(),
                    err.error(),
                    err.debug()
                ));
                break;
            }
            _ => {}
        }
    }
    let stats = src.property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    Decoded {
        pushed: pushed.load(Ordering::SeqCst),
        source_caps: source_caps.lock().unwrap().clone(),
        frames: frames.load(Ordering::SeqCst),
        frame_caps: frame_caps.lock().unwrap().clone(),
        errors,
        stats,
    }
}

fn stat(stats: &gst::Structure, name: &str) -> u64 {
    stats
        .get::<u64>(name)
        .unwrap_or_else(|e| panic!("kafkasrc stats {name}: {e} in {stats}"))
}

fn check_frame_caps(decoded: &Decoded) {
    assert!(
        !decoded.source_caps.is_empty()
            && decoded
                .source_caps
                .iter()
                .all(|c| c.starts_with("video/x-h264")),
        "kafkasrc caps: {:?}",
        decoded.source_caps
    );
    let caps = decoded.frame_caps.as_ref().expect("no decoded frame");
    let s = caps.structure(0).unwrap();
    assert_eq!(s.name(), "video/x-raw", "{caps}");
    assert_eq!(s.get::<i32>("width").unwrap(), 640, "{caps}");
    assert_eq!(s.get::<i32>("height").unwrap(), 480, "{caps}");
}

// ---- tests ---------------------------------------------------------------------------

#[test]
fn the_publisher_sends_thirty_decodable_h264_frames_of_a_simulated_camera() {
    let topic = unique("camera-frames");
    create_topic(&topic, 1);
    let (_cameras, urls) = camera_sim(2, 0);

    let mut publisher = publisher(&urls[0], &topic, &["--frames", "30"]);
    let status = publisher.wait(Duration::from_secs(30));
    assert!(
        status.success(),
        "publisher: {status}\n{}",
        publisher.stderr()
    );

    // In Kafka: one stream of exactly 30 frames, keyed by the camera from the URL.
    let records = read_until(&topic, 1, Duration::from_secs(15), |r| {
        r.iter().any(RawRecord::is_eos)
    });
    let streams = by_stream(&records);
    assert_eq!(streams.len(), 1, "streams: {streams:?}");
    assert_eq!(check_stream(&streams[0].0, &streams[0].1, "cam1"), 30);

    // Read back through kafkasrc: 30 frames decode.
    let decoded = decode_topic(&topic, None, Duration::from_secs(20));
    assert!(decoded.errors.is_empty(), "errors: {:?}", decoded.errors);
    assert_eq!(decoded.pushed, 30, "buffers kafkasrc pushed");
    assert_eq!(decoded.frames, 30, "decoded frames");
    check_frame_caps(&decoded);
}

#[test]
fn the_publisher_reconnects_after_a_camera_restart_as_a_new_stream() {
    let topic = unique("camera-restart");
    create_topic(&topic, 1);
    let (mut cameras, urls) = camera_sim(2, 0);
    let url = urls[0].clone();
    let port = port_of(&url);

    let metrics = format!("127.0.0.1:{}", free_port());
    let mut publisher = publisher(
        &url,
        &topic,
        &["--reconnect-seconds", "1", "--metrics", &metrics],
    );
    publisher.wait_for_stderr("connected", 1, Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(2));
    // Healthy while frames flow; the metrics count them.
    assert_eq!(http_get(&metrics, "/healthz"), (200, "ok\n".into()));
    let (status, page) = http_get(&metrics, "/metrics");
    assert_eq!(status, 200);
    let sent = |page: &str| -> u64 {
        page.lines()
            .find_map(|l| l.strip_prefix("gkv_kafkasink_records_sent_total{element=\"sink\"} "))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no records_sent in {page}"))
    };
    let before = sent(&page);
    assert!(before > 0, "{page}");

    // The camera goes away (cleanly) …
    cameras.terminate();
    let status = cameras.wait(Duration::from_secs(10));
    assert!(status.success(), "camera-sim after SIGTERM: {status}");
    let lost = format!("camera {url} lost");
    publisher.wait_for_stderr(&lost, 1, Duration::from_secs(15));
    // … unhealthy while it reconnects …
    let (status, reasons) = http_get(&metrics, "/healthz");
    assert_eq!(status, 503, "{reasons}");
    std::thread::sleep(Duration::from_secs(2));

    // … and comes back on the same port: the publisher reconnects by itself.
    let (_cameras_again, urls_again) = camera_sim(2, port);
    assert_eq!(urls_again[0], url);
    publisher.wait_for_stderr("connected", 2, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(http_get(&metrics, "/healthz"), (200, "ok\n".into()));
    assert!(
        sent(&http_get(&metrics, "/metrics").1) > 0,
        "the new session writes"
    );
    publisher.terminate();
    let status = publisher.wait(Duration::from_secs(30));
    assert!(
        status.success(),
        "publisher after SIGTERM: {status}\n{}",
        publisher.stderr()
    );
    let log = publisher.stderr();
    assert!(
        log.contains("reconnecting in 1 s (attempt 1)"),
        "no reconnection line in:\n{log}"
    );

    // Two streams, before and after the restart, each from a keyframe to its
    // end-of-stream record.
    let records = read_until(&topic, 1, Duration::from_secs(15), |r| {
        r.iter().filter(|r| r.is_eos()).count() >= 2
    });
    let streams = by_stream(&records);
    assert_eq!(
        streams.len(),
        2,
        "streams before and after the restart: {:?}",
        streams
            .iter()
            .map(|(s, r)| (s, r.len()))
            .collect::<Vec<_>>()
    );
    let counts: Vec<usize> = streams
        .iter()
        .map(|(id, records)| check_stream(id, records, "cam1"))
        .collect();
    let total: usize = counts.iter().sum();
    eprintln!("frames per stream: {counts:?}");

    // kafkasrc ! h264parse ! avdec_h264 decodes every frame of both, without errors.
    let decoded = decode_topic(&topic, Some(total as u64), Duration::from_secs(25));
    assert!(decoded.errors.is_empty(), "errors: {:?}", decoded.errors);
    assert_eq!(decoded.pushed, total as u64, "buffers kafkasrc pushed");
    assert_eq!(decoded.frames, total as u64, "decoded frames of {counts:?}");
    assert_eq!(stat(&decoded.stats, "eos-records"), 2, "{}", decoded.stats);
    assert_eq!(stat(&decoded.stats, "bad-records"), 0, "{}", decoded.stats);
    assert_eq!(
        stat(&decoded.stats, "delta-units-skipped"),
        0,
        "{}",
        decoded.stats
    );
    check_frame_caps(&decoded);
}

#[test]
fn without_retries_a_camera_that_is_not_there_fails_clearly() {
    let topic = unique("camera-absent");
    create_topic(&topic, 1);
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("rtsp://127.0.0.1:{port}/cam1");
    let started = Instant::now();
    let mut publisher = publisher(&url, &topic, &["--max-retries", "0"]);
    let status = publisher.wait(Duration::from_secs(20));
    let log = publisher.stderr();
    assert!(!status.success(), "publisher: {status}\n{log}");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("camera {url} lost")) && log.contains("--max-retries 0"),
        "no clear message naming the camera:\n{log}"
    );
    assert!(!log.contains("reconnecting"), "{log}");
    assert!(started.elapsed() < Duration::from_secs(15));
    // Nothing was written.
    let records = read_until(&topic, 1, Duration::from_secs(2), |_| false);
    assert!(records.is_empty(), "{records:?}");
}

#[test]
fn a_missing_topic_is_fatal_with_kafkasinks_message() {
    let (_cameras, urls) = camera_sim(1, 0);
    let topic = unique("camera-no-such-topic");
    let mut publisher = publisher(&urls[0], &topic, &[]);
    let status = publisher.wait(Duration::from_secs(20));
    let log = publisher.stderr();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("Kafka error") && log.contains(&format!("topic '{topic}' does not exist")),
        "{log}"
    );
    assert!(!log.contains("reconnecting"), "{log}");
}

// ---- the README's gst-launch line ---------------------------------------------------

/// The words of the README's "An RTSP camera in one gst-launch line" command, after
/// `gst-launch-1.0`, continuation lines joined, the camera URL, brokers and topic made
/// this test's.
fn readme_rtsp_line(url: &str, topic: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(testkit::repo().join("examples/README.md")).unwrap();
    let block = readme
        .split("```sh\n")
        .find(|block| block.starts_with("gst-launch-1.0 -e rtspsrc "))
        .expect("examples/README.md has the rtspsrc line");
    let block = &block[..block.find("```").unwrap()];
    let words: Vec<String> = block
        .lines()
        .flat_map(|line| line.trim_end_matches('\\').split_whitespace())
        .skip(1)
        .map(|word| match word {
            "location=rtsp://127.0.0.1:8554/cam1" => format!("location={url}"),
            "brokers=127.0.0.1:9092" => format!("brokers={}", brokers()),
            "topic=frames" => format!("topic={topic}"),
            other => other.to_string(),
        })
        .collect();
    let line = words.join(" ");
    assert!(
        !line.contains(":8554") && !line.contains(":9092") && line.contains(topic),
        "{line}"
    );
    words
}

fn gst_launch(words: &[String]) -> Running {
    let args: Vec<&str> = words.iter().map(String::as_str).collect();
    Running::start("gst-launch-1.0", &args)
}

/// The README's line run by `gst-launch-1.0` as written: it publishes the camera; when the
/// camera goes away `rtspsrc` ends the stream and gst-launch exits with status 0 (so a unit
/// restarting only on failure would not bring it back); started while the camera is still
/// away it fails; run again once the camera is back, it publishes a new stream of the key
/// from a keyframe. Both streams are complete in the topic.
#[test]
fn the_readmes_rtsp_line_publishes_a_camera_and_comes_back_when_run_again() {
    let (mut camera, urls) = camera_sim(1, 0);
    let port = port_of(&urls[0]);
    let topic = unique("camera-readme");
    create_topic(&topic, 1);
    let line = readme_rtsp_line(&urls[0], &topic);
    let mut launch = gst_launch(&line);
    let records = read_until(&topic, 1, Duration::from_secs(30), |r| r.len() >= 10);
    assert!(
        records.len() >= 10,
        "{} records:\n{}",
        records.len(),
        launch.stderr()
    );

    // The camera goes away: rtspsrc (TCP) sees the connection close and ends the stream.
    let gone = Instant::now();
    camera.kill();
    let status = launch.wait(Duration::from_secs(30));
    eprintln!(
        "gst-launch ended {:?} after the camera went away: {status}",
        gone.elapsed()
    );
    assert!(status.success(), "{status}:\n{}", launch.stderr());
    assert!(
        launch.lines().iter().any(|l| l.contains("EOS")),
        "{:?}",
        launch.lines()
    );

    // Started again while the camera is away: an error, a failed exit.
    let mut early = gst_launch(&line);
    let status = early.wait(Duration::from_secs(60));
    assert!(!status.success(), "started without its camera: {status}");
    eprintln!("without its camera: {status}: {}", early.stderr());

    // The camera is back: the same line publishes again (a new stream of key cam1).
    let (_camera, _) = camera_sim(1, port);
    let mut again = gst_launch(&line);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let records = read_until(&topic, 1, Duration::from_secs(5), |_| false);
        if by_stream(&records).len() == 2 && by_stream(&records)[1].1.len() >= 10 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no second stream:\n{}",
            again.stderr()
        );
    }
    testkit::interrupt(again.child.id());
    assert!(
        again.wait(Duration::from_secs(30)).success(),
        "{}",
        again.stderr()
    );

    let records = read_until(&topic, 1, Duration::from_secs(5), |_| false);
    let streams = by_stream(&records);
    assert_eq!(streams.len(), 2, "one stream per run of the line");
    for (id, records) in &streams {
        check_stream(id, records, "cam1");
    }
}
