//! The official `openai` and `anthropic` Python SDKs against the real binary
//! (tests/sdk/test_sdks.py), with the mock provider running in this process.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdks_work_unchanged() {
    let mock = keygate_mock::MockServer::start(keygate_mock::MockConfig::default())
        .await
        .expect("mock provider");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = tokio::process::Command::new("python3")
        .args(["-m", "unittest", "-v", "tests/sdk/test_sdks.py"])
        .current_dir(root)
        .env("KEYGATE_BIN", env!("CARGO_BIN_EXE_keygate"))
        .env("KEYGATE_MOCK_URL", mock.url())
        .output()
        .await
        .expect("python3 runs (.ci/run installs the openai and anthropic packages)");
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "SDK tests failed:\n{report}");
    assert!(report.contains("OK"), "{report}");
}
