//! Keygate in front of a real llama.cpp server (tests/llama/test_llama.py): this test starts
//! llama-cpp-python's OpenAI-compatible server on SmolLM2-135M-Instruct on a loopback port, waits
//! until it answers `GET /v1/models`, then runs the Python file with the official `openai` SDK
//! against the real binary. The server comes from the virtualenv `cargo xtask test` builds
//! (tests/llama/requirements.txt), the SDK from the SDK virtualenv; without either this test says
//! so in one line.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use keygate_test_support::{parts, require};

/// The name the server serves its model under.
const MODEL_ALIAS: &str = "smollm2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygate_in_front_of_a_llama_cpp_server() {
    let Some(python) = require(parts::python_sdks()) else {
        return;
    };
    let Some(llama) = require(parts::llama_server()) else {
        return;
    };
    let port = free_port();
    let log_path = parts::target_dir().join(format!("tmp/llama-server-{port}.log"));
    std::fs::create_dir_all(log_path.parent().unwrap()).unwrap();
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = tokio::process::Command::new(&llama.python)
        .args(["-m", "llama_cpp.server", "--model"])
        .arg(&llama.model)
        .args(["--model_alias", MODEL_ALIAS, "--n_ctx", "2048"])
        // One thread, for generation and for the prompt: with two, llama.cpp's threads spin-wait
        // for each other at every step, and on a 2-core machine running anything else (cargo,
        // the gateway, Python) a token took 50 to 900 ms instead of 10 to 25.
        .args(["--n_threads", "1", "--n_threads_batch", "1"])
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("the llama.cpp server starts");
    let started = Instant::now();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if let Some(status) = server.try_wait().unwrap() {
            panic!(
                "the llama.cpp server exited ({status}):\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        if models_answer(addr) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the llama.cpp server did not answer GET /v1/models within 120 s:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = started.elapsed();

    let tests = Instant::now();
    let output = tokio::process::Command::new(python)
        .args(["-m", "unittest", "-v", "tests/llama/test_llama.py"])
        .current_dir(parts::workspace_root())
        .env("KEYGATE_BIN", env!("CARGO_BIN_EXE_keygate"))
        .env("LLAMA_URL", format!("http://{addr}"))
        .env("LLAMA_MODEL_ALIAS", MODEL_ALIAS)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("python runs");
    let report = String::from_utf8_lossy(&output.stderr);
    let _ = server.kill().await;
    // The usage-estimate measurements, to the terminal past libtest's capture (docs/testing.md).
    let mut terminal = std::io::stderr();
    let _ = writeln!(
        terminal,
        "llama: server ready in {:.1} s, Python tests took {:.1} s",
        ready.as_secs_f64(),
        tests.elapsed().as_secs_f64()
    );
    for line in report.lines() {
        // unittest's `name ... ` may start the line the first measurement is printed on.
        if let Some(at) = line.find("measured: ") {
            let _ = writeln!(terminal, "llama: {}", &line[at..]);
        }
    }
    assert!(
        output.status.success(),
        "llama tests failed:\n{report}\nllama.cpp server log:\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    assert!(report.contains("OK"), "{report}");
    let _ = std::fs::remove_file(&log_path);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /v1/models` answers 200 (the model is loaded once the server listens).
fn models_answer(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /v1/models HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}
