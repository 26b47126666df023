// SPDX-License-Identifier: MIT OR Apache-2.0
//! Frames across hosts: five Linux network namespaces stand in for machines on one LAN.
//!
//! ```text
//!   broker 10.231.7.1  camera 10.231.7.2  worker1 10.231.7.3  worker2 10.231.7.4
//!        eth0               eth0               eth0               eth0
//!          \________________ | ________________ | _______________/
//!                       switch: bridge br0 (one veth port per host)
//! ```
//!
//! nisshi runs on the broker host, listening on 10.231.7.1:9092 and advertising that
//! address, so clients on the other hosts (which cannot reach the broker's loopback) follow
//! the metadata to the right place. The camera host publishes JPEG frames, two
//! `detector-worker`s on the worker hosts share them, and a reader on the camera host checks
//! that every frame got its detections record, also after worker1's link went down for
//! longer than the group's session timeout (its partitions move to worker2) and came back.
//!
//! Nothing is added to the root namespace: every veth pair is created inside the switch
//! namespace with its host end moved straight to its host namespace. The namespaces (named
//! after the test's pid) are deleted at the end, also when the test fails, which deletes
//! their interfaces. Needs root (`ip netns`) and the nisshi broker; otherwise it says why
//! and does not run.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use testkit::{Running, command, nisshi_for_test, not_run, program_path, repo};

const FRAMES: u64 = 60;
const SUBNET: &str = "10.231.7";
const HOSTS: [&str; 4] = ["broker", "camera", "worker1", "worker2"];

/// Runs `ip ARGS`; the error carries its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = command("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespaces of one run; dropping it kills what still runs in them and deletes them
/// (which deletes their veths and the bridge).
struct Lan {
    prefix: String,
    created: Vec<String>,
}

impl Lan {
    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    fn add_ns(&mut self, host: &str) -> Result<String, String> {
        let name = self.ns(host);
        ip(&["netns", "add", &name])?;
        self.created.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        Ok(name)
    }

    /// The switch and the four hosts, each host with eth0 on the switch's bridge.
    fn build() -> Result<Lan, (Lan, String)> {
        let mut lan = Lan {
            prefix: format!("kvh{}", std::process::id()),
            created: Vec::new(),
        };
        let result = (|| {
            let switch = lan.add_ns("switch")?;
            ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
            ip(&["-n", &switch, "link", "set", "br0", "up"])?;
            for (i, host) in HOSTS.iter().enumerate() {
                let ns = lan.add_ns(host)?;
                // Made in the switch namespace, the host end moved at once to its host:
                // the root namespace never holds either end.
                let port = format!("p-{host}");
                ip(&[
                    "-n", &switch, "link", "add", "eth0", "netns", &ns, "type", "veth", "peer",
                    "name", &port,
                ])?;
                ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"])?;
                let address = format!("{SUBNET}.{}/24", i + 1);
                ip(&["-n", &ns, "addr", "add", &address, "dev", "eth0"])?;
                ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(lan),
            Err(e) => Err((lan, e)),
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // A process still in a namespace would keep it (and its veth) alive after the
        // name is gone: everything in these namespaces is ours, started by this test.
        for ns in &self.created {
            if let Ok(out) = command("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = command("kill").args(["-KILL", pid]).status();
                }
            }
        }
        for ns in self.created.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("hosts: could not delete namespace {ns}: {e}");
            }
        }
    }
}

/// `ip netns exec NS PROGRAM ARGS` as a collected child (ip execs the program: same pid).
fn on_host(lan: &Lan, host: &str, program: &str, args: &[&str], name: &str) -> Running {
    let ns = lan.ns(host);
    let program = program_path(program);
    let mut all = vec!["netns", "exec", ns.as_str(), program.to_str().unwrap()];
    all.extend_from_slice(args);
    Running::start("ip", &all).named(name)
}

/// Reads the detections topic from the start of each partition until every frame
/// 0..FRAMES of the camera stream has a record (or the timeout), then prints one JSON
/// line: records per frame seq, and per writing worker.
const READER: &str = r#"
import json, sys, time
from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
brokers, topic, frames, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
deadline = time.monotonic() + timeout
c = Consumer({"bootstrap.servers": brokers, "group.id": "hosts-reader-unused",
              "enable.auto.commit": False, "auto.offset.reset": "earliest"})
parts = None
while parts is None and time.monotonic() < deadline:
    t = c.list_topics(topic, timeout=5).topics.get(topic)
    if t is not None and t.error is None and t.partitions:
        parts = sorted(t.partitions)
    else:
        time.sleep(0.2)
seqs, writers, streams, records = {}, {}, set(), 0
if parts is not None:
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    while time.monotonic() < deadline and len([s for s in seqs if s < frames]) < frames:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            print(json.dumps({"error": str(m.error())}), flush=True)
            sys.exit(1)
        if not m.value():
            continue  # end-of-stream record
        d = json.loads(m.value())
        records += 1
        src = d["source"]
        streams.add(src["stream"])
        seqs[src["seq"]] = seqs.get(src["seq"], 0) + 1
        h = dict((k, v.decode()) for k, v in (m.headers() or []))
        w = h.get("gkv-stream", "?").split("-")[0]
        writers[w] = writers.get(w, 0) + 1
c.close()
print(json.dumps({"partitions": parts, "records": records, "seqs": seqs,
                  "writers": writers, "streams": sorted(streams)}), flush=True)
"#;

struct Detections {
    records: u64,
    /// Records per frame seq (of the camera stream).
    seqs: BTreeMap<u64, u64>,
    /// Records per worker (the gkv-stream header's name part).
    writers: BTreeMap<String, u64>,
    streams: Vec<String>,
}

fn read_detections(lan: &Lan, topic: &str) -> Detections {
    let mut reader = on_host(
        lan,
        "camera",
        "python",
        &[
            "-c",
            READER,
            &format!("{SUBNET}.1:9092"),
            topic,
            &FRAMES.to_string(),
            "40",
        ],
        "reader",
    );
    let status = reader.wait(Duration::from_secs(60));
    let lines = reader.lines();
    assert!(
        status.success(),
        "reader failed: {lines:?}\n{}",
        reader.stderr()
    );
    let line = lines.last().expect("the reader printed nothing");
    let v: serde_json::Value = serde_json::from_str(line).expect("reader JSON");
    let seqs = v["seqs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, n)| (k.parse().unwrap(), n.as_u64().unwrap()))
        .collect();
    let writers = v["writers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
        .collect();
    Detections {
        records: v["records"].as_u64().unwrap(),
        seqs,
        writers,
        streams: v["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect(),
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            eprintln!("hosts: {what}: not within {timeout:?}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    true
}

#[test]
fn frames_flow_across_hosts_and_survive_a_worker_link_outage() {
    let started = Instant::now();
    let nisshi = match nisshi_for_test() {
        Ok(path) => path,
        Err(why) => {
            not_run(&why);
            return;
        }
    };
    let lan = match Lan::build() {
        Ok(lan) => lan,
        Err((lan, why)) if lan.created.is_empty() => {
            not_run(&format!(
                "cannot create network namespaces (needs root): {why}"
            ));
            return;
        }
        Err((_lan, why)) => panic!("building the namespaces: {why}"),
    };
    let broker_address = format!("{SUBNET}.1:9092");
    let listener = format!("tcp://{broker_address}");
    let nisshi = nisshi.to_string_lossy().into_owned();
    // As scripts/broker starts it, but listening on (and advertising) the broker host's
    // LAN address, with memory storage.
    let mut broker = on_host(
        &lan,
        "broker",
        "env",
        &[
            "-u",
            "SCHEMA_REGISTRY",
            "-u",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "NO_COLOR=1",
            &nisshi,
            "broker",
            "--cluster-id",
            "gst-kafka-vision-hosts",
            "--listener-url",
            &listener,
            "--advertised-listener-url",
            &listener,
            "--storage-engine",
            "memory://nisshi/",
        ],
        "nisshi",
    );

    let run = lan.prefix.clone();
    let (frames, annotated, detections) = (
        format!("{run}-frames"),
        format!("{run}-annotated"),
        format!("{run}-detections"),
    );
    // Created from the camera host (the test itself, in the root namespace, cannot reach
    // the broker): the first also waits for the broker to answer.
    let clients = repo().join("plugins/kafka/tests/interop/kafka_clients.py");
    let clients = clients.to_string_lossy();
    for (topic, partitions) in [(&frames, "2"), (&annotated, "2"), (&detections, "2")] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut create = on_host(
                &lan,
                "camera",
                "python",
                &[
                    &clients,
                    "create-topic",
                    "--brokers",
                    &broker_address,
                    "--topic",
                    topic,
                    "--partitions",
                    partitions,
                ],
                "create-topic",
            );
            if create.wait(Duration::from_secs(30)).success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "creating {topic} failed: {}\nbroker: {}",
                create.stderr(),
                broker.stderr()
            );
            assert!(
                broker.child.try_wait().unwrap().is_none(),
                "nisshi exited: {}",
                broker.stderr()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    println!(
        "hosts: broker up, topics created after {:?}",
        started.elapsed()
    );

    let group = format!("{run}-detectors");
    let worker = |host: &str| {
        on_host(
            &lan,
            host,
            env!("CARGO_BIN_EXE_detector-worker"),
            &[
                "--brokers",
                &broker_address,
                "--topic",
                &frames,
                "--group",
                &group,
                "--annotated-topic",
                &annotated,
                "--detections-topic",
                &detections,
                "--name",
                host,
            ],
            host,
        )
    };
    let mut worker1 = worker("worker1");
    let mut worker2 = worker("worker2");
    let settled = |w1: &Running, w2: &Running| {
        let (a, b) = (w1.partitions_held(), w2.partitions_held());
        a > 0 && b > 0 && a + b == 2
    };
    assert!(
        wait_until(
            "both workers hold a partition",
            Duration::from_secs(40),
            || { settled(&worker1, &worker2) }
        ),
        "the group did not settle: worker1 {:?}\nworker2 {:?}\n{}\n{}",
        worker1.lines(),
        worker2.lines(),
        worker1.stderr(),
        worker2.stderr()
    );
    println!(
        "hosts: group settled after {:?}: worker1 holds {}, worker2 holds {}",
        started.elapsed(),
        worker1.partitions_held(),
        worker2.partitions_held()
    );

    // The camera: 60 JPEG frames at 10 frames/s, key cam1, frame n to partition n mod 2.
    let camera_line = format!(
        "videotestsrc is-live=true pattern=ball num-buffers={FRAMES} ! \
         video/x-raw,width=320,height=240,framerate=10/1 ! jpegenc ! \
         kafkasink brokers={broker_address} topic={frames} key=cam1 partitioner=round-robin"
    );
    let mut gst_args = vec!["-q"];
    gst_args.extend(camera_line.split_whitespace());
    let mut camera = on_host(&lan, "camera", "gst-launch-1.0", &gst_args, "camera");

    // While frames flow, worker1's host loses its link for longer than the session
    // timeout (6 s): the broker expires it and worker2 takes both partitions.
    std::thread::sleep(Duration::from_secs(2));
    let worker1_ns = lan.ns("worker1");
    ip(&["-n", &worker1_ns, "link", "set", "eth0", "down"]).unwrap();
    let down_at = started.elapsed();
    std::thread::sleep(Duration::from_secs(8));
    let took_over = wait_until(
        "worker2 holds both partitions",
        Duration::from_secs(6),
        || worker2.partitions_held() == 2,
    );
    ip(&["-n", &worker1_ns, "link", "set", "eth0", "up"]).unwrap();
    let outage = started.elapsed() - down_at;
    println!(
        "hosts: worker1's link down at {down_at:?} for {outage:?}; meanwhile worker2 took \
         both partitions: {took_over}"
    );

    let status = camera.wait(Duration::from_secs(30));
    assert!(status.success(), "camera failed: {}", camera.stderr());

    let found = read_detections(&lan, &detections);
    // worker1 back in the group (informative: the frames are what counts).
    let rejoined = wait_until("worker1 back in the group", Duration::from_secs(15), || {
        settled(&worker1, &worker2)
    });
    for w in [&mut worker1, &mut worker2] {
        w.terminate();
    }
    let ok1 = worker1.wait(Duration::from_secs(30)).success();
    let ok2 = worker2.wait(Duration::from_secs(30)).success();
    broker.terminate();
    let _ = broker.wait(Duration::from_secs(10));

    let missing: Vec<u64> = (0..FRAMES)
        .filter(|s| !found.seqs.contains_key(s))
        .collect();
    let duplicates: u64 = found.seqs.values().map(|n| n - 1).sum();
    println!(
        "hosts: {FRAMES} frames published from {SUBNET}.2; {} detections records for {} \
         frames, {duplicates} duplicate(s), missing {missing:?}; written by {:?} \
         (frames handed to detection: worker1 {}, worker2 {}); took over: {took_over}, \
         worker1 rejoined: {rejoined}; {:?} in all",
        found.records,
        found.seqs.len(),
        found.writers,
        worker1.frames_done(),
        worker2.frames_done(),
        started.elapsed()
    );
    assert_eq!(
        found.streams.len(),
        1,
        "camera streams: {:?}",
        found.streams
    );
    assert!(missing.is_empty(), "frames never detected: {missing:?}");
    assert!(
        took_over,
        "worker2 never held both partitions during the outage"
    );
    assert!(
        found.writers.get("worker1").copied().unwrap_or(0) > 0
            && found.writers.get("worker2").copied().unwrap_or(0) > 0,
        "both workers should have written detections: {:?}",
        found.writers
    );
    assert!(
        ok1 && ok2,
        "a worker failed: {}\n{}",
        worker1.stderr(),
        worker2.stderr()
    );
}
