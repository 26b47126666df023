// SPDX-License-Identifier: MIT OR Apache-2.0
//! `kafkasrc` (with `kafkasink` writing) against the broker `scripts/test` starts: round
//! trips, keyframe joins, consumer groups, committed offsets, bad records, shutdown.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use gst::prelude::*;
use kafkavision::Envelope;
use testkit::*;

fn init() {
    testkit::init(&[gstkafka::plugin_register_static]);
}

const ORIGINAL_PTS: &str = "timestamp/x-gkv-original-pts";

/// Writes `frames` JPEG frames with kafkasink and returns what went in, as appsink saw it.
fn publish_jpeg(topic: &str, frames: u32, extra: &str) -> Vec<gst::Sample> {
    init();
    let pipeline = launch(&format!(
        "videotestsrc num-buffers={frames} pattern=ball ! \
         video/x-raw,width=320,height=240,framerate=30/1 ! jpegenc ! tee name=t \
         t. ! queue ! kafkasink brokers={} topic={topic} {extra} \
         t. ! queue ! appsink name=orig sync=false",
        brokers()
    ));
    let samples = collect_samples(&pipeline, "orig");
    match run_until_end(&pipeline, Duration::from_secs(60)) {
        Ended::Eos => {}
        other => panic!("publishing ended with {other:?}"),
    }
    let samples = samples.lock().unwrap().clone();
    assert_eq!(samples.len(), frames as usize);
    samples
}

fn read_to_eos(description: &str) -> (Vec<gst::Sample>, gst::Structure) {
    init();
    let pipeline = launch(description);
    let samples = collect_samples(&pipeline, "out");
    let src = pipeline.by_name("src").unwrap();
    match run_until_end(&pipeline, Duration::from_secs(60)) {
        Ended::Eos => {}
        other => panic!("'{description}' ended with {other:?}"),
    }
    let samples = samples.lock().unwrap().clone();
    (samples, stats(&src))
}

#[test]
fn jpeg_round_trip_is_byte_identical_with_caps_and_timestamps() {
    let topic = new_topic("src-jpeg", 1);
    let sent = publish_jpeg(&topic, 30, "");
    let (received, stats) = read_to_eos(&format!(
        "kafkasrc name=src brokers={} topic={topic} stop-on-eos=true ! appsink name=out sync=false",
        brokers()
    ));
    assert_eq!(received.len(), sent.len());
    assert_eq!(stats.get::<u64>("buffers-pushed").unwrap(), 30);
    assert_eq!(stats.get::<u64>("eos-records").unwrap(), 1);

    let first_out = received[0].buffer().unwrap().pts().unwrap();
    let first_in = sent[0].buffer().unwrap().pts().unwrap();
    for (i, (a, b)) in sent.iter().zip(&received).enumerate() {
        let (in_buf, out_buf) = (a.buffer().unwrap(), b.buffer().unwrap());
        assert_eq!(
            in_buf.map_readable().unwrap().as_slice(),
            out_buf.map_readable().unwrap().as_slice(),
            "frame {i} differs"
        );
        assert_eq!(a.caps().unwrap(), b.caps().unwrap(), "caps of frame {i}");
        assert_eq!(
            out_buf.offset(),
            i as u64,
            "offset carries the sequence number"
        );
        // The original PTS rides along, and the output keeps the original spacing.
        assert_eq!(reference_timestamp(out_buf, ORIGINAL_PTS), in_buf.pts());
        assert_eq!(
            out_buf.pts().unwrap() - first_out,
            in_buf.pts().unwrap() - first_in,
            "spacing of frame {i}"
        );
        assert_eq!(out_buf.duration(), in_buf.duration());
        assert!(reference_timestamp(out_buf, "timestamp/x-unix").is_some());
    }
    assert!(
        received[0]
            .buffer()
            .unwrap()
            .flags()
            .contains(gst::BufferFlags::DISCONT)
    );
}

#[test]
fn h264_joined_mid_stream_decodes_from_the_first_keyframe() {
    let topic = new_topic("src-h264", 1);
    init();
    // Live at 30 frames/s so that record timestamps (ms) tell frames apart.
    run_to_eos(
        &format!(
            "videotestsrc is-live=true num-buffers=60 ! \
             video/x-raw,width=320,height=240,framerate=30/1 ! \
             x264enc key-int-max=15 tune=zerolatency speed-preset=ultrafast ! h264parse ! \
             video/x-h264,stream-format=byte-stream,alignment=au ! \
             kafkasink brokers={} topic={topic}",
            brokers()
        ),
        Duration::from_secs(60),
    );
    let records = consume_raw(&topic, 1, 61, Duration::from_secs(20));
    let keyframes: Vec<usize> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.header("gkv-kind") == Some("buffer"))
        .filter(|(_, r)| !r.header("gkv-flags").unwrap_or("").contains("delta-unit"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(keyframes, vec![0, 15, 30, 45]);

    // Join at frame 20, a delta unit, by its record timestamp.
    let consumer_time_of = |index: usize| -> i64 {
        use rdkafka::Message;
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", unique_name("time-probe"))
            .create()
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(index as i64))
            .unwrap();
        consumer.assign(&tpl).unwrap();
        loop {
            if let Some(m) = consumer.poll(Duration::from_millis(200)) {
                return m.unwrap().timestamp().to_millis().unwrap();
            }
        }
    };
    let join_ms = consumer_time_of(20);
    assert!(
        join_ms > consumer_time_of(19),
        "frames 19 and 20 share a timestamp"
    );

    let (decoded, stats) = read_to_eos(&format!(
        "kafkasrc name=src brokers={} topic={topic} start-from={join_ms} stop-on-eos=true ! \
         h264parse ! avdec_h264 ! appsink name=out sync=false",
        brokers()
    ));
    assert_eq!(
        stats.get::<u64>("delta-units-skipped").unwrap(),
        10,
        "frames 20..29"
    );
    assert_eq!(decoded.len(), 30, "frames 30..59 decode");
    let first = decoded[0].buffer().unwrap();
    let original = records[30]
        .header("gkv-pts")
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert_eq!(
        reference_timestamp(first, ORIGINAL_PTS).unwrap().nseconds(),
        original
    );
}

/// Plays a `kafkasrc ! appsink` pipeline in the background, collecting buffers.
struct Reader {
    pipeline: gst::Pipeline,
    src: gst::Element,
    samples: std::sync::Arc<std::sync::Mutex<Vec<gst::Sample>>>,
}

impl Reader {
    fn start(description: &str) -> Reader {
        init();
        let pipeline = launch(description);
        let samples = collect_samples(&pipeline, "out");
        let src = pipeline.by_name("src").unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        Reader {
            pipeline,
            src,
            samples,
        }
    }

    fn count(&self) -> usize {
        self.samples.lock().unwrap().len()
    }

    fn error(&self) -> Option<String> {
        let bus = self.pipeline.bus().unwrap();
        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                return Some(format!("{} {:?}", e.error(), e.debug()));
            }
        }
        None
    }

    fn stop(self) -> Vec<gst::Sample> {
        self.pipeline.set_state(gst::State::Null).unwrap();
        self.samples.lock().unwrap().clone()
    }
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stream_and_seq(sample: &gst::Sample) -> (String, u64) {
    let buffer = sample.buffer().unwrap();
    let pts = reference_timestamp(buffer, ORIGINAL_PTS).unwrap();
    let caps = sample
        .caps()
        .unwrap()
        .structure(0)
        .unwrap()
        .get::<i32>("width")
        .unwrap();
    (format!("{caps}-{pts}"), buffer.offset())
}

#[test]
fn two_sources_in_one_group_split_four_partitions_exactly_once() {
    two_sources_split_four_partitions_exactly_once("");
}

/// Cooperative rebalancing moves only the partitions that change owner: when the second
/// member joins, the first gives up two of its four (incremental revoke) and keeps reading
/// the other two.
#[test]
fn cooperative_rebalancing_splits_four_partitions_exactly_once() {
    two_sources_split_four_partitions_exactly_once(
        "config=partition.assignment.strategy=cooperative-sticky",
    );
}

fn two_sources_split_four_partitions_exactly_once(extra: &str) {
    let topic = new_topic("src-group", 4);
    let group = unique_name("group");
    // commit-after=push: appsink keeps its newest sample, so with release each member's
    // newest record is still open, and a late rebalance (tansu sometimes does one) would
    // rightly read it again. This test is about the split, not about what is in flight.
    let reader = |_: usize| {
        Reader::start(&format!(
            "kafkasrc name=src brokers={} topic={topic} group-id={group} commit-after=push \
             {extra} ! appsink name=out sync=false",
            brokers()
        ))
    };
    let readers = [reader(0), reader(1)];
    // Both must own partitions before anything is written, or the first takes it all.
    wait_for(
        "both group members to get partitions",
        Duration::from_secs(90),
        || {
            let assigned: Vec<u32> = readers
                .iter()
                .map(|r| stats(&r.src).get::<u32>("partitions-assigned").unwrap())
                .collect();
            assigned.iter().all(|a| *a > 0) && assigned.iter().sum::<u32>() == 4
        },
    );

    // Four cameras, one per partition, each with its own frame size to tell them apart.
    for partition in 0..4 {
        let width = 64 + 16 * partition;
        run_to_eos(
            &format!(
                "videotestsrc num-buffers=25 ! video/x-raw,width={width},height=48 ! jpegenc ! \
                 kafkasink brokers={} topic={topic} partition={partition} key=cam{partition} \
                 eos-marker=false",
                brokers()
            ),
            Duration::from_secs(60),
        );
    }
    wait_for("100 records", Duration::from_secs(60), || {
        readers.iter().map(Reader::count).sum::<usize>() >= 100
    });
    std::thread::sleep(Duration::from_secs(2)); // time for any duplicate to show up
    for r in &readers {
        assert_eq!(r.error(), None);
    }
    let [a, b] = readers;
    let (a, b) = (a.stop(), b.stop());
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both members received records"
    );
    let mut seen = BTreeSet::new();
    let mut per_camera: HashMap<i32, usize> = HashMap::new();
    for sample in a.iter().chain(&b) {
        let width = sample
            .caps()
            .unwrap()
            .structure(0)
            .unwrap()
            .get::<i32>("width")
            .unwrap();
        *per_camera.entry(width).or_default() += 1;
        assert!(
            seen.insert((width, sample.buffer().unwrap().offset())),
            "duplicate record {:?}",
            stream_and_seq(sample)
        );
    }
    assert_eq!(seen.len(), 100, "every record exactly once");
    assert!(per_camera.values().all(|n| *n == 25), "{per_camera:?}");
}

#[test]
fn a_restarted_group_member_resumes_from_the_committed_offset() {
    let topic = new_topic("src-resume", 1);
    let group = unique_name("resume");
    publish_jpeg(&topic, 20, "");
    let source = format!(
        "kafkasrc name=src brokers={} topic={topic} group-id={group}",
        brokers()
    );

    // The first run takes 10 buffers and ends.
    let (first, _) = read_to_eos(&format!(
        "{source} num-buffers=10 ! appsink name=out sync=false"
    ));
    let first: Vec<u64> = first.iter().map(|s| s.buffer().unwrap().offset()).collect();
    assert_eq!(first, (0..10).collect::<Vec<_>>());

    // The second run, same group, continues at 10: nothing lost, nothing twice.
    let (second, _) = read_to_eos(&format!(
        "{source} stop-on-eos=true ! appsink name=out sync=false"
    ));
    let second: Vec<u64> = second
        .iter()
        .map(|s| s.buffer().unwrap().offset())
        .collect();
    assert_eq!(second, (10..20).collect::<Vec<_>>());
}

/// Envelope headers as (name, value) pairs, values as text.
type Headers = Vec<(&'static str, String)>;

fn envelope_headers(envelope: &Envelope) -> Headers {
    envelope.to_headers()
}

fn jpeg_bytes() -> Vec<u8> {
    init();
    let pipeline = launch(
        "videotestsrc num-buffers=1 ! video/x-raw,width=64,height=48 ! jpegenc ! appsink name=out",
    );
    let samples = collect_samples(&pipeline, "out");
    assert!(matches!(
        run_until_end(&pipeline, Duration::from_secs(20)),
        Ended::Eos
    ));
    let sample = samples.lock().unwrap()[0].clone();
    sample.buffer().unwrap().map_readable().unwrap().to_vec()
}

/// Good frames of one stream with bad records between them, then its EOS record.
fn write_good_and_bad_records(topic: &str) {
    let jpeg = jpeg_bytes();
    let good = |seq: u64| Envelope {
        pts: Some(seq * 1_000_000),
        ..Envelope::buffer(
            "good",
            seq,
            Some("image/jpeg, width=(int)64, height=(int)48".into()),
        )
    };
    let with = |header: &'static str, value: &str, env: Envelope| {
        let mut headers = envelope_headers(&env);
        headers.retain(|(k, _)| *k != header);
        headers.push((header, value.to_string()));
        headers
    };
    let records: Vec<(Vec<u8>, Headers)> = vec![
        (jpeg.clone(), envelope_headers(&good(0))),
        (
            jpeg.clone(),
            with(
                "gkv-version",
                "2",
                Envelope {
                    stream_id: "bad".into(),
                    ..good(0)
                },
            ),
        ),
        (
            jpeg.clone(),
            with(
                "gkv-caps",
                "image/jpeg, width=(int)",
                Envelope {
                    stream_id: "bad".into(),
                    ..good(0)
                },
            ),
        ),
        (
            b"not a jpeg".to_vec(),
            envelope_headers(&Envelope {
                stream_id: "bad".into(),
                ..good(0)
            }),
        ),
        (
            jpeg.clone(),
            with(
                "gkv-pts",
                "soon",
                Envelope {
                    stream_id: "bad".into(),
                    ..good(0)
                },
            ),
        ),
        (b"plain record without envelope".to_vec(), vec![]),
        (jpeg.clone(), envelope_headers(&good(1))),
        (
            vec![],
            envelope_headers(&Envelope::end_of_stream("good", 2)),
        ),
    ];
    let borrowed: Vec<ProducedRecord> = records
        .iter()
        .map(|(v, h)| {
            (
                v.clone(),
                h.iter().map(|(k, v)| (*k, v.as_bytes())).collect(),
            )
        })
        .collect();
    produce_raw(topic, Some(0), &borrowed);
}

#[test]
fn bad_records_are_skipped_and_counted_by_default() {
    let topic = new_topic("src-bad-skip", 1);
    write_good_and_bad_records(&topic);
    let (received, stats) = read_to_eos(&format!(
        "kafkasrc name=src brokers={} topic={topic} stop-on-eos=true ! jpegdec ! appsink name=out sync=false",
        brokers()
    ));
    assert_eq!(received.len(), 2, "the two good frames around the bad ones");
    assert_eq!(stats.get::<u64>("bad-records").unwrap(), 5);
}

#[test]
fn bad_records_fail_the_pipeline_when_asked() {
    let topic = new_topic("src-bad-error", 1);
    write_good_and_bad_records(&topic);
    init();
    let pipeline = launch(&format!(
        "kafkasrc brokers={} topic={topic} stop-on-eos=true on-bad-record=error ! fakesink",
        brokers()
    ));
    match run_until_end(&pipeline, Duration::from_secs(60)) {
        Ended::Error(err) => {
            assert!(
                err.contains("envelope version '2' is not supported"),
                "{err}"
            )
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn records_of_other_clients_are_read_with_the_caps_property() {
    let topic = new_topic("src-plain", 1);
    let jpeg = jpeg_bytes();
    produce_raw(
        &topic,
        Some(0),
        &[(jpeg.clone(), vec![]), (jpeg.clone(), vec![])],
    );
    let (received, _) = read_to_eos(&format!(
        "kafkasrc name=src brokers={} topic={topic} caps=image/jpeg num-buffers=2 ! jpegdec ! appsink name=out sync=false",
        brokers()
    ));
    assert_eq!(received.len(), 2);
    let caps = received[0].caps().unwrap().structure(0).unwrap().to_owned();
    assert_eq!(
        (
            caps.get::<i32>("width").unwrap(),
            caps.get::<i32>("height").unwrap()
        ),
        (64, 48)
    );
}

#[test]
fn caps_changes_renegotiate_downstream() {
    let topic = new_topic("src-caps-change", 1);
    init();
    for width in [64, 96] {
        run_to_eos(
            &format!(
                "videotestsrc num-buffers=3 ! video/x-raw,format=I420,width={width},height=48 ! \
                 kafkasink brokers={} topic={topic}",
                brokers(),
            ),
            Duration::from_secs(30),
        );
    }
    let (received, _) = read_to_eos(&format!(
        "kafkasrc name=src brokers={} topic={topic} num-buffers=6 ! videoconvert ! \
         video/x-raw,format=RGB ! appsink name=out sync=false",
        brokers()
    ));
    let widths: Vec<i32> = received
        .iter()
        .map(|s| {
            s.caps()
                .unwrap()
                .structure(0)
                .unwrap()
                .get::<i32>("width")
                .unwrap()
        })
        .collect();
    assert_eq!(widths, vec![64, 64, 64, 96, 96, 96]);
}

#[test]
fn unreachable_broker_fails_within_connect_timeout() {
    init();
    let pipeline =
        launch("kafkasrc brokers=127.0.0.1:1 topic=frames connect-timeout=1500 ! fakesink");
    let started = Instant::now();
    match run_until_end(&pipeline, Duration::from_secs(60)) {
        Ended::Error(err) => assert!(err.contains("could not reach Kafka brokers"), "{err}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn invalid_start_from_stop_at_and_missing_topic_are_reported() {
    init();
    for (props, expected) in [
        (
            "topic=frames start-from=yesterday",
            "start-from='yesterday'",
        ),
        ("topic=frames stop-at=tomorrow", "stop-at='tomorrow'"),
        ("topic=no-such-topic-at-all", "does not exist"),
    ] {
        let pipeline = launch(&format!(
            "kafkasrc brokers={} {props} ! fakesink",
            brokers()
        ));
        match run_until_end(&pipeline, Duration::from_secs(60)) {
            Ended::Error(err) => assert!(err.contains(expected), "{err}"),
            other => panic!("expected an error for {props}, got {other:?}"),
        }
    }
}

/// Time for `set_state(Null)` on a playing `kafkasrc` that waits for records.
fn time_to_stop(description: &str) -> Duration {
    let reader = Reader::start(description);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(reader.error(), None);
    let started = Instant::now();
    reader.stop();
    started.elapsed()
}

#[test]
fn stopping_while_waiting_for_records_is_prompt() {
    let topic = new_topic("src-idle", 1);
    for group in ["", "group-id=idle-group"] {
        let took = time_to_stop(&format!(
            "kafkasrc name=src brokers={} topic={topic} {group} ! appsink name=out",
            brokers()
        ));
        assert!(
            took < Duration::from_secs(8),
            "stopping took {took:?} ({group})"
        );
    }
}

#[test]
fn stopping_with_the_broker_gone_is_prompt() {
    use rdkafka::mocking::MockCluster;
    init();
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("frames", 1, 1).unwrap();
    let reader = Reader::start(&format!(
        "kafkasrc name=src brokers={} topic=frames group-id=gone ! appsink name=out",
        cluster.bootstrap_servers()
    ));
    std::thread::sleep(Duration::from_secs(2));
    cluster.broker_down(1).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    reader.stop();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
}

#[test]
fn every_buffer_says_which_record_it_came_from() {
    let topic = new_topic("src-record-meta", 1);
    publish_jpeg(&topic, 3, "key=cam9 stream-id=cam9-run1");
    let (received, _) = read_to_eos(&format!(
        "kafkasrc name=src brokers={} topic={topic} stop-on-eos=true ! appsink name=out sync=false",
        brokers()
    ));
    for (i, sample) in received.iter().enumerate() {
        let record = gstkafka::RecordMeta::of(sample.buffer().unwrap()).unwrap();
        assert_eq!(
            record,
            gstkafka::RecordMeta {
                topic: topic.clone(),
                partition: 0,
                offset: i as i64,
                key: Some("cam9".into()),
                stream: "cam9-run1".into(),
                seq: i as u64,
            }
        );
    }
}

#[test]
fn caps_queries_from_another_thread_see_the_pushed_caps() {
    let topic = new_topic("src-caps-query", 1);
    publish_jpeg(&topic, 3, "eos-marker=false");
    let reader = Reader::start(&format!(
        "kafkasrc name=src brokers={} topic={topic} ! appsink name=out sync=false",
        brokers()
    ));
    wait_for("3 frames", Duration::from_secs(20), || reader.count() >= 3);
    let pushed = reader.samples.lock().unwrap()[0].caps().unwrap().to_owned();
    // The streaming thread is waiting for more records now (it holds the element's
    // state); the answer must not depend on that.
    for _ in 0..20 {
        let caps = reader.src.static_pad("src").unwrap().query_caps(None);
        assert_eq!(caps, pushed);
        std::thread::sleep(Duration::from_millis(10));
    }
    reader.stop();
}

#[test]
fn stopping_while_checking_undelivered_records_with_the_broker_gone_is_prompt() {
    use rdkafka::mocking::MockCluster;
    init();
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("frames", 4, 1).unwrap();
    // Lowered fetch limits make the source ask the broker for each partition's watermarks
    // after connect-timeout without records; with the broker gone each question waits.
    let reader = Reader::start(&format!(
        "kafkasrc name=src brokers={} topic=frames connect-timeout=1000 \
         config=fetch.max.bytes=100000,max.partition.fetch.bytes=100000,message.max.bytes=100000 ! \
         appsink name=out",
        cluster.bootstrap_servers()
    ));
    std::thread::sleep(Duration::from_secs(1));
    cluster.broker_down(1).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let started = Instant::now();
    reader.stop();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "stopping took {took:?}");
}

#[test]
fn stats_show_the_lag_per_partition_and_that_the_broker_is_up() {
    let topic = new_topic("lag", 1);
    publish_jpeg(&topic, 20, "");
    init();
    // 150 ms per frame downstream: the group's committed offset trails the newest one.
    let pipeline = launch(&format!(
        "kafkasrc name=src brokers={} topic={topic} group-id={} ! \
         identity sleep-time=150000 ! fakesink enable-last-sample=false",
        brokers(),
        unique_name("lag")
    ));
    let src = pipeline.by_name("src").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let lag_of = |stats: &gst::Structure| {
        stats
            .get::<gst::Structure>("consumer-lag")
            .unwrap()
            .get::<i64>("partition-0")
            .ok()
    };
    let mut lags = Vec::new();
    wait_for("a lag above zero", Duration::from_secs(20), || {
        let stats = stats(&src);
        assert_eq!(stats.get::<u64>("broker-down-ms").unwrap(), 0, "{stats}");
        lags.extend(lag_of(&stats));
        lags.iter().any(|&lag| lag > 0)
    });
    // Everything processed and committed: the lag comes down to zero (librdkafka reports
    // it while the source polls, so the source keeps waiting for records here).
    let mut last = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while last != Some(0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        last = lag_of(&stats(&src));
    }
    assert_eq!(last, Some(0), "{}", stats(&src));
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(lags.iter().all(|&lag| lag <= 20), "{lags:?}");
}
