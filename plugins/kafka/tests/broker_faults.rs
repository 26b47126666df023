// SPDX-License-Identifier: MIT OR Apache-2.0
//! No frame lost when the broker or the network fails. A live camera pipeline
//! (`videotestsrc is-live=true ! jpegenc ! kafkasink`) and a consumer (`kafkasrc group-id=..`)
//! run while the broker is stopped and restarted, stays away longer than the producer can
//! buffer, or while the network between the consumer and the broker is cut. Each test
//! checks, by the gkv-seq sequence numbers, that every published frame was received at
//! least once, counts duplicates and prints what it measured.
//!
//! Every test starts a PRIVATE broker of the kind the scripts install (nisshi, or the tansu
//! fallback) in a folder of its own and stops it even when the test fails, so the shared
//! test broker and the tests running against it are never disturbed. Its storage is sqlite
//! (records and committed offsets survive its restarts), or `KV_FAULTS_BROKER_STORAGE`
//! (`postgres` measures the restart on nisshi's PostgreSQL engine).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use testkit::*;

fn init() {
    testkit::init(&[
        gstkafka::plugin_register_static,
        gstgkvanalytics::plugin_register_static,
    ]);
}

/// A playing pipeline; set to NULL when dropped, also when a test fails.
struct Running {
    pipeline: gst::Pipeline,
    errors: Vec<String>,
    eos: bool,
}

impl Running {
    /// The pipeline, not playing yet: counters go in before the first buffer flows.
    fn launch(description: &str) -> Running {
        init();
        Running {
            pipeline: launch(description),
            errors: Vec::new(),
            eos: false,
        }
    }

    fn play(&self) {
        self.pipeline.set_state(gst::State::Playing).unwrap();
    }

    fn element(&self, name: &str) -> gst::Element {
        self.pipeline.by_name(name).unwrap()
    }

    /// Every error message posted so far. (Reads the whole bus and remembers EOS too:
    /// `pop_filtered` would throw away the messages it does not look for.)
    fn errors(&mut self) -> &[String] {
        let bus = self.pipeline.bus().unwrap();
        while let Some(msg) = bus.pop() {
            match msg.type_() {
                gst::MessageType::Error => self.errors.push(error_text(&msg)),
                gst::MessageType::Eos => self.eos = true,
                _ => {}
            }
        }
        &self.errors
    }

    /// `wait_for`, failing at once with this pipeline's error if it posts one.
    fn wait_for(&mut self, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
        let name = self.pipeline.name();
        wait_for(what, timeout, || {
            self.assert_no_error(&format!("{name}, while waiting for {what}"));
            done()
        })
    }

    fn assert_no_error(&mut self, what: &str) {
        let errors = self.errors();
        assert!(errors.is_empty(), "{what} failed: {errors:?}");
    }

    /// Waits for EOS or an error (`send_eos`: after sending EOS), then stops.
    fn end(&mut self, send_eos: bool, timeout: Duration) -> Ended {
        if let Some(err) = self.errors().first() {
            return Ended::Error(err.clone());
        }
        if self.eos && !send_eos {
            self.pipeline.set_state(gst::State::Null).unwrap();
            return Ended::Eos;
        }
        if send_eos {
            self.pipeline.send_event(gst::event::Eos::new());
        }
        let bus = self.pipeline.bus().unwrap();
        let ended = match bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(timeout.as_millis() as u64),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) {
            None => Ended::Timeout,
            Some(msg) if msg.type_() == gst::MessageType::Eos => Ended::Eos,
            Some(msg) => Ended::Error(error_text(&msg)),
        };
        self.pipeline.set_state(gst::State::Null).unwrap();
        ended
    }

    /// The first error posted within `timeout`.
    fn wait_error(&mut self, timeout: Duration) -> String {
        if let Some(err) = self.errors().first() {
            return err.clone();
        }
        let bus = self.pipeline.bus().unwrap();
        match bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(timeout.as_millis() as u64),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) {
            Some(msg) if msg.type_() == gst::MessageType::Error => error_text(&msg),
            other => panic!("expected an error within {timeout:?}, got {other:?}"),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn error_text(msg: &gst::Message) -> String {
    match msg.view() {
        gst::MessageView::Error(err) => format!(
            "{}: {} ({})",
            msg.src().map(|s| s.name().to_string()).unwrap_or_default(),
            err.error(),
            err.debug().map(|d| d.to_string()).unwrap_or_default()
        ),
        _ => format!("{msg:?}"),
    }
}

/// When each buffer arrived at a pad (or an appsink), with its sequence number.
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<Vec<(u64, Instant)>>>);

impl Arrivals {
    /// Buffers arriving at `element`'s sink pad (seq: the arrival's index).
    fn at_sink_pad(element: &gst::Element) -> Arrivals {
        let arrivals = Arrivals::default();
        let store = arrivals.clone();
        element
            .static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                let mut v = store.0.lock().unwrap();
                let index = v.len() as u64;
                v.push((index, Instant::now()));
                gst::PadProbeReturn::Ok
            });
        arrivals
    }

    /// Buffers reaching the appsink `name`; seq: the buffer offset, which kafkasrc sets to
    /// the record's gkv-seq.
    fn at_appsink(pipeline: &gst::Pipeline, name: &str) -> Arrivals {
        let arrivals = Arrivals::default();
        let store = arrivals.clone();
        let sink = pipeline
            .by_name(name)
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let seq = sample.buffer().unwrap().offset();
                    store.0.lock().unwrap().push((seq, Instant::now()));
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        arrivals
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn seqs(&self) -> Vec<u64> {
        self.0.lock().unwrap().iter().map(|(s, _)| *s).collect()
    }

    fn max_seq(&self) -> Option<u64> {
        self.0.lock().unwrap().iter().map(|(s, _)| *s).max()
    }

    /// When the first buffer arrived after `since`.
    fn first_after(&self, since: Instant) -> Option<Instant> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, t)| *t)
            .find(|t| *t > since)
    }

    fn time_of(&self, index: usize) -> Instant {
        self.0.lock().unwrap()[index].1
    }
}

/// How a list of sequence numbers covers 0..expected.
#[derive(Debug)]
struct Coverage {
    received: usize,
    distinct: usize,
    duplicates: usize,
    missing: Vec<u64>,
    unexpected: Vec<u64>,
}

fn coverage(seqs: &[u64], expected: u64) -> Coverage {
    let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
    Coverage {
        received: seqs.len(),
        distinct: distinct.len(),
        duplicates: seqs.len() - distinct.len(),
        missing: (0..expected).filter(|s| !distinct.contains(s)).collect(),
        unexpected: distinct
            .iter()
            .copied()
            .filter(|s| *s >= expected)
            .collect(),
    }
}

/// The gkv-seq of every frame record (not the end-of-stream record) in `topic`.
fn frame_seqs_on_topic(brokers: &str, topic: &str) -> Vec<u64> {
    consume_all_on(brokers, topic, 1, Duration::from_secs(60))
        .iter()
        .filter(|r| r.header("gkv-kind") == Some("buffer"))
        .map(|r| r.header("gkv-seq").unwrap().parse().unwrap())
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A live camera: 30 small JPEG frames a second into `kafkasink name=sink`.
fn camera(brokers: &str, topic: &str, sink_properties: &str) -> String {
    format!(
        "videotestsrc is-live=true pattern=ball ! \
         video/x-raw,width=64,height=48,framerate=30/1 ! jpegenc ! \
         kafkasink name=sink brokers={brokers} topic={topic} stream-id=cam1 {sink_properties}"
    )
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Signed seconds from `from` to `to`.
fn seconds_between(from: Instant, to: Instant) -> f64 {
    if to >= from {
        seconds(to - from)
    } else {
        -seconds(from - to)
    }
}

const BROKER_OUTAGE: Duration = Duration::from_secs(6);

#[test]
fn a_broker_restart_mid_stream_loses_no_frame() {
    init();
    let broker = PrivateBroker::start(None);
    let topic = broker.create_topic("faults-restart", 1);
    let group = unique_name("faults-restart-group");

    let mut consumer = Running::launch(&format!(
        "kafkasrc name=src brokers={} topic={topic} group-id={group} stop-on-eos=true ! \
         appsink name=out sync=false",
        broker.address
    ));
    let received = Arrivals::at_appsink(&consumer.pipeline, "out");
    consumer.play();
    let mut publisher = Running::launch(&camera(&broker.address, &topic, ""));
    let sink = publisher.element("sink");
    let offered = Arrivals::at_sink_pad(&sink);
    publisher.play();

    consumer.wait_for(
        "the consumer to receive 30 frames",
        Duration::from_secs(90),
        || received.count() >= 30,
    );
    publisher.assert_no_error("the camera pipeline, before the outage");
    consumer.assert_no_error("the consumer pipeline, before the outage");

    let down = Instant::now();
    broker.kill();
    std::thread::sleep(BROKER_OUTAGE);
    broker.start_again();
    let back = Instant::now();
    let outage = back - down;
    let offered_during = offered.count();

    // Some more frames after the restart, then the end of the stream.
    publisher.wait_for(
        "30 frames after the restart",
        Duration::from_secs(60),
        || offered.count() >= offered_during + 30,
    );
    publisher.assert_no_error("the camera pipeline");
    consumer.assert_no_error("the consumer pipeline");
    match publisher.end(true, Duration::from_secs(120)) {
        Ended::Eos => {}
        other => panic!("the camera pipeline ended with {other:?}"),
    }
    let frames = offered.count() as u64;
    let sink_stats = stats(&sink);
    assert_eq!(
        sink_stats.get::<u64>("records-sent").unwrap(),
        frames + 1,
        "every frame and the end-of-stream record delivered: {sink_stats}"
    );
    assert_eq!(sink_stats.get::<u64>("delivery-failures").unwrap(), 0);
    assert_eq!(sink_stats.get::<u64>("records-dropped").unwrap(), 0);

    // The consumer ends at the stream's end-of-stream record.
    match consumer.end(false, Duration::from_secs(180)) {
        Ended::Eos => {}
        other => panic!(
            "the consumer pipeline ended with {other:?} after {} of {frames} frames",
            received.count()
        ),
    }
    let consumed = coverage(&received.seqs(), frames);
    let on_topic = coverage(&frame_seqs_on_topic(&broker.address, &topic), frames);
    let recovery = received.first_after(back).map(|t| seconds(t - back));
    println!(
        "broker restart: outage {:.1} s (stop to answering again), {frames} frames published \
         ({} before the broker came back); topic: {} records, {} duplicates, {} missing; \
         consumer: {} received, {} duplicates, {} missing, first frame {:.2?} s after the \
         broker was back",
        seconds(outage),
        offered_during,
        on_topic.received,
        on_topic.duplicates,
        on_topic.missing.len(),
        consumed.received,
        consumed.duplicates,
        consumed.missing.len(),
        recovery
    );
    assert!(
        on_topic.missing.is_empty(),
        "lost on the topic: {on_topic:?}"
    );
    assert!(on_topic.unexpected.is_empty(), "{on_topic:?}");
    assert_eq!(
        on_topic.duplicates, 0,
        "the idempotent producer wrote duplicates: {on_topic:?}"
    );
    assert!(consumed.missing.is_empty(), "not consumed: {consumed:?}");
    assert!(consumed.unexpected.is_empty(), "{consumed:?}");
}

/// A live camera into `topic`, playing and past its first 30 delivered frames, with its
/// sink and the count of frames that reached the sink.
fn camera_delivering(
    broker: &PrivateBroker,
    topic: &str,
    sink_properties: &str,
) -> (Running, gst::Element, Arrivals) {
    let mut publisher = Running::launch(&camera(&broker.address, topic, sink_properties));
    let sink = publisher.element("sink");
    let offered = Arrivals::at_sink_pad(&sink);
    publisher.play();
    wait_for("30 frames delivered", Duration::from_secs(60), || {
        stat_u64(&sink, "records-sent") >= 30
    });
    publisher.assert_no_error("the camera pipeline, before the outage");
    (publisher, sink, offered)
}

#[test]
fn an_outage_longer_than_message_timeout_fails_loudly_and_counts_every_frame() {
    init();
    let broker = PrivateBroker::start(None);
    let topic = broker.create_topic("faults-timeout", 1);
    let (mut publisher, sink, offered) = camera_delivering(
        &broker,
        &topic,
        // No end-of-stream record: after the error, videotestsrc sends EOS, and the record
        // kafkasink would then queue (and fail too) must not blur the count of frames.
        "eos-marker=false config=message.timeout.ms=3000",
    );

    let down = Instant::now();
    broker.kill();
    // The broker stays away until the pipeline gives up: longer than the producer buffers.
    let error = publisher.wait_error(Duration::from_secs(90));
    let to_error = down.elapsed();
    let stopping = Instant::now();
    publisher.pipeline.set_state(gst::State::Null).unwrap();
    let stop_took = stopping.elapsed();

    let sink_stats = stats(&sink);
    let delivered = sink_stats.get::<u64>("records-sent").unwrap();
    let failed = sink_stats.get::<u64>("delivery-failures").unwrap();
    let dropped = sink_stats.get::<u64>("records-dropped").unwrap();
    let frames = offered.count() as u64;

    broker.start_again();
    let on_topic = frame_seqs_on_topic(&broker.address, &topic);
    let on_topic = coverage(&on_topic, delivered + failed);
    println!(
        "outage past message.timeout.ms=3000: error {:.1} s after the broker stopped: \
         \"{error}\"; {frames} frames reached kafkasink: {delivered} delivered, {failed} \
         failed, {dropped} dropped, 1 refused with the error; topic: {} records, {} \
         duplicates; stopping the pipeline took {:.1} s",
        seconds(to_error),
        on_topic.received,
        on_topic.duplicates,
        seconds(stop_took)
    );
    assert!(
        error.to_lowercase().contains("timed out"),
        "the error names the reason: {error}"
    );
    assert!(failed > 0, "{sink_stats}");
    assert_eq!(dropped, 0, "{sink_stats}");
    // The frame whose render found the failure is refused with the error, not sent.
    assert_eq!(
        delivered + failed + dropped + 1,
        frames,
        "every frame that reached kafkasink is accounted for: {sink_stats}"
    );
    // What was reported delivered is on the topic; a failed record may be there too when
    // the broker stored it but could not answer any more.
    assert!(
        on_topic.distinct as u64 >= delivered && on_topic.unexpected.is_empty(),
        "{on_topic:?} {sink_stats}"
    );
    assert!(
        on_topic.missing.iter().all(|s| *s >= delivered),
        "a record reported delivered is not on the topic: {on_topic:?}"
    );
    assert_eq!(on_topic.duplicates, 0, "{on_topic:?}");
}

#[test]
fn a_full_queue_blocks_the_live_camera_until_the_broker_is_back() {
    init();
    let broker = PrivateBroker::start(None);
    let topic = broker.create_topic("faults-block", 1);
    let (mut publisher, sink, offered) = camera_delivering(
        &broker,
        &topic,
        "queue-full=block config=queue.buffering.max.messages=10",
    );

    let down = Instant::now();
    broker.kill();
    publisher.wait_for(
        "the producer queue to fill up",
        Duration::from_secs(30),
        || stats(&sink).get::<u32>("queue-depth").unwrap() >= 10,
    );
    // With the broker away nothing can drain the queue: the camera must stand still.
    std::thread::sleep(Duration::from_secs(1));
    let blocked_at = offered.count();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        offered.count(),
        blocked_at,
        "frames got past a full queue while the broker was away: {}",
        stats(&sink)
    );
    let last_before = offered.time_of(blocked_at - 1);
    let remaining = Duration::from_secs(8).saturating_sub(down.elapsed());
    std::thread::sleep(remaining);
    broker.start_again();
    let back = Instant::now();

    publisher.wait_for(
        "the camera pipeline to resume",
        Duration::from_secs(60),
        || offered.count() >= blocked_at + 30,
    );
    let resumed = offered.time_of(blocked_at);
    publisher.assert_no_error("the camera pipeline");
    match publisher.end(true, Duration::from_secs(60)) {
        Ended::Eos => {}
        other => panic!("the camera pipeline ended with {other:?}"),
    }
    let frames = offered.count() as u64;
    let sink_stats = stats(&sink);
    let on_topic = coverage(&frame_seqs_on_topic(&broker.address, &topic), frames);
    println!(
        "queue-full=block, queue.buffering.max.messages=10: broker away {:.1} s; the camera \
         stood still from {:.2} s after the broker stopped until {:.2} s after it answered \
         again (a gap of {:.1} s between frames); {frames} frames, topic: {} records, {} \
         duplicates, {} missing",
        seconds(back - down),
        seconds_between(down, last_before),
        seconds_between(back, resumed),
        seconds(resumed - last_before),
        on_topic.received,
        on_topic.duplicates,
        on_topic.missing.len()
    );
    assert!(
        resumed > down,
        "the camera resumed before the broker stopped?"
    );
    assert_eq!(
        sink_stats.get::<u64>("records-sent").unwrap(),
        frames + 1,
        "{sink_stats}"
    );
    assert_eq!(sink_stats.get::<u64>("delivery-failures").unwrap(), 0);
    assert_eq!(sink_stats.get::<u64>("records-dropped").unwrap(), 0);
    assert!(on_topic.missing.is_empty(), "{on_topic:?}");
    assert!(on_topic.unexpected.is_empty(), "{on_topic:?}");
    assert_eq!(on_topic.duplicates, 0, "{on_topic:?}");
}

/// What a worker run through the proxy measured.
struct WorkerRun {
    frames: u64,
    consumed: Coverage,
    results: Coverage,
    /// From restoring the network to the first frame the worker received after it.
    recovery: Option<Duration>,
    received_during_fault: usize,
}

const NETWORK_FAULT: Duration = Duration::from_secs(8);

/// A worker (`kafkasrc group-id ! detectionsconvert ! kafkasink`, both through the proxy)
/// reads a live camera's frames while `fault` hits its connections for NETWORK_FAULT.
fn worker_through_fault(
    name: &str,
    worker_config: &str,
    fault: impl FnOnce(&Proxy),
) -> (WorkerRun, ProxyCounts) {
    init();
    let proxy = Proxy::start("worker");
    let broker = PrivateBroker::start(Some(&proxy.address.to_string()));
    proxy.set_upstream(&broker.address);
    let frames_topic = broker.create_topic(&format!("faults-{name}"), 1);
    let results_topic = broker.create_topic(&format!("faults-{name}-results"), 1);
    let group = unique_name(&format!("faults-{name}-workers"));
    let via = proxy.address;

    let mut worker = Running::launch(&format!(
        "kafkasrc name=src brokers={via} topic={frames_topic} group-id={group} \
         stop-on-eos=true config=client.id=worker-src{worker_config} ! tee name=t \
         t. ! queue ! appsink name=out sync=false \
         t. ! queue ! detectionsconvert ! kafkasink name=results brokers={via} \
         topic={results_topic} stream-id=worker1 config=client.id=worker-sink{worker_config}"
    ));
    let received = Arrivals::at_appsink(&worker.pipeline, "out");
    worker.play();
    let mut publisher = Running::launch(&camera(
        &via.to_string(),
        &frames_topic,
        "config=client.id=camera",
    ));
    let offered = Arrivals::at_sink_pad(&publisher.element("sink"));
    publisher.play();

    worker.wait_for(
        "the worker to receive 30 frames",
        Duration::from_secs(90),
        || received.count() >= 30,
    );
    worker.assert_no_error("the worker, before the fault");
    let before_fault = received.count();
    fault(&proxy);
    std::thread::sleep(NETWORK_FAULT);
    proxy.restore();
    let restored = Instant::now();
    let received_during_fault = received.count() - before_fault;
    let published_by_restore = offered.count() as u64;

    worker.wait_for(
        "the worker to receive frames published after the fault",
        Duration::from_secs(120),
        || {
            received
                .max_seq()
                .is_some_and(|s| s >= published_by_restore + 30)
        },
    );
    publisher.assert_no_error("the camera pipeline");
    worker.assert_no_error("the worker");
    match publisher.end(true, Duration::from_secs(60)) {
        Ended::Eos => {}
        other => panic!("the camera pipeline ended with {other:?}"),
    }
    let frames = offered.count() as u64;
    match worker.end(false, Duration::from_secs(120)) {
        Ended::Eos => {}
        other => {
            let c = coverage(&received.seqs(), frames);
            panic!(
                "the worker ended with {other:?}: {} of {frames} frames received, {} missing \
                 (first {:?}); kafkasrc {}; results kafkasink {}",
                c.received,
                c.missing.len(),
                c.missing.first(),
                stats(&worker.element("src")),
                stats(&worker.element("results"))
            )
        }
    }
    let results: Vec<u64> =
        consume_all_on(&broker.address, &results_topic, 1, Duration::from_secs(60))
            .iter()
            .filter(|r| r.header("gkv-kind") == Some("buffer"))
            .map(|r| {
                kafkavision::detections::FrameDetections::from_json(&r.value)
                    .unwrap()
                    .source
                    .expect("a result names its source record")
                    .seq
            })
            .collect();
    let run = WorkerRun {
        frames,
        consumed: coverage(&received.seqs(), frames),
        results: coverage(&results, frames),
        recovery: received.first_after(restored).map(|t| t - restored),
        received_during_fault,
    };
    (run, proxy.counts())
}

fn assert_all_frames(run: &WorkerRun) {
    for (what, c) in [("consumed", &run.consumed), ("results", &run.results)] {
        assert!(c.missing.is_empty(), "{what}: {c:?}");
        assert!(c.unexpected.is_empty(), "{what}: {c:?}");
    }
}

#[test]
fn a_worker_cut_off_from_the_broker_recovers_without_losing_frames() {
    let (run, proxy) = worker_through_fault("cut", "", Proxy::cut);
    let (closed, refused) = (proxy.closed_by_cut, proxy.refused);
    println!(
        "network cut of {:.0} s between the worker and the broker ({closed} connections \
         closed, {refused} reconnects refused): {} frames; worker received {} ({} \
         duplicates, {} missing, {} during the cut), first frame {:.2?} s after the network \
         was back; results: {} ({} duplicates, {} missing)",
        seconds(NETWORK_FAULT),
        run.frames,
        run.consumed.received,
        run.consumed.duplicates,
        run.consumed.missing.len(),
        run.received_during_fault,
        run.recovery.map(seconds),
        run.results.received,
        run.results.duplicates,
        run.results.missing.len()
    );
    assert!(closed > 0, "the cut closed no connection of the worker");
    assert!(
        refused > 0,
        "the worker did not try to reconnect during the cut"
    );
    assert!(run.recovery.is_some(), "nothing arrived after the cut");
    assert_all_frames(&run);
}

#[test]
fn a_worker_behind_a_network_blackhole_recovers_within_socket_timeout() {
    // The stalled connections never carry a byte again (a lost NAT entry, a dead link):
    // librdkafka must give up on them by itself, after socket.timeout.ms.
    let (run, proxy) =
        worker_through_fault("blackhole", ",socket.timeout.ms=10000", Proxy::blackhole);
    let frozen = proxy.frozen;
    println!(
        "network blackhole of {:.0} s (worker socket.timeout.ms=10000, {frozen} connections \
         stalled for good): {} frames; worker received {} ({} duplicates, {} missing, {} \
         during the blackhole), first frame {:.2?} s after the network was back; results: {} \
         ({} duplicates, {} missing)",
        seconds(NETWORK_FAULT),
        run.frames,
        run.consumed.received,
        run.consumed.duplicates,
        run.consumed.missing.len(),
        run.received_during_fault,
        run.recovery.map(seconds),
        run.results.received,
        run.results.duplicates,
        run.results.missing.len()
    );
    assert!(
        frozen > 0,
        "the blackhole stalled no connection of the worker"
    );
    assert!(
        run.recovery.is_some(),
        "nothing arrived after the blackhole"
    );
    assert_all_frames(&run);
}

/// `kafkamonitor` turns unhealthy when no broker has been reachable for longer than its
/// bound (from the elements' `broker-down-ms`), and healthy again once it is back.
#[test]
fn health_turns_bad_while_the_broker_is_down_and_good_when_it_is_back() {
    use kafkamonitor::{HealthLimits, Monitor};
    init();
    let broker = PrivateBroker::start(None);
    let topic = broker.create_topic("faults-health", 1);
    let consumer = Running::launch(&format!(
        "kafkasrc name=src brokers={} topic={topic} group-id={} ! fakesink",
        broker.address,
        unique_name("faults-health")
    ));
    let limits = HealthLimits {
        broker_down: Duration::from_secs(2),
        ..HealthLimits::default()
    };
    let monitor = Monitor::new(&consumer.pipeline, limits);
    consumer.play();
    type Health = Result<(), Vec<String>>;
    let wait_until = |what: &str, done: &dyn Fn(&Health) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let health = monitor.health();
            if done(&health) {
                return health;
            }
            assert!(Instant::now() < deadline, "never {what}: {health:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let _ = wait_until("healthy", &|h| h.is_ok());
    broker.kill();
    let bad = wait_until("unhealthy", &|h| h.is_err());
    let reasons = bad.unwrap_err().join("; ");
    assert!(
        reasons.contains("src: no Kafka broker reachable for"),
        "{reasons}"
    );
    assert!(monitor.metrics().contains("gkv_pipeline_healthy 0"));
    broker.start_again();
    let _ = wait_until("healthy again", &|h| h.is_ok());
}
