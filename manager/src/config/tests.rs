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
fn store_without_name_or_path_is_an_error() {
    assert!(error_text("[[Common.PersistStores]]\nPath = \"/a\"\n").contains("Common.PersistStores[0].Name"));
    assert!(error_text("[[Common.PersistStores]]\nName = \"a\"\n").contains("Common.PersistStores[0].Path"));
    assert!(parse("[[Common.PersistStores]]\nName = \"a\"\nPluginName = \"s3\"\n").is_ok());
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
fn trusted_networks_are_cidr_and_a_bad_one_names_the_line() {
    let config = parse("[API]\nTrustedNetworks = [\"10.0.0.0/8\", \"fd00::/8\"]\n").unwrap();
    assert_eq!(config.api.trusted_networks.len(), 2);
    assert!(config.api.trusted_networks[0].contains("10.9.8.7".parse().unwrap()));
    let message = error_text("[API]\nTrustedNetworks = [\"10.0.0.0/40\"]\n");
    assert!(message.contains("line 2") && message.contains("10.0.0.0/40") && message.contains(FILE), "{message}");
    assert!(parse("").unwrap().api.trusted_networks.is_empty(), "default: nobody is trusted");
}
