// SPDX-License-Identifier: MIT OR Apache-2.0
//! Every program the tests start, and what installs it. Tests start programs only through
//! [`command`] (and [`crate::Running`], which uses it): a program missing from [`PROGRAMS`]
//! fails the test at once, and the guard test (`tests/setup_guard.rs`) checks the table
//! against the setup and the sources against the rule, so no test leans on something a
//! fresh machine lacks. A test that needs what the setup cannot always give (the nisshi
//! broker on the fallback, root for network namespaces) says "not run" and why.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What puts a program on the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// This Debian package, in the setup's list (`KV_DEBS` in `scripts/lib.sh`).
    Debian(&'static str),
    /// The setup's Python venv (`KV_PYTHON`, set by `scripts/test`).
    Venv,
    /// The broker the setup builds. Tests that start it ask [`crate::nisshi_for_test`]
    /// first, which says why not on the fallback broker.
    Broker,
    /// The machine before any setup: the Debian base of the Rust toolchain image, and its
    /// gcc.
    Machine,
}

/// The programs tests start, by the name they are started with.
pub const PROGRAMS: &[(&str, Source)] = &[
    ("bash", Source::Machine),
    ("cc", Source::Machine),
    // The setup guard asks dpkg what each package ships.
    ("dpkg-query", Source::Machine),
    ("env", Source::Machine),
    ("chromium", Source::Debian("chromium")),
    (
        "gst-discoverer-1.0",
        Source::Debian("gstreamer1.0-plugins-base-apps"),
    ),
    ("gst-inspect-1.0", Source::Debian("gstreamer1.0-tools")),
    ("gst-launch-1.0", Source::Debian("gstreamer1.0-tools")),
    ("ip", Source::Debian("iproute2")),
    ("kill", Source::Debian("procps")),
    ("meson", Source::Debian("meson")),
    ("nisshi", Source::Broker),
    ("openssl", Source::Debian("openssl")),
    ("pkg-config", Source::Debian("pkg-config")),
    ("pkill", Source::Debian("procps")),
    ("python", Source::Venv),
    // Debian's own Python, the one with PyGObject (python3-gi).
    ("python3", Source::Debian("python3")),
    // deploy/verify.sh runs it.
    ("systemd-analyze", Source::Debian("systemd")),
];

/// Where Debian's packages and the machine image put programs: searched instead of PATH,
/// which may hold a developer's own (a pyenv shim for python3, say).
const SYSTEM_DIRS: [&str; 4] = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"];

/// The registered program `name`, or None when it is not installed. Panics for a name
/// [`PROGRAMS`] lacks: register it with what installs it.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let source = PROGRAMS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, source)| *source)
        .unwrap_or_else(|| {
            panic!(
                "tests start '{name}', which testkit's PROGRAMS does not list: add it there with \
                 what installs it, and make the setup install it"
            )
        });
    match source {
        Source::Debian(_) | Source::Machine => SYSTEM_DIRS
            .iter()
            .map(|dir| Path::new(dir).join(name))
            .find(|path| path.is_file()),
        Source::Venv => std::env::var_os("KV_PYTHON")
            .map(PathBuf::from)
            .filter(|path| path.is_file()),
        Source::Broker => {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .chain(
                    std::env::var_os("CARGO_HOME")
                        .map(PathBuf::from)
                        .or_else(|| {
                            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo"))
                        })
                        .map(|cargo| cargo.join("bin").join(name)),
                )
                .find(|path| path.is_file())
        }
    }
}

/// The registered program `name`; panics, naming what installs it, when it is missing.
pub fn program(name: &str) -> PathBuf {
    find_program(name).unwrap_or_else(|| {
        let (_, source) = PROGRAMS.iter().find(|(known, _)| *known == name).unwrap();
        panic!(
            "'{name}' is not installed; it comes from {source:?}: run the tests through \
             scripts/test, which installs it"
        )
    })
}

/// A command for a name from [`PROGRAMS`], or for a path: where [`find_program`] found
/// one, or in this workspace (a binary cargo built, e.g. `env!("CARGO_BIN_EXE_viewer")`,
/// one of the repository's scripts, the test binary itself). Anything else panics: tests
/// start nothing the setup does not install.
pub fn command(name_or_path: impl AsRef<OsStr>) -> Command {
    Command::new(program_path(name_or_path))
}

/// The path [`command`] starts, for a program another one starts (`ip netns exec`).
pub fn program_path(name_or_path: impl AsRef<OsStr>) -> PathBuf {
    let path = Path::new(name_or_path.as_ref());
    if path.components().count() > 1 {
        let absolute = std::fs::canonicalize(path)
            .unwrap_or_else(|e| panic!("starting {}: {e}", path.display()));
        let repo = std::fs::canonicalize(crate::repo()).unwrap();
        let target = std::env::current_exe().ok().and_then(|exe| {
            exe.ancestors()
                .find(|a| a.ends_with("target"))
                .map(Path::to_path_buf)
        });
        // Or where a registered program was found (nisshi_for_test hands out its path).
        let registered = path
            .file_name()
            .and_then(|name| name.to_str())
            .filter(|name| PROGRAMS.iter().any(|(known, _)| known == name))
            .and_then(find_program)
            .is_some_and(|found| found == path);
        let ours = registered
            || absolute.starts_with(&repo)
            || target.is_some_and(|target| absolute.starts_with(target));
        assert!(
            ours,
            "tests start programs by their PROGRAMS name, or from this workspace; not {}",
            path.display()
        );
        return path.to_path_buf();
    }
    program(&path.to_string_lossy())
}

/// Says that the running test (or a named part of it) does not run on this machine, and
/// why: printed, and added to the list `scripts/test` prints after the summary (the file
/// `KV_NOT_RUN_LOG` names), so that nothing is skipped silently.
pub fn not_run(why: &str) {
    println!("not run: {why}");
    let Some(log) = std::env::var_os("KV_NOT_RUN_LOG") else {
        return;
    };
    // libtest names each test's thread after the test.
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let line = format!("{test}: {}\n", why.replace('\n', " "));
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut file| std::io::Write::write_all(&mut file, line.as_bytes()));
    if let Err(e) = appended {
        eprintln!("could not add to {}: {e}", Path::new(&log).display());
    }
}
