//! What an operator coming from the Go manager, and an unmodified damocles-worker, find on first run: the
//! trusted loopback `daemon init` writes, the log line naming a refused worker's address, Go's home variables,
//! SIGUSR1 (Go's config reload) that must not kill the daemon, `GET /healthcheck` without the token, and
//! malformed `Authorization` headers. Real binary, real HTTP from chosen loopback addresses, real signals.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Duration;

use common::daemon::{TestHome, binary, raw_request_from};

/// damocles-worker's `WorkerPing` (`damocles-worker/src/rpc/sealer/mod.rs:587`, as `tests/worker_contract.rs`
/// sends it), no token.
const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"Venus.WorkerPing","params":[{"Name":"worker-1","Dest":"10.0.0.7:17890","Version":"v0.11.0","Summary":{"Threads":4,"Empty":1,"Paused":0,"Running":3,"Waiting":0,"Errors":0}}]}"#;

fn from(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A POST of `body` to `/rpc/v0` with `extra` header lines (each ending in `\r\n`).
fn post(body: &str, extra: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST /rpc/v0 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(extra);
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body.as_bytes());
    request
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Issue 16 item 6: the worker cannot send a token. `daemon init` trusts loopback (so workers on the manager's
/// host work as they are) and shows, commented, where the workers' subnet goes.
#[tokio::test(flavor = "multi_thread")]
async fn daemon_init_trusts_loopback_and_shows_where_the_worker_subnet_goes() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(binary()).arg("--home").arg(dir.path()).args(["daemon", "init"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(dir.path().join("sector-manager.cfg")).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(lines.contains(&r#"TrustedNetworks = ["127.0.0.0/8", "::1/128"]"#), "{text}");
    assert!(lines.contains(&r#"# TrustedNetworks = ["127.0.0.0/8", "::1/128", "10.0.0.0/8"]"#), "{text}");
    assert!(text.contains("ANY local user"), "the config says what trusting loopback means:\n{text}");

    let home = TestHome::init();
    let daemon = home.start();
    let (status, _, body) = raw_request_from(from(1), daemon.port, &post(PING, b"")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""result":null"#), "{body}");
    let import = r#"{"jsonrpc":"2.0","id":1,"method":"Venus.ImportSector","params":[]}"#;
    assert_eq!(raw_request_from(from(1), daemon.port, &post(import, b"")).await.0, 401, "operator methods need it");
    assert_eq!(daemon.stop(), Some(0));
}

/// Issue 16 item 6: a refused tokenless call is logged naming the peer and `[API] TrustedNetworks`, once per
/// peer per minute however often the worker retries.
#[tokio::test(flavor = "multi_thread")]
async fn refused_tokenless_calls_are_logged_naming_the_peer_and_the_key_once_a_minute() {
    let home = TestHome::init();
    home.set_config("API.TrustedNetworks", vec!["127.0.0.2/32".to_string()]);
    let daemon = home.start();
    for _ in 0..5 {
        let (status, _, body) = raw_request_from(from(3), daemon.port, &post(PING, b"")).await;
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("127.0.0.3") && body.contains("TrustedNetworks"), "{body}");
    }
    assert_eq!(raw_request_from(from(4), daemon.port, &post(PING, b"")).await.0, 401);
    assert_eq!(raw_request_from(from(2), daemon.port, &post(PING, b"")).await.0, 200, "the trusted one");
    let log = daemon.log();
    let refused = |peer: &str| {
        log.lines().filter(|l| l.contains(&format!("refused a request without the API token from {peer} "))).count()
    };
    assert_eq!(refused("127.0.0.3"), 1, "five refusals, one line:\n{log}");
    assert_eq!(refused("127.0.0.4"), 1, "{log}");
    assert_eq!(refused("127.0.0.2"), 0, "{log}");
    assert!(log.contains("is not in [API] TrustedNetworks"), "{log}");
    assert_eq!(daemon.stop(), Some(0));
}

/// Issue 17 item 10: a non-ASCII `Authorization` header was treated as "no token", so from a trusted network it
/// reached the worker methods. It is a 401 naming the header now, as is any malformed or doubled one.
#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_authorization_header_from_a_trusted_network_is_a_401_naming_it() {
    let home = TestHome::init();
    let daemon = home.start();
    let bad: [&[u8]; 4] = [
        "Authorization: Bearer t\u{f6}ken\r\n".as_bytes(),
        b"Authorization: Bearer \xff\xfe\r\n",
        b"Authorization: Basic dXNlcjpwYXNz\r\n",
        b"Authorization: Bearer a\r\nAuthorization: Bearer b\r\n",
    ];
    for header in bad {
        let (status, _, body) = raw_request_from(from(1), daemon.port, &post(PING, header)).await;
        assert_eq!(status, 401, "{:?}: {body}", String::from_utf8_lossy(header));
        assert!(body.contains("malformed `Authorization` header"), "{body}");
    }
    let good = format!("Authorization: Bearer {}\r\n", daemon.token);
    assert_eq!(raw_request_from(from(1), daemon.port, &post(PING, good.as_bytes())).await.0, 200);
    assert_eq!(daemon.stop(), Some(0));
}

/// Issue 16 item 7: `GET /healthcheck` answers without the token, from anywhere, as Go's does.
#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_answers_without_the_token_from_anywhere_as_go_serves_it() {
    let home = TestHome::init();
    home.set_config("API.TrustedNetworks", Vec::<String>::new());
    let daemon = home.start();
    let (status, headers, body) = raw_request_from(from(7), daemon.port, &get("/healthcheck")).await;
    assert_eq!(status, 200);
    assert_eq!(body, "{\"status\":\"OK\"}\n");
    assert!(
        headers.contains(&("content-type".to_string(), "application/json; charset=utf-8".to_string())),
        "{headers:?}"
    );
    assert_eq!(raw_request_from(from(7), daemon.port, &post("", b"")).await.0, 401, "the rest still needs it");
    assert_eq!(raw_request_from(from(7), daemon.port, &get("/healthcheck/x")).await.0, 401, "that path only");
    assert_eq!(daemon.stop(), Some(0));
}

/// Issue 16 item 7: SIGUSR1 is Go's config reload; its default action would kill the process. The daemon logs
/// that reload is not supported and goes on; SIGTERM still stops it cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn sigusr1_never_kills_the_daemon() {
    let home = TestHome::init();
    let mut daemon = home.start();
    for _ in 0..3 {
        let sent = Command::new("kill").args(["-USR1", &daemon.child.id().to_string()]).status().unwrap();
        assert!(sent.success());
        std::thread::sleep(Duration::from_millis(200));
        assert!(daemon.child.try_wait().unwrap().is_none(), "SIGUSR1 killed the daemon:\n{}", daemon.log());
        let version: String = daemon.call("Venus.Version", jsonrpsee::rpc_params![]).await.unwrap();
        assert!(version.starts_with("damocles-rs/"));
    }
    let log = daemon.log();
    assert_eq!(log.matches("SIGUSR1 received").count(), 3, "{log}");
    assert!(log.contains("does not reload its configuration"), "{log}");
    assert_eq!(daemon.stop(), Some(0));
}

/// Issue 16 item 7: Go's home variables, in Go's order (`DAMOCLES_PATH`, `VENUS_SECTOR_MANAGER_PATH`, `VSM_PATH`:
/// `HomeFlag.EnvVars`, `damocles-manager/cmd/damocles-manager/internal/global.go`), after our `DAMOCLES_HOME`;
/// `--home` beats them all. `daemon init` shows which home it used; `daemon run` runs there.
#[test]
fn the_home_comes_from_the_flag_then_ours_then_gos_variables_in_gos_order() {
    let temp = tempfile::tempdir().unwrap();
    let dir = |name: &str| temp.path().join(name);
    let vars =
        [("DAMOCLES_HOME", "ours"), ("DAMOCLES_PATH", "a"), ("VENUS_SECTOR_MANAGER_PATH", "b"), ("VSM_PATH", "c")];
    let init = |flag: Option<&str>, set: &[(&str, &str)]| {
        let mut command = Command::new(binary());
        command.env("HOME", temp.path());
        for (name, _) in vars {
            command.env_remove(name);
        }
        for (name, value) in set {
            command.env(name, dir(value));
        }
        if let Some(flag) = flag {
            command.arg("--home").arg(dir(flag));
        }
        let out = command.args(["daemon", "init"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for first in 0..vars.len() {
        let stdout = init(None, &vars[first..]);
        let chosen = dir(vars[first].1);
        assert!(stdout.contains(&format!("initialized {}", chosen.display())), "{:?}: {stdout}", &vars[first..]);
        assert!(chosen.join("sector-manager.cfg").is_file());
        for (_, other) in &vars[first + 1..] {
            assert!(!dir(other).exists(), "{other} was used although {} is set", vars[first].0);
        }
    }
    let stdout = init(Some("flag"), &vars);
    assert!(stdout.contains(&format!("initialized {}", dir("flag").display())), "{stdout}");
    let stdout = init(None, &[]);
    assert!(stdout.contains(&format!("initialized {}", dir(".damocles-manager").display())), "{stdout}");

    // `daemon run` from $VSM_PATH: it is an explicit home (never created implicitly), and the daemon runs there.
    let mut command = Command::new(binary());
    command.env("HOME", temp.path()).env("VSM_PATH", dir("missing"));
    for (name, _) in &vars[..3] {
        command.env_remove(name);
    }
    command.args(["daemon", "run"]);
    let stderr = common::daemon::refused(command);
    assert!(stderr.contains(&dir("missing").display().to_string()) && stderr.contains("does not exist"), "{stderr}");
}
