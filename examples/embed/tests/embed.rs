// SPDX-License-Identifier: MIT OR Apache-2.0
//! The embedding examples, one per language, each print the detections of our blob model on
//! `videotestsrc pattern=ball` frames sent through Kafka: Rust with the plugins linked in
//! and no plugin path, Python through PyGObject, C built with `pkg-config` against the
//! plugins `meson install` put in place.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use testkit::*;

const FRAMES: usize = 8;

/// A topic holding `FRAMES` JPEG frames of a moving ball (which the blob model finds) and
/// the stream's end-of-stream record.
fn topic_with_ball_frames(name: &str) -> String {
    init(&[gstkafka::plugin_register_static]);
    let topic = new_topic(name, 1);
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

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr)
}

/// The Python and C examples print the same lines: one per frame with the detections of
/// yolodetect's bus message, then each element's `stats`.
fn check_messages_and_stats(output: &Output) {
    let all = text(output);
    assert!(output.status.success(), "{all}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let frames: Vec<&str> = stdout.lines().filter(|l| l.starts_with("frame ")).collect();
    assert_eq!(frames.len(), FRAMES, "{all}");
    for line in &frames {
        assert!(line.contains(": sports ball 0."), "{line}");
    }
    assert!(
        stdout.contains(&format!("buffers-pushed=(guint64){FRAMES},")),
        "kafkasrc stats: {all}"
    );
    assert!(
        stdout.contains(&format!("inferred=(guint64){FRAMES},")),
        "yolodetect stats: {all}"
    );
}

/// The first file named `name` under `dir`.
fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()? {
        let path = entry.ok()?.path();
        if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
        if path.is_dir()
            && let Some(found) = find(&path, name)
        {
            return Some(found);
        }
    }
    None
}

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{command:?}: {}", text(&output));
    output
}

#[test]
fn the_python_app_prints_detections_and_stats() {
    let topic = topic_with_ball_frames("embed-python");
    // Debian's python3, where python3-gi and python3-gst-1.0 live (not the project venv).
    let output = command("python3")
        .arg(repo().join("examples/python/detect.py"))
        .args(["--brokers", &brokers(), "--topic", &topic])
        .arg("--model")
        .arg(repo().join("models/blob-yolov8.onnx"))
        .env("GST_PLUGIN_PATH", repo().join("target/release"))
        .output()
        .unwrap();
    check_messages_and_stats(&output);
}

#[test]
fn the_c_app_builds_with_pkg_config_and_runs_on_the_meson_installed_plugins() {
    let topic = topic_with_ball_frames("embed-c");
    // Under the target folder: what the test builds is this workspace's to run.
    let work =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("embed-c-{}", std::process::id()));
    let (build, prefix) = (work.join("build"), work.join("prefix"));
    run(command("meson")
        .arg("setup")
        .arg(&build)
        .arg(format!("--prefix={}", prefix.display()))
        .current_dir(repo()));
    run(command("meson").arg("compile").arg("-C").arg(&build));
    run(command("meson").arg("install").arg("-C").arg(&build));
    let plugins = find(&prefix, "libgstyolo.so")
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .expect("meson installed libgstyolo.so");

    let flags = run(command("pkg-config").args(["--cflags", "--libs", "gstreamer-1.0"]));
    let program = work.join("detect");
    run(command("cc")
        .arg(repo().join("examples/c/detect.c"))
        .args(String::from_utf8_lossy(&flags.stdout).split_whitespace())
        .arg("-o")
        .arg(&program));
    let output = command(&program)
        .args([brokers().as_str(), topic.as_str()])
        .arg(repo().join("models/blob-yolov8.onnx"))
        // A prefix other than /usr or /usr/local: its plugin dir is found through the path.
        .env("GST_PLUGIN_PATH", &plugins)
        .env("GST_REGISTRY", work.join("registry.bin"))
        .output()
        .unwrap();
    std::fs::remove_dir_all(&work).unwrap();
    check_messages_and_stats(&output);
}

#[test]
fn the_rust_app_prints_detections_of_frames_sent_through_kafka() {
    let topic = topic_with_ball_frames("embed-rust");
    let registry = std::env::temp_dir().join(format!("embed-rust-{}.bin", std::process::id()));
    let output = command(env!("CARGO_BIN_EXE_embed-detect"))
        .args(["--brokers", &brokers(), "--topic", &topic])
        .arg("--model")
        .arg(repo().join("models/blob-yolov8.onnx"))
        // Statically linked: our plugins come from nowhere else (no plugin path, and a
        // registry that never saw target/release).
        .env_remove("GST_PLUGIN_PATH")
        .env("GST_REGISTRY", &registry)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&registry);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let frames: Vec<&str> = stdout.lines().filter(|l| l.starts_with("frame ")).collect();
    assert_eq!(frames.len(), FRAMES, "{stdout}\n{stderr}");
    for (offset, line) in frames.iter().enumerate() {
        assert!(
            line.starts_with(&format!("frame cam1 {topic}/0@{offset}: sports ball 0.")),
            "{line}"
        );
    }
}
