use super::*;

const FILE: &str = "/etc/damocles/sector-manager.cfg";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new(FILE))
}

fn error_text(text: &str) -> String {
    match parse(text) {
        Ok(config) => panic!("expected an error, parsed {config:?}"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn default_text_parses_to_default_for_home() {
    let home = Path::new("/home/op/.damocles-manager");
    let parsed = Config::parse(&default_config_text(home), &home.join("sector-manager.cfg")).unwrap();
    assert_eq!(parsed, Config::default_for_home(home));
}

#[test]
fn default_text_survives_a_home_with_quotes_and_backslashes() {
    let home = Path::new(r#"/tmp/we "ird"\dir"#);
    let parsed = Config::parse(&default_config_text(home), Path::new("/elsewhere/x.cfg")).unwrap();
    assert_eq!(parsed, Config::default_for_home(home));
}

#[test]
fn empty_file_takes_all_defaults() {
    let config = parse("").unwrap();
    assert_eq!(config.common.db.driver, DbDriver::RocksDb);
    assert_eq!(config.common.db.rocksdb.dir, Path::new("/etc/damocles/db"));
    assert_eq!(config.common.db.redis, RedisConfig::default());
    assert_eq!(config.common.plugins.dir, PathBuf::new());
    assert_eq!(config.api.listen, "127.0.0.1:1789");
    assert!(config.miners.is_empty());
}

#[test]
fn unknown_key_error_names_the_key_and_the_file() {
    let message = error_text("[Common.DB]\nDrvier = \"redis\"\n");
    assert!(message.contains("Drvier"), "{message}");
    assert!(message.contains(FILE), "{message}");
}

#[test]
fn unknown_key_in_a_store_is_an_error() {
    let message = error_text("[[Common.PieceStores]]\nName = \"a\"\nPath = \"/a\"\nReadonly = true\n");
    assert!(message.contains("Readonly"), "{message}");
}

#[test]
fn unsupported_driver_lists_the_supported_ones() {
    let message = error_text("[Common.DB]\nDriver = \"mysql\"\n");
    assert!(message.contains("mysql") && message.contains("Driver"), "{message}");
    assert!(message.contains("rocksdb, redis, plugin"), "{message}");
    assert!(message.contains(FILE), "{message}");
}

#[test]
fn driver_names_ignore_case() {
    assert_eq!(parse("[Common.DB]\nDriver = \"RocksDB\"\n").unwrap().common.db.driver, DbDriver::RocksDb);
}

#[test]
fn plugin_driver_without_plugin_name_is_an_error() {
    let message = error_text("[Common.DB]\nDriver = \"plugin\"\n");
    assert!(message.contains("Common.DB.Plugin.PluginName") && message.contains(FILE), "{message}");
    let ok = parse("[Common.DB]\nDriver = \"plugin\"\n[Common.DB.Plugin]\nPluginName = \"memdb\"\n").unwrap();
    assert_eq!(ok.common.db.plugin.plugin_name, "memdb");
}

#[test]
fn duplicate_store_names_across_kinds_are_an_error() {
    let text = "[[Common.PieceStores]]\nName = \"a\"\nPath = \"/a\"\n\
        [[Common.PersistStores]]\nName = \"a\"\nPath = \"/b\"\n";
    let message = error_text(text);
    assert!(message.contains("Common.PersistStores[0].Name") && message.contains("Common.PieceStores[0]"));
    assert!(message.contains(FILE), "{message}");
}

#[test]
fn store_name_defaults_to_the_path_as_in_go() {
    let config = parse("[[Common.PersistStores]]\nPath = \"/mnt/a\"\n").unwrap();
    assert_eq!(config.common.persist_stores[0].name, "/mnt/a");
    assert!(error_text("[[Common.PersistStores]]\nName = \"a\"\n").contains("Common.PersistStores[0].Path"));
    let nameless_plugin = error_text("[[Common.PersistStores]]\nPluginName = \"s3\"\n");
    assert!(nameless_plugin.contains("Common.PersistStores[0].Name"), "{nameless_plugin}");
    assert!(parse("[[Common.PersistStores]]\nName = \"a\"\nPluginName = \"s3\"\n").is_ok());
}

#[test]
fn the_legacy_plugin_key_is_accepted_empty_and_refused_otherwise() {
    assert!(parse("[[Common.PieceStores]]\nPath = \"/p\"\nPlugin = \"\"\n").is_ok());
    let message = error_text("[[Common.PieceStores]]\nPath = \"/p\"\nPlugin = \"/x/objstore.so\"\n");
    assert!(message.contains("Common.PieceStores[0].Plugin") && message.contains("PluginName"), "{message}");
}

#[test]
fn duplicate_miner_actor_is_an_error() {
    let message = error_text("[[Miners]]\nActor = 7\nSealProof = 8\n[[Miners]]\nActor = 7\nSealProof = 9\n");
    assert!(message.contains("Miners[1].Actor"), "{message}");
}

#[test]
fn listen_must_be_a_socket_address() {
    assert!(error_text("[API]\nListen = \"localhost\"\n").contains("API.Listen"));
    assert_eq!(parse("[API]\nListen = \"[::1]:2000\"\n").unwrap().api.listen, "[::1]:2000");
}

#[test]
fn weight_zero_counts_as_one() {
    let store = StoreEntry { weight: 0, ..StoreEntry::default() };
    assert_eq!(store.effective_weight(), 1);
    assert_eq!(StoreEntry { weight: 5, ..store }.effective_weight(), 5);
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let text = "[Common.Plugins]\nDir = \"p\"\n[Common.DB.RocksDB]\nDir = \"../d\"\n\
        [[Common.PieceStores]]\nName = \"a\"\nPath = \"a\"\n\
        [[Common.PersistStores]]\nName = \"b\"\nPath = \"bucket/x\"\nPluginName = \"s3\"\n";
    let config = parse(text).unwrap();
    assert_eq!(config.common.plugins.dir, Path::new("/etc/damocles/p"));
    assert_eq!(config.common.db.rocksdb.dir, Path::new("/etc/damocles/../d"));
    assert_eq!(config.common.piece_stores[0].path, "/etc/damocles/a");
    assert_eq!(config.common.persist_stores[0].path, "bucket/x", "plugin store paths are left alone");
}

#[test]
fn every_toml_example_in_the_docs_parses() {
    let docs = include_str!("../../../docs/config.md");
    let blocks: Vec<&str> = docs.split("```toml\n").skip(1).filter_map(|rest| rest.split("```").next()).collect();
    assert!(blocks.len() >= 4, "expected examples in docs/config.md");
    for block in blocks {
        if let Err(err) = parse(block) {
            panic!("example in docs/config.md does not parse: {err}\n{block}");
        }
    }
}

#[test]
fn unknown_keys_in_implemented_sections_suggest_the_closest_key_with_the_line() {
    let message = error_text("[Common.DB]\nDriver = \"redis\"\nPrefx = 1\n[Common.DB.Redis]\nPrefx = \"x\"\n");
    assert!(message.contains("Prefx"), "{message}");
    let message = error_text("[[Common.PersistStores]]\nPath = \"/a\"\nreadonly = true\n");
    assert!(message.contains("line 3") && message.contains("did you mean `ReadOnly`?"), "{message}");
    let message = error_text("[Common.Provng]\nParallelCheckLimit = 1\n");
    assert!(message.contains("did you mean `Proving`?"), "{message}");
    let message = error_text("[API]\nListn = \"127.0.0.1:1\"\n");
    assert!(message.contains("did you mean `Listen`?"), "{message}");
}

#[test]
fn a_parse_error_is_stated_once() {
    let message = error_text("[Common.DB]\nDrvier = \"redis\"\n");
    assert_eq!(message.matches("unknown field `Drvier`").count(), 1, "{message}");
    let err = parse("[Common.DB]\nDrvier = \"redis\"\n").unwrap_err();
    assert!(std::error::Error::source(&err).is_none(), "the message already holds the cause");
}

const GO_DEFAULT: &str = include_str!("../../tests/data/go-default.cfg");
const GO_EVERY_KEY: &str = include_str!("../../tests/data/go-every-key.cfg");

#[test]
fn the_go_default_config_loads_and_names_each_ignored_section_once() {
    let config = parse(GO_DEFAULT).unwrap();
    assert_eq!(config.common.db.driver, DbDriver::RocksDb, "Driver is commented out, so ours applies");
    assert!(config.common.piece_stores.is_empty() && config.common.persist_stores.is_empty());
    assert!(config.miners.is_empty(), "the example miner has no Actor");
    let warnings = config.warnings.join("\n");
    for name in ["[Common.API]", "[Common.Proving]", "[Common.DB.Badger]"] {
        assert_eq!(warnings.matches(name).count(), 1, "{name} named once in:\n{warnings}");
    }
    assert!(warnings.contains("ignored: [Common.Proving] — not supported by damocles-rs"), "{warnings}");
    assert!(warnings.contains("Common.PieceStores[0] sets neither Name, Path nor PluginName"), "{warnings}");
    assert!(warnings.contains("[[Miners]] entry #0 has no Actor"), "{warnings}");
}

#[test]
fn a_go_config_with_every_key_set_needs_the_driver_the_seal_proof_and_distinct_store_names() {
    let message = error_text(GO_EVERY_KEY);
    assert!(message.contains("\"badger\"") && message.contains("rocksdb, redis, plugin"), "{message}");
    assert!(message.contains("Driver = \"rocksdb\"") && message.contains("ImportSector"), "{message}");

    let rocksdb = GO_EVERY_KEY.replace("Driver = \"badger\"", "Driver = \"rocksdb\"");
    let message = error_text(&rocksdb);
    assert!(message.contains("Miners[0].SealProof") && message.contains("t010086"), "{message}");
    assert!(message.contains("8 = 32GiB") && message.contains("SectorSize = \"32GiB\""), "{message}");

    let sized = rocksdb.replace("Actor = 10086", "Actor = 10086\nSectorSize = \"32GiB\"");
    // Go keeps piece and persist store names apart; here one name means one store, so the example's shared
    // "{store_name}" is the third thing to change.
    let message = error_text(&sized);
    assert!(message.contains("Common.PersistStores[0].Name") && message.contains("{store_name}"), "{message}");
    let (head, tail) = sized.split_at(sized.find("[[Common.PersistStores]]").unwrap());
    let complete = format!("{head}{}", tail.replacen("{store_name}", "{persist_name}", 1));
    let config = parse(&complete).unwrap();
    assert_eq!(config.miners[0].actor, 10086);
    assert_eq!(config.miners[0].seal_proof, 8);
    assert_eq!(config.common.piece_stores[0].plugin_name, "s3store");
    assert_eq!(config.common.persist_stores[0].allow_miners, [1, 2]);
    let warnings = config.warnings.join("\n");
    // Go's every-key example has every Go-only section but the Mongo ones.
    for name in super::ignored::IGNORED.into_iter().filter(|name| !name.contains("Mongo")) {
        assert_eq!(warnings.matches(&format!("ignored: {name}")).count(), 1, "{name} named once in:\n{warnings}");
    }
    // [Miners.Sector]'s number keys are implemented (number ranges): honoured, never reported as ignored.
    assert_eq!(warnings.matches("[Miners.Sector]").count(), 2, "{warnings}");
}

/// Issue 17 item 12: the docs said `[Miners.Sector]` was ignored (it is honoured) and did not say `EnableDeals`
/// and `LifetimeDays` were (they were silently unused). The docs' list and the code's are now one list: every
/// name in `docs/config.md`'s table is in `IGNORED` and vice versa, and a config setting each of them gets
/// exactly one warning per name, and no other ignored-warning.
#[test]
fn the_ignored_keys_of_the_docs_are_exactly_the_ones_the_code_ignores() {
    use std::collections::BTreeSet;
    let docs = include_str!("../../../docs/config.md");
    let table = docs
        .split("<!-- ignored-keys: begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- ignored-keys: end -->").next())
        .expect("docs/config.md marks its ignored-keys table");
    let documented: BTreeSet<&str> =
        table.lines().filter_map(|line| line.trim().strip_prefix("| `")?.split('`').next()).collect();
    let code: BTreeSet<&str> = super::ignored::IGNORED.into_iter().collect();
    assert_eq!(documented, code, "docs/config.md's ignored keys vs config::ignored::IGNORED");

    // A config that sets every ignored name: `[T] K` is key K of table T, `[T]` a table with one key.
    let mut tables: Vec<(String, Vec<String>)> = Vec::new();
    for name in code.iter() {
        let (table, key) = match name.split_once("] ") {
            Some((table, key)) => (format!("{table}]"), format!("{key} = false")),
            None => (name.to_string(), "Enable = false".to_string()),
        };
        match tables.iter_mut().find(|(t, _)| *t == table) {
            Some((_, keys)) => keys.push(key),
            None => tables.push((table, vec![key])),
        }
    }
    tables.sort_by_key(|(table, _)| table.starts_with("[Miners"));
    let mut text = String::new();
    let mut miner_written = false;
    for (table, keys) in &tables {
        if table.starts_with("[Miners") && !miner_written {
            text.push_str("[[Miners]]\nActor = 1000\nSealProof = 8\n");
            miner_written = true;
        }
        text.push_str(&format!("{table}\n{}\n", keys.join("\n")));
    }
    let config = parse(&text).unwrap_or_else(|err| panic!("{err}\n{text}"));
    let warned: BTreeSet<&str> = config
        .warnings
        .iter()
        .filter_map(|w| w.strip_prefix("ignored: ")?.strip_suffix(" — not supported by damocles-rs"))
        .collect();
    assert_eq!(warned, code, "the warnings of a config setting every ignored name:\n{text}");
    assert_eq!(config.warnings.len(), code.len(), "{:?}", config.warnings);
}

#[test]
fn go_only_drivers_are_refused_with_the_way_to_move() {
    for driver in ["badger", "Mongo"] {
        let message = error_text(&format!("[Common.DB]\nDriver = \"{driver}\"\n"));
        assert!(message.contains("supported drivers: rocksdb, redis, plugin"), "{message}");
        assert!(message.contains("KVStore plugin") && message.contains("Venus.ImportSector"), "{message}");
    }
    let message = error_text("[Common.MongoKVStore]\nEnable = true\nDSN = \"mongodb://x\"\n");
    assert!(message.contains("Common.MongoKVStore.Enable") && message.contains("rocksdb, redis, plugin"), "{message}");
    let off = parse("[Common.MongoKVStore]\nEnable = false\n").unwrap();
    assert!(off.warnings.iter().any(|w| w.contains("[Common.MongoKVStore]")));
}

#[test]
fn seal_proof_or_sector_size_is_required_and_checked() {
    let message = error_text("[[Miners]]\nActor = 1000\n");
    assert!(message.contains("Miners[0].SealProof") && message.contains("9 = 64GiB"), "{message}");
    assert!(error_text("[[Miners]]\nActor = 1000\nSealProof = 20\n").contains("not a registered seal proof"));
    assert!(error_text("[[Miners]]\nActor = 1000\nSectorSize = \"1TiB\"\n").contains("Miners[0].SectorSize"));
    let both = error_text("[[Miners]]\nActor = 1000\nSealProof = 8\nSectorSize = \"64GiB\"\n");
    assert!(both.contains("contradicts"), "{both}");
    let config =
        parse("[[Miners]]\nActor = 1\nSectorSize = \"2KiB\"\n[[Miners]]\nActor = 2\nSealProof = 13\n").unwrap();
    assert_eq!(config.miners.iter().map(|m| m.seal_proof).collect::<Vec<_>>(), [5, 13]);
    assert!(error_text("[[Miners]]\nSealProof = 8\n").contains("Miners[0].Actor"));
}

#[test]
fn trusted_networks_are_cidr_and_a_bad_one_names_the_line() {
    let config = parse("[API]\nTrustedNetworks = [\"10.0.0.0/8\", \"fd00::/8\"]\n").unwrap();
    assert_eq!(config.api.trusted_networks.len(), 2);
    assert!(config.api.trusted_networks[0].contains("10.9.8.7".parse().unwrap()));
    let message = error_text("[API]\nTrustedNetworks = [\"10.0.0.0/40\"]\n");
    assert!(message.contains("line 2") && message.contains("10.0.0.0/40") && message.contains(FILE), "{message}");
    assert!(parse("").unwrap().api.trusted_networks.is_empty(), "default: nobody is trusted");
}

#[test]
fn process_restart_keys_set_the_restart_policy_with_zero_counting_as_one() {
    let config = parse(
        "[Common.Plugins]\nProcessRestartBackoffMs = 250\nProcessRestartBackoffMaxMs = 4000\n\
         ProcessCrashLoopLimit = 3\nProcessCrashLoopWindowSecs = 90\n",
    )
    .unwrap();
    let policy = config.common.plugins.process_options().restart;
    assert_eq!(policy.backoff_initial, std::time::Duration::from_millis(250));
    assert_eq!(policy.backoff_max, std::time::Duration::from_millis(4000));
    assert_eq!((policy.crash_loop_limit, policy.crash_loop_window.as_secs()), (3, 90));
    let defaults = parse("").unwrap().common.plugins.process_options().restart;
    assert_eq!(defaults, crate::plugins::process::RestartPolicy::default(), "defaults match the documented ones");
    let zeros = parse(
        "[Common.Plugins]\nProcessRestartBackoffMs = 0\nProcessRestartBackoffMaxMs = 0\nProcessCrashLoopLimit = 0\n",
    )
    .unwrap()
    .common
    .plugins
    .process_options()
    .restart;
    assert_eq!((zeros.backoff_initial.as_millis(), zeros.backoff_max.as_millis(), zeros.crash_loop_limit), (1, 1, 1));
}
