//! The official `openai` and `anthropic` Python SDKs against the real binary
//! (tests/sdk/test_sdks.py), with the mock provider running in this process. The SDKs come from
//! the virtualenv `cargo xtask test` builds; without them this test says so in one line.

use keygate_test_support::{parts, require};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdks_work_unchanged() {
    let Some(python) = require(parts::python_sdks()) else {
        return;
    };
    let mock = keygate_mock::MockServer::start(keygate_mock::MockConfig::default())
        .await
        .expect("mock provider");
    let output = tokio::process::Command::new(python)
        .args(["-m", "unittest", "-v", "tests/sdk/test_sdks.py"])
        .current_dir(parts::workspace_root())
        .env("KEYGATE_BIN", env!("CARGO_BIN_EXE_keygate"))
        .env("KEYGATE_MOCK_URL", mock.url())
        .output()
        .await
        .expect("python runs");
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "SDK tests failed:\n{report}");
    assert!(report.contains("OK"), "{report}");
}
