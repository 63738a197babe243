//! The GET peer: nginx (Debian `nginx-light`) serving a directory with `sendfile on`, started by the benchmark
//! with its own prefix and config in a scratch dir, on a free loopback port; one master and one worker process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::proc_stats::{ProcCost, ProcSample, children_of};

/// Where Debian installs nginx (`/usr/sbin` is not on every user's PATH).
const NGINX: &str = "/usr/sbin/nginx";

/// A running nginx of the benchmark's own.
pub struct Nginx {
    child: Child,
    /// Its loopback port.
    pub port: u16,
    /// `nginx/1.22.1`.
    pub version: String,
}

/// The nginx binary, installing Debian's `nginx-light` with apt-get when it is missing (as `scripts/setup.sh`
/// installs what the build needs: only when missing, never starting the distribution's service).
pub fn binary() -> anyhow::Result<PathBuf> {
    if let Some(found) = find() {
        return Ok(found);
    }
    eprintln!("nginx is missing: installing Debian's nginx-light with apt-get (the GET peer)");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let apt = |args: &[&str]| -> anyhow::Result<()> {
        let mut command = if root { Command::new("apt-get") } else { Command::new("sudo") };
        if !root {
            command.arg("apt-get");
        }
        let status = command
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .context("cannot run apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed ({status})", args.join(" "));
        }
        Ok(())
    };
    apt(&["update", "-qq"])?;
    apt(&["install", "-y", "-qq", "--no-install-recommends", "nginx-light"])?;
    find().context("nginx is still missing after installing nginx-light: install it (apt-get install nginx-light)")
}

fn find() -> Option<PathBuf> {
    if Path::new(NGINX).is_file() {
        return Some(PathBuf::from(NGINX));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("nginx")).find(|p| p.is_file())
}

/// The config: `root` served at `/`, `sendfile on`, everything nginx writes under `prefix`.
pub fn config(prefix: &Path, root: &Path, port: u16, user: Option<&str>) -> String {
    let p = prefix.display();
    // As root, nginx's worker would switch to `nobody`, who cannot read the benchmark's 0700 scratch dirs.
    let user = user.map(|u| format!("user {u};\n")).unwrap_or_default();
    format!(
        "{user}daemon off;\nmaster_process on;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log warn;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  default_type application/octet-stream;\n  \
         client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fastcgi;\n  \
         uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n  \
         server {{\n    listen 127.0.0.1:{port};\n    root {};\n    location / {{ }}\n  }}\n}}\n",
        root.display()
    )
}

impl Nginx {
    /// Starts nginx serving `root` on a free loopback port, with its prefix, config and logs in `prefix`.
    pub fn start(prefix: &Path, root: &Path) -> anyhow::Result<Nginx> {
        let nginx = binary()?;
        let version = Command::new(&nginx)
            .arg("-v")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).trim().trim_start_matches("nginx version: ").to_string())
            .unwrap_or_default();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        // SAFETY: geteuid has no preconditions.
        let user = (unsafe { libc::geteuid() } == 0).then_some("root");
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, config(prefix, root, port, user))
            .with_context(|| format!("cannot write {}", conf.display()))?;
        let child = Command::new(&nginx)
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(prefix.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", nginx.display()))?;
        let mut server = Nginx { child, port, version };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && !server.workers().is_empty() {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                let log = std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default();
                bail!("nginx exited at start ({status}): {log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("nginx did not listen on 127.0.0.1:{port} within 10 s")
    }

    fn workers(&self) -> Vec<u32> {
        children_of(self.child.id())
    }

    /// The master's and the workers' samples.
    pub fn sample(&self) -> anyhow::Result<Vec<(u32, ProcSample)>> {
        std::iter::once(self.child.id()).chain(self.workers()).map(|pid| Ok((pid, ProcSample::read(pid)?))).collect()
    }

    /// What the master and the workers paid since `before` (a worker must live through the run).
    pub fn cost_since(&self, before: &[(u32, ProcSample)]) -> anyhow::Result<ProcCost> {
        let mut cost = ProcCost::default();
        for (pid, later) in self.sample()? {
            let earlier = before.iter().find(|(p, _)| *p == pid).map(|(_, s)| s.clone()).unwrap_or_default();
            cost = cost.add(earlier.cost_until(&later));
        }
        Ok(cost)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its workers (a SIGKILL would orphan them).
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_serves_the_root_with_sendfile_on_loopback_and_writes_only_under_its_prefix() {
        let text = config(Path::new("/s/nginx"), Path::new("/s/home/pieces"), 4242, Some("root"));
        assert!(text.starts_with("user root;\n"), "{text}");
        for line in ["sendfile on;", "listen 127.0.0.1:4242;", "root /s/home/pieces;", "pid /s/nginx/nginx.pid;"] {
            assert!(text.contains(line), "{line}: {text}");
        }
        for path in text.split_whitespace().filter(|w| w.starts_with('/') && *w != "/") {
            assert!(path.starts_with("/s/"), "{path} is outside the scratch dirs: {text}");
        }
        assert!(!config(Path::new("/s"), Path::new("/r"), 1, None).contains("user "));
    }
}
