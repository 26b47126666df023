// SPDX-License-Identifier: MIT OR Apache-2.0
//! The broker's default storage keeps records and committed group offsets across a
//! restart. Its own test binary: restarting the broker would disturb other tests, and
//! cargo runs test binaries one after another.

use std::time::Duration;

use testkit::*;

fn init() {
    testkit::init(&[gstkafka::plugin_register_static]);
}

fn offsets(samples: &[gst::Sample]) -> Vec<u64> {
    samples
        .iter()
        .map(|s| s.buffer().unwrap().offset())
        .collect()
}

fn read(description: &str) -> Vec<gst::Sample> {
    init();
    let pipeline = launch(description);
    let samples = collect_samples(&pipeline, "out");
    match run_until_end(&pipeline, Duration::from_secs(90)) {
        Ended::Eos => {}
        other => panic!("'{description}' ended with {other:?}"),
    }
    samples.lock().unwrap().clone()
}

#[test]
fn records_and_committed_offsets_survive_a_broker_restart() {
    init();
    let topic = new_topic("restart", 1);
    let group = unique_name("restart-group");
    run_to_eos(
        &format!(
            "videotestsrc num-buffers=10 ! video/x-raw,width=64,height=48 ! jpegenc ! \
             kafkasink brokers={} topic={topic}",
            brokers()
        ),
        Duration::from_secs(60),
    );
    let source = format!(
        "kafkasrc brokers={} topic={topic} group-id={group}",
        brokers()
    );
    let first = read(&format!(
        "{source} num-buffers=4 ! appsink name=out sync=false"
    ));
    assert_eq!(offsets(&first), vec![0, 1, 2, 3]);

    restart_test_broker();

    let rest = read(&format!(
        "{source} stop-on-eos=true ! appsink name=out sync=false"
    ));
    assert_eq!(
        offsets(&rest),
        (4..10).collect::<Vec<_>>(),
        "resumed after the restart"
    );
}
