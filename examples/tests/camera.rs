// SPDX-License-Identifier: MIT OR Apache-2.0
//! The publisher against our camera simulator: it survives a camera restart by
//! reconnecting (a new stream in Kafka, readable from its first keyframe), and fails
//! clearly when told not to retry.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn brokers() -> String {
    std::env::var("KAFKA_BROKERS")
        .expect("KAFKA_BROKERS is not set: run the tests through scripts/test")
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

fn create_topic(topic: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let new_topic = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    let options = AdminOptions::new();
    let mut future = std::pin::pin!(admin.create_topics([&new_topic], &options));
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let std::task::Poll::Ready(result) = future.as_mut().poll(&mut context) {
            result.unwrap().into_iter().for_each(|r| {
                r.unwrap();
            });
            return;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

unsafe extern "C" {
    fn kill(pid: i32, signal: i32) -> i32;
}

fn terminate(child: &Child) {
    unsafe { kill(child.id() as i32, 15) };
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the simulator on `port` and waits until it is ready.
fn cameras(port: u16) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_camera-sim"))
        .args(["--cameras", "1", "--port", &port.to_string(), "--fps", "10"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines.next().expect("camera-sim exited").unwrap();
        if line.contains("camera-sim: ready") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Process(child)
}

#[test]
fn the_publisher_reconnects_after_a_camera_restart() {
    let topic = unique("camera-restart");
    create_topic(&topic);
    let port = free_port();
    let url = format!("rtsp://127.0.0.1:{port}/cam1");
    let first = cameras(port);
    let publisher = Process(
        Command::new(env!("CARGO_BIN_EXE_publisher"))
            .args([
                "--url",
                &url,
                "--brokers",
                &brokers(),
                "--topic",
                &topic,
                "--camera",
                "cam1",
            ])
            .args(["--reconnect-seconds", "1"])
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(3));
    terminate(&first.0);
    drop(first);
    std::thread::sleep(Duration::from_secs(2));
    let _second = cameras(port);
    std::thread::sleep(Duration::from_secs(5));
    terminate(&publisher.0);
    let mut publisher = publisher;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = publisher.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the publisher did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "publisher: {status}");

    // Two streams: before and after the reconnect, each starting with a keyframe's worth
    // of frames.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("camera-check"))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut streams = BTreeSet::new();
    let mut frames = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let headers = m.headers().unwrap();
        for h in headers.iter() {
            if h.key == "gkv-stream" {
                streams.insert(String::from_utf8_lossy(h.value.unwrap()).into_owned());
            }
        }
        frames += 1;
    }
    assert_eq!(
        streams.len(),
        2,
        "streams before and after the restart: {streams:?}"
    );
    assert!(frames > 50, "{frames} records");
}

#[test]
fn without_retries_a_lost_camera_fails_clearly() {
    let topic = unique("camera-lost");
    create_topic(&topic);
    let port = free_port(); // nothing listens there
    let url = format!("rtsp://127.0.0.1:{port}/cam1");
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_publisher"))
        .args([
            "--url",
            &url,
            "--brokers",
            &brokers(),
            "--topic",
            &topic,
            "--max-retries",
            "0",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&url) && stderr.contains("giving up"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}
