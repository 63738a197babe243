//! `/metrics` over HTTP: [`answer`], used by the main server's route (behind the API token), and the optional
//! separate listener of `[API] MetricsListen` ([`MetricsServer`]), which serves only `GET /metrics`, without
//! authentication, for a private scrape network.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use jsonrpsee::server::{HttpBody, HttpResponse};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use super::MetricsExporter;
use super::scrape::CONTENT_TYPE;
use crate::rpc::piece::text;

/// The path.
pub const METRICS_PATH: &str = "/metrics";

/// Connections the separate listener serves at once; more wait in the kernel's backlog.
const MAX_SCRAPE_CONNECTIONS: usize = 16;

/// Time a scraper has to send its request headers (and to stay idle on a kept-alive connection).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The answer to `method /metrics`: the text for `GET` and `HEAD`, 405 otherwise.
pub fn answer(exporter: &MetricsExporter, method: &Method) -> HttpResponse {
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, format!("{method} {METRICS_PATH}: only GET is allowed"));
    }
    match exporter.render() {
        Ok(body) => http::Response::builder()
            .status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(HttpBody::from(body))
            .unwrap_or_else(|e| text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the metrics failed: {e}")),
    }
}

/// The running `[API] MetricsListen` listener.
pub struct MetricsServer {
    /// Where it listens.
    pub local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    accept_loop: JoinHandle<()>,
}

impl MetricsServer {
    /// Serves `GET /metrics` (only) from `exporter` on `listener`, without authentication.
    pub fn start(listener: TcpListener, exporter: MetricsExporter) -> std::io::Result<MetricsServer> {
        let local_addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let accept_loop = tokio::spawn(accept_loop(listener, Arc::new(exporter), stopped));
        tracing::info!(listen = %local_addr, "serving {METRICS_PATH} without authentication ([API] MetricsListen)");
        Ok(MetricsServer { local_addr, stop, accept_loop })
    }

    /// Stops accepting and ends every open scrape connection.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.accept_loop.await;
    }
}

async fn accept_loop(listener: TcpListener, exporter: Arc<MetricsExporter>, mut stopped: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_SCRAPE_CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let acquired = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot,
            _ = stopped.changed() => break,
        };
        let Ok(slot) = acquired else { break };
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(e) => {
                    tracing::warn!("{METRICS_PATH} listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        let exporter = Arc::clone(&exporter);
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let response = match req.uri().path() {
                    METRICS_PATH => answer(&exporter, req.method()),
                    path => text(StatusCode::NOT_FOUND, format!("no such endpoint {path}; use {METRICS_PATH}")),
                };
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
            if let Err(e) = builder.serve_connection(TokioIo::new(socket), service).await {
                tracing::debug!("{METRICS_PATH} connection ended: {e}");
            }
            drop(slot);
        });
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}
