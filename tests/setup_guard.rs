// SPDX-License-Identifier: MIT OR Apache-2.0
//! No test leans on what the setup does not install. Tests start programs only through
//! the test kit (`testkit::command`, `Running`), which knows what installs each one
//! (`testkit::PROGRAMS`) and refuses any other; this checks that rule in every test
//! source, and checks each program's source against the setup (`scripts/lib.sh`): its
//! Debian package is in the setup's list and really ships the program, the venv and the
//! broker are what the setup makes.

use std::path::{Path, PathBuf};

use testkit::{PROGRAMS, Source, find_program, repo};

/// Every Rust file of the tests and of the kit they share.
fn test_sources() -> Vec<PathBuf> {
    let mut dirs = vec![repo().join("tests"), repo().join("examples/tests")];
    dirs.push(repo().join("examples/embed/tests"));
    for plugin in std::fs::read_dir(repo().join("plugins")).unwrap() {
        dirs.push(plugin.unwrap().path().join("tests"));
    }
    let mut files = Vec::new();
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 20, "found only {files:?}");
    files
}

/// The string literals passed as first argument to the calls named in `calls`.
fn literal_arguments<'a>(text: &'a str, calls: &[&str]) -> Vec<&'a str> {
    let mut found = Vec::new();
    for call in calls {
        for (at, _) in text.match_indices(call) {
            // Only whole names (program( is not find_program(), and not a name written as
            // a string, as in this file.
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '"') {
                continue;
            }
            let rest = text[at + call.len()..].trim_start();
            if let Some(literal) = rest.strip_prefix('"') {
                found.push(&literal[..literal.find('"').unwrap()]);
            }
        }
    }
    found
}

#[test]
fn tests_start_programs_only_through_the_kit_and_only_registered_ones() {
    let kit = repo().join("tests/kit/src/programs.rs");
    let mut wrong = Vec::new();
    let mut names = Vec::new();
    for file in test_sources() {
        let text = std::fs::read_to_string(&file).unwrap();
        let shown = file.strip_prefix(repo()).unwrap_or(&file).display();
        for (number, line) in text.lines().enumerate() {
            // Spelled in two halves so that this line is not a match of its own.
            if line.contains(concat!("Command::", "new("))
                && file != kit
                && !line.trim_start().starts_with("//")
            {
                wrong.push(format!("{shown}:{}: {}", number + 1, line.trim()));
            }
        }
        let calls = [
            "command(",
            "program(",
            "program_path(",
            "find_program(",
            "Running::start(",
            "Running::start_with_env(",
        ];
        names.extend(
            literal_arguments(&text, &calls)
                .into_iter()
                .filter(|name| !name.contains('/'))
                .map(|name| (name.to_string(), shown.to_string())),
        );
    }
    assert!(
        wrong.is_empty(),
        "start programs with testkit::command or Running (they know what installs each \
         program), not Command::new:\n{}",
        wrong.join("\n")
    );
    let unknown: Vec<_> = names
        .iter()
        .filter(|(name, _)| PROGRAMS.iter().all(|(known, _)| known != name))
        .collect();
    assert!(
        unknown.is_empty(),
        "programs started but not in testkit's PROGRAMS: {unknown:?}"
    );
    // The scan sees what the tests start: the browser, the TLS tooling, the Python venv.
    for expected in ["chromium", "openssl", "python", "gst-launch-1.0", "meson"] {
        assert!(
            names.iter().any(|(name, _)| name == expected),
            "the scan missed {expected}: {names:?}"
        );
    }
}

/// The words of the setup's `KV_DEBS=( ... )` list in scripts/lib.sh.
fn setup_debian_packages(lib: &str) -> Vec<String> {
    let start = lib.find("KV_DEBS=(").expect("KV_DEBS in scripts/lib.sh") + "KV_DEBS=(".len();
    let end = start + lib[start..].find("\n)").expect("the end of KV_DEBS");
    lib[start..end]
        .lines()
        .map(|line| line.split('#').next().unwrap())
        .flat_map(str::split_whitespace)
        .map(String::from)
        .collect()
}

/// Whether `package`, or a package it depends on, ships `program` in a bin folder, as dpkg
/// knows it.
fn debian_ships(package: &str, program: &str) -> bool {
    let query = |args: &[&str]| {
        let output = testkit::command("dpkg-query").args(args).output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let depends = query(&["-W", "-f=${Pre-Depends}, ${Depends}", package]);
    let mut packages = vec![package.to_string()];
    packages.extend(
        depends
            .split([',', '|'])
            .filter_map(|d| d.split_whitespace().next())
            .map(|d| d.split(':').next().unwrap().to_string()),
    );
    packages.iter().any(|p| {
        query(&["-L", p]).lines().any(|file| {
            let file = Path::new(file);
            file.file_name().is_some_and(|f| f == program)
                && file
                    .parent()
                    .is_some_and(|dir| dir.ends_with("bin") || dir.ends_with("sbin"))
        })
    })
}

#[test]
fn the_setup_installs_every_program_the_tests_start() {
    let lib = std::fs::read_to_string(repo().join("scripts/lib.sh")).unwrap();
    let test_script = std::fs::read_to_string(repo().join("scripts/test")).unwrap();
    let debs = setup_debian_packages(&lib);
    assert!(debs.iter().any(|p| p == "gstreamer1.0-tools"), "{debs:?}");
    for (name, source) in PROGRAMS {
        match source {
            Source::Debian(package) => {
                assert!(
                    debs.iter().any(|p| p == package),
                    "{name} comes from the Debian package {package}, which the setup's KV_DEBS \
                     does not install"
                );
                assert!(
                    debian_ships(package, name),
                    "dpkg says {package} (or what it needs) ships no {name}"
                );
            }
            Source::Venv => {
                assert!(lib.contains("kv_with_setup_lock kv_ensure_venv"));
                assert!(test_script.contains("export KV_PYTHON"));
                assert!(
                    find_program(name).is_some(),
                    "KV_PYTHON is not the venv's python"
                );
            }
            Source::Broker => {
                assert!(lib.contains("kv_with_setup_lock kv_ensure_broker"));
                assert!(lib.contains(&format!("cargo +nightly install {name}")));
            }
            // On the machine before the setup: it must be here now.
            Source::Machine => assert!(find_program(name).is_some(), "no {name} here"),
        }
    }
}
