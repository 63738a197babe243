//! `damocles-manager`: the daemon and its client commands.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use jsonrpsee::core::client::ClientT;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::rpc_params;
use manager::home::{Home, HomeOrigin};
use manager::plugins::PluginInfo;
use manager_plugin::sector::SectorId;

#[derive(Parser)]
#[command(name = "damocles-manager", version, about = "Storage manager daemon for Filecoin sealing clusters")]
struct Cli {
    /// Home directory (config, token, default data dirs). Without it: the first of $DAMOCLES_HOME,
    /// $DAMOCLES_PATH, $VENUS_SECTOR_MANAGER_PATH, $VSM_PATH that is set, else ~/.damocles-manager.
    #[arg(long, global = true)]
    home: Option<PathBuf>,
    /// Log format on stdout.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run or initialize the daemon.
    #[command(subcommand)]
    Daemon(DaemonCommand),
    /// Talk to a running daemon.
    #[command(subcommand)]
    Util(UtilCommand),
    /// Internal: trial-load one sealed plugin file in this child process (see `plugins::probe`).
    #[command(name = "__probe-plugin", hide = true)]
    ProbePlugin {
        file: PathBuf,
        /// The size cap the parent read the file under.
        #[arg(long = "max-file-size", default_value_t = plugin_image::limits::DEFAULT_MAX_FILE_SIZE)]
        max_file_size: u64,
    },
    /// Internal: `plugin test FILE`: load one plugin as the daemon does and run its kind's conformance suite
    /// against a scratch directory (see `plugins::selftest`).
    #[command(name = "__test-plugin", hide = true)]
    TestPlugin {
        file: PathBuf,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
        /// KEY=VALUE for a KVStore plugin's Meta (repeatable); `$SCRATCH` in a value is a scratch directory.
        #[arg(long = "meta", value_parser = parse_meta_entry)]
        meta: Vec<(String, String)>,
        /// How long one behaviour may run before the plugin is reported hung.
        #[arg(long, default_value_t = manager::plugins::selftest::deadline::DEFAULT_LIMIT.as_secs())]
        timeout_secs: u64,
    },
}

#[derive(Subcommand)]
enum DaemonCommand {
    /// Create what the home is missing: a commented default config and an API token (existing ones are kept).
    Init,
    /// Run the daemon (initializing the default home first if it has no config; a home given with --home must
    /// have been initialized with `daemon init`).
    Run {
        /// Listen address (overrides [API] Listen).
        #[arg(long)]
        listen: Option<String>,
        /// Accept the configured database as found, even if it is empty or not the one this home used before
        /// (by default start-up refuses, so sector numbers are never handed out twice).
        #[arg(long)]
        adopt_db: bool,
        /// Seal against the mock chain for this run (as [MockChain] Enabled = true): for test clusters only,
        /// nothing sealed with it can go on a real chain.
        #[arg(long)]
        mock_chain: bool,
    },
}

#[derive(Subcommand)]
enum UtilCommand {
    /// Plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Sectors.
    #[command(subcommand)]
    Sectors(SectorsCommand),
    /// File stores.
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// Every plugin file with its state, counters and lag.
    List,
    /// Stop keeping sector events for a SyncSectorState plugin that was removed for good.
    RetireSync {
        /// The plugin's name.
        name: String,
    },
    /// Move a SyncSectorState plugin past the one event it is stuck on (saved to <home>/skipped-events first).
    Skip {
        /// The plugin's name.
        name: String,
        /// The event's seq (in `plugins list`: the hung event, or `event <seq>` in the last error).
        seq: u64,
    },
    /// Restart a process plugin from the file now in the plugins dir (a replaced binary), without restarting the
    /// daemon. `.so` plugins are refused: they are never unloaded.
    Restart {
        /// The plugin's name (or Kind/name).
        name: String,
    },
    /// Stop a process plugin until `enable`.
    Disable {
        /// The plugin's name (or Kind/name).
        name: String,
    },
    /// Start a disabled or failed process plugin again.
    Enable {
        /// The plugin's name (or Kind/name).
        name: String,
    },
}

#[derive(Subcommand)]
enum SectorsCommand {
    /// Sectors in progress (or finalized, with --offline).
    List {
        /// List finalized sectors.
        #[arg(long)]
        offline: bool,
    },
    /// One sector, wherever it is.
    Find { miner: u64, number: u64 },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Every store with capacity and reservations.
    List,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::ProbePlugin { file, max_file_size } = &cli.command {
        return match manager::plugins::probe::run_child(file, *max_file_size) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    match std::env::current_exe() {
        Ok(exe) => manager::plugins::probe::enable(Some(exe)),
        Err(e) => eprintln!(
            "warning: cannot find this program's own file ({e}): plugins are loaded without a trial load in a child \
             process"
        ),
    }
    if let Command::TestPlugin { file, json, meta, timeout_secs } = &cli.command {
        let limit = std::time::Duration::from_secs(*timeout_secs);
        return test_plugin(file, *json, meta.iter().cloned().collect(), limit);
    }
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // A blocking task stuck in a plugin call must not keep the process alive after the daemon returned.
    runtime.shutdown_timeout(manager::daemon::shutdown::RUNTIME_TIMEOUT);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `__test-plugin`: the report on stdout (text or JSON), the daemon's and the plugin's warnings on stderr;
/// success only when every behaviour passed.
fn test_plugin(
    file: &std::path::Path,
    json: bool,
    meta: manager_plugin::kv::Meta,
    limit: std::time::Duration,
) -> ExitCode {
    // The report already carries every refusal; the registry logging it again would only repeat it.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "warn,manager::plugins::registry=off".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
    let report = manager::plugins::selftest::deadline::run(file, &meta, limit);
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: cannot write the report as JSON: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        println!("{}", report.text());
    }
    if report.passed { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn parse_meta_entry(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("--meta {text:?}: expected KEY=VALUE"))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stdout);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (home, origin) = Home::locate(cli.home)?;
    let explicit_home = origin != HomeOrigin::Default;
    if let HomeOrigin::Variable(name) = origin {
        tracing::info!(home = %home.dir.display(), "home directory from ${name}");
    }
    match cli.command {
        Command::Daemon(DaemonCommand::Init) => {
            let report = home.init()?;
            let what = |wrote: bool| if wrote { "created" } else { "kept the existing one" };
            println!(
                "initialized {}: config {} ({}), token {} ({})",
                home.dir.display(),
                home.config_path().display(),
                what(report.wrote_config),
                home.token_path().display(),
                what(report.wrote_token)
            );
            Ok(())
        }
        Command::Daemon(DaemonCommand::Run { listen, adopt_db, mock_chain }) => {
            if explicit_home {
                home.require_initialized()?;
            }
            manager::daemon::run(&home.adopting_db(adopt_db), listen.as_deref(), mock_chain).await
        }
        Command::Util(command) => util(&home, command).await,
        Command::ProbePlugin { .. } | Command::TestPlugin { .. } => Ok(()),
    }
}

fn client(home: &Home) -> anyhow::Result<HttpClient> {
    let config = home.load_config()?;
    let token = home.read_token()?;
    let mut headers = http::HeaderMap::new();
    headers
        .insert(http::header::AUTHORIZATION, format!("Bearer {token}").parse().context("token is not a valid header")?);
    let url = format!("http://{}/rpc/v0", config.api.listen);
    HttpClientBuilder::default().set_headers(headers).build(&url).with_context(|| format!("connecting to {url}"))
}

async fn util(home: &Home, command: UtilCommand) -> anyhow::Result<()> {
    let client = client(home)?;
    match command {
        UtilCommand::Plugins(PluginsCommand::List) => {
            let plugins: Vec<PluginInfo> =
                client.request("Plugins.List", rpc_params![]).await.context("Plugins.List")?;
            print_plugins(&plugins);
        }
        UtilCommand::Plugins(PluginsCommand::RetireSync { name }) => {
            let retired: bool = client
                .request("Plugins.RetireSyncCursor", rpc_params![&name])
                .await
                .context("Plugins.RetireSyncCursor")?;
            if retired {
                println!("retired the delivery cursor of {name:?}; the outbox no longer keeps events for it");
            } else {
                println!("{name:?} has no delivery cursor; nothing to retire");
            }
        }
        UtilCommand::Plugins(PluginsCommand::Skip { name, seq }) => {
            let saved: String = client
                .request("Plugins.SkipSyncEvent", rpc_params![&name, seq])
                .await
                .context("Plugins.SkipSyncEvent")?;
            println!("skipped event {seq} for {name:?}; the event was saved to {saved}");
        }
        UtilCommand::Plugins(PluginsCommand::Restart { name }) => {
            control_plugin(&client, "Plugins.Restart", &name).await?
        }
        UtilCommand::Plugins(PluginsCommand::Disable { name }) => {
            control_plugin(&client, "Plugins.Disable", &name).await?
        }
        UtilCommand::Plugins(PluginsCommand::Enable { name }) => {
            control_plugin(&client, "Plugins.Enable", &name).await?
        }
        UtilCommand::Sectors(SectorsCommand::List { offline }) => {
            let ws = if offline { "offline" } else { "online" };
            let (addr, token) = (home.load_config()?.api.listen, home.read_token()?);
            tokio::task::spawn_blocking(move || print_sectors(&addr, &token, ws)).await??;
        }
        UtilCommand::Sectors(SectorsCommand::Find { miner, number }) => {
            let sid = SectorId { miner, number };
            let sector: serde_json::Value = client
                .request("Venus.FindSectorInAllStates", rpc_params![sid])
                .await
                .context("Venus.FindSectorInAllStates")?;
            if sector.is_null() {
                anyhow::bail!("sector {sid} not found");
            }
            println!("{}", serde_json::to_string_pretty(&sector)?);
        }
        UtilCommand::Store(StoreCommand::List) => {
            let stores: serde_json::Value =
                client.request("Venus.StoreList", rpc_params![]).await.context("Venus.StoreList")?;
            println!("{}", serde_json::to_string_pretty(&stores)?);
        }
    }
    Ok(())
}

/// Prints the sectors of state `ws` as one pretty JSON array, each sector as it arrives (never the whole list
/// in memory).
fn print_sectors(addr: &str, token: &str, ws: &str) -> anyhow::Result<()> {
    use manager::rpc::venus::listing::client::{PrettyArrayWriter, list_sectors};
    let mut out = PrettyArrayWriter::new(std::io::BufWriter::new(std::io::stdout().lock()));
    list_sectors(addr, token, ws, &mut |sector| out.push(&sector))?;
    out.finish()?;
    Ok(())
}

/// `util plugins restart|disable|enable NAME`: prints what the daemon did.
async fn control_plugin(client: &HttpClient, method: &str, name: &str) -> anyhow::Result<()> {
    match client.request::<String, _>(method, rpc_params![name]).await {
        Ok(done) => {
            println!("{done}");
            Ok(())
        }
        // The daemon's message says what was refused and why; print it once, plainly.
        Err(jsonrpsee::core::ClientError::Call(refused)) => anyhow::bail!("{method}: {}", refused.message()),
        Err(e) => Err(e).context(method.to_string()),
    }
}

fn print_plugins(plugins: &[PluginInfo]) {
    println!(
        "{:<16} {:<14} {:<13} {:<10} {:>7} {:>8} {:>7} {:>8} {:>7} {:>6} {:>6} {:>18}  FILE / LAST ERROR",
        "KIND", "NAME", "STATE", "MODE", "PID", "RESTARTS", "CRASHES", "UPTIME", "CALLS", "ERRORS", "PANICS", "PENDING"
    );
    for p in plugins {
        let pending = p.sync_lag.as_ref().map(|l| format!("{} {}", l.pending, l.state)).unwrap_or_else(|| "-".into());
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        println!(
            "{:<16} {:<14} {:<13} {:<10} {:>7} {:>8} {:>7} {:>8} {:>7} {:>6} {:>6} {:>18}  {}",
            // A file refused before its manifest could be trusted has no kind (and maybe no name) to show.
            p.kind.as_deref().unwrap_or("(refused)"),
            p.name.as_deref().unwrap_or("-"),
            p.state,
            p.mode.as_deref().unwrap_or("-"),
            or_dash(p.pid.map(|pid| pid.to_string())),
            p.restarts,
            p.crashes,
            or_dash(p.uptime_secs.map(|s| format!("{s}s"))),
            p.calls,
            p.errors,
            p.panics,
            pending,
            p.file
        );
        if let Some(err) = p.last_error.as_ref().or(p.sync_lag.as_ref().and_then(|l| l.last_error.as_ref())) {
            // Every line: a refusal lists each fingerprint difference and the fix on the lines after the first.
            for line in err.lines() {
                println!("{:<16} {line}", "");
            }
        }
    }
}
