//! Piece HTTP: `PUT /piecestore/<name>` streams the body into the first writable piece store, `GET` streams it
//! back (falling back to `<name>.car`). Bodies cross between async and the synchronous store API through bounded
//! channels of 1 MiB chunks, so memory stays flat whatever the size.
//!
//! Transfers are isolated from the JSON-RPC API: each runs on a thread of its own, never on the blocking pool
//! that serves `Venus.*`, and at most [`PieceTransfers`]' limit run at once; one more is answered `503` with
//! `Retry-After`. A transfer whose client stops sending or reading for the idle limit is aborted.

use std::io::{self, Read};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use jsonrpsee::server::{HttpBody, HttpResponse};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::filestore::StoreManager;

const CHUNK: usize = 1 << 20;
const CHANNEL_CHUNKS: usize = 4;
/// What a refused transfer is told to wait before retrying, seconds.
const RETRY_AFTER_SECS: u32 = 5;

/// The bound on piece transfers running at once, and their idle limit.
#[derive(Clone)]
pub struct PieceTransfers {
    slots: Arc<Semaphore>,
    limit: usize,
    idle: Duration,
}

impl PieceTransfers {
    /// At most `limit` transfers at once; a transfer idle for `idle` is aborted.
    pub fn new(limit: usize, idle: Duration) -> PieceTransfers {
        PieceTransfers { slots: Arc::new(Semaphore::new(limit)), limit, idle }
    }

    /// Answers one `/piecestore/<name>` request; `raw_name` is the path after the prefix, percent-encoded.
    pub async fn handle<B>(&self, req: Request<B>, raw_name: &str, stores: Arc<StoreManager>) -> HttpResponse
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display + Send,
    {
        let name = match percent_encoding::percent_decode_str(raw_name).decode_utf8() {
            Ok(name) => name.into_owned(),
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("piece name {raw_name:?} is not UTF-8 once percent-decoded: {e}"),
                );
            }
        };
        if let Err(e) = manager_plugin::filestore::validate_object_path(&name) {
            return text(StatusCode::BAD_REQUEST, e.to_string());
        }
        if !matches!(*req.method(), Method::PUT | Method::GET) {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} is not allowed on /piecestore/; use GET or PUT", req.method()),
            );
        }
        let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            tracing::warn!(piece = %name, "refused a piece transfer: {} are running ([API] MaxPieceTransfers)", self.limit);
            let mut response = text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{} piece transfers are already running (the limit is [API] MaxPieceTransfers); retry in {RETRY_AFTER_SECS} s",
                    self.limit
                ),
            );
            response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(RETRY_AFTER_SECS));
            return response;
        };
        if *req.method() == Method::PUT {
            let size = req
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            put(req.into_body(), name, size, stores, slot, self.idle).await
        } else {
            get(name, stores, slot, self.idle).await
        }
    }
}

/// Runs `work` on a new thread (never the runtime's blocking pool) and returns its result.
async fn on_transfer_thread<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("piece-transfer".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| format!("cannot start a thread for the {what}: {e}"))?;
    rx.await.map_err(|_| format!("the {what} thread ended without an answer"))
}

async fn put<B>(
    mut body: B,
    name: String,
    size: Option<u64>,
    stores: Arc<StoreManager>,
    slot: OwnedSemaphorePermit,
    idle: Duration,
) -> HttpResponse
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send,
{
    let (tx, rx) = mpsc::channel::<io::Result<Upload>>(CHANNEL_CHUNKS);
    let pump = tokio::spawn(async move {
        loop {
            let frame = match tokio::time::timeout(idle, body.frame()).await {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => {
                    let idle = idle.as_secs();
                    let _ = tx
                        .send(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("the client sent nothing for {idle} s ([API] PieceTransferIdleSecs)"),
                        )))
                        .await;
                    return;
                }
            };
            let item = match frame {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => Ok(Upload::Data(data)),
                    Err(_) => continue, // trailers
                },
                Err(e) => Err(io::Error::other(format!("reading the request body: {e}"))),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
        // Only a body that really ended says so; a pump that stops any other way reads as a cut-off upload.
        let _ = tx.send(Ok(Upload::End)).await;
    });
    let result = on_transfer_thread("piece upload", move || {
        let _slot = slot;
        let mut reader = ChannelReader { rx, current: Bytes::new(), expected: size, received: 0 };
        stores.put_piece_sized(&name, size, &mut reader).map(|(store, size)| (name, store, size))
    })
    .await;
    pump.abort();
    match result {
        Ok(Ok((name, store, size))) => {
            tracing::info!(piece = %name, store = %store, size, "piece stored");
            text(StatusCode::OK, format!("stored {name} ({size} bytes) in piece store {store}"))
        }
        Ok(Err(e)) if e.is_invalid_input() => text(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn get(name: String, stores: Arc<StoreManager>, slot: OwnedSemaphorePermit, idle: Duration) -> HttpResponse {
    let (opened_tx, opened_rx) = oneshot::channel();
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(CHANNEL_CHUNKS);
    let runtime = tokio::runtime::Handle::current();
    let started = std::thread::Builder::new().name("piece-transfer".into()).spawn(move || {
        let _slot = slot;
        let (mut reader, size) = match stores.open_piece_with_size(&name) {
            Ok(pair) => pair,
            Err(e) => {
                let _ = opened_tx.send(Err(e));
                return;
            }
        };
        if opened_tx.send(Ok(size)).is_err() {
            return;
        }
        // Each chunk is read into the buffer and handed on frozen (no copy); once the body has written the
        // chunks out, `reserve` takes their memory back.
        let mut buf = BytesMut::new();
        loop {
            buf.reserve(CHUNK);
            buf.resize(CHUNK, 0);
            let item = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    Ok(buf.split().freeze())
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            let sent = item.as_ref().map_or(0, |chunk| chunk.len() as u64);
            // Room in the channel: no runtime hop. Full: wait, but a client that stops reading holds the slot
            // for at most the idle limit (the timer is created inside the runtime's context: this is a plain
            // thread).
            let delivered = match tx.try_send(item) {
                Ok(()) => Ok(Ok(())),
                Err(mpsc::error::TrySendError::Full(item)) => {
                    runtime.block_on(async { tokio::time::timeout(idle, tx.send(item)).await })
                }
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            };
            match delivered {
                Ok(Ok(())) if !failed => crate::metrics::global().piece_sent_bytes.inc_by(sent),
                Ok(_) => break,
                Err(_) => {
                    tracing::warn!(piece = %name, "aborted a piece download: the client read nothing for {} s", idle.as_secs());
                    break;
                }
            }
        }
    });
    if let Err(e) = started {
        return text(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot start a thread for the piece download: {e}"));
    }
    let size = match opened_rx.await {
        Ok(Ok(size)) => size,
        Ok(Err(e)) if e.is_not_found() => return text(StatusCode::NOT_FOUND, e.to_string()),
        Ok(Err(e)) if e.is_invalid_input() => return text(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(Err(e)) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "the piece download thread ended".into()),
    };
    http::Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .header(http::header::CONTENT_LENGTH, size)
        .body(HttpBody::new(ChannelBody { rx }))
        .unwrap_or_else(|e| text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// A plain-text response.
pub fn text(status: StatusCode, message: String) -> HttpResponse {
    let mut response = http::Response::new(HttpBody::from(message + "\n"));
    *response.status_mut() = status;
    response
}

/// What the body pump sends: data, then an explicit end.
enum Upload {
    Data(Bytes),
    End,
}

/// Blocking reader over chunks sent from the async side. A body that stops without its end marker, or shorter
/// than its `Content-Length`, is an error, not an end of file, so the store's atomic put fails instead of
/// committing a truncated piece.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Upload>>,
    current: Bytes,
    expected: Option<u64>,
    received: u64,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Called from inside a FileStore plugin's `put`: a panic here must not unwind into the plugin.
        crate::plugins::host_callback::catch("the piece upload reader", || self.read_chunk(buf))
            .unwrap_or_else(|message| Err(io::Error::other(message)))
    }
}

impl ChannelReader {
    fn read_chunk(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => match chunk? {
                    Upload::Data(data) => self.current = data,
                    Upload::End => return self.end_of_body(),
                },
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the upload was cut off after {} bytes", self.received),
                    ));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        self.received += n as u64;
        crate::metrics::global().piece_received_bytes.inc_by(n as u64);
        Ok(n)
    }

    fn end_of_body(&self) -> io::Result<usize> {
        match self.expected {
            Some(expected) if expected != self.received => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("request body ended after {} of {expected} bytes (Content-Length)", self.received),
            )),
            _ => Ok(0),
        }
    }
}

/// Response body fed by a blocking reader task.
struct ChannelBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.rx.poll_recv(cx).map(|item| item.map(|chunk| chunk.map(Frame::data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(chunks: &[&'static [u8]], expected: Option<u64>, ended: bool) -> ChannelReader {
        let (tx, rx) = mpsc::channel(chunks.len() + 1);
        for chunk in chunks {
            tx.try_send(Ok(Upload::Data(Bytes::from_static(chunk)))).expect("room in channel");
        }
        if ended {
            tx.try_send(Ok(Upload::End)).expect("room in channel");
        }
        ChannelReader { rx, current: Bytes::new(), expected, received: 0 }
    }

    #[test]
    fn a_body_shorter_than_its_content_length_is_an_error_not_an_end_of_file() {
        let mut out = Vec::new();
        let err = reader(&[b"abc", b"de"], Some(10), true).read_to_end(&mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(err.to_string().contains("after 5 of 10 bytes"), "{err}");
    }

    #[test]
    fn a_complete_body_reads_to_the_end() {
        let mut out = Vec::new();
        reader(&[b"abc", b"de"], Some(5), true).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abcde");
        out.clear();
        reader(&[b"xyz"], None, true).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"xyz");
    }

    #[test]
    fn a_chunked_body_that_stops_without_its_end_is_cut_off() {
        let err = reader(&[b"xyz"], None, false).read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(err.to_string().contains("cut off after 3 bytes"), "{err}");
    }
}
