// SPDX-License-Identifier: MIT OR Apache-2.0
//! Other Kafka clients and our elements read each other's records: kafka-python (the
//! client the well-known write-ups used) and confluent-kafka, run from the project venv.

use std::path::{Path, PathBuf};
use std::time::Duration;

use testkit::*;

fn init() {
    testkit::init(&[gstkafka::plugin_register_static]);
}

const CLIENTS: [&str; 2] = ["kafka-python", "confluent"];

fn clients_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/kafka_clients.py")
}

fn run_client(args: &[&str]) -> String {
    let output = command("python")
        .arg(clients_script())
        .args(args)
        .output()
        .expect("running the Python client");
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn jpeg_file(dir: &Path) -> (PathBuf, Vec<u8>) {
    init();
    let path = dir.join("frame.jpg");
    run_to_eos(
        &format!(
            "videotestsrc num-buffers=1 pattern=smpte ! video/x-raw,width=160,height=120 ! jpegenc ! \
             filesink location={}",
            path.display()
        ),
        Duration::from_secs(20),
    );
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

#[test]
fn kafkasrc_reads_records_written_by_python_clients_with_the_caps_property() {
    for client in CLIENTS {
        let dir = Scratch::new("interop-in");
        let (path, bytes) = jpeg_file(&dir);
        let topic = new_topic(&format!("from-{client}"), 1);
        let out = run_client(&[
            "produce",
            "--client",
            client,
            "--brokers",
            &brokers(),
            "--topic",
            &topic,
            "--file",
            path.to_str().unwrap(),
            "--count",
            "3",
        ]);
        assert!(
            out.contains("\"written\":3") || out.contains("\"written\": 3"),
            "{out}"
        );

        let pipeline = launch(&format!(
            "kafkasrc brokers={} topic={topic} caps=image/jpeg num-buffers=3 ! tee name=t \
             t. ! queue ! appsink name=out sync=false \
             t. ! queue ! jpegdec ! appsink name=decoded sync=false",
            brokers()
        ));
        let samples = collect_samples(&pipeline, "out");
        let decoded = collect_samples(&pipeline, "decoded");
        match run_until_end(&pipeline, Duration::from_secs(60)) {
            Ended::Eos => {}
            other => panic!("{client}: reading ended with {other:?}"),
        }
        let samples = samples.lock().unwrap();
        assert_eq!(samples.len(), 3, "{client}");
        for sample in samples.iter() {
            let buffer = sample.buffer().unwrap();
            assert_eq!(
                buffer.map_readable().unwrap().as_slice(),
                &bytes[..],
                "{client}"
            );
        }
        assert_eq!(
            decoded.lock().unwrap().len(),
            3,
            "{client}: every frame decodes"
        );
    }
}

#[test]
fn python_clients_read_what_kafkasink_writes() {
    let dir = Scratch::new("interop-out");
    let (path, bytes) = jpeg_file(&dir);
    let topic = new_topic("to-python", 1);
    run_to_eos(
        &format!(
            "multifilesrc location={} num-buffers=4 caps=image/jpeg,framerate=30/1 ! \
             kafkasink brokers={} topic={topic} key=cam7",
            path.display(),
            brokers()
        ),
        Duration::from_secs(30),
    );
    for client in CLIENTS {
        let out_dir = dir.join(client);
        let out = run_client(&[
            "consume",
            "--client",
            client,
            "--brokers",
            &brokers(),
            "--topic",
            &topic,
            "--count",
            "5",
            "--timeout",
            "30",
            "--out-dir",
            out_dir.to_str().unwrap(),
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 5, "{client}: {out}");
        for (i, line) in lines.iter().enumerate() {
            let kind = if i < 4 { "buffer" } else { "eos" };
            assert!(line.contains("\"gkv-version\":\"1\""), "{client}: {line}");
            assert!(
                line.contains(&format!("\"gkv-kind\":\"{kind}\"")),
                "{client}: {line}"
            );
            assert!(
                line.contains(&format!("\"gkv-seq\":\"{i}\"")),
                "{client}: {line}"
            );
            if i < 4 {
                assert!(
                    line.contains("\"gkv-caps\":\"image/jpeg"),
                    "{client}: {line}"
                );
                let value = std::fs::read(out_dir.join(format!("{i:04}.bin"))).unwrap();
                assert_eq!(value, bytes, "{client}: record {i} is the plain JPEG");
            }
        }
    }
}
