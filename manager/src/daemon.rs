//! Start-up and shutdown of the daemon: config → plugins → KV database → sector state manager → file stores →
//! event deliverer → RPC server; on SIGINT/SIGTERM the reverse: stop accepting, finish in-flight requests, stop
//! delivery, close the database, `onShutdown` plugins in reverse load order.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use manager_plugin::Kind;
use manager_plugin::glue::SyncHooks;
use manager_plugin::kv::Db;
use manager_plugin::sync::SectorEvent;

use crate::config::{Config, DbDriver, StoreEntry};
use crate::filestore::{StoreManager, StoreSpec};
use crate::home::Home;
use crate::kvstore::{RedisDb, RocksDb};
use crate::plugins::{PluginRecord, PluginRegistry, SyncLag};
use crate::rpc::{self, AppState, RpcServer};
use crate::sectors::{Deliverer, DeliveryOptions, EventTarget, StateManager};

/// Everything the daemon runs, in start-up order.
pub struct Daemon {
    registry: Arc<PluginRegistry>,
    db: Arc<dyn Db>,
    deliverer: Deliverer,
    server: RpcServer,
}

impl Daemon {
    /// Starts the daemon from `home` (initializing it first if it has no config). `listen` overrides
    /// `[API] Listen`.
    pub async fn start(home: &Home, listen: Option<&str>) -> anyhow::Result<Daemon> {
        if home.ensure_initialized().context("initializing the home directory")? {
            tracing::info!(home = %home.dir.display(), "initialized a new home with the default config");
        }
        let config = home.load_config().context("loading the config")?;
        config.log_warnings();
        let token = home.read_token().context("reading the API token")?;
        let registry = Arc::new(load_plugins(&config.common.plugins.dir).await?);
        let db = match open_db(&config, &registry).await {
            Ok(db) => db,
            Err(e) => {
                shut_down_plugins(registry).await;
                return Err(e);
            }
        };
        let sectors = match open_sectors(&db).await {
            Ok(sectors) => sectors,
            Err(e) => {
                close(None, db, registry).await;
                return Err(e);
            }
        };
        let deliverer = Deliverer::start(Arc::clone(&sectors), sync_targets(&registry), DeliveryOptions::default());
        match serve(&config, listen, token, sectors, &registry).await {
            Ok(server) => Ok(Daemon { registry, db, deliverer, server }),
            Err(e) => {
                close(Some(deliverer), db, registry).await;
                Err(e)
            }
        }
    }

    /// Where the RPC server listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr
    }

    /// Orderly shutdown: stop accepting and finish in-flight requests (at most [`DRAIN_TIMEOUT`]), stop delivery,
    /// close the database, then `onShutdown` every initialized plugin in reverse load order.
    pub async fn shutdown(self) {
        tracing::info!("shutting down: finishing in-flight requests");
        if tokio::time::timeout(DRAIN_TIMEOUT, self.server.stop()).await.is_err() {
            tracing::warn!("in-flight requests still running after {DRAIN_TIMEOUT:?}; closing anyway");
        }
        close(Some(self.deliverer), self.db, self.registry).await;
    }
}

/// How long shutdown waits for in-flight requests.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Stops delivery, closes the database and shuts the plugins down, in that order, off the async workers.
async fn close(deliverer: Option<Deliverer>, db: Arc<dyn Db>, registry: Arc<PluginRegistry>) {
    let closed = tokio::task::spawn_blocking(move || {
        if let Some(deliverer) = deliverer {
            deliverer.stop();
        }
        let closed = db.close();
        registry.shutdown();
        closed
    })
    .await;
    match closed {
        Ok(Ok(())) => tracing::info!("database closed; bye"),
        Ok(Err(e)) => tracing::error!("closing the database failed: {e}"),
        Err(e) => tracing::error!("shutdown task failed: {e}"),
    }
}

async fn shut_down_plugins(registry: Arc<PluginRegistry>) {
    let _ = tokio::task::spawn_blocking(move || registry.shutdown()).await;
}

async fn open_sectors(db: &Arc<dyn Db>) -> anyhow::Result<Arc<StateManager>> {
    let db = Arc::clone(db);
    let sectors = tokio::task::spawn_blocking(move || StateManager::open(db)).await?;
    Ok(Arc::new(sectors.context("opening the sector state manager")?))
}

/// Opens the stores and builds the RPC module (both call plugin code, so off the async workers), then binds and
/// starts the server.
async fn serve(
    config: &Config,
    listen: Option<&str>,
    token: String,
    sectors: Arc<StateManager>,
    registry: &Arc<PluginRegistry>,
) -> anyhow::Result<RpcServer> {
    let (blocking_config, blocking_registry) = (config.clone(), Arc::clone(registry));
    let (stores, module) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let stores = Arc::new(open_stores(&blocking_config, &blocking_registry)?);
        let module = rpc::build_module(AppState {
            sectors,
            stores: Arc::clone(&stores),
            registry: blocking_registry,
            miners: blocking_config.miners.clone(),
            workers: Default::default(),
        })?;
        Ok((stores, module))
    })
    .await??;
    let addr = listen.unwrap_or(&config.api.listen);
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let auth = rpc::auth::AuthPolicy::new(token, config.api.trusted_networks.clone());
    let server = rpc::start(listener, module.into(), stores, auth)?;
    tracing::info!(listen = %server.local_addr, db = config.common.db.driver.as_str(), "damocles-manager is running");
    Ok(server)
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(home: &Home, listen: Option<&str>) -> anyhow::Result<()> {
    let daemon = Daemon::start(home, listen).await?;
    wait_for_signal().await?;
    daemon.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

async fn load_plugins(dir: &Path) -> anyhow::Result<PluginRegistry> {
    let dir = dir.to_path_buf();
    Ok(tokio::task::spawn_blocking(move || PluginRegistry::load(&dir)).await??)
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
            DbDriver::Redis => Arc::new(
                RedisDb::open(&db.redis.addr, &db.redis.prefix)
                    .with_context(|| "opening the Redis database".to_string())?,
            ),
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
    StoreManager::open(piece, persist, registry).context("opening the file stores")
}

/// A SyncSectorState plugin as a delivery target.
struct PluginTarget {
    record: Arc<PluginRecord>,
    hooks: SyncHooks,
}

impl EventTarget for PluginTarget {
    fn name(&self) -> String {
        self.record.manifest().name.clone()
    }

    fn deliver(&self, event: &SectorEvent) -> Result<(), String> {
        self.hooks.deliver(event).map_err(|e| e.to_string())
    }

    fn report_lag(&self, pending: u64, last_error: Option<String>) {
        self.record.set_sync_lag(SyncLag { pending, last_error });
    }
}

fn sync_targets(registry: &PluginRegistry) -> Vec<Arc<dyn EventTarget>> {
    registry
        .ready(Kind::SyncSectorState)
        .filter_map(|record| match record.sync_hooks() {
            Ok(hooks) => Some(Arc::new(PluginTarget { record: Arc::clone(record), hooks }) as Arc<dyn EventTarget>),
            Err(e) => {
                record.disable(e.to_string());
                None
            }
        })
        .collect()
}
