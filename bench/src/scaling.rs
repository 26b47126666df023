// SPDX-License-Identifier: MIT OR Apache-2.0
//! `scaling-bench`: how a consumer group of workers scales on Kafka, as in the published
//! Kafka + YOLO scaling experiments. Each worker is its own process and group member
//! running
//!
//! ```text
//! kafkasrc group-id=G topic=IN caps=application/x-scaling-frame ! identity sleep-time=COST ! kafkasink topic=OUT
//! ```
//!
//! The detector is a fixed-cost stand-in (`identity sleep-time` costs no CPU), so a
//! 2-core machine measures the Kafka hop and the group, not the model.
//!
//! * Strong scaling: a fixed number of frames, 1, 2, 3 workers: total time, speed-up,
//!   efficiency, and the ideal `frames * cost / workers`.
//! * Weak scaling: frames grow with the workers: the time should stay flat.
//!
//! Every row uses fresh topics and a fresh group. The workers start first; once every one
//! holds partitions (the group formation time, reported apart), the bench publishes all
//! frames in one burst, explicit partition per frame round-robin, each value carrying its
//! frame number, and the clock runs until every frame number has appeared on OUT. Lost and
//! duplicated frames are counted per row.
//!
//! Usage: `scaling-bench [--brokers HOST:PORT] [--workers 1,2,3] [--frames N]
//! [--weak-frames N] [--cost-ms MS] [--partitions P] [--frame-kb KB]`
//! (`scripts/bench scaling` starts a private broker and runs it).
//!
//! Workers are this program re-run as `scaling-bench worker ...`: a separate process per
//! group member like in production, which still reports kafkasrc's `partitions-assigned`
//! on stdout, so the bench knows when the group is stable (gst-launch-1.0 cannot say).

mod harness;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use gst::prelude::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use harness::{PRODUCER_CONFIG, READER_CONFIG};
use testkit::{client_config, try_create_topic, unique_name};

/// Caps of the input records, which carry no envelope (the bench writes them with rdkafka).
const FRAME_CAPS: &str = "application/x-scaling-frame";

/// How long every worker must keep its partitions before the group counts as stable.
const STABLE_FOR: Duration = Duration::from_secs(1);

const USAGE: &str = "usage: scaling-bench [--brokers HOST:PORT] [--workers 1,2,3] [--frames N] \
                     [--weak-frames N] [--cost-ms MS] [--partitions P] [--frame-kb KB] \
                     [--drain-seconds S] [--only strong|weak]";

struct Options {
    brokers: String,
    workers: Vec<usize>,
    /// Strong scaling: frames per row.
    frames: usize,
    /// Weak scaling: frames per worker.
    weak_frames: usize,
    cost: Duration,
    partitions: usize,
    frame_bytes: usize,
    /// After the last frame number arrives, keep reading this long for duplicates.
    drain: Duration,
    strong: bool,
    weak: bool,
}

fn parse<T: std::str::FromStr>(arg: &str, value: String) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e| format!("{arg} {value}: {e}"))
}

fn options(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        brokers: std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()),
        workers: vec![1, 2, 3],
        frames: 300,
        weak_frames: 150,
        cost: Duration::from_millis(40),
        partitions: 6,
        frame_bytes: 50_000,
        drain: Duration::from_secs(2),
        strong: true,
        weak: true,
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--brokers" => options.brokers = value()?,
            "--workers" => {
                options.workers = value()?
                    .split(',')
                    .map(|w| parse(&arg, w.to_string()))
                    .collect::<Result<_, _>>()?
            }
            "--frames" => options.frames = parse(&arg, value()?)?,
            "--weak-frames" => options.weak_frames = parse(&arg, value()?)?,
            "--cost-ms" => options.cost = Duration::from_millis(parse(&arg, value()?)?),
            "--partitions" => options.partitions = parse(&arg, value()?)?,
            "--frame-kb" => options.frame_bytes = parse::<usize>(&arg, value()?)? * 1000,
            "--drain-seconds" => options.drain = Duration::from_secs(parse(&arg, value()?)?),
            "--only" => match value()?.as_str() {
                "strong" => options.weak = false,
                "weak" => options.strong = false,
                other => return Err(format!("--only {other}: expected strong or weak")),
            },
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}; see --help")),
        }
    }
    if options.workers.contains(&0) || options.workers.is_empty() {
        return Err("--workers: each count must be at least 1".into());
    }
    if options.frame_bytes < 8 {
        return Err("--frame-kb must be at least 1".into());
    }
    if let Some(w) = options.workers.iter().find(|w| **w > options.partitions) {
        return Err(format!(
            "{w} workers but only {} partitions: some would hold none",
            options.partitions
        ));
    }
    Ok(options)
}

/// `scaling-bench worker`: one group member. Prints `partitions N` whenever kafkasrc's
/// assignment changes; stops when stdin closes (the bench dropping its end).
fn worker(mut args: impl Iterator<Item = String>) -> Result<(), String> {
    let (mut brokers, mut input, mut output, mut group, mut cost_us) =
        (None, None, None, None, None);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--brokers" => brokers = Some(value),
            "--input" => input = Some(value),
            "--output" => output = Some(value),
            "--group" => group = Some(value),
            "--cost-us" => cost_us = Some(value),
            other => return Err(format!("worker: unknown argument {other}")),
        }
    }
    let missing = |name: &str| format!("worker needs --{name}");
    let brokers = brokers.ok_or_else(|| missing("brokers"))?;
    let input = input.ok_or_else(|| missing("input"))?;
    let output = output.ok_or_else(|| missing("output"))?;
    let group = group.ok_or_else(|| missing("group"))?;
    let cost_us = cost_us.ok_or_else(|| missing("cost-us"))?;

    gst::init().map_err(|e| e.to_string())?;
    gstkafka::plugin_register_static().map_err(|e| e.to_string())?;
    let caps: gst::Caps = FRAME_CAPS.parse().map_err(|_| "bad frame caps")?;
    let cost_us: u32 = cost_us
        .parse()
        .map_err(|_| format!("--cost-us {cost_us}: not a number of microseconds"))?;
    let pipeline = harness::pipeline(
        "kafkasrc name=src ! identity name=cost ! kafkasink name=sink",
        &[
            ("src", "brokers", &brokers),
            ("src", "topic", &input),
            ("src", "group-id", &group),
            ("src", "caps", &caps),
            ("cost", "sleep-time", &cost_us),
            ("sink", "brokers", &brokers),
            ("sink", "topic", &output),
        ],
    )?;
    let src = pipeline.by_name("src").unwrap();

    let stdin_closed = Arc::new(AtomicBool::new(false));
    let flag = stdin_closed.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        flag.store(true, Ordering::Relaxed);
    });

    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let bus = pipeline.bus().unwrap();
    let mut reported = None;
    let result = loop {
        if stdin_closed.load(Ordering::Relaxed) {
            break Ok(());
        }
        if let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(50),
            &[gst::MessageType::Error, gst::MessageType::Eos],
        ) {
            break match msg.view() {
                gst::MessageView::Error(e) => Err(format!("{} ({:?})", e.error(), e.debug())),
                _ => Err("unexpected end of stream".into()),
            };
        }
        let stats = src.property::<gst::Structure>("stats");
        let assigned = stats.get::<u32>("partitions-assigned").unwrap_or(0);
        if reported != Some(assigned) {
            println!("partitions {assigned}");
            reported = Some(assigned);
        }
    };
    pipeline.set_state(gst::State::Null).unwrap();
    result
}

/// A worker process as the bench sees it.
struct Worker {
    child: Child,
    assigned: Arc<AtomicU32>,
    /// How many assignment changes it has reported.
    changes: Arc<AtomicU32>,
    exited: Arc<AtomicBool>,
}

impl Worker {
    fn spawn(
        brokers: &str,
        input: &str,
        output: &str,
        group: &str,
        cost: Duration,
    ) -> Result<Worker, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args([
                "worker",
                "--brokers",
                brokers,
                "--input",
                input,
                "--output",
                output,
            ])
            .args(["--group", group, "--cost-us", &cost.as_micros().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting a worker: {e}"))?;
        let assigned = Arc::new(AtomicU32::new(0));
        let changes = Arc::new(AtomicU32::new(0));
        let exited = Arc::new(AtomicBool::new(false));
        let stdout = child.stdout.take().unwrap();
        let (a, c, e) = (assigned.clone(), changes.clone(), exited.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(Ok(n)) = line.strip_prefix("partitions ").map(str::parse) {
                    a.store(n, Ordering::Relaxed);
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
            e.store(true, Ordering::Relaxed);
        });
        Ok(Worker {
            child,
            assigned,
            changes,
            exited,
        })
    }
}

/// Closes every worker's stdin at once (leaving the group takes a moment each), then
/// waits for them; kills a worker that does not stop within 20 s.
fn stop_workers(workers: Vec<Worker>) {
    let mut children: Vec<Child> = workers
        .into_iter()
        .map(|mut w| {
            drop(w.child.stdin.take());
            w.child
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    for child in &mut children {
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    eprintln!("scaling: worker {} did not stop; killing it", child.id());
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

/// Waits until every worker holds partitions and together they hold all of them, for
/// STABLE_FOR; returns when that state began, measured from `started`.
fn wait_stable(
    workers: &[Worker],
    partitions: usize,
    started: Instant,
) -> Result<Duration, String> {
    let deadline = started + Duration::from_secs(180);
    let mut stable_since: Option<Instant> = None;
    loop {
        if workers.iter().any(|w| w.exited.load(Ordering::Relaxed)) {
            return Err("a worker exited while the group formed (see its messages above)".into());
        }
        let counts: Vec<u32> = workers
            .iter()
            .map(|w| w.assigned.load(Ordering::Relaxed))
            .collect();
        let now = Instant::now();
        if counts.iter().all(|c| *c > 0) && counts.iter().sum::<u32>() as usize == partitions {
            let since = *stable_since.get_or_insert(now);
            if now - since >= STABLE_FOR {
                return Ok(since - started);
            }
        } else {
            stable_since = None;
        }
        if now > deadline {
            return Err(format!(
                "group not stable after 180 s; partitions per worker {counts:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Row {
    workers: usize,
    frames: usize,
    /// From starting the worker processes to every one holding partitions.
    formation: Duration,
    /// From the first frame published to the last frame number seen on OUT.
    total: Option<Duration>,
    lost: usize,
    duplicated: usize,
    /// Assignment changes reported after the group was stable (a rebalance mid-run).
    reassignments: u32,
}

fn run_row(options: &Options, workers: usize, frames: usize) -> Result<Row, String> {
    let brokers = &options.brokers;
    let input = unique_name("scaling-in");
    let output = unique_name("scaling-out");
    let group = unique_name("scaling-group");
    try_create_topic(brokers, "", &input, options.partitions as i32)?;
    try_create_topic(brokers, "", &output, 1)?;

    // Both clients connect before the clock starts.
    let producer: ThreadedProducer<DefaultProducerContext> =
        client_config(brokers, PRODUCER_CONFIG)?
            .create()
            .map_err(|e| e.to_string())?;
    producer
        .client()
        .fetch_metadata(Some(&input), Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let reader: BaseConsumer = client_config(brokers, READER_CONFIG)?
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&output, 0, Offset::Beginning)
        .map_err(|e| e.to_string())?;
    reader.assign(&tpl).map_err(|e| e.to_string())?;

    let started = Instant::now();
    let mut pool = Vec::new();
    for _ in 0..workers {
        match Worker::spawn(brokers, &input, &output, &group, options.cost) {
            Ok(worker) => pool.push(worker),
            Err(err) => {
                stop_workers(pool);
                return Err(err);
            }
        }
    }
    let formation = match wait_stable(&pool, options.partitions, started) {
        Ok(formation) => formation,
        Err(err) => {
            stop_workers(pool);
            return Err(err);
        }
    };
    let changes_at_start: u32 = pool.iter().map(|w| w.changes.load(Ordering::Relaxed)).sum();
    eprintln!(
        "scaling: {workers} worker(s) hold all {} partitions after {:.1} s; publishing {frames} frames",
        options.partitions,
        formation.as_secs_f64()
    );

    let measured = measure(options, &producer, &reader, &input, frames);
    let reassignments = pool
        .iter()
        .map(|w| w.changes.load(Ordering::Relaxed))
        .sum::<u32>()
        - changes_at_start;
    stop_workers(pool);
    let (total, counts) = measured?;
    Ok(Row {
        workers,
        frames,
        formation,
        total,
        lost: counts.iter().filter(|c| **c == 0).count(),
        duplicated: counts.iter().map(|c| c.saturating_sub(1) as usize).sum(),
        reassignments,
    })
}

/// Publishes `frames` frames in one burst and reads OUT until every frame number has come
/// back (then `drain` longer, for duplicates) or the time is up. Returns the time to the
/// last new frame number (None if some never came) and how often each one came.
fn measure(
    options: &Options,
    producer: &ThreadedProducer<DefaultProducerContext>,
    reader: &BaseConsumer,
    input: &str,
    frames: usize,
) -> Result<(Option<Duration>, Vec<u32>), String> {
    let mut value = vec![0u8; options.frame_bytes];
    let started = Instant::now();
    for frame in 0..frames {
        value[..8].copy_from_slice(&(frame as u64).to_le_bytes());
        let mut record = BaseRecord::<(), [u8]>::to(input)
            .partition((frame % options.partitions) as i32)
            .payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    std::thread::sleep(Duration::from_millis(2));
                    record = back;
                }
                Err((e, _)) => return Err(format!("publishing frame {frame}: {e}")),
            }
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| format!("publishing: {e}"))?;

    // Generous: four times the one-worker time, plus a minute.
    let deadline = started + options.cost * frames as u32 * 4 + Duration::from_secs(60);
    let mut counts = vec![0u32; frames];
    let (mut seen, mut foreign) = (0, 0);
    let mut done: Option<Duration> = None;
    loop {
        let now = Instant::now();
        if done.is_some_and(|d| now - started > d + options.drain) || now > deadline {
            break;
        }
        let Some(message) = reader.poll(Duration::from_millis(20)) else {
            continue;
        };
        let message = message.map_err(|e| format!("reading the output: {e}"))?;
        // kafkasink's end-of-stream record has an empty value.
        let Some(bytes) = message.payload().filter(|p| p.len() >= 8) else {
            continue;
        };
        let frame = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        match counts.get_mut(frame) {
            Some(count) => {
                *count += 1;
                if *count == 1 {
                    seen += 1;
                    if seen == frames {
                        done = Some(started.elapsed());
                    }
                }
            }
            None => foreign += 1,
        }
    }
    if foreign > 0 {
        eprintln!("scaling: warning: {foreign} output records with unknown frame numbers");
    }
    Ok((done, counts))
}

fn seconds(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.2}", d.as_secs_f64()))
}

fn strong_table(options: &Options, rows: &[Row]) {
    let cost_ms = options.cost.as_secs_f64() * 1e3;
    println!();
    println!(
        "Strong scaling: {} frames of {} KB, stand-in detector {cost_ms:.0} ms per frame, \
         {} partitions, broker {}",
        options.frames,
        options.frame_bytes / 1000,
        options.partitions,
        options.brokers
    );
    println!();
    println!(
        "| workers | frames | group formation s | total s | ideal s | total / ideal | \
         speed-up | efficiency | lost | duplicated | reassigned mid-run |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let one = rows.iter().find(|r| r.workers == 1).and_then(|r| r.total);
    for row in rows {
        let ideal = options.cost.as_secs_f64() * row.frames as f64 / row.workers as f64;
        let total = row.total.map(|t| t.as_secs_f64());
        let speedup = one.zip(total).map(|(one, t)| one.as_secs_f64() / t);
        println!(
            "| {} | {} | {:.1} | {} | {ideal:.2} | {} | {} | {} | {} | {} | {} |",
            row.workers,
            row.frames,
            row.formation.as_secs_f64(),
            seconds(row.total),
            total.map_or("-".into(), |t| format!("{:.2}", t / ideal)),
            speedup.map_or("-".into(), |s| format!("{s:.2}")),
            speedup.map_or("-".into(), |s| format!(
                "{:.0}%",
                100.0 * s / row.workers as f64
            )),
            row.lost,
            row.duplicated,
            row.reassignments
        );
    }
}

fn weak_table(options: &Options, rows: &[Row]) {
    let cost_ms = options.cost.as_secs_f64() * 1e3;
    println!();
    println!(
        "Weak scaling: {} frames per worker of {} KB, stand-in detector {cost_ms:.0} ms per \
         frame, {} partitions, broker {}",
        options.weak_frames,
        options.frame_bytes / 1000,
        options.partitions,
        options.brokers
    );
    println!();
    println!(
        "| workers | frames | group formation s | total s | ideal s | total / ideal | \
         vs 1 worker | lost | duplicated | reassigned mid-run |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let one = rows.iter().find(|r| r.workers == 1).and_then(|r| r.total);
    for row in rows {
        let ideal = options.cost.as_secs_f64() * row.frames as f64 / row.workers as f64;
        let total = row.total.map(|t| t.as_secs_f64());
        println!(
            "| {} | {} | {:.1} | {} | {ideal:.2} | {} | {} | {} | {} | {} |",
            row.workers,
            row.frames,
            row.formation.as_secs_f64(),
            seconds(row.total),
            total.map_or("-".into(), |t| format!("{:.2}", t / ideal)),
            one.zip(total).map_or("-".into(), |(one, t)| format!(
                "{:.2}",
                t / one.as_secs_f64()
            )),
            row.lost,
            row.duplicated,
            row.reassignments
        );
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("worker") {
        args.next();
        return worker(args);
    }
    let options = options(args)?;
    println!("{}", harness::machine_line());

    let mut strong = Vec::new();
    let mut weak = Vec::new();
    if options.strong {
        for &workers in &options.workers {
            eprintln!(
                "scaling: strong, {workers} worker(s), {} frames",
                options.frames
            );
            strong.push(run_row(&options, workers, options.frames)?);
        }
        strong_table(&options, &strong);
    }
    if options.weak {
        for &workers in &options.workers {
            let frames = options.weak_frames * workers;
            eprintln!("scaling: weak, {workers} worker(s), {frames} frames");
            weak.push(run_row(&options, workers, frames)?);
        }
        weak_table(&options, &weak);
    }
    let lost: usize = strong.iter().chain(&weak).map(|r| r.lost).sum();
    if lost > 0 {
        return Err(format!("{lost} frames lost"));
    }
    Ok(())
}

fn main() {
    if let Err(err) = run() {
        eprintln!("scaling-bench: {err}");
        std::process::exit(1);
    }
}
