// SPDX-License-Identifier: MIT OR Apache-2.0
//! Live progress of the whole system, one line every `--every` seconds: frames published,
//! frames detected, the detector group's lag, detections per second and frames per second
//! of each worker (from the `NAME-PID-CAMERA` streams `detector-worker` writes), event
//! records per second, the line crossings counted since it started, and restarts of
//! supervised processes (lines a supervisor appends to `--restarts FILE`); the detector
//! group's lag also in seconds (since the capture of the oldest frame it has not finished).
//! Then a line per camera, measured from the records as any reader sees them: latency from
//! capture to each topic (frames, detections, events) as p50/p99 over the last 15 rounds, and
//! the frames lost, duplicated and late in the frames topic (from `gkv-seq`).
//!
//! `demo-status --brokers B [--frames-topic frames] [--annotated-topic annotated]
//!  [--detections-topic detections] [--events-topic events] [--group detectors] [--every 2]`

use std::sync::mpsc;
use std::time::{Duration, Instant};

use gst_kafka_vision_examples::{Args, KafkaClient};
use std::collections::BTreeMap;

use kafkavision::detections::FrameDetections;
use kafkavision::envelope::Envelope;
use kafkavision::events::{Event, EventKind};
use kafkavision::latency::Histogram;
use kafkavision::sequence::{Arrival, Sequence};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

const USAGE: &str = concat!(
    "usage: demo-status [--frames-topic frames] [--annotated-topic annotated] \
     [--detections-topic detections] [--events-topic events] [--group detectors] \
     [--every 2] [--count N] [--restarts FILE] [Kafka client options]\n\n",
    gst_kafka_vision_examples::kafka_options_help!()
);

fn consumer(client: &KafkaClient, group: &str) -> Result<BaseConsumer, String> {
    // librdkafka's default fetch wait (500 ms) would be most of the latency it measures.
    client
        .rdkafka_config(&[
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("fetch.wait.max.ms", "20"),
        ])
        .create()
        .map_err(|e| e.to_string())
}

/// Sum over partitions of the high watermark (records ever written).
fn written(consumer: &BaseConsumer, topic: &str) -> Result<(TopicPartitionList, i64), String> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .map_err(|e| format!("{topic}: {e}"))?;
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len()) as i32;
    let mut tpl = TopicPartitionList::new();
    let mut total = 0;
    for p in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(5))
            .map_err(|e| format!("{topic}/{p}: {e}"))?;
        tpl.add_partition_offset(topic, p, Offset::Offset(high))
            .map_err(|e| e.to_string())?;
        total += high;
    }
    Ok((tpl, total))
}

/// The worker that wrote a record: its `gkv-stream` header `NAME-PID-CAMERA` without the
/// camera (the record key) and the pid.
fn worker_of(message: &impl Message) -> String {
    use rdkafka::message::Headers;
    let stream = message
        .headers()
        .and_then(|h| {
            h.iter()
                .find(|h| h.key == "gkv-stream")
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        })
        .unwrap_or_default();
    let key = message
        .key()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default();
    let without_camera = stream.strip_suffix(&format!("-{key}")).unwrap_or(&stream);
    match without_camera.rsplit_once('-') {
        Some((name, pid)) if pid.chars().all(|c| c.is_ascii_digit()) => name.to_string(),
        _ => without_camera.to_string(),
    }
}

/// Rounds the latency quantiles cover: the start-up backlog should not weigh forever.
const LATENCY_ROUNDS: usize = 15;

/// What one camera's records told so far.
#[derive(Default)]
struct CameraStatus {
    /// Capture to the record being readable, per topic (frames, detections, events), per
    /// round, the newest last; at most [`LATENCY_ROUNDS`].
    rounds: std::collections::VecDeque<[Histogram; 3]>,
    /// Per stream (one run of the camera's sink): the frame numbers seen.
    streams: BTreeMap<String, Sequence>,
    lost: u64,
    duplicated: u64,
    late: u64,
}

impl CameraStatus {
    fn observe(&mut self, hop: usize, ms: f64) {
        if self.rounds.is_empty() {
            self.rounds.push_back(Default::default());
        }
        if let Some(round) = self.rounds.back_mut() {
            round[hop].observe(ms);
        }
    }

    fn next_round(&mut self) {
        self.rounds.push_back(Default::default());
        while self.rounds.len() > LATENCY_ROUNDS {
            self.rounds.pop_front();
        }
    }

    fn line(&self, camera: &str) -> String {
        let mut hops: [Histogram; 3] = Default::default();
        for round in &self.rounds {
            for (all, one) in hops.iter_mut().zip(round) {
                all.merge(one);
            }
        }
        let hops: Vec<String> = ["frames", "detections", "events"]
            .iter()
            .zip(&hops)
            .filter(|(_, histogram)| histogram.count() > 0)
            .map(|(hop, histogram)| {
                let ms = |q| histogram.quantile(q).map_or(0.0, |v| v);
                format!("{hop} p50 {:.0} ms p99 {:.0} ms", ms(0.5), ms(0.99))
            })
            .collect();
        format!(
            "  {camera}: {} | frames lost {}, duplicated {}, late {}",
            hops.join(", "),
            self.lost,
            self.duplicated,
            self.late
        )
    }
}

/// The record's envelope, if it has one.
fn envelope_of(message: &impl Message) -> Option<Envelope> {
    use rdkafka::message::Headers;
    let headers = message.headers()?;
    Envelope::from_headers(headers.iter().map(|h| (h.key, h.value))).ok()?
}

/// Polls `reader` in a thread of its own, each record with the Unix ms it arrived at: the
/// queries each round makes (watermarks, committed offsets, the oldest frame waiting) take
/// up to a second, and records read after them would look that much later than they are.
fn read_in_background(reader: BaseConsumer) -> mpsc::Receiver<(OwnedMessage, i64)> {
    // Bounded: a main loop that stalls holds back the reader, not memory.
    let (sender, receiver) = mpsc::sync_channel(1000);
    std::thread::spawn(move || {
        loop {
            if let Some(Ok(message)) = reader.poll(Duration::from_millis(100)) {
                let arrived_ms = kafkavision::clock::unix_time_ms();
                if sender.send((message.detach(), arrived_ms)).is_err() {
                    return;
                }
            }
        }
    });
    receiver
}

/// The capture time (Unix ms) of the record at `offset`, read with `reader`.
fn captured_at(reader: &BaseConsumer, topic: &str, partition: i32, offset: i64) -> Option<i64> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .ok()?;
    reader.assign(&tpl).ok()?;
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        if let Some(Ok(message)) = reader.poll(Duration::from_millis(100)) {
            let envelope = envelope_of(&message)?;
            let ns = envelope.capture_time_ns.or(envelope.sink_time_ns)?;
            return Some((ns / 1_000_000) as i64);
        }
    }
    None
}

fn run() -> Result<(), String> {
    let args = Args::parse(USAGE);
    let client = KafkaClient::from_args(&args)?;
    let frames_topic = args.get("frames-topic", "frames");
    let annotated_topic = args.get("annotated-topic", "annotated");
    let detections_topic = args.get("detections-topic", "detections");
    let every = Duration::from_secs_f64(args.number("every", 2.0));
    let count: u64 = args.number("count", 0);
    // Asks the detector group's committed offsets without joining it.
    let group = consumer(&client, &args.get("group", "detectors"))?;
    // Reads new detections records to count detections per second.
    let reader = consumer(&client, "demo-status")?;
    let (mut tpl, _) = written(&reader, &detections_topic)?;
    // And new frames, for their latency and sequence numbers.
    if let Ok((frames, _)) = written(&reader, &frames_topic) {
        for e in frames.elements() {
            tpl.add_partition_offset(e.topic(), e.partition(), e.offset())
                .map_err(|e| e.to_string())?;
        }
    }
    // Reads the oldest frame the detector group has not finished, for its age.
    let oldest_reader = consumer(&client, "demo-status-lag")?;
    let mut cameras: BTreeMap<String, CameraStatus> = BTreeMap::new();
    // And new events, when the workers count lines (the topic may not exist).
    let events_topic = args.get("events-topic", "events");
    if let Ok((events, _)) = written(&reader, &events_topic) {
        for e in events.elements() {
            tpl.add_partition_offset(e.topic(), e.partition(), e.offset())
                .map_err(|e| e.to_string())?;
        }
    }
    reader.assign(&tpl).map_err(|e| e.to_string())?;
    let arrivals = read_in_background(reader);
    // (line, direction) -> crossings since start.
    let mut crossings: BTreeMap<(String, &'static str), u64> = BTreeMap::new();

    let started = Instant::now();
    let (mut last_published, mut last_detected) = (0i64, 0i64);
    for round in 1.. {
        let window = Instant::now();
        let (mut detections, mut events) = (0u64, 0u64);
        // Frames each worker detected in this window.
        let mut per_worker: BTreeMap<String, u64> = BTreeMap::new();
        while let Some(left) = every.checked_sub(window.elapsed()) {
            let (message, arrived_ms) = match arrivals.recv_timeout(left) {
                Ok(arrival) => arrival,
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("the reader stopped".into());
                }
            };
            let payload = message.payload().unwrap_or_default();
            let envelope = envelope_of(&message);
            let camera = message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default();
            let hop = if message.topic() == frames_topic {
                0
            } else if message.topic() == events_topic {
                2
            } else {
                1
            };
            if let Some(envelope) = &envelope
                && !camera.is_empty()
            {
                let status = cameras.entry(camera.clone()).or_default();
                if let Some(ns) = envelope.capture_time_ns {
                    let age_ms = arrived_ms - (ns / 1_000_000) as i64;
                    status.observe(hop, age_ms as f64);
                }
                if hop == 0 {
                    let arrival = status
                        .streams
                        .entry(envelope.stream_id.clone())
                        .or_insert_with(|| Sequence::starting_at(envelope.seq, message.partition()))
                        .arrive(envelope.seq, message.partition());
                    match arrival {
                        Arrival::Next => {}
                        Arrival::Unordered { retracted } => {
                            status.lost = status.lost.saturating_sub(retracted)
                        }
                        Arrival::After { missing } => status.lost += missing,
                        Arrival::Duplicate => status.duplicated += 1,
                        Arrival::Late => {
                            status.lost = status.lost.saturating_sub(1);
                            status.late += 1;
                        }
                    }
                    // A camera restarted a few times keeps a few streams, not all.
                    while status.streams.len() > 8 {
                        let oldest = status.streams.keys().next().cloned().unwrap_or_default();
                        status.streams.remove(&oldest);
                    }
                }
            }
            if hop == 0 {
                continue;
            }
            if message.topic() == events_topic {
                if let Ok(event) = Event::from_json(payload) {
                    events += 1;
                    if event.kind == EventKind::LineCrossed {
                        let direction = event.direction.map_or("?", |d| d.as_str());
                        *crossings
                            .entry((event.place().to_string(), direction))
                            .or_default() += 1;
                    }
                }
            } else if let Ok(frame) = FrameDetections::from_json(payload) {
                detections += frame.detections.len() as u64;
                *per_worker.entry(worker_of(&message)).or_default() += 1;
            }
        }
        let (frames_tpl, published) = written(&group, &frames_topic)?;
        let (_, detected) = written(&group, &annotated_topic)?;
        let committed = group
            .committed_offsets(frames_tpl.clone(), Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        let mut oldest_waiting_ms: Option<i64> = None;
        let lag: i64 = frames_tpl
            .elements()
            .iter()
            .map(|e| {
                let high = e.offset().to_raw().unwrap_or(0);
                let done = committed
                    .find_partition(e.topic(), e.partition())
                    .and_then(|c| c.offset().to_raw())
                    .filter(|o| *o >= 0)
                    .unwrap_or(0);
                if high > done
                    && let Some(at) = captured_at(&oldest_reader, e.topic(), e.partition(), done)
                {
                    oldest_waiting_ms = Some(oldest_waiting_ms.map_or(at, |o| o.min(at)));
                }
                (high - done).max(0)
            })
            .sum();
        let lag_seconds = oldest_waiting_ms.map_or(0.0, |at| {
            (kafkavision::clock::unix_time_ms() - at) as f64 / 1000.0
        });
        let secs = every.as_secs_f64();
        let workers: Vec<String> = per_worker
            .iter()
            .map(|(w, n)| format!("{w} {:.1}/s", *n as f64 / secs))
            .collect();
        let restarts = std::fs::read_to_string(args.get("restarts", "/dev/null"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>();
        let counted: Vec<String> = crossings
            .iter()
            .map(|((line, direction), n)| format!("{line} {direction} {n}"))
            .collect();
        println!(
            "[{:>5.0} s] published {published} ({:.1}/s) | detected {detected} ({:.1}/s) | \
             detector lag {lag} frames ({lag_seconds:.1} s) | {:.1} detections/s | \
             {:.1} events/s{}{}{}",
            started.elapsed().as_secs_f64(),
            (published - last_published) as f64 / secs,
            (detected - last_detected) as f64 / secs,
            detections as f64 / secs,
            events as f64 / secs,
            if counted.is_empty() {
                String::new()
            } else {
                format!(" | crossed: {}", counted.join(", "))
            },
            if workers.is_empty() {
                String::new()
            } else {
                format!(" | workers: {}", workers.join(", "))
            },
            if restarts.is_empty() {
                String::new()
            } else {
                format!(" | restarted: {}", restarts.join(", "))
            }
        );
        for (camera, status) in &mut cameras {
            println!("{}", status.line(camera));
            status.next_round();
        }
        (last_published, last_detected) = (published, detected);
        if count > 0 && round >= count {
            break;
        }
    }
    Ok(())
}

fn main() {
    if let Err(err) = run() {
        eprintln!("demo-status: {err}");
        std::process::exit(1);
    }
}
