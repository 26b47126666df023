// SPDX-License-Identifier: MIT OR Apache-2.0
//! What the example programs' tests share: running the programs as child processes and
//! reading topics with a bare consumer.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst_kafka_vision_examples::testing::{brokers, unique};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

pub fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Kills the child when dropped, so a failing test leaves nothing behind. Its stdout is
/// read in the background and kept, line by line.
pub struct Running {
    pub child: Child,
    name: String,
    lines: Arc<Mutex<Vec<String>>>,
    /// Captured stderr, for children started with [`Running::start_with_env`].
    stderr: Arc<Mutex<String>>,
}

impl Running {
    pub fn start(name: &'static str, args: &[&str]) -> Running {
        Self::spawn(name, args, &[], false)
    }

    /// Starts with extra environment variables and keeps stderr for [`Running::stderr`].
    pub fn start_with_env(name: &'static str, args: &[&str], env: &[(&str, &str)]) -> Running {
        Self::spawn(name, args, env, true)
    }

    fn spawn(
        name: &'static str,
        args: &[&str],
        env: &[(&str, &str)],
        capture_stderr: bool,
    ) -> Running {
        let mut child = Command::new(bin(name))
            .args(args)
            .envs(env.iter().copied())
            .current_dir(repo())
            .stdout(Stdio::piped())
            .stderr(if capture_stderr {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let store = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                store.lock().unwrap().push(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let store = stderr.clone();
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = std::io::Read::read_to_end(&mut pipe, &mut bytes);
                *store.lock().unwrap() = String::from_utf8_lossy(&bytes).into_owned();
            });
        }
        Running {
            child,
            name: name.to_string(),
            lines,
            stderr,
        }
    }

    /// What the child wrote to stderr, once it has exited (see [`Running::start_with_env`]).
    pub fn stderr(&self) -> String {
        // The reader thread finishes just after the child's exit.
        for _ in 0..50 {
            let text = self.stderr.lock().unwrap().clone();
            if !text.is_empty() {
                return text;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stderr.lock().unwrap().clone()
    }

    /// The name failures are reported under, e.g. one worker among several.
    pub fn named(mut self, name: &str) -> Running {
        self.name = name.to_string();
        self
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until a stdout line contains `needle`; returns the lines up to it.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.lines();
            if let Some(at) = lines.iter().position(|l| l.contains(needle)) {
                return lines[..=at].to_vec();
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not print '{needle}' in {timeout:?}: {lines:?}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The number in the last line reading "NAME: holds N partition(s)" (detector-worker).
    pub fn partitions_held(&self) -> u32 {
        self.last_number_after(": holds ")
    }

    /// The number in "NAME: done, N frames" (detector-worker, once it has exited).
    pub fn frames_done(&self) -> u32 {
        self.last_number_after(": done, ")
    }

    fn last_number_after(&self, marker: &str) -> u32 {
        self.lines()
            .iter()
            .rev()
            .find_map(|l| {
                let rest = &l[l.find(marker)? + marker.len()..];
                rest.split_whitespace().next()?.parse().ok()
            })
            .unwrap_or(0)
    }

    pub fn terminate(&mut self) {
        unsafe { libc_kill(self.child.id() as i32, 15) };
    }

    /// SIGKILL: no clean-up, no final commit, as in a crash or an OOM kill.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit in {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

pub fn bin(name: &str) -> String {
    match name {
        "camera-sim" => env!("CARGO_BIN_EXE_camera-sim").into(),
        "publisher" => env!("CARGO_BIN_EXE_publisher").into(),
        "detector-worker" => env!("CARGO_BIN_EXE_detector-worker").into(),
        "counter" => env!("CARGO_BIN_EXE_counter").into(),
        "archive" => env!("CARGO_BIN_EXE_archive").into(),
        "viewer" => env!("CARGO_BIN_EXE_viewer").into(),
        other => panic!("no binary {other}"),
    }
}

pub struct Record {
    pub key: String,
    pub headers: BTreeMap<String, String>,
    pub value: Vec<u8>,
}

pub fn read_all(
    topic: &str,
    partitions: i32,
    timeout: Duration,
    enough: impl FnMut(&[Record]) -> bool,
) -> Vec<Record> {
    read_all_from(&brokers(), topic, partitions, timeout, enough)
}

/// [`read_all`] from another cluster than the test broker.
pub fn read_all_from(
    brokers: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
    mut enough: impl FnMut(&[Record]) -> bool,
) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("system-check"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    let mut idle_since = Instant::now();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                idle_since = Instant::now();
                records.push(Record {
                    key: m
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .unwrap_or_default(),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| {
                                    (
                                        h.key.to_string(),
                                        String::from_utf8_lossy(h.value.unwrap_or_default())
                                            .into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    value: m.payload().unwrap_or_default().to_vec(),
                });
            }
            _ => {
                if enough(&records) && idle_since.elapsed() > Duration::from_secs(1) {
                    break;
                }
            }
        }
    }
    records
}

pub fn is_buffer(r: &Record) -> bool {
    r.headers.get("gkv-kind").map(String::as_str) == Some("buffer")
}
