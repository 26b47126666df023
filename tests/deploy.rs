// SPDX-License-Identifier: MIT OR Apache-2.0
//! The systemd units of `deploy/` pass `systemd-analyze verify` (templates instantiated,
//! their programs stubbed, every variable they use set by an example env file).

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
