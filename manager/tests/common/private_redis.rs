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
