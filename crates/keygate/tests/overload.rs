//! End to end: the caps on connections and requests in progress (503 with `Retry-After`, the
//! policy never run), `/readyz` during a drain, and a rolling restart of two gateways behind a
//! readiness-checking balancer under continuous load that loses no request.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{send, EchoUpstream, Gateway, Options, Req, TempDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Forwards everything to the upstream; a rule that would answer 418 shows when the policy ran.
fn policy() -> String {
    "on_http_request:\n  - expressions: [\"req.url.path == '/teapot'\"]\n    actions:\n      - type: custom-response\n        config: {status_code: 418}\n".to_owned()
}

fn assert_overloaded(reply: &common::Reply) {
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "ERR_KEYGATE_3808");
    assert_eq!(reply.header("retry-after"), Some("1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_over_the_cap_get_503_at_once_and_places_come_back() {
    let upstream = EchoUpstream::start().await;
    let gw = Gateway::start(
        &policy(),
        &["--upstream", &upstream.url(), "--max-requests", "1"],
    );
    let addr = gw.addr;
    let slow =
        tokio::spawn(
            async move { send(addr, Req::get("/slow").header("x-delay-ms", "800")).await },
        );
    // The slow request takes the only place as soon as its head is read; the upstream holds
    // it for 800 ms.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let refused = send(gw.addr, Req::get("/teapot")).await.unwrap();
    assert_overloaded(&refused);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "answered at once"
    );
    assert_eq!(slow.await.unwrap().unwrap().status, 200);
    // The place is back once the slow response has been sent; the policy runs again.
    assert_eq!(
        send(gw.addr, Req::get("/teapot")).await.unwrap().status,
        418
    );

    let metrics = send(gw.admin, Req::get("/metrics")).await.unwrap().text();
    assert!(
        metrics.contains("keygate_overloaded_requests_total{cap=\"requests\"} 1"),
        "{metrics}"
    );
}

/// Sends a keep-alive request on `stream` and reads one response head and its (small) body.
async fn keep_alive_get(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /teapot HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_cap_get_503_and_are_closed() {
    let gw = Gateway::start(&policy(), &["--max-connections", "1"]);
    // The harness's own readiness probe may still hold the place for a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut held = loop {
        let mut stream = TcpStream::connect(gw.addr).await.unwrap();
        let head = keep_alive_get(&mut stream).await;
        if head.starts_with("HTTP/1.1 418") {
            break stream;
        }
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        assert!(Instant::now() < deadline, "the only place never came free");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(keep_alive_get(&mut held).await.starts_with("HTTP/1.1 418"));

    let over = send(gw.addr, Req::get("/teapot")).await.unwrap();
    assert_overloaded(&over);
    assert_eq!(over.header("connection"), Some("close"));

    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = send(gw.addr, Req::get("/teapot")).await.unwrap();
        if reply.status == 418 {
            break;
        }
        assert!(Instant::now() < deadline, "the place never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn during_the_drain_delay_readyz_fails_while_requests_are_still_served() {
    let upstream = EchoUpstream::start().await;
    let mut gw = Gateway::start(
        &policy(),
        &["--upstream", &upstream.url(), "--drain-delay", "2"],
    );
    assert_eq!(
        send(gw.admin, Req::get("/readyz")).await.unwrap().status,
        200
    );
    gw.signal("TERM");
    assert!(gw.wait_for_output("/readyz reports draining", Duration::from_secs(5)));
    let readyz = send(gw.admin, Req::get("/readyz")).await.unwrap();
    assert_eq!(readyz.status, 503);
    assert_eq!(readyz.json()["status"], "draining");
    assert_eq!(send(gw.addr, Req::get("/")).await.unwrap().status, 200);
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
}

/// Backends a balancer may use: the ones whose `/readyz` last answered 200.
struct Balancer {
    /// (client address, admin address, ready)
    backends: Mutex<Vec<(SocketAddr, SocketAddr, bool)>>,
    next: AtomicUsize,
}

impl Balancer {
    fn pick(&self) -> Option<SocketAddr> {
        let backends = self.backends.lock().unwrap();
        let ready: Vec<SocketAddr> = backends.iter().filter(|b| b.2).map(|b| b.0).collect();
        (!ready.is_empty()).then(|| ready[self.next.fetch_add(1, Ordering::Relaxed) % ready.len()])
    }

    async fn check_health(&self) {
        let admins: Vec<SocketAddr> = self.backends.lock().unwrap().iter().map(|b| b.1).collect();
        for admin in admins {
            let ready = send(admin, Req::get("/readyz"))
                .await
                .is_ok_and(|r| r.status == 200);
            let mut backends = self.backends.lock().unwrap();
            if let Some(backend) = backends.iter_mut().find(|b| b.1 == admin) {
                backend.2 = ready;
            }
        }
    }

    fn replace(&self, old: SocketAddr, new: &Gateway) {
        let mut backends = self.backends.lock().unwrap();
        let backend = backends.iter_mut().find(|b| b.0 == old).unwrap();
        *backend = (new.addr, new.admin, false);
    }
}

/// The compose topology as processes: two gateways sharing one data dir and one Redis (shared
/// rate limits), an upstream, and a balancer that health-checks `/readyz` every 50 ms. Each
/// gateway in turn gets SIGTERM and is replaced by a new process while four clients send
/// without pause: not one request fails.
#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_under_load_loses_no_request() {
    let Ok(redis) = keygate_test_support::redis::RedisServer::start() else {
        eprintln!("skipped: redis-server is not installed (.ci/run installs it)");
        return;
    };
    let upstream = EchoUpstream::start().await;
    let data = TempDir::new("rolling");
    let policy = "on_http_request:\n  - actions:\n      - type: rate-limit\n        config:\n          name: all\n          capacity: 1000000\n          rate: 60s\n          bucket_key: ['\"all\"']\n";
    let start = || {
        Gateway::start_with(
            policy,
            Options {
                args: [
                    "--upstream",
                    &upstream.url(),
                    "--redis",
                    &redis.url(),
                    "--drain-delay",
                    "1",
                ]
                .map(str::to_owned)
                .to_vec(),
                data_dir: Some(data.path()),
                ..Options::default()
            },
        )
    };
    let mut gateways = vec![start(), start()];
    let balancer = Arc::new(Balancer {
        backends: Mutex::new(gateways.iter().map(|g| (g.addr, g.admin, true)).collect()),
        next: AtomicUsize::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let health = {
        let (balancer, stop) = (balancer.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                balancer.check_health().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let failures = Arc::new(Mutex::new(Vec::new()));
    let served = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (balancer, stop) = (balancer.clone(), stop.clone());
            let (failures, served) = (failures.clone(), served.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Some(addr) = balancer.pick() else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    let req = Req::post("/v1/work", "payload").header("x-delay-ms", "20");
                    match send(addr, req).await {
                        Ok(reply) if reply.status == 200 => {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(reply) => failures.lock().unwrap().push(format!(
                            "{addr}: {} {}",
                            reply.status,
                            reply.text()
                        )),
                        Err(err) => failures.lock().unwrap().push(format!("{addr}: {err}")),
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    for gateway in &mut gateways {
        let before = served.load(Ordering::Relaxed);
        gateway.signal("TERM");
        assert_eq!(gateway.wait_exit(Duration::from_secs(15)), Some(0));
        let replacement = start();
        balancer.replace(gateway.addr, &replacement);
        *gateway = replacement;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            served.load(Ordering::Relaxed) > before + 20,
            "the other gateway kept serving"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    health.await.unwrap();
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(served.load(Ordering::Relaxed) > 100);
    // Both replacements took traffic from the balancer.
    for gateway in &gateways {
        assert!(gateway.output().contains(r#""path":"/v1/work""#));
    }
}
