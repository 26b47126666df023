// SPDX-License-Identifier: MIT OR Apache-2.0
//! Metrics and health of a running pipeline, for Prometheus and service managers.
//!
//! [`Monitor`] reads the `stats` structure of every element of a pipeline that has one
//! (`kafkasrc`, `kafkasink`, `yolodetect`, `crossingcount`, ... and any element of another
//! project that follows the same convention) and serves them as Prometheus text at
//! `/metrics`; `/healthz` answers 200 `ok` or 503 with the reasons. Any application that
//! embeds the elements can do the same (the test `serves_metrics_and_health_over_http`
//! runs this; as a doctest it cannot link: rustdoc finds two builds of the Kafka plugin's
//! rlib, which cargo names without a hash because it is also a cdylib):
//!
//! ```ignore
//! use kafkamonitor::{HealthLimits, Monitor};
//! let monitor = Monitor::new(&pipeline, HealthLimits::default());
//! let address = monitor.serve("127.0.0.1:9464".parse().unwrap())?;
//! // ... and on an error message from the bus: monitor.failed("decoder: not negotiated");
//! ```
//!
//! A program whose figures are not in a pipeline (e.g. a bare Kafka consumer) adds them
//! as a `stats` structure of its own with [`Monitor::add_stats`], on a monitor made by
//! [`Monitor::without_pipeline`]; the same names and health rules apply.
//!
//! The health rules read fields named in `gstkafka::stats` (the Kafka elements build their
//! `stats` with the same constants), so a renamed field breaks this crate's build instead
//! of silently disabling a check.
//!
//! Metric names are `gkv_<stats structure name without -stats>_<field>`, with `-` as `_`,
//! labelled with the element's name, in the OpenMetrics text format written by
//! `prometheus-client`: the fields a structure names in its `counters` array
//! (`kafkavision::per_run::COUNTERS`) are counters (`gkv_kafkasrc_buffers_pushed_total{
//! element="src"} 42`), a histogram structure (`kafkavision::latency`) a histogram, other
//! numbers and booleans gauges. A field that is itself a structure (such as `kafkasrc`'s
//! `consumer-lag`, fields `partition-N`) becomes one series per field, its name split at
//! the last `-` into a label: `gkv_kafkasrc_consumer_lag{element="src",partition="0"} 3`.
//! An array of structures (`kafkasrc`'s `cameras`) gives series named after the
//! structures, labelled by their string fields: `gkv_kafkasrc_camera_frames_missing{
//! element="src",camera="cam1"} 2`, `gkv_kafkasrc_camera_latency_ms_bucket{...,le="50.0"}`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstkafka::stats::{BROKER_DOWN_MS, kafkasink, kafkasrc};
use kafkavision::latency;
use kafkavision::per_run::COUNTERS;

/// A program's own `stats` with this counter and a [`kafkasrc::CONSUMER_LAG`] structure
/// stall like a `kafkasrc` (see [`Monitor::add_stats`]).
pub const RECORDS_CONSUMED: &str = "records-consumed";

/// The content type of [`Monitor::metrics`]' text.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// When the pipeline counts as unhealthy.
#[derive(Clone, Copy, Debug)]
pub struct HealthLimits {
    /// No broker reachable (an element's `broker-down-ms`) for longer than this.
    pub broker_down: Duration,
    /// Records waiting (`kafkasrc`'s `consumer-lag` or `records-in-flight`) but no frame
    /// pushed for longer than this; with `live_input`, also any `kafkasink` that wrote
    /// nothing for this long.
    pub stalled: Duration,
    /// The pipeline's input never pauses (a camera): every `kafkasink` must keep writing.
    pub live_input: bool,
}

impl Default for HealthLimits {
    fn default() -> Self {
        HealthLimits {
            broker_down: Duration::from_secs(30),
            stalled: Duration::from_secs(30),
            live_input: false,
        }
    }
}

/// A program's own `stats` structure, read on each scrape.
type StatsSource = Box<dyn Fn() -> gst::Structure + Send + Sync>;

/// Per element and counter: the last value seen and since when it has not changed.
type Progress = HashMap<(String, &'static str), (u64, Instant)>;

/// Metrics and health of one pipeline (and of stats a program adds).
pub struct Monitor {
    /// `None` for a monitor without a pipeline.
    pipeline: Mutex<Option<gst::glib::WeakRef<gst::Pipeline>>>,
    sources: Mutex<Vec<(String, StatsSource)>>,
    limits: HealthLimits,
    failure: Mutex<Option<String>>,
    progress: Mutex<Progress>,
}

impl Monitor {
    pub fn new(pipeline: &gst::Pipeline, limits: HealthLimits) -> Arc<Monitor> {
        Arc::new(Monitor {
            pipeline: Mutex::new(Some(pipeline.downgrade())),
            sources: Mutex::new(Vec::new()),
            limits,
            failure: Mutex::new(None),
            progress: Mutex::new(HashMap::new()),
        })
    }

    /// A monitor of stats added with [`Monitor::add_stats`] only.
    pub fn without_pipeline(limits: HealthLimits) -> Arc<Monitor> {
        Arc::new(Monitor {
            pipeline: Mutex::new(None),
            sources: Mutex::new(Vec::new()),
            limits,
            failure: Mutex::new(None),
            progress: Mutex::new(HashMap::new()),
        })
    }

    /// Adds a `stats` structure of the program's own, served as if an element named
    /// `name` had it. Its counter `records-consumed` next to a `consumer-lag` structure
    /// counts as progress for the stall rule, as `kafkasrc`'s `buffers-pushed` does.
    pub fn add_stats(
        &self,
        name: &str,
        stats: impl Fn() -> gst::Structure + Send + Sync + 'static,
    ) {
        self.sources
            .lock()
            .unwrap()
            .push((name.to_string(), Box::new(stats)));
    }

    /// Follows another pipeline from now on (a program that rebuilds its pipeline, e.g.
    /// on each reconnection to a camera).
    pub fn watch(&self, pipeline: &gst::Pipeline) {
        *self.pipeline.lock().unwrap() = Some(pipeline.downgrade());
        self.progress.lock().unwrap().clear();
    }

    /// The pipeline failed (an error message on its bus): unhealthy from now on.
    pub fn failed(&self, reason: &str) {
        *self.failure.lock().unwrap() = Some(reason.to_string());
    }

    /// Every element's `stats`, by element name.
    fn stats(&self) -> Vec<(String, gst::Structure)> {
        let mut all: Vec<_> = self
            .sources
            .lock()
            .unwrap()
            .iter()
            .map(|(name, stats)| (name.clone(), stats()))
            .collect();
        let pipeline = self.pipeline.lock().unwrap().as_ref().map(|p| p.upgrade());
        let Some(Some(pipeline)) = pipeline else {
            all.sort_by(|a, b| a.0.cmp(&b.0));
            return all;
        };
        for element in pipeline.iterate_recurse().into_iter().flatten() {
            let has_stats = element
                .find_property("stats")
                .is_some_and(|p| p.value_type() == gst::Structure::static_type());
            if has_stats {
                let stats = element.property::<gst::Structure>("stats");
                all.push((element.name().to_string(), stats));
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The metrics in the OpenMetrics text format (which Prometheus reads), written by
    /// `prometheus-client`.
    pub fn metrics(&self) -> String {
        let mut families = Families::default();
        for (element, stats) in self.stats() {
            let prefix = format!(
                "gkv_{}",
                metric_name(stats.name().trim_end_matches("-stats"))
            );
            families.add_structure(&prefix, &[("element".into(), element)], &stats);
        }
        let healthy = self.health().is_ok();
        families.add(
            "gkv_pipeline_healthy".into(),
            Kind::Gauge,
            "1 while healthy (see /healthz), else 0",
            Vec::new(),
            Value::Number(f64::from(u8::from(healthy))),
        );
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(families));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }

    /// `Ok` while healthy, else why not.
    pub fn health(&self) -> Result<(), Vec<String>> {
        let mut reasons = Vec::new();
        if let Some(failure) = self.failure.lock().unwrap().as_ref() {
            reasons.push(format!("the pipeline failed: {failure}"));
        }
        let pipeline = self.pipeline.lock().unwrap().as_ref().map(|p| p.upgrade());
        if matches!(pipeline, Some(None)) {
            reasons.push("no pipeline running (e.g. reconnecting to its input)".into());
        }
        let now = Instant::now();
        let mut progress = self.progress.lock().unwrap();
        for (element, stats) in self.stats() {
            let down = stats.get::<u64>(BROKER_DOWN_MS).unwrap_or(0);
            if Duration::from_millis(down) > self.limits.broker_down {
                reasons.push(format!(
                    "{element}: no Kafka broker reachable for {} s",
                    down / 1000
                ));
            }
            let counter = match stats.name().as_str() {
                kafkasrc::NAME => kafkasrc::BUFFERS_PUSHED,
                kafkasink::NAME => kafkasink::RECORDS_SENT,
                _ if stats.has_field(RECORDS_CONSUMED)
                    && stats.has_field(kafkasrc::CONSUMER_LAG) =>
                {
                    RECORDS_CONSUMED
                }
                _ => continue,
            };
            let Ok(count) = stats.get::<u64>(counter) else {
                continue;
            };
            let entry = progress
                .entry((element.clone(), counter))
                .or_insert((count, now));
            if entry.0 != count {
                *entry = (count, now);
                continue;
            }
            let still = now - entry.1;
            if still <= self.limits.stalled {
                continue;
            }
            // Input exists: records the group has not committed, or frames handed downstream
            // and never finished (the lag is stale while the source is blocked pushing).
            let lag: i64 = stats
                .get::<gst::Structure>(kafkasrc::CONSUMER_LAG)
                .map(|lag| lag.iter().filter_map(|(_, v)| v.get::<i64>().ok()).sum())
                .unwrap_or(0);
            let in_flight = stats.get::<u64>(kafkasrc::RECORDS_IN_FLIGHT).unwrap_or(0);
            if lag > 0 || in_flight > 0 {
                let progress = if counter == RECORDS_CONSUMED {
                    "record consumed"
                } else {
                    "frame pushed"
                };
                reasons.push(format!(
                    "{element}: records waiting ({lag} behind, {in_flight} in flight), no \
                     {progress} for {} s",
                    still.as_secs()
                ));
            } else if self.limits.live_input && counter == kafkasink::RECORDS_SENT {
                reasons.push(format!(
                    "{element}: nothing written for {} s from a live input",
                    still.as_secs()
                ));
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }

    /// Serves `/metrics` and `/healthz` on `address` from a thread of its own, for as long
    /// as the process runs; returns the address bound (port 0 picks a free port).
    pub fn serve(self: &Arc<Self>, address: SocketAddr) -> std::io::Result<SocketAddr> {
        let server = tiny_http::Server::http(address).map_err(std::io::Error::other)?;
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other("not an IP address"))?;
        let monitor = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("gkv-monitor".into())
            .spawn(move || {
                for request in server.incoming_requests() {
                    let Some(monitor) = monitor.upgrade() else {
                        break;
                    };
                    let (status, body, content_type) = match request.url() {
                        "/metrics" => (200, monitor.metrics(), METRICS_CONTENT_TYPE),
                        "/healthz" => match monitor.health() {
                            Ok(()) => (200, "ok\n".to_string(), "text/plain"),
                            Err(reasons) => (503, reasons.join("\n") + "\n", "text/plain"),
                        },
                        _ => (404, "try /metrics or /healthz\n".into(), "text/plain"),
                    };
                    let header = tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        content_type.as_bytes(),
                    )
                    .expect("a valid header");
                    let response = tiny_http::Response::from_string(body)
                        .with_status_code(status)
                        .with_header(header);
                    let _ = request.respond(response);
                }
            })?;
        Ok(bound)
    }
}

/// A stats value as a number, if it is one (a boolean is 0 or 1).
fn number(value: &gst::glib::SendValue) -> Option<f64> {
    if let Ok(v) = value.get::<u64>() {
        Some(v as f64)
    } else if let Ok(v) = value.get::<i64>() {
        Some(v as f64)
    } else if let Ok(v) = value.get::<u32>() {
        Some(f64::from(v))
    } else if let Ok(v) = value.get::<i32>() {
        Some(f64::from(v))
    } else if let Ok(v) = value.get::<f64>() {
        Some(v)
    } else if let Ok(v) = value.get::<bool>() {
        Some(f64::from(u8::from(v)))
    } else {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug)]
enum Value {
    Number(f64),
    /// Sum, count and (upper bound, count) per bucket, not cumulative.
    Histogram(f64, u64, Vec<(f64, u64)>),
}

type Labels = Vec<(String, String)>;

/// One metric's type and its samples.
#[derive(Debug)]
struct Family {
    kind: Kind,
    help: String,
    samples: Vec<(Labels, Value)>,
}

/// Every metric of one scrape, by name.
#[derive(Debug, Default)]
struct Families(BTreeMap<String, Family>);

impl Families {
    fn add(&mut self, name: String, kind: Kind, help: &str, labels: Labels, value: Value) {
        let family = self.0.entry(name).or_insert_with(|| Family {
            kind,
            help: help.to_string(),
            samples: Vec::new(),
        });
        // One name, one type: a sample of another type (an element of another project
        // that disagrees) is left out rather than served wrong.
        if family.kind == kind {
            family.samples.push((labels, value));
        }
    }

    /// A `stats` structure's fields as metrics named `prefix_field`: the fields it names
    /// in `counters` as counters, histogram structures as histograms, a nested structure's
    /// fields (`partition-0`) as one labelled series each, an array of structures (one per
    /// camera) as series labelled by their string fields; every other number a gauge.
    fn add_structure(
        &mut self,
        prefix: &str,
        labels: &[(String, String)],
        stats: &gst::StructureRef,
    ) {
        let counters: Vec<String> = stats
            .get::<gst::Array>(COUNTERS)
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.get::<String>().ok())
                    .collect()
            })
            .unwrap_or_default();
        for (field, value) in stats.iter() {
            if field == COUNTERS {
                continue;
            }
            let name = format!("{prefix}_{}", metric_name(field));
            let help = format!("{field} in {}", stats.name());
            if let Ok(nested) = value.get::<gst::Structure>() {
                if nested.name() == latency::STRUCTURE_NAME {
                    let buckets = latency::buckets_of(&nested);
                    let mut below = 0;
                    let per_bucket = buckets
                        .iter()
                        .map(|&(bound, count)| {
                            let within = count.saturating_sub(below);
                            below = count;
                            (bound, within)
                        })
                        .collect();
                    let sum = nested.get::<f64>("sum").unwrap_or(0.0);
                    let count = nested.get::<u64>("count").unwrap_or(below);
                    let value = Value::Histogram(sum, count, per_bucket);
                    self.add(name, Kind::Histogram, &help, labels.to_vec(), value);
                    continue;
                }
                for (key, value) in nested.iter() {
                    let Some(number) = number(value) else {
                        continue;
                    };
                    let (label, label_value) =
                        key.rsplit_once('-').unwrap_or(("key", key.as_str()));
                    let mut labels = labels.to_vec();
                    labels.push((metric_name(label), label_value.to_string()));
                    self.add(
                        name.clone(),
                        Kind::Gauge,
                        &help,
                        labels,
                        Value::Number(number),
                    );
                }
            } else if let Ok(array) = value.get::<gst::Array>() {
                for item in array.iter() {
                    let Ok(item) = item.get::<gst::Structure>() else {
                        continue;
                    };
                    let mut labels = labels.to_vec();
                    for (key, value) in item.iter() {
                        if let Ok(text) = value.get::<String>() {
                            labels.push((metric_name(key), text));
                        }
                    }
                    let item_prefix = format!("{prefix}_{}", metric_name(item.name()));
                    self.add_structure(&item_prefix, &labels, &item);
                }
            } else if let Some(number) = number(value) {
                let kind = if counters.iter().any(|c| c == field.as_str()) {
                    Kind::Counter
                } else {
                    Kind::Gauge
                };
                self.add(name, kind, &help, labels.to_vec(), Value::Number(number));
            }
        }
    }
}

impl prometheus_client::collector::Collector for Families {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::NoLabelSet;
        use prometheus_client::metrics::MetricType;
        for (name, family) in &self.0 {
            let metric_type = match family.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
                Kind::Histogram => MetricType::Histogram,
            };
            let mut metric = encoder.encode_descriptor(name, &family.help, None, metric_type)?;
            for (labels, value) in &family.samples {
                let mut sample = metric.encode_family(labels)?;
                // Counts as integers (`42`, not `42.0`).
                let integral = |v: f64| v.fract() == 0.0 && v.abs() < 9e15;
                match (family.kind, value) {
                    (Kind::Counter, Value::Number(v)) if integral(*v) && *v >= 0.0 => {
                        sample.encode_counter::<NoLabelSet, _, u64>(&(*v as u64), None)?
                    }
                    (Kind::Counter, Value::Number(v)) => {
                        sample.encode_counter::<NoLabelSet, _, f64>(v, None)?
                    }
                    (Kind::Gauge, Value::Number(v)) if integral(*v) => {
                        sample.encode_gauge(&(*v as i64))?
                    }
                    (Kind::Gauge, Value::Number(v)) => sample.encode_gauge(v)?,
                    (Kind::Histogram, Value::Histogram(sum, count, buckets)) => {
                        sample.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)?
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// `[a-zA-Z0-9_]` only, as Prometheus wants metric and label names.
fn metric_name(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_become_labelled_gauges_and_a_failure_makes_it_unhealthy() {
        gst::init().unwrap();
        let pipeline = gst::Pipeline::new();
        // `identity` has a `stats` structure too: in, out, dropped, ...
        let identity = gst::ElementFactory::make("identity")
            .name("pass \"1\"")
            .build()
            .unwrap();
        pipeline.add(&identity).unwrap();
        let monitor = Monitor::new(&pipeline, HealthLimits::default());
        let text = monitor.metrics();
        assert!(
            text.contains("# TYPE gkv_pipeline_healthy gauge\n"),
            "{text}"
        );
        assert!(text.contains("\ngkv_pipeline_healthy 1\n"), "{text}");
        assert!(text.contains("element=\"pass \\\"1\\\"\""), "{text}");
        monitor.failed("decoder: not negotiated");
        assert_eq!(
            monitor.health(),
            Err(vec![
                "the pipeline failed: decoder: not negotiated".to_string()
            ])
        );
        assert!(monitor.metrics().contains("gkv_pipeline_healthy 0\n"));
    }

    #[test]
    fn a_programs_own_stats_are_served_and_stall_like_a_sources() {
        gst::init().unwrap();
        let limits = HealthLimits {
            stalled: Duration::ZERO,
            ..Default::default()
        };
        let monitor = Monitor::without_pipeline(limits);
        let lag = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let seen = lag.clone();
        monitor.add_stats("counter", move || {
            let lag = gst::Structure::builder("consumer-lag")
                .field(
                    "partition-0",
                    seen.load(std::sync::atomic::Ordering::SeqCst),
                )
                .build();
            gst::Structure::builder("counter-stats")
                .field("records-consumed", 7u64)
                .field("consumer-lag", lag)
                .build()
        });
        let text = monitor.metrics();
        assert!(
            text.contains("gkv_counter_records_consumed{element=\"counter\"} 7\n"),
            "{text}"
        );
        assert!(
            text.contains("gkv_counter_consumer_lag{element=\"counter\",partition=\"0\"} 0\n"),
            "{text}"
        );
        // Nothing waiting: healthy, however long nothing came.
        assert_eq!(monitor.health(), Ok(()));
        lag.store(3, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            monitor.health(),
            Err(vec![
                "counter: records waiting (3 behind, 0 in flight), no record consumed for 0 s"
                    .to_string()
            ])
        );
    }

    #[test]
    fn serves_metrics_and_health_over_http() {
        gst::init().unwrap();
        let pipeline = gst::Pipeline::new();
        let monitor = Monitor::new(&pipeline, HealthLimits::default());
        let address = monitor
            .serve("127.0.0.1:0".parse().unwrap())
            .unwrap()
            .to_string();
        let (status, body) = testkit::http_get(&address, "/metrics");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("gkv_pipeline_healthy 1\n"), "{body}");
        assert_eq!(
            testkit::http_get(&address, "/healthz"),
            (200, "ok\n".into())
        );
        monitor.failed("decoder: not negotiated");
        assert_eq!(
            testkit::http_get(&address, "/healthz"),
            (503, "the pipeline failed: decoder: not negotiated\n".into())
        );
        assert_eq!(testkit::http_get(&address, "/other").0, 404);
    }

    /// The fields the health rules read, in the structures the elements really post.
    #[test]
    fn the_kafka_elements_stats_have_the_fields_the_health_rules_read() {
        gst::init().unwrap();
        gstkafka::plugin_register_static().unwrap();
        let stats_of = |factory: &str| {
            gst::ElementFactory::make(factory)
                .build()
                .unwrap()
                .property::<gst::Structure>("stats")
        };
        let source = stats_of("kafkasrc");
        assert_eq!(source.name(), kafkasrc::NAME);
        for field in [
            kafkasrc::BUFFERS_PUSHED,
            kafkasrc::RECORDS_IN_FLIGHT,
            BROKER_DOWN_MS,
        ] {
            assert!(source.get::<u64>(field).is_ok(), "{field} in {source}");
        }
        assert!(
            source.get::<gst::Structure>(kafkasrc::CONSUMER_LAG).is_ok(),
            "{source}"
        );
        let sink = stats_of("kafkasink");
        assert_eq!(sink.name(), kafkasink::NAME);
        for field in [kafkasink::RECORDS_SENT, BROKER_DOWN_MS] {
            assert!(sink.get::<u64>(field).is_ok(), "{field} in {sink}");
        }
    }

    #[test]
    fn names_are_made_safe() {
        assert_eq!(metric_name("records-in-flight"), "records_in_flight");
    }

    #[test]
    fn counters_histograms_and_cameras_get_their_types_and_labels() {
        gst::init().unwrap();
        let monitor = Monitor::without_pipeline(HealthLimits::default());
        monitor.add_stats("src", || {
            let mut latency = latency::Histogram::default();
            for ms in [3.0, 40.0, 40.0] {
                latency.observe(ms);
            }
            let camera = |name: &str, missing: u64| {
                gst::Structure::builder("camera")
                    .field("camera", name)
                    .field("frames-missing", missing)
                    .field("latency-ms", latency.to_structure())
                    .build()
                    .to_send_value()
            };
            gst::Structure::builder("kafkasrc-stats")
                .field("buffers-pushed", 42u64)
                .field("records-in-flight", 2u64)
                .field(
                    COUNTERS,
                    kafkavision::per_run::counters(&["buffers-pushed"]),
                )
                .field(
                    "cameras",
                    gst::Array::new([camera("cam1", 2), camera("cam \"2\"", 0)]),
                )
                .build()
        });
        let text = monitor.metrics();
        for line in [
            "# TYPE gkv_kafkasrc_buffers_pushed counter",
            "gkv_kafkasrc_buffers_pushed_total{element=\"src\"} 42",
            "# TYPE gkv_kafkasrc_records_in_flight gauge",
            "gkv_kafkasrc_records_in_flight{element=\"src\"} 2",
            "gkv_kafkasrc_camera_frames_missing{element=\"src\",camera=\"cam1\"} 2",
            "gkv_kafkasrc_camera_frames_missing{element=\"src\",camera=\"cam \\\"2\\\"\"} 0",
            "# TYPE gkv_kafkasrc_camera_latency_ms histogram",
            "gkv_kafkasrc_camera_latency_ms_bucket{le=\"5.0\",element=\"src\",camera=\"cam1\"} 1",
            "gkv_kafkasrc_camera_latency_ms_bucket{le=\"50.0\",element=\"src\",camera=\"cam1\"} 3",
            "gkv_kafkasrc_camera_latency_ms_count{element=\"src\",camera=\"cam1\"} 3",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
        assert!(!text.contains("counters"), "{text}");
    }
}
