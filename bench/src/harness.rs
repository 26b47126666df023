// SPDX-License-Identifier: MIT OR Apache-2.0
//! What `scaling-bench` and `soak-bench` share: client configuration, topics with
//! unique names, and the resident memory of a process.

// Each bench uses only part of it.
#![allow(dead_code)]

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

/// kafkasink's producer defaults, stated for the bench's own producer too.
pub const PRODUCER_CONFIG: &str =
    "acks=all,enable.idempotence=true,linger.ms=5,message.max.bytes=4000000";

/// A reader that assigns partitions itself (librdkafka wants a group id for assign()
/// even when nothing is committed).
pub const READER_CONFIG: &str =
    "fetch.wait.max.ms=20,group.id=bench-reader,enable.auto.commit=false";

/// `entries` is `key=value,key=value`.
pub fn rdkafka_config(brokers: &str, entries: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for entry in entries.split(',') {
        let (key, value) = entry.split_once('=').expect("key=value");
        config.set(key, value);
    }
    config
}

/// tansu creates no topics on demand.
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| e.to_string())?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = futures_executor::block_on(admin.create_topics([&new_topic], &options))
        .map_err(|e| format!("creating {topic}: {e}"))?;
    for result in results {
        result.map_err(|(name, code)| format!("creating {name}: {code}"))?;
    }
    Ok(())
}

pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A topic or group name no earlier run used, e.g. `scaling-in-18a3...`.
pub fn unique_name(what: &str) -> String {
    format!("{what}-{:x}", unix_ns())
}

/// VmRSS of a process in kB, from /proc; None once it has exited.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A pipeline from a constant description, with properties set on its named elements:
/// `(element name, property, value)`. Values that come from the command line (brokers,
/// topics, paths, counts) are set as typed properties, never formatted into a description.
pub fn pipeline(
    description: &'static str,
    properties: &[(&str, &str, &dyn gst::prelude::ToValue)],
) -> Result<gst::Pipeline, String> {
    use gst::prelude::*;
    let pipeline = gst::parse::launch(description)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    for (element, property, value) in properties {
        pipeline
            .by_name(element)
            .ok_or_else(|| format!("no element named {element}"))?
            .set_property(property, value.to_value());
    }
    Ok(pipeline)
}

/// A value that goes into a `gst-launch-1.0` command line (soak-bench runs gst-launch
/// processes, as users do, and gst-launch joins its arguments into one description): only
/// plain tokens pass, so a value cannot add elements or properties.
pub fn launch_token<'a>(what: &str, value: &'a str) -> Result<&'a str, String> {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:/,+@".contains(c));
    if plain {
        Ok(value)
    } else {
        Err(format!(
            "{what} '{value}' has characters a gst-launch line would read as syntax; use \
             letters, digits and . _ - : / , + @ only"
        ))
    }
}
