// SPDX-License-Identifier: MIT OR Apache-2.0
//! publisher: one RTSP camera into Kafka, without re-encoding:
//!
//! ```text
//! rtspsrc location=URL protocols=tcp latency=0 ! rtph264depay ! h264parse config-interval=-1 !
//!     video/x-h264,stream-format=byte-stream,alignment=au ! kafkasink key=CAMERA
//! ```
//!
//! When the camera goes away the pipeline is rebuilt after `--reconnect-seconds` (a new
//! stream for the readers, which wait for its first keyframe); `--max-retries 0` fails
//! clearly instead. Kafka errors are fatal. SIGINT/SIGTERM end with EOS, so `kafkasink`
//! delivers everything and writes its end-of-stream record.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_kafka_vision_examples::{Args, init};

const USAGE: &str =
    "usage: publisher --url rtsp://HOST:PORT/cam1 --brokers HOST:PORT [--topic frames]
    [--camera cam1] [--reconnect-seconds 2] [--max-retries -1 (unlimited)] [--frames N]";

enum Ended {
    /// EOS after a stop request or `--frames`.
    Done,
    /// The camera went away or never answered.
    CameraLost(String),
    /// Anything else, e.g. Kafka.
    Fatal(String),
}

fn run_once(args: &Args, camera: &str, stop: &AtomicBool, frames: &Arc<AtomicU64>) -> Ended {
    let url = args.get("url", "");
    let description = format!(
        "rtspsrc name=camera location={url} protocols=tcp latency=0 ! rtph264depay ! \
         h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au ! \
         kafkasink name=sink brokers={} topic={} key={camera}",
        args.get("brokers", "127.0.0.1:9092"),
        args.get("topic", "frames"),
    );
    let pipeline = match gst::parse::launch(&description) {
        Ok(p) => p.downcast::<gst::Pipeline>().unwrap(),
        Err(e) => return Ended::Fatal(e.to_string()),
    };
    let limit: u64 = args.number("frames", 0);
    let sink_pad = pipeline
        .by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap();
    let counted = frames.clone();
    sink_pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        counted.fetch_add(1, Ordering::Relaxed);
        gst::PadProbeReturn::Ok
    });
    if pipeline.set_state(gst::State::Playing).is_err() {
        let reason = first_error(&pipeline).unwrap_or_else(|| "did not start".into());
        let _ = pipeline.set_state(gst::State::Null);
        return classify(reason);
    }
    let bus = pipeline.bus().unwrap();
    let mut eos_sent = false;
    let ended = loop {
        if !eos_sent
            && (stop.load(Ordering::SeqCst)
                || (limit > 0 && frames.load(Ordering::Relaxed) >= limit))
        {
            pipeline.send_event(gst::event::Eos::new());
            eos_sent = true;
        }
        let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(100),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) if eos_sent => break Ended::Done,
            gst::MessageView::Eos(_) => {
                break Ended::CameraLost("the camera ended the stream".into());
            }
            gst::MessageView::Error(e) => {
                let from_sink = msg.src().is_some_and(|s| s.name() == "sink");
                let reason = format!(
                    "{} ({})",
                    e.error(),
                    e.debug().map(|d| d.to_string()).unwrap_or_default()
                );
                break if from_sink {
                    Ended::Fatal(reason)
                } else {
                    classify(reason)
                };
            }
            _ => {}
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    ended
}

/// Kafka's errors name the brokers or the topic; everything else is the camera's side.
fn classify(reason: String) -> Ended {
    if reason.contains("Kafka") || reason.contains("topic") {
        Ended::Fatal(reason)
    } else {
        Ended::CameraLost(reason)
    }
}

fn first_error(pipeline: &gst::Pipeline) -> Option<String> {
    let msg = pipeline.bus()?.pop_filtered(&[gst::MessageType::Error])?;
    match msg.view() {
        gst::MessageView::Error(e) => Some(e.error().to_string()),
        _ => None,
    }
}

fn run() -> Result<(), String> {
    let args = Args::parse(USAGE);
    init()?;
    let url = args.get("url", "");
    if url.is_empty() {
        return Err(format!("--url is required\n{USAGE}"));
    }
    let camera = args.get("camera", url.rsplit('/').next().unwrap_or("camera"));
    let max_retries: i64 = args.number("max-retries", -1);
    let backoff = Duration::from_secs_f64(args.number("reconnect-seconds", 2.0));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .map_err(|e| format!("installing the signal handler: {e}"))?;
    }
    let frames = Arc::new(AtomicU64::new(0));
    {
        let frames = frames.clone();
        let camera = camera.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(5));
                eprintln!(
                    "publisher {camera}: {} frames published",
                    frames.load(Ordering::Relaxed)
                );
            }
        });
    }
    let mut attempt = 0i64;
    loop {
        match run_once(&args, &camera, &stop, &frames) {
            Ended::Done => break,
            Ended::Fatal(reason) => return Err(reason),
            Ended::CameraLost(reason) => {
                attempt += 1;
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if max_retries >= 0 && attempt > max_retries {
                    return Err(format!(
                        "camera {url} lost ({reason}); giving up after {max_retries} reconnect attempt(s)"
                    ));
                }
                eprintln!(
                    "publisher: camera {url} lost ({reason}); reconnecting in {:.0} s (attempt {attempt})",
                    backoff.as_secs_f64()
                );
                let until = Instant::now() + backoff;
                while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                if stop.load(Ordering::SeqCst) {
                    break;
                }
            }
        }
    }
    eprintln!(
        "publisher {camera}: done, {} frames published",
        frames.load(Ordering::Relaxed)
    );
    Ok(())
}

fn main() {
    if let Err(err) = run() {
        eprintln!("publisher: {err}");
        std::process::exit(1);
    }
}
