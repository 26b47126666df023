// SPDX-License-Identifier: MIT OR Apache-2.0
//! `counter`: counts of vehicles (or any classes) per camera, from Kafka.
//!
//! - `--mode crossings` (the default): objects crossing each line, per direction, and
//!   entering and leaving each zone, from `gkv.events` records (`crossingcount !
//!   eventsconvert ! kafkasink`, `detector-worker --lines`). Each event counts once,
//!   however often it is read again (a restarted counter, a worker replacing a dead one
//!   and publishing the events of the frames it re-reads): by its `event_id`, or for
//!   events without one once per track, line and direction (`kafkavision::events::tally`).
//!   Counted events are remembered for `--dedup-window` seconds, so memory stays bounded.
//! - `--mode detections`: a moving count of detections per frame (one car seen for three
//!   seconds at 10 frames/s counts 30 times), from `gkv.detections` records.
//!
//! It reads `kafkasrc topic=… group-id=… ! appsink`: a record counts as handled, and its
//! offset is committed, once the counter has counted it and let go of its buffer
//! (`commit-after=release`). End-of-stream records and records `kafkasrc` cannot read are
//! its business; a record whose JSON is bad is skipped, warned about and counted here.
//! Records without envelope are read as detections JSON. Annotated-frame records work
//! too: their detections ride in the `gkv-detections` header.
//!
//! With `--metrics HOST:PORT` it serves Prometheus text at `/metrics` (records consumed,
//! bad records, the counts, consumer lag per partition, how long no broker was reachable;
//! and `kafkasrc`'s own stats) and `/healthz`, unhealthy after `--health-timeout` seconds
//! without a broker or with records waiting and none consumed.
//!
//! Every second a table. Crossings: camera | line or zone | in | out | entered | left, then
//! how many duplicate events were dropped.
//! Detections: camera | frames | in last frame | mean over the last N frames | total
//! counted | lag ms (now − the frame's capture time). With `--csv`, crossings: one row per
//! counted event, `camera,kind,place,direction,track_id,label,pts_ns,capture_time_ns,event_id`;
//! detections: one row per frame, `camera,seq,pts_ns,capture_time_ns,count,labels` (labels
//! like `car:2;bus:1`).

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_kafka_vision_examples::{Args, KafkaClient, SampleQueue};
use kafkavision::detections::{self, FrameDetections};
use kafkavision::events::tally::{self, Tally};
use kafkavision::events::{self, Event};
use kafkavision::meta::RecordMeta;

const USAGE: &str = concat!(
    "\
counter: objects crossing lines and visiting zones (gkv.events records, each event counted
once), or a moving count of detections per frame (gkv.detections records), per camera

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
  --dedup-window S         crossings: remember counted events for S seconds of capture time,
                           so that one read again counts once (default 3600); make it longer
                           than any redelivery: a worker's replacement re-reading its frames,
                           or the worker pool being down
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
    /// A frame's detections.
    Frame(Box<FrameDetections>),
    /// An event.
    Event(Box<Event>),
}

/// Reads a record `kafkasrc` delivered: an event (events caps), or a frame's detections
/// (`detections::meta::of_record`). The error says why the record is bad.
fn read_record(sample: &gst::Sample) -> Result<Record, String> {
    let buffer = sample.buffer().ok_or("the record has no value")?;
    let caps = sample.caps();
    if caps
        .and_then(|c| c.structure(0))
        .is_some_and(|s| s.name() == events::CAPS)
    {
        let value = buffer
            .map_readable()
            .map_err(|_| "the record's value could not be read")?;
        return Event::from_json(value.as_slice()).map(|e| Record::Event(Box::new(e)));
    }
    match detections::meta::of_record(buffer, caps) {
        Some(frame) => frame.map(|f| Record::Frame(Box::new(f))),
        None => Err(format!(
            "caps '{}' are not {} and the record has no {} header",
            caps.map(|c| c.to_string()).unwrap_or_default(),
            detections::CAPS,
            detections::HEADER
        )),
    }
}

/// What `--metrics` serves, as a `counter-stats` structure (the elements' convention).
#[derive(Default)]
struct Figures {
    /// Records the counter took from `kafkasrc`.
    taken: AtomicU64,
    /// Of those, the ones whose JSON was bad.
    bad: AtomicU64,
    /// Crossings: events in, out, entered, left; detections: only [0], detections.
    counted: [AtomicU64; 4],
    /// Crossings: events dropped as read before.
    duplicates: AtomicU64,
}

impl Figures {
    /// The counter's figures; `source` is `kafkasrc`'s `stats`, whose records never reach
    /// the counter (end-of-stream records, bad records, delta units before a keyframe)
    /// count as consumed too.
    fn stats(&self, source: &gst::Structure, crossings_mode: bool) -> gst::Structure {
        let get = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let source_field = |name: &str| source.get::<u64>(name).unwrap_or(0);
        let not_pushed = ["bad-records", "eos-records", "delta-units-skipped"]
            .iter()
            .map(|name| source_field(name))
            .sum::<u64>();
        let mut stats = gst::Structure::builder("counter-stats")
            .field("records-consumed", get(&self.taken) + not_pushed)
            .field("bad-records", get(&self.bad) + source_field("bad-records"))
            .field("broker-down-ms", source_field("broker-down-ms"))
            .field(
                "consumer-lag",
                source
                    .get::<gst::Structure>("consumer-lag")
                    .unwrap_or_else(|_| gst::Structure::new_empty("consumer-lag")),
            )
            .build();
        if crossings_mode {
            for (name, value) in ["crossed-in", "crossed-out", "entered", "left"]
                .iter()
                .zip(&self.counted)
            {
                stats.set(*name, get(value));
            }
            stats.set("duplicates-dropped", get(&self.duplicates));
        } else {
            stats.set("detections-counted", get(&self.counted[0]));
        }
        stats
    }

    fn set_crossings(&self, tally: &Tally) {
        self.duplicates.store(tally.duplicates(), Ordering::Relaxed);
        let totals = tally.totals();
        let totals = [
            totals.crossed_in,
            totals.crossed_out,
            totals.entered,
            totals.left,
        ];
        for (counted, total) in self.counted.iter().zip(totals) {
            counted.store(total, Ordering::Relaxed);
        }
    }
}

fn print_crossings(tally: &Tally, bad: u64, clear: bool) {
    let mut out = String::new();
    if clear {
        out.push_str("\x1b[2J\x1b[H");
    }
    out.push_str(&format!(
        "{:<16} | {:<16} | {:>6} | {:>6} | {:>8} | {:>6}\n",
        "camera", "line or zone", "in", "out", "entered", "left"
    ));
    out.push_str(&format!("{}\n", "-".repeat(16 + 16 + 6 + 6 + 8 + 6 + 15)));
    for (camera, place, n) in tally.places() {
        out.push_str(&format!(
            "{camera:<16} | {place:<16} | {:>6} | {:>6} | {:>8} | {:>6}\n",
            n.crossed_in, n.crossed_out, n.entered, n.left
        ));
    }
    if tally.duplicates() > 0 {
        out.push_str(&format!(
            "duplicate events dropped: {}\n",
            tally.duplicates()
        ));
    }
    if bad > 0 {
        out.push_str(&format!("bad records skipped: {bad}\n"));
    }
    print!("{out}");
    let _ = std::io::stdout().flush();
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

/// The CSV file of `--csv`, and its path for error messages.
struct Csv {
    writer: BufWriter<File>,
    path: String,
}

impl Csv {
    fn create(path: &str, header: &str) -> Result<Csv, String> {
        let file = File::create(path).map_err(|e| format!("--csv {path}: {e}"))?;
        let mut csv = Csv {
            writer: BufWriter::new(file),
            path: path.to_string(),
        };
        csv.row(format_args!("{header}"))?;
        Ok(csv)
    }

    fn row(&mut self, row: std::fmt::Arguments<'_>) -> Result<(), String> {
        writeln!(self.writer, "{row}").map_err(|e| format!("--csv {}: {e}", self.path))
    }

    fn flush(&mut self) -> Result<(), String> {
        self.writer
            .flush()
            .map_err(|e| format!("--csv {}: {e}", self.path))
    }
}

/// What the counter has counted so far.
struct Counter {
    crossings_mode: bool,
    options: Options,
    figures: Arc<Figures>,
    csv: Option<Csv>,
    /// Detections: per camera.
    cameras: BTreeMap<String, Camera>,
    /// Crossings: events per camera and place, each counted once.
    tally: Tally,
    /// Records counted (events or frames).
    counted: u64,
    /// Records the counter skipped as bad (not those `kafkasrc` skipped).
    bad: u64,
}

impl Counter {
    /// Counts one record; `Err` only when the CSV cannot be written.
    fn take(&mut self, sample: &gst::Sample) -> Result<(), String> {
        let record = sample.buffer().and_then(RecordMeta::of);
        let at = record.as_ref().map_or_else(
            || "?".to_string(),
            |r| format!("{}/{}@{}", r.topic, r.partition, r.offset),
        );
        let key = record.and_then(|r| r.key);
        self.figures.taken.fetch_add(1, Ordering::Relaxed);
        let skip = |why: &str| eprintln!("counter: warning: skipping {why}");
        match read_record(sample) {
            Err(why) => skip(&format!("bad record {at}: {why}")),
            Ok(Record::Event(event)) if self.crossings_mode => {
                let camera = event.camera.clone().or(key).unwrap_or_default();
                self.count_event(&camera, &event)?;
                return Ok(());
            }
            Ok(Record::Frame(frame)) if !self.crossings_mode => {
                let camera = frame
                    .camera
                    .clone()
                    .or(key)
                    .unwrap_or_else(|| frame.stream.clone());
                self.count_frame(camera, &frame)?;
                return Ok(());
            }
            Ok(Record::Event(_)) => skip(&format!(
                "record {at}: an event, but --mode detections counts detections (use --mode \
                 crossings for events)"
            )),
            Ok(Record::Frame(_)) => skip(&format!(
                "record {at}: detections, but --mode crossings counts events (use --mode \
                 detections for detections)"
            )),
        }
        self.bad += 1;
        self.figures.bad.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn count_event(&mut self, camera: &str, event: &Event) -> Result<(), String> {
        self.counted += 1;
        if !self.options.classes.contains(&event.label) {
            return Ok(());
        }
        let counted = self.tally.count(camera, event);
        self.figures.set_crossings(&self.tally);
        if !counted {
            return Ok(());
        }
        let Some(csv) = self.csv.as_mut() else {
            return Ok(());
        };
        csv.row(format_args!(
            "{},{},{},{},{},{},{},{},{}",
            csv_field(camera),
            event.kind.as_str(),
            csv_field(event.place()),
            event.direction.map(|d| d.as_str()).unwrap_or(""),
            event.track_id,
            csv_field(&event.label),
            optional(event.pts_ns),
            optional(event.capture_time_ns),
            csv_field(event.event_id.as_deref().unwrap_or(""))
        ))
    }

    fn count_frame(&mut self, camera: String, frame: &FrameDetections) -> Result<(), String> {
        let (count, per_label) = count_frame(frame, &self.options);
        let lag_ms = frame.capture_time_ns.map(|t| {
            (kafkavision::clock::unix_time_ns() as i128 - t as i128).div_euclid(1_000_000) as i64
        });
        let cam = self
            .cameras
            .entry(camera.clone())
            .or_insert_with(|| Camera {
                frames: 0,
                last: 0,
                window: VecDeque::new(),
                total: 0,
                lag_ms: None,
            });
        cam.frames += 1;
        cam.last = count;
        cam.total += count as u64;
        cam.window.push_back(count);
        while cam.window.len() > self.options.window {
            cam.window.pop_front();
        }
        cam.lag_ms = lag_ms.or(cam.lag_ms);
        self.figures.counted[0].fetch_add(count as u64, Ordering::Relaxed);
        self.counted += 1;
        let Some(csv) = self.csv.as_mut() else {
            return Ok(());
        };
        let labels: Vec<String> = per_label.iter().map(|(l, n)| format!("{l}:{n}")).collect();
        csv.row(format_args!(
            "{},{},{},{},{},{}",
            csv_field(&camera),
            frame.seq,
            optional(frame.pts_ns),
            optional(frame.capture_time_ns),
            count,
            csv_field(&labels.join(";"))
        ))
    }

    fn print(&self, bad: u64, clear: bool) {
        if self.crossings_mode {
            print_crossings(&self.tally, bad, clear);
        } else {
            print_table(&self.cameras, self.options.window, bad, clear);
        }
    }

    /// The last line: why the counter ended and what it counted.
    fn summary(&self, reason: &str, bad: u64) -> String {
        if self.crossings_mode {
            let n = self.tally.totals();
            return format!(
                "counter: {reason}: {} events from {} camera(s): {} in, {} out, {} entered, \
                 {} left, {} duplicate events dropped, {bad} bad records skipped",
                self.counted,
                self.tally.cameras(),
                n.crossed_in,
                n.crossed_out,
                n.entered,
                n.left,
                self.tally.duplicates()
            );
        }
        let counted: u64 = self.cameras.values().map(|c| c.total).sum();
        format!(
            "counter: {reason}: {} frames from {} camera(s), {counted} counted, {bad} bad \
             records skipped",
            self.counted,
            self.cameras.len()
        )
    }
}

fn optional(value: Option<u64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// `kafkasrc` (named `src`) reading `topic` as a member of `group` into an appsink, built
/// from factories: every value here comes from the command line.
fn pipeline(
    client: &KafkaClient,
    topic: &str,
    group: &str,
    stop_on_eos: bool,
    connect_timeout_ms: u32,
) -> Result<(gst::Pipeline, gst::Element, SampleQueue), String> {
    let source = gst::ElementFactory::make("kafkasrc")
        .name("src")
        .property("topic", topic)
        .property("group-id", group)
        .property("stop-on-eos", stop_on_eos)
        .property("connect-timeout", connect_timeout_ms)
        // Records without envelope are read as detections JSON (their JSON decides).
        .property("caps", gst::Caps::new_empty_simple(detections::CAPS))
        .build()
        .map_err(|e| format!("creating kafkasrc: {e}"))?;
    client.configure(&source);
    // A few records ahead at most: what the counter has not taken when it stops is read
    // again by the group's next reader.
    let (pipeline, sink) = gst_kafka_vision_examples::into_sample_queue(&source, 4)?;
    Ok((pipeline, source, sink))
}

/// The text of an error or warning message, in the counter's terms.
fn message_text(error: &gst::glib::Error, debug: Option<&str>) -> String {
    let text = KafkaClient::in_option_terms(error.message());
    match debug {
        Some(debug) if text.is_empty() => debug.to_string(),
        _ => text,
    }
}

/// The first error on `bus` (or within a second), for a pipeline that did not start.
fn start_error(bus: &gst::Bus, topic: &str, brokers: &str) -> String {
    bus.timed_pop_filtered(gst::ClockTime::from_seconds(1), &[gst::MessageType::Error])
        .and_then(|message| match message.view() {
            gst::MessageView::Error(err) => Some(message_text(&err.error(), None)),
            _ => None,
        })
        .unwrap_or_else(|| format!("could not start reading topic '{topic}' from '{brokers}'"))
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
    let client = KafkaClient::from_args(args)?;
    let default_topic = if crossings_mode {
        "events"
    } else {
        "detections"
    };
    let topic = args.get("topic", default_topic);
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
    let dedup_window = args.number("dedup-window", tally::DEFAULT_WINDOW.as_secs());
    if dedup_window == 0 {
        return Err(
            "--dedup-window 0: counted events must be remembered for at least 1 second \
             to be counted once"
                .into(),
        );
    }
    let stop_on_eos = args.flag("stop-on-eos");
    let max_frames: u64 = args.number("frames", 0u64);
    let quiet = args.flag("quiet");
    let csv_path = args.get("csv", "");
    let connect_timeout_ms = args
        .number("connect-timeout", 10_000u64)
        .clamp(1, u32::MAX as u64) as u32;
    let stop = gst_kafka_vision_examples::stop_on_signal()?;

    let csv = if csv_path.is_empty() {
        None
    } else if crossings_mode {
        let header = "camera,kind,place,direction,track_id,label,pts_ns,capture_time_ns,event_id";
        Some(Csv::create(&csv_path, header)?)
    } else {
        Some(Csv::create(
            &csv_path,
            "camera,seq,pts_ns,capture_time_ns,count,labels",
        )?)
    };

    gst_kafka_vision_examples::init()?;
    let (pipeline, source, sink) =
        pipeline(&client, &topic, &group, stop_on_eos, connect_timeout_ms)?;
    let figures = Arc::new(Figures::default());
    let source_stats = {
        let source = source.downgrade();
        move || {
            source.upgrade().map_or_else(
                || gst::Structure::new_empty("kafkasrc-stats"),
                |s| s.property::<gst::Structure>("stats"),
            )
        }
    };
    // Served while the monitor lives: the server holds only a weak reference.
    let mut _monitor = None;
    if !args.get("metrics", "").is_empty() {
        let timeout = Duration::from_secs(args.number("health-timeout", 30));
        let monitor = kafkamonitor::Monitor::new(
            &pipeline,
            kafkamonitor::HealthLimits {
                broker_down: timeout,
                stalled: timeout,
                live_input: false,
            },
        );
        let (figures, source_stats) = (figures.clone(), source_stats.clone());
        monitor.add_stats("counter", move || {
            figures.stats(&source_stats(), crossings_mode)
        });
        _monitor = Some(gst_kafka_vision_examples::serve_monitor(args, monitor)?);
    }

    let bus = pipeline.bus().ok_or("the pipeline has no bus")?;
    if pipeline.set_state(gst::State::Playing).is_err() {
        let error = start_error(&bus, &topic, &client.brokers);
        let _ = pipeline.set_state(gst::State::Null);
        return Err(error);
    }

    let mut counter = Counter {
        crossings_mode,
        options,
        figures,
        csv,
        cameras: BTreeMap::new(),
        tally: Tally::with_window(Duration::from_secs(dedup_window)),
        counted: 0,
        bad: 0,
    };
    // Bad records: the counter's own and those kafkasrc skipped.
    let bad =
        |counter: &Counter| counter.bad + source_stats().get::<u64>("bad-records").unwrap_or(0);
    let clear = std::io::stdout().is_terminal();
    let mut next_print = Instant::now() + Duration::from_secs(1);
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok("stopped");
        }
        if Instant::now() >= next_print {
            next_print += Duration::from_secs(1);
            if !quiet {
                counter.print(bad(&counter), clear);
            }
            if let Some(csv) = counter.csv.as_mut() {
                let _ = csv.flush();
            }
        }
        if let Some(error) = pending_warnings_then_error(&bus) {
            break Err(error);
        }
        let Some(sample) = sink.try_pull_sample(Duration::from_millis(100)) else {
            if sink.is_eos() {
                break Ok("end of stream");
            }
            continue;
        };
        if let Err(e) = counter.take(&sample) {
            break Err(e);
        }
        // Let go of the record before anything else: kafkasrc may commit it now.
        drop(sample);
        if max_frames > 0 && counter.counted >= max_frames {
            break Ok("frame limit reached");
        }
    };
    // kafkasrc commits what the counter has taken when it stops.
    let _ = pipeline.set_state(gst::State::Null);
    let reason = result?;
    if let Some(csv) = counter.csv.as_mut() {
        csv.flush()?;
    }
    let bad = bad(&counter);
    if !quiet {
        counter.print(bad, false);
    }
    println!("{}", counter.summary(reason, bad));
    Ok(())
}

/// Prints the warnings waiting on `bus` (`kafkasrc` skipping a record it cannot read);
/// returns the first error, if one is waiting.
fn pending_warnings_then_error(bus: &gst::Bus) -> Option<String> {
    while let Some(message) =
        bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Warning])
    {
        match message.view() {
            gst::MessageView::Error(err) => {
                return Some(message_text(&err.error(), err.debug().as_deref()));
            }
            gst::MessageView::Warning(w) => eprintln!(
                "counter: warning: {}",
                message_text(&w.error(), w.debug().as_deref())
            ),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafkavision::events::EventKind;

    fn sample(caps: &str, value: &[u8], detections_header: Option<&[u8]>) -> gst::Sample {
        gst::init().unwrap();
        let mut buffer = gst::Buffer::from_slice(value.to_vec());
        if let Some(json) = detections_header {
            kafkavision::meta::KafkaHeaders::set_on(
                buffer.get_mut().unwrap(),
                detections::HEADER,
                json,
            );
        }
        let caps: gst::Caps = caps.parse().unwrap();
        gst::Sample::builder().buffer(&buffer).caps(&caps).build()
    }

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

    #[test]
    fn records_are_events_detections_or_bad_by_their_caps() {
        let mut event = Event::new(EventKind::LineCrossed, 3, "car");
        event.line = Some("gate".into());
        let read = read_record(&sample(events::CAPS, &event.to_json(), None));
        assert!(matches!(read, Ok(Record::Event(e)) if *e == event));

        let frame = br#"{"schema":"gkv.detections","version":1,"stream":"s","camera":"cam1",
            "seq":1,"pts_ns":null,"capture_time_ns":null,"width":4,"height":4,"detections":[]}"#;
        let read = read_record(&sample(detections::CAPS, frame, None));
        assert!(matches!(read, Ok(Record::Frame(f)) if f.camera.as_deref() == Some("cam1")));
        let read = read_record(&sample("image/jpeg", b"\xFF\xD8", Some(frame)));
        assert!(matches!(read, Ok(Record::Frame(f)) if f.seq == 1));

        let Err(why) = read_record(&sample("image/jpeg", b"\xFF\xD8", None)) else {
            panic!("a frame without detections header is a bad record");
        };
        assert!(why.contains("no gkv-detections header"), "{why}");
        let Err(why) = read_record(&sample(events::CAPS, b"{oops", None)) else {
            panic!("garbage is a bad record");
        };
        assert!(why.contains("gkv.events"), "{why}");
    }
}
