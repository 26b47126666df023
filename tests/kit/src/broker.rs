// SPDX-License-Identifier: MIT OR Apache-2.0
//! The broker `scripts/test` started, names no other test uses, and topics (tansu creates
//! none on first use).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;

/// The broker `scripts/test` started (or any Kafka cluster the caller points at).
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").expect(
        "KAFKA_BROKERS is not set: run the tests through scripts/test, which starts a broker, \
         or set KAFKA_BROKERS=host:port (e.g. B=$(scripts/broker start))",
    )
}

/// A name no other test (or earlier run against the same broker) uses.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = kafkavision::clock::unix_time_ns() % 1_000_000_000;
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn create_topic(topic: &str, partitions: i32) {
    create_topic_on(&brokers(), topic, partitions)
}

/// Creates `topic` on the given brokers (e.g. a test's private broker).
pub fn create_topic_on(brokers: &str, topic: &str, partitions: i32) {
    try_create_topic(brokers, "", topic, partitions).unwrap_or_else(|e| panic!("{e}"))
}

/// Creates `topic` on a broker just started, whose first requests may come before its
/// storage is ready: retried for 30 s. `settings` as in [`client_config`] (TLS, logins).
pub fn create_topic_once_ready(brokers: &str, settings: &str, topic: &str, partitions: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match try_create_topic(brokers, settings, topic, partitions) {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

/// Creates `topic` through an admin client with `settings` (see [`client_config`]); the
/// error names the topic and what the broker answered.
pub fn try_create_topic(
    brokers: &str,
    settings: &str,
    topic: &str,
    partitions: i32,
) -> Result<(), String> {
    try_create_topic_with(brokers, settings, topic, partitions, &[])
}

/// Creates `topic` with topic settings (e.g. `("cleanup.policy", "compact")`).
pub fn try_create_topic_with(
    brokers: &str,
    settings: &str,
    topic: &str,
    partitions: i32,
    topic_settings: &[(&str, &str)],
) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers, settings)?
        .create()
        .map_err(|e| format!("an admin client for {brokers}: {e}"))?;
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (key, value) in topic_settings {
        new_topic = new_topic.set(key, value);
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = futures_executor::block_on(admin.create_topics([&new_topic], &options))
        .map_err(|e| format!("creating topic {topic}: {e}"))?;
    for result in results {
        result.map_err(|(name, code)| format!("creating topic {name}: {code}"))?;
    }
    Ok(())
}

/// A topic setting as the broker describes it (e.g. `retention.ms`), `None` when unset.
pub fn topic_setting(topic: &str, name: &str) -> Result<Option<String>, String> {
    let admin: AdminClient<DefaultClientContext> = client_config(&brokers(), "")?
        .create()
        .map_err(|e| format!("an admin client: {e}"))?;
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let results = futures_executor::block_on(
        admin.describe_configs([&ResourceSpecifier::Topic(topic)], &options),
    )
    .map_err(|e| format!("describing topic {topic}: {e}"))?;
    let resource = results
        .into_iter()
        .next()
        .ok_or("no description")?
        .map_err(|e| format!("describing topic {topic}: {e}"))?;
    Ok(resource.get(name).and_then(|entry| entry.value.clone()))
}

/// A client configuration for `brokers` with `settings` written as the elements' `config`
/// property reads them (`linger.ms=5,acks=all`), so one string can configure both.
pub fn client_config(brokers: &str, settings: &str) -> Result<ClientConfig, String> {
    let settings =
        kafkavision::client_config::ClientConfig::parse(settings).map_err(|e| e.to_string())?;
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in settings.entries() {
        config.set(key, value);
    }
    Ok(config)
}

/// A fresh compacted topic (`cleanup.policy=compact`): a `state-topic`.
pub fn new_compacted_topic(prefix: &str, partitions: i32) -> String {
    let topic = unique_name(prefix);
    try_create_topic_with(
        &brokers(),
        "",
        &topic,
        partitions,
        &[("cleanup.policy", "compact")],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    topic
}

/// A fresh topic with `partitions` partitions.
pub fn new_topic(prefix: &str, partitions: i32) -> String {
    let topic = unique_name(prefix);
    create_topic(&topic, partitions);
    topic
}
