//! Issue 17 item 11: unauthenticated peers counted toward `[API] MaxConnections`, so anyone who could reach the
//! port could make workers get 503. Now one address holds at most `MaxConnectionsPerPeer` connections, and
//! addresses outside `TrustedNetworks` share what `TrustedReservedPercent` leaves: the workers' share stays free.
//! The token is not known when a connection is accepted, so the share is decided by address alone. Real daemon,
//! real connections from chosen loopback addresses.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::bounded::stop_within;
use common::daemon::{TestHome, raw_request_from};

fn from(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// An idle connection from `source`, held open.
async fn connect_from(source: IpAddr, port: u16) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await.unwrap()
}

/// damocles-worker's `WorkerPing` without a token (`damocles-worker/src/rpc/sealer/mod.rs:587`).
fn ping() -> Vec<u8> {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"Venus.WorkerPing","params":[{"Name":"worker-1","Dest":"10.0.0.7:17890","Version":"v0.11.0","Summary":{"Threads":4,"Empty":1,"Paused":0,"Running":3,"Waiting":0,"Errors":0}}]}"#;
    format!(
        "POST /rpc/v0 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn version(token: &str) -> Vec<u8> {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"Venus.Version"}"#;
    format!(
        "POST /rpc/v0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_peer_cannot_take_every_connection_and_trusted_workers_keep_their_reserved_share() {
    let home = TestHome::init();
    home.set_config("API.MaxConnections", 20);
    home.set_config("API.MaxConnectionsPerPeer", 5);
    home.set_config("API.TrustedReservedPercent", 50);
    home.set_config("API.TrustedNetworks", vec!["127.0.0.2/32".to_string()]);
    home.set_config("API.HeaderReadTimeoutSecs", 120);
    let daemon = home.start();
    let port = daemon.port;

    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect_from(from(3), port).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, headers, body) = raw_request_from(from(3), port, &version(&daemon.token)).await;
    assert_eq!(status, 503, "{body}");
    assert!(headers.iter().any(|(name, _)| name == "retry-after"), "{headers:?}");
    assert!(body.contains("127.0.0.3") && body.contains("[API] MaxConnectionsPerPeer"), "{body}");

    // A second untrusted address takes the rest of the untrusted half (10 of 20).
    for _ in 0..5 {
        held.push(connect_from(from(4), port).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _, body) = raw_request_from(from(5), port, &version(&daemon.token)).await;
    assert_eq!(status, 503, "a third untrusted address finds the shared half full: {body}");
    assert!(body.contains("[API] TrustedReservedPercent") && body.contains("TrustedNetworks"), "{body}");

    // The worker's network still gets in, many times over.
    for _ in 0..8 {
        let (status, _, body) = raw_request_from(from(2), port, &ping()).await;
        assert_eq!(status, 200, "a trusted worker was refused: {body}");
    }
    let log = daemon.log();
    assert!(log.contains("MaxConnectionsPerPeer") && log.contains("TrustedReservedPercent"), "logged:\n{log}");

    // Once the idle connections close, the untrusted share is free again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = raw_request_from(from(5), port, &version(&daemon.token)).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "connections were not given back: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stop_within(daemon, Duration::from_secs(40)), Some(0));
}
