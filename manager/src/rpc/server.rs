//! The HTTP server: one listener for JSON-RPC over HTTP and WebSocket (`/rpc/v0`) and piece HTTP
//! (`/piecestore/`), every request authorized by [`super::auth`] (token, or trusted network for worker calls)
//! before anything runs.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use jsonrpsee::Methods;
use jsonrpsee::server::{
    HttpResponse, Server, ServerHandle, StopHandle, TowerServiceBuilder, serve_with_graceful_shutdown, stop_channel,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::Service;

use super::auth::{self, AuthPolicy};
use super::piece;
use crate::filestore::StoreManager;

/// The JSON-RPC path.
pub const RPC_PATH: &str = "/rpc/v0";
/// The piece HTTP prefix.
pub const PIECE_PREFIX: &str = "/piecestore/";

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
    builder: TowerServiceBuilder<tower::layer::util::Identity, tower::layer::util::Identity>,
    stop: StopHandle,
}

/// Serves `methods` and the piece stores on `listener`.
pub fn start(
    listener: TcpListener,
    methods: Methods,
    stores: Arc<StoreManager>,
    auth: AuthPolicy,
) -> std::io::Result<RpcServer> {
    let local_addr = listener.local_addr()?;
    auth.log_startup();
    let (stop, handle) = stop_channel();
    let shared = Arc::new(Shared { auth, methods, stores, builder: Server::builder().to_service_builder(), stop });
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
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shared.stop.clone().shutdown() => break,
        };
        let per_conn = Arc::clone(&shared);
        let service = tower::service_fn(move |req: Request<Incoming>| {
            let shared = Arc::clone(&per_conn);
            async move { Ok::<_, std::convert::Infallible>(route(req, peer, &shared).await) }
        });
        let stopped = shared.stop.clone().shutdown();
        tokio::spawn(async move {
            if let Err(e) = serve_with_graceful_shutdown(socket, service, stopped).await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
}

async fn route(req: Request<Incoming>, peer: IpAddr, shared: &Shared) -> HttpResponse {
    let req = match auth::authorize(req, peer, &shared.auth).await {
        Ok(req) => req,
        Err(refusal) => return refusal,
    };
    let path = req.uri().path().to_string();
    if path == RPC_PATH {
        let mut service = shared.builder.clone().build(shared.methods.clone(), shared.stop.clone());
        return match service.call(req).await {
            Ok(response) => response,
            Err(e) => piece::text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
    }
    if let Some(name) = path.strip_prefix(PIECE_PREFIX) {
        return piece::handle(req, name, Arc::clone(&shared.stores)).await;
    }
    piece::text(StatusCode::NOT_FOUND, format!("no such endpoint {path}; use {RPC_PATH} or {PIECE_PREFIX}<name>"))
}
