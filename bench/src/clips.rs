// SPDX-License-Identifier: MIT OR Apache-2.0
//! What finding a clip's start costs at a long retention. Writes `--minutes` of one
//! camera at `--fps` (records of `--frame-bytes`, a keyframe every `--gop` frames, Kafka
//! timestamps equal to their capture times, spread over the minutes before now) into a
//! topic, then measures, at several ages: the broker's ListOffsets by time (nisshi scans
//! the partition from its oldest record: no timestamp index), a watermark query beside it
//! (the cheapest round trip, the baseline), and `kafkasrc` reading a 10 s window with
//! `start-keyframe=previous` and `next`: time to the first buffer and to end-of-stream.
//! Then the time from an event to its clip on disk: a live camera at `--fps`, an event
//! every 5 s for `--live-seconds`, the `clipper` program (`--bin-dir`) cutting each with
//! `--post` seconds after it; the goal is `post` plus at most 2 s.

mod harness;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gst::prelude::*;
use kafkavision::{Envelope, Flags};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use testkit::{client_config, try_create_topic_with, unique_name};

const USAGE: &str = "clips-bench --brokers HOST:PORT --bin-dir target/release [--minutes 60] \
[--fps 30] [--frame-bytes 9500] [--gop 30] [--lookups 5] [--live-seconds 60] [--post 5]
  --minutes 0: only the time from an event to its clip";

const WINDOW_MS: i64 = 10_000;
const CAPS: &str = "video/x-h264, stream-format=(string)byte-stream, alignment=(string)au, \
                    width=(int)1280, height=(int)720, framerate=(fraction)30/1";

struct Options {
    brokers: String,
    minutes: u64,
    fps: u64,
    frame_bytes: usize,
    gop: u64,
    lookups: usize,
    bin_dir: std::path::PathBuf,
    live_seconds: u64,
    post_seconds: u64,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        brokers: std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()),
        minutes: 60,
        fps: 30,
        frame_bytes: 9500,
        gop: 30,
        lookups: 5,
        bin_dir: "target/release".into(),
        live_seconds: 60,
        post_seconds: 5,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        let number = |text: String| {
            text.parse::<u64>()
                .map_err(|e| format!("{arg} {text}: {e}"))
        };
        match arg.as_str() {
            "--brokers" => options.brokers = value()?,
            "--minutes" => options.minutes = number(value()?)?,
            "--fps" => options.fps = number(value()?)?,
            "--frame-bytes" => options.frame_bytes = number(value()?)? as usize,
            "--gop" => options.gop = number(value()?)?,
            "--lookups" => options.lookups = number(value()?)? as usize,
            "--bin-dir" => options.bin_dir = value()?.into(),
            "--live-seconds" => options.live_seconds = number(value()?)?,
            "--post" => options.post_seconds = number(value()?)?,
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}; see --help")),
        }
    }
    if options.fps == 0 || options.gop == 0 || options.lookups == 0 {
        return Err("--fps, --gop and --lookups must be at least 1".into());
    }
    if options.live_seconds < options.post_seconds + 10 {
        return Err("--live-seconds must be at least --post + 10".into());
    }
    if options.frame_bytes < 8 {
        return Err("--frame-bytes must be at least 8".into());
    }
    Ok(options)
}

fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Writes the camera's frames, captured from `first_ms` on; returns the MB/s written.
fn write_camera(options: &Options, topic: &str, first_ms: i64) -> Result<f64, String> {
    let producer: ThreadedProducer<DefaultProducerContext> =
        client_config(&options.brokers, harness::PRODUCER_CONFIG)?
            .set("queue.buffering.max.kbytes", "262144")
            .create()
            .map_err(|e| e.to_string())?;
    let frames = options.minutes * 60 * options.fps;
    // An Annex-B start code, then bytes that change every frame (not compressible).
    let mut value = vec![0u8; options.frame_bytes];
    value[..4].copy_from_slice(&[0, 0, 0, 1]);
    let started = Instant::now();
    for seq in 0..frames {
        let capture_ms = first_ms + (seq * 1000 / options.fps) as i64;
        send_frame(&producer, options, topic, seq, capture_ms, &mut value);
        if seq > 0 && seq.is_multiple_of(options.fps * 600) {
            eprintln!(
                "clips-bench: {} of {} minutes written",
                seq / options.fps / 60,
                options.minutes
            );
        }
    }
    producer
        .flush(Duration::from_secs(600))
        .map_err(|e| e.to_string())?;
    let bytes = frames as f64 * options.frame_bytes as f64;
    Ok(bytes / 1e6 / started.elapsed().as_secs_f64())
}

/// Writes frame `seq` of camera cam1, captured at `capture_ms`, with `value` (whose bytes
/// after the start code are changed to the frame's own), waiting while the queue is full.
fn send_frame(
    producer: &ThreadedProducer<DefaultProducerContext>,
    options: &Options,
    topic: &str,
    seq: u64,
    capture_ms: i64,
    value: &mut [u8],
) {
    for (i, byte) in value[4..].iter_mut().enumerate() {
        *byte = (seq as usize).wrapping_mul(31).wrapping_add(i) as u8;
    }
    let mut envelope = Envelope::buffer("cam1-bench", seq, Some(CAPS.into()));
    envelope.pts = Some(seq * 1_000_000_000 / options.fps);
    if !seq.is_multiple_of(options.gop) {
        envelope.flags = Flags::DELTA_UNIT;
    }
    envelope.capture_time_ns = Some(capture_ms as u64 * 1_000_000);
    let mut headers = OwnedHeaders::new();
    for (name, text) in envelope.to_headers() {
        headers = headers.insert(Header {
            key: name,
            value: Some(text.as_bytes()),
        });
    }
    let mut record = BaseRecord::<str, [u8]>::to(topic)
        .key("cam1")
        .payload(&*value)
        .headers(headers)
        .timestamp(capture_ms);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Median ms of `lookups` ListOffsets by time at `time_ms`, and the offset found; and of as
/// many watermark queries.
fn lookup(
    consumer: &BaseConsumer,
    topic: &str,
    time_ms: i64,
    lookups: usize,
) -> Result<(f64, i64, f64), String> {
    let mut by_time = Vec::new();
    let mut watermarks = Vec::new();
    let mut found = -1;
    for _ in 0..lookups {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(time_ms))
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let offsets = consumer
            .offsets_for_times(tpl, Duration::from_secs(120))
            .map_err(|e| e.to_string())?;
        by_time.push(started.elapsed().as_secs_f64() * 1e3);
        if let Some(Offset::Offset(o)) = offsets.elements().first().map(|e| e.offset()) {
            found = o;
        }
        let started = Instant::now();
        consumer
            .fetch_watermarks(topic, 0, Duration::from_secs(30))
            .map_err(|e| e.to_string())?;
        watermarks.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok((median(by_time), found, median(watermarks)))
}

/// `kafkasrc` reads cam1's window from `from_ms`: ms to the first buffer and to EOS, the
/// frames read and how far before `from_ms` the first was captured.
fn read_window(
    options: &Options,
    topic: &str,
    from_ms: i64,
    start_keyframe: &str,
) -> Result<(f64, f64, u64, f64), String> {
    let pipeline = harness::pipeline(
        "kafkasrc name=src ! fakesink name=sink sync=false signal-handoffs=true",
        &[
            ("src", "brokers", &options.brokers),
            ("src", "topic", &topic),
            ("src", "key", &"cam1"),
            ("src", "start-from", &from_ms.to_string()),
            ("src", "stop-at", &(from_ms + WINDOW_MS).to_string()),
        ],
    )?;
    let src = pipeline.by_name("src").unwrap();
    src.set_property_from_str("start-keyframe", start_keyframe);
    let first: std::sync::Arc<std::sync::Mutex<Option<(Instant, i64)>>> = Default::default();
    let frames = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let (first, frames) = (first.clone(), frames.clone());
        pipeline
            .by_name("sink")
            .unwrap()
            .connect("handoff", false, move |values| {
                let buffer = values[1].get::<gst::Buffer>().ok()?;
                frames.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut first = first.lock().unwrap();
                if first.is_none() {
                    let capture_ms = buffer
                        .iter_meta::<gst::ReferenceTimestampMeta>()
                        .find(|m| m.reference().structure(0).unwrap().name() == "timestamp/x-unix")
                        .map_or(0, |m| (m.timestamp().nseconds() / 1_000_000) as i64);
                    *first = Some((Instant::now(), capture_ms));
                }
                None
            });
    }
    let started = Instant::now();
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let bus = pipeline.bus().unwrap();
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(300),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .ok_or("the window read did not end within 300 s")?;
    let to_eos = started.elapsed().as_secs_f64() * 1e3;
    pipeline.set_state(gst::State::Null).ok();
    if let gst::MessageView::Error(err) = message.view() {
        return Err(format!("window read failed: {}", err.error()));
    }
    let (first_at, first_capture_ms) = first.lock().unwrap().ok_or("no frame read")?;
    Ok((
        (first_at - started).as_secs_f64() * 1e3,
        to_eos,
        frames.load(std::sync::atomic::Ordering::Relaxed),
        (from_ms - first_capture_ms) as f64 / 1e3,
    ))
}

/// A live camera, an event every 5 s and the clipper: for each event, how long after
/// `event + post` its clip was on disk (its index line written), and its frames.
fn event_to_clip(options: &Options) -> Result<(), String> {
    let frames_topic = unique_name("clips-bench-live");
    let events_topic = unique_name("clips-bench-events");
    for topic in [&frames_topic, &events_topic] {
        try_create_topic_with(
            &options.brokers,
            "",
            topic,
            1,
            &[("retention.ms", "3600000")],
        )?;
    }
    let dir = std::env::temp_dir().join(unique_name("clips-bench"));
    let clipper_path = options.bin_dir.join("clipper");
    let mut clipper = std::process::Command::new(&clipper_path)
        .args([
            "--brokers",
            &options.brokers,
            "--frames-topic",
            &frames_topic,
        ])
        .args(["--events-topic", &events_topic, "--group", &events_topic])
        .args(["--pre", "10", "--post", &options.post_seconds.to_string()])
        .arg("--dir")
        .arg(&dir)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", clipper_path.display()))?;

    let producer: ThreadedProducer<DefaultProducerContext> =
        client_config(&options.brokers, harness::PRODUCER_CONFIG)?
            .create()
            .map_err(|e| e.to_string())?;
    // Real H.264 this time (clips are parsed and muxed): camera-sim's ball at 720p,
    // encoded before the camera starts.
    let frames = options.live_seconds * options.fps;
    eprintln!("clips-bench: encoding {frames} frames of 720p H.264");
    let camera = testkit::EncodedCamera::encode(frames, options.fps, options.gop, 1280, 720);
    let started_ms = unix_now_ms();
    let mut events: Vec<(String, i64)> = Vec::new();
    let mut clips: Vec<(String, i64, u64)> = Vec::new();
    let mut seen = 0;
    let post_ms = (options.post_seconds * 1000) as i64;
    let last_event_ms = (options.live_seconds as i64 - 5) * 1000 - post_ms;
    for seq in 0..frames + 10 * options.fps {
        let capture_ms = started_ms + (seq * 1000 / options.fps) as i64;
        while unix_now_ms() < capture_ms {
            std::thread::sleep(Duration::from_millis(1));
        }
        if seq < frames {
            let ((key, value, headers), timestamp) = camera.record("cam1", seq, capture_ms);
            let mut owned = OwnedHeaders::new();
            for (name, header) in &headers {
                owned = owned.insert(Header {
                    key: name,
                    value: Some(header.as_slice()),
                });
            }
            let mut record = BaseRecord::<str, [u8]>::to(&frames_topic)
                .key(key)
                .payload(&value)
                .headers(owned);
            if let Some(ms) = timestamp {
                record = record.timestamp(ms);
            }
            producer.send(record).map_err(|(e, _)| e.to_string())?;
        }
        let since_ms = capture_ms - started_ms;
        if seq.is_multiple_of(5 * options.fps) && since_ms >= 5_000 && since_ms <= last_event_ms {
            let id = format!("{:016x}", events.len() + 1);
            let mut event = kafkavision::events::Event::new(
                kafkavision::events::EventKind::LineCrossed,
                1,
                "car",
            );
            event.camera = Some("cam1".into());
            event.line = Some("gate".into());
            event.capture_time_ns = Some(capture_ms as u64 * 1_000_000);
            event.event_id = Some(id.clone());
            let json = event.to_json();
            producer
                .send(
                    BaseRecord::<str, [u8]>::to(&events_topic)
                        .key("cam1")
                        .payload(&json),
                )
                .map_err(|(e, _)| e.to_string())?;
            events.push((id, capture_ms));
        }
        let index = gst_kafka_vision_examples::clips::read_index(&dir).unwrap_or_default();
        for entry in &index[seen..] {
            clips.push((
                entry.event_id.clone(),
                unix_now_ms() - (entry.event_ms + post_ms),
                entry.frames,
            ));
        }
        seen = index.len();
    }
    let _ = clipper.kill();
    let _ = clipper.wait();
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "\nEvent to clip on disk: a live camera at {} frames/s, an event every 5 s, clipper \
         --pre 10 --post {} (the goal: on disk at most 2 s after event + post)\n",
        options.fps, options.post_seconds
    );
    println!("| event | frames in clip | on disk after event + post, ms |");
    println!("|---|---:|---:|");
    for (id, _) in &events {
        match clips.iter().find(|(clip, ..)| clip == id) {
            Some((_, after_ms, frames)) => println!("| {id} | {frames} | {after_ms} |"),
            None => println!("| {id} | no clip within the run | |"),
        }
    }
    let mut after: Vec<f64> = clips.iter().map(|(_, ms, _)| *ms as f64).collect();
    if !after.is_empty() {
        after.sort_by(f64::total_cmp);
        println!(
            "\n{} of {} events clipped; after event + post: median {:.0} ms, max {:.0} ms",
            clips.len(),
            events.len(),
            median(after.clone()),
            after.last().unwrap()
        );
    }
    Ok(())
}

fn run(options: &Options) -> Result<(), String> {
    gst::init().map_err(|e| e.to_string())?;
    gstkafka::plugin_register_static().map_err(|e| e.to_string())?;
    println!("{}", harness::machine_line());
    // --minutes 0: the event-to-clip part alone.
    if options.minutes == 0 {
        return event_to_clip(options);
    }
    let topic = unique_name("clips-bench");
    // Kept for two days: nothing written here expires during the bench.
    try_create_topic_with(
        &options.brokers,
        "",
        &topic,
        1,
        &[("retention.ms", "172800000")],
    )?;
    let span_ms = (options.minutes * 60_000) as i64;
    let first_ms = unix_now_ms() - span_ms;
    let frames = options.minutes * 60 * options.fps;
    eprintln!(
        "clips-bench: writing {frames} frames of {} bytes ({:.2} GB)",
        options.frame_bytes,
        frames as f64 * options.frame_bytes as f64 / 1e9
    );
    let mb_s = write_camera(options, &topic, first_ms)?;
    println!(
        "\n{} minutes of one camera at {} frames/s ({frames} records of {} bytes, a keyframe \
         every {} frames) written at {mb_s:.1} MB/s; broker at {}\n",
        options.minutes, options.fps, options.frame_bytes, options.gop, options.brokers
    );

    let consumer: BaseConsumer = client_config(&options.brokers, harness::READER_CONFIG)?
        .create()
        .map_err(|e| e.to_string())?;
    println!(
        "| time looked up | offset found | ListOffsets by time ms (median of {}) | watermarks ms | \
         kafkasrc previous: first frame ms / EOS ms / frames / pre-roll s | next: first frame \
         ms / EOS ms / frames / pre-roll s |",
        options.lookups
    );
    println!("|---|---:|---:|---:|---|---|");
    for (label, fraction) in [
        ("oldest + 1 min", None),
        ("a quarter in", Some(0.25)),
        ("halfway", Some(0.5)),
        ("three quarters in", Some(0.75)),
        ("newest - 1 min", Some(1.0)),
    ] {
        // A mid-GOP time: a third of a GOP after a keyframe.
        let offset_ms = match fraction {
            None => 60_000,
            Some(f) if f >= 1.0 => span_ms - 60_000,
            Some(f) => (span_ms as f64 * f) as i64,
        };
        let gop_ms = (options.gop * 1000 / options.fps) as i64;
        let time_ms = first_ms + offset_ms - offset_ms % gop_ms + gop_ms / 3;
        let (by_time, found, watermarks) = lookup(&consumer, &topic, time_ms, options.lookups)?;
        let window = |keyframe| {
            read_window(options, &topic, time_ms, keyframe).map_or_else(
                |e| e,
                |(first, eos, frames, preroll)| {
                    format!("{first:.0} / {eos:.0} / {frames} / {preroll:+.2}")
                },
            )
        };
        println!(
            "| {label} | {found} | {by_time:.1} | {watermarks:.1} | {} | {} |",
            window("previous"),
            window("next")
        );
    }
    event_to_clip(options)
}

fn main() {
    if let Err(err) = options().and_then(|options| run(&options)) {
        eprintln!("clips-bench: {err}");
        std::process::exit(1);
    }
}
