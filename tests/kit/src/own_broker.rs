// SPDX-License-Identifier: MIT OR Apache-2.0
//! For tests that start a broker of their own (TLS, logins, other hosts): the nisshi
//! binary and throwaway TLS certificates.

use std::path::{Path, PathBuf};
use std::process::Command;

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
    nisshi_binary().ok_or_else(|| "no nisshi binary (scripts/setup broker)".to_string())
}

/// The nisshi binary on `PATH` or in Cargo's `bin` folder, if installed.
fn nisshi_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("nisshi"))
        .chain(
            std::env::var_os("CARGO_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
                .map(|c| c.join("bin/nisshi")),
        )
        .find(|p| p.is_file())
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
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
