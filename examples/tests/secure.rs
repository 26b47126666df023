// SPDX-License-Identifier: MIT OR Apache-2.0
//! The programs in a deployment that needs secrets: a nisshi broker that speaks only TLS
//! and requires SCRAM-SHA-512 logins, and a camera that requires RTSP basic
//! authentication. Every program gets its Kafka settings the way an operator would give
//! them: a 0600 client.properties file (`--kafka-config-file`) or `KAFKA_CONFIG` with the
//! password in another variable (`${KAFKA_PASSWORD}`); the camera password comes from
//! `RTSP_PASSWORD` or a 0600 file (`--rtsp-password-file`). Publisher, worker, counter,
//! archive, demo-status and viewer run on it; no secret may show in a command line or in
//! any program's output.
//!
//! Needs the nisshi broker; on the fallback broker it says why and does not run.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use testkit::*;

const KAFKA_USER: &str = "gkv-system";
const KAFKA_PASSWORD: &str = "KafkaPw-3e8d71";
const CAMERA_USER: &str = "cam-operator";
const CAMERA_PASSWORD: &str = "CameraPw-91c4a2";
const FRAMES: u32 = 20;

/// What a program printed, and its command line as `ps` shows it, hold no secret.
fn assert_no_secret(program: &Running, command_line: &str) {
    let output = format!("{}\n{}", program.lines().join("\n"), program.stderr());
    for secret in [KAFKA_PASSWORD, CAMERA_PASSWORD, "wrong-password"] {
        assert!(!command_line.contains(secret), "{secret} in {command_line}");
        assert!(
            !output.contains(secret),
            "{secret} in the output:\n{output}"
        );
    }
}

/// The command line `ps` shows. Right after the spawn it can still be empty: the kernel
/// sets it up a moment after the exec that `spawn` waits for.
fn command_line(program: &Running) -> String {
    let path = format!("/proc/{}/cmdline", program.child.id());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        if !raw.is_empty() || Instant::now() > deadline {
            return String::from_utf8_lossy(&raw).replace('\0', " ");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_programs_run_on_a_tls_broker_with_logins_and_a_camera_with_a_password() {
    let nisshi_path = match nisshi_for_test() {
        Ok(path) => path,
        Err(why) => {
            not_run(&why);
            return;
        }
    };
    let scratch = Scratch::new("secure");
    let dir: &Path = &scratch;
    make_certificates(dir);
    let port = free_port();
    let brokers = format!("127.0.0.1:{port}");

    // The user and the topics first, in plaintext: nisshi's admin commands do not log in.
    {
        let _setup = start_nisshi(&nisshi_path, dir, port, Security::default());
        let broker_url = format!("tcp://{brokers}");
        let (user, password) = (KAFKA_USER, KAFKA_PASSWORD);
        nisshi_admin(
            &nisshi_path,
            &[
                "user",
                "create",
                "--broker",
                &broker_url,
                "--mechanism",
                "scram512",
                user,
                password,
            ],
        );
        for topic in ["frames", "annotated", "detections"] {
            nisshi_admin(
                &nisshi_path,
                &[
                    "topic",
                    "create",
                    "--broker",
                    &broker_url,
                    "--partitions",
                    "1",
                    topic,
                ],
            );
        }
    }
    let secure = Security {
        tls: true,
        logins: true,
    };
    let _broker = start_nisshi(&nisshi_path, dir, port, secure);

    let ca = dir.join("ca.pem").display().to_string();
    let properties = dir.join("client.properties");
    std::fs::write(
        &properties,
        format!(
            "# TLS and a SCRAM login\nsecurity.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n\
             sasl.username={KAFKA_USER}\nsasl.password={KAFKA_PASSWORD}\nssl.ca.location={ca}\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&properties, std::fs::Permissions::from_mode(0o600)).unwrap();
    let properties = properties.display().to_string();
    let kafka_config = format!(
        "security.protocol=SASL_SSL,sasl.mechanism=SCRAM-SHA-512,sasl.username={KAFKA_USER},\
         sasl.password=${{KAFKA_PASSWORD}},ssl.ca.location={ca}"
    );
    let kafka_env = [
        ("KAFKA_CONFIG", kafka_config.as_str()),
        ("KAFKA_PASSWORD", KAFKA_PASSWORD),
    ];

    // Without the settings the worker fails at once and says where they go; with a wrong
    // password it says the broker refused the login, without the password.
    let bare = ["--brokers", brokers.as_str(), "--group", "secure-refused"];
    let mut refused = Running::start(env!("CARGO_BIN_EXE_detector-worker"), &bare);
    assert!(!refused.wait(Duration::from_secs(60)).success());
    assert!(
        refused
            .stderr()
            .contains("security.protocol and its settings in the 'config'"),
        "{}",
        refused.stderr()
    );
    let wrong = [
        ("KAFKA_CONFIG", kafka_config.as_str()),
        ("KAFKA_PASSWORD", "wrong-password"),
    ];
    let mut refused = Running::start_with_env(env!("CARGO_BIN_EXE_detector-worker"), &bare, &wrong);
    assert!(!refused.wait(Duration::from_secs(30)).success());
    let err = refused.stderr();
    assert!(
        err.contains("refused the connection's security settings"),
        "{err}"
    );
    assert!(err.contains("SASL authentication error"), "{err}");
    assert_no_secret(&refused, "");
    // The counter (kafkasrc inside) says the same, naming its own options.
    let counter_args = ["--brokers", brokers.as_str(), "--topic", "detections"];
    let mut refused = Running::start_with_env(env!("CARGO_BIN_EXE_counter"), &counter_args, &wrong);
    assert!(!refused.wait(Duration::from_secs(30)).success());
    let err = refused.stderr();
    assert!(
        err.contains("refused the connection's security settings")
            && err.contains("in --kafka-config or --kafka-config-file"),
        "{err}"
    );
    assert_no_secret(&refused, "");

    // The camera, and a publisher with the wrong camera password: fatal, named.
    let mut camera = Running::start_with_env(
        env!("CARGO_BIN_EXE_camera-sim"),
        &[
            "--cameras",
            "1",
            "--port",
            "0",
            "--fps",
            "10",
            "--user",
            CAMERA_USER,
        ],
        &[("CAMERA_SIM_PASSWORD", CAMERA_PASSWORD)],
    );
    let url = camera
        .wait_for("camera-sim: ready", Duration::from_secs(15))
        .iter()
        .find_map(|l| {
            l.strip_prefix("camera-sim: ")
                .filter(|u| u.starts_with("rtsp://"))
        })
        .expect("a camera URL")
        .to_string();
    // publish(PASSWORD) passes the camera password in RTSP_PASSWORD; publish("") reads the
    // right one with --rtsp-password-file from a 0600 file.
    let password_file = dir.join("camera-password");
    std::fs::write(&password_file, format!("{CAMERA_PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let password_file = password_file.display().to_string();
    let publish = |password: &str| {
        let frames = FRAMES.to_string();
        let mut args = vec![
            "--url",
            url.as_str(),
            "--rtsp-user",
            CAMERA_USER,
            "--brokers",
            brokers.as_str(),
            "--kafka-config-file",
            properties.as_str(),
            "--frames",
            frames.as_str(),
        ];
        let env: &[(&str, &str)] = if password.is_empty() {
            args.extend(["--rtsp-password-file", password_file.as_str()]);
            &[]
        } else {
            &[("RTSP_PASSWORD", password)]
        };
        Running::start_with_env(env!("CARGO_BIN_EXE_publisher"), &args, env)
    };
    let mut refused = publish("wrong-password");
    assert!(!refused.wait(Duration::from_secs(30)).success());
    let err = refused.stderr();
    assert!(
        err.contains("refused the credentials (401 Unauthorized)"),
        "{err}"
    );
    assert_no_secret(&refused, "");

    // The system: camera -> publisher -> worker -> counter, all over TLS with logins.
    let mut worker = Running::start_with_env(
        env!("CARGO_BIN_EXE_detector-worker"),
        &[
            "--brokers",
            &brokers,
            "--group",
            "secure-workers",
            "--stop-on-eos",
        ],
        &kafka_env,
    );
    let mut publisher = publish("");
    let publisher_command = command_line(&publisher);
    let worker_command = command_line(&worker);
    assert!(
        publisher.wait(Duration::from_secs(90)).success(),
        "{}",
        publisher.stderr()
    );
    assert!(
        publisher
            .stderr()
            .contains(&format!("stopped after {FRAMES} frames published")),
        "{}",
        publisher.stderr()
    );
    assert!(
        worker.wait(Duration::from_secs(90)).success(),
        "{}",
        worker.stderr()
    );
    assert_eq!(worker.frames_done(), FRAMES, "{:?}", worker.lines());

    let mut counter = Running::start(
        env!("CARGO_BIN_EXE_counter"),
        &[
            "--brokers",
            &brokers,
            "--kafka-config-file",
            &properties,
            "--mode",
            "detections",
            "--classes",
            "sports ball",
            "--stop-on-eos",
            "--quiet",
        ],
    );
    let counter_command = command_line(&counter);
    assert!(
        counter.wait(Duration::from_secs(60)).success(),
        "{}",
        counter.stderr()
    );
    let summary = counter.lines().join("\n");
    assert!(
        summary.contains(&format!("end of stream: {FRAMES} frames from 1 camera(s)")),
        "{summary}"
    );

    // The archive reads the annotated frames (file), demo-status the group's progress
    // (environment), the viewer serves them (environment).
    let crops = dir.join("crops").display().to_string();
    let mut archive = Running::start(
        env!("CARGO_BIN_EXE_archive"),
        &[
            "--brokers",
            &brokers,
            "--kafka-config-file",
            &properties,
            "--out",
            &crops,
            "--stop-on-eos",
        ],
    );
    let archive_command = command_line(&archive);
    assert!(
        archive.wait(Duration::from_secs(60)).success(),
        "{}",
        archive.stderr()
    );
    let saved = archive.lines().join("\n");
    assert!(
        saved.contains(&format!("end of stream: {FRAMES} frames")),
        "{saved}"
    );

    let status_args = [
        "--brokers",
        brokers.as_str(),
        "--group",
        "secure-workers",
        "--count",
        "1",
    ];
    let mut status =
        Running::start_with_env(env!("CARGO_BIN_EXE_demo-status"), &status_args, &kafka_env);
    let status_command = command_line(&status);
    assert!(
        status.wait(Duration::from_secs(60)).success(),
        "{}",
        status.stderr()
    );
    let line = status.lines().join("\n");
    assert!(
        // The frames and the end-of-stream record.
        line.contains(&format!("published {} ", FRAMES + 1)) && line.contains("detector lag 0"),
        "{line}"
    );

    let mut viewer = Running::start_with_env(
        env!("CARGO_BIN_EXE_viewer"),
        &["--brokers", &brokers, "--group", "", "--port", "0"],
        &kafka_env,
    );
    let viewer_command = command_line(&viewer);
    let address = viewer
        .wait_for("viewer: http://", Duration::from_secs(30))
        .last()
        .and_then(|l| l.strip_prefix("viewer: http://"))
        .map(|a| a.trim_end_matches('/').to_string())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let frames_read = format!("\"}} {FRAMES}\n");
    loop {
        let (code, metrics) = http_get(&address, "/metrics");
        let pushed = metrics
            .lines()
            .find(|l| l.starts_with("gkv_kafkasrc_buffers_pushed_total{"))
            .map(|l| format!("{l}\n"));
        if code == 200 && pushed.is_some_and(|l| l.ends_with(&frames_read)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the viewer never read {FRAMES} frames:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    viewer.terminate();
    viewer.wait(Duration::from_secs(30));

    for (program, command) in [
        (&publisher, publisher_command),
        (&worker, worker_command),
        (&counter, counter_command),
        (&archive, archive_command),
        (&status, status_command),
        (&viewer, viewer_command),
    ] {
        assert!(
            !command.is_empty(),
            "no command line read: {:?}",
            program.lines()
        );
        assert_no_secret(program, &command);
    }
    camera.terminate();
}
