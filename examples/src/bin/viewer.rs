// SPDX-License-Identifier: MIT OR Apache-2.0
//! A web page showing a topic's annotated frames live, with a camera selector and a
//! panel of counts and lag.
//!
//! ```sh
//! viewer --brokers 127.0.0.1:9092 --topic annotated
//! # viewer: http://127.0.0.1:8080/
//! ```
//!
//! It reads `kafkasrc brokers=… topic=… group-id=GROUP ! detectionsconvert output=metas !
//! appsink` and keeps, per camera
//! (the record key), the latest JPEG with its detections and lag. Pages it serves:
//!
//! - `/`: the viewer; `/?camera=cam2` selects a camera, `/?still=1` refreshes the picture
//!   from `/frame.jpg` (twice a second) instead of streaming MJPEG, for clients (such as
//!   headless browsers measuring page load) that cannot have a never-ending request open;
//! - `/stream?camera=cam1`: MJPEG (`multipart/x-mixed-replace`), one part per new frame;
//! - `/frame.jpg?camera=cam1`: the latest frame;
//! - `/stats`: JSON of every camera: frames seen, frames/s, lag, the latest detections.
//! - `/metrics` and `/healthz`: the pipeline's element stats as Prometheus text, and its
//!   health (`kafkamonitor`).
//!
//! Every HTTP request gets a thread of its own. The viewer keeps consuming whether or not
//! a page is open; it commits its consumer group's offsets, so a restarted viewer resumes
//! where it stopped. SIGINT/SIGTERM stop the pipeline (final commit) and exit 0.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_kafka_vision_examples::{Args, KafkaClient, init};

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
  --events-topic NAME   gkv.events topic: live counts of unique objects crossing each line

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

struct Detection {
    label: String,
    class_id: u32,
    confidence: f64,
    rect: (u32, u32, u32, u32),
    track_id: Option<u64>,
}

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

#[derive(Default)]
struct State {
    cameras: BTreeMap<String, Camera>,
    /// (camera, line) -> unique objects crossing it [in, out].
    crossings: BTreeMap<(String, String), [u64; 2]>,
    /// (camera, line, direction, track id) already counted.
    counted: std::collections::HashSet<(String, String, bool, u64)>,
    frames: u64,
    skipped: u64,
    shutdown: bool,
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
}

impl Shared {
    /// A line crossing: counted once per object, line and direction.
    fn on_event(&self, event: &kafkavision::events::Event) {
        use kafkavision::events::{Direction, EventKind};
        if event.kind != EventKind::LineCrossed {
            return;
        }
        let camera = event.camera.clone().unwrap_or_else(|| NO_KEY.to_string());
        let line = event.place().to_string();
        let inward = event.direction == Some(Direction::In);
        let mut state = self.state.lock().unwrap();
        if state
            .counted
            .insert((camera.clone(), line.clone(), inward, event.track_id))
        {
            state.crossings.entry((camera, line)).or_default()[usize::from(!inward)] += 1;
        }
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

        let record = gstkafka::RecordMeta::of(buffer);
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

        let detections = kafkavision::detections::meta::of_buffer(buffer, 0, 0)
            .into_iter()
            .map(|d| Detection {
                rect: (
                    d.bbox.x as u32,
                    d.bbox.y as u32,
                    d.bbox.width as u32,
                    d.bbox.height as u32,
                ),
                label: d.label,
                class_id: d.class_id,
                confidence: d.confidence,
                track_id: d.track_id,
            })
            .collect();

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

    fn stats_json(&self) -> String {
        let kafka = self.source.property::<gst::Structure>("stats");
        let kafka_field = |name: &str| kafka.get::<u64>(name).unwrap_or(0);
        let now = Instant::now();
        let state = self.state.lock().unwrap();
        let mut out = String::new();
        out.push_str(&format!(
            "{{\"topic\":{},\"group\":{},\"uptime_s\":{:.1},\"frames\":{},\"skipped_not_jpeg\":{},",
            json_string(&self.topic),
            json_string(&self.group),
            self.started.elapsed().as_secs_f64(),
            state.frames,
            state.skipped
        ));
        out.push_str(&format!(
            "\"kafka\":{{\"records_received\":{},\"buffers_pushed\":{},\"bad_records\":{},\"rebalances\":{},\"partitions_assigned\":{}}},",
            kafka_field("records-received"),
            kafka_field("buffers-pushed"),
            kafka_field("bad-records"),
            kafka_field("rebalances"),
            kafka_field("partitions-assigned"),
        ));
        let lines = self
            .lines
            .iter()
            .map(|l| {
                format!(
                    "{{\"name\":{},\"x1\":{},\"y1\":{},\"x2\":{},\"y2\":{}}}",
                    json_string(&l.name),
                    l.a.x,
                    l.a.y,
                    l.b.x,
                    l.b.y
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        out.push_str(&format!("\"lines\":[{lines}],"));
        out.push_str("\"cameras\":{");
        for (i, (name, cam)) in state.cameras.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
            for d in &cam.detections {
                *counts.entry(d.label.as_str()).or_default() += 1;
            }
            let counts = counts
                .iter()
                .map(|(label, n)| format!("{}:{n}", json_string(label)))
                .collect::<Vec<_>>()
                .join(",");
            let detections = cam
                .detections
                .iter()
                .map(|d| {
                    format!(
                        "{{\"label\":{},\"class_id\":{},\"confidence\":{:.3},\"x\":{},\"y\":{},\"width\":{},\"height\":{},\"track_id\":{}}}",
                        json_string(&d.label),
                        d.class_id,
                        d.confidence,
                        d.rect.0,
                        d.rect.1,
                        d.rect.2,
                        d.rect.3,
                        d.track_id
                            .map(|t| t.to_string())
                            .unwrap_or_else(|| "null".into())
                    )
                })
                .collect::<Vec<_>>()
                .join(",");
            let crossings = state
                .crossings
                .iter()
                .filter(|((camera, _), _)| camera == name)
                .map(|((_, line), [i, o])| {
                    format!("{}:{{\"in\":{i},\"out\":{o}}}", json_string(line))
                })
                .collect::<Vec<_>>()
                .join(",");
            out.push_str(&format!(
                "{}:{{\"frames\":{},\"fps\":{:.1},\"lag_ms\":{},\"age_ms\":{},\"width\":{},\"height\":{},\"partition\":{},\"offset\":{},\"seq\":{},\"jpeg_bytes\":{},\"counts\":{{{counts}}},\"crossings\":{{{crossings}}},\"detections\":[{detections}]}}",
                json_string(name),
                cam.frames,
                cam.fps(now),
                cam.lag_ms
                    .map(|l| format!("{l:.1}"))
                    .unwrap_or_else(|| "null".into()),
                now.duration_since(cam.last_arrival).as_millis(),
                cam.width,
                cam.height,
                cam.partition,
                cam.offset,
                cam.seq
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "null".into()),
                cam.jpeg.len(),
            ));
        }
        out.push_str("}}");
        out
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

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '<' || c == '>' || c == '&' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The value of `name` in the URL's query string, percent-decoded.
fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |i: usize| {
            bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        };
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if hex(i).is_some() => {
                out.push(hex(i).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap()
}

fn respond(request: tiny_http::Request, status: u16, content_type: &str, body: Vec<u8>) {
    let response = tiny_http::Response::from_data(body)
        .with_status_code(status)
        .with_header(header("Content-Type", content_type))
        .with_header(header("Cache-Control", "no-store"));
    // A client that went away is no concern of ours.
    let _ = request.respond(response);
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
            let json = shared.stats_json();
            respond(request, 200, "application/json", json.into_bytes());
        }
        "/metrics" => {
            let text = shared.monitor.metrics();
            let kind = "text/plain; version=0.0.4; charset=utf-8";
            respond(request, 200, kind, text.into_bytes());
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
        "/frame.jpg" => match shared.latest(camera.as_deref()) {
            Some(jpeg) => respond(request, 200, "image/jpeg", jpeg.to_vec()),
            None => respond(
                request,
                404,
                "text/plain; charset=utf-8",
                b"no frame of that camera yet\n".to_vec(),
            ),
        },
        "/stream" => {
            let camera = match camera {
                Some(c) => c,
                None => match shared.state.lock().unwrap().cameras.keys().next() {
                    Some(c) => c.clone(),
                    None => {
                        respond(
                            request,
                            404,
                            "text/plain; charset=utf-8",
                            b"no camera yet; name one with ?camera=\n".to_vec(),
                        );
                        return;
                    }
                },
            };
            stream(shared, request, camera);
        }
        _ => respond(
            request,
            404,
            "text/plain; charset=utf-8",
            b"not found\n".to_vec(),
        ),
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

const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gst-kafka-vision viewer: {{TOPIC}}</title>
<style>
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: #111; color: #ddd; }
  header { display: flex; flex-wrap: wrap; gap: 16px; align-items: center; padding: 8px 12px; background: #1c1c1c; }
  header h1 { font-size: 16px; margin: 0; font-weight: 600; }
  code { color: #9cf; }
  select { font: inherit; padding: 2px 4px; }
  #frames { font-variant-numeric: tabular-nums; font-weight: 600; color: #fff; }
  main { display: flex; flex-wrap: wrap; gap: 12px; padding: 12px; align-items: flex-start; }
  #view { flex: 1 1 420px; max-width: 960px; }
  #video { display: block; width: 100%; height: auto; background: #000; min-height: 120px; }
  #frame { position: relative; }
  #overlay { position: absolute; left: 0; top: 0; width: 100%; height: 100%; pointer-events: none; }
  aside { flex: 0 1 300px; }
  table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
  th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid #333; vertical-align: top; }
  th { color: #999; font-weight: 500; }
  tr.selected td { background: #222a33; }
  #status { color: #e88; }
  footer { padding: 8px 12px; color: #888; font-size: 12px; }
</style>
</head>
<body>
<header>
  <h1>gst-kafka-vision viewer &middot; topic <code>{{TOPIC}}</code></h1>
  <label>camera <select id="camera"><option value="">waiting for frames&hellip;</option></select></label>
  <span>frames <span id="frames">0</span></span>
  <span id="status"></span>
</header>
<main>
  <div id="view"><div id="frame"><img id="video" alt="latest frame of the selected camera"><canvas id="overlay"></canvas></div></div>
  <aside>
    <table>
      <thead><tr><th>camera</th><th>frames</th><th>fps</th><th>lag ms</th><th>detections (latest frame)</th><th>crossed (in / out)</th></tr></thead>
      <tbody id="panel"><tr><td colspan="6">no frames yet</td></tr></tbody>
    </table>
  </aside>
</main>
<footer>
  Consumer group <code>{{GROUP}}</code>. The viewer keeps consuming while no page is open:
  reloading this page continues from where the viewer is, not from the start. It commits the
  group's offsets, so a restarted viewer resumes where it stopped rather than replaying the video.
  <a href="/stats">stats</a> &middot; <a href="?still=1">stills</a> &middot; <a href="?">live MJPEG</a>
</footer>
<script>
"use strict";
const params = new URLSearchParams(location.search);
const still = params.get("still") === "1";
const select = document.getElementById("camera");
const img = document.getElementById("video");
const framesEl = document.getElementById("frames");
const panel = document.getElementById("panel");
const statusEl = document.getElementById("status");
let camera = params.get("camera") || "";
let shownFrame = -1;

function show(name) {
  camera = name;
  shownFrame = -1;
  params.set("camera", name);
  history.replaceState(null, "", "?" + params.toString());
  if (!still) img.src = "/stream?camera=" + encodeURIComponent(name);
}
select.addEventListener("change", () => show(select.value));
// A broken stream (viewer restarted) is retried.
img.addEventListener("error", () => {
  if (!still && camera) setTimeout(() => { img.src = "/stream?camera=" + encodeURIComponent(camera) + "&t=" + Date.now(); }, 1000);
});

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
}

function update(stats) {
  const names = Object.keys(stats.cameras);
  const current = Array.from(select.options).map(o => o.value);
  if (names.length && names.join("\n") !== current.join("\n")) {
    select.replaceChildren(...names.map(n => { const o = document.createElement("option"); o.value = n; o.textContent = n; return o; }));
  }
  if (names.length && !names.includes(camera)) show(names[0]);
  else if (names.length && !still && !img.getAttribute("src")) show(camera);
  if (names.length) select.value = camera;

  const cam = stats.cameras[camera];
  framesEl.textContent = cam ? String(cam.frames) : "0";
  if (still && cam && cam.frames !== shownFrame) {
    shownFrame = cam.frames;
    img.src = "/frame.jpg?camera=" + encodeURIComponent(camera) + "&n=" + cam.frames;
  }

  const rows = names.map(n => {
    const c = stats.cameras[n];
    const row = document.createElement("tr");
    if (n === camera) row.className = "selected";
    cell(row, n);
    cell(row, c.frames);
    cell(row, c.fps.toFixed(1));
    cell(row, c.lag_ms === null ? "-" : Math.round(c.lag_ms));
    const counts = Object.entries(c.counts).map(([label, k]) => k + " " + label);
    cell(row, counts.length ? counts.join(", ") : "none");
    const crossed = Object.entries(c.crossings).map(([line, k]) => line + " " + k.in + " / " + k.out);
    cell(row, crossed.length ? crossed.join(", ") : "-");
    return row;
  });
  if (rows.length) panel.replaceChildren(...rows);
  draw(stats.lines, cam);
  statusEl.textContent = "";
}

// The counting lines, each with its counts, and the track id of every detection, over
// the frame (lines are in fractions of the frame, boxes in its pixels).
const overlay = document.getElementById("overlay");
function draw(lines, cam) {
  const w = overlay.clientWidth, h = overlay.clientHeight;
  overlay.width = w;
  overlay.height = h;
  const g = overlay.getContext("2d");
  g.clearRect(0, 0, w, h);
  g.font = "bold 14px system-ui, sans-serif";
  g.lineWidth = 3;
  for (const l of lines || []) {
    g.strokeStyle = "#00e5ff";
    g.beginPath();
    g.moveTo(l.x1 * w, l.y1 * h);
    g.lineTo(l.x2 * w, l.y2 * h);
    g.stroke();
    const k = cam && cam.crossings[l.name];
    g.fillStyle = "#00e5ff";
    g.fillText(l.name + (k ? " in " + k.in + " out " + k.out : ""), l.x1 * w + 6, l.y1 * h + 18);
  }
  if (!cam || !cam.width) return;
  for (const d of cam.detections) {
    if (d.track_id === null) continue;
    // Inside the box's top-left corner, on a dark patch.
    const x = d.x * w / cam.width + 4, y = d.y * h / cam.height + 4;
    const text = "#" + d.track_id;
    g.fillStyle = "rgba(0, 0, 0, 0.6)";
    g.fillRect(x - 2, y - 2, g.measureText(text).width + 4, 20);
    g.fillStyle = "#ffd60a";
    g.fillText(text, x, y + 14);
  }
}

async function poll() {
  try {
    const response = await fetch("/stats", { cache: "no-store" });
    update(await response.json());
  } catch (e) {
    statusEl.textContent = "viewer unreachable";
  }
  setTimeout(poll, 500);
}
poll();
</script>
</body>
</html>
"##;

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
    init().unwrap_or_else(|e| fail(&format!("initialising GStreamer: {e}")));

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .unwrap_or_else(|e| fail(&format!("installing the signal handler: {e}")));
    }

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
    // The boxes ride in each frame's gkv-detections header; drawn from metas.
    let detections = gst::ElementFactory::make("detectionsconvert")
        .property_from_str("output", "metas")
        .build()
        .unwrap_or_else(|e| fail(&format!("creating detectionsconvert: {e}")));
    let sink = gst_app::AppSink::builder()
        .sync(false)
        .max_buffers(4)
        .drop(false)
        .build();
    let pipeline = gst::Pipeline::new();
    pipeline
        .add_many([&source, &detections, sink.upcast_ref()])
        .and_then(|_| gst::Element::link_many([&source, &detections, sink.upcast_ref()]))
        .unwrap_or_else(|e| fail(&format!("building the pipeline: {e}")));

    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        new_frame: Condvar::new(),
        topic: topic.clone(),
        group: group.clone(),
        started: Instant::now(),
        source: source.clone(),
        lines,
        monitor: kafkamonitor::Monitor::new(&pipeline, Default::default()),
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
                        && let Ok(event) = kafkavision::events::Event::from_json(
                            message.payload().unwrap_or_default(),
                        )
                    {
                        shared.on_event(&event);
                    }
                }
            })
            .unwrap_or_else(|e| fail(&format!("starting the events reader: {e}")));
    }
    {
        let shared = shared.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    shared.on_sample(&sample);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }

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
