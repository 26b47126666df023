// SPDX-License-Identifier: MIT OR Apache-2.0
//! For tests that start a broker of their own (TLS, logins, other hosts, faults): the
//! nisshi binary, nisshi started with or without TLS and logins, its admin commands,
//! throwaway TLS certificates, a scratch folder for all of it; a broker of the kind the
//! scripts install that a test may kill and start again; and a restart of the shared
//! test broker.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::{Running, create_topic_on, unique_name};

/// The nisshi binary for a test that starts nisshi itself, or why the test cannot run:
/// the suite runs on the fallback broker (no nisshi here), or nisshi is not installed.
pub fn nisshi_for_test() -> Result<PathBuf, String> {
    if let Ok(name) = std::env::var("KV_BROKER_NAME")
        && name != "nisshi"
    {
        return Err(format!(
            "the test broker is {name}, this test starts nisshi itself"
        ));
    }
    crate::find_program("nisshi")
        .ok_or_else(|| "no nisshi binary (scripts/setup broker)".to_string())
}

/// A folder of a test's own under the system's temporary folder, removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(prefix: &str) -> Scratch {
        let dir = std::env::temp_dir().join(unique_name(prefix));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// What a broker a test starts asks of its clients.
#[derive(Clone, Copy, Debug, Default)]
pub struct Security {
    /// Only TLS, with the `server.pem`/`server.key` that [`make_certificates`] writes.
    pub tls: bool,
    /// SCRAM logins of users made with `nisshi user create` (see [`nisshi_admin`]).
    pub logins: bool,
}

/// nisshi on 127.0.0.1:`port` with sqlite storage in `dir` (users and topics stay across
/// restarts on the same folder), answering once this returns; killed when dropped.
pub fn start_nisshi(nisshi: &Path, dir: &Path, port: u16, security: Security) -> Running {
    let listener = format!("tcp://127.0.0.1:{port}");
    // sqlite://PATH is relative to the working directory; an absolute path takes a fourth /.
    let storage = format!("sqlite:///{}", dir.join("broker.db").display());
    let (cert, key) = (
        dir.join("server.pem").display().to_string(),
        dir.join("server.key").display().to_string(),
    );
    let mut args = vec![
        "broker",
        "--cluster-id",
        "gkv-own-broker",
        "--listener-url",
        &listener,
        "--advertised-listener-url",
        &listener,
        "--storage-engine",
        &storage,
    ];
    if security.tls {
        args.extend(["--cert", &cert, "--key", &key]);
    }
    if security.logins {
        args.push("--authentication");
    }
    let broker = Running::start_with_env(nisshi.to_str().unwrap(), &args, &[("NO_COLOR", "1")])
        .named("nisshi");
    wait_for_port(port);
    broker
}

/// Runs a nisshi admin command (`user create ...`, `topic create ...`); they do not log
/// in, so run them against the broker before it asks for logins.
pub fn nisshi_admin(nisshi: &Path, args: &[&str]) {
    let output = crate::command(nisshi).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "nisshi {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Waits until something listens on 127.0.0.1:`port` (30 s at most).
pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = crate::command("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("running openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Writes to `dir` a CA (`ca.pem`), a server certificate for 127.0.0.1 it signed
/// (`server.pem`, `server.key`), and an unrelated CA (`other-ca.pem`).
pub fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for (name, subject) in [("ca", "/CN=gkv test CA"), ("other-ca", "/CN=gkv other CA")] {
        let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
        let mut args = vec!["req", "-x509", "-days", "2", "-subj", subject];
        args.extend(ec);
        args.extend(["-keyout", key.as_str(), "-out", pem.as_str()]);
        openssl(dir, &args);
    }
    let mut args = vec![
        "req",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ];
    args.extend(ec);
    openssl(dir, &args);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
}

/// scripts/broker, or the script `scripts/test` names (KV_BROKER_SCRIPT).
fn broker_script() -> String {
    std::env::var("KV_BROKER_SCRIPT")
        .unwrap_or_else(|_| crate::repo().join("scripts/broker").display().to_string())
}

/// Restarts the broker `scripts/test` started, on the same port and with its data.
pub fn restart_test_broker() {
    let dir = std::env::var("KV_BROKER_DIR")
        .expect("KV_BROKER_DIR is not set: run the tests through scripts/test");
    let status = crate::command(broker_script())
        .arg("restart")
        .env("BROKER_DIR", dir)
        .status()
        .expect("running scripts/broker restart");
    assert!(status.success(), "scripts/broker restart failed");
}

/// A broker of the test's own, of the kind the scripts install (nisshi, or the tansu
/// fallback), in a temporary folder, that the test may kill and start again; stopped and
/// removed on drop, with the tail of its log printed when the test failed.
pub struct PrivateBroker {
    dir: PathBuf,
    /// HOST:PORT for its clients.
    pub address: String,
}

impl PrivateBroker {
    /// Starts it with sqlite storage (records and committed offsets survive its restarts),
    /// or `KV_FAULTS_BROKER_STORAGE` (e.g. `postgres`); `advertise` is the address clients
    /// are told to use (a proxy in front of it).
    pub fn start(advertise: Option<&str>) -> PrivateBroker {
        let dir = std::env::temp_dir().join(unique_name("kv-private-broker"));
        std::fs::create_dir_all(&dir).unwrap();
        // Built before starting, so that Drop cleans up whatever happens next.
        let mut broker = PrivateBroker {
            dir,
            address: String::new(),
        };
        let storage = std::env::var("KV_FAULTS_BROKER_STORAGE").unwrap_or_else(|_| "sqlite".into());
        let mut args = vec!["start".to_string(), format!("--storage={storage}")];
        if let Some(address) = advertise {
            args.push(format!("--advertise={address}"));
        }
        broker.address = broker.script(&args);
        broker
    }

    /// Runs scripts/broker on this broker's folder; returns its standard output.
    fn script(&self, args: &[String]) -> String {
        let script = broker_script();
        let output = crate::command(&script)
            .args(args)
            .env("BROKER_DIR", &self.dir)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("running {script}: {e}"));
        assert!(
            output.status.success(),
            "scripts/broker {args:?} failed ({})",
            output.status
        );
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    /// Kills it (SIGKILL): a crash or a power cut, the broker gone at once. (tansu 0.6.0
    /// stopped with SIGTERM keeps answering for seconds, failing every Produce with
    /// UNKNOWN_SERVER_ERROR, which no client retries.)
    pub fn kill(&self) {
        self.script(&["stop".into(), "--kill".into()]);
    }

    /// Starts it again after `kill`, on the same port and with the same data.
    pub fn start_again(&self) {
        let address = self.script(&["start".into()]);
        assert_eq!(
            address, self.address,
            "the broker came back on another port (its old one was taken)"
        );
    }

    /// A fresh topic on this broker.
    pub fn create_topic(&self, prefix: &str, partitions: i32) -> String {
        let topic = unique_name(prefix);
        create_topic_on(&self.address, &topic, partitions);
        topic
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("--- last lines of the private broker's log (newest first):");
            for line in tail {
                eprintln!("{line}");
            }
        }
        let _ = std::panic::catch_unwind(|| self.kill());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
