//! Prometheus metrics, served as text at `GET /metrics` (see `docs/metrics.md` for every metric).
//!
//! Two sources make one scrape:
//!
//! - **Counted as it happens**, in the process-wide [`Metrics`] ([`global`]): RPC calls, errors and latency per
//!   method ([`rpc`], a jsonrpsee middleware), plugin call latency per extension point ([`plugin_calls`]), KV
//!   transaction conflicts and retries, piece bytes in and out. Every hook is an atomic add (or a lock-free
//!   histogram observation) on a handle looked up once, never per call.
//! - **Read at scrape time** ([`scrape`]): per-plugin call, error and panic counters (the plugins' own
//!   `CallStats`, so nothing is counted twice), SyncSectorState delivery backlog, and store capacity from the
//!   stores' capacity cache (a scrape never calls a store).
//!
//! The crate is `prometheus` (tikv/rust-prometheus): its histograms are lock-free, which matters on the RPC hot
//! path (`prometheus-client` takes a mutex per observation).

pub mod http;
pub mod plugin_calls;
pub mod rpc;
pub mod scrape;

use std::sync::LazyLock;

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

pub use plugin_calls::PluginCallTimer;
pub use rpc::RpcMetricsLayer;
pub use scrape::MetricsExporter;

/// The prefix of every metric name.
pub const PREFIX: &str = "damocles";

/// Latency buckets (seconds) shared by the RPC and plugin call histograms: 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The metrics counted as things happen, registered in one registry.
pub struct Metrics {
    registry: Registry,
    /// `damocles_rpc_calls_total{method}`.
    pub rpc_calls: IntCounterVec,
    /// `damocles_rpc_errors_total{method}`.
    pub rpc_errors: IntCounterVec,
    /// `damocles_rpc_call_duration_seconds{method}`.
    pub rpc_duration: HistogramVec,
    /// `damocles_plugin_call_duration_seconds{plugin,kind,ext_point}`.
    pub plugin_call_duration: HistogramVec,
    /// `damocles_kv_txn_conflicts_total`: sector transactions that lost a race (each attempt counts).
    pub kv_conflicts: IntCounter,
    /// `damocles_kv_txn_retries_total`: conflicting sector transactions run again.
    pub kv_retries: IntCounter,
    /// `damocles_piece_received_bytes_total`: piece bytes read from upload bodies.
    pub piece_received_bytes: IntCounter,
    /// `damocles_piece_sent_bytes_total`: piece bytes handed to download responses.
    pub piece_sent_bytes: IntCounter,
    /// `damocles_chain_mode{mode}`: 1 for the chain the sealing methods use (`none` or `mock`).
    pub chain_mode: IntGaugeVec,
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

fn name(suffix: &str) -> String {
    format!("{PREFIX}_{suffix}")
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let counter_vec = |suffix: &str, help: &str, labels: &[&str]| {
            let vec = IntCounterVec::new(Opts::new(name(suffix), help), labels)
                .unwrap_or_else(|e| unreachable!("constant metric {suffix}: {e}"));
            register(&registry, Box::new(vec.clone()));
            vec
        };
        let histogram_vec = |suffix: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name(suffix), help).buckets(LATENCY_BUCKETS.to_vec());
            let vec = HistogramVec::new(opts, labels).unwrap_or_else(|e| unreachable!("constant metric {suffix}: {e}"));
            register(&registry, Box::new(vec.clone()));
            vec
        };
        let counter = |suffix: &str, help: &str| {
            let counter =
                IntCounter::new(name(suffix), help).unwrap_or_else(|e| unreachable!("constant metric {suffix}: {e}"));
            register(&registry, Box::new(counter.clone()));
            counter
        };
        Metrics {
            rpc_calls: counter_vec("rpc_calls_total", "JSON-RPC calls answered, by method.", &["method"]),
            rpc_errors: counter_vec(
                "rpc_errors_total",
                "JSON-RPC calls answered with an error, by method.",
                &["method"],
            ),
            rpc_duration: histogram_vec(
                "rpc_call_duration_seconds",
                "Time from a JSON-RPC call's dispatch to its answer, by method.",
                &["method"],
            ),
            plugin_call_duration: histogram_vec(
                "plugin_call_duration_seconds",
                "Time of host calls into a plugin, by plugin, kind and extension point (or SPI method).",
                &["plugin", "kind", "ext_point"],
            ),
            kv_conflicts: counter(
                "kv_txn_conflicts_total",
                "Sector state transactions that failed with a conflict (every attempt counts).",
            ),
            kv_retries: counter("kv_txn_retries_total", "Sector state transactions run again after a conflict."),
            piece_received_bytes: counter(
                "piece_received_bytes_total",
                "Piece bytes read from PUT /piecestore/ bodies.",
            ),
            piece_sent_bytes: counter("piece_sent_bytes_total", "Piece bytes sent in GET /piecestore/ responses."),
            chain_mode: {
                let opts = Opts::new(
                    name("chain_mode"),
                    "1 for the chain the sealing methods use: none, or mock (nothing sealed goes on chain).",
                );
                let vec = IntGaugeVec::new(opts, &["mode"]).unwrap_or_else(|e| unreachable!("constant metric: {e}"));
                register(&registry, Box::new(vec.clone()));
                vec
            },
            registry,
        }
    }

    /// The families counted so far.
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }

    /// A latency histogram of `plugin` (of `kind`) at `ext_point`, to keep and observe without further lookups.
    pub fn plugin_call(&self, plugin: &str, kind: &str, ext_point: &str) -> Histogram {
        self.plugin_call_duration.with_label_values(&[plugin, kind, ext_point])
    }
}

fn register(registry: &Registry, collector: Box<dyn prometheus::core::Collector>) {
    if let Err(e) = registry.register(collector) {
        unreachable!("metric names are constant and distinct: {e}");
    }
}
