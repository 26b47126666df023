// SPDX-License-Identifier: MIT OR Apache-2.0
//! `kafkadecodebin`: three H.264 cameras interleaved in one partition, decoded by one
//! `kafkasrc ! kafkadecodebin` line. Every frame decodes, and none crosses streams: each
//! camera has its own size and colour, and every decoded frame has its camera's. The
//! `decode` policies hand out exactly the frames they promise and commit the others;
//! with `parallel` the cameras decode in threads of their own.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// The default encoder: no B-frames, a keyframe a second.
const ENCODER: &str = "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15";

fn publish_cameras(topic: &str) {
    publish_cameras_with(topic, ENCODER);
}

fn publish_cameras_with(topic: &str, encoder: &str) {
    publish_cameras_ending_after(topic, encoder, Arc::new(|| {}));
}

/// `publish_cameras_with`, running `before_end` once when the first camera ends, before
/// any camera writes its end-of-stream record: what it writes comes before the end of the
/// read, however slow it is.
fn publish_cameras_ending_after(
    topic: &str,
    encoder: &str,
    before_end: Arc<dyn Fn() + Send + Sync>,
) {
    init();
    let once = Arc::new(std::sync::Once::new());
    // Live cameras running at once: their records interleave in the one partition.
    let cameras: Vec<gst::Pipeline> = CAMERAS
        .iter()
        .map(|(key, width, height, [r, g, b])| {
            let argb = 0xff00_0000u32 | (*r as u32) << 16 | (*g as u32) << 8 | *b as u32;
            launch(&format!(
                "videotestsrc is-live=true num-buffers={FRAMES} pattern=solid-color \
                 foreground-color={argb} ! \
                 video/x-raw,width={width},height={height},framerate=15/1 ! \
                 {encoder} ! h264parse ! \
                 video/x-h264,stream-format=byte-stream,alignment=au ! \
                 kafkasink name=sink brokers={} topic={topic} key={key}",
                brokers()
            ))
        })
        .collect();
    for camera in &cameras {
        let (once, before_end) = (once.clone(), before_end.clone());
        let sink_pad = camera.by_name("sink").unwrap().static_pad("sink").unwrap();
        sink_pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            if let Some(gst::PadProbeData::Event(event)) = &info.data
                && event.type_() == gst::EventType::Eos
            {
                // The other cameras' end-of-stream waits here until it has run.
                once.call_once(|| before_end());
            }
            gst::PadProbeReturn::Ok
        });
    }
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

/// Each camera's buffer records in topic order: (key, seq, flags, pts).
fn camera_records(topic: &str) -> Vec<(String, u64, String, u64)> {
    consume_raw(topic, 1, 3 * (FRAMES as usize + 1), Duration::from_secs(20))
        .iter()
        .filter(|r| r.header("gkv-kind") == Some("buffer"))
        .map(|r| {
            (
                r.key_text(),
                r.header("gkv-seq").unwrap().parse().unwrap(),
                r.header("gkv-flags").unwrap_or_default().to_string(),
                r.header("gkv-pts").unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// Each camera's decoded seqs in output order.
fn seqs_by_key(samples: &Mutex<Vec<gst::Sample>>) -> BTreeMap<String, Vec<u64>> {
    let mut frames = BTreeMap::<String, Vec<u64>>::new();
    for sample in samples.lock().unwrap().iter() {
        let record = gstkafka::RecordMeta::of(sample.buffer().unwrap()).unwrap();
        frames
            .entry(record.key.unwrap())
            .or_default()
            .push(record.seq);
    }
    frames
}

/// Decodes the topic as group `group` with `properties` on the bin; returns each camera's
/// decoded seqs in output order and the bin's stats. Checks the group committed it all.
fn decode_with(
    topic: &str,
    group: &str,
    properties: &str,
) -> (BTreeMap<String, Vec<u64>>, gst::Structure) {
    decode_prepared(topic, group, properties, |_| {})
}

/// `decode_with`, with `prepare` given the pipeline before it starts.
fn decode_prepared(
    topic: &str,
    group: &str,
    properties: &str,
    prepare: impl FnOnce(&gst::Pipeline),
) -> (BTreeMap<String, Vec<u64>>, gst::Structure) {
    let pipeline = launch(&format!(
        "kafkasrc brokers={} topic={topic} group-id={group} stop-on-eos=true ! \
         kafkadecodebin name=decode {properties} ! appsink name=out sync=false",
        brokers()
    ));
    let samples = collect_samples(&pipeline, "out");
    prepare(&pipeline);
    let decode = pipeline.by_name("decode").unwrap();
    let ended = run_until_end(&pipeline, Duration::from_secs(60));
    assert!(matches!(ended, Ended::Eos), "{ended:?}");
    let stats = stats(&decode);
    pipeline.set_state(gst::State::Null).unwrap();
    // Skipped frames are released like decoded ones: nothing is left for the group.
    let deadline = Instant::now() + Duration::from_secs(20);
    while group_lag(&brokers(), topic, 1, group) > 0 {
        assert!(
            Instant::now() < deadline,
            "{group} left {} records uncommitted",
            group_lag(&brokers(), topic, 1, group)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (seqs_by_key(&samples), stats)
}

#[test]
fn keyframes_only_hands_out_exactly_the_keyframes_in_order_and_commits_the_rest() {
    let topic = new_topic("decodebin-keyframes", 1);
    publish_cameras_with(
        &topic,
        "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=7",
    );
    let records = camera_records(&topic);
    let (frames, stats) = decode_with(&topic, &unique_name("keyframes"), "decode=keyframes");
    let mut keyframes = 0;
    for (key, ..) in CAMERAS {
        let expected: Vec<u64> = records
            .iter()
            .filter(|(k, _, flags, _)| k == key && !flags.contains("delta-unit"))
            .map(|(_, seq, ..)| *seq)
            .collect();
        assert!(expected.len() >= 5, "{key}: {expected:?}");
        assert_eq!(
            frames.get(key),
            Some(&expected),
            "{key}: the keyframes, in order"
        );
        keyframes += expected.len() as u64;
    }
    assert_eq!(
        stats.get::<u64>("frames-skipped").unwrap(),
        3 * FRAMES - keyframes,
        "{stats}"
    );
}

#[test]
fn reference_skips_exactly_the_b_frames_no_frame_refers_to() {
    let topic = new_topic("decodebin-reference", 1);
    // Two B-frames between references, none of them a reference (no B-pyramid).
    publish_cameras_with(
        &topic,
        "x264enc speed-preset=ultrafast bframes=2 b-adapt=false b-pyramid=false key-int-max=15",
    );
    let records = camera_records(&topic);
    // In threads of their own: decoding in the source's thread, the first camera's
    // output prerolls the sink and blocks that thread while the other cameras' decoders,
    // which hold B-frames back, still wait for frames to finish starting (a deadlock).
    let (frames, stats) = decode_with(
        &topic,
        &unique_name("reference"),
        "decode=reference parallel=true",
    );
    let mut skipped = 0;
    for (key, ..) in CAMERAS {
        // In decode order a B-frame shows before a frame decoded earlier: its PTS is below
        // the highest so far.
        let mut highest = 0;
        let mut expected = Vec::new();
        for (_, seq, _, pts) in records.iter().filter(|(k, ..)| k == key) {
            if *pts >= highest {
                expected.push(*seq);
                highest = *pts;
            } else {
                skipped += 1;
            }
        }
        assert!(
            expected.len() < FRAMES as usize / 2,
            "{key}: B-frames: {expected:?}"
        );
        // The decoder shows frames in display order, which is decode order without the Bs.
        assert_eq!(frames.get(key), Some(&expected), "{key}");
    }
    assert_eq!(
        stats.get::<u64>("frames-skipped").unwrap(),
        skipped,
        "{stats}"
    );
}

/// `auto` asks downstream how often it uses frames; here a probe answers for the sink as
/// yolodetect would with `max-rate=0.9`. Keyframes come every second: from the second
/// keyframe on (the first spacing measured) only keyframes are decoded.
#[test]
fn auto_decodes_keyframes_only_once_they_come_as_often_as_downstream_uses_frames() {
    let topic = new_topic("decodebin-auto", 1);
    publish_cameras(&topic);
    let records = camera_records(&topic);
    let (frames, stats) =
        decode_prepared(&topic, &unique_name("auto"), "decode=auto", |pipeline| {
            let sink = pipeline.by_name("out").unwrap();
            sink.static_pad("sink").unwrap().add_probe(
                gst::PadProbeType::QUERY_DOWNSTREAM,
                |_, info| {
                    let Some(gst::PadProbeData::Query(query)) = &mut info.data else {
                        return gst::PadProbeReturn::Ok;
                    };
                    let wanted = kafkavision::frames_wanted::FramesWanted {
                        max_rate: 0.9,
                        interval: 1,
                    };
                    if wanted.answer(query) {
                        gst::PadProbeReturn::Handled
                    } else {
                        gst::PadProbeReturn::Ok
                    }
                },
            );
        });
    let mut skipped = 0;
    for (key, ..) in CAMERAS {
        let keyframes: Vec<u64> = records
            .iter()
            .filter(|(k, _, flags, _)| k == key && !flags.contains("delta-unit"))
            .map(|(_, seq, ..)| *seq)
            .collect();
        let expected: Vec<u64> = (0..=keyframes[1])
            .chain(keyframes[2..].iter().copied())
            .collect();
        assert_eq!(frames.get(key), Some(&expected), "{key}");
        skipped += FRAMES - expected.len() as u64;
    }
    assert_eq!(
        stats.get::<u64>("frames-skipped").unwrap(),
        skipped,
        "{stats}"
    );
}

/// cam1's decoder is slow (each frame waits 40 ms before it): with `parallel`, cam2's
/// frames come out while cam1's decoder waits; decoding in the source's thread
/// (`parallel=false`) none can. Each camera is decoded in a thread of its own, and its
/// frames come out complete and in order.
#[test]
fn parallel_cameras_decode_at_once_in_threads_of_their_own_and_in_order() {
    let topic = new_topic("decodebin-parallel", 1);
    publish_cameras(&topic);
    for parallel in [true, false] {
        let pipeline = launch(&format!(
            "kafkasrc brokers={} topic={topic} stop-on-eos=true ! \
             kafkadecodebin name=decode parallel={parallel} ! appsink name=out sync=false",
            brokers()
        ));
        let samples = collect_samples(&pipeline, "out");
        let cam1_waiting = Arc::new(AtomicBool::new(false));
        let cam2_while_cam1_waits = Arc::new(AtomicUsize::new(0));
        {
            let (waiting, counted) = (cam1_waiting.clone(), cam2_while_cam1_waits.clone());
            pipeline
                .by_name("out")
                .unwrap()
                .static_pad("sink")
                .unwrap()
                .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                    if waiting.load(Ordering::SeqCst)
                        && let Some(buffer) = info.buffer()
                        && gstkafka::RecordMeta::of(buffer)
                            .and_then(|r| r.key)
                            .as_deref()
                            == Some("cam2")
                    {
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                    gst::PadProbeReturn::Ok
                });
        }
        let threads = Arc::new(Mutex::new(BTreeMap::<String, HashSet<String>>::new()));
        let (waiting, seen) = (cam1_waiting.clone(), threads.clone());
        pipeline.connect_deep_element_added(move |_, _, element| {
            if !element.name().starts_with("decode-src_") {
                return;
            }
            let (waiting, seen) = (waiting.clone(), seen.clone());
            element.static_pad("sink").unwrap().add_probe(
                gst::PadProbeType::BUFFER,
                move |_, info| {
                    let Some(key) = info
                        .buffer()
                        .and_then(|b| gstkafka::RecordMeta::of(b))
                        .and_then(|r| r.key)
                    else {
                        return gst::PadProbeReturn::Ok;
                    };
                    let thread = format!("{:?}", std::thread::current().id());
                    seen.lock()
                        .unwrap()
                        .entry(key.clone())
                        .or_default()
                        .insert(thread);
                    if key == "cam1" {
                        waiting.store(true, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(40));
                        waiting.store(false, Ordering::SeqCst);
                    }
                    gst::PadProbeReturn::Ok
                },
            );
        });
        let ended = run_until_end(&pipeline, Duration::from_secs(60));
        assert!(
            matches!(ended, Ended::Eos),
            "parallel={parallel}: {ended:?}"
        );
        pipeline.set_state(gst::State::Null).unwrap();
        let overlapped = cam2_while_cam1_waits.load(Ordering::SeqCst);
        let threads = threads.lock().unwrap();
        let all: HashSet<&String> = threads.values().flatten().collect();
        if parallel {
            assert!(
                overlapped >= 10,
                "cam2 decoded while cam1's decoder waited: {overlapped} frames"
            );
            assert!(
                threads.values().all(|t| t.len() == 1) && all.len() == 3,
                "a thread per camera: {threads:?}"
            );
        } else {
            assert_eq!(overlapped, 0, "one after the other");
            assert_eq!(all.len(), 1, "one thread: {threads:?}");
        }
        let frames = seqs_by_key(&samples);
        for (key, ..) in CAMERAS {
            assert_eq!(
                frames.get(key).cloned().unwrap_or_default(),
                (0..FRAMES).collect::<Vec<_>>(),
                "parallel={parallel}, {key}: every frame once, in order"
            );
        }
    }
}

/// With `parallel`, a decoder still starting when the read ends (its only frame came last,
/// and it takes its time) gets its frame out before the output ends, and a stream retired
/// before its decoder made any output (a camera restarted after one frame) has its frame
/// decoded before its decoder goes. Each JPEG decoder waits 500 ms before its first frame,
/// while the H.264 cameras' frames decode in a few ms.
#[test]
fn parallel_decoders_still_starting_finish_before_the_output_ends() {
    let topic = new_topic("decodebin-late-start", 1);
    // Two streams of one key at the cameras' end, before their end-of-stream records (the
    // read ends at the last of those): the second retires the first.
    let snapshots = {
        let topic = topic.clone();
        Arc::new(move || {
            for _ in 0..2 {
                let snapshot = launch(&format!(
                    "videotestsrc is-live=true num-buffers=1 ! \
                     video/x-raw,width=64,height=48,framerate=15/1 ! jpegenc ! \
                     kafkasink brokers={} topic={topic} key=snap",
                    brokers()
                ));
                snapshot.set_state(gst::State::Playing).unwrap();
                assert!(matches!(
                    run_until_end(&snapshot, Duration::from_secs(30)),
                    Ended::Eos
                ));
                snapshot.set_state(gst::State::Null).unwrap();
            }
        })
    };
    publish_cameras_ending_after(&topic, ENCODER, snapshots);

    let (mut frames, stats) = decode_prepared(
        &topic,
        &unique_name("late-start"),
        "parallel=true",
        |pipeline| {
            pipeline.connect_deep_element_added(|_, _, element| {
                if element.factory().is_some_and(|f| f.name() == "jpegdec") {
                    let first = AtomicBool::new(true);
                    element.static_pad("sink").unwrap().add_probe(
                        gst::PadProbeType::BUFFER,
                        move |_, _| {
                            if first.swap(false, Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(500));
                            }
                            gst::PadProbeReturn::Ok
                        },
                    );
                }
            });
        },
    );
    assert_eq!(
        frames.remove("snap").unwrap_or_default(),
        vec![0, 0],
        "both snapshot streams' frame, the retired one's too: {stats}"
    );
    for (key, ..) in CAMERAS {
        assert_eq!(
            frames.get(key).cloned().unwrap_or_default(),
            (0..FRAMES).collect::<Vec<_>>(),
            "{key}: every frame once, in order"
        );
    }
}
