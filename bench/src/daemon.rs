//! A `damocles-manager` home on a scratch dir and the daemon process running on it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::http;
use crate::proc_stats::ProcSample;
use crate::rocksdb_stats::WriteCounts;
use crate::toolchain::Toolchain;

/// A home made by `daemon init`, listening on a free loopback port.
pub struct Home {
    dir: tempfile::TempDir,
    manager: PathBuf,
    /// The loopback port of `[API] Listen`.
    pub port: u16,
}

impl Home {
    /// `daemon init` on a fresh scratch dir, `[API] Listen` on a free port.
    pub fn init(tools: &Toolchain) -> anyhow::Result<Home> {
        let dir = tools.scratch()?;
        let out = Command::new(&tools.manager)
            .arg("--home")
            .arg(dir.path())
            .args(["daemon", "init"])
            .output()
            .with_context(|| format!("cannot run {}", tools.manager.display()))?;
        if !out.status.success() {
            bail!("daemon init failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let home = Home { dir, manager: tools.manager.clone(), port };
        home.set("API.Listen", format!("127.0.0.1:{port}").into())?;
        Ok(home)
    }

    /// The home directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The plugins directory of the default config.
    pub fn plugins_dir(&self) -> PathBuf {
        self.path().join("plugins")
    }

    /// Sets the dotted config key (`API.MaxConnections`), creating missing tables.
    pub fn set(&self, key: &str, value: toml::Value) -> anyhow::Result<()> {
        let path = self.path().join("sector-manager.cfg");
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut doc: toml::Table = toml::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))?;
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().context("empty config key")?;
        let mut table = &mut doc;
        for part in parts {
            table = table
                .entry(part)
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .with_context(|| format!("config key {part} is not a table"))?;
        }
        table.insert(last.to_string(), value);
        std::fs::write(&path, toml::to_string(&doc)?).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Copies a built plugin into the plugins dir.
    pub fn install_plugin(&self, so: &Path) -> anyhow::Result<()> {
        let name = so.file_name().context("plugin file has no name")?;
        std::fs::copy(so, self.plugins_dir().join(name)).with_context(|| format!("cannot install {}", so.display()))?;
        Ok(())
    }

    /// The API token.
    pub fn token(&self) -> anyhow::Result<String> {
        let path = self.path().join("token");
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .trim()
            .to_string())
    }

    /// Starts `daemon run` and waits for its first answered RPC; the daemon knows how long that took.
    pub fn start(&self) -> anyhow::Result<Daemon> {
        let log_path = self.path().join("daemon.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        let token = self.token()?;
        let started = Instant::now();
        let child = Command::new(&self.manager)
            .arg("--home")
            .arg(self.path())
            .args(["daemon", "run"])
            .env("RUST_LOG", "warn")
            // RocksDB's statistics in its LOG every second: WAL syncs and commit groups per run.
            .env(crate::rocksdb_stats::DUMP_ENV, "1")
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", self.manager.display()))?;
        let rocksdb_log = crate::rocksdb_stats::log_of_home(self.path());
        let mut daemon = Daemon { child, port: self.port, token, log_path, rocksdb_log, startup: Duration::ZERO };
        daemon.startup = daemon.wait_first_answer(started)?;
        Ok(daemon)
    }
}

/// A running daemon, killed when dropped.
pub struct Daemon {
    child: Child,
    /// Its loopback port.
    pub port: u16,
    /// Its API token.
    pub token: String,
    log_path: PathBuf,
    rocksdb_log: PathBuf,
    /// From exec to the first answered `Venus.Version`.
    pub startup: Duration,
}

impl Daemon {
    fn wait_first_answer(&mut self, started: Instant) -> anyhow::Result<Duration> {
        let deadline = started + Duration::from_secs(300);
        while Instant::now() < deadline {
            if let Ok(Value::String(_)) = self.call("Venus.Version", Value::Array(vec![])) {
                return Ok(started.elapsed());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("the daemon exited during start-up ({status}); log:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        bail!("the daemon did not answer within 300 s; log:\n{}", self.log_tail())
    }

    /// One JSON-RPC call on a fresh connection; the `result`, or an error naming the method.
    pub fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        http::call(self.port, &self.token, method, params)
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its CPU time and context switches so far.
    pub fn sample(&self) -> anyhow::Result<ProcSample> {
        ProcSample::read(self.pid())
    }

    /// Its child processes' (process plugins') CPU time and context switches so far, as one.
    pub fn children_sample(&self) -> ProcSample {
        ProcSample::read_children(self.pid())
    }

    /// RocksDB's write counters, from its next stats dump (everything done before this call is counted).
    pub fn write_counts(&self) -> anyhow::Result<WriteCounts> {
        crate::rocksdb_stats::next_dump(&self.rocksdb_log)
    }

    /// Peak resident memory so far (VmHWM), MiB.
    pub fn peak_rss_mib(&self) -> anyhow::Result<f64> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no VmHWM in {path}"))?;
        Ok(kb / 1024.0)
    }

    /// SIGTERM, then waits for the exit (SIGKILL after 60 s).
    pub fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!("the daemon did not exit within 60 s of SIGTERM; log:\n{}", self.log_tail())
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
