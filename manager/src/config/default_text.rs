//! The commented `sector-manager.cfg` that `daemon init` writes.

use std::path::Path;

/// A TOML string literal for `path`, quoted and escaped as TOML requires.
fn toml_string(path: &Path) -> String {
    toml::Value::String(path.to_string_lossy().into_owned()).to_string()
}

/// The commented `sector-manager.cfg` that `daemon init` writes for `home`. It explains every section and key
/// (with commented-out Redis, Plugin and plugin-store examples) and parses to exactly
/// [`Config::default_for_home`]`(home)`. `home` should be absolute: relative paths in the file would be resolved
/// against the file's directory.
pub fn default_config_text(home: &Path) -> String {
    let plugins = toml_string(&home.join("plugins"));
    let db = toml_string(&home.join("db"));
    let pieces = toml_string(&home.join("pieces"));
    let persist = toml_string(&home.join("persist"));
    format!(
        r#"# damocles-manager configuration (sector-manager.cfg), written by `damocles-manager daemon init`.
#
# TOML. Keys are case-sensitive PascalCase; an unknown or misspelt key is an error naming the key.
# The Go damocles-manager's sections that damocles-rs does not implement are accepted and named in a warning.
# Every section may be omitted and then takes the defaults noted below.
# Relative paths are relative to the directory holding this file.
# Reference: docs/config.md.

[Common.Plugins]
# Directory scanned for plugin .so files. Empty ("") loads no plugins.
Dir = {plugins}
# Plugin files larger than this many bytes are refused before they are read (default 256 MiB).
# MaxFileSize = 268435456

[Common.DB]
# Where sector metadata lives: "rocksdb" (embedded, default) | "redis" | "plugin" (a KVStore plugin).
Driver = "rocksdb"

[Common.DB.RocksDB]
# Database directory, used when Driver = "rocksdb". Default: "db" next to this file.
Dir = {db}

# Used when Driver = "redis" (several managers, or you already run Redis):
# [Common.DB.Redis]
# Addr = "redis://127.0.0.1:6379"   # connection URL (default)
# Prefix = "damocles"               # prepended to every key (default)

# Used when Driver = "plugin": a KVStore plugin loaded from Common.Plugins.Dir.
# [Common.DB.Plugin]
# PluginName = "memdb"              # required with Driver = "plugin"
# [Common.DB.Plugin.Meta]           # free-form strings handed to the plugin
# SomeKey = "value"

# Piece stores hold deal pieces (PUT/GET /piecestore/<name>). Repeat the block for more stores.
[[Common.PieceStores]]
Name = "pieces"                     # non-empty, unique across PieceStores and PersistStores
Path = {pieces}
# ReadOnly = false                  # true: never written to
# PluginName = ""                   # empty: built-in local filesystem store; else a FileStore plugin
# [Common.PieceStores.Meta]         # free-form strings handed to a plugin store

# Persist stores hold sealed sectors; a reservation picks one at random, weighted by Weight.
[[Common.PersistStores]]
Name = "persist"
Path = {persist}
# ReadOnly = false                  # true: never chosen for new sectors
# Strict = false                    # true: the store refuses objects whose layout does not match exactly
# Weight = 1                        # relative chance of being picked; 0 counts as 1
# AllowMiners = [1000]              # if non-empty, only these miner actors
# DenyMiners = [1001]               # never these miner actors (wins over AllowMiners)

# A store backed by a FileStore plugin (Path is handed to the plugin as written):
# [[Common.PersistStores]]
# Name = "remote"
# PluginName = "fsstore"
# [Common.PersistStores.Meta]
# Root = "/mnt/remote"

# Seal against a mock chain (test clusters only: nothing sealed with it can ever go on a real chain; see
# docs/sealing.md). Without it, the chain-facing worker methods answer error 12001.
# [MockChain]
# Enabled = true
# SeedDelay = "0s"                  # how long after a pre-commit its seed is ready (Go duration)

# Miner actors this manager allocates sectors for. Repeat the block for more miners.
[[Miners]]
Actor = 1000                        # miner actor ID (t01000); unique
SealProof = 8                       # registered seal proof AllocateSector hands out (8 = 32 GiB V1_1;
                                    # 5 = 2KiB, 6 = 8MiB, 7 = 512MiB, 9 = 64GiB), or instead:
# SectorSize = "32GiB"              # the V1_1 seal proof of that size

[API]
# JSON-RPC listen address (IP:PORT). Default: "127.0.0.1:1789".
Listen = "127.0.0.1:1789"
# Networks (CIDR) whose clients may call the damocles-worker methods and GET pieces without the token
# (damocles-worker cannot send one). Admin methods and piece PUT always need it. Without this key: none.
# Loopback lets workers on this host run as they are, and also lets ANY local user make tokenless worker
# calls (as the Go manager, which has no authentication, lets anyone who reaches its port).
TrustedNetworks = ["127.0.0.0/8", "::1/128"]
# A cluster: add the workers' subnet (and set Listen to an address they reach), e.g.
# TrustedNetworks = ["127.0.0.0/8", "::1/128", "10.0.0.0/8"]
# Prometheus metrics are at GET /metrics on Listen, with the token. To let a private scrape network read them
# without it, serve them (only them) on a second address. Default: "" (off).
# MetricsListen = "10.9.0.2:9789"
"#
    )
}
