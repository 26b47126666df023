// SPDX-License-Identifier: MIT OR Apache-2.0
//! `kafkasink` against the broker `scripts/test` starts: records, envelope, errors.

use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_check::Harness;
use kafkavision::envelope::header;
use testkit::*;

fn init() {
    testkit::init(&[gstkafka::plugin_register_static]);
}

fn sink_harness(topic: &str, extra: &[(&str, &str)]) -> Harness {
    init();
    let sink = gst::ElementFactory::make("kafkasink")
        .property("brokers", brokers())
        .property("topic", topic)
        // The harness wants PLAYING at once; a sink would otherwise wait for preroll.
        .property("async", false)
        .build()
        .unwrap();
    for (name, value) in extra {
        sink.set_property_from_str(name, value);
    }
    // The harness starts an element with a sink pad right away: properties go first.
    Harness::with_element(&sink, Some("sink"), None)
}

#[test]
fn each_buffer_becomes_one_record_with_envelope_headers() {
    let topic = new_topic("sink-envelope", 1);
    let mut h = sink_harness(&topic, &[("key", "cam1"), ("stream-id", "cam1-test")]);
    h.set_src_caps_str("video/x-h264, stream-format=(string)byte-stream, alignment=(string)au");

    let payloads: Vec<Vec<u8>> = (0..5u8)
        .map(|i| vec![0, 0, 0, 1, 0x65 + i, i, i, i])
        .collect();
    for (i, payload) in payloads.iter().enumerate() {
        let mut buffer = gst::Buffer::from_slice(payload.clone());
        {
            let b = buffer.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_mseconds(40 * i as u64 + 80));
            b.set_dts(gst::ClockTime::from_mseconds(40 * i as u64));
            b.set_duration(gst::ClockTime::from_mseconds(40));
            if i > 0 {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            } else {
                b.set_flags(gst::BufferFlags::DISCONT | gst::BufferFlags::HEADER);
            }
        }
        assert_eq!(h.push(buffer), Ok(gst::FlowSuccess::Ok));
    }
    assert!(h.push_event(gst::event::Eos::new()));

    let sink = h.element().unwrap();
    assert_eq!(
        stat_u64(&sink, "records-sent"),
        6,
        "5 buffers + the EOS record"
    );
    assert_eq!(stat_u64(&sink, "delivery-failures"), 0);

    let records = consume_raw(&topic, 1, 6, Duration::from_secs(20));
    for (i, record) in records.iter().take(5).enumerate() {
        assert_eq!(record.value, payloads[i], "value is the buffer's bytes");
        assert_eq!(record.key.as_deref(), Some(&b"cam1"[..]));
        assert_eq!(record.header(header::VERSION), Some("1"));
        assert_eq!(record.header(header::KIND), Some("buffer"));
        assert_eq!(record.header(header::STREAM), Some("cam1-test"));
        assert_eq!(record.header(header::SEQ), Some(i.to_string().as_str()));
        let caps = record.header(header::CAPS).unwrap();
        assert!(caps.starts_with("video/x-h264"), "{caps}");
        let pts = (40 * i as u64 + 80) * 1_000_000;
        assert_eq!(record.header(header::PTS), Some(pts.to_string().as_str()));
        let dts = 40 * i as u64 * 1_000_000;
        assert_eq!(record.header(header::DTS), Some(dts.to_string().as_str()));
        assert_eq!(record.header(header::DURATION), Some("40000000"));
        let flags = if i == 0 {
            "discont,header"
        } else {
            "delta-unit"
        };
        assert_eq!(record.header(header::FLAGS), Some(flags));
        let sink_time: u64 = record.header(header::SINK_TIME).unwrap().parse().unwrap();
        assert!(sink_time > 1_700_000_000_000_000_000, "a Unix time in ns");
    }
    let eos = &records[5];
    assert_eq!(eos.header(header::KIND), Some("eos"));
    assert_eq!(eos.header(header::SEQ), Some("5"));
    assert!(eos.value.is_empty());
}

#[test]
fn eos_marker_can_be_turned_off() {
    let topic = new_topic("sink-no-eos", 1);
    let mut h = sink_harness(&topic, &[("eos-marker", "false")]);
    h.set_src_caps_str("application/octet-stream");
    assert_eq!(
        h.push(gst::Buffer::from_slice(vec![1u8; 10])),
        Ok(gst::FlowSuccess::Ok)
    );
    assert!(h.push_event(gst::event::Eos::new()));
    // Write one plain record after it: if an EOS record existed it would come first.
    produce_raw(&topic, Some(0), &[(b"after".to_vec(), vec![])]);
    let records = consume_raw(&topic, 1, 2, Duration::from_secs(20));
    assert_eq!(records[0].header(header::KIND), Some("buffer"));
    assert_eq!(records[1].value, b"after");
}

#[test]
fn fixed_partition_and_key_route_records() {
    let topic = new_topic("sink-partition", 3);
    let mut h = sink_harness(&topic, &[("partition", "2")]);
    h.set_src_caps_str("application/octet-stream");
    for i in 0..4u8 {
        assert_eq!(
            h.push(gst::Buffer::from_slice(vec![i; 4])),
            Ok(gst::FlowSuccess::Ok)
        );
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let records = consume_raw(&topic, 3, 5, Duration::from_secs(20));
    assert!(records.iter().all(|r| r.partition == 2), "{records:?}");
}

fn start_error(description: &str) -> (String, Duration) {
    init();
    let pipeline = launch(description);
    let started = Instant::now();
    match run_until_end(&pipeline, Duration::from_secs(60)) {
        Ended::Error(err) => (err, started.elapsed()),
        other => panic!("'{description}' should fail, but ended with {other:?}"),
    }
}

#[test]
fn missing_topic_is_a_clear_error() {
    let (err, _) = start_error(&format!(
        "fakesrc num-buffers=1 ! kafkasink brokers={} topic=no-such-topic-{}",
        brokers(),
        std::process::id()
    ));
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn unreachable_broker_fails_within_connect_timeout() {
    let (err, took) = start_error(
        "fakesrc num-buffers=1 ! kafkasink brokers=127.0.0.1:1 topic=frames connect-timeout=1500",
    );
    assert!(
        err.contains("could not reach Kafka brokers '127.0.0.1:1'"),
        "{err}"
    );
    // A bound on the failure, not a speed measurement: it must not hang.
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn missing_topic_property_and_invalid_config_are_reported() {
    let (err, _) = start_error("fakesrc num-buffers=1 ! kafkasink");
    assert!(err.contains("No topic set"), "{err}");

    let (err, _) = start_error(&format!(
        "fakesrc num-buffers=1 ! kafkasink brokers={} topic=frames config=linger.ms",
        brokers()
    ));
    assert!(err.contains("not of the form key=value"), "{err}");

    let (err, _) = start_error(&format!(
        "fakesrc num-buffers=1 ! kafkasink brokers={} topic=frames config=no.such.property=1",
        brokers()
    ));
    assert!(
        err.contains("Invalid Kafka producer configuration"),
        "{err}"
    );
}

#[test]
fn a_record_over_message_max_bytes_names_its_size() {
    let topic = new_topic("sink-too-large", 1);
    init();
    let pipeline = launch(&format!(
        "fakesrc num-buffers=1 sizetype=fixed sizemax=5000 filltype=zero ! \
         kafkasink brokers={} topic={topic} config=message.max.bytes=2000",
        brokers()
    ));
    let Ended::Error(err) = run_until_end(&pipeline, Duration::from_secs(30)) else {
        panic!("a 5000-byte record over a 2000-byte limit must fail");
    };
    assert!(err.contains("5000 bytes"), "{err}");
    assert!(err.contains("message.max.bytes"), "{err}");
}

#[test]
fn secrets_in_config_are_never_read_back() {
    init();
    let sink = gst::ElementFactory::make("kafkasink")
        .property(
            "config",
            "security.protocol=SASL_SSL,sasl.mechanism=PLAIN,sasl.username=bob,sasl.password=hunter2",
        )
        .build()
        .unwrap();
    let shown: String = sink.property("config");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("sasl.username=bob") && shown.contains("sasl.password=***"));
}

/// Secrets can stay out of launch lines (which GStreamer logs at debug level): `${NAME}`
/// reads an environment variable, and a missing one is a start error naming it.
#[test]
fn config_values_come_from_the_environment() {
    init();
    let topic = new_topic("sink-env", 1);
    let pipeline = launch(&format!(
        "videotestsrc num-buffers=2 ! jpegenc ! kafkasink brokers={} topic={topic} \
         config=sasl.password=${{GKV_TEST_UNSET_SECRET}}",
        brokers()
    ));
    match run_until_end(&pipeline, Duration::from_secs(30)) {
        Ended::Error(err) => assert!(
            err.contains(
                "environment variable GKV_TEST_UNSET_SECRET (for sasl.password) is not set"
            ),
            "{err}"
        ),
        other => panic!("{other:?}"),
    }
    // A variable that is set is used: here for a harmless setting the run depends on.
    // SAFETY: no other thread of this test binary reads this variable.
    unsafe { std::env::set_var("GKV_TEST_LINGER_MS", "1") };
    let pipeline = launch(&format!(
        "videotestsrc num-buffers=2 ! jpegenc ! kafkasink brokers={} topic={topic} \
         config=linger.ms=${{GKV_TEST_LINGER_MS}}",
        brokers()
    ));
    assert!(matches!(
        run_until_end(&pipeline, Duration::from_secs(30)),
        Ended::Eos
    ));
    assert_eq!(consume_raw(&topic, 1, 3, Duration::from_secs(10)).len(), 3);
}

#[test]
fn caps_changes_travel_with_the_records() {
    let topic = new_topic("sink-caps-change", 1);
    let mut h = sink_harness(&topic, &[]);
    h.set_src_caps_str(
        "video/x-raw, format=(string)GRAY8, width=(int)4, height=(int)2, framerate=(fraction)1/1",
    );
    assert_eq!(
        h.push(gst::Buffer::from_slice(vec![0u8; 8])),
        Ok(gst::FlowSuccess::Ok)
    );
    h.set_src_caps_str(
        "video/x-raw, format=(string)GRAY8, width=(int)2, height=(int)2, framerate=(fraction)1/1",
    );
    assert_eq!(
        h.push(gst::Buffer::from_slice(vec![0u8; 4])),
        Ok(gst::FlowSuccess::Ok)
    );
    assert!(h.push_event(gst::event::Eos::new()));
    let records = consume_raw(&topic, 1, 2, Duration::from_secs(20));
    assert!(
        records[0]
            .header(header::CAPS)
            .unwrap()
            .contains("width=(int)4")
    );
    assert!(
        records[1]
            .header(header::CAPS)
            .unwrap()
            .contains("width=(int)2")
    );
}

mod faults {
    //! Fault injection with librdkafka's mock cluster (not a stand-in for the broker).
    use super::*;
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    fn mock_with_topic() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
        init();
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("frames", 1, 1).unwrap();
        cluster
    }

    /// `appsrc ! kafkasink` against the mock cluster, playing; frames are pushed by hand.
    fn appsrc_pipeline(brokers: &str, sink_props: &str) -> (gst::Pipeline, gst_app::AppSrc) {
        let pipeline = launch(&format!(
            "appsrc name=src format=time caps=application/octet-stream ! \
             kafkasink name=sink brokers={brokers} topic=frames {sink_props}"
        ));
        let src = pipeline
            .by_name("src")
            .unwrap()
            .downcast::<gst_app::AppSrc>()
            .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        (pipeline, src)
    }

    fn first_error(pipeline: &gst::Pipeline, timeout: Duration) -> Option<String> {
        let bus = pipeline.bus().unwrap();
        let msg = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(timeout.as_millis() as u64),
            &[gst::MessageType::Error],
        )?;
        match msg.view() {
            gst::MessageView::Error(e) => Some(e.error().to_string()),
            _ => None,
        }
    }

    #[test]
    fn a_delivery_failure_becomes_an_error_with_the_brokers_reason() {
        let cluster = mock_with_topic();
        // Not retriable: librdkafka gives up at once and reports it.
        cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 50],
        );
        let (pipeline, src) = appsrc_pipeline(&cluster.bootstrap_servers(), "");
        for _ in 0..3 {
            let _ = src.push_buffer(gst::Buffer::from_slice(vec![7u8; 100]));
        }
        let _ = src.end_of_stream();
        let err = first_error(&pipeline, Duration::from_secs(30)).expect("an error");
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(
            err.contains("could not be delivered to topic 'frames'"),
            "{err}"
        );
        assert!(err.to_lowercase().contains("authorization"), "{err}");
    }

    #[test]
    fn a_full_queue_drops_and_counts_when_asked() {
        let cluster = mock_with_topic();
        let (pipeline, src) = appsrc_pipeline(
            &cluster.bootstrap_servers(),
            "queue-full=drop flush-timeout=500 config=queue.buffering.max.messages=5",
        );
        cluster.broker_down(1).unwrap();
        for _ in 0..20 {
            src.push_buffer(gst::Buffer::from_slice(vec![1u8; 100]))
                .unwrap();
        }
        let sink = pipeline.by_name("sink").unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while stat_u64(&sink, "records-dropped") < 15 {
            assert!(Instant::now() < deadline, "stats: {}", stats(&sink));
            std::thread::sleep(Duration::from_millis(50));
        }
        // The depth is librdkafka's out-queue length: the 5 queued records plus any client
        // events (e.g. connection errors) not served yet.
        let depth = stats(&sink).get::<u32>("queue-depth").unwrap();
        assert!(depth >= 5, "queue-depth {depth}");
        pipeline.set_state(gst::State::Null).unwrap();
    }

    #[test]
    fn a_full_queue_fails_when_asked() {
        let cluster = mock_with_topic();
        let (pipeline, src) = appsrc_pipeline(
            &cluster.bootstrap_servers(),
            "queue-full=error flush-timeout=500 config=queue.buffering.max.messages=5",
        );
        cluster.broker_down(1).unwrap();
        for _ in 0..20 {
            let _ = src.push_buffer(gst::Buffer::from_slice(vec![1u8; 100]));
        }
        let err = first_error(&pipeline, Duration::from_secs(20)).expect("an error");
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(err.contains("producer queue is full"), "{err}");
    }

    #[test]
    fn a_sink_blocked_on_a_full_queue_stops_promptly() {
        let cluster = mock_with_topic();
        let (pipeline, src) = appsrc_pipeline(
            &cluster.bootstrap_servers(),
            "flush-timeout=1000 config=queue.buffering.max.messages=5",
        );
        cluster.broker_down(1).unwrap();
        for _ in 0..20 {
            src.push_buffer(gst::Buffer::from_slice(vec![1u8; 100]))
                .unwrap();
        }
        std::thread::sleep(Duration::from_secs(1)); // the streaming thread is blocked now
        let sink = pipeline.by_name("sink").unwrap();
        assert_eq!(stat_u64(&sink, "records-dropped"), 0, "block never drops");
        // Catch the report as it is posted: the bus is flushed on the way to NULL.
        let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let store = errors.clone();
        pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
            if let gst::MessageView::Error(e) = msg.view() {
                store.lock().unwrap().push(e.error().to_string());
            }
            gst::BusSyncReply::Pass
        });
        let started = Instant::now();
        let _ = pipeline.set_state(gst::State::Null);
        let took = started.elapsed();
        // flush-timeout (1 s) bounds the final flush (the element's documented contract);
        // the undelivered records are reported.
        assert!(took < Duration::from_secs(4), "stopping took {took:?}");
        let errors = errors.lock().unwrap().join("; ");
        assert!(
            errors.contains("undelivered"),
            "stop reports what was not delivered: {errors}"
        );
    }
}

/// Two cameras' records (one with extra headers) relayed by `kafkasrc ! kafkasink
/// key-from=record`: every record keeps its key and its headers outside the envelope, and
/// each key is a stream of its own, numbered from 0, with its own end.
#[test]
fn a_relay_keeps_each_records_key_and_extra_headers() {
    let input = new_topic("relay-in", 1);
    let output = new_topic("relay-out", 1);
    init();
    let mut records = Vec::new();
    for seq in 0..6u64 {
        let camera = if seq % 2 == 0 { "cam-a" } else { "cam-b" };
        let envelope = kafkavision::Envelope::buffer(
            format!("{camera}-run"),
            seq / 2,
            Some("application/octet-stream".into()),
        );
        let mut headers: Vec<(String, Vec<u8>)> = envelope
            .to_headers()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into_bytes()))
            .collect();
        if camera == "cam-a" {
            headers.push(("trace-id".into(), vec![0xff, 0x00, seq as u8]));
        }
        records.push((camera, format!("frame {seq}").into_bytes(), headers));
    }
    for camera in ["cam-a", "cam-b"] {
        let envelope = kafkavision::Envelope::end_of_stream(format!("{camera}-run"), 3);
        let headers = envelope
            .to_headers()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into_bytes()))
            .collect();
        records.push((camera, Vec::new(), headers));
    }
    produce_keyed(&input, &records);

    run_to_eos(
        &format!(
            "kafkasrc brokers={b} topic={input} stop-on-eos=true ! \
             kafkasink name=sink brokers={b} topic={output} key-from=record",
            b = brokers()
        ),
        Duration::from_secs(60),
    );
    let relayed = consume_raw(&output, 1, 8, Duration::from_secs(20));
    let mut seqs: std::collections::BTreeMap<(String, String), Vec<String>> = Default::default();
    let mut ends = Vec::new();
    for r in &relayed {
        let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
        let stream = r.header(header::STREAM).unwrap().to_string();
        assert!(stream.starts_with(&key), "stream {stream} of key {key}");
        if r.header(header::KIND) == Some("eos") {
            ends.push(key);
            continue;
        }
        let n: u64 = String::from_utf8_lossy(&r.value)[6..].parse().unwrap();
        assert_eq!(
            key,
            if n.is_multiple_of(2) {
                "cam-a"
            } else {
                "cam-b"
            }
        );
        let trace = r.headers.iter().find(|(k, _)| k == "trace-id");
        match key.as_str() {
            "cam-a" => assert_eq!(
                trace.map(|(_, v)| v.clone()),
                Some(vec![0xff, 0x00, n as u8])
            ),
            _ => assert!(trace.is_none()),
        }
        seqs.entry((key, stream))
            .or_default()
            .push(r.header(header::SEQ).unwrap().to_string());
    }
    assert_eq!(seqs.len(), 2, "one stream per key: {seqs:?}");
    for numbers in seqs.values() {
        assert_eq!(numbers, &["0", "1", "2"]);
    }
    ends.sort();
    assert_eq!(ends, ["cam-a", "cam-b"], "each stream ends once");
}
