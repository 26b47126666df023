// SPDX-License-Identifier: MIT OR Apache-2.0
//! Programs run as child processes: their stdout and stderr kept line by line (stderr
//! also echoed to the test's own, named), stopped cleanly, killed as in a crash, and never
//! left behind by a failing test.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::repo;

/// A running child; killed (and reaped) when dropped unless it has exited.
pub struct Running {
    pub child: Child,
    name: String,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    status: Option<ExitStatus>,
}

fn collect(pipe: impl Read + Send + 'static, echo: Option<String>) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let store = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if let Some(name) = &echo {
                eprintln!("[{name}] {line}");
            }
            store.lock().unwrap().push(line);
        }
    });
    lines
}

impl Running {
    /// Starts `program` (a path; e.g. `env!("CARGO_BIN_EXE_detector-worker")`) in the
    /// repository root.
    pub fn start(program: &str, args: &[&str]) -> Running {
        Self::start_with_env(program, args, &[])
    }

    /// Starts with extra environment variables.
    pub fn start_with_env(program: &str, args: &[&str], env: &[(&str, &str)]) -> Running {
        let name = std::path::Path::new(program)
            .file_name()
            .map_or_else(|| program.to_string(), |n| n.to_string_lossy().into_owned());
        let mut child = crate::command(program)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(repo())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        // A debug log can be large: echo stderr only when no log level was asked for.
        let echo = env
            .iter()
            .all(|(k, _)| *k != "GST_DEBUG")
            .then(|| name.clone());
        let stdout = collect(child.stdout.take().unwrap(), None);
        let stderr = collect(child.stderr.take().unwrap(), echo);
        Running {
            child,
            name,
            stdout,
            stderr,
            status: None,
        }
    }

    /// The name failures are reported under, e.g. one worker among several.
    pub fn named(mut self, name: &str) -> Running {
        self.name = name.to_string();
        self
    }

    /// Its stdout lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Its stderr so far, as one text.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// How many stderr lines so far contain `needle`.
    pub fn stderr_count(&self, needle: &str) -> usize {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until a stdout line contains `needle`; returns the lines up to it.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.lines();
            if let Some(at) = lines.iter().position(|l| l.contains(needle)) {
                return lines[..=at].to_vec();
            }
            assert!(
                Instant::now() < deadline,
                "{} did not print '{needle}' in {timeout:?}: {lines:?}\n{}",
                self.name,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `needle` occurs `count` times in stderr.
    pub fn wait_for_stderr(&mut self, needle: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.stderr_count(needle) < count {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "{} exited ({status}) before printing {needle:?} {count} time(s):\n{}",
                    self.name,
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not print {needle:?} {count} time(s) within {timeout:?}:\n{}",
                self.name,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The number in the last line reading "NAME: holds N partition(s)" (detector-worker).
    pub fn partitions_held(&self) -> u32 {
        self.last_number_after(": holds ")
    }

    /// The number in "NAME: done, N frames" (detector-worker, once it has exited).
    pub fn frames_done(&self) -> u32 {
        self.last_number_after(": done, ")
    }

    fn last_number_after(&self, marker: &str) -> u32 {
        self.lines()
            .iter()
            .rev()
            .find_map(|l| {
                let rest = &l[l.find(marker)? + marker.len()..];
                rest.split_whitespace().next()?.parse().ok()
            })
            .unwrap_or(0)
    }

    /// SIGTERM: the program stops cleanly (flushes, commits).
    pub fn terminate(&mut self) {
        signal(self.child.id(), nix::sys::signal::Signal::SIGTERM);
    }

    /// SIGKILL: no clean-up, no final commit, as in a crash or an OOM kill.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        self.status = self.child.wait().ok();
    }

    /// Waits for the exit; panics with its stderr after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.status = Some(status);
                // Let the reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}:\n{}",
                self.name,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// SIGINT to process `pid`, as Ctrl-C would send (`gst-launch-1.0 -e` then ends its
/// pipeline with an end-of-stream).
pub fn interrupt(pid: u32) {
    signal(pid, nix::sys::signal::Signal::SIGINT);
}

fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    // The process may have exited already; then there is nothing to stop.
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
