//! Runs the real `damocles-manager` binary on a temp home and talks to it over HTTP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jsonrpsee::core::client::ClientT;
use jsonrpsee::core::params::ArrayParams;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use serde::de::DeserializeOwned;

/// The daemon binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_damocles-manager")
}

/// A home initialized with `daemon init`, whose config tests may edit before starting the daemon.
pub struct TestHome {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl TestHome {
    /// `daemon init` on a fresh temp dir, then binds `[API] Listen` to a free local port.
    pub fn init() -> TestHome {
        let dir = tempfile::tempdir().expect("temp dir");
        let out =
            Command::new(binary()).arg("--home").arg(dir.path()).args(["daemon", "init"]).output().expect("run init");
        assert!(out.status.success(), "daemon init failed: {}", String::from_utf8_lossy(&out.stderr));
        let port = free_port();
        let home = TestHome { dir, port };
        home.set_config("API.Listen", format!("127.0.0.1:{port}"));
        home
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn plugins_dir(&self) -> PathBuf {
        self.path().join("plugins")
    }

    /// Rewrites `sector-manager.cfg` through a TOML document (comments are dropped).
    pub fn edit_config(&self, edit: impl FnOnce(&mut toml::Value)) {
        let path = self.path().join("sector-manager.cfg");
        let mut doc: toml::Value =
            toml::from_str(&std::fs::read_to_string(&path).expect("read config")).expect("parse config");
        edit(&mut doc);
        std::fs::write(&path, toml::to_string(&doc).expect("serialize config")).expect("write config");
    }

    /// Sets the dotted `key` (e.g. `Common.DB.Driver`), creating missing tables on the way.
    pub fn set_config(&self, key: &str, value: impl Into<toml::Value>) {
        let value = value.into();
        self.edit_config(|doc| {
            let mut parts: Vec<&str> = key.split('.').collect();
            let last = parts.pop().expect("non-empty key");
            let mut table = doc.as_table_mut().expect("config is a table");
            for part in parts {
                table = table
                    .entry(part)
                    .or_insert_with(|| toml::Value::Table(Default::default()))
                    .as_table_mut()
                    .expect("a table");
            }
            table.insert(last.to_string(), value);
        });
    }

    /// Adds a persist store backed by the FileStore plugin `plugin` before the default one.
    pub fn add_plugin_persist_store(&self, name: &str, plugin: &str) {
        let path = self.path().join(name).display().to_string();
        self.edit_config(|doc| {
            let common = doc.get_mut("Common").and_then(|c| c.as_table_mut()).expect("[Common]");
            let stores = common.get_mut("PersistStores").and_then(|s| s.as_array_mut()).expect("PersistStores");
            let mut store = toml::Table::new();
            store.insert("Name".into(), name.into());
            store.insert("Path".into(), path.into());
            store.insert("PluginName".into(), plugin.into());
            stores.insert(0, toml::Value::Table(store));
        });
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.path().join("token")).expect("token").trim().to_string()
    }

    /// Copies built plugins into the home's plugins dir.
    pub fn install_plugins(&self, names: &[&str]) {
        for name in names {
            let so = super::plugins::built(name);
            std::fs::copy(&so, self.plugins_dir().join(so.file_name().expect("file name"))).expect("copy plugin");
        }
    }

    /// Starts `daemon run` and waits until it answers.
    pub fn start(&self) -> RunningDaemon {
        self.start_with(&[])
    }

    /// Starts `daemon run` with extra arguments (e.g. `--adopt-db`) and waits until it answers.
    pub fn start_with(&self, args: &[&str]) -> RunningDaemon {
        self.start_with_env(args, &[])
    }

    /// Starts `daemon run` with extra arguments and environment variables and waits until it answers.
    pub fn start_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> RunningDaemon {
        let log_path = self.path().join(format!("daemon-{}.log", Instant::now().elapsed().as_nanos()));
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(binary())
            .arg("--home")
            .arg(self.path())
            .args(["daemon", "run"])
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn daemon");
        let daemon = RunningDaemon { child, port: self.port, token: self.token(), log_path };
        daemon.wait_ready();
        daemon
    }
}

/// Runs `daemon run` on `home` (with `args`) and expects it to refuse to start: returns its stderr.
pub fn refused_start(home: &Path, args: &[&str]) -> String {
    let mut command = Command::new(binary());
    command.arg("--home").arg(home).args(["daemon", "run"]).args(args);
    refused(command)
}

/// Runs `command` (a daemon start) and expects it to exit with an error within 60 s: returns its stderr.
pub fn refused(mut command: Command) -> String {
    let mut child =
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn daemon");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon started although it should have refused");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    assert!(!out.status.success(), "the daemon exited successfully instead of refusing");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A running daemon process.
pub struct RunningDaemon {
    pub child: Child,
    pub port: u16,
    pub token: String,
    pub log_path: PathBuf,
}

impl RunningDaemon {
    pub fn client(&self) -> HttpClient {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, format!("Bearer {}", self.token).parse().expect("header"));
        HttpClientBuilder::default()
            .set_headers(headers)
            .request_timeout(Duration::from_secs(120))
            .build(format!("http://127.0.0.1:{}/rpc/v0", self.port))
            .expect("client")
    }

    /// Calls `method`, panicking with the daemon's log on a transport error.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: ArrayParams,
    ) -> Result<T, jsonrpsee::core::ClientError> {
        self.client().request(method, params).await
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits (at most 120 s) until the daemon answers HTTP on its port.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(status) = raw_http(self.port, "GET", "/rpc/v0", Some(&self.token), &[]).map(|r| r.status)
                && status != 0
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("daemon did not start; log:\n{}", self.log());
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn stop(mut self) -> Option<i32> {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let status = self.child.wait().expect("wait daemon");
        status.code()
    }

    /// SIGKILL: a crash.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Peak resident memory of the daemon (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("proc status");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kb * 1024
    }
}

impl Drop for RunningDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw HTTP/1.1 response: status and body.
pub struct RawResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A minimal HTTP/1.1 request (for status codes and headers the JSON-RPC client hides).
pub fn raw_http(port: u16, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> std::io::Result<RawResponse> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut reader = BufReader::new(stream);
    let (status, length) = read_head(&mut reader)?;
    let mut body = Vec::new();
    match length {
        Some(n) => reader.take(n).read_to_end(&mut body)?,
        None => reader.read_to_end(&mut body)?,
    };
    Ok(RawResponse { status, body })
}

/// Sends the raw bytes of an HTTP/1.1 `request` (which should say `Connection: close`) from the loopback address
/// `source` to the daemon's `port`, and reads the whole answer: status, headers (lower-case names) and body.
pub async fn raw_request_from(
    source: std::net::IpAddr,
    port: u16,
    request: &[u8],
) -> (u16, Vec<(String, String)>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(std::net::SocketAddr::new(source, 0)).expect("bind the source address");
    let mut stream = socket.connect(std::net::SocketAddr::from(([127, 0, 0, 1], port))).await.expect("connect");
    stream.write_all(request).await.expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut raw)).await.expect("answer in time").ok();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|line| line.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

/// Reads the status line and headers; returns the status and Content-Length.
pub fn read_head(reader: &mut impl BufRead) -> std::io::Result<(u16, Option<u64>)> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut length = None;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().ok();
        }
    }
    Ok((status, length))
}
