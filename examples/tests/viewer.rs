// SPDX-License-Identifier: MIT OR Apache-2.0
//! The web viewer in headless Chromium (Debian's `chromium`): the page loads, frames
//! arrive, and a screenshot shows the detector's boxes, the counting line and track ids;
//! `/stats` holds the line and its counts from the events topic, each event counted once.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use testkit::{brokers, command, create_topic, headless_chromium, unique_name as unique};

use gst::prelude::*;
use kafkavision::events::{Direction, Event, EventKind, event_id};

struct Viewer(Child);

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(address: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

/// Pixels of a PNG, as RGB, decoded with GStreamer.
fn png_pixels(path: &Path) -> Vec<u8> {
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! pngdec ! videoconvert ! video/x-raw,format=RGB ! appsink name=out",
        path.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let sample = sink.pull_sample().expect("a decoded screenshot");
    pipeline.set_state(gst::State::Null).unwrap();
    sample.buffer().unwrap().map_readable().unwrap().to_vec()
}

#[test]
fn the_viewer_page_shows_live_frames_with_boxes_in_chromium() {
    gst_kafka_vision_examples::init().unwrap();
    let topic = unique("viewer-annotated");
    create_topic(&topic, 1);
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/blob-yolov8.onnx");
    for camera in ["cam1", "cam2"] {
        let pipeline = gst::parse::launch(&format!(
            "videotestsrc pattern=ball num-buffers=30 ! video/x-raw,width=320,height=240,framerate=10/1 ! \
             yolodetect model-location={} draw=true ! objecttrack ! detectionsconvert output=header ! \
             jpegenc ! kafkasink brokers={} topic={topic} key={camera}",
            model.display(),
            brokers()
        ))
        .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let bus = pipeline.bus().unwrap();
        let msg = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(60),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
            .unwrap();
        assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
        pipeline.set_state(gst::State::Null).unwrap();
    }

    // Events of cam1 without ids (an older writer's): track 1 crossed in (read twice, as
    // after a worker's restart: counted once), track 2 out. With ids: track 3 crossed in
    // twice (two events), each published twice (a replacement worker's copies).
    let events_topic = unique("viewer-events");
    create_topic(&events_topic, 1);
    let producer: rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .create()
            .unwrap();
    let crossings = [
        (1, Direction::In, None),
        (1, Direction::In, None),
        (2, Direction::Out, None),
        (3, Direction::In, Some(10)),
        (3, Direction::In, Some(10)),
        (3, Direction::In, Some(50)),
        (3, Direction::In, Some(50)),
    ];
    for (track, direction, seq) in crossings {
        let mut event = Event::new(EventKind::LineCrossed, track, "sports ball");
        event.camera = Some("cam1".into());
        event.line = Some("gate".into());
        event.direction = Some(direction);
        event.event_id = seq.map(|seq| {
            let kind = EventKind::LineCrossed;
            event_id(
                "cam1",
                "cam1-run",
                seq,
                kind,
                "gate",
                Some(direction),
                track,
            )
        });
        let json = event.to_json();
        producer
            .send(rdkafka::producer::BaseRecord::<(), [u8]>::to(&events_topic).payload(&json))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).unwrap();

    let mut child = command(env!("CARGO_BIN_EXE_viewer"))
        .args([
            "--brokers",
            &brokers(),
            "--topic",
            &topic,
            "--group",
            &unique("viewer"),
            "--port",
            "0",
            "--lines",
            "gate:0.5,0,0.5,1",
            "--events-topic",
            &events_topic,
            "--dedup-window",
            "600",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _viewer = Viewer(child);
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines.next().expect("viewer exited").unwrap();
        if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            break url.trim_end_matches('/').to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let address = url.trim_start_matches("http://").to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(http_get(&address, "/stats").contains("cam1")
        && http_get(&address, "/stats").contains("cam2"))
    {
        assert!(
            Instant::now() < deadline,
            "the viewer never saw both cameras"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    let stats = http_get(&address, "/stats");
    assert!(
        stats.contains("\"lines\":[{\"name\":\"gate\",\"x1\":0.5"),
        "{stats}"
    );
    // Prometheus metrics and health on the same server.
    let (status, metrics) = testkit::http_get(&address, "/metrics");
    assert!(
        status == 200
            && metrics.contains("gkv_kafkasrc_buffers_pushed_total{element=\"")
            && metrics.contains("gkv_pipeline_healthy 1"),
        "{metrics}"
    );
    assert_eq!(
        testkit::http_get(&address, "/healthz"),
        (200, "ok\n".into())
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !http_get(&address, "/stats").contains("\"crossings\":{\"gate\":{\"in\":3,\"out\":1}}") {
        assert!(
            Instant::now() < deadline,
            "crossings never counted: {}",
            http_get(&address, "/stats")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let stats = http_get(&address, "/stats");
    assert!(stats.contains("\"duplicate_events_dropped\":3"), "{stats}");
    // Per camera, what its kafkasrc tells: latency from capture, nothing lost.
    assert!(stats.contains("\"latency_p99_ms\":"), "{stats}");
    assert!(!stats.contains("\"latency_p99_ms\":null"), "{stats}");
    assert!(
        stats.contains("\"frames_lost\":0,\"frames_duplicated\":0,\"frames_late\":0"),
        "{stats}"
    );
    // Whatever numbers the tracker gives.
    let tracked = stats
        .split("\"track_id\":")
        .skip(1)
        .any(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
    assert!(tracked, "detections carry track ids: {stats}");

    let profile = std::env::temp_dir().join(unique("chromium-profile"));
    // The page loads, lists the cameras and counts frames.
    let dom = headless_chromium(
        &[
            "--virtual-time-budget=5000",
            "--dump-dom",
            &format!("{url}/?still=1"),
        ],
        &profile,
    );
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    assert!(
        dom.contains("value=\"cam1\"") && dom.contains("value=\"cam2\""),
        "camera selector: {dom}"
    );
    let frames: u64 = dom
        .split("id=\"frames\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(frames > 0, "frame counter in the page: {dom}");
    // The camera table: latency p50 / p99 from capture, and lost / repeated / late frames.
    assert!(
        dom.contains("<td>0 / 0 / 0</td>") && dom.contains("capture to here p50 / p99 ms"),
        "per-camera latency and loss in the page: {dom}"
    );

    // A screenshot shows the boxes yolodetect drew (class 32's colour, 255/56/56).
    let shot = profile.join("shot.png");
    let output = headless_chromium(
        &[
            "--virtual-time-budget=5000",
            "--window-size=800,900",
            &format!("--screenshot={}", shot.display()),
            &format!("{url}/?still=1&camera=cam1"),
        ],
        &profile,
    );
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pixels = png_pixels(&shot);
    let box_pixels = pixels
        .chunks_exact(3)
        .filter(|p| p[0] > 200 && (30..=100).contains(&p[1]) && (30..=100).contains(&p[2]))
        .count();
    assert!(
        box_pixels > 200,
        "only {box_pixels} box-coloured pixels in the screenshot"
    );
    // The counting line (cyan) and the track ids (yellow) drawn over the frame.
    let count = |f: &dyn Fn(&[u8]) -> bool| pixels.chunks_exact(3).filter(|p| f(p)).count();
    let line_pixels = count(&|p| p[0] < 80 && p[1] > 180 && p[2] > 200);
    assert!(line_pixels > 100, "only {line_pixels} line-coloured pixels");
    let id_pixels = count(&|p| p[0] > 200 && p[1] > 170 && p[2] < 80);
    assert!(id_pixels > 10, "only {id_pixels} track-id-coloured pixels");
    std::fs::remove_dir_all(&profile).ok();
}
