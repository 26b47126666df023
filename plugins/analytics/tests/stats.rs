// SPDX-License-Identifier: MIT OR Apache-2.0
//! Every analytics element's `stats` counts from its last start, as the other elements'
//! do: a pipeline played twice shows one run's figures, still readable once it stopped.

use std::time::Duration;

use gst::prelude::*;
use testkit::*;

#[test]
fn stats_count_from_the_last_start_and_stay_readable_after_stop() {
    init(&[gstgkvanalytics::plugin_register_static]);
    let pipeline = launch(
        "videotestsrc num-buffers=3 ! video/x-raw,width=64,height=48 ! objecttrack name=track ! \
         crossingcount name=count lines=gate:0.5,0,0.5,1 ! tee name=t ! \
         queue ! detectionsconvert name=convert ! fakesink \
         t. ! queue ! eventsconvert name=events ! fakesink",
    );
    for run in 1..=2 {
        let ended = run_until_end(&pipeline, Duration::from_secs(30));
        assert!(matches!(ended, Ended::Eos), "run {run}: {ended:?}");
        for name in ["track", "count", "convert", "events"] {
            let element = pipeline.by_name(name).unwrap();
            assert_eq!(
                stat_u64(&element, "frames"),
                3,
                "run {run}, {name}: {}",
                stats(&element)
            );
        }
    }
}
