// SPDX-License-Identifier: MIT OR Apache-2.0
//! `kafkadecodebin`: three H.264 cameras interleaved in one partition, decoded by one
//! `kafkasrc ! kafkadecodebin` line. Every frame decodes, and none crosses streams: each
//! camera has its own size and colour, and every decoded frame has its camera's.

use std::collections::BTreeMap;
use std::time::Duration;

use gst::prelude::*;
use gst_video::prelude::*;
use testkit::*;

fn init() {
    testkit::init(&[gstkafka::plugin_register_static]);
}

const FRAMES: u64 = 45;

/// (key, width, height, RGB colour)
const CAMERAS: [(&str, i32, i32, [u8; 3]); 3] = [
    ("cam1", 320, 240, [255, 0, 0]),
    ("cam2", 176, 144, [0, 255, 0]),
    ("cam3", 240, 160, [0, 0, 255]),
];

fn publish_cameras(topic: &str) {
    init();
    // Live cameras running at once: their records interleave in the one partition.
    let cameras: Vec<gst::Pipeline> = CAMERAS
        .iter()
        .map(|(key, width, height, [r, g, b])| {
            let argb = 0xff00_0000u32 | (*r as u32) << 16 | (*g as u32) << 8 | *b as u32;
            launch(&format!(
                "videotestsrc is-live=true num-buffers={FRAMES} pattern=solid-color \
                 foreground-color={argb} ! \
                 video/x-raw,width={width},height={height},framerate=15/1 ! \
                 x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 ! h264parse ! \
                 video/x-h264,stream-format=byte-stream,alignment=au ! \
                 kafkasink brokers={} topic={topic} key={key}",
                brokers()
            ))
        })
        .collect();
    for camera in &cameras {
        camera.set_state(gst::State::Playing).unwrap();
    }
    for camera in &cameras {
        assert!(matches!(
            run_until_end(camera, Duration::from_secs(60)),
            Ended::Eos
        ));
    }
}

#[test]
fn three_interleaved_h264_cameras_decode_every_frame_without_crossing_streams() {
    let topic = new_topic("decodebin-h264", 1);
    publish_cameras(&topic);
    let records = consume_raw(
        &topic,
        1,
        3 * (FRAMES as usize + 1),
        Duration::from_secs(20),
    );
    let keys: Vec<&str> = records
        .iter()
        .filter(|r| r.header("gkv-kind") == Some("buffer"))
        .map(|r| std::str::from_utf8(r.key.as_deref().unwrap()).unwrap())
        .collect();
    let switches = keys.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        switches > 10,
        "the cameras interleave in the topic: {switches} switches"
    );

    let pipeline = launch(&format!(
        "kafkasrc brokers={} topic={topic} stop-on-eos=true ! kafkadecodebin name=decode ! \
         videoconvert ! video/x-raw,format=RGB ! appsink name=out sync=false",
        brokers()
    ));
    let samples = collect_samples(&pipeline, "out");
    let decode = pipeline.by_name("decode").unwrap();
    let ended = run_until_end(&pipeline, Duration::from_secs(60));
    assert!(matches!(ended, Ended::Eos), "{ended:?}");
    let stats = stats(&decode);
    assert_eq!(stats.get::<u64>("streams-started").unwrap(), 3, "{stats}");

    let mut frames = BTreeMap::<String, Vec<u64>>::new();
    for sample in samples.lock().unwrap().iter() {
        let buffer = sample.buffer().unwrap();
        let record = gstkafka::RecordMeta::of(buffer).expect("decoded frames keep the record meta");
        let key = record.key.clone().unwrap();
        let (_, width, height, colour) = CAMERAS.iter().find(|c| c.0 == key).unwrap();
        let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
        assert_eq!(
            (info.width() as i32, info.height() as i32),
            (*width, *height),
            "{key} frame {} has another camera's size",
            record.seq
        );
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).unwrap();
        let stride = frame.plane_stride()[0] as usize;
        let data = frame.plane_data(0).unwrap();
        let at = (info.height() as usize / 2) * stride + (info.width() as usize / 2) * 3;
        let pixel = &data[at..at + 3];
        for (got, want) in pixel.iter().zip(colour) {
            assert!(
                got.abs_diff(*want) < 40,
                "{key} frame {} has colour {pixel:?}, not {colour:?}",
                record.seq
            );
        }
        frames.entry(key).or_default().push(record.seq);
    }
    for (key, ..) in CAMERAS {
        let seqs = frames.get(key).cloned().unwrap_or_default();
        assert_eq!(
            seqs,
            (0..FRAMES).collect::<Vec<_>>(),
            "{key}: every frame decoded once, in order"
        );
    }
}

/// Its `stats` count from its last start, as every element's do.
#[test]
fn stats_count_from_the_last_start() {
    init();
    let pipeline = launch(
        "videotestsrc num-buffers=3 ! video/x-raw,width=64,height=48 ! jpegenc ! \
         kafkadecodebin name=decode ! fakesink",
    );
    for run in 1..=2 {
        let ended = run_until_end(&pipeline, Duration::from_secs(30));
        assert!(matches!(ended, Ended::Eos), "run {run}: {ended:?}");
        let decode = pipeline.by_name("decode").unwrap();
        assert_eq!(
            stat_u64(&decode, "streams-started"),
            1,
            "run {run}: {}",
            stats(&decode)
        );
    }
}
