// SPDX-License-Identifier: MIT OR Apache-2.0
//! `kafka-bench`: throughput of `kafkasink` → broker → `kafkasrc` beside a bare rdkafka
//! producer and consumer moving the same payloads through the same broker with the same
//! settings, in the same run; then the latency from `kafkasink` to `kafkasrc` output at
//! 30 frames/s. Prints Markdown tables.
//!
//! Usage: `kafka-bench [--brokers HOST:PORT] [--frames N] [--rounds R] [--latency-seconds S]`
//! (`scripts/bench kafka` starts a private broker and runs it).

mod harness;

use std::time::{Duration, Instant};

use gst::prelude::*;
use harness::PRODUCER_CONFIG;
use kafkavision::clock::unix_time_ns as unix_ns;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DefaultProducerContext, Producer, ThreadedProducer,
};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use testkit::{client_config, try_create_topic_with, unique_name};

/// Topics hold raw 720p frames (1.4 MB): above a broker's 1 MB default.
const LARGE_RECORDS: &[(&str, &str)] = &[("max.message.bytes", "4000000")];

/// kafkasrc's defaults without a group (librdkafka needs a group id for assign()).
const BARE_CONSUMER_CONFIG: &str =
    "fetch.wait.max.ms=20,group.id=kafka-bench-reader,enable.auto.commit=false";

struct Options {
    brokers: String,
    frames: usize,
    rounds: usize,
    latency_seconds: u64,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        brokers: std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()),
        frames: 300,
        rounds: 3,
        latency_seconds: 10,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--brokers" => options.brokers = value()?,
            "--frames" => {
                options.frames = value()?.parse().map_err(|e| format!("--frames: {e}"))?
            }
            "--rounds" => {
                options.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?
            }
            "--latency-seconds" => {
                options.latency_seconds = value()?
                    .parse()
                    .map_err(|e| format!("--latency-seconds: {e}"))?
            }
            "--help" | "-h" => {
                return Err(
                    "usage: kafka-bench [--brokers HOST:PORT] [--frames N] [--rounds R] \
                            [--latency-seconds S]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other}; see --help")),
        }
    }
    Ok(options)
}

/// A ~100 KB JPEG (noise compresses badly) and a 1280x720 I420 frame, from GStreamer.
fn payload(description: &'static str) -> Result<(gst::Caps, gst::Buffer), String> {
    let pipeline = gst::parse::launch(&format!("{description} ! appsink name=out"))
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let sample = sink
        .pull_sample()
        .map_err(|_| "no payload frame".to_string())?;
    pipeline.set_state(gst::State::Null).unwrap();
    Ok((
        sample.caps().unwrap().to_owned(),
        sample.buffer_owned().unwrap(),
    ))
}

/// Seconds to send `frames` copies of `bytes` with a bare ThreadedProducer (what
/// kafkasink uses inside), until all are acknowledged.
fn bare_produce(brokers: &str, topic: &str, bytes: &[u8], frames: usize) -> Result<f64, String> {
    let producer: ThreadedProducer<DefaultProducerContext> =
        client_config(brokers, PRODUCER_CONFIG)?
            .create()
            .map_err(|e| e.to_string())?;
    producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    for _ in 0..frames {
        let mut record = BaseRecord::<(), [u8]>::to(topic).payload(bytes);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    std::thread::sleep(Duration::from_millis(2));
                    record = back;
                }
                Err((e, _)) => return Err(e.to_string()),
            }
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| e.to_string())?;
    Ok(started.elapsed().as_secs_f64())
}

/// Seconds for `appsrc ! kafkasink` to write `frames` copies of `buffer`, EOS included.
fn sink_produce(
    brokers: &str,
    topic: &str,
    caps: &gst::Caps,
    buffer: &gst::Buffer,
    frames: usize,
) -> Result<f64, String> {
    let pipeline = harness::pipeline(
        "appsrc name=src format=time block=true max-bytes=20000000 ! kafkasink name=sink",
        &[
            ("sink", "brokers", &brokers),
            ("sink", "topic", &topic),
            ("sink", "config", &PRODUCER_CONFIG),
        ],
    )?;
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    src.set_caps(Some(caps));
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    // Every frame shares the payload's memory (as the bare producer reuses its bytes):
    // only the buffer's metadata is new.
    let memory = buffer.all_memory().ok_or("empty payload")?;
    for i in 0..frames {
        let mut frame = gst::Buffer::new();
        {
            let frame = frame.get_mut().unwrap();
            frame.append_memory(memory.clone());
            frame.set_pts(gst::ClockTime::from_nseconds(33_333_333) * i as u64);
        }
        src.push_buffer(frame).map_err(|e| format!("push: {e:?}"))?;
    }
    src.end_of_stream().map_err(|e| format!("eos: {e:?}"))?;
    let result = harness::wait_eos(&pipeline, 300).map(|()| started.elapsed().as_secs_f64());
    pipeline.set_state(gst::State::Null).unwrap();
    result
}

/// Seconds between the first and the last of `frames` records, bare BaseConsumer.
fn bare_consume(brokers: &str, topic: &str, frames: usize) -> Result<f64, String> {
    let consumer: BaseConsumer = client_config(brokers, BARE_CONSUMER_CONFIG)?
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(|e| e.to_string())?;
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let mut first = None;
    let mut received = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while received < frames {
        if Instant::now() > deadline {
            return Err("bare consumer timed out".into());
        }
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.map_err(|e| e.to_string())?;
            std::hint::black_box(message.payload());
            first.get_or_insert_with(Instant::now);
            received += 1;
        }
    }
    Ok(first.unwrap().elapsed().as_secs_f64())
}

/// Seconds between the first and the last of `frames` buffers out of `kafkasrc`.
fn src_consume(brokers: &str, topic: &str, frames: usize) -> Result<f64, String> {
    let pipeline = harness::pipeline(
        "kafkasrc name=src start-from=earliest ! appsink name=out sync=false",
        &[
            ("src", "brokers", &brokers),
            ("src", "topic", &topic),
            ("src", "num-buffers", &(frames as i32)),
        ],
    )?;
    let sink = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let times = std::sync::Arc::new(std::sync::Mutex::new((None::<Instant>, None::<Instant>)));
    let store = times.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let _ = sink.pull_sample();
                let mut t = store.lock().unwrap();
                let now = Instant::now();
                t.0.get_or_insert(now);
                t.1 = Some(now);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let result = harness::wait_eos(&pipeline, 300);
    pipeline.set_state(gst::State::Null).unwrap();
    result?;
    let (first, last) = *times.lock().unwrap();
    Ok((last.unwrap() - first.unwrap()).as_secs_f64())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

struct Row {
    payload: String,
    direction: &'static str,
    ours_fps: f64,
    bare_fps: f64,
    mb_per_frame: f64,
}

fn throughput(
    options: &Options,
    name: &str,
    caps: &gst::Caps,
    buffer: &gst::Buffer,
) -> Result<Vec<Row>, String> {
    let bytes = buffer.map_readable().unwrap().to_vec();
    let n = options.frames;
    let (mut sink_s, mut bare_p_s, mut src_s, mut bare_c_s) = (vec![], vec![], vec![], vec![]);
    for round in 0..options.rounds {
        eprintln!("{name}: round {}/{}", round + 1, options.rounds);
        let ours = unique_name("bench-ours");
        let bare = unique_name("bench-bare");
        try_create_topic_with(&options.brokers, "", &ours, 1, LARGE_RECORDS)?;
        try_create_topic_with(&options.brokers, "", &bare, 1, LARGE_RECORDS)?;
        // Alternate who goes first, so neither always gets the warmer broker.
        if round % 2 == 0 {
            sink_s.push(sink_produce(&options.brokers, &ours, caps, buffer, n)?);
            bare_p_s.push(bare_produce(&options.brokers, &bare, &bytes, n)?);
            src_s.push(src_consume(&options.brokers, &ours, n)?);
            bare_c_s.push(bare_consume(&options.brokers, &bare, n)?);
        } else {
            bare_p_s.push(bare_produce(&options.brokers, &bare, &bytes, n)?);
            sink_s.push(sink_produce(&options.brokers, &ours, caps, buffer, n)?);
            bare_c_s.push(bare_consume(&options.brokers, &bare, n)?);
            src_s.push(src_consume(&options.brokers, &ours, n)?);
        }
    }
    let mb = bytes.len() as f64 / 1e6;
    Ok(vec![
        Row {
            payload: name.to_string(),
            direction: "produce: kafkasink vs ThreadedProducer",
            ours_fps: n as f64 / median(sink_s),
            bare_fps: n as f64 / median(bare_p_s),
            mb_per_frame: mb,
        },
        Row {
            payload: name.to_string(),
            direction: "consume: kafkasrc vs BaseConsumer",
            ours_fps: (n - 1) as f64 / median(src_s),
            bare_fps: (n - 1) as f64 / median(bare_c_s),
            mb_per_frame: mb,
        },
    ])
}

/// Frames left out of the latency figures on both paths: the first second, while each
/// producer connects and initialises its idempotent session.
const LATENCY_WARMUP_FRAMES: usize = 30;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Milliseconds from `kafkasink` receiving a frame to `kafkasrc` pushing it, at 30 frames/s.
fn element_latency(options: &Options) -> Result<Vec<f64>, String> {
    let topic = unique_name("bench-latency");
    try_create_topic_with(&options.brokers, "", &topic, 1, LARGE_RECORDS)?;
    let frames = options.latency_seconds * 30;
    let reader = harness::pipeline(
        "kafkasrc name=src stop-on-eos=true ! appsink name=out sync=false",
        &[
            ("src", "brokers", &options.brokers),
            ("src", "topic", &topic),
        ],
    )?;
    let sink = reader
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let latencies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = latencies.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let now = unix_ns();
                let sent = sample
                    .buffer()
                    .unwrap()
                    .iter_meta::<gst::ReferenceTimestampMeta>()
                    .find(|m| m.reference().structure(0).unwrap().name() == "timestamp/x-unix")
                    .map(|m| m.timestamp().nseconds());
                if let Some(sent) = sent {
                    store
                        .lock()
                        .unwrap()
                        .push((now.saturating_sub(sent)) as f64 / 1e6);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    reader
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_secs(2)); // the reader is polling before frames flow
    let writer = harness::pipeline(
        "videotestsrc name=camera is-live=true pattern=ball ! \
         video/x-raw,width=640,height=480,framerate=30/1 ! jpegenc ! kafkasink name=sink",
        &[
            ("camera", "num-buffers", &(frames as i32)),
            ("sink", "brokers", &options.brokers),
            ("sink", "topic", &topic),
        ],
    )?;
    writer
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let written = harness::wait_eos(&writer, 300);
    writer.set_state(gst::State::Null).unwrap();
    written?;
    let read = harness::wait_eos(&reader, 300);
    reader.set_state(gst::State::Null).unwrap();
    read?;
    let mut values: Vec<f64> = latencies
        .lock()
        .unwrap()
        .iter()
        .skip(LATENCY_WARMUP_FRAMES)
        .copied()
        .collect();
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok(values)
}

/// The same hop with bare clients: a producer at 30 frames/s stamping the send time in a
/// header, a consumer measuring on arrival.
fn bare_latency(options: &Options, bytes: &[u8]) -> Result<Vec<f64>, String> {
    let topic = unique_name("bench-latency-bare");
    try_create_topic_with(&options.brokers, "", &topic, 1, LARGE_RECORDS)?;
    let frames = options.latency_seconds * 30;
    let consumer: BaseConsumer = client_config(&options.brokers, BARE_CONSUMER_CONFIG)?
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)
        .map_err(|e| e.to_string())?;
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let brokers = options.brokers.clone();
    let payload = bytes.to_vec();
    let topic_for_producer = topic.clone();
    let producer_thread = std::thread::spawn(move || -> Result<(), String> {
        let producer: BaseProducer = client_config(&brokers, PRODUCER_CONFIG)?
            .create()
            .map_err(|e| e.to_string())?;
        // Like kafkasink, which gets frames as soon as it has started.
        let started = Instant::now();
        for i in 0..frames {
            let due = started + Duration::from_nanos(i * 33_333_333);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let sent = unix_ns().to_string();
            let headers = OwnedHeaders::new().insert(Header {
                key: "sent",
                value: Some(&sent),
            });
            let record = BaseRecord::<(), [u8]>::to(&topic_for_producer)
                .payload(&payload)
                .headers(headers);
            producer.send(record).map_err(|(e, _)| e.to_string())?;
            producer.poll(Duration::ZERO);
        }
        producer
            .flush(Duration::from_secs(30))
            .map_err(|e| e.to_string())
    });
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(options.latency_seconds + 60);
    while values.len() < frames as usize && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.map_err(|e| e.to_string())?;
            let now = unix_ns();
            let sent: u64 = message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "sent"))
                .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse().ok())
                .ok_or("record without send time")?;
            values.push(now.saturating_sub(sent) as f64 / 1e6);
        }
    }
    producer_thread.join().unwrap()?;
    let mut values: Vec<f64> = values.into_iter().skip(LATENCY_WARMUP_FRAMES).collect();
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok(values)
}

fn run() -> Result<(), String> {
    let options = options()?;
    println!("{}", harness::machine_line());
    gst::init().map_err(|e| e.to_string())?;
    gstkafka::plugin_register_static().map_err(|e| e.to_string())?;

    let (jpeg_caps, jpeg) = payload(
        "videotestsrc pattern=snow num-buffers=1 ! video/x-raw,width=400,height=300 ! jpegenc quality=90",
    )?;
    let (raw_caps, raw) = payload(
        "videotestsrc pattern=snow num-buffers=1 ! video/x-raw,format=I420,width=1280,height=720",
    )?;

    let mut rows = throughput(
        &options,
        &format!("JPEG {} KB", jpeg.size() / 1000),
        &jpeg_caps,
        &jpeg,
    )?;
    rows.extend(throughput(&options, "raw I420 1280x720", &raw_caps, &raw)?);

    println!();
    println!(
        "Throughput, {} frames per run, median of {} runs, broker {}",
        options.frames, options.rounds, options.brokers
    );
    println!();
    println!(
        "| payload | direction | ours frames/s | ours MB/s | bare frames/s | bare MB/s | ratio |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |",
            row.payload,
            row.direction,
            row.ours_fps,
            row.ours_fps * row.mb_per_frame,
            row.bare_fps,
            row.bare_fps * row.mb_per_frame,
            row.ours_fps / row.bare_fps
        );
    }

    eprintln!(
        "latency: {} s at 30 frames/s, elements then bare clients",
        options.latency_seconds
    );
    let ours = element_latency(&options)?;
    let bare = bare_latency(&options, &jpeg.map_readable().unwrap())?;
    println!();
    println!(
        "Latency at 30 frames/s, 640x480 JPEG ({} s each)",
        options.latency_seconds
    );
    println!();
    println!("| path | frames | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for (name, values) in [
        ("kafkasink render → kafkasrc push", &ours),
        ("bare producer send → bare consumer poll", &bare),
    ] {
        if values.is_empty() {
            return Err(format!("no latency samples for {name}"));
        }
        println!(
            "| {name} | {} | {:.1} | {:.1} | {:.1} |",
            values.len(),
            percentile(values, 0.5),
            percentile(values, 0.99),
            values[values.len() - 1]
        );
    }
    Ok(())
}

fn main() {
    if let Err(err) = run() {
        eprintln!("kafka-bench: {err}");
        std::process::exit(1);
    }
}
