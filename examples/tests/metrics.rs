// SPDX-License-Identifier: MIT OR Apache-2.0
//! `detector-worker --metrics` serves its pipeline's stats as Prometheus text and its
//! health, `counter --metrics` its own figures and `archive --metrics` both; read here with Prometheus' own parser (Python `prometheus_client`), the values
//! checked against the frames the test sent.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use testkit::*;

const FRAMES: usize = 10;

/// The samples of `url`'s metrics, and each family's type, as Prometheus' OpenMetrics
/// parser reads them.
fn scrape_with_types(url: &str) -> (Metrics, HashMap<String, String>) {
    let output = command("python")
        .arg(repo().join("examples/tests/scrape_metrics.py"))
        .arg(url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    #[derive(serde::Deserialize)]
    struct Scraped {
        samples: Metrics,
        types: HashMap<String, String>,
    }
    let scraped: Scraped = serde_json::from_slice(&output.stdout).unwrap();
    (scraped.samples, scraped.types)
}

fn scrape(url: &str) -> Metrics {
    scrape_with_types(url).0
}

type Metrics = HashMap<String, f64>;

/// Scrapes `address`'s `/metrics` until `done` holds; panics naming `what` after 60 s.
fn scrape_until(address: &str, what: &str, done: impl Fn(&Metrics) -> bool) -> Metrics {
    let url = format!("http://{address}/metrics");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut metrics = scrape(&url);
    while !done(&metrics) {
        assert!(Instant::now() < deadline, "{what}: {metrics:?}");
        std::thread::sleep(Duration::from_millis(300));
        metrics = scrape(&url);
    }
    metrics
}

/// A new topic holding `FRAMES` JPEG frames of a moving ball, camera `cam1`.
fn ball_frames(prefix: &str) -> String {
    gst_kafka_vision_examples::init().unwrap();
    let topic = new_topic(prefix, 1);
    run_to_eos(
        &format!(
            "videotestsrc pattern=ball num-buffers={FRAMES} ! video/x-raw,width=320,height=240 ! \
             jpegenc ! kafkasink brokers={} topic={topic} key=cam1",
            brokers()
        ),
        Duration::from_secs(60),
    );
    topic
}

/// A `detector-worker` on `frames` serving its metrics at `address`, once it serves them.
fn worker(frames: &str, outputs: [&str; 2], address: &str, extra: &[&str]) -> Running {
    let (brokers, group) = (brokers(), unique_name("metrics"));
    let mut args = vec![
        "--brokers",
        &brokers,
        "--topic",
        frames,
        "--group",
        &group,
        "--annotated-topic",
        outputs[0],
        "--detections-topic",
        outputs[1],
        "--metrics",
        address,
    ];
    args.extend_from_slice(extra);
    let mut worker = Running::start(env!("CARGO_BIN_EXE_detector-worker"), &args);
    worker.wait_for("metrics at http://", Duration::from_secs(30));
    worker
}

#[test]
fn the_worker_serves_metrics_that_match_what_was_sent_and_is_healthy() {
    let frames = ball_frames("metrics-frames");
    let (annotated, detections) = (
        new_topic("metrics-annotated", 1),
        new_topic("metrics-detections", 1),
    );
    let address = format!("127.0.0.1:{}", free_port());
    let mut worker = worker(&frames, [&annotated, &detections], &address, &[]);
    let first = scrape(&format!("http://{address}/metrics"));

    // Every frame through, and committed: the lag is back to zero.
    let metrics = scrape_until(&address, "never complete", |m| {
        m.get("gkv_kafkasrc_buffers_pushed_total{element=src}") == Some(&(FRAMES as f64))
            && m.get("gkv_kafkasrc_consumer_lag{element=src,partition=0}") == Some(&0.0)
            && m.get("gkv_kafkasink_records_sent_total{element=detections}")
                == Some(&(FRAMES as f64))
    });
    let value = |name: &str| {
        *metrics
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {metrics:?}"))
    };
    assert_eq!(
        value("gkv_kafkasrc_records_received_total{element=src}"),
        FRAMES as f64 + 1.0,
        "and the end-of-stream record"
    );
    assert_eq!(value("gkv_kafkasrc_eos_records_total{element=src}"), 1.0);
    assert_eq!(value("gkv_kafkasrc_bad_records_total{element=src}"), 0.0);
    assert_eq!(value("gkv_kafkasrc_broker_down_ms{element=src}"), 0.0);
    assert_eq!(
        value("gkv_yolodetect_inferred_total{element=detect}"),
        FRAMES as f64
    );
    assert!(value("gkv_yolodetect_infer_ms{element=detect}") > 0.0);
    assert_eq!(
        value("gkv_kafkasink_records_sent_total{element=annotated}"),
        FRAMES as f64
    );
    assert_eq!(
        value("gkv_kafkasink_delivery_failures_total{element=detections}"),
        0.0
    );
    assert_eq!(value("gkv_pipeline_healthy{}"), 1.0);

    // Types as Prometheus reads them: counters, gauges, a latency histogram per camera.
    let (last, types) = scrape_with_types(&format!("http://{address}/metrics"));
    let type_of = |family: &str| types.get(family).map(String::as_str);
    assert_eq!(type_of("gkv_kafkasrc_buffers_pushed"), Some("counter"));
    assert_eq!(type_of("gkv_kafkasink_records_sent"), Some("counter"));
    assert_eq!(type_of("gkv_kafkasrc_records_in_flight"), Some("gauge"));
    assert_eq!(type_of("gkv_kafkasrc_camera_frames_missing"), Some("gauge"));
    assert_eq!(type_of("gkv_kafkasrc_camera_latency_ms"), Some("histogram"));
    // Every element between them declares its counters too.
    for family in [
        "gkv_kafkadecodebin_streams_started",
        "gkv_kafkadecodebin_frames_skipped",
        "gkv_objecttrack_frames",
        "gkv_objecttrack_track_ids",
        "gkv_crossingcount_frames",
        "gkv_detectionsconvert_detections",
    ] {
        assert_eq!(type_of(family), Some("counter"), "{family}");
    }
    assert_eq!(type_of("gkv_kafkadecodebin_streams_active"), Some("gauge"));
    assert_eq!(type_of("gkv_objecttrack_tracks_alive"), Some("gauge"));
    for series in [
        "gkv_objecttrack_frames_total{element=track}",
        "gkv_crossingcount_frames_total{element=count}",
    ] {
        assert_eq!(last.get(series), Some(&(FRAMES as f64)), "{series}");
    }
    assert_eq!(
        last.get("gkv_kafkadecodebin_streams_started_total{element=decode}"),
        Some(&1.0)
    );
    let bucket = |le: &str| {
        last.get(&format!(
            "gkv_kafkasrc_camera_latency_ms_bucket{{camera=cam1,element=src,le={le}}}"
        ))
        .copied()
    };
    assert_eq!(bucket("+Inf"), Some(FRAMES as f64), "{last:?}");
    // Every hop of the worker: arrival, detections, records acknowledged by the broker.
    for (kind, element) in [
        ("kafkasrc", "src"),
        ("yolodetect", "detect"),
        ("kafkasink", "detections"),
        ("kafkasink", "annotated"),
    ] {
        let series = format!("gkv_{kind}_camera_latency_ms_count{{camera=cam1,element={element}}}");
        assert_eq!(
            last.get(&series),
            Some(&(FRAMES as f64)),
            "{series}: {last:?}"
        );
    }
    assert!(bucket("1.0") <= bucket("1000.0"), "cumulative buckets");
    assert_eq!(
        last.get("gkv_kafkasrc_camera_frames_missing{camera=cam1,element=src}"),
        Some(&0.0)
    );
    // Counters never go back between scrapes.
    let counters: Vec<&String> = first
        .keys()
        .filter(|name| {
            types.get(name.split('{').next().unwrap().trim_end_matches("_total"))
                == Some(&"counter".to_string())
        })
        .collect();
    assert!(counters.len() >= 10, "{counters:?}");
    for name in counters {
        assert!(
            last[name] >= first[name],
            "{name}: {} then {}",
            first[name],
            last[name]
        );
    }

    assert_eq!(http_get(&address, "/healthz"), (200, "ok\n".into()));
    assert_eq!(http_get(&address, "/other").0, 404);
    worker.terminate();
    assert!(worker.wait(Duration::from_secs(30)).success());

    // The counter on the worker's detections and one bad record: its own figures.
    produce_raw(
        &detections,
        None,
        &[(b"not a detections record".to_vec(), vec![])],
    );
    let written = read_all(&detections, 1, Duration::from_secs(30), |r| {
        r.len() > FRAMES
    })
    .len();
    let address = format!("127.0.0.1:{}", free_port());
    let group = unique_name("metrics-counter");
    let counter_args = [
        "--brokers",
        &brokers(),
        "--topic",
        &detections,
        "--group",
        &group,
        "--mode",
        "detections",
        "--classes",
        "sports ball",
        "--quiet",
        "--metrics",
        &address,
    ];
    let mut counter = Running::start(env!("CARGO_BIN_EXE_counter"), &counter_args);
    counter.wait_for("metrics at http://", Duration::from_secs(30));
    let what = format!("{written} records never consumed");
    let metrics = scrape_until(&address, &what, |m| {
        m.get("gkv_counter_records_consumed{element=counter}") == Some(&(written as f64))
            && m.get("gkv_counter_consumer_lag{element=counter,partition=0}") == Some(&0.0)
            // The newest record is let go too (an appsink would hold it until the next).
            && m.get("gkv_kafkasrc_records_in_flight{element=src}") == Some(&0.0)
    });
    assert_eq!(metrics["gkv_counter_bad_records{element=counter}"], 1.0);
    assert_eq!(metrics["gkv_counter_broker_down_ms{element=counter}"], 0.0);
    assert_eq!(metrics["gkv_pipeline_healthy{}"], 1.0);
    assert_eq!(http_get(&address, "/healthz"), (200, "ok\n".into()));
    let counted = metrics["gkv_counter_detections_counted{element=counter}"];
    counter.terminate();
    assert!(counter.wait(Duration::from_secs(30)).success());
    // The same figure as its summary line; a ball in every frame.
    let summary = counter.lines().join("\n");
    assert!(
        summary.contains(&format!(
            "{FRAMES} frames from 1 camera(s), {counted} counted"
        )),
        "{counted} vs {summary}"
    );
    assert!(
        counted >= FRAMES as f64,
        "{counted} balls in {FRAMES} frames"
    );

    // The archive on the worker's annotated frames: its pipeline's and its own figures.
    let out = std::env::temp_dir().join(unique_name("metrics-archive"));
    let address = format!("127.0.0.1:{}", free_port());
    let group = unique_name("metrics-archive");
    let archive_args = [
        "--brokers",
        &brokers(),
        "--topic",
        &annotated,
        "--group",
        &group,
        "--out",
        out.to_str().unwrap(),
        "--metrics",
        &address,
    ];
    let mut archive = Running::start(env!("CARGO_BIN_EXE_archive"), &archive_args);
    archive.wait_for("metrics at http://", Duration::from_secs(30));
    let metrics = scrape_until(&address, "never archived every frame", |m| {
        m.get("gkv_archive_frames{element=archive}") == Some(&(FRAMES as f64))
    });
    assert_eq!(
        metrics["gkv_kafkasrc_buffers_pushed_total{element=src}"],
        FRAMES as f64
    );
    assert_eq!(http_get(&address, "/healthz"), (200, "ok\n".into()));
    let crops = std::fs::read_dir(out.join("sports ball")).map_or(0, |d| d.count());
    assert!(crops > 0, "no crop saved");
    assert_eq!(
        metrics["gkv_archive_crops_saved{element=archive}"],
        crops as f64
    );
    archive.terminate();
    assert!(archive.wait(Duration::from_secs(30)).success());
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn a_stalled_worker_with_records_waiting_turns_unhealthy() {
    let frames = ball_frames("stall-frames");
    let (annotated, detections) = (
        new_topic("stall-annotated", 1),
        new_topic("stall-detections", 1),
    );
    let address = format!("127.0.0.1:{}", free_port());
    // 60 s per frame: the stages fill up, the source stops pushing, records wait.
    let extra = ["--fixed-cost-ms", "60000", "--health-timeout", "2"];
    let mut worker = worker(&frames, [&annotated, &detections], &address, &extra);
    // Until /healthz and /metrics agree: while the stages fill, a push that comes more
    // than the timeout after the one before makes the worker healthy again between the two
    // requests (seen on a loaded machine); once everything is full it stays stalled.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (body, metrics) = loop {
        let (status, body) = http_get(&address, "/healthz");
        if status == 503 {
            let metrics = scrape(&format!("http://{address}/metrics"));
            if metrics.get("gkv_pipeline_healthy{}") == Some(&0.0) {
                break (body, metrics);
            }
        }
        assert!(
            Instant::now() < deadline,
            "not unhealthy on both /healthz and /metrics within 60 s: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        body.contains("src: records waiting (") && body.contains("no frame pushed for"),
        "{body}"
    );
    let source = |series: &str| {
        metrics
            .get(&format!("gkv_kafkasrc_{series}{{element=src}}"))
            .copied()
    };
    // The end-of-stream record, when a decoding queue let the source read that far, holds
    // no frame to wait for.
    assert_eq!(
        source("records_in_flight"),
        source("records_received_total")
            .zip(source("eos_records_total"))
            .map(|(r, e)| r - e),
        "every frame record received waits: {metrics:?}"
    );
    assert!(source("records_in_flight") > Some(0.0), "{metrics:?}");
    worker.kill();
}
