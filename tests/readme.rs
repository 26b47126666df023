// SPDX-License-Identifier: MIT OR Apache-2.0
//! Runs the gst-launch examples of the README and of each plugin's README as written, with
//! the broker address and topic names swapped for the test's own, in the order of
//! `docs::READMES`.

mod docs;

use std::collections::HashMap;
use std::time::Duration;

use testkit::*;

const README_BROKER: &str = "127.0.0.1:9092";

/// The gst-launch command lines of a README's `sh` blocks, continuation lines joined.
fn readme_pipelines(readme: &str) -> Vec<String> {
    let mut pipelines = Vec::new();
    let mut in_sh = false;
    let mut current: Option<String> = None;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let text = line.trim();
        let (body, continues) = match text.strip_suffix('\\') {
            Some(body) => (body.trim(), true),
            None => (text, false),
        };
        match current.as_mut() {
            Some(pipeline) => {
                pipeline.push(' ');
                pipeline.push_str(body);
            }
            None if body.starts_with("gst-launch-1.0 ") => current = Some(body.to_string()),
            None => continue,
        }
        if !continues && let Some(done) = current.take() {
            pipelines.push(done);
        }
    }
    pipelines
}

#[test]
fn readme_examples_run_as_written() {
    docs::init();
    let mut pipelines = Vec::new();
    for path in docs::READMES {
        let found = readme_pipelines(&docs::read(path));
        // Every element's docs carry a gst-launch example.
        assert!(!found.is_empty(), "{path} has no gst-launch example");
        pipelines.extend(found);
    }
    assert!(pipelines.len() >= 5, "found {pipelines:?}");
    let dir = std::env::temp_dir().join(unique_name("readme"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut topics: HashMap<String, String> = HashMap::new();
    // Clip examples name times of the README's writing: their window becomes this run's.
    let began_ms = unix_now_ms();
    let mut ran = 0;
    for original in &pipelines {
        // Runs until stopped and needs a display: documented as such.
        if original.contains("autovideosink") {
            continue;
        }
        // gst-launch's own flags (-m, -e, -v) are not part of the pipeline.
        let mut words = original
            .trim_start_matches("gst-launch-1.0 ")
            .split(' ')
            .peekable();
        while words.next_if(|w| w.starts_with('-')).is_some() {}
        let mut description = words
            .collect::<Vec<_>>()
            .join(" ")
            .replace(README_BROKER, &brokers())
            .replace(
                "location=frame-",
                &format!("location={}/frame-", dir.display()),
            )
            .replace(
                "location=clip-",
                &format!("location={}/clip-", dir.display()),
            );
        let words: Vec<String> = description.split_whitespace().map(String::from).collect();
        for word in words {
            if word.starts_with("start-from=20") {
                description = description.replace(&word, &format!("start-from={began_ms}"));
            }
            if word.starts_with("stop-at=") {
                let now_ms = unix_now_ms();
                description = description.replace(&word, &format!("stop-at={now_ms}"));
            }
            if let Some(name) = word.strip_prefix("topic=") {
                let topic = topics
                    .entry(name.to_string())
                    .or_insert_with(|| {
                        let topic = new_topic(name, 1);
                        if name == "from-other-clients" {
                            let jpeg = std::fs::read(dir.join("frame-00000.jpg"))
                                .expect("the archive example ran first");
                            let records: Vec<_> = (0..10).map(|_| (jpeg.clone(), vec![])).collect();
                            produce_raw(&topic, None, &records);
                        }
                        topic
                    })
                    .clone();
                description = description.replace(&word, &format!("topic={topic}"));
            }
        }
        run_to_eos(&description, Duration::from_secs(120));
        ran += 1;
    }
    assert_eq!(ran, pipelines.len() - 1);
    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let frames = files
        .iter()
        .filter(|name| name.starts_with("frame-"))
        .count();
    assert_eq!(
        frames, 300,
        "the archive example saved every published frame"
    );
    // The clip holds the h264 example's 300 frames: every one was captured in its window.
    let clip = dir.join("clip-cam1.mp4");
    assert_eq!(mp4_video_frames(&clip), Some(300), "{}", clip.display());
    std::fs::remove_dir_all(dir).ok();
}

fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
