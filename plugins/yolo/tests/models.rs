// SPDX-License-Identifier: MIT OR Apache-2.0
//! The Python side of `models/`: the committed blob models are what `make_models.py`
//! builds, `reference.py` agrees with them, and `quantize.py` makes INT8 models that give
//! the float boxes (`models/test_models.py`, run with the project's Python).

#[test]
fn the_python_model_checks_pass() {
    let script = testkit::repo().join("models/test_models.py");
    let output = testkit::command("python")
        .arg(&script)
        .output()
        .expect("running models/test_models.py");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    assert!(text.contains(" passed, 0 failed"), "{text}");
}
