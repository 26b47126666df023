// SPDX-License-Identifier: MIT OR Apache-2.0
//! `scripts/demo` as a user runs it (on the test broker): both workers take a share of the
//! cameras, and a worker killed with SIGKILL is started again, the progress line says so,
//! and detections go on.

use std::process::Stdio;
use std::time::{Duration, Instant};

use testkit::{Running, brokers, command, repo, unique_name};

/// The numbers after "detected " in a progress line.
fn detected(line: &str) -> u64 {
    line.split("detected ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_demo_shares_cameras_between_workers_and_restarts_a_killed_one() {
    let out = std::env::temp_dir().join(unique_name("demo"));
    let demo = repo().join("scripts/demo");
    let b = brokers();
    let mut running = Running::start(
        demo.to_str().unwrap(),
        &[
            "--brokers",
            &b,
            "--no-build",
            "--port",
            "0",
            "--duration",
            "50",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    // Both workers detect frames: the cameras are spread over the partitions.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines = running.lines();
        if lines
            .iter()
            .any(|l| l.contains("workers: worker1 ") && l.contains(", worker2 "))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the workers never both detected frames: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // SIGKILL worker1, as the OOM killer would.
    let killed = command("pkill")
        .args(["-KILL", "-f", "detector-worker .*--name worker1 "])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(killed.success(), "no worker1 process to kill");
    let before = running
        .lines()
        .iter()
        .map(|l| detected(l))
        .max()
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let lines = running.lines();
        let restarted = lines.iter().any(|l| l.contains("restarted: worker1 (exit"));
        let after = lines.iter().map(|l| detected(l)).max().unwrap_or(0);
        if restarted && after > before + 50 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the kill: restart noted {restarted}, detected {before} -> {after}: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        running.wait(Duration::from_secs(90)).success(),
        "the demo failed"
    );
    std::fs::remove_dir_all(&out).ok();
}
