//! Piece HTTP: `PUT /piecestore/<name>` streams the body into the first writable piece store, `GET` streams it
//! back (falling back to `<name>.car`). Bodies cross between async and the synchronous store API through bounded
//! channels of 1 MiB chunks, so memory stays flat whatever the size.

use std::io::{self, Read};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use jsonrpsee::server::{HttpBody, HttpResponse};
use tokio::sync::mpsc;

use crate::filestore::StoreManager;

const CHUNK: usize = 1 << 20;
const CHANNEL_CHUNKS: usize = 4;

/// Answers one `/piecestore/<name>` request.
pub async fn handle<B>(req: Request<B>, name: &str, stores: Arc<StoreManager>) -> HttpResponse
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send,
{
    if let Err(e) = manager_plugin::filestore::validate_object_path(name) {
        return text(StatusCode::BAD_REQUEST, e.to_string());
    }
    match *req.method() {
        Method::PUT => {
            let size = req
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            put(req.into_body(), name.to_string(), size, stores).await
        }
        Method::GET => get(name.to_string(), stores).await,
        _ => text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed on /piecestore/; use GET or PUT", req.method()),
        ),
    }
}

async fn put<B>(mut body: B, name: String, size: Option<u64>, stores: Arc<StoreManager>) -> HttpResponse
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send,
{
    let (tx, rx) = mpsc::channel::<io::Result<Upload>>(CHANNEL_CHUNKS);
    let pump = tokio::spawn(async move {
        while let Some(frame) = body.frame().await {
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
    let result = tokio::task::spawn_blocking(move || {
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
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("piece upload task failed: {e}")),
    }
}

async fn get(name: String, stores: Arc<StoreManager>) -> HttpResponse {
    let opened = tokio::task::spawn_blocking(move || stores.open_piece_with_size(&name)).await;
    let (mut reader, size) = match opened {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) if e.is_not_found() => return text(StatusCode::NOT_FOUND, e.to_string()),
        Ok(Err(e)) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("piece read task failed: {e}")),
    };
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(CHANNEL_CHUNKS);
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let item = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => Ok(Bytes::copy_from_slice(&buf[..n])),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                break;
            }
        }
    });
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
