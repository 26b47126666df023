// SPDX-License-Identifier: MIT OR Apache-2.0
//! For tests that start a broker of their own (TLS, logins, other hosts): the nisshi
//! binary, nisshi started with or without TLS and logins, its admin commands, throwaway
//! TLS certificates, and a scratch folder for all of it.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::Running;

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
        let dir = std::env::temp_dir().join(crate::unique_name(prefix));
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
