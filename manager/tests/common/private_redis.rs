//! A private `redis-server` for tests that restart, starve or misconfigure Redis (never the shared one at 6379).

/// A private `redis-server` on a free port with its own data directory (never the shared one at 6379), so tests
/// can restart it, lose its data or configure it badly. Killed on drop.
pub struct PrivateRedis {
    dir: tempfile::TempDir,
    pub port: u16,
    args: Vec<String>,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub fn start(args: &[&str]) -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let mut redis = PrivateRedis {
            dir: tempfile::tempdir().expect("temp dir"),
            port,
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and directory.
    pub fn restart(&mut self) {
        self.kill();
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (install it: scripts/setup.sh --redis)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let pong = redis::Client::open(self.url())
                .and_then(|client| client.get_connection())
                .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn));
            if pong.is_ok() {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "private redis-server on {} did not start", self.port);
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Kills the server and replaces its data directory's contents with a copy of `from` (`None`: empty), then
    /// starts it again on the same port: a server that lost its data (`None`) or was restored from a backup.
    pub fn restart_with_data(&mut self, from: Option<&std::path::Path>) {
        self.kill();
        for entry in std::fs::read_dir(self.dir.path()).expect("read redis dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).expect("wipe redis dir");
            } else {
                std::fs::remove_file(&path).expect("wipe redis file");
            }
        }
        if let Some(from) = from {
            copy_dir(from, self.dir.path());
        }
        self.restart();
    }

    /// Kills the server and copies its data directory to `to`: what a backup taken now would hold.
    pub fn kill_and_copy_data(&mut self, to: &std::path::Path) {
        self.kill();
        copy_dir(self.dir.path(), to);
    }

    /// Runs `redis-cli` against the server and returns its trimmed output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The server's process id, e.g. to SIGSTOP it (SIGKILL on drop works on a stopped process too).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copies the directory tree `from` into `to` (created if missing).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create copy dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("file name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy file");
        }
    }
}

/// A home whose database is `redis` under `prefix`.
pub fn redis_home(redis: &PrivateRedis, prefix: &str) -> super::daemon::TestHome {
    let home = super::daemon::TestHome::init();
    home.set_config("Common.DB.Driver", "redis");
    home.set_config("Common.DB.Redis.Addr", redis.url());
    home.set_config("Common.DB.Redis.Prefix", prefix);
    home
}
