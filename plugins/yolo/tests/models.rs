// SPDX-License-Identifier: MIT OR Apache-2.0
//! The Python side of `models/`: the committed blob models are what `make_models.py`
//! builds, `reference.py` agrees with them, and `quantize.py` makes INT8 models that give
//! the float boxes (`models/test_models.py`, run with the project's Python).

use std::process::Command;

#[test]
fn the_python_model_checks_pass() {
    let python = std::env::var("KV_PYTHON")
        .expect("KV_PYTHON is not set: run the tests through scripts/test");
    let script = testkit::repo().join("models/test_models.py");
    let output = Command::new(python)
        .arg(&script)
        .output()
        .expect("running models/test_models.py");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    assert!(text.contains(" passed, 0 failed"), "{text}");
}
