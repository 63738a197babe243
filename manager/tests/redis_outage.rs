//! The daemon on its own Redis server (never the shared one): dropped connections, a server killed under load
//! and restarted. Calls fail fast naming Redis while it is down, the daemon stays up, and writes work again
//! without a restart. Loopback only; every wait bounded.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::bounded::{stop_within, within};
use common::daemon::TestHome;
use jsonrpsee::rpc_params;
use serde_json::{Value, json};

/// A `redis-server` of this test: its own port and directory, append-only with fsync always.
struct OwnRedis {
    child: Child,
    port: u16,
}

impl OwnRedis {
    fn start(dir: &Path, port: u16) -> OwnRedis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let redis = OwnRedis { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !redis.answers() {
            assert!(Instant::now() < deadline, "redis-server on port {port} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        redis
    }

    fn cli(&self, args: &[&str]) -> String {
        let out =
            Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output().expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn answers(&self) -> bool {
        self.cli(&["PING"]) == "PONG"
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn report(next: &str) -> Value {
    json!({"Worker": {"Instance": "w1", "Location": "/x"}, "StateChange": {"Prev": "A", "Next": next, "Event": "Go"}, "Failure": null})
}

fn home_on_redis(port: u16) -> TestHome {
    let home = TestHome::init();
    home.set_config("Common.DB.Driver", "redis");
    home.set_config("Common.DB.Redis.Addr", format!("redis://127.0.0.1:{port}"));
    home.set_config("Common.DB.Redis.Prefix", "outage");
    home
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_client_connections_are_replaced_on_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let redis = OwnRedis::start(dir.path(), free_port());
    let home = home_on_redis(redis.port);
    let daemon = home.start();
    let spec = json!({"AllowedMiners": [], "AllowedProofTypes": []});
    let sector: Value = daemon.call("Venus.AllocateSector", rpc_params![spec.clone()]).await.unwrap();
    for round in 0..5 {
        // Every pooled connection of the daemon dies, as with a server `timeout` or an operator's CLIENT KILL.
        // Alternately past the idle threshold (checked with PING) and not (the transaction breaks and is redone).
        if round % 2 == 0 {
            std::thread::sleep(Duration::from_millis(2500));
        }
        let killed = redis.cli(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
        assert!(killed.parse::<u32>().unwrap_or(0) > 0, "killed {killed} connections");
        // Transactions (allocate, report state) and plain reads (list) all work on the first try.
        let _: Value = daemon
            .call("Venus.ReportState", rpc_params![sector["ID"].clone(), report(&format!("R{round}"))])
            .await
            .unwrap();
        let _: Value = daemon.call("Venus.AllocateSector", rpc_params![spec.clone()]).await.unwrap();
        let online: Vec<Value> = daemon.call("Venus.ListSectors", rpc_params!["online", 0]).await.unwrap();
        assert_eq!(online.len(), round + 2);
    }
    assert_eq!(stop_within(daemon, Duration::from_secs(40)), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn while_redis_is_down_calls_fail_fast_naming_it_and_writes_resume_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let redis = OwnRedis::start(dir.path(), port);
    let home = home_on_redis(port);
    let daemon = home.start();
    let spec = json!({"AllowedMiners": [], "AllowedProofTypes": []});
    let sector: Value = daemon.call("Venus.AllocateSector", rpc_params![spec.clone()]).await.unwrap();
    let id = sector["ID"].clone();
    for n in 0..20 {
        let _: Value =
            daemon.call("Venus.ReportState", rpc_params![id.clone(), report(&format!("before{n}"))]).await.unwrap();
    }

    redis.kill();
    let mut slowest = Duration::ZERO;
    for n in 0..10 {
        let started = Instant::now();
        let err = within(
            "ReportState while Redis is down",
            Duration::from_secs(15),
            daemon.call::<Value>("Venus.ReportState", rpc_params![id.clone(), report(&format!("down{n}"))]),
        )
        .await
        .unwrap_err();
        slowest = slowest.max(started.elapsed());
        assert!(err.to_string().contains("Redis at 127.0.0.1"), "the error names Redis: {err}");
    }
    eprintln!("Redis down: slowest failing call {slowest:?}");
    assert!(slowest < Duration::from_secs(5), "a call took {slowest:?} to fail");
    let version: String = daemon.call("Venus.Version", rpc_params![]).await.unwrap();
    assert!(version.starts_with("damocles-rs/"), "the daemon is up");

    let _redis = OwnRedis::start(dir.path(), port);
    let back = Instant::now();
    let deadline = back + Duration::from_secs(15);
    loop {
        match daemon.call::<Value>("Venus.ReportState", rpc_params![id.clone(), report("after")]).await {
            Ok(_) => break,
            Err(err) => assert!(Instant::now() < deadline, "writes did not resume: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("Redis back: writes resumed after {:?}", back.elapsed());
    let found: Option<Value> = daemon.call("Venus.FindSector", rpc_params!["online", id.clone()]).await.unwrap();
    assert_eq!(found.unwrap()["LatestState"]["StateChange"]["Next"], "after");
    let _: Value = daemon.call("Venus.AllocateSector", rpc_params![spec]).await.unwrap();
    assert_eq!(stop_within(daemon, Duration::from_secs(40)), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_succeeds_under_a_steady_stream_of_writes() {
    let dir = tempfile::tempdir().unwrap();
    let redis = OwnRedis::start(dir.path(), free_port());
    let home = home_on_redis(redis.port);
    let daemon = home.start();
    let spec = json!({"AllowedMiners": [], "AllowedProofTypes": []});
    let mut ids = Vec::new();
    for _ in 0..20 {
        let batch: Vec<Value> =
            daemon.call("Venus.AllocateSectorsBatch", rpc_params![spec.clone(), 100]).await.unwrap();
        ids.extend(batch.into_iter().map(|s| s["ID"].clone()));
    }
    let writer_daemon_port = daemon.port;
    let token = daemon.token.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer_stop = std::sync::Arc::clone(&stop);
    let writer = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut n = 0;
        while !writer_stop.load(std::sync::atomic::Ordering::SeqCst) {
            let body = json!({"jsonrpc": "2.0", "id": n, "method": "Venus.ReportState", "params": [ids[n % ids.len()], report(&format!("W{n}"))]}).to_string();
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", writer_daemon_port)).unwrap();
            let head = format!(
                "POST /rpc/v0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(body.as_bytes()).unwrap();
            let _ = stream.read_to_end(&mut Vec::new());
            n += 1;
            std::thread::sleep(Duration::from_millis(20)); // ~50 writes/s
        }
        n
    });
    for _ in 0..10 {
        let online: Vec<Value> = within(
            "ListSectors under writes",
            Duration::from_secs(20),
            daemon.call("Venus.ListSectors", rpc_params!["online", 0]),
        )
        .await
        .unwrap_or_else(|e| panic!("ListSectors failed under writes: {e}"));
        assert_eq!(online.len(), 2000);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let writes = writer.join().unwrap();
    eprintln!("10 of 10 ListSectors of 2,000 sectors succeeded during {writes} concurrent writes");
    assert_eq!(stop_within(daemon, Duration::from_secs(40)), Some(0));
}
