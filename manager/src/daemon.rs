//! Start-up and shutdown of the daemon: config → plugins → KV database → sector state manager → file stores →
//! event deliverer → RPC server; on SIGINT/SIGTERM the reverse: stop accepting, finish in-flight requests, stop
//! delivery, close the database, `onShutdown` plugins in reverse load order, each step bounded in time
//! ([`shutdown`]). A second signal during shutdown exits at once.

pub mod shutdown;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use manager_plugin::Kind;
use manager_plugin::kv::Db;
use manager_plugin::sync::SectorEvent;

use crate::config::{Config, DbDriver, PluginsConfig, StoreEntry};
use crate::db_identity::{DbDescription, IdentityFencedDb};
use crate::filestore::{StoreManager, StoreSpec};
use crate::home::Home;
use crate::kvstore::{LeasedRedisDb, RedisDb, RocksDb};
use crate::metrics::MetricsExporter;
use crate::metrics::http::MetricsServer;
use crate::metrics::plugin_calls::SyncCallTimers;
use crate::plugins::backend::SyncDelivery;
use crate::plugins::{PluginRecord, PluginRegistry, SyncLag};
use crate::rpc::{self, AppState, RpcServer, ServerLimits};
use crate::sectors::{
    BatchDelivery, Deliverer, DeliveryOptions, DeliveryWatch, EventTarget, StateManager, StoredEvent,
};

/// Everything the daemon runs, in start-up order.
pub struct Daemon {
    registry: Arc<PluginRegistry>,
    db: Arc<dyn Db>,
    deliverer: Deliverer,
    delivery: crate::sectors::DeliveryControl,
    stores: Arc<StoreManager>,
    server: RpcServer,
    metrics_server: Option<MetricsServer>,
    step: shutdown::Step,
}

impl Daemon {
    /// Starts the daemon from `home` (initializing it first if it has no config). `listen` overrides
    /// `[API] Listen`; `mock_chain` turns `[MockChain] Enabled` on.
    pub async fn start(home: &Home, listen: Option<&str>, mock_chain: bool) -> anyhow::Result<Daemon> {
        if home.ensure_initialized().context("initializing the home directory")? {
            tracing::info!(home = %home.dir.display(), "initialized a new home with the default config");
        }
        let mut config = home.load_config().context("loading the config")?;
        config.mock_chain.enabled |= mock_chain;
        config.log_warnings();
        let token = home.read_token_to_serve().context("reading the API token")?;
        crate::plugins::probe::remember_passes_in(Some(home.dir.join("plugin-probes")));
        let registry = Arc::new(load_plugins(&config.common.plugins).await?);
        let db = match open_db(&config, &registry).await {
            Ok(db) => db,
            Err(e) => {
                shut_down_plugins(registry).await;
                return Err(e);
            }
        };
        let sectors = match open_sectors(home, &config, &db).await {
            Ok(sectors) => sectors,
            Err(e) => {
                shutdown::close(None, None, db, registry, &shutdown::Step::default()).await;
                return Err(e);
            }
        };
        let watch = DeliveryWatch {
            hung_after: std::time::Duration::from_secs(config.common.plugins.sync_hung_after_secs.max(1)),
            backlog_warning: config.common.plugins.sync_backlog_warning,
            skipped_events_dir: home.dir.join("skipped-events"),
        };
        let deliverer =
            Deliverer::start_with(Arc::clone(&sectors), sync_targets(&registry), DeliveryOptions::default(), watch);
        let delivery = deliverer.control();
        match serve(&config, listen, token, sectors, delivery.clone(), &registry).await {
            Ok((server, stores, metrics_server)) => Ok(Daemon {
                registry,
                db,
                deliverer,
                delivery,
                stores,
                server,
                metrics_server,
                step: shutdown::Step::default(),
            }),
            Err(e) => {
                shutdown::close(Some(deliverer), None, db, registry, &shutdown::Step::default()).await;
                Err(e)
            }
        }
    }

    /// Where the RPC server listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr
    }

    /// Where `[API] MetricsListen` serves `/metrics`, when set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_server.as_ref().map(|server| server.local_addr)
    }

    /// Orderly shutdown, every step bounded (see [`shutdown`]): stop accepting and finish in-flight requests,
    /// stop delivery, close the database, then `onShutdown` every initialized plugin in reverse load order.
    pub async fn shutdown(self) {
        if let Some(metrics) = self.metrics_server {
            metrics.stop().await;
        }
        self.step.begin("finishing in-flight requests");
        let drain = shutdown::DRAIN_TIMEOUT;
        if tokio::time::timeout(drain, self.server.stop()).await.is_err() {
            tracing::warn!("in-flight requests still running after {drain:?}; closing anyway");
        }
        shutdown::close(Some(self.deliverer), Some(self.stores), self.db, self.registry, &self.step).await;
    }
}

async fn shut_down_plugins(registry: Arc<PluginRegistry>) {
    let _ = tokio::task::spawn_blocking(move || registry.shutdown()).await;
}

/// Checks the database's identity against the home's ([`crate::db_identity`]), then opens the sector state.
async fn open_sectors(home: &Home, config: &Config, db: &Arc<dyn Db>) -> anyhow::Result<Arc<StateManager>> {
    let (db, home, describe) = (Arc::clone(db), home.clone(), DbDescription::of(&config.common.db));
    let grouped = config.common.db.driver == DbDriver::RocksDb;
    let sectors = tokio::task::spawn_blocking(move || -> anyhow::Result<StateManager> {
        let identity = crate::db_identity::verify(&home, &*db, &describe, home.adopt_db())?;
        // From here on every transaction checks the identity again: a database lost under the running daemon is
        // refused too.
        let fenced: Arc<dyn Db> = Arc::new(IdentityFencedDb::new(db, identity, describe));
        // Group commit where a commit is one local synced write; Redis and KVStore plugins keep one transaction
        // per change (their commits go over a connection, and their own paths are tested as they are).
        if grouped {
            StateManager::open_grouped(fenced).context("opening the sector state manager")
        } else {
            StateManager::open(fenced).context("opening the sector state manager")
        }
    })
    .await??;
    Ok(Arc::new(sectors))
}

/// Opens the stores and builds the RPC module (both call plugin code, so off the async workers), then binds and
/// starts the server, and the `[API] MetricsListen` listener when set.
async fn serve(
    config: &Config,
    listen: Option<&str>,
    token: String,
    sectors: Arc<StateManager>,
    delivery: crate::sectors::DeliveryControl,
    registry: &Arc<PluginRegistry>,
) -> anyhow::Result<(RpcServer, Arc<StoreManager>, Option<MetricsServer>)> {
    let chain = crate::chain::from_config(&config.mock_chain);
    let mode = chain.mode();
    announce_chain(mode, &config.mock_chain);
    let (blocking_config, blocking_registry) = (config.clone(), Arc::clone(registry));
    let listed_sectors = Arc::clone(&sectors);
    let (stores, module) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let stores = Arc::new(open_stores(&blocking_config, &blocking_registry)?);
        let module = rpc::build_module(AppState {
            sectors,
            stores: Arc::clone(&stores),
            registry: blocking_registry,
            miners: blocking_config.miners.clone(),
            workers: Default::default(),
            delivery,
            chain,
        })?;
        Ok((stores, module))
    })
    .await??;
    let addr = listen.unwrap_or(&config.api.listen);
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let limits = ServerLimits::from_config(&config.api);
    let auth = rpc::auth::AuthPolicy::new(token, config.api.trusted_networks.clone());
    let exporter = MetricsExporter::new(Arc::clone(registry), Arc::clone(&stores));
    let metrics_server = match config.api.metrics_listen.as_str() {
        "" => None,
        addr => {
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("binding [API] MetricsListen = {addr:?} (set it to \"\" to serve /metrics only on Listen)")
            })?;
            Some(MetricsServer::start(listener, exporter.clone())?)
        }
    };
    let server = rpc::start(listener, module.into(), Arc::clone(&stores), listed_sectors, auth, limits, exporter)?;
    tracing::info!(
        listen = %server.local_addr,
        db = config.common.db.driver.as_str(),
        chain = mode.as_str(),
        "damocles-manager is running"
    );
    Ok((server, stores, metrics_server))
}

/// Makes the chain mode loud: a warning for the mock chain, and `damocles_chain_mode{mode}` in `/metrics`.
fn announce_chain(mode: crate::chain::ChainMode, config: &crate::config::MockChainConfig) {
    crate::metrics::global().chain_mode.with_label_values(&[mode.as_str()]).set(1);
    if mode == crate::chain::ChainMode::Mock {
        tracing::warn!(
            seed_delay = %config.seed_delay,
            "MOCK CHAIN: tickets, seeds, pre-commits and proofs are faked ([MockChain] Enabled or --mock-chain); \
             nothing sealed by this manager can ever go on a real chain"
        );
    }
}

/// Runs the daemon until SIGINT or SIGTERM, then shuts it down (`mock_chain`: see [`Daemon::start`]). A second
/// signal during shutdown logs what is still running and exits the process at once, with status 130 (SIGINT) or
/// 143 (SIGTERM).
pub async fn run(home: &Home, listen: Option<&str>, mock_chain: bool) -> anyhow::Result<()> {
    // Listen before starting: a signal during start-up must not be lost.
    let mut signals = Signals::new()?;
    let daemon = Daemon::start(home, listen, mock_chain).await?;
    let first = signals.next().await;
    tracing::info!(
        "{first} received: shutting down within {:?} (send it again to exit at once)",
        shutdown::SHUTDOWN_DEADLINE
    );
    let (step, delivery) = (daemon.step.clone(), daemon.delivery.clone());
    tokio::select! {
        () = daemon.shutdown() => Ok(()),
        second = signals.next() => {
            let hooks: Vec<String> = delivery
                .hooks_running()
                .into_iter()
                .map(|(name, seq, since)| format!("{name} (event {seq}, since Unix time {since})"))
                .collect();
            tracing::error!(
                "{second} received again: exiting now; shutdown was {}; SyncSectorState hooks still running: {}",
                step.describe(),
                if hooks.is_empty() { "none".to_string() } else { hooks.join(", ") }
            );
            std::process::exit(if second == "SIGINT" { 130 } else { 143 })
        }
    }
}

/// SIGINT and SIGTERM, listened to from start-up on; and SIGUSR1, which the Go manager uses to reload its config
/// (`damocles-manager/pkg/confmgr/local_mgr.go`) and whose default action would kill the process: it is logged
/// and otherwise ignored.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            usr1: signal(SignalKind::user_defined1()).context("listening for SIGUSR1")?,
        })
    }

    /// The next SIGINT or SIGTERM's name (SIGUSR1s before it are logged).
    async fn next(&mut self) -> &'static str {
        loop {
            tokio::select! {
                _ = self.int.recv() => return "SIGINT",
                _ = self.term.recv() => return "SIGTERM",
                _ = self.usr1.recv() => tracing::warn!(
                    "SIGUSR1 received: damocles-rs does not reload its configuration (the Go manager's reload); \
                     nothing changed. Restart the daemon to apply a changed sector-manager.cfg"
                ),
            }
        }
    }
}

async fn load_plugins(plugins: &PluginsConfig) -> anyhow::Result<PluginRegistry> {
    let (dir, options) = (plugins.dir.clone(), plugins.load_options());
    Ok(tokio::task::spawn_blocking(move || PluginRegistry::load_with(&dir, options)).await??)
}

async fn open_db(config: &Config, registry: &Arc<PluginRegistry>) -> anyhow::Result<Arc<dyn Db>> {
    let db = config.common.db.clone();
    let registry = Arc::clone(registry);
    tokio::task::spawn_blocking(move || -> anyhow::Result<Arc<dyn Db>> {
        let db: Arc<dyn Db> = match db.driver {
            DbDriver::RocksDb => Arc::new(
                RocksDb::open(&db.rocksdb.dir)
                    .with_context(|| format!("opening RocksDB at {}", db.rocksdb.dir.display()))?,
            ),
            DbDriver::Redis => {
                let redis = RedisDb::open_with(&db.redis.addr, &db.redis.prefix, db.redis.timeouts())
                    .with_context(|| "opening the Redis database".to_string())?;
                redis.check_durability(db.redis.require_persistence).context("checking the Redis server")?;
                Arc::new(LeasedRedisDb::acquire(redis, &db.redis.prefix).context("taking the writer lease")?)
            }
            DbDriver::Plugin => {
                let name = &db.plugin.plugin_name;
                let Some(record) = registry.get(Kind::KvStore, name) else {
                    bail!("[Common.DB] Driver = \"plugin\": {}", registry.why_not_ready(Kind::KvStore, name));
                };
                Arc::from(
                    record.open_db(&db.plugin.meta).with_context(|| format!("KVStore plugin '{name}' constructor"))?,
                )
            }
        };
        db.run().context("starting the database")?;
        Ok(db)
    })
    .await?
}

fn store_spec(entry: &StoreEntry) -> StoreSpec {
    StoreSpec {
        config: manager_plugin::filestore::StoreConfig {
            name: entry.name.clone(),
            path: entry.path.clone(),
            meta: entry.meta.clone(),
            strict: entry.strict,
            read_only: entry.read_only,
            weight: entry.effective_weight(),
        },
        plugin_name: entry.plugin_name.clone(),
        allow_miners: entry.allow_miners.clone(),
        deny_miners: entry.deny_miners.clone(),
    }
}

fn open_stores(config: &Config, registry: &PluginRegistry) -> anyhow::Result<StoreManager> {
    let piece = config.common.piece_stores.iter().map(store_spec).collect();
    let persist = config.common.persist_stores.iter().map(store_spec).collect();
    StoreManager::open_with(piece, persist, registry, config.common.capacity_options())
        .context("opening the file stores")
}

/// A SyncSectorState plugin as a delivery target.
struct PluginTarget {
    record: Arc<PluginRecord>,
    hooks: SyncDelivery,
    timers: SyncCallTimers,
}

impl EventTarget for PluginTarget {
    fn name(&self) -> String {
        self.record.manifest().name.clone()
    }

    fn deliver(&self, event: &SectorEvent) -> Result<(), String> {
        self.timers.time(event.ext_point(), || self.hooks.deliver(event)).map_err(|e| e.to_string())
    }

    fn batch_limit(&self) -> usize {
        self.hooks.batch_limit()
    }

    fn deliver_batch(&self, events: &[&StoredEvent]) -> BatchDelivery {
        let started = Instant::now();
        let (delivered, error) = self.hooks.deliver_batch(events);
        let attempted = &events[..(delivered + usize::from(error.is_some())).min(events.len())];
        self.timers.share(attempted.iter().map(|stored| stored.event.ext_point()), started.elapsed());
        BatchDelivery { delivered, error: error.map(|e| e.to_string()) }
    }

    fn report_lag(&self, pending: u64, last_error: Option<String>) {
        let state = match (&last_error, pending) {
            (Some(_), _) => "failing",
            (None, 0) => "idle",
            (None, _) => "delivering",
        };
        self.record.set_sync_lag(SyncLag {
            pending,
            last_error,
            state: state.to_string(),
            hung_since: None,
            hung_event: None,
        });
    }

    fn report_hung(&self, pending: u64, seq: u64, since_unix: u64) {
        self.record.set_sync_lag(SyncLag {
            pending,
            last_error: Some(format!("the hook delivering event {seq} has not returned since Unix time {since_unix}")),
            state: "hung".to_string(),
            hung_since: Some(since_unix),
            hung_event: Some(seq),
        });
    }
}

fn sync_targets(registry: &PluginRegistry) -> Vec<Arc<dyn EventTarget>> {
    registry
        .ready(Kind::SyncSectorState)
        .filter_map(|record| match record.sync_delivery() {
            Ok(hooks) => {
                let timers = SyncCallTimers::new(&record.manifest().name);
                Some(Arc::new(PluginTarget { record: Arc::clone(record), hooks, timers }) as Arc<dyn EventTarget>)
            }
            Err(e) => {
                record.disable(e.to_string());
                None
            }
        })
        .collect()
}
