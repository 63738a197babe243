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

/// Adds a persist store backed by the FileStore plugin `plugin` before the default one.
fn add_plugin_persist_store(home: &TestHome, name: &str, plugin: &str) {
    let path = home.path().join(name).display().to_string();
    home.edit_config(|doc| {
        let common = doc.get_mut("Common").and_then(|c| c.as_table_mut()).expect("[Common]");
        let stores = common.get_mut("PersistStores").and_then(|s| s.as_array_mut()).expect("PersistStores");
        let mut store = toml::Table::new();
        store.insert("Name".into(), name.into());
        store.insert("Path".into(), path.into());
        store.insert("PluginName".into(), plugin.into());
        stores.insert(0, toml::Value::Table(store));
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_whose_instance_info_never_returns_does_not_freeze_reservations_or_listings() {
    let home = TestHome::init();
    home.install_plugins(&["hung-store"]);
    add_plugin_persist_store(&home, "hung", "hung-store");
    let daemon = home.start();
    let limit = Duration::from_secs(12); // the 5 s capacity timeout, with room for a loaded machine
    let started = Instant::now();

    let spec = json!({"AllowedMiners": [], "AllowedProofTypes": []});
    let allocated: Vec<Value> =
        within("AllocateSectorsBatch", limit, daemon.call("Venus.AllocateSectorsBatch", rpc_params![spec, 3]))
            .await
            .unwrap();
    let reservations = allocated.iter().map(|sector| {
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
        daemon.call("Venus.StoreReserveSpace", rpc_params![sid(99), 1024, vec!["hung"]]),
    )
    .await
    .unwrap();
    assert!(only_hung.is_none());

    // An absurd size is refused, naming the limit.
    let err = within(
        "a huge reservation",
        limit,
        daemon.call::<Option<Value>>("Venus.StoreReserveSpace", rpc_params![sid(98), u64::MAX, Vec::<String>::new()]),
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
