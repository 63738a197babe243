//! Liveness of the real daemon process under hung dependencies, hostile clients and outages: every call answers
//! within a bound, or fails fast naming what is wrong. Loopback only; every wait is bounded.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::bounded::{stop_within, within};
use common::daemon::TestHome;
use jsonrpsee::rpc_params;
use serde_json::{Value, json};

fn sid(number: u64) -> Value {
    json!({"Miner": 1000, "Number": number})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_whose_instance_info_never_returns_does_not_freeze_reservations_or_listings() {
    let home = TestHome::init();
    home.install_plugins(&["hung-store"]);
    home.add_plugin_persist_store("hung", "hung-store");
    let daemon = home.start();
    let limit = Duration::from_secs(12); // the 5 s capacity timeout, with room for a loaded machine
    let started = Instant::now();

    let spec = json!({"AllowedMiners": [], "AllowedProofTypes": []});
    let allocated: Vec<Value> =
        within("AllocateSectorsBatch", limit, daemon.call("Venus.AllocateSectorsBatch", rpc_params![spec, 5]))
            .await
            .unwrap();
    // Only a sector in progress reserves space (Go's rule): three for the parallel reservations, two more below.
    let reservations = allocated[..3].iter().map(|sector| {
        let id = sector["ID"].clone();
        async {
            within(
                "StoreReserveSpace",
                limit,
                daemon.call::<Option<Value>>("Venus.StoreReserveSpace", rpc_params![id, 1024, Vec::<String>::new()]),
            )
            .await
            .unwrap()
        }
    });
    let list = within("StoreList", limit, daemon.call::<Vec<Value>>("Venus.StoreList", rpc_params![]));
    let basic =
        within("StoreBasicInfo", limit, daemon.call::<Option<Value>>("Venus.StoreBasicInfo", rpc_params!["persist"]));
    let (reserved, list, basic) = tokio::join!(futures::future::join_all(reservations), list, basic);
    eprintln!(
        "three reservations, StoreList and StoreBasicInfo beside a hung store answered in {:?}",
        started.elapsed()
    );
    for store in reserved {
        assert_eq!(store.expect("the healthy store takes the reservation")["Name"], "persist");
    }
    assert_eq!(basic.unwrap().expect("known store")["Name"], "persist");
    let list = list.unwrap();
    let hung = list.iter().find(|s| s["Name"] == "hung").expect("hung store listed");
    assert_eq!(hung["Available"], false, "{hung}");
    assert!(hung["Error"].as_str().unwrap_or("").contains("instance_info has not answered"), "{hung}");
    let good = list.iter().find(|s| s["Name"] == "persist" && s["Kind"] == "persist").expect("good store listed");
    assert_eq!(good["Available"], true, "{good}");
    // Listed concurrently, the reservations may not have been made yet; now they have, and a listing answers
    // at once (the hung store's state is cached).
    let started = Instant::now();
    let list: Vec<Value> = within("StoreList", limit, daemon.call("Venus.StoreList", rpc_params![])).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "StoreList took {:?}", started.elapsed());
    let good = list.iter().find(|s| s["Name"] == "persist" && s["Kind"] == "persist").expect("good store listed");
    assert_eq!(good["Reserved"], 3 * 1024, "{good}");

    // Asking for the hung store only: answered (no store), not hung.
    let only_hung: Option<Value> = within(
        "StoreReserveSpace on the hung store",
        limit,
        daemon.call("Venus.StoreReserveSpace", rpc_params![allocated[3]["ID"].clone(), 1024, vec!["hung"]]),
    )
    .await
    .unwrap();
    assert!(only_hung.is_none());

    // An absurd size is refused, naming the limit.
    let err = within(
        "a huge reservation",
        limit,
        daemon.call::<Option<Value>>(
            "Venus.StoreReserveSpace",
            rpc_params![allocated[4]["ID"].clone(), u64::MAX, Vec::<String>::new()],
        ),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("exceeds the limit"), "{err}");

    // The operator's view says the same.
    let home_dir = home.path().to_path_buf();
    let util = tokio::task::spawn_blocking(move || {
        Command::new(common::daemon::binary()).arg("--home").arg(home_dir).args(["util", "store", "list"]).output()
    });
    let out = within("util store list", limit, util).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("\"Available\": false"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(stop_within(daemon, Duration::from_secs(40)), Some(0));
}

// ---- SyncSectorState delivery: hung hooks, poison events, shutdown ----

/// The `Plugins.List` entry of `name`.
async fn plugin_entry(daemon: &common::daemon::RunningDaemon, name: &str) -> Value {
    let plugins: Vec<Value> =
        within("Plugins.List", Duration::from_secs(10), daemon.call("Plugins.List", rpc_params![])).await.unwrap();
    plugins.into_iter().find(|p| p["Name"] == name).unwrap_or_else(|| panic!("{name} not listed"))
}

/// Polls `check` until it returns `Some`, at most `limit`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn util(home: &TestHome, args: &[&str]) -> (bool, String) {
    let out =
        Command::new(common::daemon::binary()).arg("--home").arg(home.path()).arg("util").args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn report(next: &str) -> Value {
    json!({"Worker": {"Instance": "w1", "Location": "/x"}, "StateChange": {"Prev": "A", "Next": next, "Event": "Go"}, "Failure": null})
}

/// A daemon with the `stuck-sync` plugin whose hooks hang (its `hang` file exists), a sector allocated and 20
/// state changes made behind the hung hook, each answered within a second.
async fn daemon_with_a_hung_hook(home: &TestHome) -> common::daemon::RunningDaemon {
    home.install_plugins(&["stuck-sync"]);
    home.set_config("Common.Plugins.SyncHungAfterSecs", 2);
    home.set_config("Common.Plugins.SyncBacklogWarning", 10);
    std::fs::write(home.plugins_dir().join("hang"), b"").unwrap();
    let daemon = home.start();
    let spec = json!({"AllowedMiners": [], "AllowedProofTypes": []});
    let sector: Value = daemon.call("Venus.AllocateSector", rpc_params![spec]).await.unwrap();
    let mut worst = Duration::ZERO;
    for n in 0..20 {
        let started = Instant::now();
        let _: Value = within(
            "ReportState behind a hung hook",
            Duration::from_secs(10),
            daemon.call("Venus.ReportState", rpc_params![sector["ID"].clone(), report(&format!("S{n}"))]),
        )
        .await
        .unwrap();
        worst = worst.max(started.elapsed());
    }
    assert!(worst < Duration::from_secs(1), "a state change took {worst:?} behind a hung hook");
    daemon
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_sync_hook_shows_hung_with_its_start_and_backlog_and_sigterm_still_exits() {
    let home = TestHome::init();
    let daemon = daemon_with_a_hung_hook(&home).await;
    let lag = eventually("stuck-sync shown hung", Duration::from_secs(30), || async {
        let lag = plugin_entry(&daemon, "stuck-sync").await["SyncLag"].clone();
        (lag["State"] == "hung" && lag["Pending"].as_u64().unwrap_or(0) >= 21).then_some(lag)
    })
    .await;
    let since = lag["HungSince"].as_u64().expect("HungSince");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(since <= now && now - since < 60, "{lag}");
    let event = lag["HungEvent"].as_u64().expect("HungEvent");
    assert!(daemon.log().contains("backlog crossed a warning threshold"), "{}", daemon.log());
    let (ok, listed) = util(&home, &["plugins", "list"]);
    assert!(ok && listed.contains("hung"), "{listed}");

    // A skip cannot take the event from under a running call.
    let (ok, out) = util(&home, &["plugins", "skip", "stuck-sync", &event.to_string()]);
    assert!(!ok && out.contains("has not returned"), "{out}");

    let started = Instant::now();
    assert_eq!(stop_within(daemon, Duration::from_secs(30)), Some(0));
    eprintln!("SIGTERM with a hung SyncSectorState hook: exited in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_during_shutdown_exits_at_once_naming_the_hung_hook() {
    let home = TestHome::init();
    let mut daemon = daemon_with_a_hung_hook(&home).await;
    let pid = daemon.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    assert!(daemon.child.try_wait().unwrap().is_none(), "still shutting down (the hung hook holds delivery 5 s)");
    let sent = Instant::now();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let status = loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            break status;
        }
        assert!(sent.elapsed() < Duration::from_secs(2), "the second signal did not end the process at once");
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("second signal: exited {:?} after it", sent.elapsed());
    assert_eq!(status.code(), Some(130));
    let log = daemon.log();
    assert!(log.contains("received again: exiting now") && log.contains("stuck-sync (event"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_skips_a_poison_event_after_it_is_saved_and_delivery_goes_on() {
    let home = TestHome::init();
    home.install_plugins(&["stuck-sync"]);
    std::fs::write(home.plugins_dir().join("fail-777"), b"").unwrap();
    let daemon = home.start();
    let poison = json!({"ID": sid(777), "SectorType": 8, "Finalized": true});
    let imported: bool = daemon.call("Venus.ImportSector", rpc_params!["offline", poison, false]).await.unwrap();
    assert!(imported);
    let spec = json!({"AllowedMiners": [], "AllowedProofTypes": []});
    let behind: Value = daemon.call("Venus.AllocateSector", rpc_params![spec]).await.unwrap();
    let behind = behind["ID"]["Number"].as_u64().unwrap();

    let error = eventually("stuck-sync failing on the poison event", Duration::from_secs(30), || async {
        let lag = plugin_entry(&daemon, "stuck-sync").await["SyncLag"].clone();
        (lag["State"] == "failing").then(|| lag["LastError"].as_str().unwrap_or("").to_string())
    })
    .await;
    let seq: u64 = error
        .strip_prefix("event ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|seq| seq.parse().ok())
        .unwrap_or_else(|| panic!("no seq in {error:?}"));

    let (ok, out) = util(&home, &["plugins", "skip", "stuck-sync", &(seq + 1).to_string()]);
    assert!(!ok && out.contains(&format!("stuck on event {seq}")), "{out}");
    let (ok, out) = util(&home, &["plugins", "skip", "nosuch", &seq.to_string()]);
    assert!(!ok && out.contains("no SyncSectorState plugin named"), "{out}");

    let (ok, out) = util(&home, &["plugins", "skip", "stuck-sync", &seq.to_string()]);
    assert!(ok, "{out}");
    let saved = home.path().join("skipped-events").join(format!("stuck-sync-{seq}.json"));
    assert!(out.contains(&saved.display().to_string()), "{out}");
    let event = std::fs::read_to_string(&saved).unwrap();
    assert!(event.contains("777"), "the saved event is the poison one: {event}");
    assert!(daemon.log().contains("skipped a sync event at the operator's request"));

    let journal = home.plugins_dir().join("stuck-sync.log");
    eventually("the events behind the poison one delivered", Duration::from_secs(30), || async {
        let text = std::fs::read_to_string(&journal).unwrap_or_default();
        text.lines().any(|l| l == format!("OnInit {behind}")).then_some(())
    })
    .await;
    assert!(!std::fs::read_to_string(&journal).unwrap().contains("777"));
    assert_eq!(stop_within(daemon, Duration::from_secs(30)), Some(0));
}
