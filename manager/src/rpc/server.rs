//! The HTTP server: one listener for JSON-RPC over HTTP and WebSocket (`/rpc/v0`) and piece HTTP
//! (`/piecestore/`) and Prometheus metrics (`/metrics`, see [`crate::metrics`]), every request authorized by [`super::auth`] (token, or trusted network for worker calls)
//! before anything runs.
//!
//! Every resource a client can hold is bounded by [`ServerLimits`] (the `[API]` keys): open connections, in all,
//! per address and outside `TrustedNetworks` ([`super::connections`]; one more is answered 503 and closed), the
//! time to send a request's headers, request and response body sizes, calls per batch, and piece transfers, which run on their own threads so that they never occupy the pool
//! serving `Venus.*` calls.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use jsonrpsee::Methods;
use jsonrpsee::server::middleware::rpc::RpcServiceBuilder;
use jsonrpsee::server::{
    BatchRequestConfig, HttpResponse, Server, ServerConfig, ServerHandle, StopHandle, TowerServiceBuilder, stop_channel,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tower::Service;

use super::auth::{self, AuthPolicy};
use super::connections::{ConnectionLimits, ConnectionTable, Refused};
use super::piece::{self, PieceTransfers};
use crate::config::ApiConfig;
use crate::filestore::StoreManager;
use crate::metrics::http::METRICS_PATH;
use crate::metrics::rpc::MethodTable;
use crate::metrics::{MetricsExporter, RpcMetricsLayer};
use crate::sectors::StateManager;

/// The JSON-RPC path.
pub const RPC_PATH: &str = "/rpc/v0";
/// The piece HTTP prefix.
pub const PIECE_PREFIX: &str = "/piecestore/";

/// The bounds on what clients may hold, from `[API]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Time to send a request's headers (also the idle time of a kept-alive connection).
    pub header_read_timeout: Duration,
    /// Open connections at most.
    pub max_connections: u32,
    /// Open connections from one untrusted address at most.
    pub max_connections_per_peer: u32,
    /// Connections kept for addresses in `TrustedNetworks`.
    pub reserved_for_trusted: u32,
    /// Largest JSON-RPC request body, bytes.
    pub max_request_body_bytes: u32,
    /// Largest JSON-RPC response body, bytes.
    pub max_response_body_bytes: u32,
    /// Most calls in one batch.
    pub max_batch_requests: u32,
    /// Piece transfers at once.
    pub max_piece_transfers: u32,
    /// A piece transfer making no progress for this long is aborted.
    pub piece_transfer_idle: Duration,
}

impl ServerLimits {
    /// The limits configured under `[API]`; zeros count as one (second, connection, byte...).
    pub fn from_config(api: &ApiConfig) -> ServerLimits {
        ServerLimits {
            header_read_timeout: Duration::from_secs(api.header_read_timeout_secs.max(1)),
            max_connections: api.max_connections.max(1),
            max_connections_per_peer: api.max_connections_per_peer.max(1),
            reserved_for_trusted: if api.trusted_networks.is_empty() {
                0
            } else {
                // At most 100 percent: the product fits in u64.
                (u64::from(api.max_connections.max(1)) * u64::from(api.trusted_reserved_percent.min(100)) / 100) as u32
            },
            max_request_body_bytes: api.max_request_body_bytes.max(1),
            max_response_body_bytes: api.max_response_body_bytes.max(1),
            max_batch_requests: api.max_batch_requests.max(1),
            max_piece_transfers: api.max_piece_transfers.max(1),
            piece_transfer_idle: Duration::from_secs(api.piece_transfer_idle_secs.max(1)),
        }
    }
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits::from_config(&ApiConfig::default())
    }
}

/// A running server.
pub struct RpcServer {
    /// Where it listens.
    pub local_addr: SocketAddr,
    handle: ServerHandle,
    accept_loop: JoinHandle<()>,
}

impl RpcServer {
    /// Stops accepting, lets in-flight requests finish, and returns when the accept loop has ended.
    pub async fn stop(self) {
        let _ = self.handle.stop();
        let _ = self.accept_loop.await;
        self.handle.stopped().await;
    }
}

struct Shared {
    auth: AuthPolicy,
    methods: Methods,
    stores: Arc<StoreManager>,
    sectors: Arc<StateManager>,
    builder: TowerServiceBuilder<
        tower::layer::util::Stack<RpcMetricsLayer, tower::layer::util::Identity>,
        tower::layer::util::Identity,
    >,
    metrics: MetricsExporter,
    stop: StopHandle,
    limits: ServerLimits,
    connections: Arc<ConnectionTable>,
    pieces: PieceTransfers,
}

/// Serves `methods`, the piece stores and `metrics` on `listener`, within `limits`; `Venus.ListSectors` is
/// streamed from `sectors`.
pub fn start(
    listener: TcpListener,
    methods: Methods,
    stores: Arc<StoreManager>,
    sectors: Arc<StateManager>,
    auth: AuthPolicy,
    limits: ServerLimits,
    metrics: MetricsExporter,
) -> std::io::Result<RpcServer> {
    let local_addr = listener.local_addr()?;
    auth.log_startup();
    let (stop, handle) = stop_channel();
    let config = ServerConfig::builder()
        .max_request_body_size(limits.max_request_body_bytes)
        .max_response_body_size(limits.max_response_body_bytes)
        // Our own cap on connections comes first; jsonrpsee's (one slot per request in flight) must never be
        // the tighter one, or it answers 429 on its own.
        .max_connections(limits.max_connections.saturating_mul(2))
        .set_batch_request_config(BatchRequestConfig::Limit(limits.max_batch_requests))
        .build();
    let table = MethodTable::new(crate::metrics::global(), methods.method_names());
    let rpc_metrics = RpcMetricsLayer::new(table, limits.max_response_body_bytes as usize);
    let builder = Server::builder()
        .set_config(config)
        .set_rpc_middleware(RpcServiceBuilder::new().layer(rpc_metrics))
        .to_service_builder();
    let shared = Arc::new(Shared {
        auth,
        methods,
        stores,
        sectors,
        builder,
        metrics,
        stop,
        limits,
        connections: ConnectionTable::new(ConnectionLimits {
            total: limits.max_connections,
            per_peer: limits.max_connections_per_peer,
            reserved_for_trusted: limits.reserved_for_trusted,
        }),
        pieces: PieceTransfers::new(limits.max_piece_transfers as usize, limits.piece_transfer_idle),
    });
    let accept_loop = tokio::spawn(accept_loop(listener, shared));
    Ok(RpcServer { local_addr, handle, accept_loop })
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => (socket, peer.ip()),
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shared.stop.clone().shutdown() => break,
        };
        let permit = match shared.connections.admit(peer, shared.auth.trusts(peer)) {
            Ok(permit) => permit,
            Err(refused) => {
                tokio::spawn(refuse_connection(socket, refused));
                continue;
            }
        };
        let per_conn = Arc::clone(&shared);
        tokio::spawn(async move {
            serve_connection(socket, peer, per_conn).await;
            drop(permit);
        });
    }
}

/// Answers a connection over a limit with 503 (best effort, bounded in time) and closes it.
async fn refuse_connection(mut socket: TcpStream, refused: Refused) {
    tracing::warn!("refused a connection: {refused}");
    let body = format!("{refused}\n");
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    // Drain what the client sent before closing, or the close becomes a reset that may discard the answer.
    let answer = async {
        socket.write_all(response.as_bytes()).await?;
        socket.shutdown().await?;
        let mut sink = [0u8; 4096];
        while socket.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
}

/// One HTTP/1.1 connection (WebSocket upgrades included), with the header-read timeout, until it ends or the
/// server stops (then gracefully: the request in flight finishes).
async fn serve_connection(socket: TcpStream, peer: IpAddr, shared: Arc<Shared>) {
    let stopped = shared.stop.clone().shutdown();
    let per_conn = Arc::clone(&shared);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = Arc::clone(&per_conn);
        async move { Ok::<_, std::convert::Infallible>(route(req, peer, &shared).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(shared.limits.header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(socket), service).with_upgrades();
    tokio::pin!(conn, stopped);
    let result = tokio::select! {
        result = &mut conn => result,
        _ = &mut stopped => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!("connection ended: {e}");
    }
}

async fn route(req: Request<Incoming>, peer: IpAddr, shared: &Shared) -> HttpResponse {
    // Unauthenticated, from anywhere, as Go serves it: it tells nothing /metrics would not.
    if req.uri().path() == super::healthcheck::HEALTHCHECK_PATH {
        return super::healthcheck::answer();
    }
    let req = match auth::authorize(req, peer, &shared.auth).await {
        Ok(req) => req,
        Err(refusal) => return refusal,
    };
    let path = req.uri().path().to_string();
    if path == RPC_PATH {
        // A single `Venus.ListSectors` call is streamed; everything else comes back unchanged.
        let req = match super::venus::listing::stream::answer_or_pass(req, &shared.sectors).await {
            Ok(streamed) => return streamed,
            Err(req) => req,
        };
        let mut service = shared.builder.clone().build(shared.methods.clone(), shared.stop.clone());
        return match service.call(req).await {
            Ok(response) => response,
            Err(e) => piece::text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
    }
    if let Some(name) = path.strip_prefix(PIECE_PREFIX) {
        return shared.pieces.handle(req, name, Arc::clone(&shared.stores)).await;
    }
    if path == METRICS_PATH {
        return crate::metrics::http::answer(&shared.metrics, req.method());
    }
    piece::text(
        StatusCode::NOT_FOUND,
        format!("no such endpoint {path}; use {RPC_PATH}, {PIECE_PREFIX}<name> or {METRICS_PATH}"),
    )
}
