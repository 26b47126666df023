// SPDX-License-Identifier: MIT OR Apache-2.0
//! Shared bits of the example programs in `src/bin/`: GStreamer set-up with our plugins
//! registered statically, and small command-line parsing.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub mod clips;
pub mod http;
pub mod scene;

/// Initialises GStreamer and registers the kafka, yolo and analytics plugins.
pub fn init() -> Result<(), String> {
    gst::init().map_err(|e| e.to_string())?;
    gstkafka::plugin_register_static().map_err(|e| e.to_string())?;
    gstyolo::plugin_register_static().map_err(|e| e.to_string())?;
    gstgkvanalytics::plugin_register_static().map_err(|e| e.to_string())?;
    Ok(())
}

/// `source ! fakesink` in a new pipeline, `on_sample` called in the streaming thread with
/// each buffer (and its caps) as a sample. Not an appsink: appsink keeps the buffer pulled
/// last until the next one is pulled, so with `commit-after=release` the newest record would
/// stay uncommitted (and the consumer lag at 1) for as long as no other record comes.
pub fn into_sample_callback(
    source: &gst::Element,
    on_sample: impl Fn(gst::Sample) + Send + Sync + 'static,
) -> Result<gst::Pipeline, String> {
    into_handoff_sink(source, move |_, sample| on_sample(sample))
}

/// `source ! fakesink`, `on_sample` given the sink's pad and each buffer as a sample.
fn into_handoff_sink(
    source: &gst::Element,
    on_sample: impl Fn(&gst::Pad, gst::Sample) + Send + Sync + 'static,
) -> Result<gst::Pipeline, String> {
    use gst::prelude::*;
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("enable-last-sample", false)
        .property("signal-handoffs", true)
        .build()
        .map_err(|e| format!("creating fakesink: {e}"))?;
    sink.connect("handoff", false, move |values| {
        let buffer = values.get(1).and_then(|v| v.get::<gst::Buffer>().ok());
        let pad = values.get(2).and_then(|v| v.get::<gst::Pad>().ok());
        if let (Some(buffer), Some(pad)) = (buffer, pad) {
            let caps = pad.current_caps();
            let sample = gst::Sample::builder()
                .buffer(&buffer)
                .caps_if_some(caps.as_ref())
                .build();
            drop(buffer);
            on_sample(&pad, sample);
        }
        None
    });
    let pipeline = gst::Pipeline::new();
    pipeline
        .add_many([source, &sink])
        .and_then(|_| source.link(&sink))
        .map_err(|e| format!("building the pipeline: {e}"))?;
    Ok(pipeline)
}

/// What [`into_sample_queue`]'s sink hands over.
enum Taken {
    Sample(gst::Sample),
    EndOfStream,
}

/// The program's end of [`into_sample_queue`]: samples in order, then end-of-stream.
pub struct SampleQueue {
    receiver: std::sync::mpsc::Receiver<Taken>,
    eos: AtomicBool,
}

impl SampleQueue {
    /// The next sample, waiting at most `timeout`; `None` on a timeout or at the end.
    pub fn try_pull_sample(&self, timeout: std::time::Duration) -> Option<gst::Sample> {
        match self.receiver.recv_timeout(timeout) {
            Ok(Taken::Sample(sample)) => Some(sample),
            Ok(Taken::EndOfStream) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                self.eos.store(true, Ordering::SeqCst);
                None
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
        }
    }

    /// End-of-stream reached the sink and every sample before it was pulled.
    pub fn is_eos(&self) -> bool {
        self.eos.load(Ordering::SeqCst)
    }
}

/// `source ! fakesink` in a new pipeline, for a program that takes records one by one: at
/// most `max_samples` wait for it, and the source waits while they do. A record is let go
/// as soon as the program drops its sample (see [`into_sample_callback`]).
pub fn into_sample_queue(
    source: &gst::Element,
    max_samples: usize,
) -> Result<(gst::Pipeline, SampleQueue), String> {
    use gst::prelude::*;
    let (sender, receiver) = std::sync::mpsc::sync_channel(max_samples.max(1));
    let send = move |pad: &gst::Pad, mut taken: Taken| {
        // Waits for room, unless the pad flushes (the pipeline stops): then the sample is
        // dropped, as a queue's would be.
        loop {
            match sender.try_send(taken) {
                Ok(()) | Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return,
                Err(std::sync::mpsc::TrySendError::Full(back)) => {
                    if pad.pad_flags().contains(gst::PadFlags::FLUSHING) {
                        return;
                    }
                    taken = back;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
        }
    };
    let send = Arc::new(send);
    let pipeline = {
        let send = send.clone();
        into_handoff_sink(source, move |pad, sample| send(pad, Taken::Sample(sample)))?
    };
    let sink_pad = source
        .static_pad("src")
        .and_then(|pad| pad.peer())
        .ok_or("the sink is not linked")?;
    sink_pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |pad, info| {
        if let Some(gst::PadProbeData::Event(event)) = &info.data
            && event.type_() == gst::EventType::Eos
        {
            send(pad, Taken::EndOfStream);
        }
        gst::PadProbeReturn::Ok
    });
    let queue = SampleQueue {
        receiver,
        eos: AtomicBool::new(false),
    };
    Ok((pipeline, queue))
}

/// A flag that Ctrl-C or SIGTERM sets, so the program can stop cleanly (flush, commit);
/// a second signal ends the process at once (exit status 130), saying so.
pub fn stop_on_signal() -> Result<Arc<AtomicBool>, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let program = std::env::args()
        .next()
        .as_deref()
        .map(std::path::Path::new)
        .and_then(|p| p.file_name())
        .map_or_else(|| "program".into(), |n| n.to_string_lossy().into_owned());
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("{program}: second signal, exiting without a clean stop");
            std::process::exit(130);
        }
    })
    .map_err(|e| format!("installing the signal handler: {e}"))?;
    Ok(stop)
}

/// `--metrics HOST:PORT`: serves the pipeline's `/metrics` (Prometheus) and `/healthz`
/// there; nothing without the option. Returns the monitor, for reporting a failure.
pub fn serve_metrics(
    args: &Args,
    pipeline: &gst::Pipeline,
    limits: kafkamonitor::HealthLimits,
) -> Result<Arc<kafkamonitor::Monitor>, String> {
    serve_monitor(args, kafkamonitor::Monitor::new(pipeline, limits))
}

/// `--metrics HOST:PORT` for any monitor (e.g. one without a pipeline, fed by
/// `Monitor::add_stats`); nothing without the option.
pub fn serve_monitor(
    args: &Args,
    monitor: Arc<kafkamonitor::Monitor>,
) -> Result<Arc<kafkamonitor::Monitor>, String> {
    let address = args.get("metrics", "");
    if !address.is_empty() {
        let address: std::net::SocketAddr = address.parse().map_err(|_| {
            format!("--metrics '{address}': expected HOST:PORT, e.g. 127.0.0.1:9464")
        })?;
        let bound = monitor
            .serve(address)
            .map_err(|e| format!("--metrics {address}: {e}"))?;
        println!("metrics at http://{bound}/metrics, health at http://{bound}/healthz");
    }
    Ok(monitor)
}

/// The Kafka client options of every program, for its `USAGE` text.
#[macro_export]
macro_rules! kafka_options_help {
    () => {
        "  --brokers HOST:PORT      Kafka bootstrap servers (default $KAFKA_BROKERS, else
                           localhost:9092)
  --kafka-config K=V,...   librdkafka settings for every Kafka client of the program, e.g.
                           security.protocol=SASL_SSL,sasl.mechanism=SCRAM-SHA-512; a value
                           ${NAME} is read from the environment (default $KAFKA_CONFIG)
  --kafka-config-file PATH the same as a properties file, one key=value per line (Kafka's
                           client.properties); --kafka-config entries win over it"
    };
}

/// The Kafka client settings a program shares between all its clients (elements and
/// bare consumers): brokers and librdkafka settings, e.g. SASL and TLS. Secrets come from
/// a file or the environment, never from the command line.
pub struct KafkaClient {
    pub brokers: String,
    config: kafkavision::client_config::ClientConfig,
}

impl KafkaClient {
    /// `--brokers`, `--kafka-config-file` and `--kafka-config` (see
    /// [`kafka_options_help`]); the error names the option.
    pub fn from_args(args: &Args) -> Result<KafkaClient, String> {
        use kafkavision::client_config::ClientConfig;
        let env = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        let brokers = args.get("brokers", &env("KAFKA_BROKERS", "localhost:9092"));
        let file = args.get("kafka-config-file", "");
        let from_file = if file.is_empty() {
            ClientConfig::default()
        } else {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("--kafka-config-file {file}: {e}"))?;
            ClientConfig::parse_properties(&text)
                .map_err(|e| format!("--kafka-config-file {file}: {e}"))?
        };
        let inline = ClientConfig::parse(&args.get("kafka-config", &env("KAFKA_CONFIG", "")))
            .map_err(|e| format!("--kafka-config (or $KAFKA_CONFIG): {e}"))?;
        let config = from_file.followed_by(&inline);
        // Fail now, naming the variable, rather than in the first client that starts.
        config
            .with_environment()
            .map_err(|e| format!("--kafka-config: {e}"))?;
        Ok(KafkaClient { brokers, config })
    }

    /// The settings as a `config` property value, with `extra` (e.g. a consumer-only
    /// setting) after them.
    pub fn config_property(&self, extra: &str) -> Result<String, String> {
        let extra =
            kafkavision::client_config::ClientConfig::parse(extra).map_err(|e| e.to_string())?;
        Ok(self.config.followed_by(&extra).to_property())
    }

    /// An error of a `kafkasrc` or `kafkasink` this program configured, naming the
    /// program's options where the element names its properties.
    pub fn in_option_terms(element_error: &str) -> String {
        [
            ("the 'brokers' property", "--brokers"),
            (
                "the 'config' property",
                "--kafka-config or --kafka-config-file",
            ),
            ("'connect-timeout'", "--connect-timeout"),
        ]
        .iter()
        .fold(element_error.to_string(), |text, (property, option)| {
            text.replace(property, option)
        })
    }

    /// Sets `brokers` and `config` on a `kafkasrc` or `kafkasink`.
    pub fn configure(&self, element: &gst::Element) {
        use gst::prelude::*;
        element.set_property("brokers", &self.brokers);
        element.set_property("config", self.config.to_property());
    }

    /// A librdkafka configuration for a bare client: the program's `defaults`, then
    /// `bootstrap.servers` and the user's settings (which win; `${NAME}` values read from
    /// the environment), as the elements do.
    pub fn rdkafka_config(&self, defaults: &[(&str, &str)]) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        config.set("bootstrap.servers", &self.brokers);
        // Checked in `from_args`.
        let resolved = self.config.with_environment().unwrap_or_default();
        for (key, value) in resolved.entries() {
            config.set(key, value);
        }
        config
    }
}

/// `--name value` pairs and bare `--flag`s; `usage` is printed for `--help` or a stray word.
pub struct Args {
    values: HashMap<String, String>,
}

impl Args {
    pub fn parse(usage: &str) -> Args {
        let mut values = HashMap::new();
        let mut args = std::env::args().skip(1).peekable();
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" || !arg.starts_with("--") {
                eprintln!("{usage}");
                std::process::exit(if arg.starts_with("--") || arg == "-h" {
                    0
                } else {
                    2
                });
            }
            let name = arg.trim_start_matches("--").to_string();
            match args.next_if(|next| !next.starts_with("--")) {
                Some(value) => values.insert(name, value),
                None => values.insert(name, "true".into()),
            };
        }
        Args { values }
    }

    pub fn get(&self, name: &str, default: &str) -> String {
        self.values
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    pub fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.values.get(name) {
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("--{name} {v}: not a number");
                std::process::exit(2)
            }),
            None => default,
        }
    }

    pub fn flag(&self, name: &str) -> bool {
        self.values.get(name).is_some_and(|v| v == "true")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_errors_name_the_program_options() {
        let error = "could not reach Kafka brokers 'b:1' within 10 ms (down); check the \
                     'brokers' property (host:port,...), or raise 'connect-timeout'; TLS needs \
                     security.protocol in the 'config' property";
        assert_eq!(
            KafkaClient::in_option_terms(error),
            "could not reach Kafka brokers 'b:1' within 10 ms (down); check --brokers \
             (host:port,...), or raise --connect-timeout; TLS needs security.protocol in \
             --kafka-config or --kafka-config-file"
        );
    }
}
