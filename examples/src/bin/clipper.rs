// SPDX-License-Identifier: MIT OR Apache-2.0
//! `clipper`: a clip around every event, cut from the frames topic: the topic is the
//! recorder, so pre-roll is bounded only by the topic's retention.
//!
//! It reads `gkv.events` records as a consumer group (`kafkasrc ! appsink`) and, for each
//! event, reads the event's camera from the frames topic from `--pre` seconds before the
//! event's capture time to `--post` seconds after it (`kafkasrc key=… start-from=…
//! start-keyframe=previous stop-at=…`): the clip starts at the camera's last keyframe at or
//! before `event - pre` and ends at its first frame after `event + post`, waiting for it
//! when the event is recent. H.264 goes into the MP4 as it is (no re-encoding); JPEG and
//! raw frames are encoded with x264.
//!
//! Clips go to `--dir` as `EVENT_ID.mp4`, written as `EVENT_ID.mp4.part` and renamed once
//! complete, and each gets a line in `--dir/index.jsonl` (camera, event id, kind, place,
//! event time, the window asked for, the first and last frame's capture times, frames,
//! file, bytes). An event's record is committed only after its clip and index line are on
//! disk (`commit-after=release`: the event's buffer is let go then), so a clipper killed
//! mid-clip reads the event again when it comes back and writes the clip again; an event
//! already in the index is not clipped twice. Each event gets a clip of its own, also when
//! events of one camera overlap (no merging: every event's clip starts and ends where its
//! own window says). An event whose camera has no frames in its window (past retention, or
//! a camera that was off) gets an index line with `frames` 0 and no file.
//!
//! With `--clips-topic` each clip's frames are also written, as they are, to a topic of
//! their own keyed by the event id (with its own end-of-stream record): give it a longer
//! retention than the frames topic, and clips outlive the frames. The event is committed
//! once those records are acknowledged too.
//!
//! Events are clipped one after the other; a recent event's clip is done `--post` seconds
//! after it plus the time to read the window.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gst::prelude::*;
use gst_kafka_vision_examples::clips::{self, IndexEntry};
use gst_kafka_vision_examples::{Args, KafkaClient};
use kafkavision::events::{self, Event};

const USAGE: &str = concat!(
    "\
clipper: a clip of the camera's frames around every event, from the frames topic

usage: clipper --dir DIR [options]
",
    gst_kafka_vision_examples::kafka_options_help!(),
    "
  --events-topic NAME      events topic (default events)
  --frames-topic NAME      frames topic the events' cameras publish to (default frames)
  --group NAME             consumer group of the events (default clipper)
  --dir DIR                folder of the clips and their index.jsonl (created if missing)
  --pre SECONDS            video before each event (default 10)
  --post SECONDS           video after each event (default 10)
  --clips-topic NAME       also write each clip's frames, as they are, to this topic keyed
                           by the event id (give it a long retention: clips then outlive
                           the frames topic's; read one back with kafkasrc key=EVENT_ID)
  --camera-window CAM=PRE:POST,...
                           pre and post seconds for some cameras, e.g. gate=30:5
  --connect-timeout MS     how long to wait for the brokers (default 10000)
  --stop-on-eos            stop once every events stream has ended"
);

/// Seconds before and after an event.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Window {
    pre_ms: i64,
    post_ms: i64,
}

/// `--pre`, `--post` and `--camera-window`.
struct Windows {
    default: Window,
    by_camera: HashMap<String, Window>,
}

impl Windows {
    fn parse(pre: f64, post: f64, per_camera: &str) -> Result<Windows, String> {
        let seconds = |what: &str, value: f64| {
            if value.is_finite() && value >= 0.0 {
                Ok((value * 1000.0).round() as i64)
            } else {
                Err(format!("{what} {value}: expected seconds, 0 or more"))
            }
        };
        let default = Window {
            pre_ms: seconds("--pre", pre)?,
            post_ms: seconds("--post", post)?,
        };
        let mut by_camera = HashMap::new();
        for entry in per_camera.split(',').filter(|e| !e.trim().is_empty()) {
            let wrong =
                || format!("--camera-window {entry}: expected CAMERA=PRE:POST, e.g. gate=30:5");
            let (camera, times) = entry.trim().split_once('=').ok_or_else(wrong)?;
            let (pre, post) = times.split_once(':').ok_or_else(wrong)?;
            let number = |text: &str| text.trim().parse::<f64>().map_err(|_| wrong());
            by_camera.insert(
                camera.to_string(),
                Window {
                    pre_ms: seconds("--camera-window pre", number(pre)?)?,
                    post_ms: seconds("--camera-window post", number(post)?)?,
                },
            );
        }
        Ok(Windows { default, by_camera })
    }

    fn of(&self, camera: &str) -> Window {
        self.by_camera.get(camera).copied().unwrap_or(self.default)
    }
}

/// The clips folder: the index and the events already clipped.
struct Clips {
    dir: PathBuf,
    index: File,
    done: HashSet<String>,
}

impl Clips {
    fn open(dir: &Path) -> Result<Clips, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("--dir {}: {e}", dir.display()))?;
        let path = dir.join(clips::INDEX);
        let done = clips::read_index(dir)
            .map_err(|e| format!("reading {}: {e}", path.display()))?
            .into_iter()
            .map(|entry| entry.event_id)
            .collect();
        let index = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("opening {}: {e}", path.display()))?;
        Ok(Clips {
            dir: dir.to_path_buf(),
            index,
            done,
        })
    }

    /// Appends the entry and makes it durable: the event is committed after this.
    fn record(&mut self, entry: &IndexEntry) -> Result<(), String> {
        let mut line = serde_json::to_string(entry).map_err(|e| e.to_string())?;
        line.push('\n');
        self.index
            .write_all(line.as_bytes())
            .and_then(|_| self.index.sync_data())
            .map_err(|e| format!("writing index.jsonl: {e}"))?;
        self.done.insert(entry.event_id.clone());
        Ok(())
    }
}

/// The event's id, which names its file: ids are 16 hex digits; events written before
/// ids existed get one from their camera, source record and place.
fn clip_id(event: &Event, camera: &str) -> Result<String, String> {
    match &event.event_id {
        Some(id) if clips::file_name(id).is_some() => Ok(id.to_ascii_lowercase()),
        Some(id) => Err(format!("event_id {id:?} is not 16 hex digits")),
        None => {
            let (origin, seq) = event
                .source
                .as_ref()
                .map_or(("", 0), |s| (s.stream.as_str(), s.seq));
            Ok(events::event_id(
                camera,
                origin,
                seq,
                event.kind,
                event.place(),
                event.direction,
                event.track_id,
            ))
        }
    }
}

/// What a clip's read saw: frames and the capture times of the first and last.
#[derive(Default)]
struct Seen {
    frames: u64,
    first_ms: Option<i64>,
    last_ms: Option<i64>,
}

/// The elements after `kafkasrc` for the camera's caps: H.264 parsed into the MP4 as it
/// is, anything else decoded if need be and encoded.
fn tail_for(caps: &gst::CapsRef) -> Result<Vec<gst::Element>, String> {
    let name = caps.structure(0).map_or("", |s| s.name().as_str());
    let make = |factory: &str| {
        gst::ElementFactory::make(factory)
            .build()
            .map_err(|e| format!("creating {factory}: {e}"))
    };
    let mut elements = match name {
        "video/x-h264" => vec![make("h264parse")?],
        "image/jpeg" | "video/x-raw" => {
            let mut chain = Vec::new();
            if name == "image/jpeg" {
                chain.push(make("jpegdec")?);
            }
            chain.push(make("videoconvert")?);
            let encoder = gst::ElementFactory::make("x264enc")
                .property_from_str("speed-preset", "veryfast")
                .property_from_str("tune", "zerolatency")
                .build()
                .map_err(|e| format!("creating x264enc: {e}"))?;
            chain.push(encoder);
            chain.push(make("h264parse")?);
            chain
        }
        other => return Err(format!("frames of caps {other} cannot go into an MP4 clip")),
    };
    elements.push(make("mp4mux")?);
    Ok(elements)
}

/// Reads `camera`'s frames from `from_ms` to `to_ms` into `path` (an MP4); what it saw.
/// Reads `camera`'s frames from `from_ms` to `to_ms` into `path` (an MP4) and, with
/// `--clips-topic`, as records keyed by `id` into that topic; what it saw.
fn cut_clip(
    settings: &Settings,
    camera: &str,
    id: &str,
    (from_ms, to_ms): (i64, i64),
    path: &Path,
) -> Result<Seen, String> {
    let client = &settings.client;
    let source = gst::ElementFactory::make("kafkasrc")
        .property("topic", &settings.frames_topic)
        .property("key", camera)
        .property("start-from", from_ms.to_string())
        .property_from_str("start-keyframe", "previous")
        .property("stop-at", to_ms.to_string())
        .property("connect-timeout", settings.connect_timeout_ms)
        .build()
        .map_err(|e| format!("creating kafkasrc: {e}"))?;
    client.configure(&source);
    let sink = gst::ElementFactory::make("filesink")
        .property("location", path)
        .property("sync", false)
        .build()
        .map_err(|e| format!("creating filesink: {e}"))?;
    let pipeline = gst::Pipeline::new();
    pipeline
        .add_many([&source, &sink])
        .map_err(|e| e.to_string())?;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let failure: Arc<Mutex<Option<String>>> = Arc::default();
    let src_pad = source.static_pad("src").ok_or("kafkasrc has no src pad")?;
    // With a clips topic the frames go there too, as they are; the MP4's branch is built
    // on a tee pad of its own once the caps are known.
    let branch_pad = match &settings.clips_topic {
        None => src_pad.clone(),
        Some(topic) => {
            let make = |factory: &str| {
                gst::ElementFactory::make(factory)
                    .build()
                    .map_err(|e| format!("creating {factory}: {e}"))
            };
            let (tee, queue) = (make("tee")?, make("queue")?);
            let kafkasink = gst::ElementFactory::make("kafkasink")
                .property("topic", topic)
                .property("key", id)
                .property("connect-timeout", settings.connect_timeout_ms)
                .build()
                .map_err(|e| format!("creating kafkasink: {e}"))?;
            client.configure(&kafkasink);
            pipeline
                .add_many([&tee, &queue, &kafkasink])
                .map_err(|e| e.to_string())?;
            gst::Element::link_many([&source, &tee, &queue, &kafkasink])
                .map_err(|e| e.to_string())?;
            tee.request_pad_simple("src_%u")
                .ok_or("tee gave no pad for the MP4")?
        }
    };
    {
        // The rest of the pipeline is built when the camera's caps are known.
        let (pipeline, sink, failure) = (pipeline.downgrade(), sink.clone(), failure.clone());
        branch_pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |pad, info| {
            let Some(gst::PadProbeData::Event(event)) = &info.data else {
                return gst::PadProbeReturn::Ok;
            };
            let gst::EventView::Caps(caps) = event.view() else {
                return gst::PadProbeReturn::Ok;
            };
            if pad.is_linked() {
                return gst::PadProbeReturn::Ok;
            }
            let Some(pipeline) = pipeline.upgrade() else {
                return gst::PadProbeReturn::Drop;
            };
            let built = tail_for(caps.caps()).and_then(|tail| {
                pipeline.add_many(&tail).map_err(|e| e.to_string())?;
                let mut chain: Vec<&gst::Element> = tail.iter().collect();
                chain.push(&sink);
                gst::Element::link_many(chain).map_err(|e| e.to_string())?;
                for element in &tail {
                    element
                        .sync_state_with_parent()
                        .map_err(|e| e.to_string())?;
                }
                pad.link(&tail[0].static_pad("sink").unwrap())
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
            if let Err(why) = built {
                *failure.lock().unwrap() = Some(why);
                return gst::PadProbeReturn::Drop;
            }
            gst::PadProbeReturn::Ok
        });
    }
    {
        let seen = seen.clone();
        src_pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(gst::PadProbeData::Buffer(buffer)) = &info.data {
                let capture_ms =
                    kafkavision::meta::capture_time(buffer).map(|ns| (ns / 1_000_000) as i64);
                let mut seen = seen.lock().unwrap();
                seen.frames += 1;
                seen.first_ms = seen.first_ms.or(capture_ms);
                seen.last_ms = capture_ms.or(seen.last_ms);
            }
            gst::PadProbeReturn::Ok
        });
    }

    let bus = pipeline.bus().ok_or("the pipeline has no bus")?;
    let ended = pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| "could not start the clip's pipeline".to_string())
        .and_then(|_| {
            // The read ends by itself: at the first frame past the window, or 5 s after
            // the window with no frame (see kafkasrc's stop-at). The bound here is for a
            // broker that stops answering.
            let limit = (to_ms - kafkavision::clock::unix_time_ns() as i64 / 1_000_000).max(0)
                as u64
                + 300_000;
            match bus.timed_pop_filtered(
                gst::ClockTime::from_mseconds(limit),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            ) {
                None => Err("the clip's read did not end (broker unreachable?)".to_string()),
                Some(message) => match message.view() {
                    gst::MessageView::Error(err) => {
                        Err(KafkaClient::in_option_terms(&err.error().to_string()))
                    }
                    _ => Ok(()),
                },
            }
        });
    let _ = pipeline.set_state(gst::State::Null);
    if let Some(why) = failure.lock().unwrap().take() {
        return Err(why);
    }
    ended?;
    Ok(std::mem::take(&mut *seen.lock().unwrap()))
}

/// Writes the clip of one event and its index line. `Err` leaves the event unclipped,
/// uncommitted and the clipper stopped: it is clipped when the clipper comes back.
fn clip_event(
    settings: &Settings,
    clips: &mut Clips,
    event: &Event,
    counters: &Counters,
) -> Result<(), String> {
    let Some(camera) = event.camera.clone().filter(|c| !c.is_empty()) else {
        eprintln!("clipper: skipping an event without a camera");
        counters.skipped.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    };
    let id = match clip_id(event, &camera) {
        Ok(id) => id,
        Err(why) => {
            eprintln!("clipper: skipping an event of camera {camera:?}: {why}");
            counters.skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
    };
    if clips.done.contains(&id) {
        counters.already_clipped.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    let Some(event_ms) = event.capture_time_ns.map(|ns| (ns / 1_000_000) as i64) else {
        eprintln!("clipper: skipping event {id}: it has no capture_time_ns");
        counters.skipped.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    };
    let window = settings.windows.of(&camera);
    let (from_ms, to_ms) = (event_ms - window.pre_ms, event_ms + window.post_ms);
    let file = clips::file_name(&id).ok_or("an event id that names no file")?;
    let part = clips.dir.join(format!("{file}.part"));
    let seen = cut_clip(settings, &camera, &id, (from_ms, to_ms), &part)
        .map_err(|why| format!("clip of event {id} (camera {camera}): {why}"))?;
    let (file, bytes) = if seen.frames == 0 {
        let _ = std::fs::remove_file(&part);
        eprintln!(
            "clipper: camera {camera} has no frames from {from_ms} to {to_ms} (Unix ms) in \
             '{}': event {id} gets no clip (past the topic's retention?)",
            settings.frames_topic
        );
        (None, 0)
    } else {
        let path = clips.dir.join(&file);
        File::open(&part)
            .and_then(|f| f.sync_all())
            .and_then(|_| std::fs::rename(&part, &path))
            .map_err(|e| format!("finishing {}: {e}", path.display()))?;
        let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
        (Some(file), bytes)
    };
    clips.record(&IndexEntry {
        camera,
        event_id: id,
        kind: event.kind.as_str().to_string(),
        place: event.place().to_string(),
        event_ms,
        from_ms,
        to_ms,
        start_ms: seen.first_ms,
        end_ms: seen.last_ms,
        frames: seen.frames,
        file,
        bytes,
    })?;
    counters.clipped.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

struct Settings {
    client: KafkaClient,
    frames_topic: String,
    /// `--clips-topic`: each clip's frames also go there, keyed by the event id.
    clips_topic: Option<String>,
    windows: Windows,
    connect_timeout_ms: u32,
}

#[derive(Default)]
struct Counters {
    clipped: AtomicU64,
    already_clipped: AtomicU64,
    skipped: AtomicU64,
}

fn run(args: &Args) -> Result<(), String> {
    let dir = args.get("dir", "");
    if dir.is_empty() {
        return Err("--dir is required: the folder clips are written to".into());
    }
    let settings = Settings {
        client: KafkaClient::from_args(args)?,
        frames_topic: args.get("frames-topic", "frames"),
        clips_topic: Some(args.get("clips-topic", "")).filter(|t| !t.is_empty()),
        windows: Windows::parse(
            args.number("pre", 10.0),
            args.number("post", 10.0),
            &args.get("camera-window", ""),
        )?,
        connect_timeout_ms: args
            .number("connect-timeout", 10_000u64)
            .clamp(1, u32::MAX as u64) as u32,
    };
    let events_topic = args.get("events-topic", "events");
    let group = args.get("group", "clipper");
    let mut clips = Clips::open(Path::new(&dir))?;
    let stop = gst_kafka_vision_examples::stop_on_signal()?;
    gst_kafka_vision_examples::init()?;

    let source = gst::ElementFactory::make("kafkasrc")
        .property("topic", &events_topic)
        .property("group-id", &group)
        .property("stop-on-eos", args.flag("stop-on-eos"))
        .property("connect-timeout", settings.connect_timeout_ms)
        .property("caps", gst::Caps::new_empty_simple(events::CAPS))
        .build()
        .map_err(|e| format!("creating kafkasrc: {e}"))?;
    settings.client.configure(&source);
    // One event at a time: an event's record is committed once its buffer is let go,
    // after its clip is on disk.
    let (pipeline, sink) = gst_kafka_vision_examples::into_sample_queue(&source, 1)?;
    let bus = pipeline.bus().ok_or("the pipeline has no bus")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| format!("could not start reading '{events_topic}'"))?;
    eprintln!(
        "clipper: clips of '{events_topic}' events from '{}' into {dir}",
        settings.frames_topic
    );

    let counters = Counters::default();
    let result = loop {
        if stop.load(Ordering::SeqCst) {
            break Ok(());
        }
        if let Some(message) = bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Eos]) {
            match message.view() {
                gst::MessageView::Error(err) => {
                    break Err(KafkaClient::in_option_terms(&err.error().to_string()));
                }
                _ => break Ok(()),
            }
        }
        let Some(sample) = sink.try_pull_sample(std::time::Duration::from_millis(200)) else {
            if sink.is_eos() {
                break Ok(());
            }
            continue;
        };
        let Some(buffer) = sample.buffer() else {
            continue;
        };
        let event = {
            let map = buffer.map_readable().map_err(|e| e.to_string())?;
            Event::from_json(map.as_slice())
        };
        match event {
            Ok(event) => {
                if let Err(why) = clip_event(&settings, &mut clips, &event, &counters) {
                    // Not committed: the event is clipped when the clipper runs again.
                    break Err(why);
                }
            }
            Err(why) => {
                eprintln!("clipper: skipping a record that is not an event: {why}");
                counters.skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(sample);
    };
    let _ = pipeline.set_state(gst::State::Null);
    eprintln!(
        "clipper: {} clip(s) written, {} event(s) already clipped, {} skipped",
        counters.clipped.load(Ordering::Relaxed),
        counters.already_clipped.load(Ordering::Relaxed),
        counters.skipped.load(Ordering::Relaxed)
    );
    result
}

fn main() {
    let args = Args::parse(USAGE);
    if let Err(err) = run(&args) {
        eprintln!("clipper: {err}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_per_camera_with_a_default() {
        let windows = Windows::parse(10.0, 5.5, "gate=120:2, dock=0:30").unwrap();
        assert_eq!(
            windows.of("cam1"),
            Window {
                pre_ms: 10_000,
                post_ms: 5_500
            }
        );
        assert_eq!(windows.of("gate").pre_ms, 120_000);
        assert_eq!(windows.of("dock").post_ms, 30_000);
        for bad in ["gate", "gate=1", "gate=a:b", "gate=-1:2"] {
            let why = Windows::parse(10.0, 10.0, bad).err().unwrap();
            assert!(why.starts_with("--camera-window"), "{bad}: {why}");
        }
        assert!(Windows::parse(-1.0, 10.0, "").is_err());
    }

    #[test]
    fn event_ids_name_files_only_when_they_are_hex() {
        let mut event = Event::new(events::EventKind::LineCrossed, 7, "car");
        event.event_id = Some("5A0E7CF2B1D49E38".into());
        assert_eq!(clip_id(&event, "cam1").unwrap(), "5a0e7cf2b1d49e38");
        event.event_id = Some("../../etc/passwd".into());
        assert!(clip_id(&event, "cam1").is_err());
        event.event_id = None;
        let derived = clip_id(&event, "cam1").unwrap();
        assert_eq!(derived.len(), 16);
        assert_eq!(clip_id(&event, "cam1").unwrap(), derived);
    }
}
