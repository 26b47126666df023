// SPDX-License-Identifier: MIT OR Apache-2.0
//! publisher: publishes one RTSP/H.264 camera to Kafka without re-encoding.
//!
//! ```text
//! rtspsrc location=URL protocols=tcp latency=0 ! rtph264depay ! h264parse config-interval=-1 !
//!     video/x-h264,stream-format=byte-stream,alignment=au ! kafkasink brokers=B topic=T key=CAMERA
//! ```
//!
//! Every connection to the camera is one `kafkasink` stream (its own `gkv-stream` id),
//! starting at a keyframe (delta units before the first keyframe of a connection are not
//! published). When the camera goes away (an error or end-of-stream from the RTSP side, or
//! no frame for 10 s) the stream is closed with its end-of-stream record (if it published
//! anything), and the pipeline is rebuilt after `--reconnect-seconds`, for ever or up to
//! `--max-retries` consecutive attempts. Kafka errors are fatal. SIGINT/SIGTERM end the
//! stream with EOS (kafkasink flushes and writes its end-of-stream record) and exit 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gst::prelude::*;

const USAGE: &str = concat!(
    "\
publisher: publish one RTSP H.264 camera to Kafka, without re-encoding

usage: publisher --url rtsp://HOST:PORT/PATH [--rtsp-user NAME] [--topic T] [--camera ID]
                 [--partition N] [--reconnect-seconds S] [--max-retries N] [--frames N]
                 [--metrics HOST:PORT] [Kafka client options]

  --url URL               the camera (required)
  --rtsp-user NAME        the camera's user (default $RTSP_USER); the password comes from
                          $RTSP_PASSWORD or --rtsp-password-file, never from the command line
  --rtsp-password-file F  read the camera's password from the first line of F
  --topic T               topic to write to; it must exist (default frames)
  --camera ID             record key (default: the URL's last path segment, e.g. cam1)
  --partition N           write to partition N (default: the one the key hashes to); lets
                          a deployment spread M cameras over N workers evenly
  --reconnect-seconds S   wait between reconnection attempts (default 2)
  --max-retries N         consecutive reconnection attempts before giving up with status 1;
                          -1 = unlimited (default), 0 = fail at once when the camera is lost
  --frames N              stop after N published frames with a clean end-of-stream (tests)
  --metrics HOST:PORT     serve Prometheus metrics at /metrics and health at /healthz
                          (unhealthy while reconnecting, or after 30 s without frames
                          written or without a reachable broker)

Each connection to the camera becomes one Kafka stream (gkv-stream header) starting at a
keyframe and closed with an end-of-stream record. Kafka errors (broker down, topic
missing) and a camera refusing the credentials are fatal. SIGINT/SIGTERM: end-of-stream,
flush, exit 0.

Kafka client options:
",
    gst_kafka_vision_examples::kafka_options_help!()
);

/// A camera that sends nothing for this long counts as lost.
const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the progress line is printed.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// How long closing a stream waits for kafkasink's end-of-stream (its own flush-timeout
/// is 30 s; it reports undelivered records as an error before that).
const EOS_TIMEOUT: Duration = Duration::from_secs(35);

// ---- signals -------------------------------------------------------------------------

/// Sleeps `duration` while watching the stop flag; false when a stop was asked for.
fn sleep_unless_stopped(stop: &AtomicBool, duration: Duration) -> bool {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(
            Duration::from_millis(50).min(deadline.saturating_duration_since(Instant::now())),
        );
    }
    !stop.load(Ordering::SeqCst)
}

// ---- options -------------------------------------------------------------------------

struct Options {
    url: String,
    /// `url` with any password in it masked, for messages.
    shown_url: String,
    rtsp_user: Option<String>,
    rtsp_password: Option<String>,
    kafka: gst_kafka_vision_examples::KafkaClient,
    topic: String,
    camera: String,
    partition: i32,
    reconnect: Duration,
    max_retries: i64,
    frames: Option<u64>,
    args: gst_kafka_vision_examples::Args,
}

fn options() -> Options {
    let args = gst_kafka_vision_examples::Args::parse(USAGE);
    let url = args.get("url", "");
    if url.is_empty() || url == "true" {
        eprintln!("publisher: --url is required\n\n{USAGE}");
        std::process::exit(2);
    }
    let usage_error = |message: String| -> ! {
        eprintln!("publisher: {message}");
        std::process::exit(2)
    };
    let kafka =
        gst_kafka_vision_examples::KafkaClient::from_args(&args).unwrap_or_else(|e| usage_error(e));
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let rtsp_user = Some(args.get("rtsp-user", &env("RTSP_USER").unwrap_or_default()))
        .filter(|u| !u.is_empty());
    let password_file = args.get("rtsp-password-file", "");
    let rtsp_password = if password_file.is_empty() {
        env("RTSP_PASSWORD")
    } else {
        let text = std::fs::read_to_string(&password_file)
            .unwrap_or_else(|e| usage_error(format!("--rtsp-password-file {password_file}: {e}")));
        Some(text.lines().next().unwrap_or("").to_string())
    };
    if rtsp_password.is_some() && rtsp_user.is_none() {
        usage_error("a camera password is set but no user: set --rtsp-user (or RTSP_USER)".into());
    }
    let shown_url = url_without_password(&url);
    if shown_url != url {
        eprintln!(
            "publisher: warning: the camera password in --url shows in process lists; use \
             --rtsp-user and RTSP_PASSWORD instead"
        );
    }
    let camera = match args.get("camera", "") {
        c if c.is_empty() => camera_from_url(&url),
        c => c,
    };
    let reconnect: f64 = args.number("reconnect-seconds", 2.0);
    if !(reconnect >= 0.0 && reconnect.is_finite()) {
        eprintln!("publisher: --reconnect-seconds must be >= 0");
        std::process::exit(2);
    }
    let max_retries: i64 = args.number("max-retries", -1);
    let frames: i64 = args.number("frames", -1);
    Options {
        url,
        shown_url,
        rtsp_user,
        rtsp_password,
        kafka,
        topic: args.get("topic", "frames"),
        camera,
        partition: args.number("partition", -1i32).max(-1),
        reconnect: Duration::from_secs_f64(reconnect),
        max_retries,
        frames: (frames >= 0).then_some(frames as u64),
        args,
    }
}

/// `rtsp://user:secret@host/cam1` -> `rtsp://user:***@host/cam1`; other URLs unchanged.
fn url_without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_string(),
    }
}

/// `rtsp://host:port/cam1?x=y` -> `cam1` (the last non-empty path segment).
fn camera_from_url(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or(url);
    let path = without_query
        .split_once("://")
        .map_or(without_query, |(_, rest)| rest);
    // Never a user or password as the key.
    let authority = path.split('/').next().unwrap_or(path);
    let path = &path[authority.rfind('@').map_or(0, |at| at + 1)..];
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let host = segments.next();
    segments
        .next_back()
        .or(host)
        .unwrap_or("camera")
        .to_string()
}

// ---- one connection ------------------------------------------------------------------

/// How a connection ended.
enum Ended {
    /// `--frames` reached or a signal: the stream was closed, exit 0.
    Stopped,
    /// The camera went away; `published` frames went out on this connection.
    CameraLost { reason: String, published: u64 },
    /// Kafka failed (or the pipeline could not be built): exit 1 with this message.
    Fatal(String),
}

/// Counters the pad probe shares with the main thread.
#[derive(Default)]
struct Counters {
    /// Frames published over all connections.
    total: AtomicU64,
    /// Frames published on the current connection.
    session: AtomicU64,
    /// The current connection has passed its first keyframe.
    synced: AtomicBool,
    /// Let nothing more through (closing the stream).
    closing: AtomicBool,
    /// `--frames` reached.
    limit_reached: AtomicBool,
    /// A signal asked for a clean stop (`stop_on_signal`).
    stop: Arc<AtomicBool>,
}

struct Session<'a> {
    options: &'a Options,
    counters: Arc<Counters>,
    pipeline: gst::Pipeline,
    sink: gst::Element,
    bus: gst::Bus,
}

fn error_text(err: &gst::message::Error) -> String {
    // The message, plus the last line of the debug text when it is a human detail (e.g.
    // rtspsrc's "Failed to connect."), not a source location.
    let message = err.error().message().trim_end_matches('.').to_string();
    let detail = err.debug().and_then(|debug| {
        let last = debug.lines().last()?.trim().to_string();
        let location = last.contains("(): /") || last.contains(".rs(") || last.contains(".c(");
        (!last.is_empty() && !location && !message.contains(&last)).then_some(last)
    });
    match detail {
        Some(detail) => format!("{message}: {detail}"),
        None => message,
    }
}

impl<'a> Session<'a> {
    fn new(options: &'a Options, counters: Arc<Counters>) -> Result<Session<'a>, String> {
        let pipeline = gst::parse::launch(
            "rtspsrc name=src protocols=tcp latency=0 ! rtph264depay ! \
             h264parse config-interval=-1 ! \
             video/x-h264,stream-format=byte-stream,alignment=au ! kafkasink name=sink",
        )
        .map_err(|e| format!("cannot build the pipeline: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
        let src = pipeline.by_name("src").unwrap();
        src.set_property("location", &options.url);
        if let Some(user) = &options.rtsp_user {
            src.set_property("user-id", user);
        }
        if let Some(password) = &options.rtsp_password {
            src.set_property("user-pw", password);
        }
        let sink = pipeline.by_name("sink").unwrap();
        options.kafka.configure(&sink);
        sink.set_property("topic", &options.topic);
        sink.set_property("key", &options.camera);
        sink.set_property("partition", options.partition);

        counters.session.store(0, Ordering::SeqCst);
        counters.synced.store(false, Ordering::SeqCst);
        counters.closing.store(false, Ordering::SeqCst);
        // Count (and gate) on the pad that feeds kafkasink: a buffer let through here
        // becomes one record. Dropping here (not at the sink) keeps upstream flowing.
        let feed = sink
            .static_pad("sink")
            .and_then(|pad| pad.peer())
            .ok_or("kafkasink is not linked")?;
        let probe_counters = counters.clone();
        let limit = options.frames;
        feed.add_probe(gst::PadProbeType::BUFFER, move |_pad, info| {
            let c = &probe_counters;
            if c.closing.load(Ordering::SeqCst) {
                return gst::PadProbeReturn::Drop;
            }
            let Some(buffer) = info.buffer() else {
                return gst::PadProbeReturn::Ok;
            };
            if !c.synced.load(Ordering::SeqCst) {
                if buffer.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                    return gst::PadProbeReturn::Drop;
                }
                c.synced.store(true, Ordering::SeqCst);
            }
            let n = c.total.fetch_add(1, Ordering::SeqCst) + 1;
            c.session.fetch_add(1, Ordering::SeqCst);
            if limit.is_some_and(|limit| n >= limit) {
                c.closing.store(true, Ordering::SeqCst);
                c.limit_reached.store(true, Ordering::SeqCst);
            }
            gst::PadProbeReturn::Ok
        });
        let bus = pipeline.bus().unwrap();
        Ok(Session {
            options,
            counters,
            pipeline,
            sink,
            bus,
        })
    }

    fn is_from_sink(&self, message: &gst::MessageRef) -> bool {
        message
            .src()
            .is_some_and(|src| src == self.sink.upcast_ref::<gst::Object>())
    }

    fn kafka_error(&self, err: &gst::message::Error) -> Ended {
        Ended::Fatal(format!(
            "Kafka error (brokers {}, topic {}): {}",
            self.options.kafka.brokers,
            self.options.topic,
            error_text(err)
        ))
    }

    /// The camera answered 401: retrying with the same credentials cannot help.
    fn credentials_refused(&self) -> Ended {
        Ended::Fatal(format!(
            "camera {} refused the credentials (401 Unauthorized); set --rtsp-user and \
             RTSP_PASSWORD (or --rtsp-password-file)",
            self.options.shown_url
        ))
    }

    fn camera_lost(&self, reason: String) -> Ended {
        Ended::CameraLost {
            reason,
            published: self.counters.session.load(Ordering::SeqCst),
        }
    }

    /// Plays until the camera goes away, a Kafka error, `--frames` or a signal.
    fn run(&self) -> Ended {
        if self.pipeline.set_state(gst::State::Playing).is_err() {
            // Whoever failed posted an error: kafkasink's start (broker, topic) fails
            // synchronously here; rtspsrc connects in its own thread.
            while let Some(message) = self
                .bus
                .timed_pop_filtered(gst::ClockTime::from_seconds(1), &[gst::MessageType::Error])
            {
                if let gst::MessageView::Error(err) = message.view() {
                    if self.is_from_sink(&message) {
                        return self.kafka_error(err);
                    }
                    if err.error().matches(gst::ResourceError::NotAuthorized) {
                        return self.credentials_refused();
                    }
                    return self.camera_lost(error_text(err));
                }
            }
            return Ended::Fatal("the pipeline did not start (no error message)".into());
        }

        let started = Instant::now();
        let mut last_count = 0;
        let mut last_frame_at = started;
        let mut last_progress = started;
        let mut progress_count = self.counters.total.load(Ordering::SeqCst);
        let mut announced = false;
        loop {
            if self.counters.stop.load(Ordering::SeqCst)
                || self.counters.limit_reached.load(Ordering::SeqCst)
            {
                return self.close(None);
            }
            if let Some(message) = self.bus.timed_pop(gst::ClockTime::from_mseconds(50)) {
                match message.view() {
                    gst::MessageView::Error(err) => {
                        if self.is_from_sink(&message) {
                            return self.kafka_error(err);
                        }
                        if err.error().matches(gst::ResourceError::NotAuthorized) {
                            return match self.close(None) {
                                Ended::Fatal(kafka) => Ended::Fatal(kafka),
                                _ => self.credentials_refused(),
                            };
                        }
                        return self.close(Some(error_text(err)));
                    }
                    gst::MessageView::Eos(_) => {
                        // The camera ended its stream; the EOS went through kafkasink,
                        // which wrote the end-of-stream record.
                        return self.camera_lost(
                            "the camera ended the stream or closed the connection".into(),
                        );
                    }
                    gst::MessageView::Warning(w) if self.is_from_sink(&message) => {
                        eprintln!("publisher: kafkasink warning: {}", w.error());
                    }
                    _ => {}
                }
            }
            let now = Instant::now();
            let session = self.counters.session.load(Ordering::SeqCst);
            if session != last_count {
                last_count = session;
                last_frame_at = now;
                if !announced {
                    announced = true;
                    eprintln!(
                        "publisher: camera {} connected; publishing to topic {} (key {})",
                        self.options.shown_url, self.options.topic, self.options.camera
                    );
                }
            } else if now - last_frame_at >= STALL_TIMEOUT {
                return self.close(Some(format!("no frame for {} s", STALL_TIMEOUT.as_secs())));
            }
            if now - last_progress >= PROGRESS_INTERVAL {
                let total = self.counters.total.load(Ordering::SeqCst);
                let rate = (total - progress_count) as f64 / (now - last_progress).as_secs_f64();
                eprintln!(
                    "publisher: {}: {total} frames published ({rate:.1} frames/s)",
                    self.options.camera
                );
                last_progress = now;
                progress_count = total;
            }
        }
    }

    /// Ends this connection's stream: nothing more gets through to kafkasink; if it
    /// published anything, EOS makes kafkasink flush and write the end-of-stream record.
    /// `lost` is the reason when the camera went away, None for a requested stop.
    fn close(&self, lost: Option<String>) -> Ended {
        self.counters.closing.store(true, Ordering::SeqCst);
        let published = self.counters.session.load(Ordering::SeqCst);
        let ended = |fatal: Option<String>| match (fatal, &lost) {
            (Some(message), _) => Ended::Fatal(message),
            (None, Some(reason)) => Ended::CameraLost {
                reason: reason.clone(),
                published,
            },
            (None, None) => Ended::Stopped,
        };
        if published == 0 {
            return ended(None);
        }
        let sink_pad = self.sink.static_pad("sink").unwrap();
        sink_pad.send_event(gst::event::Eos::new());
        let deadline = Instant::now() + EOS_TIMEOUT;
        while Instant::now() < deadline {
            let Some(message) = self.bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
                continue;
            };
            match message.view() {
                gst::MessageView::Eos(_) => return ended(None),
                gst::MessageView::Error(err) if self.is_from_sink(&message) => {
                    return match self.kafka_error(err) {
                        Ended::Fatal(m) => ended(Some(m)),
                        other => other,
                    };
                }
                _ => {}
            }
        }
        ended(Some(format!(
            "kafkasink did not finish its end-of-stream within {} s",
            EOS_TIMEOUT.as_secs()
        )))
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

// ---- main ----------------------------------------------------------------------------

fn main() {
    let options = options();
    if let Err(e) = gst_kafka_vision_examples::init() {
        eprintln!("publisher: GStreamer initialisation failed: {e}");
        std::process::exit(1);
    }
    for element in ["rtspsrc", "rtph264depay", "h264parse"] {
        if gst::ElementFactory::find(element).is_none() {
            eprintln!(
                "publisher: the GStreamer element {element} is missing (install \
                 gstreamer1.0-plugins-good/-bad)"
            );
            std::process::exit(1);
        }
    }
    let stop = gst_kafka_vision_examples::stop_on_signal().unwrap_or_else(|e| {
        eprintln!("publisher: {e}");
        std::process::exit(1);
    });
    eprintln!(
        "publisher: {} -> Kafka {} topic {} key {}",
        options.shown_url, options.kafka.brokers, options.topic, options.camera
    );

    let counters = Arc::new(Counters {
        stop,
        ..Counters::default()
    });
    // Serves /metrics for whichever session's pipeline runs; a camera is a live input.
    let mut monitor: Option<Arc<kafkamonitor::Monitor>> = None;
    // Consecutive reconnection attempts since frames last flowed.
    let mut attempt: i64 = 0;
    let code = loop {
        let ended = match Session::new(&options, counters.clone()) {
            Ok(session) => {
                match &monitor {
                    Some(monitor) => monitor.watch(&session.pipeline),
                    None => {
                        let limits = kafkamonitor::HealthLimits {
                            live_input: true,
                            ..Default::default()
                        };
                        match gst_kafka_vision_examples::serve_metrics(
                            &options.args,
                            &session.pipeline,
                            limits,
                        ) {
                            Ok(serving) => monitor = Some(serving),
                            Err(e) => {
                                eprintln!("publisher: {e}");
                                std::process::exit(2);
                            }
                        }
                    }
                }
                session.run()
            }
            Err(e) => Ended::Fatal(e),
        };
        match ended {
            Ended::Stopped => {
                eprintln!(
                    "publisher: {}: stopped after {} frames published",
                    options.camera,
                    counters.total.load(Ordering::SeqCst)
                );
                break 0;
            }
            Ended::Fatal(message) => {
                eprintln!("publisher: {message}");
                break 1;
            }
            Ended::CameraLost { reason, published } => {
                if published > 0 {
                    attempt = 0;
                }
                let url = &options.shown_url;
                if options.max_retries >= 0 && attempt >= options.max_retries {
                    if options.max_retries == 0 {
                        eprintln!(
                            "publisher: camera {url} lost ({reason}); giving up: \
                             --max-retries 0 (no reconnection)"
                        );
                    } else {
                        eprintln!(
                            "publisher: camera {url} lost ({reason}); giving up after {} \
                             reconnection attempts (--max-retries {})",
                            attempt, options.max_retries
                        );
                    }
                    break 1;
                }
                attempt += 1;
                eprintln!(
                    "publisher: camera {url} lost ({reason}); reconnecting in {} s (attempt \
                     {attempt})",
                    format_seconds(options.reconnect)
                );
                if !sleep_unless_stopped(&counters.stop, options.reconnect) {
                    eprintln!(
                        "publisher: {}: stopped after {} frames published",
                        options.camera,
                        counters.total.load(Ordering::SeqCst)
                    );
                    break 0;
                }
            }
        }
    };
    std::process::exit(code);
}

fn format_seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_when_shown_and_as_the_key() {
        assert_eq!(
            url_without_password("rtsp://admin:s3cret@10.0.0.5:554/stream1?x=1"),
            "rtsp://admin:***@10.0.0.5:554/stream1?x=1"
        );
        assert_eq!(
            url_without_password("rtsp://admin@10.0.0.5/s"),
            "rtsp://admin:***@10.0.0.5/s"
        );
        assert_eq!(
            url_without_password("rtsp://h:554/cam1"),
            "rtsp://h:554/cam1"
        );
        assert_eq!(url_without_password("rtsp://h/a@b"), "rtsp://h/a@b");
        assert_eq!(camera_from_url("rtsp://u:p@h:554/cam1?x=y"), "cam1");
        assert_eq!(camera_from_url("rtsp://u:p@camera-7:554"), "camera-7:554");
        assert_eq!(camera_from_url("rtsp://u:p@camera-7/"), "camera-7");
    }
}
