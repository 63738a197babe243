//! One scrape: the counted metrics of [`super::global`] plus what is read at scrape time — the plugins' own call
//! counters and SyncSectorState backlog (from the registry), and store capacity (from the stores' capacity
//! cache; a scrape never calls a store) — encoded in the Prometheus text format (version 0.0.4).

use std::sync::Arc;

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, TextEncoder};

use super::name;
use crate::filestore::StoreManager;
use crate::plugins::PluginRegistry;

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders `/metrics` for one daemon.
#[derive(Clone)]
pub struct MetricsExporter {
    plugins: Arc<PluginRegistry>,
    stores: Arc<StoreManager>,
}

impl MetricsExporter {
    /// An exporter reading `plugins` and `stores` at each scrape.
    pub fn new(plugins: Arc<PluginRegistry>, stores: Arc<StoreManager>) -> MetricsExporter {
        MetricsExporter { plugins, stores }
    }

    /// Every metric in the text format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut families = super::global().gather();
        families.extend(plugin_families(&self.plugins));
        families.extend(store_families(&self.stores));
        families.extend(refusal_families());
        families.retain(|family| !family.get_metric().is_empty());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut text = Vec::new();
        TextEncoder::new().encode(&families, &mut text)?;
        String::from_utf8(text).map_err(|e| prometheus::Error::Msg(format!("the text encoder wrote non-UTF-8: {e}")))
    }
}

fn counter_vec(suffix: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name(suffix), help), labels)
        .unwrap_or_else(|e| unreachable!("constant metric {suffix}: {e}"))
}

fn gauge_vec(suffix: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name(suffix), help), labels)
        .unwrap_or_else(|e| unreachable!("constant metric {suffix}: {e}"))
}

/// Saturates at `i64::MAX` (gauges are signed).
fn gauge_value(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn plugin_families(registry: &PluginRegistry) -> Vec<MetricFamily> {
    let labels = ["plugin", "kind"];
    let calls = counter_vec("plugin_calls_total", "Calls into the plugin, counted by its own guards.", &labels);
    let errors = counter_vec("plugin_errors_total", "Calls into the plugin that failed (panics included).", &labels);
    let panics = counter_vec("plugin_panics_total", "Calls into the plugin that panicked (caught).", &labels);
    let ready = gauge_vec("plugin_ready", "1 while the plugin is Ready, 0 in any other state.", &labels);
    let pending = gauge_vec(
        "sync_plugin_pending_events",
        "Outbox events not yet delivered to the SyncSectorState plugin (its lag, in events).",
        &["plugin"],
    );
    let failing = gauge_vec("sync_plugin_failing", "1 while the plugin's last delivery attempt failed.", &["plugin"]);
    let hung = gauge_vec(
        "sync_plugin_hung",
        "1 while a hook call has run past [Common.Plugins] SyncHungAfterSecs.",
        &["plugin"],
    );
    let restarts = counter_vec(
        "plugin_restarts_total",
        "Restarts of the process plugin (after crashes and by the operator).",
        &labels,
    );
    let crashes = counter_vec(
        "plugin_crashes_total",
        "Unexpected ends of the process plugin's process (signal, exit, killed past a deadline) and failed restarts.",
        &labels,
    );
    let uptime = gauge_vec(
        "plugin_uptime_seconds",
        "How long the process plugin's running process has served; 0 while it is not running.",
        &labels,
    );
    for info in registry.list() {
        let (Some(kind), Some(plugin)) = (&info.kind, &info.name) else { continue };
        let values = [plugin.as_str(), kind.as_str()];
        if info.mode.as_deref() == Some("process") {
            restarts.with_label_values(&values).inc_by(info.restarts);
            crashes.with_label_values(&values).inc_by(info.crashes);
            uptime.with_label_values(&values).set(gauge_value(info.uptime_secs.unwrap_or(0)));
        }
        calls.with_label_values(&values).inc_by(info.calls);
        errors.with_label_values(&values).inc_by(info.errors);
        panics.with_label_values(&values).inc_by(info.panics);
        ready.with_label_values(&values).set(i64::from(info.state == "Ready"));
        if let Some(lag) = &info.sync_lag {
            pending.with_label_values(&[plugin]).set(gauge_value(lag.pending));
            failing.with_label_values(&[plugin]).set(i64::from(lag.state == "failing"));
            hung.with_label_values(&[plugin]).set(i64::from(lag.state == "hung"));
        }
    }
    [calls.collect(), errors.collect(), panics.collect(), ready.collect()]
        .into_iter()
        .chain([pending.collect(), failing.collect(), hung.collect()])
        .chain([restarts.collect(), crashes.collect(), uptime.collect()])
        .flatten()
        .collect()
}

fn store_families(stores: &StoreManager) -> Vec<MetricFamily> {
    let labels = ["store", "kind"];
    let total = gauge_vec("store_capacity_bytes", "Size of the store's volume (0 while unknown).", &labels);
    let free = gauge_vec("store_free_bytes", "Bytes free on the store's volume (0 while unknown).", &labels);
    let reserved = gauge_vec("store_reserved_bytes", "Bytes reserved on the store by sectors.", &labels);
    let available = gauge_vec(
        "store_available",
        "1 when the store's capacity is known and it is used; 0 while unknown or while instance_info hangs.",
        &labels,
    );
    for figures in stores.capacity_figures() {
        let values = [figures.name.as_str(), figures.kind.as_str()];
        total.with_label_values(&values).set(gauge_value(figures.total));
        free.with_label_values(&values).set(gauge_value(figures.free));
        reserved.with_label_values(&values).set(gauge_value(figures.reserved));
        available.with_label_values(&values).set(i64::from(figures.known));
    }
    [total.collect(), free.collect(), reserved.collect(), available.collect()].into_iter().flatten().collect()
}

/// Whether the database is refused now, per cause, and how many operations each refused
/// (`crate::kvstore::refusal`); both causes always present, so an alert can watch for 1.
fn refusal_families() -> Vec<MetricFamily> {
    let refused = gauge_vec(
        "db_writes_refused",
        "1 while the manager refuses to read and write its database for this cause (identity: the database lost \
         or replaced; writer_lease: another manager may hold the Redis prefix). The log says why.",
        &["cause"],
    );
    let operations = counter_vec(
        "db_refused_operations_total",
        "Database operations refused for this cause since the daemon started.",
        &["cause"],
    );
    for (cause, message, count) in crate::kvstore::refusal::status() {
        refused.with_label_values(&[cause.label()]).set(i64::from(message.is_some()));
        operations.with_label_values(&[cause.label()]).inc_by(count);
    }
    [refused.collect(), operations.collect()].into_iter().flatten().collect()
}
