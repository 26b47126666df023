// SPDX-License-Identifier: MIT OR Apache-2.0
//! What `kafkasink` and `kafkasrc` share as Kafka clients: the client properties
//! (`brokers`, `topic`, `config`, `connect-timeout`) in one [`ClientSettings`], the
//! librdkafka configuration built from them, librdkafka's log routed into GStreamer's, and
//! the check that the broker answers and the topic exists. A client property is added
//! here once and both elements have it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use kafkavision::client_config::{ClientConfig, is_secret_key};
use rdkafka::client::{Client, ClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;

pub const DEFAULT_BROKERS: &str = "localhost:9092";
pub const DEFAULT_CONNECT_TIMEOUT_MS: u32 = 10_000;

/// The client properties of both elements.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub brokers: String,
    pub topic: Option<String>,
    /// The parsed `config`, or why it could not be parsed (reported by `start`).
    pub config: Result<ClientConfig, String>,
    pub connect_timeout_ms: u32,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            brokers: DEFAULT_BROKERS.to_string(),
            topic: None,
            config: Ok(ClientConfig::default()),
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
        }
    }
}

/// What differs between the producer's and the consumer's client properties.
pub struct ClientBlurbs {
    pub topic: &'static str,
    pub config: &'static str,
}

/// The librdkafka configuration a started element uses, and the user's part of it as
/// written (for logs: `${NAME}` unexpanded, secrets masked by `redacted`).
pub struct StartConfig {
    pub topic: String,
    pub connect_timeout: Duration,
    /// The `config` property as written.
    pub user: ClientConfig,
    /// The `config` property with `${NAME}` values read from the environment.
    pub client: ClientConfig,
}

impl ClientSettings {
    pub fn properties(blurbs: &ClientBlurbs) -> Vec<glib::ParamSpec> {
        vec![
            glib::ParamSpecString::builder("brokers")
                .nick("Brokers")
                .blurb("Kafka bootstrap servers as host:port,host:port, e.g. 127.0.0.1:9092.")
                .default_value(Some(DEFAULT_BROKERS))
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("topic")
                .nick("Topic")
                .blurb(blurbs.topic)
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("config")
                .nick("Client configuration")
                .blurb(blurbs.config)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("connect-timeout")
                .nick("Connect timeout")
                .blurb(
                    "Milliseconds to wait for the brokers when starting, e.g. 10000; then the \
                     element fails with the reason.",
                )
                .minimum(1)
                .default_value(DEFAULT_CONNECT_TIMEOUT_MS)
                .mutable_ready()
                .build(),
        ]
    }

    /// Sets a client property; `Err` is the parse error of `config`, to be logged. Returns
    /// `Ok(false)` when `name` is not a client property.
    pub fn set_property(&mut self, name: &str, value: &glib::Value) -> Result<bool, String> {
        match name {
            "brokers" => {
                self.brokers = value
                    .get::<Option<String>>()
                    .unwrap()
                    .unwrap_or_else(|| DEFAULT_BROKERS.to_string())
            }
            "topic" => self.topic = value.get().unwrap(),
            "config" => {
                self.config =
                    ClientConfig::parse(value.get::<Option<&str>>().unwrap().unwrap_or(""))
                        .map_err(|e| e.to_string());
                if let Err(err) = &self.config {
                    return Err(format!("Invalid config: {err}"));
                }
            }
            "connect-timeout" => self.connect_timeout_ms = value.get().unwrap(),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The value of a client property; `config` never shows a secret.
    pub fn property(&self, name: &str) -> Option<glib::Value> {
        Some(match name {
            "brokers" => self.brokers.to_value(),
            "topic" => self.topic.to_value(),
            "config" => match &self.config {
                Ok(config) => config.redacted().to_value(),
                Err(err) => format!("<invalid: {err}>").to_value(),
            },
            "connect-timeout" => self.connect_timeout_ms.to_value(),
            _ => return None,
        })
    }

    /// Checks the settings when the element starts; the error names the property.
    pub fn for_start(&self) -> Result<StartConfig, gst::ErrorMessage> {
        let Some(topic) = self.topic.clone().filter(|t| !t.is_empty()) else {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ("No topic set; set the 'topic' property, e.g. topic=frames")
            ));
        };
        let invalid = |err: &dyn std::fmt::Display| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                ("Invalid 'config' property: {err}")
            )
        };
        let user = self.config.clone().map_err(|err| invalid(&err))?;
        let client = user.with_environment().map_err(|err| invalid(&err))?;
        Ok(StartConfig {
            topic,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms as u64),
            user,
            client,
        })
    }

    /// The librdkafka configuration: our defaults first, then the user's `config` entries
    /// (which win), and `bootstrap.servers` from `brokers`.
    pub fn rdkafka_config(
        &self,
        start: &StartConfig,
        defaults: &[(&str, &str)],
    ) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in start.client.entries() {
            // librdkafka's error for a setting it refuses quotes the value (seen: OAuth
            // secrets in this build without libcurl, Java's sasl.jaas.config): a refused
            // secret goes in masked, so the client fails with the same error minus the
            // secret.
            if is_secret_key(key) && !librdkafka_accepts(key, value) {
                config.set(key, "***");
            } else {
                config.set(key, value);
            }
        }
        // librdkafka's statistics feed `stats` (broker-down-ms, consumer-lag); a `config`
        // entry statistics.interval.ms=0 turns them off.
        if start.client.get("statistics.interval.ms").is_none() {
            config.set("statistics.interval.ms", "1000");
        }
        if start.client.get("bootstrap.servers").is_none() {
            config.set("bootstrap.servers", &self.brokers);
        }
        // librdkafka's `debug` contexts log at debug level: without this they were dropped.
        config.set_log_level(if start.client.get("debug").is_some() {
            RDKafkaLogLevel::Debug
        } else {
            RDKafkaLogLevel::Info
        });
        config
    }
}

fn librdkafka_accepts(key: &str, value: &str) -> bool {
    rdkafka::ClientConfig::new()
        .set(key, value)
        .create_native_config()
        .is_ok()
}

/// Client context shared by both elements: librdkafka's log goes to the element's debug
/// category, and statistics and client-level errors go to [`ClientHealth`].
pub struct ClientLog {
    cat: gst::DebugCategory,
    element: glib::WeakRef<gst::Element>,
    health: Arc<ClientHealth>,
}

/// What librdkafka's statistics (every `statistics.interval.ms`) say about the brokers and
/// the consumer's lag, for the elements' `stats`, and the last client-level error, for
/// error messages.
#[derive(Default)]
pub struct ClientHealth(Mutex<HealthState>);

#[derive(Default)]
struct HealthState {
    /// Since when no broker has been up; `None` while one is.
    down_since: Option<Instant>,
    /// Per partition: the newest offset minus the committed one.
    lag: BTreeMap<i32, i64>,
    /// The client-level error that says most about why the brokers cannot be used.
    last_error: Option<String>,
}

impl ClientHealth {
    /// How long no broker has been reachable, in ms (0 while one is).
    pub fn broker_down_ms(&self) -> u64 {
        let state = self.0.lock().unwrap();
        state
            .down_since
            .map_or(0, |since| since.elapsed().as_millis() as u64)
    }

    /// The consumer's lag per partition, as fields `partition-N` of a `consumer-lag`
    /// structure (empty until librdkafka's first statistics).
    pub fn consumer_lag(&self) -> gst::Structure {
        let state = self.0.lock().unwrap();
        let mut lag = gst::Structure::new_empty("consumer-lag");
        for (partition, records) in &state.lag {
            lag.set(format!("partition-{partition}"), *records);
        }
        lag
    }

    /// Keeps a client-level error for error messages. "All brokers down" follows the error
    /// that says why (TLS handshake, SASL, refused connection): it never replaces that one.
    pub fn record_error(&self, error: &KafkaError, reason: &str) {
        let all_down = error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown);
        let mut state = self.0.lock().unwrap();
        if !(all_down && state.last_error.is_some()) {
            state.last_error = Some(format!("{error}: {reason}"));
        }
    }

    pub fn last_error(&self) -> Option<String> {
        self.0.lock().unwrap().last_error.clone()
    }

    pub fn clear(&self) {
        *self.0.lock().unwrap() = HealthState::default();
    }

    pub fn update(&self, statistics: &Statistics) {
        // Brokers learned from metadata have node ids >= 0; bootstrap entries are -1.
        let up = statistics
            .brokers
            .values()
            .any(|b| b.nodeid >= 0 && b.state == "UP");
        let mut state = self.0.lock().unwrap();
        if up {
            state.down_since = None;
        } else if state.down_since.is_none() {
            state.down_since = Some(Instant::now());
        }
        if statistics.client_type == "consumer" {
            // Before the group's first commit on a partition, librdkafka has no lag for it:
            // count the records not handed downstream yet instead.
            state.lag = statistics
                .topics
                .values()
                .flat_map(|t| t.partitions.values())
                .filter(|p| p.partition >= 0)
                .filter_map(|p| {
                    let lag = if p.consumer_lag >= 0 {
                        p.consumer_lag
                    } else if p.hi_offset >= 0 && p.app_offset >= 0 {
                        (p.hi_offset - p.app_offset).max(0)
                    } else {
                        return None;
                    };
                    Some((p.partition, lag))
                })
                .collect();
        }
    }
}

impl ClientLog {
    pub fn new(cat: gst::DebugCategory, element: &gst::Element, health: Arc<ClientHealth>) -> Self {
        ClientLog {
            cat,
            element: element.downgrade(),
            health,
        }
    }

    pub fn last_error(&self) -> Option<String> {
        self.health.last_error()
    }
}

impl ClientContext for ClientLog {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let level = match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => gst::DebugLevel::Error,
            RDKafkaLogLevel::Warning => gst::DebugLevel::Warning,
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => gst::DebugLevel::Info,
            RDKafkaLogLevel::Debug => gst::DebugLevel::Debug,
        };
        match self.element.upgrade() {
            Some(element) => gst::log_with_level!(
                self.cat,
                level,
                obj = element,
                "librdkafka {facility}: {message}"
            ),
            None => gst::log_with_level!(self.cat, level, "librdkafka {facility}: {message}"),
        }
    }

    fn stats(&self, statistics: Statistics) {
        self.health.update(&statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        gst::warning!(self.cat, "librdkafka error: {error}: {reason}");
        self.health.record_error(&error, reason);
    }
}

/// How [`check_topic`]'s errors name the settings to change.
pub struct SettingNames {
    pub brokers: &'static str,
    pub config: &'static str,
    pub timeout: &'static str,
}

/// The elements' names of their client settings.
pub const ELEMENT_SETTINGS: SettingNames = SettingNames {
    brokers: "the 'brokers' property",
    config: "the 'config' property",
    timeout: "'connect-timeout'",
};

/// Checks within `timeout` that the brokers answer and `topic` exists; returns its
/// partition count. The error names what to change, as `names` calls it.
///
/// `last_error` serves the client's pending events first (a consumer's error callbacks run
/// only when it is polled) and returns the last client-level error. A broker that refuses
/// our credentials or TLS settings ends the wait at once: waiting longer cannot help.
pub fn check_topic<C: ClientContext>(
    client: &Client<C>,
    brokers: &str,
    topic: &str,
    timeout: Duration,
    names: &SettingNames,
    last_error: impl Fn() -> Option<String>,
) -> Result<usize, String> {
    let deadline = Instant::now() + timeout;
    let metadata = loop {
        let slice = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(500));
        let err = match client.fetch_metadata(Some(topic), slice) {
            Ok(metadata) => break metadata,
            Err(err) => err,
        };
        let reason = last_error();
        let refused = reason.as_deref().is_some_and(is_security_failure);
        if refused || Instant::now() >= deadline {
            let reason = reason.unwrap_or_else(|| err.to_string());
            return Err(if refused {
                format!(
                    "Kafka brokers '{brokers}' refused the connection's security settings \
                     ({reason}); check security.protocol, sasl.mechanism, sasl.username, \
                     sasl.password and ssl.* in {}",
                    names.config
                )
            } else {
                format!(
                    "could not reach Kafka brokers '{brokers}' within {} ms ({reason}); check \
                     {} (host:port,...) and that the broker is up, or raise {}; a broker \
                     that requires TLS or SASL needs security.protocol and its settings in {}",
                    timeout.as_millis(),
                    names.brokers,
                    names.timeout,
                    names.config
                )
            });
        }
    };
    let Some(topic_meta) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(format!(
            "broker '{brokers}' returned no metadata for topic '{topic}'"
        ));
    };
    if let Some(err) = topic_meta.error() {
        let code = RDKafkaErrorCode::from(err);
        return Err(if code == RDKafkaErrorCode::UnknownTopicOrPartition {
            format!(
                "topic '{topic}' does not exist on brokers '{brokers}'; create it (e.g. \
                 kafka-topics.sh --create --topic {topic} --partitions 4) or let the \
                 broker create it with allow.auto.create.topics=true in {}",
                names.config
            )
        } else {
            format!("topic '{topic}' on brokers '{brokers}' is not usable: {code}")
        });
    }
    if topic_meta.partitions().is_empty() {
        return Err(format!(
            "topic '{topic}' on brokers '{brokers}' has no partitions"
        ));
    }
    Ok(topic_meta.partitions().len())
}

/// Whether a librdkafka error says the broker refused our credentials or TLS settings.
fn is_security_failure(reason: &str) -> bool {
    [
        "Authentication",
        "SASL",
        "SSL handshake failed",
        "certificate verify failed",
    ]
    .iter()
    .any(|sign| reason.contains(sign))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_properties_set_read_back_and_check_at_start() {
        gst::init().unwrap();
        let mut settings = ClientSettings::default();
        assert!(matches!(settings.for_start(), Err(e) if e.to_string().contains("'topic'")));
        assert_eq!(
            settings.set_property("topic", &"frames".to_value()),
            Ok(true)
        );
        assert_eq!(
            settings.set_property("config", &"sasl.password=hunter2,linger.ms=5".to_value()),
            Ok(true)
        );
        let shown = settings
            .property("config")
            .unwrap()
            .get::<String>()
            .unwrap();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(settings.set_property("config", &"oops".to_value()).is_err());
        assert!(settings.for_start().is_err());
        assert_eq!(
            settings.set_property("group-id", &"g".to_value()),
            Ok(false)
        );
        assert!(settings.property("group-id").is_none());
    }
}
