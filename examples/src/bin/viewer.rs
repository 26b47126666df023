// SPDX-License-Identifier: MIT OR Apache-2.0
//! A web page showing a topic's annotated frames live, with a camera selector and a
//! panel of counts and lag.
//!
//! ```sh
//! viewer --brokers 127.0.0.1:9092 --topic annotated
//! # viewer: http://127.0.0.1:8080/
//! ```
//!
//! It reads `kafkasrc brokers=… topic=… group-id=GROUP ! appsink` and keeps, per camera
//! (the record key), the latest JPEG with its detections (from the `gkv-detections`
//! header, `kafkavision::detections::meta::of_record`) and lag. Pages it serves:
//!
//! - `/`: the viewer; `/?camera=cam2` selects a camera, `/?still=1` refreshes the picture
//!   from `/frame.jpg` (twice a second) instead of streaming MJPEG, for clients (such as
//!   headless browsers measuring page load) that cannot have a never-ending request open;
//! - `/stream?camera=cam1`: MJPEG (`multipart/x-mixed-replace`), one part per new frame;
//! - `/frame.jpg?camera=cam1`: the latest frame;
//! - `/stats`: JSON of every camera: frames seen, frames/s, lag, the latest detections,
//!   the crossings of each line (each event of `--events-topic` counted once, through the
//!   tally `counter` uses too; `duplicate_events_dropped` says how many were read again).
//! - `/metrics` and `/healthz`: the pipeline's element stats as Prometheus text, and its
//!   health (`kafkamonitor`).
//!
//! Every HTTP request gets a thread of its own. The viewer keeps consuming whether or not
//! a page is open; it commits its consumer group's offsets, so a restarted viewer resumes
//! where it stopped. SIGINT/SIGTERM stop the pipeline (final commit) and exit 0.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_kafka_vision_examples::clips;
use gst_kafka_vision_examples::http::{html_escape, query_param, respond, respond_text};
use gst_kafka_vision_examples::{Args, KafkaClient, init, stop_on_signal};
use kafkavision::detections::{self, Detection};
use kafkavision::events::tally::{self, Tally};
use kafkavision::events::{Event, EventKind};
use kafkavision::meta::RecordMeta;
use serde::Serialize;

const USAGE: &str = concat!(
    "\
viewer: a web page showing a topic's annotated frames live

",
    gst_kafka_vision_examples::kafka_options_help!(),
    "
  --topic NAME          topic of annotated JPEG frames (default annotated)
  --group NAME          consumer group (default viewer; '' = no group, no commits)
  --port N              HTTP port (default 8080; 0 = any free port)
  --bind ADDRESS        address to listen on (default 127.0.0.1)
  --lines SPEC          counting lines to draw, name:x1,y1,x2,y2;... in fractions of the
                        frame (the detector-worker's --lines)
  --events-topic NAME   gkv.events topic: live counts of objects crossing each line, each
                        event counted once
  --dedup-window S      remember counted events for S seconds of capture time, so that one
                        read again counts once (default 3600); make it longer than any
                        redelivery: a worker's replacement re-reading its frames, or the
                        worker pool being down
  --clips-dir DIR       the clipper's --dir: the page lists each camera's events with
                        their clips (the newest 200) and plays a clip in the page

Prints 'viewer: http://HOST:PORT/' once it is listening and consuming."
);

/// Camera name of records that have no key.
const NO_KEY: &str = "(no key)";
const BOUNDARY: &str = "gkvframe";
/// An MJPEG stream re-sends the latest frame when nothing new came for this long, so that
/// a client that went away is noticed (the write fails) and its thread ends.
const KEEPALIVE: Duration = Duration::from_secs(5);
/// Frames/s is counted over this window.
const FPS_WINDOW: Duration = Duration::from_secs(2);
/// A camera without a frame for this long leaves the page (and memory): cameras come and
/// go, and a viewer runs for months.
const CAMERA_IDLE: Duration = Duration::from_secs(600);

struct Camera {
    /// Frames seen so far; also the number of the latest one.
    frames: u64,
    jpeg: Arc<Vec<u8>>,
    width: i32,
    height: i32,
    detections: Vec<Detection>,
    /// Arrival minus capture time of the latest frame.
    lag_ms: Option<f64>,
    partition: i32,
    offset: i64,
    seq: Option<u64>,
    arrivals: VecDeque<Instant>,
    last_arrival: Instant,
}

impl Camera {
    fn fps(&self, now: Instant) -> f64 {
        let recent: Vec<&Instant> = self
            .arrivals
            .iter()
            .filter(|t| now.duration_since(**t) <= FPS_WINDOW)
            .collect();
        if recent.len() < 2 {
            return 0.0;
        }
        recent.len() as f64 / FPS_WINDOW.as_secs_f64()
    }
}

struct State {
    cameras: BTreeMap<String, Camera>,
    /// Crossings of each line, from the events topic, each event counted once.
    crossings: Tally,
    frames: u64,
    skipped: u64,
    shutdown: bool,
}

/// `/stats`: every camera's figures and the Kafka source's.
#[derive(Serialize)]
struct StatsJson<'a> {
    topic: &'a str,
    group: &'a str,
    uptime_s: f64,
    frames: u64,
    skipped_not_jpeg: u64,
    /// Events of the events topic not counted because they were read before.
    duplicate_events_dropped: u64,
    kafka: KafkaJson,
    lines: Vec<LineJson<'a>>,
    cameras: BTreeMap<&'a str, CameraJson<'a>>,
}

#[derive(Serialize)]
struct KafkaJson {
    records_received: u64,
    buffers_pushed: u64,
    bad_records: u64,
    rebalances: u64,
    partitions_assigned: u64,
}

/// A counting line, in fractions of the frame.
#[derive(Serialize)]
struct LineJson<'a> {
    name: &'a str,
    x1: f64,
    y1: f64,
    x2: f64,
    y2: f64,
}

#[derive(Serialize)]
struct CameraJson<'a> {
    frames: u64,
    fps: f64,
    lag_ms: Option<f64>,
    age_ms: u64,
    width: i32,
    height: i32,
    partition: i32,
    offset: i64,
    seq: Option<u64>,
    jpeg_bytes: usize,
    /// Capture to arrival here (the detector's output, read by the viewer): p50 and p99
    /// since the viewer started, from its `kafkasrc`'s histogram.
    latency_p50_ms: Option<f64>,
    latency_p99_ms: Option<f64>,
    /// Frames missing, repeated and late in the topic the viewer reads (`gkv-seq`).
    frames_lost: u64,
    frames_duplicated: u64,
    frames_late: u64,
    /// Detections of the latest frame per label.
    counts: BTreeMap<&'a str, u32>,
    /// Crossings per line.
    crossings: BTreeMap<&'a str, CrossingsJson>,
    detections: Vec<DetectionJson<'a>>,
}

/// What the viewer's `kafkasrc` tells of one camera.
#[derive(Clone, Copy, Default)]
struct SourceCamera {
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    lost: u64,
    duplicated: u64,
    late: u64,
}

/// Per camera, from the `cameras` array of `kafkasrc`'s `stats`.
fn source_cameras(stats: &gst::Structure) -> BTreeMap<String, SourceCamera> {
    use kafkavision::latency::{buckets_of, quantile_of};
    let Ok(cameras) = stats.get::<gst::Array>("cameras") else {
        return BTreeMap::new();
    };
    cameras
        .iter()
        .filter_map(|value| value.get::<gst::Structure>().ok())
        .filter_map(|camera| {
            let name = camera.get::<String>("camera").ok()?;
            let buckets = camera
                .get::<gst::Structure>("latency-ms")
                .map(|h| buckets_of(&h))
                .unwrap_or_default();
            let count = |field: &str| camera.get::<u64>(field).unwrap_or(0);
            let figures = SourceCamera {
                p50_ms: quantile_of(&buckets, 0.5),
                p99_ms: quantile_of(&buckets, 0.99),
                lost: count("frames-missing"),
                duplicated: count("frames-duplicated"),
                late: count("frames-out-of-order"),
            };
            Some((name, figures))
        })
        .collect()
}

#[derive(Serialize)]
struct CrossingsJson {
    #[serde(rename = "in")]
    crossed_in: u64,
    out: u64,
}

/// A detection of the latest frame, its box in whole frame pixels.
#[derive(Serialize)]
struct DetectionJson<'a> {
    label: &'a str,
    class_id: u32,
    confidence: f64,
    x: u32,
    y: u32,
    width: u32,
    height: u32,
    track_id: Option<u64>,
}

impl<'a> DetectionJson<'a> {
    fn of(d: &'a Detection) -> Self {
        // Edges rounded to whole pixels, as on the frame's metas; negative (and NaN) ones
        // become 0.
        let (left, top) = (d.bbox.x.round(), d.bbox.y.round());
        DetectionJson {
            label: &d.label,
            class_id: d.class_id,
            confidence: rounded(d.confidence, 3),
            x: left as u32,
            y: top as u32,
            width: ((d.bbox.x + d.bbox.width).round() - left) as u32,
            height: ((d.bbox.y + d.bbox.height).round() - top) as u32,
            track_id: d.track_id,
        }
    }
}

/// `value` with `decimals` digits after the point, for figures shown to people.
fn rounded(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

struct Shared {
    state: Mutex<State>,
    /// Signalled on every new frame and at shutdown.
    new_frame: Condvar,
    topic: String,
    group: String,
    started: Instant,
    source: gst::Element,
    lines: Vec<gstgkvanalytics::crossingcount::geometry::Line>,
    /// `/metrics` and `/healthz` of the viewer's pipeline.
    monitor: Arc<kafkamonitor::Monitor>,
    /// The clipper's folder, when clips are shown.
    clips_dir: Option<std::path::PathBuf>,
}

impl Shared {
    /// A line crossing: counted once (by its id; without one, once per track, line and
    /// direction).
    fn on_event(&self, event: &Event) {
        if event.kind != EventKind::LineCrossed {
            return;
        }
        let camera = event.camera.as_deref().unwrap_or(NO_KEY);
        self.state.lock().unwrap().crossings.count(camera, event);
    }

    fn on_sample(&self, sample: &gst::Sample) {
        let Some(buffer) = sample.buffer() else {
            return;
        };
        let is_jpeg = sample
            .caps()
            .and_then(|c| c.structure(0))
            .is_some_and(|s| s.name() == "image/jpeg");
        if !is_jpeg {
            let mut state = self.state.lock().unwrap();
            if state.skipped == 0 {
                eprintln!(
                    "viewer: skipping frames that are not JPEG ({}); the viewer shows \
                     annotated JPEG frames (... ! yolodetect draw=true ! jpegenc ! kafkasink)",
                    sample.caps().map(|c| c.to_string()).unwrap_or_default()
                );
            }
            state.skipped += 1;
            return;
        }
        let Ok(map) = buffer.map_readable() else {
            return;
        };
        let jpeg = Arc::new(map.as_slice().to_vec());
        drop(map);

        let record = RecordMeta::of(buffer);
        let camera = record
            .as_ref()
            .and_then(|r| r.key.clone())
            .unwrap_or_else(|| NO_KEY.to_string());
        let partition = record.as_ref().map_or(-1, |r| r.partition);
        let offset = record.as_ref().map_or(-1, |r| r.offset);
        let seq = record.as_ref().map(|r| r.seq);

        let now_ns = kafkavision::clock::unix_time_ns() as i128;
        let lag_ms =
            kafkavision::meta::capture_time(buffer).map(|t| (now_ns - t as i128) as f64 / 1e6);

        let detections = match detections::meta::of_record(buffer, sample.caps()) {
            Some(Ok(frame)) => frame.detections,
            Some(Err(why)) => {
                eprintln!(
                    "viewer: warning: frame of {camera} at partition {partition} offset \
                     {offset} shown without detections: {why}"
                );
                Vec::new()
            }
            None => Vec::new(),
        };

        let (width, height) = sample
            .caps()
            .and_then(|c| c.structure(0))
            .map(|s| {
                (
                    s.get::<i32>("width").unwrap_or(0),
                    s.get::<i32>("height").unwrap_or(0),
                )
            })
            .unwrap_or((0, 0));

        let now = Instant::now();
        let mut state = self.state.lock().unwrap();
        state.frames += 1;
        if state.frames.is_multiple_of(1000) {
            state
                .cameras
                .retain(|_, cam| now.duration_since(cam.last_arrival) < CAMERA_IDLE);
        }
        let cam = state.cameras.entry(camera).or_insert_with(|| Camera {
            frames: 0,
            jpeg: Arc::new(Vec::new()),
            width: 0,
            height: 0,
            detections: Vec::new(),
            lag_ms: None,
            partition: -1,
            offset: -1,
            seq: None,
            arrivals: VecDeque::new(),
            last_arrival: now,
        });
        cam.frames += 1;
        cam.jpeg = jpeg;
        cam.width = width;
        cam.height = height;
        cam.detections = detections;
        cam.lag_ms = lag_ms;
        cam.partition = partition;
        cam.offset = offset;
        cam.seq = seq;
        cam.last_arrival = now;
        cam.arrivals.push_back(now);
        while cam
            .arrivals
            .front()
            .is_some_and(|t| now.duration_since(*t) > FPS_WINDOW)
        {
            cam.arrivals.pop_front();
        }
        drop(state);
        self.new_frame.notify_all();
    }

    fn stats_json(&self) -> Vec<u8> {
        let kafka = self.source.property::<gst::Structure>("stats");
        let kafka_field = |name: &str| kafka.get::<u64>(name).unwrap_or(0);
        let per_camera = source_cameras(&kafka);
        let now = Instant::now();
        let state = self.state.lock().unwrap();
        let cameras = state
            .cameras
            .iter()
            .map(|(name, cam)| {
                let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
                for d in &cam.detections {
                    *counts.entry(d.label.as_str()).or_default() += 1;
                }
                let crossings = state
                    .crossings
                    .places()
                    .filter(|(camera, _, _)| camera == name)
                    .map(|(_, line, n)| {
                        let counts = CrossingsJson {
                            crossed_in: n.crossed_in,
                            out: n.crossed_out,
                        };
                        (line, counts)
                    })
                    .collect();
                let source = per_camera.get(name.as_str()).copied().unwrap_or_default();
                let camera = CameraJson {
                    frames: cam.frames,
                    fps: rounded(cam.fps(now), 1),
                    lag_ms: cam.lag_ms.map(|l| rounded(l, 1)),
                    age_ms: now.duration_since(cam.last_arrival).as_millis() as u64,
                    width: cam.width,
                    height: cam.height,
                    partition: cam.partition,
                    offset: cam.offset,
                    seq: cam.seq,
                    jpeg_bytes: cam.jpeg.len(),
                    latency_p50_ms: source.p50_ms.map(|v| rounded(v, 1)),
                    latency_p99_ms: source.p99_ms.map(|v| rounded(v, 1)),
                    frames_lost: source.lost,
                    frames_duplicated: source.duplicated,
                    frames_late: source.late,
                    counts,
                    crossings,
                    detections: cam.detections.iter().map(DetectionJson::of).collect(),
                };
                (name.as_str(), camera)
            })
            .collect();
        let stats = StatsJson {
            topic: &self.topic,
            group: &self.group,
            uptime_s: rounded(self.started.elapsed().as_secs_f64(), 1),
            frames: state.frames,
            skipped_not_jpeg: state.skipped,
            duplicate_events_dropped: state.crossings.duplicates(),
            kafka: KafkaJson {
                records_received: kafka_field("records-received"),
                buffers_pushed: kafka_field("buffers-pushed"),
                bad_records: kafka_field("bad-records"),
                rebalances: kafka_field("rebalances"),
                partitions_assigned: kafka_field("partitions-assigned"),
            },
            lines: self
                .lines
                .iter()
                .map(|l| LineJson {
                    name: &l.name,
                    x1: l.a.x,
                    y1: l.a.y,
                    x2: l.b.x,
                    y2: l.b.y,
                })
                .collect(),
            cameras,
        };
        serde_json::to_vec(&stats).expect("plain data always serialises")
    }

    /// The latest frame of `camera`, or of the first camera when none is named.
    fn latest(&self, camera: Option<&str>) -> Option<Arc<Vec<u8>>> {
        let state = self.state.lock().unwrap();
        let cam = match camera {
            Some(name) => state.cameras.get(name),
            None => state.cameras.values().next(),
        }?;
        Some(cam.jpeg.clone())
    }

    fn shut_down(&self) {
        self.state.lock().unwrap().shutdown = true;
        self.new_frame.notify_all();
    }
}

/// The body of an MJPEG response: blocks until the camera has a frame newer than the
/// last one sent, then yields it as one multipart part. Ends (EOF) when the viewer stops.
struct MjpegParts {
    shared: Arc<Shared>,
    camera: String,
    sent: u64,
    part: Vec<u8>,
    pos: usize,
}

impl MjpegParts {
    fn next_part(&mut self) -> Option<Vec<u8>> {
        let mut state = self.shared.state.lock().unwrap();
        let mut waited = Duration::ZERO;
        loop {
            if state.shutdown {
                return None;
            }
            if let Some(cam) = state.cameras.get(&self.camera)
                && (cam.frames != self.sent || (waited >= KEEPALIVE && self.sent > 0))
            {
                self.sent = cam.frames;
                let jpeg = cam.jpeg.clone();
                drop(state);
                // The boundary follows the image at once, so that browsers show each
                // frame when it arrives rather than when the next one begins.
                let mut part = format!(
                    "Content-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                    jpeg.len()
                )
                .into_bytes();
                part.extend_from_slice(&jpeg);
                part.extend_from_slice(format!("\r\n--{BOUNDARY}\r\n").as_bytes());
                return Some(part);
            }
            let step = Duration::from_secs(1);
            state = self.shared.new_frame.wait_timeout(state, step).unwrap().0;
            waited += step;
        }
    }
}

impl Read for MjpegParts {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.part.len() {
            match self.next_part() {
                Some(part) => {
                    self.part = part;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.part.len() - self.pos);
        out[..n].copy_from_slice(&self.part[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn handle(shared: Arc<Shared>, request: tiny_http::Request) {
    let url = request.url().to_string();
    let path = url.split('?').next().unwrap_or("/");
    let camera = query_param(&url, "camera").filter(|c| !c.is_empty());
    match path {
        "/" | "/index.html" => {
            let page = page(&shared);
            respond(request, 200, "text/html; charset=utf-8", page.into_bytes());
        }
        "/stats" => {
            respond(request, 200, "application/json", shared.stats_json());
        }
        "/metrics" => {
            let text = shared.monitor.metrics();
            respond(
                request,
                200,
                kafkamonitor::METRICS_CONTENT_TYPE,
                text.into_bytes(),
            );
        }
        "/healthz" => match shared.monitor.health() {
            Ok(()) => respond(request, 200, "text/plain", b"ok\n".to_vec()),
            Err(reasons) => respond(
                request,
                503,
                "text/plain",
                (reasons.join("\n") + "\n").into_bytes(),
            ),
        },
        "/clips" => match clips_json(&shared) {
            Ok(json) => respond(request, 200, "application/json", json),
            Err(why) => respond_text(request, 500, &format!("{why}\n")),
        },
        _ if path.starts_with("/clips/") => serve_clip(&shared, request, &path["/clips/".len()..]),
        "/frame.jpg" => match shared.latest(camera.as_deref()) {
            Some(jpeg) => respond(request, 200, "image/jpeg", jpeg.to_vec()),
            None => respond_text(request, 404, "no frame of that camera yet\n"),
        },
        "/stream" => {
            let camera = match camera {
                Some(c) => c,
                None => match shared.state.lock().unwrap().cameras.keys().next() {
                    Some(c) => c.clone(),
                    None => {
                        respond_text(request, 404, "no camera yet; name one with ?camera=\n");
                        return;
                    }
                },
            };
            stream(shared, request, camera);
        }
        _ => respond_text(request, 404, "not found\n"),
    }
}

/// At most this many clips are listed, the newest first.
const CLIPS_LISTED: usize = 200;

/// `{"clips": [...]}`: the newest index entries of `--clips-dir` (none without it).
fn clips_json(shared: &Shared) -> Result<Vec<u8>, String> {
    let mut entries = match &shared.clips_dir {
        Some(dir) => clips::read_index(dir).map_err(|e| format!("reading the clips index: {e}"))?,
        None => Vec::new(),
    };
    entries.reverse();
    entries.truncate(CLIPS_LISTED);
    #[derive(Serialize)]
    struct Clips {
        clips: Vec<clips::IndexEntry>,
    }
    serde_json::to_vec(&Clips { clips: entries }).map_err(|e| e.to_string())
}

/// `/clips/EVENT_ID.mp4`: a clip of `--clips-dir`. Only names the clipper gives (16 hex
/// digits) are served, so a URL cannot reach outside the folder.
fn serve_clip(shared: &Shared, request: tiny_http::Request, name: &str) {
    let file = name
        .strip_suffix(".mp4")
        .and_then(clips::file_name)
        .filter(|file| file == name);
    let (Some(dir), Some(file)) = (&shared.clips_dir, file) else {
        respond_text(request, 404, "no such clip\n");
        return;
    };
    match std::fs::read(dir.join(file)) {
        Ok(bytes) => respond(request, 200, "video/mp4", bytes),
        Err(_) => respond_text(request, 404, "no such clip\n"),
    }
}

/// Streams MJPEG until the client goes away or the viewer stops. The response is written
/// by hand on the raw connection, flushed after every part: tiny_http's own response
/// writer buffers a body of unknown length, which would hold frames back.
fn stream(shared: Arc<Shared>, request: tiny_http::Request, camera: String) {
    let mut parts = MjpegParts {
        shared,
        camera,
        sent: 0,
        part: Vec::new(),
        pos: 0,
    };
    let mut writer = request.into_writer();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary={BOUNDARY}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n--{BOUNDARY}\r\n"
    );
    let result = (|| -> io::Result<()> {
        writer.write_all(head.as_bytes())?;
        writer.flush()?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = parts.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            writer.write_all(&buf[..n])?;
            writer.flush()?;
        }
    })();
    // An error here is the client going away: the thread just ends.
    let _ = result;
}

fn page(shared: &Shared) -> String {
    PAGE.replace("{{TOPIC}}", &html_escape(&shared.topic))
        .replace(
            "{{GROUP}}",
            &html_escape(if shared.group.is_empty() {
                "(none)"
            } else {
                &shared.group
            }),
        )
}

/// The page; `{{TOPIC}}` and `{{GROUP}}` are filled in, HTML-escaped.
const PAGE: &str = include_str!("../viewer.html");

/// A consumer of every partition of the events topic from its start (no group, no
/// commits): the counts are of every event the topic holds.
fn events_reader(
    client: &KafkaClient,
    topic: &str,
) -> Result<rdkafka::consumer::BaseConsumer, String> {
    use rdkafka::consumer::Consumer;
    let brokers = &client.brokers;
    let consumer: rdkafka::consumer::BaseConsumer = client
        .rdkafka_config(&[
            ("group.id", "viewer-events"),
            ("enable.auto.commit", "false"),
        ])
        .create()
        .map_err(|e| e.to_string())?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let partitions = metadata
        .topics()
        .first()
        .filter(|t| t.error().is_none())
        .map_or(0, |t| t.partitions().len());
    if partitions == 0 {
        return Err(format!("topic '{topic}' does not exist on '{brokers}'"));
    }
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    Ok(consumer)
}

fn fail(message: &str) -> ! {
    eprintln!("viewer: {message}");
    std::process::exit(1);
}

fn error_text(msg: &gst::Message) -> Option<String> {
    match msg.view() {
        gst::MessageView::Error(err) => Some(format!(
            "error from {}: {}{}",
            err.src()
                .map(|s| s.path_string().to_string())
                .unwrap_or_else(|| "pipeline".into()),
            err.error(),
            err.debug().map(|d| format!(" ({d})")).unwrap_or_default()
        )),
        _ => None,
    }
}

fn main() {
    let args = Args::parse(USAGE);
    let client = KafkaClient::from_args(&args).unwrap_or_else(|e| fail(&e));
    let topic = args.get("topic", "annotated");
    let group = args.get("group", "viewer");
    let port: u16 = args.number("port", 8080);
    let bind = args.get("bind", "127.0.0.1");
    let lines =
        gstgkvanalytics::crossingcount::geometry::parse_properties(&args.get("lines", ""), "")
            .unwrap_or_else(|e| fail(&format!("--{e}")))
            .lines;
    let events_topic = args.get("events-topic", "");
    let dedup_window = args.number("dedup-window", tally::DEFAULT_WINDOW.as_secs());
    if dedup_window == 0 {
        fail(
            "--dedup-window 0: counted events must be remembered for at least 1 second to be \
             counted once",
        );
    }
    init().unwrap_or_else(|e| fail(&format!("initialising GStreamer: {e}")));

    let stop = stop_on_signal().unwrap_or_else(|e| fail(&e));

    let server = tiny_http::Server::http((bind.as_str(), port))
        .unwrap_or_else(|e| fail(&format!("cannot listen on {bind}:{port}: {e}")));
    let address = server
        .server_addr()
        .to_ip()
        .map(|a| a.to_string())
        .unwrap_or_else(|| format!("{bind}:{port}"));

    let mut source = gst::ElementFactory::make("kafkasrc").property("topic", topic.as_str());
    if !group.is_empty() {
        source = source.property("group-id", group.as_str());
    }
    let source = source
        .build()
        .unwrap_or_else(|e| fail(&format!("creating kafkasrc: {e}")));
    client.configure(&source);
    // The frames go to `Shared`, made once the pipeline exists (its monitor watches it).
    let receiver = Arc::new(std::sync::OnceLock::<Arc<Shared>>::new());
    let pipeline = {
        let receiver = receiver.clone();
        gst_kafka_vision_examples::into_sample_callback(&source, move |sample| {
            if let Some(shared) = receiver.get() {
                shared.on_sample(&sample);
            }
        })
        .unwrap_or_else(|e| fail(&e))
    };

    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            cameras: BTreeMap::new(),
            crossings: Tally::with_window(Duration::from_secs(dedup_window)),
            frames: 0,
            skipped: 0,
            shutdown: false,
        }),
        new_frame: Condvar::new(),
        topic: topic.clone(),
        group: group.clone(),
        started: Instant::now(),
        source: source.clone(),
        lines,
        monitor: kafkamonitor::Monitor::new(&pipeline, Default::default()),
        clips_dir: Some(args.get("clips-dir", ""))
            .filter(|dir| !dir.is_empty())
            .map(std::path::PathBuf::from),
    });
    if !events_topic.is_empty() {
        let shared = shared.clone();
        let stop = stop.clone();
        let reader = events_reader(&client, &events_topic)
            .unwrap_or_else(|e| fail(&format!("reading --events-topic {events_topic}: {e}")));
        std::thread::Builder::new()
            .name("events".into())
            .spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    use rdkafka::Message;
                    if let Some(Ok(message)) = reader.poll(Duration::from_millis(200))
                        && let Ok(event) = Event::from_json(message.payload().unwrap_or_default())
                    {
                        shared.on_event(&event);
                    }
                }
            })
            .unwrap_or_else(|e| fail(&format!("starting the events reader: {e}")));
    }
    let _ = receiver.set(shared.clone());

    let bus = pipeline.bus().unwrap();
    if pipeline.set_state(gst::State::Playing).is_err() {
        let message = bus
            .timed_pop_filtered(gst::ClockTime::from_seconds(2), &[gst::MessageType::Error])
            .and_then(|m| error_text(&m))
            .unwrap_or_else(|| {
                format!(
                    "could not start reading topic '{topic}' from '{}'",
                    client.brokers
                )
            });
        let _ = pipeline.set_state(gst::State::Null);
        fail(&message);
    }

    {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                for request in server.incoming_requests() {
                    let shared = shared.clone();
                    let spawned = std::thread::Builder::new()
                        .name("http-client".into())
                        .spawn(move || handle(shared, request));
                    if let Err(e) = spawned {
                        eprintln!("viewer: cannot start a thread for a request: {e}");
                    }
                }
            })
            .unwrap_or_else(|e| fail(&format!("starting the HTTP thread: {e}")));
    }

    println!("viewer: http://{address}/");
    let _ = io::stdout().flush();

    let mut status = 0;
    while !stop.load(Ordering::SeqCst) {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Error(_) => {
                let error = error_text(&msg).unwrap_or_default();
                shared.monitor.failed(&error);
                eprintln!("viewer: {error}");
                status = 1;
                break;
            }
            gst::MessageView::Warning(w) => eprintln!(
                "viewer: warning: {}{}",
                w.error(),
                w.debug().map(|d| format!(" ({d})")).unwrap_or_default()
            ),
            gst::MessageView::Eos(_) => {
                eprintln!("viewer: end of stream; still serving the last frames");
            }
            _ => {}
        }
    }
    if status == 0 {
        eprintln!("viewer: stopping (committing offsets)");
    }
    shared.shut_down();
    // kafkasrc commits the group's offsets when it stops.
    let _ = pipeline.set_state(gst::State::Null);
    std::process::exit(status);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_states_the_tallys_default_window() {
        let default = format!("(default {})", tally::DEFAULT_WINDOW.as_secs());
        let help = USAGE.split("--dedup-window").nth(1).unwrap_or_default();
        assert!(
            help.split("\n  --")
                .next()
                .unwrap_or_default()
                .contains(&default),
            "{help}"
        );
    }
}
