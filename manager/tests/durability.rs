//! Durability guards against the real `damocles-manager` binary: sector number ranges and late worker calls over
//! JSON-RPC, and the start-up refusals that keep numbers from being handed out twice (see `docs/sectors.md`).

mod common;

use common::daemon::{TestHome, refused_start};
use common::private_redis::{PrivateRedis, redis_home};
use jsonrpsee::core::ClientError;
use jsonrpsee::rpc_params;
use serde_json::{Value, json};

fn error_code(err: ClientError) -> (i32, String) {
    match err {
        ClientError::Call(obj) => (obj.code(), obj.message().to_string()),
        other => panic!("expected a JSON-RPC error, got {other}"),
    }
}

fn miner(actor: u64, sector: toml::Table) -> toml::Value {
    let mut entry = toml::Table::new();
    entry.insert("Actor".into(), (actor as i64).into());
    entry.insert("SealProof".into(), 8i64.into());
    entry.insert("Sector".into(), toml::Value::Table(sector));
    toml::Value::Table(entry)
}

fn table(pairs: &[(&str, toml::Value)]) -> toml::Table {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// `[Miners.Sector]` over RPC: a disabled miner is never picked, a miner starts above its floor, a miner whose
/// range is full is skipped, and `AllocateSector` answers null once no miner can allocate, also after a restart.
#[tokio::test(flavor = "multi_thread")]
async fn allocation_follows_the_miners_sector_ranges_across_restarts() {
    let home = TestHome::init();
    home.set_config(
        "Miners",
        toml::Value::Array(vec![
            miner(1000, table(&[("Enabled", false.into())])),
            miner(
                1001,
                table(&[("InitNumber", 5i64.into()), ("MinNumber", 100i64.into()), ("MaxNumber", 102i64.into())]),
            ),
            miner(1002, table(&[("InitNumber", 7i64.into()), ("MaxNumber", 8i64.into()), ("Verbose", true.into())])),
        ]),
    );
    let spec = json!({"AllowedMiners": [], "AllowedProofTypes": []});
    let mut handed_out = Vec::new();
    for round in 0..2 {
        let daemon = home.start();
        let batch: Vec<Value> =
            daemon.call("Venus.AllocateSectorsBatch", rpc_params![spec.clone(), 2]).await.expect("batch");
        handed_out
            .extend(batch.iter().map(|s| (s["ID"]["Miner"].as_u64().unwrap(), s["ID"]["Number"].as_u64().unwrap())));
        if round == 0 {
            assert_eq!(handed_out, [(1001, 101), (1001, 102)], "MinNumber wins over InitNumber; 1000 is disabled");
            // 1001 is full (102 = MaxNumber): the next goes to 1002, starting above its InitNumber.
            let one: Value = daemon.call("Venus.AllocateSector", rpc_params![spec.clone()]).await.expect("allocate");
            assert_eq!((one["ID"]["Miner"].as_u64(), one["ID"]["Number"].as_u64()), (Some(1002), Some(8)));
        } else {
            assert!(batch.is_empty(), "every range is full after the restart: {batch:?}");
            let none: Value = daemon.call("Venus.AllocateSector", rpc_params![spec.clone()]).await.expect("allocate");
            assert_eq!(none, Value::Null, "no miner can allocate");
            let only_disabled = json!({"AllowedMiners": [1000], "AllowedProofTypes": []});
            let none: Value = daemon.call("Venus.AllocateSector", rpc_params![only_disabled]).await.expect("allocate");
            assert_eq!(none, Value::Null, "a disabled miner is never picked");
        }
        assert_eq!(daemon.stop(), Some(0));
    }
}

/// A late `ReportAborted` (a worker that restarted) on a sector it already finalized answers 11001 and leaves the
/// record as it was, so the sealed sector does not become restorable without `forced`.
#[tokio::test(flavor = "multi_thread")]
async fn a_late_report_aborted_answers_11001_and_changes_nothing() {
    let home = TestHome::init();
    let daemon = home.start();
    let spec = json!({"AllowedMiners": [1000], "AllowedProofTypes": []});
    let allocated: Value = daemon.call("Venus.AllocateSector", rpc_params![spec]).await.expect("allocate");
    let sid = allocated["ID"].clone();
    let _: Value = daemon.call("Venus.ReportFinalized", rpc_params![sid.clone()]).await.expect("finalize");
    let before: Value = daemon.call("Venus.FindSectorInAllStates", rpc_params![sid.clone()]).await.expect("find");
    let late = daemon.call::<Value>("Venus.ReportAborted", rpc_params![sid.clone(), "late"]).await;
    let (code, message) = error_code(late.expect_err("late abort"));
    assert_eq!(code, 11001, "{message}");
    assert!(message.contains("not found among online sectors"), "{message}");
    let after: Value = daemon.call("Venus.FindSectorInAllStates", rpc_params![sid.clone()]).await.expect("find");
    assert_eq!(after, before);
    let refused = daemon.call::<Value>("Venus.RestoreSector", rpc_params![sid, false]).await;
    assert!(refused.is_err(), "a sealed sector that was never aborted needs `forced`");
    assert_eq!(daemon.stop(), Some(0));
}

/// The RocksDB directory vanishes after use (an unmounted volume, a wrong path after a migration): start-up is
/// refused with a message naming the directory, the identity expected and the flag; moving it back works;
/// `--adopt-db` is the explicit way to start on a new database.
#[tokio::test(flavor = "multi_thread")]
async fn a_rocksdb_directory_moved_away_after_use_is_refused_at_start() {
    let home = TestHome::init();
    let daemon = home.start();
    let spec = json!({"AllowedMiners": [], "AllowedProofTypes": []});
    let _: Value = daemon.call("Venus.AllocateSector", rpc_params![spec.clone()]).await.expect("allocate");
    assert_eq!(daemon.stop(), Some(0));
    let identity = std::fs::read_to_string(home.path().join("db-identity")).expect("the home records the identity");
    let id = serde_json::from_str::<Value>(&identity).expect("json")["Id"].as_str().expect("Id").to_string();

    let db = home.path().join("db");
    let moved = home.path().join("db.moved");
    std::fs::rename(&db, &moved).expect("move the database away");
    let stderr = refused_start(home.path(), &[]);
    assert!(stderr.contains(&format!("RocksDB at {}", db.display())), "{stderr}");
    assert!(stderr.contains(&id) && stderr.contains("not mounted") && stderr.contains("--adopt-db"), "{stderr}");

    std::fs::remove_dir_all(&db).ok();
    std::fs::rename(&moved, &db).expect("move the database back");
    let daemon = home.start();
    let next: Value = daemon.call("Venus.AllocateSector", rpc_params![spec.clone()]).await.expect("allocate");
    assert_eq!(next["ID"]["Number"], 2, "the old database is back: numbering continues");
    assert_eq!(daemon.stop(), Some(0));

    // The operator really wants a new database: the explicit flag, then normal starts again.
    std::fs::remove_dir_all(&db).expect("drop the database");
    refused_start(home.path(), &[]);
    let daemon = home.start_with(&["--adopt-db"]);
    assert_eq!(daemon.stop(), Some(0));
    let daemon = home.start();
    assert_eq!(daemon.stop(), Some(0));
    assert_ne!(std::fs::read_to_string(home.path().join("db-identity")).expect("identity"), identity);
}

/// A new home pointed at a database another home used is refused (the reverse of a lost database).
#[tokio::test(flavor = "multi_thread")]
async fn a_new_home_on_a_used_database_is_refused() {
    let first = TestHome::init();
    let daemon = first.start();
    let spec = json!({"AllowedMiners": [], "AllowedProofTypes": []});
    let _: Value = daemon.call("Venus.AllocateSector", rpc_params![spec]).await.expect("allocate");
    assert_eq!(daemon.stop(), Some(0));
    let second = TestHome::init();
    second.set_config("Common.DB.RocksDB.Dir", first.path().join("db").display().to_string());
    let stderr = refused_start(second.path(), &[]);
    assert!(stderr.contains("has no record of any database") && stderr.contains("--adopt-db"), "{stderr}");
    // Taking the database over is explicit; the database keeps its identity, so the first home still agrees.
    let daemon = second.start_with(&["--adopt-db"]);
    assert_eq!(daemon.stop(), Some(0));
    let daemon = first.start();
    assert_eq!(daemon.stop(), Some(0));
}

/// `daemon run --home DIR` never initializes DIR: not when it is missing, not when it is empty (a mount point
/// without its volume). Nothing is created there.
#[test]
fn daemon_run_refuses_a_home_that_is_missing_or_empty() {
    let temp = tempfile::tempdir().expect("temp dir");
    let missing = temp.path().join("not-mounted");
    let stderr = refused_start(&missing, &[]);
    assert!(stderr.contains("does not exist") && stderr.contains("daemon init"), "{stderr}");
    assert!(!missing.exists(), "refusing must not create the home");
    let empty = temp.path().join("mount-point");
    std::fs::create_dir(&empty).expect("mkdir");
    let stderr = refused_start(&empty, &[]);
    assert!(stderr.contains("daemon init"), "{stderr}");
    assert_eq!(std::fs::read_dir(&empty).expect("read dir").count(), 0, "refusing must not initialize");
}

/// Redis without append-only persistence is refused; `RequirePersistence = false` lets it run (with a warning),
/// and when that server then restarts empty, the database identity check refuses the restart.
#[tokio::test(flavor = "multi_thread")]
async fn redis_without_persistence_is_refused_and_its_data_loss_caught_at_restart() {
    let mut redis = PrivateRedis::start(&["--appendonly", "no"]);
    let home = redis_home(&redis, "durability");
    let stderr = refused_start(home.path(), &[]);
    assert!(stderr.contains(&format!("127.0.0.1:{}", redis.port)) && stderr.contains("appendonly"), "{stderr}");
    assert!(stderr.contains("RequirePersistence = false"), "{stderr}");

    home.set_config("Common.DB.Redis.RequirePersistence", false);
    let daemon = home.start();
    assert!(daemon.log().contains("RequirePersistence = false"), "a warning at every start: {}", daemon.log());
    let spec = json!({"AllowedMiners": [], "AllowedProofTypes": []});
    let batch: Vec<Value> = daemon.call("Venus.AllocateSectorsBatch", rpc_params![spec, 3]).await.expect("allocate");
    assert_eq!(batch.len(), 3);
    assert_eq!(daemon.stop(), Some(0));

    redis.restart(); // no persistence: comes back empty
    let stderr = refused_start(home.path(), &[]);
    assert!(stderr.contains(&format!("Redis at 127.0.0.1:{}, prefix \"durability\" is empty", redis.port)), "{stderr}");
    assert!(stderr.contains("appendonly no") && stderr.contains("--adopt-db"), "{stderr}");
}

/// An evicting `maxmemory-policy` is refused whatever `RequirePersistence` says; `appendfsync everysec` starts,
/// with a warning naming the window of writes a power loss can take.
#[tokio::test(flavor = "multi_thread")]
async fn redis_that_may_evict_is_refused_and_weaker_fsync_is_warned_about() {
    let evicting = PrivateRedis::start(&["--appendonly", "yes", "--maxmemory-policy", "allkeys-lru"]);
    let home = redis_home(&evicting, "durability");
    home.set_config("Common.DB.Redis.RequirePersistence", false);
    let stderr = refused_start(home.path(), &[]);
    assert!(stderr.contains("allkeys-lru") && stderr.contains("noeviction"), "{stderr}");

    let everysec = PrivateRedis::start(&["--appendonly", "yes", "--appendfsync", "everysec"]);
    let home = redis_home(&everysec, "durability");
    let daemon = home.start();
    assert!(daemon.log().contains("about the last second"), "{}", daemon.log());
    assert_eq!(daemon.stop(), Some(0));
}

/// Two managers on one Redis prefix: the second is refused, naming the first (host, pid, since when). A manager
/// killed with SIGKILL does not delay its own restart (its pid is gone), and a clean stop releases the lease.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_manager_on_one_redis_prefix_is_refused() {
    let redis = PrivateRedis::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let first = redis_home(&redis, "durability");
    let daemon = first.start();
    let second = redis_home(&redis, "durability");
    let stderr = refused_start(second.path(), &[]);
    assert!(stderr.contains("is in use by the manager on host"), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", daemon.child.id())) && stderr.contains("Prefix"), "{stderr}");

    daemon.kill();
    let restarted = std::time::Instant::now();
    let daemon = first.start();
    assert!(restarted.elapsed() < std::time::Duration::from_secs(20), "the restart waited for the lease to expire");
    assert_eq!(daemon.stop(), Some(0));
    // Released at stop: another manager may take the prefix over (after --adopt-db, since its home is new).
    let daemon = second.start_with(&["--adopt-db"]);
    assert_eq!(daemon.stop(), Some(0));
}

/// RocksDB's own lock keeps a second manager off a database directory.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_manager_on_one_rocksdb_directory_is_refused() {
    let home = TestHome::init();
    let daemon = home.start();
    let second = TestHome::init();
    second.set_config("Common.DB.RocksDB.Dir", home.path().join("db").display().to_string());
    let stderr = refused_start(second.path(), &[]);
    assert!(stderr.contains("LOCK") && stderr.contains(&home.path().join("db").display().to_string()), "{stderr}");
    assert_eq!(daemon.stop(), Some(0));
}

/// Issue 17 item 9: with `MinNumber` near 2^63 the daemon handed out numbers above 2^63−1, Filecoin's
/// `abi.MaxSectorNumber` (`MaxNumber` unset meant `u64::MAX`). Now the limit is 2^63−1 by default, and a range
/// that cannot hold a number is refused at start-up naming the key.
#[tokio::test(flavor = "multi_thread")]
async fn no_sector_number_above_filecoins_limit_is_handed_out() {
    let home = TestHome::init();
    let set_min = |min: i64| {
        home.edit_config(|doc| {
            let miner = doc["Miners"].as_array_mut().expect("[[Miners]]")[0].as_table_mut().expect("a table");
            let mut sector = toml::Table::new();
            sector.insert("MinNumber".into(), min.into());
            miner.insert("Sector".into(), toml::Value::Table(sector));
        })
    };
    set_min(i64::MAX - 2);
    let daemon = home.start();
    let spec = json!({"AllowedMiners": [], "AllowedProofTypes": []});
    let mut numbers = Vec::new();
    for _ in 0..2 {
        let sector: Value = daemon.call("Venus.AllocateSector", rpc_params![spec.clone()]).await.expect("allocate");
        numbers.push(sector["ID"]["Number"].as_u64().expect("number"));
    }
    assert_eq!(numbers, [i64::MAX as u64 - 1, i64::MAX as u64]);
    let none: Value = daemon.call("Venus.AllocateSector", rpc_params![spec.clone()]).await.expect("allocate");
    assert_eq!(none, Value::Null, "2^63 is never handed out");
    let batch: Vec<Value> = daemon.call("Venus.AllocateSectorsBatch", rpc_params![spec, 1]).await.expect("batch");
    assert!(batch.is_empty(), "{batch:?}");
    assert_eq!(daemon.stop(), Some(0));

    set_min(i64::MAX);
    let stderr = refused_start(home.path(), &[]);
    assert!(stderr.contains("Miners[0].Sector.MinNumber") && stderr.contains("2^63-1"), "{stderr}");
}
