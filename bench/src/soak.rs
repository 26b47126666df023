// SPDX-License-Identifier: MIT OR Apache-2.0
//! `soak-bench`: the whole detection path running for minutes at a live frame rate,
//! checking that nothing is lost and that no process grows.
//!
//! Processes:
//! * publisher: `gst-launch-1.0 -e videotestsrc is-live=true pattern=ball !
//!   video/x-raw,width=640,height=360,framerate=30/1 ! jpegenc ! kafkasink topic=FRAMES`
//! * worker: `gst-launch-1.0 -e kafkasrc group-id=G topic=FRAMES ! jpegdec ! videoconvert !
//!   yolodetect model-location=MODEL ! detectionsconvert ! kafkasink topic=DETECTIONS`
//! * the broker (its pid given with `--broker-pid`)
//! * this program, the checker: it reads both topics with rdkafka from the beginning.
//!
//! Zero loss: every frame record (identified by its `gkv-capture-time`) must have exactly
//! one detections record (its `capture_time_ns`), and `gkv-seq` must be contiguous on the
//! input. Memory: VmRSS of every process every `--sample-seconds`, kept in a CSV; the table
//! compares the end with the RSS after the warm-up minute.
//!
//! Usage: `soak-bench --brokers HOST:PORT [--minutes 10] [--fps 30] [--width 640]
//! [--height 360] [--model PATH] [--broker-pid PID] [--csv PATH]`. Needs `gst-launch-1.0`
//! finding the kafka and yolo plugins (GST_PLUGIN_PATH) and ONNX Runtime (ORT_DYLIB_PATH);
//! `scripts/bench soak` arranges both and a private broker.

mod harness;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use harness::{READER_CONFIG, rss_kb};
use kafkavision::clock::unix_time_ns as unix_ns;
use kafkavision::detections::FrameDetections;
use kafkavision::envelope::{Envelope, RecordKind};
use testkit::{client_config, try_create_topic, unique_name};

const USAGE: &str = "usage: soak-bench --brokers HOST:PORT [--minutes 10] [--fps 30] \
                     [--width 640] [--height 360] [--model PATH] [--broker-pid PID] \
                     [--csv PATH] [--sample-seconds 10] [--warmup-seconds 60] \
                     [--drain-seconds 60]";

struct Options {
    brokers: String,
    duration: Duration,
    fps: u32,
    width: u32,
    height: u32,
    model: String,
    broker_pid: Option<u32>,
    csv: PathBuf,
    sample_every: Duration,
    /// The RSS at this point is the baseline growth is measured against.
    warmup: Duration,
    /// After the publisher stops, how long the worker may take to catch up.
    drain: Duration,
}

fn parse<T: std::str::FromStr>(arg: &str, value: String) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e| format!("{arg} {value}: {e}"))
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        brokers: std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()),
        duration: Duration::from_secs(600),
        fps: 30,
        width: 640,
        height: 360,
        model: "models/blob-yolov8.onnx".into(),
        broker_pid: None,
        csv: PathBuf::from(format!(".local/soak/rss-{}.csv", unix_ns() / 1_000_000_000)),
        sample_every: Duration::from_secs(10),
        warmup: Duration::from_secs(60),
        drain: Duration::from_secs(60),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--brokers" => options.brokers = value()?,
            "--minutes" => {
                options.duration = Duration::from_secs_f64(parse::<f64>(&arg, value()?)? * 60.0)
            }
            "--fps" => options.fps = parse(&arg, value()?)?,
            "--width" => options.width = parse(&arg, value()?)?,
            "--height" => options.height = parse(&arg, value()?)?,
            "--model" => options.model = value()?,
            "--broker-pid" => options.broker_pid = Some(parse(&arg, value()?)?),
            "--csv" => options.csv = PathBuf::from(value()?),
            "--sample-seconds" => {
                options.sample_every = Duration::from_secs(parse(&arg, value()?)?)
            }
            "--warmup-seconds" => options.warmup = Duration::from_secs(parse(&arg, value()?)?),
            "--drain-seconds" => options.drain = Duration::from_secs(parse(&arg, value()?)?),
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}; see --help")),
        }
    }
    if options.fps == 0 || options.sample_every.is_zero() {
        return Err("--fps and --sample-seconds must be positive".into());
    }
    Ok(options)
}

/// One process whose memory is watched.
struct Watched {
    name: &'static str,
    pid: u32,
    /// (seconds since start, kB)
    samples: Vec<(f64, u64)>,
}

/// A gst-launch-1.0 process; its messages go to `log`.
fn launch(pipeline: &str, log: &Path) -> Result<Child, String> {
    let log_file = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let gst_launch = testkit::find_program("gst-launch-1.0")
        .ok_or("gst-launch-1.0 is not installed (Debian package gstreamer1.0-tools)")?;
    let mut command = Command::new(gst_launch);
    // -e: SIGINT becomes an end-of-stream, so kafkasink flushes before the process exits.
    command.arg("-e").arg("-q");
    // Warnings, plus what the Kafka elements saw (rebalances, delivery trouble).
    if std::env::var_os("GST_DEBUG").is_none() {
        command.env("GST_DEBUG", "2,kafkasrc:4,kafkasink:4");
        command.env("GST_DEBUG_NO_COLOR", "1");
    }
    command.args(pipeline.split_whitespace());
    command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("starting gst-launch-1.0: {e}"))
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// Waits up to `limit` for the process to exit; kills it after that.
fn wait_exit(child: &mut Child, name: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "soak: {name} did not stop within {} s; killing it",
        limit.as_secs()
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// Everything the checker learns from the two topics.
#[derive(Default)]
struct Check {
    /// Capture times of the frame records.
    frames: HashSet<u64>,
    /// Detections records by capture time (they may be read before their frame).
    detections: HashMap<u64, u32>,
    /// Per input stream: the next expected gkv-seq.
    next_seq: HashMap<String, u64>,
    sequence_gaps: u64,
    out_of_order: u64,
    input_eos: bool,
    bad_records: u64,
    /// Value bytes of every record read on both topics: what the broker keeps.
    stored_bytes: u64,
    /// Milliseconds from capture to the checker reading the detections record.
    latencies_ms: Vec<f64>,
}

impl Check {
    fn with_capacity(frames: usize) -> Check {
        // Reserved up front so the checker's own RSS does not grow by rehashing.
        Check {
            frames: HashSet::with_capacity(frames),
            detections: HashMap::with_capacity(frames),
            latencies_ms: Vec::with_capacity(frames),
            ..Check::default()
        }
    }

    fn envelope<M: Message>(message: &M) -> Option<Envelope> {
        let headers = message.headers()?;
        Envelope::from_headers(headers.iter().map(|h| (h.key, h.value))).ok()?
    }

    fn frame<M: Message>(&mut self, message: &M) {
        self.stored_bytes += message.payload().map_or(0, |p| p.len() as u64);
        let Some(envelope) = Self::envelope(message) else {
            self.bad_records += 1;
            return;
        };
        if envelope.kind == RecordKind::EndOfStream {
            self.input_eos = true;
            return;
        }
        let expected = self.next_seq.entry(envelope.stream_id).or_insert(0);
        if envelope.seq > *expected {
            self.sequence_gaps += envelope.seq - *expected;
        } else if envelope.seq < *expected {
            self.out_of_order += 1;
        }
        *expected = (*expected).max(envelope.seq + 1);
        match envelope.capture_time_ns {
            Some(capture) => {
                self.frames.insert(capture);
            }
            None => self.bad_records += 1,
        }
    }

    fn detection<M: Message>(&mut self, message: &M) {
        self.stored_bytes += message.payload().map_or(0, |p| p.len() as u64);
        // The worker's end-of-stream record has no value.
        let Some(value) = message.payload().filter(|v| !v.is_empty()) else {
            return;
        };
        match FrameDetections::from_json(value).map(|d| d.capture_time_ns) {
            Ok(Some(capture)) => {
                *self.detections.entry(capture).or_insert(0) += 1;
                self.latencies_ms
                    .push(unix_ns().saturating_sub(capture) as f64 / 1e6);
            }
            _ => self.bad_records += 1,
        }
    }

    fn lost(&self) -> usize {
        self.frames
            .iter()
            .filter(|c| !self.detections.contains_key(c))
            .count()
    }

    fn duplicated(&self) -> u64 {
        self.detections
            .values()
            .map(|n| n.saturating_sub(1) as u64)
            .sum()
    }

    /// Detections whose capture time matches no frame read.
    fn orphans(&self) -> usize {
        self.detections
            .keys()
            .filter(|c| !self.frames.contains(c))
            .count()
    }

    fn caught_up(&self) -> bool {
        self.input_eos && self.lost() == 0
    }
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// MB per hour of the least-squares line through the samples.
fn trend_mb_per_hour(samples: &[(f64, u64)]) -> Option<f64> {
    if samples.len() < 3 {
        return None;
    }
    let n = samples.len() as f64;
    let mean_t = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let mean_m = samples.iter().map(|s| mb(s.1)).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (t, kb) in samples {
        num += (t - mean_t) * (mb(*kb) - mean_m);
        den += (t - mean_t) * (t - mean_t);
    }
    (den > 0.0).then(|| num / den * 3600.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn run() -> Result<(), String> {
    let options = options()?;
    println!("{}", harness::machine_line());
    let brokers = &options.brokers;
    let frames_topic = unique_name("soak-frames");
    let detections_topic = unique_name("soak-detections");
    let group = unique_name("soak-detectors");
    try_create_topic(brokers, "", &frames_topic, 1)?;
    try_create_topic(brokers, "", &detections_topic, 1)?;

    if let Some(dir) = options.csv.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut csv =
        File::create(&options.csv).map_err(|e| format!("{}: {e}", options.csv.display()))?;
    writeln!(csv, "seconds,process,pid,rss_kb").map_err(|e| e.to_string())?;
    let publisher_log = options.csv.with_extension("publisher.log");
    let worker_log = options.csv.with_extension("worker.log");

    let reader: BaseConsumer = client_config(brokers, READER_CONFIG)?
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    for topic in [&frames_topic, &detections_topic] {
        tpl.add_partition_offset(topic, 0, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    reader.assign(&tpl).map_err(|e| e.to_string())?;

    let (fps, width, height) = (options.fps, options.width, options.height);
    // gst-launch-1.0 processes, as users run them: the values that come from the command
    // line must be plain tokens (the rest are numbers and names made here).
    let brokers = harness::launch_token("--brokers", brokers)?;
    let model = harness::launch_token("--model", &options.model)?;
    let mut worker = launch(
        &format!(
            "kafkasrc brokers={brokers} topic={frames_topic} group-id={group} ! jpegdec ! \
             videoconvert ! yolodetect model-location={model} ! \
             detectionsconvert ! kafkasink brokers={brokers} topic={detections_topic}"
        ),
        &worker_log,
    )?;
    let mut publisher = match launch(
        &format!(
            "videotestsrc is-live=true pattern=ball ! \
             video/x-raw,width={width},height={height},framerate={fps}/1 ! jpegenc ! \
             kafkasink brokers={brokers} topic={frames_topic}"
        ),
        &publisher_log,
    ) {
        Ok(child) => child,
        Err(err) => {
            testkit::interrupt(worker.id());
            wait_exit(&mut worker, "worker", Duration::from_secs(20));
            return Err(err);
        }
    };
    let started = Instant::now();
    eprintln!(
        "soak: {} s at {fps} frames/s, {width}x{height} JPEG, topics {frames_topic} → \
         {detections_topic}; samples in {}",
        options.duration.as_secs(),
        options.csv.display()
    );

    let mut watched = vec![
        Watched {
            name: "publisher (gst-launch-1.0)",
            pid: publisher.id(),
            samples: vec![],
        },
        Watched {
            name: "worker (gst-launch-1.0)",
            pid: worker.id(),
            samples: vec![],
        },
        Watched {
            name: "checker (soak-bench)",
            pid: std::process::id(),
            samples: vec![],
        },
    ];
    if let Some(pid) = options.broker_pid {
        watched.push(Watched {
            name: "broker",
            pid,
            samples: vec![],
        });
    }

    let expected_frames = (options.duration.as_secs_f64() * fps as f64 * 1.2) as usize + 1000;
    let mut check = Check::with_capacity(expected_frames);
    let mut max_lag = 0usize;
    let mut next_sample = started;
    let mut publisher_stopped: Option<Instant> = None;
    let mut failure = None;
    loop {
        let now = Instant::now();
        if publisher_stopped.is_none() && now >= next_sample {
            let seconds = (now - started).as_secs_f64();
            let mut line = String::new();
            for process in &mut watched {
                if let Some(kb) = rss_kb(process.pid) {
                    process.samples.push((seconds, kb));
                    writeln!(csv, "{seconds:.1},{},{},{kb}", process.name, process.pid)
                        .map_err(|e| e.to_string())?;
                    line += &format!(
                        " {} {:.0} MB,",
                        process.name.split(' ').next().unwrap(),
                        mb(kb)
                    );
                }
            }
            let lag = check.frames.len().saturating_sub(check.detections.len());
            max_lag = max_lag.max(lag);
            eprintln!(
                "[{seconds:5.0} s] frames {} | detections {} | lag {lag} | RSS{}",
                check.frames.len(),
                check.detections.len(),
                line.trim_end_matches(',')
            );
            next_sample += options.sample_every;
            if now - started >= options.duration {
                // The last sample is taken while everything still runs; then stop the input.
                testkit::interrupt(publisher.id());
                publisher_stopped = Some(now);
                eprintln!("soak: stopping the publisher; waiting for the worker to catch up");
            }
        }
        for (child, name, log) in [
            (&mut publisher, "publisher", &publisher_log),
            (&mut worker, "worker", &worker_log),
        ] {
            // The publisher is expected to exit once it has been told to stop.
            let may_exit = publisher_stopped.is_some() && name == "publisher";
            if !may_exit && let Ok(Some(status)) = child.try_wait() {
                failure = Some(format!(
                    "the {name} exited early ({status}); {}:\n{}",
                    log.display(),
                    log_tail(log)
                ));
            }
        }
        if failure.is_some() {
            break;
        }
        if let Some(stopped) = publisher_stopped
            && (check.caught_up() || now - stopped > options.drain)
        {
            break;
        }
        if let Some(message) = reader.poll(Duration::from_millis(20)) {
            let message = message.map_err(|e| format!("reading: {e}"))?;
            if message.topic() == frames_topic {
                check.frame(&message);
            } else {
                check.detection(&message);
            }
        }
    }
    wait_exit(&mut publisher, "publisher", Duration::from_secs(20));
    testkit::interrupt(worker.id());
    // Late duplicates would arrive while the worker stops.
    let stopping = Instant::now();
    while stopping.elapsed() < Duration::from_secs(3) {
        if let Some(Ok(message)) = reader.poll(Duration::from_millis(20)) {
            if message.topic() == frames_topic {
                check.frame(&message);
            } else {
                check.detection(&message);
            }
        }
    }
    wait_exit(&mut worker, "worker", Duration::from_secs(20));
    if let Some(failure) = failure {
        return Err(failure);
    }

    let warmup = options.warmup;
    println!();
    println!(
        "Soak: {:.1} min at {fps} frames/s ({width}x{height} JPEG → yolodetect {}), RSS every \
         {} s (samples: {})",
        options.duration.as_secs_f64() / 60.0,
        options.model,
        options.sample_every.as_secs(),
        options.csv.display()
    );
    println!();
    println!(
        "| process | RSS after {} s MB | RSS at end MB | growth MB | growth MB/h | fitted trend MB/h |",
        warmup.as_secs()
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for process in &watched {
        let after_warmup: Vec<(f64, u64)> = process
            .samples
            .iter()
            .copied()
            .filter(|(t, _)| *t >= warmup.as_secs_f64())
            .collect();
        let (Some(first), Some(last)) = (after_warmup.first(), after_warmup.last()) else {
            println!("| {} | - | - | - | - | - |", process.name);
            continue;
        };
        let growth = mb(last.1) - mb(first.1);
        let hours = (last.0 - first.0) / 3600.0;
        println!(
            "| {} | {:.1} | {:.1} | {growth:+.1} | {} | {} |",
            process.name,
            mb(first.1),
            mb(last.1),
            if hours > 0.0 {
                format!("{:+.1}", growth / hours)
            } else {
                "-".into()
            },
            trend_mb_per_hour(&after_warmup).map_or("-".into(), |t| format!("{t:+.1}"))
        );
    }

    let published = check.frames.len();
    let lost = check.lost();
    let mut latencies = std::mem::take(&mut check.latencies_ms);
    // The first minute includes the worker joining its group while frames queue up.
    let skip = (warmup.as_secs_f64() * fps as f64) as usize;
    let mut steady: Vec<f64> = latencies.drain(..).skip(skip).collect();
    steady.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!();
    println!(
        "| frames published | detections records | lost | duplicated | orphan detections | \
         input sequence gaps | input out of order | bad records | max lag frames | \
         capture → detections p50 ms | p99 ms | max ms | MB of records on the broker |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let pct = |p: f64| {
        if steady.is_empty() {
            "-".to_string()
        } else {
            format!("{:.0}", percentile(&steady, p))
        }
    };
    println!(
        "| {published} | {} | {lost} | {} | {} | {} | {} | {} | {max_lag} | {} | {} | {} | {:.0} |",
        check.detections.values().map(|n| *n as u64).sum::<u64>(),
        check.duplicated(),
        check.orphans(),
        check.sequence_gaps,
        check.out_of_order,
        check.bad_records,
        pct(0.5),
        pct(0.99),
        pct(1.0),
        check.stored_bytes as f64 / 1e6
    );
    if !check.input_eos {
        eprintln!("soak: warning: the publisher's end-of-stream record never arrived");
    }
    if published == 0 || lost > 0 || check.sequence_gaps > 0 {
        return Err(format!(
            "{published} frames, {lost} lost, {} input sequence gaps",
            check.sequence_gaps
        ));
    }
    Ok(())
}

fn main() {
    if let Err(err) = run() {
        eprintln!("soak-bench: {err}");
        std::process::exit(1);
    }
}
