//! The configurable timeouts are honoured: `[Common] StoreCapacityTimeout` and `StoreCapacityRefresh` by the real
//! daemon, `[Common.DB.Redis] CommandTimeout` and `ConnectTimeout` by the Redis driver against a test-owned
//! `redis-server` that is stopped with SIGSTOP. Bounds are loose (a shared, loaded machine): each test checks that
//! the configured value, not the default, decides.

mod common;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use common::bounded::{stop_within, within};
use common::daemon::TestHome;
use common::private_redis::PrivateRedis;
use jsonrpsee::rpc_params;
use manager::config::Config;
use manager::kvstore::{RedisDb, RedisTimeouts};
use manager_plugin::kv::{Db, KvError};
use serde_json::Value;

fn store<'a>(list: &'a [Value], name: &str, kind: &str) -> &'a Value {
    list.iter().find(|s| s["Name"] == name && s["Kind"] == kind).unwrap_or_else(|| panic!("{name} not listed"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_store_is_unavailable_after_the_configured_capacity_timeout_not_the_default() {
    let home = TestHome::init();
    home.install_plugins(&["hung-store"]);
    home.add_plugin_persist_store("hung", "hung-store");
    home.set_config("Common.StoreCapacityTimeout", "1s");
    let daemon = home.start();
    let started = Instant::now();
    // The first listing waits for each store's first answer, at most the timeout: 1 s here, 5 s by default.
    let list: Vec<Value> =
        within("StoreList", Duration::from_secs(20), daemon.call("Venus.StoreList", rpc_params![])).await.unwrap();
    let waited = started.elapsed();
    let hung = store(&list, "hung", "persist");
    assert_eq!(hung["Available"], false, "{hung}");
    let error = hung["Error"].as_str().unwrap_or("");
    assert!(error.contains("timeout 1.0 s") && error.contains("StoreCapacityTimeout"), "{error}");
    eprintln!("StoreList beside a hung store with StoreCapacityTimeout = \"1s\" answered in {waited:?}");
    assert!(waited < Duration::from_secs(4), "answered within the 1 s timeout (plus slack), not 5 s: {waited:?}");
    assert_eq!(stop_within(daemon, Duration::from_secs(40)), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn capacity_is_re_read_at_the_configured_refresh_interval() {
    let home = TestHome::init();
    // An hour: within this test, the figures read at start-up are never re-read by the timer.
    home.set_config("Common.StoreCapacityRefresh", "1h");
    let daemon = home.start();
    let list: Vec<Value> = daemon.call("Venus.StoreList", rpc_params![]).await.unwrap();
    let before = store(&list, "persist", "persist")["Free"].as_u64().expect("Free");
    // Take 64 MiB of the store's file system, then wait past the default refresh interval (2 s).
    let mut file = std::fs::File::create(home.path().join("persist").join("filler")).unwrap();
    file.write_all(&vec![1u8; 64 << 20]).unwrap();
    file.sync_all().unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let list: Vec<Value> = daemon.call("Venus.StoreList", rpc_params![]).await.unwrap();
    let after = store(&list, "persist", "persist")["Free"].as_u64().expect("Free");
    assert_eq!(after, before, "with StoreCapacityRefresh = \"1h\" the cached figure is not re-read after 5 s");
    assert_eq!(stop_within(daemon, Duration::from_secs(40)), Some(0));

    // With a short interval, the same change shows up.
    home.set_config("Common.StoreCapacityRefresh", "200ms");
    let daemon = home.start();
    let list: Vec<Value> = daemon.call("Venus.StoreList", rpc_params![]).await.unwrap();
    let before = store(&list, "persist", "persist")["Free"].as_u64().expect("Free");
    let mut file = std::fs::File::create(home.path().join("persist").join("filler-2")).unwrap();
    file.write_all(&vec![1u8; 64 << 20]).unwrap();
    file.sync_all().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list: Vec<Value> = daemon.call("Venus.StoreList", rpc_params![]).await.unwrap();
        if store(&list, "persist", "persist")["Free"].as_u64().expect("Free") != before {
            break;
        }
        assert!(Instant::now() < deadline, "with StoreCapacityRefresh = \"200ms\" the change shows within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stop_within(daemon, Duration::from_secs(40)), Some(0));
}

/// SIGSTOP or SIGCONT to `pid`.
fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill").args([sig, &pid.to_string()]).status().expect("kill");
    assert!(status.success());
}

#[test]
fn a_stopped_redis_fails_a_call_within_the_configured_command_timeout_naming_redis() {
    let redis = PrivateRedis::start(&[]);
    let pid = redis.pid().expect("running");
    let timeouts = RedisTimeouts { connect: Duration::from_secs(1), command: Duration::from_millis(700) };
    let db = RedisDb::open_with(&redis.url(), "liveness-timeouts", timeouts).unwrap();
    let sectors = db.open_collection("sectors").unwrap();
    sectors.put(b"k", b"v").unwrap();

    signal(pid, "-STOP");
    let started = Instant::now();
    let err = sectors.get(b"k").expect_err("a stopped server cannot answer");
    let waited = started.elapsed();
    signal(pid, "-CONT");
    eprintln!("get on a stopped Redis with CommandTimeout 700ms failed in {waited:?}: {err}");
    let message = err.to_string();
    assert!(matches!(err, KvError::Backend(_)), "{err:?}");
    assert!(message.contains(&format!("Redis at 127.0.0.1:{}", redis.port)), "{message}");
    assert!(message.contains("CommandTimeout") && message.contains("700ms"), "{message}");
    assert!(waited >= Duration::from_millis(600), "it waited for the timeout: {waited:?}");
    assert!(waited < Duration::from_millis(2_900), "well before the 3 s default: {waited:?}");
    // Back to normal once the server runs again.
    assert_eq!(sectors.get(b"k").unwrap(), b"v");
    db.close().unwrap();
}

#[test]
fn connecting_to_a_stopped_redis_gives_up_after_the_configured_connect_timeout() {
    let redis = PrivateRedis::start(&["--tcp-backlog", "1"]);
    let pid = redis.pid().expect("running");
    // A stopped server still completes TCP handshakes from its backlog: fill it first so connecting hangs.
    signal(pid, "-STOP");
    let mut fillers = Vec::new();
    for _ in 0..16 {
        if let Ok(conn) = std::net::TcpStream::connect_timeout(
            &format!("127.0.0.1:{}", redis.port).parse().unwrap(),
            Duration::from_millis(300),
        ) {
            fillers.push(conn);
        }
    }
    let timeouts = RedisTimeouts { connect: Duration::from_millis(500), command: Duration::from_secs(30) };
    let started = Instant::now();
    let result = RedisDb::open_with(&redis.url(), "liveness-timeouts", timeouts);
    let waited = started.elapsed();
    signal(pid, "-CONT");
    let err = result.err().expect("a stopped server with a full backlog cannot be opened");
    let message = err.to_string();
    eprintln!("opening a stopped Redis with ConnectTimeout 500ms failed in {waited:?}: {message}");
    assert!(message.contains(&format!("Redis at 127.0.0.1:{}", redis.port)), "{message}");
    assert!(message.contains("timeout 500ms") && message.contains("ConnectTimeout"), "{message}");
    assert!(waited >= Duration::from_millis(400), "it waited for the timeout: {waited:?}");
    assert!(waited < Duration::from_secs(10), "long before the 30 s command timeout: {waited:?}");
}

#[test]
fn invalid_or_zero_timeouts_are_errors_naming_the_key() {
    let file = std::path::Path::new("/etc/damocles/sector-manager.cfg");
    for (text, key) in [
        ("[Common]\nStoreCapacityTimeout = \"5x\"\n", "StoreCapacityTimeout"),
        ("[Common]\nStoreCapacityRefresh = \"soon\"\n", "StoreCapacityRefresh"),
        ("[Common]\nStoreCapacityTimeout = \"0s\"\n", "Common.StoreCapacityTimeout"),
        ("[Common.DB.Redis]\nCommandTimeout = \"3\"\n", "CommandTimeout"),
        ("[Common.DB.Redis]\nConnectTimeout = \"0ms\"\n", "Common.DB.Redis.ConnectTimeout"),
    ] {
        let err = Config::parse(text, file).expect_err(text).to_string();
        assert!(err.contains(key) && err.contains("sector-manager.cfg"), "{text}: {err}");
    }
    let config = Config::parse(
        "[Common]\nStoreCapacityTimeout = \"1.5s\"\nStoreCapacityRefresh = \"500ms\"\n\
         [Common.DB.Redis]\nConnectTimeout = \"250ms\"\nCommandTimeout = \"1m\"\n",
        file,
    )
    .unwrap();
    let capacity = config.common.capacity_options();
    assert_eq!((capacity.timeout, capacity.refresh), (Duration::from_millis(1500), Duration::from_millis(500)));
    let redis = config.common.db.redis.timeouts();
    assert_eq!((redis.connect, redis.command), (Duration::from_millis(250), Duration::from_secs(60)));
    // Defaults unchanged.
    let defaults = Config::parse("", file).unwrap();
    let capacity = defaults.common.capacity_options();
    assert_eq!((capacity.timeout, capacity.refresh), (Duration::from_secs(5), Duration::from_secs(2)));
    assert_eq!(defaults.common.db.redis.timeouts(), RedisTimeouts::default());
    assert_eq!(RedisTimeouts::default().connect, Duration::from_millis(1500));
    assert_eq!(RedisTimeouts::default().command, Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_uses_the_configured_redis_timeouts_and_a_stalled_redis_costs_one_timeout_not_one_per_connection() {
    let redis = PrivateRedis::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let pid = redis.pid().expect("running");
    let home = TestHome::init();
    home.set_config("Common.DB.Driver", "redis");
    home.set_config("Common.DB.Redis.Addr", redis.url());
    home.set_config("Common.DB.Redis.Prefix", "liveness-timeouts");
    home.set_config("Common.DB.Redis.CommandTimeout", "600ms");
    home.set_config("Common.DB.Redis.ConnectTimeout", "300ms");
    let daemon = home.start();
    let sid = serde_json::json!({"Miner": 1000, "Number": 1});
    let found = daemon.call::<Value>("Venus.FindSectorInAllStates", rpc_params![sid.clone()]).await;
    assert!(matches!(&found, Err(jsonrpsee::core::ClientError::Call(e)) if e.code() == 11001), "{found:?}");

    signal(pid, "-STOP");
    let started = Instant::now();
    let call = daemon.call::<Option<Value>>("Venus.FindSectorInAllStates", rpc_params![sid.clone()]);
    let err =
        within("a call while Redis is stopped", Duration::from_secs(30), call).await.expect_err("Redis is stopped");
    let waited = started.elapsed();
    signal(pid, "-CONT");
    let message = err.to_string();
    eprintln!("FindSectorInAllStates with Redis stopped, timeouts 600ms / 300ms: failed in {waited:?}: {message}");
    assert!(message.contains(&format!("Redis at 127.0.0.1:{}", redis.port)), "{message}");
    // One command on a pooled connection (CommandTimeout), then a new connection, whose handshake has the
    // ConnectTimeout per step: under 2 s here; at least 4.5 s with the defaults (and before the pool was dropped
    // whole on a failed check, one CommandTimeout per pooled connection).
    assert!(
        message.contains("timeout 300ms, [Common.DB.Redis] ConnectTimeout") || message.contains("within 600ms"),
        "{message}"
    );
    assert!(waited < Duration::from_secs(4), "well under the defaults' 4.5 s: {waited:?}");
    // Back by itself once Redis runs again: the store answers "not found" (11001), not a store error.
    let found = within(
        "a call after Redis resumed",
        Duration::from_secs(30),
        daemon.call::<Value>("Venus.FindSectorInAllStates", rpc_params![sid]),
    )
    .await;
    assert!(matches!(&found, Err(jsonrpsee::core::ClientError::Call(e)) if e.code() == 11001), "{found:?}");
    assert_eq!(stop_within(daemon, Duration::from_secs(40)), Some(0));
}
