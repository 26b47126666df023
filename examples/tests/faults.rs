// SPDX-License-Identifier: MIT OR Apache-2.0
//! No frame lost when detector workers crash or are slower than the camera. Real
//! `detector-worker` processes in one consumer group read a live JPEG camera spread over
//! the partitions (`kafkasink partitioner=round-robin`); every detections record names the
//! frame it came from (`source.stream` / `source.seq`), so the tests check by sequence
//! number that every published frame was detected at least once, and count duplicates.
//!
//! The crash test runs against librdkafka's mock cluster (whose coordinator honours
//! `session.timeout.ms` as Kafka does) and against the broker the scripts start: tansu
//! 0.6.0 often never expired the session of a killed member, nisshi does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use gst::prelude::*;
use kafkavision::detections::FrameDetections;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use testkit::{RawRecord, Running, group_lag, read_all_from};
use testkit::{brokers, create_topic, not_run, unique_name as unique};

/// The workers' consumer settings: kafkasrc's defaults for live video (a 6 s session,
/// 1 s heartbeats), plus what `scripts/bench failover --worker-config` asks to measure
/// (e.g. `partition.assignment.strategy=cooperative-sticky`).
fn worker_config() -> String {
    std::env::var("KV_FAILOVER_WORKER_CONFIG").unwrap_or_default()
}

struct Topics {
    brokers: String,
    frames: String,
    annotated: String,
    detections: String,
    partitions: i32,
}

impl Topics {
    /// Topics on the test broker.
    fn new(prefix: &str, partitions: i32) -> Topics {
        let topics = Topics::named(prefix, brokers(), partitions);
        for topic in [&topics.frames, &topics.annotated, &topics.detections] {
            create_topic(topic, partitions);
        }
        topics
    }

    /// Topics on a mock cluster.
    fn on_mock(
        prefix: &str,
        cluster: &MockCluster<'_, DefaultProducerContext>,
        partitions: i32,
    ) -> Topics {
        let topics = Topics::named(prefix, cluster.bootstrap_servers(), partitions);
        for topic in [&topics.frames, &topics.annotated, &topics.detections] {
            cluster.create_topic(topic, partitions, 1).unwrap();
        }
        topics
    }

    fn named(prefix: &str, brokers: String, partitions: i32) -> Topics {
        Topics {
            brokers,
            frames: unique(&format!("{prefix}-frames")),
            annotated: unique(&format!("{prefix}-annotated")),
            detections: unique(&format!("{prefix}-detections")),
            partitions,
        }
    }
}

fn worker(name: &str, topics: &Topics, group: &str, extra: &[&str]) -> Running {
    let mut args = vec![
        "--brokers",
        &topics.brokers,
        "--topic",
        &topics.frames,
        "--group",
        group,
        "--annotated-topic",
        &topics.annotated,
        "--detections-topic",
        &topics.detections,
        "--name",
        name,
    ];
    let config = worker_config();
    if !config.is_empty() {
        args.extend(["--config", config.as_str()]);
    }
    args.extend_from_slice(extra);
    Running::start(env!("CARGO_BIN_EXE_detector-worker"), &args).named(name)
}

/// Waits until every worker prints that it holds partitions, and they hold all of them.
fn wait_until_group_is_stable(workers: &mut [&mut Running], partitions: i32) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let held: Vec<u32> = workers.iter_mut().map(|w| w.partitions_held()).collect();
        if held.iter().all(|h| *h > 0) && held.iter().sum::<u32>() == partitions as u32 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the group did not settle: partitions held {held:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A live camera: `frames` JPEG frames at `fps`, each to the next partition.
fn camera(topics: &Topics, frames: u32, fps: u32) -> gst::Pipeline {
    gst::init().unwrap();
    gstkafka::plugin_register_static().ok();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true pattern=ball num-buffers={frames} ! \
         video/x-raw,width=320,height=240,framerate={fps}/1 ! jpegenc ! \
         kafkasink name=sink brokers={} topic={} key=cam1 partitioner=round-robin",
        topics.brokers, topics.frames
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    pipeline
}

/// Waits for the camera's EOS (every record delivered), sampling the group's lag every
/// second if asked; returns the sink's stats and the lags.
fn finish_camera(
    pipeline: gst::Pipeline,
    lag_of: Option<(&Topics, &str)>,
) -> (gst::Structure, Vec<i64>) {
    let bus = pipeline.bus().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut lags = Vec::new();
    let msg = loop {
        assert!(Instant::now() < deadline, "the camera did not finish");
        if let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(1),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) {
            break msg;
        }
        if let Some((topics, group)) = lag_of {
            lags.push(lag(topics, group));
        }
    };
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("camera failed: {} ({:?})", e.error(), e.debug());
    }
    let stats = pipeline
        .by_name("sink")
        .unwrap()
        .property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    (stats, lags)
}

/// Records of the group not committed yet: written but not handled by any worker.
fn lag(topics: &Topics, group: &str) -> i64 {
    group_lag(&topics.brokers, &topics.frames, topics.partitions, group)
}

/// How often each frame (camera stream, sequence number) was detected.
fn detected_frames(topics: &Topics, expected: usize) -> BTreeMap<(String, u64), u32> {
    let records = read_all_from(
        &topics.brokers,
        &topics.detections,
        topics.partitions,
        Duration::from_secs(120),
        |r| frame_counts(r).len() >= expected,
    );
    frame_counts(&records)
}

fn frame_counts(records: &[RawRecord]) -> BTreeMap<(String, u64), u32> {
    let mut counts = BTreeMap::new();
    for r in records.iter().filter(|r| !r.value.is_empty()) {
        let frame = FrameDetections::from_json(&r.value).expect("detections JSON");
        let source = frame.source.expect("detections name their source record");
        *counts.entry((source.stream, source.seq)).or_insert(0) += 1;
    }
    counts
}

/// Checks that every frame 0..frames of every stream was detected; returns duplicates.
fn check_no_frame_lost(counts: &BTreeMap<(String, u64), u32>, streams: usize, frames: u64) -> u32 {
    let by_stream: BTreeSet<&String> = counts.keys().map(|(s, _)| s).collect();
    assert_eq!(by_stream.len(), streams, "streams detected: {by_stream:?}");
    for stream in by_stream {
        let missing: Vec<u64> = (0..frames)
            .filter(|seq| !counts.contains_key(&(stream.clone(), *seq)))
            .collect();
        assert!(
            missing.is_empty(),
            "stream {stream}: frames never detected: {missing:?}"
        );
    }
    counts.values().map(|n| n - 1).sum()
}

/// What a SIGKILL of one of two workers cost.
struct Failover {
    /// From the kill to the first detections record of the dead worker's partitions
    /// written by another worker.
    recovery: Duration,
    duplicates: u32,
    frames: usize,
}

/// Two workers share a live camera's 4 partitions; one is killed with SIGKILL 5 s in, a
/// replacement joins once the survivor has taken over. Checks that every frame was
/// detected, and measures the recovery and the duplicates.
fn kill_one_of_two_workers(topics: &Topics) -> Failover {
    const FRAMES: u32 = 300;
    // Recovery and duplicates depend on how fast the group re-forms: two failovers side by
    // side on 2 cores slowed a rejoin from 6 s to 16 s and doubled the duplicates.
    static ONE_FAILOVER_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _alone = ONE_FAILOVER_AT_A_TIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let group = unique("kill-group");
    let mut first = worker("worker-a", topics, &group, &[]);
    let mut second = worker("worker-b", topics, &group, &[]);
    wait_until_group_is_stable(&mut [&mut first, &mut second], topics.partitions);

    let started = Instant::now();
    let camera = camera(topics, FRAMES, 10);
    std::thread::sleep(Duration::from_secs(5));
    first.kill();
    let killed_ms = kafkavision::clock::unix_time_ms();
    let killed_at = started.elapsed();
    // The group notices the missing heartbeats and the survivor takes over.
    wait_until_group_is_stable(&mut [&mut second], topics.partitions);
    let taken_over_at = started.elapsed();
    let mut restarted = worker("worker-a2", topics, &group, &[]);
    wait_until_group_is_stable(&mut [&mut second, &mut restarted], topics.partitions);
    let rejoined_at = started.elapsed();
    let (camera_stats, _) = finish_camera(camera, None);
    assert_eq!(camera_stats.get::<u64>("records-dropped").unwrap(), 0);

    let records = read_all_from(
        &topics.brokers,
        &topics.detections,
        topics.partitions,
        Duration::from_secs(120),
        |r| frame_counts(r).len() >= FRAMES as usize,
    );
    let counts = frame_counts(&records);
    let duplicates = check_no_frame_lost(&counts, 1, FRAMES as u64);
    for w in [&mut second, &mut restarted] {
        w.terminate();
        assert!(w.wait(Duration::from_secs(40)).success(), "a worker failed");
    }
    let restarted_frames = restarted.frames_done();
    assert!(restarted_frames > 0, "the restarted worker got no frame");

    // Each worker writes its own output stream: the killed worker's is the one whose
    // records stop at the kill. Its partitions' first record from another stream after
    // the kill is the recovery.
    let detections: Vec<(i64, String, i32)> = records
        .iter()
        .filter(|r| r.is_buffer())
        .map(|r| {
            let frame = FrameDetections::from_json(&r.value).unwrap();
            let source = frame.source.unwrap();
            (r.timestamp_ms.unwrap_or(0), frame.stream, source.partition)
        })
        .collect();
    let dead_stream = detections
        .iter()
        .filter(|(t, ..)| *t <= killed_ms)
        .map(|(_, s, _)| s.clone())
        .find(|s| {
            detections
                .iter()
                .all(|(t, s2, _)| s2 != s || *t <= killed_ms)
        })
        .expect("the killed worker wrote detections before the kill");
    let dead_partitions: BTreeSet<i32> = detections
        .iter()
        .filter(|(_, s, _)| *s == dead_stream)
        .map(|(.., p)| *p)
        .collect();
    let recovered_ms = detections
        .iter()
        .filter(|(t, s, p)| *t > killed_ms && *s != dead_stream && dead_partitions.contains(p))
        .map(|(t, ..)| *t)
        .min()
        .expect("another worker processed the killed worker's partitions");
    let recovery = Duration::from_millis((recovered_ms - killed_ms) as u64);
    println!(
        "failover on {}: SIGKILL at {:.1} s, survivor took over at {:.1} s, replacement \
         rejoined at {:.1} s; recovery {:.1} s (partitions {dead_partitions:?}); {FRAMES} \
         frames published, {} detected, {duplicates} duplicate(s); the replacement handled \
         {restarted_frames}",
        topics.brokers,
        killed_at.as_secs_f64(),
        taken_over_at.as_secs_f64(),
        rejoined_at.as_secs_f64(),
        recovery.as_secs_f64(),
        counts.len()
    );
    Failover {
        recovery,
        duplicates,
        frames: counts.len(),
    }
}

#[test]
fn a_killed_worker_loses_no_frame_and_its_restart_resumes_from_the_committed_offsets() {
    let cluster = MockCluster::new(1).unwrap();
    let topics = Topics::on_mock("kill", &cluster, 4);
    let run = kill_one_of_two_workers(&topics);
    assert_eq!(run.frames, 300);
    // Duplicates are what was read but not committed when partitions moved: the killed
    // worker's records since its last commit, and at each rebalance what the members
    // had in flight plus the frames fetched while the group re-formed. Never the whole
    // stream again.
    assert!(run.duplicates < 225, "{} duplicates", run.duplicates);
    assert!(
        run.recovery < Duration::from_secs(45),
        "recovery {:?}",
        run.recovery
    );
}

/// The same on the broker our scripts start (and ship): its group coordinator, not the
/// mock's, must expire the dead member and hand its partitions on.
#[test]
fn a_killed_worker_loses_no_frame_on_the_shipped_broker() {
    // scripts/test names the broker it started. The fallback tansu 0.6.0 often never
    // expires a dead member (the reason nisshi is shipped): there the test would only
    // measure that, so it says so and stops.
    if std::env::var("KV_BROKER_NAME").as_deref() == Ok("tansu") {
        not_run(
            "the test broker is the fallback tansu 0.6.0, which does not reliably expire a \
             killed group member (see bench/README.md, \"The broker\")",
        );
        return;
    }
    let topics = Topics::new("kill-real", 4);
    let run = kill_one_of_two_workers(&topics);
    assert_eq!(run.frames, 300);
    assert!(
        run.recovery < Duration::from_secs(45),
        "recovery {:?}",
        run.recovery
    );
}

#[test]
fn a_slow_detector_falls_behind_without_loss_and_five_keep_up() {
    const FRAMES: u32 = 120;
    let topics = Topics::new("overload", 10);
    let group = unique("overload-group");
    // A camera at 10 frames/s; a detector that needs 0.5 s per frame.
    let slow = ["--fixed-cost-ms", "500"];
    let mut workers = vec![worker("slow-1", &topics, &group, &slow)];
    wait_until_group_is_stable(&mut [&mut workers[0]], topics.partitions);

    // One worker: the lag grows by about 8 frames a second, and nothing is dropped.
    let camera_one = camera(&topics, FRAMES, 10);
    let (stats_one, lags_one) = finish_camera(camera_one, Some((&topics, &group)));
    assert_eq!(stats_one.get::<u64>("records-dropped").unwrap(), 0);

    // Four more join: the group drains the backlog, then keeps up with the camera.
    for i in 2..=5 {
        workers.push(worker(&format!("slow-{i}"), &topics, &group, &slow));
    }
    wait_until_group_is_stable(
        &mut workers.iter_mut().collect::<Vec<_>>(),
        topics.partitions,
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while lag(&topics, &group) > topics.partitions as i64 {
        assert!(
            Instant::now() < deadline,
            "the group did not drain the backlog"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let camera_five = camera(&topics, FRAMES, 10);
    let (stats_five, lags_five) = finish_camera(camera_five, Some((&topics, &group)));
    assert_eq!(stats_five.get::<u64>("records-dropped").unwrap(), 0);

    let counts = detected_frames(&topics, 2 * FRAMES as usize);
    let duplicates = check_no_frame_lost(&counts, 2, FRAMES as u64);
    for w in &mut workers {
        w.terminate();
        assert!(w.wait(Duration::from_secs(60)).success(), "a worker failed");
    }
    println!("lag with 1 worker, each second: {lags_one:?}");
    println!("lag with 5 workers, each second: {lags_five:?}");
    println!(
        "{} frames published, {} detected, {duplicates} duplicate(s)",
        2 * FRAMES,
        counts.len()
    );
    let grew = lags_one.last().copied().unwrap_or(0);
    assert!(
        grew >= FRAMES as i64 / 2,
        "one slow worker should fall behind: {lags_one:?}"
    );
    let worst = lags_five.iter().copied().max().unwrap_or(0);
    // Each of 5 workers may hold a few frames and a commit interval's worth (2 frames).
    assert!(worst <= 5 * 6, "five workers should keep up: {lags_five:?}");
}
