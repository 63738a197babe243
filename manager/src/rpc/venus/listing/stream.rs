//! `Venus.ListSectors` streamed over HTTP: a single (non-batch) call is answered as a chunked body written
//! sector by sector, so a listing of any size needs bounded memory and is not limited by
//! `[API] MaxResponseBodyBytes`.
//!
//! - **Which requests**: `POST /rpc/v0` with a JSON content type and a `Content-Length` of at most
//!   [`PEEK_LIMIT`], whose body is one call of `Venus.ListSectors` with valid params (only a body containing the
//!   method's name verbatim is parsed here, so every other call is parsed once). Everything else (batches,
//!   other methods, invalid params, WebSocket, a chunked request body) goes to jsonrpsee unchanged, which answers
//!   it (or the params error) as before. Authorization has already run (`rpc::auth`).
//! - **Bytes**: `{"jsonrpc":"2.0","id":<id>,"result":[` + each sector's JSON, comma-separated + `]}`: exactly
//!   what jsonrpsee answers for the same call.
//! - **Memory and threads**: a thread of its own (never one of the blocking pool serving `Venus.*`) reads the sectors ([`StateManager::listing`]: short reads, never one long
//!   transaction, never a `WATCH` on Redis) and sends chunks of about [`CHUNK_BYTES`] through a channel of
//!   [`CHANNEL_CHUNKS`]; when the client reads slowly the thread waits, so the daemon never holds more than a few
//!   chunks, plus 16 bytes per sector of the state for the sort. A client that takes nothing for [`CLIENT_IDLE`]
//!   is given up on and the thread ends.
//! - **Errors**: an error before the first chunk (e.g. the store is down) is an ordinary JSON-RPC error answer.
//!   An error after it (a record that cannot be decoded, the store failing mid-way) cannot be one, since `200`
//!   and part of the array are already sent: the connection is closed without the chunked body's terminating
//!   chunk, so the client sees a cut-off response, never a shorter list that parses as a success. The error is
//!   logged.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body::Frame;
use http_body_util::{BodyExt, Full, Limited};
use jsonrpsee::server::http::{content_type_is_json, response};
use jsonrpsee::server::{HttpBody, HttpResponse};
use jsonrpsee::types::{Id, ResponsePayload};
use manager_plugin::sector::WorkerState;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::super::super::params::Args;
use super::super::sector_error;
use super::{METHOD, params};
use crate::sectors::{JobFilter, SectorError, StateManager};

/// The largest request body inspected for a `ListSectors` call (a call is about 100 bytes); a larger one goes
/// to jsonrpsee unread.
pub const PEEK_LIMIT: u64 = 64 * 1024;
/// A chunk is sent once it holds at least this many bytes.
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Chunks waiting for a slow client at most.
pub const CHANNEL_CHUNKS: usize = 4;
/// A client that takes no chunk for this long is given up on: the listing thread ends (the connection closes
/// once the client reads or goes away).
pub const CLIENT_IDLE: Duration = Duration::from_secs(60);

/// Answers `req` when it is a single `Venus.ListSectors` call (see the module docs), streaming the sectors of
/// `sectors`; otherwise hands the request back, as it was, for jsonrpsee.
pub async fn answer_or_pass(
    req: Request<HttpBody>,
    sectors: &Arc<StateManager>,
) -> Result<HttpResponse, Request<HttpBody>> {
    let small = content_length(&req).is_some_and(|length| length <= PEEK_LIMIT);
    if req.method() != Method::POST || !content_type_is_json(&req) || !small {
        return Err(req);
    }
    let (parts, body) = req.into_parts();
    let bytes = match Limited::new(body, PEEK_LIMIT as usize).collect().await {
        Ok(collected) => collected.to_bytes(),
        // What jsonrpsee answers when the body cannot be read.
        Err(e) => {
            tracing::warn!("reading a JSON-RPC request body: {e}");
            return Ok(response::internal_error());
        }
    };
    // Most bodies are other calls: only a body naming the method verbatim is parsed here, so they are parsed once,
    // by jsonrpsee (a method name written with JSON escapes is answered whole by jsonrpsee, like a batch).
    let names_the_method = bytes.windows(METHOD.len()).any(|window| window == METHOD.as_bytes());
    let Some((id, ws, job)) = names_the_method.then(|| list_sectors_call(&bytes)).flatten() else {
        return Err(Request::from_parts(parts, HttpBody::new(Full::new(bytes))));
    };
    Ok(stream(id, ws, job, Arc::clone(sectors)).await)
}

/// The id and params of `body` when it is one call of `Venus.ListSectors` with valid params.
fn list_sectors_call(body: &[u8]) -> Option<(Id<'static>, WorkerState, JobFilter)> {
    let call: jsonrpsee::types::Request<'_> = serde_json::from_slice(body).ok()?;
    if call.method != METHOD {
        return None;
    }
    let raw = call.params.as_ref().map(|p| p.get());
    let args = Args::from_json(METHOD, raw).ok()?;
    let (ws, job) = params(args).ok()?;
    Some((call.id.into_owned(), ws, job))
}

fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers().get(http::header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// What the listing thread sends: a chunk of the body, the last one, or why the listing failed.
enum Chunk {
    Data(Bytes),
    Last(Bytes),
    Failed(SectorError),
}

/// Starts the listing thread and answers once its first chunk (or error) is there.
async fn stream(id: Id<'static>, ws: WorkerState, job: JobFilter, sectors: Arc<StateManager>) -> HttpResponse {
    let (tx, mut rx) = mpsc::channel(CHANNEL_CHUNKS);
    let head = match serde_json::to_string(&id) {
        Ok(id) => format!(r#"{{"jsonrpc":"2.0","id":{id},"result":["#),
        Err(_) => return response::internal_error(),
    };
    let send = move |chunk| send_within(&tx, chunk, CLIENT_IDLE);
    let spawned = std::thread::Builder::new()
        .name("list-sectors".into())
        .spawn(move || produce(&sectors, ws, job, head.into_bytes(), send));
    if let Err(e) = spawned {
        tracing::warn!("{METHOD}: cannot start a listing thread: {e}");
        return response::internal_error();
    }
    match rx.recv().await {
        Some(Chunk::Data(first)) => {
            response::ok_response(HttpBody::new(ListBody { first: Some(first), rx, done: false }))
        }
        Some(Chunk::Last(whole)) => response::ok_response(HttpBody::new(Full::new(whole))),
        Some(Chunk::Failed(err)) => {
            tracing::warn!("{METHOD}: {err}");
            let answer = jsonrpsee::types::Response::new(ResponsePayload::<()>::error(sector_error(err)), id);
            match serde_json::to_string(&answer) {
                Ok(text) => response::ok_response(text),
                Err(_) => response::internal_error(),
            }
        }
        // The thread ended without a word (it panicked): say so as jsonrpsee would.
        None => response::internal_error(),
    }
}

/// The listing thread: reads the sectors one at a time and sends the body in chunks, waiting while the client
/// is behind; stops early when the client is gone.
fn produce(
    sectors: &StateManager,
    ws: WorkerState,
    job: JobFilter,
    head: Vec<u8>,
    mut send: impl FnMut(Chunk) -> Result<(), Gone>,
) {
    let started = Instant::now();
    let listing = match sectors.listing(ws, job) {
        Ok(listing) => listing,
        Err(err) => {
            let _ = send(Chunk::Failed(err));
            return;
        }
    };
    let mut chunk = head;
    let (mut listed, mut sent) = (0u64, 0u64);
    for sector in listing {
        let encoded = sector.and_then(|state| {
            if listed > 0 {
                chunk.push(b',');
            }
            serde_json::to_writer(&mut chunk, &state)
                .map_err(|e| SectorError::Codec { key: state.id.to_string(), message: format!("encode: {e}") })
        });
        if let Err(err) = encoded {
            if sent > 0 {
                tracing::warn!(
                    "{METHOD} of {} sectors failed after {listed} sectors ({sent} bytes sent); closing the connection \
                     so the client sees a cut-off answer: {err}",
                    ws.collection()
                );
            }
            let _ = send(Chunk::Failed(err));
            return;
        }
        listed += 1;
        if chunk.len() >= CHUNK_BYTES {
            sent += chunk.len() as u64;
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4));
            if let Err(gone) = send(Chunk::Data(full.into())) {
                tracing::info!("{METHOD}: {gone} after {listed} sectors ({sent} bytes); the listing stops");
                return;
            }
        }
    }
    chunk.extend_from_slice(b"]}");
    sent += chunk.len() as u64;
    if send(Chunk::Last(chunk.into())).is_ok() {
        tracing::debug!("{METHOD}: {listed} {} sectors, {sent} bytes in {:?}", ws.collection(), started.elapsed());
    }
}

/// Why a chunk could not be handed over.
#[derive(Debug)]
enum Gone {
    /// The client went away (the body was dropped).
    Closed,
    /// The client took nothing for this long.
    Idle(Duration),
}

impl std::fmt::Display for Gone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gone::Closed => f.write_str("the client went away"),
            Gone::Idle(idle) => write!(f, "the client read nothing for {idle:?}"),
        }
    }
}

/// Hands `chunk` to the body, waiting while the client is behind, at most `idle` (polling, with pauses from
/// 1 ms up to 20 ms: the thread needs no runtime, also while the daemon shuts down).
fn send_within(tx: &mpsc::Sender<Chunk>, mut chunk: Chunk, idle: Duration) -> Result<(), Gone> {
    let deadline = Instant::now() + idle;
    let mut pause = Duration::from_millis(1);
    loop {
        match tx.try_send(chunk) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Closed(_)) => return Err(Gone::Closed),
            Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                chunk = back;
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(TrySendError::Full(_)) => return Err(Gone::Idle(idle)),
        }
    }
}

/// The response body: the first chunk, then the thread's chunks. A failure, or the thread ending without its
/// last chunk, is a body error, which makes hyper close the connection without ending the chunked body.
struct ListBody {
    first: Option<Bytes>,
    rx: mpsc::Receiver<Chunk>,
    /// The last chunk was yielded.
    done: bool,
}

impl http_body::Body for ListBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Chunk::Data(data))) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Poll::Ready(Some(Chunk::Last(data))) => {
                self.done = true;
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(Some(Chunk::Failed(err))) => {
                Poll::Ready(Some(Err(std::io::Error::other(format!("{METHOD} failed mid-answer: {err}")))))
            }
            Poll::Ready(None) => Poll::Ready(Some(Err(std::io::Error::other(format!(
                "{METHOD}: the listing ended without its last chunk"
            ))))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use manager_plugin::kv::Meta;
    use manager_plugin::sector::WorkerState;
    use tokio::sync::mpsc;

    use super::{CHANNEL_CHUNKS, Chunk, Gone, produce, send_within};
    use crate::sectors::{JobFilter, StateManager};

    fn sectors(count: u32) -> StateManager {
        let db = Arc::new(memdb::open(&Meta::new()).unwrap());
        let sectors = StateManager::open(db).unwrap();
        for _ in 0..count.div_ceil(1000) {
            sectors.allocate(1000, 8, count.min(1000)).unwrap();
        }
        sectors
    }

    #[test]
    fn a_client_that_stops_reading_frees_the_listing_thread_after_the_idle_time() {
        let sectors = sectors(8_000); // a few MiB of JSON: more than the channel holds
        let (tx, mut rx) = mpsc::channel(CHANNEL_CHUNKS);
        let idle = Duration::from_millis(300);
        let mut outcome = None;
        let started = Instant::now();
        produce(&sectors, WorkerState::Online, JobFilter::All, b"[".to_vec(), |chunk| {
            let sent = send_within(&tx, chunk, idle);
            if let Err(gone) = &sent {
                outcome = Some(gone.to_string());
            }
            sent
        });
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_eq!(outcome.as_deref(), Some(Gone::Idle(idle).to_string().as_str()));
        // Only what the channel holds was produced: the thread waited for the reader, then gave up.
        let mut queued = 0;
        while let Ok(chunk) = rx.try_recv() {
            assert!(matches!(chunk, Chunk::Data(_)));
            queued += 1;
        }
        assert_eq!(queued, CHANNEL_CHUNKS);
    }

    #[test]
    fn a_client_that_went_away_stops_the_listing_at_once() {
        let sectors = sectors(8_000);
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        drop(rx);
        let mut sends = 0;
        produce(&sectors, WorkerState::Online, JobFilter::All, b"[".to_vec(), |chunk| {
            sends += 1;
            send_within(&tx, chunk, Duration::from_secs(60))
        });
        assert_eq!(sends, 1, "the first refused chunk ends the listing");
    }
}
