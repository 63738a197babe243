//! A running manager whose database is lost or whose writer lease is taken stops writing — fenced inside every
//! transaction, on the server — answers every sector call with a temporary error (never 11001, which makes the
//! worker abort the sector), says so in the log and `/metrics`, and goes on by itself when the database is back.
//! Real daemon, private `redis-server` (append-only, fsync always), real `unshare` for the PID namespace case.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::{RunningDaemon, raw_http, refused};
use common::private_redis::{PrivateRedis, redis_home};
use jsonrpsee::core::ClientError;
use jsonrpsee::rpc_params;
use serde_json::{Value, json};

const PREFIX: &str = "fencing";

fn spec() -> Value {
    json!({"AllowedMiners": [], "AllowedProofTypes": []})
}

fn report(next: &str) -> Value {
    json!({"Worker": {"Instance": "w1", "Location": "/x"}, "StateChange": {"Prev": "A", "Next": next, "Event": "Go"}, "Failure": null})
}

fn persistent_redis() -> PrivateRedis {
    PrivateRedis::start(&["--appendonly", "yes", "--appendfsync", "always"])
}

/// The code and message of a call's error; panics when the call succeeded.
fn call_error<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (i32, String) {
    match result {
        Err(ClientError::Call(err)) => (err.code(), err.message().to_string()),
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

/// `damocles_db_writes_refused{cause="<cause>"}` from `/metrics`.
fn refused_gauge(daemon: &RunningDaemon, cause: &str) -> u32 {
    let response = raw_http(daemon.port, "GET", "/metrics", Some(&daemon.token), b"").expect("GET /metrics");
    let text = String::from_utf8_lossy(&response.body).into_owned();
    let series = format!("damocles_db_writes_refused{{cause=\"{cause}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from /metrics:\n{text}"))
}

/// Allocates until it succeeds (at most `limit`), returning the sector number.
async fn allocate_once_writes_resume(daemon: &RunningDaemon, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        match daemon.call::<Value>("Venus.AllocateSector", rpc_params![spec()]).await {
            Ok(sector) => return sector["ID"]["Number"].as_u64().expect("number"),
            Err(err) => assert!(Instant::now() < deadline, "writes did not resume within {limit:?}: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Issue 17 item 1: Redis killed, its data dir wiped, restarted empty on the same port under the running daemon.
/// Before: the daemon handed out 1, 2, 3 again. Now: every sector call is refused with a temporary error naming
/// the database, nothing is written to the empty server, and once the data is back the daemon goes on at 4.
#[tokio::test(flavor = "multi_thread")]
async fn a_redis_that_comes_back_empty_under_a_running_daemon_is_refused_until_its_data_is_back() {
    let mut redis = persistent_redis();
    let home = redis_home(&redis, PREFIX);
    let daemon = home.start();
    let batch: Vec<Value> = daemon.call("Venus.AllocateSectorsBatch", rpc_params![spec(), 3]).await.expect("allocate");
    let numbers: Vec<u64> = batch.iter().map(|s| s["ID"]["Number"].as_u64().unwrap()).collect();
    let first = batch[0]["ID"].clone();
    assert_eq!(refused_gauge(&daemon, "identity"), 0);

    let backup = tempfile::tempdir().unwrap();
    redis.kill_and_copy_data(backup.path());
    redis.restart_with_data(None);
    assert_eq!(redis.cli(&["DBSIZE"]), "0");

    let db = format!("Redis at 127.0.0.1:{}, prefix \"{PREFIX}\"", redis.port);
    for _ in 0..3 {
        let (code, message) = call_error(daemon.call::<Value>("Venus.AllocateSector", rpc_params![spec()]).await);
        assert_ne!(code, 11001, "{message}");
        assert!(message.contains(&db) && message.contains("no identity"), "names the database: {message}");
    }
    for (method, params) in [
        ("Venus.ReportState", rpc_params![first.clone(), report("X")]),
        ("Venus.ReportFinalized", rpc_params![first.clone()]),
        ("Venus.StoreReserveSpace", rpc_params![first.clone(), 2048, Option::<Vec<String>>::None]),
        ("Venus.FindSector", rpc_params!["online", first.clone()]),
    ] {
        let (code, message) = call_error(daemon.call::<Value>(method, params).await);
        assert!(code != 11001 && message.contains("write refused"), "{method}: {code} {message}");
    }
    assert_eq!(redis.cli(&["DBSIZE"]), "0", "nothing was written to the empty server");
    assert_eq!(refused_gauge(&daemon, "identity"), 1);
    assert!(daemon.log().contains("writes refused") && daemon.log().contains(&db), "{}", daemon.log());
    let health = raw_http(daemon.port, "GET", "/healthcheck", None, b"").unwrap();
    let health_body = String::from_utf8_lossy(&health.body).into_owned();
    assert_eq!(health.status, 503, "{health_body}");
    assert!(health_body.contains("refused: identity") && !health_body.contains("127.0.0.1"), "{health_body}");

    // The data comes back (the same server restarted on its files): the daemon goes on without a restart.
    redis.restart_with_data(Some(backup.path()));
    let next = allocate_once_writes_resume(&daemon, Duration::from_secs(30)).await;
    assert_eq!(next, numbers[2] + 1, "numbers {numbers:?} were not handed out again");
    assert_eq!(refused_gauge(&daemon, "identity"), 0);
    assert_eq!(raw_http(daemon.port, "GET", "/healthcheck", None, b"").unwrap().status, 200);
    let _: Value = daemon.call("Venus.ReportState", rpc_params![first, report("after")]).await.expect("report");
    assert!(daemon.log().contains("writes accepted again"), "{}", daemon.log());
    assert_eq!(daemon.stop(), Some(0));
}

/// Issue 17 item 2, fencing: another manager takes the lease (written as the other manager's acquisition would
/// write it). Every commit is conditional on the lease on the server, so the first manager's writes are refused
/// at once (no local flag, no renewal tick needed). When the lease is free again and nobody else held it in
/// between (the epoch is unchanged) it takes it back by itself; when someone did, it stays refused and says so.
#[tokio::test(flavor = "multi_thread")]
async fn a_manager_whose_lease_was_taken_writes_nothing_and_takes_it_back_only_if_nobody_held_it() {
    let redis = persistent_redis();
    let home = redis_home(&redis, PREFIX);
    let daemon = home.start();
    let before = allocate_once_writes_resume(&daemon, Duration::from_secs(5)).await;
    let lease_key = format!("{PREFIX}:writer-lease");
    let ours = redis.cli(&["GET", &lease_key]);
    assert!(ours.contains(&format!("\"Pid\":{}", daemon.child.id())), "{ours}");
    let other = r#"{"Host":"other-host","Pid":77,"Since":"2026-01-01T00:00:00Z","Token":"x","BootId":"b","PidNamespace":1,"StartTime":1}"#;

    assert_eq!(redis.cli(&["SET", &lease_key, other, "PX", "30000"]), "OK");
    let (code, message) = call_error(daemon.call::<Value>("Venus.AllocateSector", rpc_params![spec()]).await);
    assert_ne!(code, 11001);
    assert!(message.contains("no longer holds the writer lease") && message.contains("other-host"), "{message}");
    assert_eq!(refused_gauge(&daemon, "writer_lease"), 1);

    // Released by the other manager, never held by anyone else: taken back within one renewal (10 s).
    assert_eq!(redis.cli(&["DEL", &lease_key]), "1");
    let next = allocate_once_writes_resume(&daemon, Duration::from_secs(15)).await;
    assert_eq!(next, before + 1, "nothing was allocated while the lease was someone else's");
    assert_eq!(refused_gauge(&daemon, "writer_lease"), 0);

    // Another manager acquires (the epoch moves) and leaves: its writes may be anywhere, so no automatic return.
    redis.cli(&["INCR", &format!("{PREFIX}:writer-lease-epoch")]);
    assert_eq!(redis.cli(&["SET", &lease_key, other, "PX", "30000"]), "OK");
    assert!(daemon.call::<Value>("Venus.AllocateSector", rpc_params![spec()]).await.is_err());
    assert_eq!(redis.cli(&["DEL", &lease_key]), "1");
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (_, message) = call_error(daemon.call::<Value>("Venus.AllocateSector", rpc_params![spec()]).await);
    assert!(message.contains("lease is gone") && message.contains("restart this one"), "{message}");
    assert_eq!(redis.cli(&["EXISTS", &lease_key]), "0", "the lease was not taken back");
    assert_eq!(daemon.stop(), Some(0));
    // A restart takes the free lease and goes on where the database is.
    let daemon = home.start();
    let after = allocate_once_writes_resume(&daemon, Duration::from_secs(5)).await;
    assert_eq!(after, next + 1);
    assert_eq!(daemon.stop(), Some(0));
}

/// Issue 17 item 2, take-over: a second manager with the same home and config, on the same host but in its own
/// PID namespace (`unshare --pid --fork --mount-proc`, as two containers with host networking), where the first
/// one's pid does not exist. Before: it "took over the lease of a manager that is gone" and both served. Now: it
/// refuses to start, and the first keeps the lease and serves.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_manager_in_another_pid_namespace_does_not_take_over_a_live_holder() {
    if !nix_is_root() {
        panic!("this test needs root for `unshare --pid` (the test machine and CI run as root)");
    }
    let redis = persistent_redis();
    let home = redis_home(&redis, PREFIX);
    let daemon = home.start();
    let lease_key = format!("{PREFIX}:writer-lease");
    let held = redis.cli(&["GET", &lease_key]);

    let twin = tempfile::tempdir().unwrap();
    for file in ["sector-manager.cfg", "token", "db-identity"] {
        std::fs::copy(home.path().join(file), twin.path().join(file)).expect("copy home file");
    }
    std::fs::create_dir_all(twin.path().join("plugins")).unwrap();
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(common::daemon::binary())
        .arg("--home")
        .arg(twin.path())
        .args(["daemon", "run", "--listen", "127.0.0.1:0"]);
    let stderr = refused(command);
    assert!(stderr.contains("is in use by the manager on host"), "{stderr}");
    assert!(stderr.contains("another PID namespace"), "{stderr}");
    assert_eq!(redis.cli(&["GET", &lease_key]), held, "the lease is still the first manager's");
    let _ = allocate_once_writes_resume(&daemon, Duration::from_secs(5)).await;
    assert_eq!(daemon.stop(), Some(0));
}

fn nix_is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}
