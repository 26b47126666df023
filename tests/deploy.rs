// SPDX-License-Identifier: MIT OR Apache-2.0
//! The systemd units of `deploy/` pass `systemd-analyze verify` (templates instantiated,
//! their programs stubbed, every variable they use set by an example env file), and the
//! topics the scripts create keep records for an explicit time.

#[test]
fn the_systemd_units_verify() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = testkit::command("bash")
        .arg(repo.join("deploy/verify.sh"))
        .current_dir(repo)
        .output()
        .expect("bash");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    for unit in [
        "gkv-broker.service",
        "gkv-publisher@1.service",
        "gkv-worker@1.service",
        "gkv-viewer.service",
    ] {
        assert!(
            text.contains(&format!("ok   {unit}")),
            "{unit} not checked: {text}"
        );
    }
}

#[test]
fn scripts_create_topics_with_an_explicit_retention() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::var("KV_BROKER_DIR")
        .expect("KV_BROKER_DIR is not set: run the tests through scripts/test");
    for (settings, retention) in [
        (None, "86400000"),
        (Some("retention.ms=3600000"), "3600000"),
    ] {
        let topic = testkit::unique_name("retention");
        let output = testkit::command("bash")
            .arg(repo.join("scripts/broker"))
            .args(["topic", &topic, "2"])
            .args(settings)
            .env("BROKER_DIR", &dir)
            .output()
            .expect("bash");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            testkit::topic_setting(&topic, "retention.ms").unwrap(),
            Some(retention.to_string()),
            "{settings:?}"
        );
    }
}
