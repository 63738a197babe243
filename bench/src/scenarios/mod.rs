//! The scenarios: what each measures, against which baseline, and its target.

mod kv;
mod piece;
mod process;
mod rpc;
mod scale;
mod startup;
mod sync;

use anyhow::bail;

use crate::report::{Outcome, Target};
use crate::toolchain::Toolchain;

/// Full size (the documented figures) or a quick smoke run of the command.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scale {
    /// The sizes the figures are quoted at.
    Full,
    /// Small sizes: a smoke run of the command.
    Quick,
}

impl Scale {
    /// `full` at full size, else `quick`.
    pub fn pick<T>(self, full: T, quick: T) -> T {
        match self {
            Scale::Full => full,
            Scale::Quick => quick,
        }
    }
}

/// One benchmark scenario.
#[derive(Clone, Copy, Debug, PartialEq)]
/// (Each variant is the scenario of the same name; [`Scenario::about`] says what it measures.)
pub enum Scenario {
    /// `plugin_kv_overhead`.
    PluginKvOverhead,
    /// `plugin_kv_process_vs_socket`.
    PluginKvProcessVsSocket,
    /// `rpc_state_vs_noop`.
    RpcStateVsNoop,
    /// `rpc_state_vs_durable_redis`.
    RpcStateVsDurableRedis,
    /// `piece_put_vs_copy`.
    PiecePutVsCopy,
    /// `piece_get_vs_nginx`.
    PieceGetVsNginx,
    /// `sync_fanout`.
    SyncFanout,
    /// `sync_fanout_process`.
    SyncFanoutProcess,
    /// `catchup_linear`.
    CatchupLinear,
    /// `startup_plugins`.
    StartupPlugins,
    /// `scale_1m`.
    Scale1m,
}

impl Scenario {
    /// Every scenario, in the order `all` runs them.
    pub const ALL: [Scenario; 11] = [
        Scenario::PluginKvOverhead,
        Scenario::PluginKvProcessVsSocket,
        Scenario::RpcStateVsNoop,
        Scenario::RpcStateVsDurableRedis,
        Scenario::PiecePutVsCopy,
        Scenario::PieceGetVsNginx,
        Scenario::SyncFanout,
        Scenario::SyncFanoutProcess,
        Scenario::CatchupLinear,
        Scenario::StartupPlugins,
        Scenario::Scale1m,
    ];

    /// The scenario's name, which is also its main ratio's name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::PluginKvOverhead => "plugin_kv_overhead",
            Scenario::PluginKvProcessVsSocket => "plugin_kv_process_vs_socket",
            Scenario::RpcStateVsNoop => "rpc_state_vs_noop",
            Scenario::RpcStateVsDurableRedis => "rpc_state_vs_durable_redis",
            Scenario::PiecePutVsCopy => "piece_put_vs_copy",
            Scenario::PieceGetVsNginx => "piece_get_vs_nginx",
            Scenario::SyncFanout => "sync_fanout",
            Scenario::SyncFanoutProcess => "sync_fanout_process",
            Scenario::CatchupLinear => "catchup_linear",
            Scenario::StartupPlugins => "startup_plugins",
            Scenario::Scale1m => "scale_1m",
        }
    }

    /// What is measured, against what.
    pub fn about(self) -> &'static str {
        match self {
            Scenario::PluginKvOverhead => "get/put/scan on memdb loaded as .so vs the same code linked statically",
            Scenario::PluginKvProcessVsSocket => {
                "a KV get on memdb as a process plugin vs a raw Unix-socket round trip with a child carrying the same \
                 request and reply bytes (the in-process .so figure beside it)"
            }
            Scenario::RpcStateVsNoop => {
                "Venus.ReportState on RocksDB, 32 keep-alive clients vs Venus.Version on the same server"
            }
            Scenario::RpcStateVsDurableRedis => {
                "the same ReportState throughput vs a durable Redis (appendfsync always) running GET+SET+XADD per call \
                 with the daemon's own state and event bytes, same client, 32 connections"
            }
            Scenario::PiecePutVsCopy => "PUT /piecestore/x of a 2 GiB file vs cp + sync on the same disk",
            Scenario::PieceGetVsNginx => {
                "GET /piecestore/x of 2 GiB vs nginx (sendfile on) serving the same file to the same client: speed, \
                 and server CPU per GiB (piece_get_cpu_vs_nginx <= 1.0); cat file > /dev/null as information"
            }
            Scenario::SyncFanout => {
                "ReportState throughput with 8 SyncSectorState plugins (one sleeping 50 ms per event) vs none"
            }
            Scenario::SyncFanoutProcess => {
                "ReportState throughput with 8 process SyncSectorState plugins vs the same 8 in process (.so)"
            }
            Scenario::CatchupLinear => "drain time of a 32k-event backlog vs a 4k backlog x 8",
            Scenario::StartupPlugins => "exec to first RPC answered with 16 plugins vs none",
            Scenario::Scale1m => "start-up and RSS with 1,000,000 sectors stored, and listing them, vs an empty store",
        }
    }

    /// The main ratio's target.
    pub fn target(self) -> Target {
        match self {
            Scenario::PluginKvOverhead => Target::at_most(1.10),
            Scenario::PluginKvProcessVsSocket => Target::at_most(1.5),
            Scenario::RpcStateVsNoop => Target::at_least(0.70),
            Scenario::RpcStateVsDurableRedis => Target::at_least(0.80),
            Scenario::PiecePutVsCopy => Target::at_least(0.80),
            Scenario::PieceGetVsNginx => Target::at_least(0.90),
            Scenario::SyncFanout => Target::at_least(0.90),
            Scenario::SyncFanoutProcess => Target::at_least(0.85),
            Scenario::CatchupLinear => Target::at_most(1.5),
            Scenario::StartupPlugins => Target::at_most(150.0),
            Scenario::Scale1m => Target::at_most(1.5),
        }
    }

    /// The scenario named `name`.
    pub fn parse(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The scenarios named in `names`, or an error naming an unknown one.
    pub fn parse_list(names: &[String]) -> anyhow::Result<Vec<Scenario>> {
        names
            .iter()
            .map(|name| match Scenario::parse(name) {
                Some(s) => Ok(s),
                None => {
                    bail!("unknown scenario {name:?}; known: all, {}", Scenario::ALL.map(Scenario::name).join(", "))
                }
            })
            .collect()
    }

    /// Runs the scenario: its figures, main ratio first.
    pub fn run(self, tools: &Toolchain, scale: Scale) -> anyhow::Result<Vec<Outcome>> {
        match self {
            Scenario::PluginKvOverhead => kv::plugin_kv_overhead(tools, scale),
            Scenario::PluginKvProcessVsSocket => process::kv_process_vs_socket(tools, scale),
            Scenario::RpcStateVsNoop => rpc::state_vs_noop(tools, scale),
            Scenario::RpcStateVsDurableRedis => rpc::state_vs_durable_redis(tools, scale),
            Scenario::PiecePutVsCopy => piece::put_vs_copy(tools, scale),
            Scenario::PieceGetVsNginx => piece::get_vs_nginx(tools, scale),
            Scenario::SyncFanout => sync::fanout(tools, scale),
            Scenario::SyncFanoutProcess => sync::fanout_process(tools, scale),
            Scenario::CatchupLinear => sync::catchup_linear(tools, scale),
            Scenario::StartupPlugins => startup::plugins(tools, scale),
            Scenario::Scale1m => scale::one_million(tools, scale),
        }
    }

    /// A Markdown table of every scenario.
    pub fn table() -> String {
        let mut table = String::from("| name | scenario | target |\n|---|---|---|\n");
        for s in Scenario::ALL {
            let t = s.target();
            table.push_str(&format!("| `{}` | {} | {} {} |\n", s.name(), s.about(), t.op.symbol(), t.bound));
        }
        table
    }
}
