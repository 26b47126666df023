// SPDX-License-Identifier: MIT OR Apache-2.0
//! `counter`: counts of vehicles (or any classes) per camera, from Kafka.
//!
//! - `--mode crossings` (the default): unique objects crossing each line, per direction,
//!   and entering and leaving each zone, from `gkv.events` records (`crossingcount !
//!   eventsconvert ! kafkasink`, `detector-worker --lines`). An object counts once per line
//!   and direction, however often its event is read again after a restart.
//! - `--mode detections`: a moving count of detections per frame (one car seen for three
//!   seconds at 10 frames/s counts 30 times), from `gkv.detections` records.
//!
//! A plain rdkafka consumer reads the records: the job needs only each record's JSON and
//! its envelope headers (end-of-stream records, the stream id), no GStreamer pipeline, and
//! it sees every bad record itself, so it can skip, warn about and count it. Offsets are
//! stored after a record is counted and committed every second and at the end (the same
//! at-least-once rule as `kafkasrc`). Annotated-frame records work too: their detections
//! ride in the `gkv-detections` header.
//!
//! With `--metrics HOST:PORT` it serves Prometheus text at `/metrics` (records consumed,
//! bad records, the counts, consumer lag per partition, how long no broker was reachable)
//! and `/healthz`, unhealthy after `--health-timeout` seconds without a broker or with
//! records waiting and none consumed.
//!
//! Every second a table. Crossings: camera | line or zone | in | out | entered | left.
//! Detections: camera | frames | in last frame | mean over the last N frames | total
//! counted | lag ms (now − the frame's capture time). With `--csv`, crossings: one row per
//! counted event, `camera,kind,place,direction,track_id,label,pts_ns,capture_time_ns`;
//! detections: one row per frame, `camera,seq,pts_ns,capture_time_ns,count,labels` (labels
//! like `car:2;bus:1`).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gst_kafka_vision_examples::Args;
use kafkavision::detections::{self, FrameDetections};
use kafkavision::events::{self, Event, EventKind};
use kafkavision::{Envelope, RecordKind};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaErrorCode;

const USAGE: &str = concat!(
    "\
counter: unique objects crossing lines and visiting zones (gkv.events records), or a moving
count of detections per frame (gkv.detections records), per camera

usage: counter [options]
  --mode crossings|detections  what to count (default crossings)
",
    gst_kafka_vision_examples::kafka_options_help!(),
    "
  --topic NAME             events topic (crossings; default events) or detections topic
                           (detections; default detections)
  --group NAME             consumer group (default counter)
  --classes a,b,c          labels to count (default car,truck,bus,motorcycle,bicycle)
  --min-confidence X       count detections with confidence >= X (default 0.5)
  --window N               frames in the moving mean (default 30)
  --csv PATH               write one row per counted event (crossings) or per frame (detections)
  --stop-on-eos            end once every stream read so far has sent its end-of-stream record
  --frames N               end after N records (default: run until stopped)
  --quiet                  no live table (the final summary line is still printed)
  --connect-timeout MS     how long to wait for the brokers at start (default 10000)
  --metrics HOST:PORT      serve Prometheus metrics at /metrics and health at /healthz
  --health-timeout S       unhealthy after S seconds without a broker, or with records
                           waiting and none consumed (default 30)"
);

const DEFAULT_CLASSES: &str = "car,truck,bus,motorcycle,bicycle";

fn main() {
    let args = Args::parse(USAGE);
    if let Err(err) = run(&args) {
        eprintln!("counter: {err}");
        std::process::exit(1);
    }
}

/// Per-camera running numbers.
struct Camera {
    frames: u64,
    last: u32,
    window: VecDeque<u32>,
    total: u64,
    lag_ms: Option<i64>,
}

struct Options {
    classes: Vec<String>,
    min_confidence: f64,
    window: usize,
}

/// What one frame counts: the total and (label, count) in the order of `--classes`.
fn count_frame(frame: &FrameDetections, options: &Options) -> (u32, Vec<(String, u32)>) {
    let mut per_label: Vec<(String, u32)> = Vec::new();
    let mut total = 0;
    for class in &options.classes {
        let n = frame
            .detections
            .iter()
            .filter(|d| &d.label == class && d.confidence >= options.min_confidence)
            .count() as u32;
        if n > 0 {
            per_label.push((class.clone(), n));
            total += n;
        }
    }
    (total, per_label)
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// What one record holds.
enum Record {
    /// The end-of-stream record of a stream.
    Eos(String),
    /// A frame's detections, with the envelope's stream id when there is an envelope.
    Frame(Option<String>, Box<FrameDetections>),
    /// An event, with the envelope's stream id.
    Event(Option<String>, Box<Event>),
}

/// The consumer's context: librdkafka's statistics feed the broker and lag figures.
struct CounterContext {
    health: Arc<gstkafka::ClientHealth>,
}

impl ClientContext for CounterContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.health.update(&statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.health.record_error(&error, reason);
    }
}

impl ConsumerContext for CounterContext {}

/// How the start-up check's errors name the counter's settings.
const SETTINGS: gstkafka::SettingNames = gstkafka::SettingNames {
    brokers: "--brokers",
    config: "--kafka-config or --kafka-config-file",
    timeout: "--connect-timeout",
};

/// What `--metrics` serves, as a `counter-stats` structure (the elements' convention).
#[derive(Default)]
struct Figures {
    records: AtomicU64,
    bad: AtomicU64,
    /// Crossings: unique objects in, out, entered, left; detections: only [0], detections.
    counted: [AtomicU64; 4],
}

impl Figures {
    fn stats(&self, health: &gstkafka::ClientHealth, crossings_mode: bool) -> gst::Structure {
        let get = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let mut stats = gst::Structure::builder("counter-stats")
            .field("records-consumed", get(&self.records))
            .field("bad-records", get(&self.bad))
            .field("broker-down-ms", health.broker_down_ms())
            .field("consumer-lag", health.consumer_lag())
            .build();
        if crossings_mode {
            for (name, value) in ["crossed-in", "crossed-out", "entered", "left"]
                .iter()
                .zip(&self.counted)
            {
                stats.set(*name, get(value));
            }
        } else {
            stats.set("detections-counted", get(&self.counted[0]));
        }
        stats
    }
}

/// Unique objects per camera and line or zone: crossings in and out, entries and exits.
#[derive(Default)]
struct Crossings {
    /// (camera, place) → [in, out, entered, left]
    counts: BTreeMap<(String, String), [u64; 4]>,
    /// [in, out, entered, left] over every camera and place.
    totals: [u64; 4],
    /// (camera, place, which count, track id) already counted.
    seen: HashSet<(String, String, usize, u64)>,
}

impl Crossings {
    /// Counts the event unless its object was counted for it already; true when counted.
    fn count(&mut self, camera: &str, event: &Event) -> bool {
        let which = match (event.kind, event.direction) {
            (EventKind::LineCrossed, Some(events::Direction::In)) => 0,
            (EventKind::LineCrossed, _) => 1,
            (EventKind::ZoneEntered, _) => 2,
            (EventKind::ZoneLeft, _) => 3,
        };
        let place = event.place().to_string();
        if !self
            .seen
            .insert((camera.to_string(), place.clone(), which, event.track_id))
        {
            return false;
        }
        self.counts.entry((camera.to_string(), place)).or_default()[which] += 1;
        self.totals[which] += 1;
        true
    }

    fn print(&self, bad: u64, clear: bool) {
        let mut out = String::new();
        if clear {
            out.push_str("\x1b[2J\x1b[H");
        }
        out.push_str(&format!(
            "{:<16} | {:<16} | {:>6} | {:>6} | {:>8} | {:>6}\n",
            "camera", "line or zone", "in", "out", "entered", "left"
        ));
        out.push_str(&format!("{}\n", "-".repeat(16 + 16 + 6 + 6 + 8 + 6 + 15)));
        for ((camera, place), [i, o, e, l]) in &self.counts {
            out.push_str(&format!(
                "{camera:<16} | {place:<16} | {i:>6} | {o:>6} | {e:>8} | {l:>6}\n"
            ));
        }
        if bad > 0 {
            out.push_str(&format!("bad records skipped: {bad}\n"));
        }
        print!("{out}");
        let _ = std::io::stdout().flush();
    }
}

/// Reads a record: its value as gkv.detections JSON, or, for an annotated frame (caps
/// other than the detections caps), its `gkv-detections` header. The error says why the
/// record is bad.
fn read_record(message: &BorrowedMessage<'_>) -> Result<Record, String> {
    let headers: Vec<(&str, Option<&[u8]>)> = message
        .headers()
        .map(|h| h.iter().map(|h| (h.key, h.value)).collect())
        .unwrap_or_default();
    let envelope = Envelope::from_headers(headers.iter().copied()).map_err(|e| e.to_string())?;
    if let Some(env) = &envelope {
        if env.kind == RecordKind::EndOfStream {
            return Ok(Record::Eos(env.stream_id.clone()));
        }
        if env
            .caps
            .as_deref()
            .and_then(|c| c.split(',').next())
            .map(str::trim)
            == Some(events::CAPS)
        {
            return Event::from_json(message.payload().unwrap_or_default())
                .map(|e| Record::Event(Some(env.stream_id.clone()), Box::new(e)));
        }
        let is_detections = env
            .caps
            .as_deref()
            .is_none_or(|c| c.split(',').next().map(str::trim) == Some(detections::CAPS));
        if !is_detections {
            let Some((_, json)) = headers.iter().find(|(name, _)| *name == detections::HEADER)
            else {
                return Err(format!(
                    "caps '{}' are not {} and the record has no {} header",
                    env.caps.as_deref().unwrap_or(""),
                    detections::CAPS,
                    detections::HEADER
                ));
            };
            return FrameDetections::from_json(json.unwrap_or_default())
                .map(|f| Record::Frame(Some(env.stream_id.clone()), Box::new(f)))
                .map_err(|e| format!("header {}: {e}", detections::HEADER));
        }
    }
    FrameDetections::from_json(message.payload().unwrap_or_default())
        .map(|f| Record::Frame(envelope.map(|e| e.stream_id), Box::new(f)))
}

fn print_table(cameras: &BTreeMap<String, Camera>, window: usize, bad: u64, clear: bool) {
    let mut out = String::new();
    if clear {
        out.push_str("\x1b[2J\x1b[H");
    }
    out.push_str(&format!(
        "{:<16} | {:>8} | {:>13} | {:>12} | {:>13} | {:>8}\n",
        "camera",
        "frames",
        "in last frame",
        format!("mean last {window}"),
        "total counted",
        "lag ms"
    ));
    out.push_str(&format!("{}\n", "-".repeat(16 + 8 + 13 + 12 + 13 + 8 + 15)));
    for (name, cam) in cameras {
        let mean = if cam.window.is_empty() {
            0.0
        } else {
            cam.window.iter().map(|&n| n as f64).sum::<f64>() / cam.window.len() as f64
        };
        let lag = cam
            .lag_ms
            .map(|l| l.to_string())
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<16} | {:>8} | {:>13} | {:>12.2} | {:>13} | {:>8}\n",
            name, cam.frames, cam.last, mean, cam.total, lag
        ));
    }
    if bad > 0 {
        out.push_str(&format!("bad records skipped: {bad}\n"));
    }
    print!("{out}");
    let _ = std::io::stdout().flush();
}

fn run(args: &Args) -> Result<(), String> {
    let crossings_mode = match args.get("mode", "crossings").as_str() {
        "crossings" => true,
        "detections" => false,
        other => {
            return Err(format!(
                "--mode {other:?}: expected crossings or detections"
            ));
        }
    };
    let client = gst_kafka_vision_examples::KafkaClient::from_args(args)?;
    let brokers = client.brokers.clone();
    let topic = args.get(
        "topic",
        if crossings_mode {
            "events"
        } else {
            "detections"
        },
    );
    let group = args.get("group", "counter");
    let options = Options {
        classes: args
            .get("classes", DEFAULT_CLASSES)
            .split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect(),
        min_confidence: args.number("min-confidence", 0.5f64),
        window: args.number("window", 30usize).max(1),
    };
    let stop_on_eos = args.flag("stop-on-eos");
    let max_frames: u64 = args.number("frames", 0u64);
    let quiet = args.flag("quiet");
    let csv_path = args.get("csv", "");
    let stop = gst_kafka_vision_examples::stop_on_signal()?;

    let mut csv = if csv_path.is_empty() {
        None
    } else {
        let file = File::create(&csv_path).map_err(|e| format!("--csv {csv_path}: {e}"))?;
        let mut w = BufWriter::new(file);
        let header = if crossings_mode {
            "camera,kind,place,direction,track_id,label,pts_ns,capture_time_ns"
        } else {
            "camera,seq,pts_ns,capture_time_ns,count,labels"
        };
        writeln!(w, "{header}").map_err(|e| format!("--csv {csv_path}: {e}"))?;
        Some(w)
    };

    let health = Arc::new(gstkafka::ClientHealth::default());
    let figures = Arc::new(Figures::default());
    // Served while the monitor lives: the server holds only a weak reference.
    let mut _monitor = None;
    if !args.get("metrics", "").is_empty() {
        gst::init().map_err(|e| e.to_string())?;
        let timeout = Duration::from_secs(args.number("health-timeout", 30));
        let monitor = kafkamonitor::Monitor::without_pipeline(kafkamonitor::HealthLimits {
            broker_down: timeout,
            stalled: timeout,
            live_input: false,
        });
        let (health, figures) = (health.clone(), figures.clone());
        monitor.add_stats("counter", move || figures.stats(&health, crossings_mode));
        _monitor = Some(gst_kafka_vision_examples::serve_monitor(args, monitor)?);
    }
    let consumer: BaseConsumer<CounterContext> = client
        .rdkafka_config(&[
            // Broker and lag figures for --metrics.
            ("statistics.interval.ms", "1000"),
            ("group.id", &group),
            ("enable.auto.commit", "true"),
            ("enable.auto.offset.store", "false"),
            ("auto.commit.interval.ms", "1000"),
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "false"),
            ("fetch.wait.max.ms", "20"),
        ])
        .create_with_context(CounterContext {
            health: health.clone(),
        })
        .map_err(|e| format!("creating the Kafka consumer: {e}"))?;
    let connect_timeout = Duration::from_millis(args.number("connect-timeout", 10_000u64));
    gstkafka::check_topic(
        consumer.client(),
        &brokers,
        &topic,
        connect_timeout,
        &SETTINGS,
        || {
            // Serves the error callbacks; nothing is subscribed yet, so no record comes.
            let _ = consumer.poll(Duration::ZERO);
            health.last_error()
        },
    )?;
    consumer
        .subscribe(&[&topic])
        .map_err(|e| format!("subscribing to '{topic}': {e}"))?;

    let mut cameras: BTreeMap<String, Camera> = BTreeMap::new();
    let mut crossings = Crossings::default();
    let mut streams_seen: HashSet<String> = HashSet::new();
    let mut streams_ended: HashSet<String> = HashSet::new();
    let mut frames: u64 = 0;
    let mut bad: u64 = 0;
    let clear = std::io::stdout().is_terminal();
    let mut next_print = Instant::now() + Duration::from_secs(1);
    let mut reason = "stopped";

    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if Instant::now() >= next_print {
            next_print += Duration::from_secs(1);
            if !quiet {
                if crossings_mode {
                    crossings.print(bad, clear);
                } else {
                    print_table(&cameras, options.window, bad, clear);
                }
            }
            if let Some(w) = csv.as_mut() {
                let _ = w.flush();
            }
        }
        let Some(result) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = match result {
            Ok(m) => m,
            Err(e) => {
                eprintln!("counter: warning: Kafka: {e}");
                continue;
            }
        };
        match read_record(&message) {
            Err(why) => {
                bad += 1;
                eprintln!(
                    "counter: warning: skipping bad record {}/{}@{}: {why}",
                    message.topic(),
                    message.partition(),
                    message.offset()
                );
            }
            Ok(Record::Eos(stream)) => {
                streams_seen.insert(stream.clone());
                streams_ended.insert(stream);
            }
            Ok(Record::Event(stream, event)) if crossings_mode => {
                if let Some(stream) = stream {
                    streams_seen.insert(stream);
                }
                frames += 1;
                let camera = event
                    .camera
                    .clone()
                    .or_else(|| {
                        message
                            .key()
                            .map(|k| String::from_utf8_lossy(k).into_owned())
                    })
                    .unwrap_or_default();
                if options.classes.contains(&event.label)
                    && crossings.count(&camera, &event)
                    && let Some(w) = csv.as_mut()
                {
                    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
                    let kind = match event.kind {
                        EventKind::LineCrossed => "line-crossed",
                        EventKind::ZoneEntered => "zone-entered",
                        EventKind::ZoneLeft => "zone-left",
                    };
                    writeln!(
                        w,
                        "{},{kind},{},{},{},{},{},{}",
                        csv_field(&camera),
                        csv_field(event.place()),
                        event.direction.map(|d| d.as_str()).unwrap_or(""),
                        event.track_id,
                        csv_field(&event.label),
                        opt(event.pts_ns),
                        opt(event.capture_time_ns)
                    )
                    .map_err(|e| format!("--csv {csv_path}: {e}"))?;
                }
            }
            Ok(Record::Event(..)) => {
                bad += 1;
                eprintln!(
                    "counter: warning: skipping record {}/{}@{}: an event, but --mode \
                     detections counts detections (use --mode crossings for events)",
                    message.topic(),
                    message.partition(),
                    message.offset()
                );
            }
            Ok(Record::Frame(..)) if crossings_mode => {
                bad += 1;
                eprintln!(
                    "counter: warning: skipping record {}/{}@{}: detections, but --mode \
                     crossings counts events (use --mode detections for detections)",
                    message.topic(),
                    message.partition(),
                    message.offset()
                );
            }
            Ok(Record::Frame(stream, frame)) => {
                let stream = stream.unwrap_or_else(|| frame.stream.clone());
                streams_seen.insert(stream.clone());
                let camera = frame
                    .camera
                    .clone()
                    .or_else(|| {
                        message
                            .key()
                            .map(|k| String::from_utf8_lossy(k).into_owned())
                    })
                    .unwrap_or_else(|| frame.stream.clone());
                let (count, per_label) = count_frame(&frame, &options);
                let lag_ms = frame.capture_time_ns.map(|t| {
                    (kafkavision::clock::unix_time_ns() as i128 - t as i128).div_euclid(1_000_000)
                        as i64
                });
                let cam = cameras.entry(camera.clone()).or_insert_with(|| Camera {
                    frames: 0,
                    last: 0,
                    window: VecDeque::new(),
                    total: 0,
                    lag_ms: None,
                });
                cam.frames += 1;
                cam.last = count;
                cam.total += count as u64;
                figures.counted[0].fetch_add(count as u64, Ordering::Relaxed);
                cam.window.push_back(count);
                while cam.window.len() > options.window {
                    cam.window.pop_front();
                }
                cam.lag_ms = lag_ms.or(cam.lag_ms);
                frames += 1;
                if let Some(w) = csv.as_mut() {
                    let labels: Vec<String> =
                        per_label.iter().map(|(l, n)| format!("{l}:{n}")).collect();
                    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
                    writeln!(
                        w,
                        "{},{},{},{},{},{}",
                        csv_field(&camera),
                        frame.seq,
                        opt(frame.pts_ns),
                        opt(frame.capture_time_ns),
                        count,
                        csv_field(&labels.join(";"))
                    )
                    .map_err(|e| format!("--csv {csv_path}: {e}"))?;
                }
            }
        }
        figures.records.fetch_add(1, Ordering::Relaxed);
        figures.bad.store(bad, Ordering::Relaxed);
        if crossings_mode {
            for (counted, total) in figures.counted.iter().zip(crossings.totals) {
                counted.store(total, Ordering::Relaxed);
            }
        }
        if let Err(e) = consumer.store_offset_from_message(&message) {
            eprintln!("counter: warning: storing the offset: {e}");
        }
        if max_frames > 0 && frames >= max_frames {
            reason = "frame limit reached";
            break;
        }
        if stop_on_eos && !streams_seen.is_empty() && streams_seen.is_subset(&streams_ended) {
            reason = "end of stream";
            break;
        }
    }

    if let Some(w) = csv.as_mut() {
        w.flush().map_err(|e| format!("--csv {csv_path}: {e}"))?;
    }
    match consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last automatic commit: nothing to do.
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => eprintln!("counter: warning: final commit: {e}"),
    }
    if crossings_mode {
        if !quiet {
            crossings.print(bad, false);
        }
        let total = |i: usize| crossings.totals[i];
        let cameras: HashSet<&String> = crossings.counts.keys().map(|(c, _)| c).collect();
        println!(
            "counter: {reason}: {frames} events from {} camera(s): {} in, {} out, {} entered, \
             {} left (unique objects), {bad} bad records skipped",
            cameras.len(),
            total(0),
            total(1),
            total(2),
            total(3)
        );
        return Ok(());
    }
    if !quiet {
        print_table(&cameras, options.window, bad, false);
    }
    let counted: u64 = cameras.values().map(|c| c.total).sum();
    println!(
        "counter: {reason}: {frames} frames from {} camera(s), {counted} counted, {bad} bad records skipped",
        cameras.len()
    );
    Ok(())
}
