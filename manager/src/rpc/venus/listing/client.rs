//! Reads a `Venus.ListSectors` answer one sector at a time (for `damocles-manager util sectors list`), so the
//! client, like the daemon, never holds the whole list.

use std::fmt;
use std::io::Read;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::METHOD;

/// Why a listing could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The daemon could not be reached or the connection broke.
    #[error("{METHOD} at {url}: {message}")]
    Transport {
        /// The endpoint.
        url: String,
        /// What happened.
        message: String,
    },
    /// The daemon answered with an HTTP error status.
    #[error("{METHOD} at {url}: HTTP {status}: {body}")]
    Status {
        /// The endpoint.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the answer.
        body: String,
    },
    /// The daemon answered a JSON-RPC error.
    #[error("{METHOD}: {message} (code {code})")]
    Rpc {
        /// The JSON-RPC error code.
        code: i64,
        /// The error message.
        message: String,
    },
    /// The answer is not a complete JSON-RPC answer: cut off (the daemon failed mid-answer and closed the
    /// connection) or malformed. Sectors handed out before it are only part of the list.
    #[error("{METHOD}: the answer is cut off or malformed after {listed} sectors: {message}")]
    Broken {
        /// Sectors read before the answer broke.
        listed: u64,
        /// The parser's or the connection's complaint.
        message: String,
    },
    /// The caller's `on_sector` failed (e.g. stdout was closed).
    #[error("{METHOD}: {0}")]
    Output(std::io::Error),
}

/// Calls `Venus.ListSectors` for state `ws` (`"online"`/`"offline"`) and job 0 (all) at `addr` (`host:port`)
/// with `token`, handing each sector to `on_sector` as it arrives; returns how many there were.
///
/// Runs on the calling thread (it blocks): it starts its own single-threaded runtime for the connection.
pub fn list_sectors(
    addr: &str,
    token: &str,
    ws: &str,
    on_sector: &mut dyn FnMut(Value) -> std::io::Result<()>,
) -> Result<u64, ListError> {
    let url = format!("http://{addr}{}", crate::rpc::server::RPC_PATH);
    let transport = |message: String| ListError::Transport { url: url.clone(), message };
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": METHOD, "params": [ws, 0]}).to_string();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Bytes, String>>(4);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| transport(format!("cannot start a runtime: {e}")))?;
    let request = http::Request::post(&url)
        .header(http::header::HOST, addr)
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| transport(format!("invalid request: {e}")))?;
    let addr_owned = addr.to_owned();
    let failure_tx = tx.clone();
    // The connection runs on its own thread; this one parses what it hands over.
    let pump = std::thread::spawn(move || {
        runtime
            .block_on(async move {
                let stream = tokio::net::TcpStream::connect(&addr_owned).await.map_err(|e| format!("connect: {e}"))?;
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
                let status = response.status();
                let mut body = response.into_body();
                if !status.is_success() {
                    let text = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    return Err(format!("HTTP {}: {}", status.as_u16(), String::from_utf8_lossy(&text).trim()));
                }
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|e| format!("reading the answer: {e}"))?;
                    if let Ok(data) = frame.into_data()
                        && tx.send(Ok(data)).is_err()
                    {
                        break;
                    }
                }
                Ok(())
            })
            .inspect_err(|e| {
                let _ = failure_tx.send(Err(e.clone()));
            })
    });
    // serde_json reads byte by byte: buffer.
    let mut reader =
        std::io::BufReader::with_capacity(64 * 1024, ChunkReader { rx, current: Bytes::new(), failed: None });
    let mut listed = 0u64;
    let mut output_error = None;
    let parsed = {
        let mut de = serde_json::Deserializer::from_reader(&mut reader);
        let seed = AnswerSeed { on_sector: &mut *on_sector, listed: &mut listed, output_error: &mut output_error };
        let parsed = seed.deserialize(&mut de);
        parsed.and_then(|answer| de.end().map(|()| answer))
    };
    drop(reader);
    let pumped = pump.join().unwrap_or_else(|_| Err("the connection thread panicked".into()));
    if let Some(err) = output_error {
        return Err(ListError::Output(err));
    }
    match (parsed, pumped) {
        (Ok(Answer::Listed), Ok(())) => Ok(listed),
        (Ok(Answer::Error { code, message }), _) => Err(ListError::Rpc { code, message }),
        (_, Err(message)) if listed == 0 && message.starts_with("HTTP ") => {
            let (status, body) = message.trim_start_matches("HTTP ").split_once(": ").unwrap_or(("0", &message));
            Err(ListError::Status { url, status: status.parse().unwrap_or(0), body: body.to_owned() })
        }
        (_, Err(message)) if listed == 0 => Err(transport(message)),
        (Err(e), Err(message)) => Err(ListError::Broken { listed, message: format!("{message} ({e})") }),
        (Err(e), Ok(())) => Err(ListError::Broken { listed, message: e.to_string() }),
        (Ok(Answer::Listed), Err(message)) => Err(ListError::Broken { listed, message }),
    }
}

/// A blocking reader over the chunks the connection thread hands over; the end of the channel is the end of
/// the body, and a connection error is a read error.
struct ChunkReader {
    rx: std::sync::mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
    failed: Option<String>,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            if let Some(message) = &self.failed {
                return Err(std::io::Error::other(message.clone()));
            }
            match self.rx.recv() {
                Ok(Ok(data)) => self.current = data,
                Ok(Err(message)) => self.failed = Some(message),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// A JSON-RPC answer: the result was handed out sector by sector, or an error.
enum Answer {
    Listed,
    Error { code: i64, message: String },
}

/// Reads `{"jsonrpc":…,"id":…,"result":[…]}` (or `"error"`), handing each element of `result` out as it is read.
struct AnswerSeed<'a> {
    on_sector: &'a mut dyn FnMut(Value) -> std::io::Result<()>,
    listed: &'a mut u64,
    output_error: &'a mut Option<std::io::Error>,
}

impl<'de> DeserializeSeed<'de> for AnswerSeed<'_> {
    type Value = Answer;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Answer, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AnswerSeed<'_> {
    type Value = Answer;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC answer object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Answer, A::Error> {
        let mut answer = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "result" => {
                    map.next_value_seed(ResultSeed {
                        on_sector: &mut *self.on_sector,
                        listed: &mut *self.listed,
                        output_error: &mut *self.output_error,
                    })?;
                    answer = Some(Answer::Listed);
                }
                "error" => {
                    let error: Value = map.next_value()?;
                    let code = error["code"].as_i64().unwrap_or(0);
                    let message = error["message"].as_str().unwrap_or("(no message)").to_owned();
                    answer = Some(Answer::Error { code, message });
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        answer.ok_or_else(|| serde::de::Error::custom("the answer has neither `result` nor `error`"))
    }
}

/// The `result` array, element by element.
struct ResultSeed<'a> {
    on_sector: &'a mut dyn FnMut(Value) -> std::io::Result<()>,
    listed: &'a mut u64,
    output_error: &'a mut Option<std::io::Error>,
}

impl<'de> DeserializeSeed<'de> for ResultSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ResultSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of sector states")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(sector) = seq.next_element::<Value>()? {
            if let Err(e) = (self.on_sector)(sector) {
                *self.output_error = Some(e);
                return Err(serde::de::Error::custom("output failed"));
            }
            *self.listed += 1;
        }
        Ok(())
    }
}

/// Writes values as one pretty-printed JSON array, as `serde_json::to_string_pretty` of the whole list would,
/// one element at a time. Nothing is written before the first element, so a listing that fails at once prints
/// nothing; one that fails mid-way leaves the array unclosed (not valid JSON).
pub struct PrettyArrayWriter<W: std::io::Write> {
    out: W,
    written: u64,
}

impl<W: std::io::Write> PrettyArrayWriter<W> {
    /// A writer of one array to `out`.
    pub fn new(out: W) -> Self {
        PrettyArrayWriter { out, written: 0 }
    }

    /// Writes the next element.
    pub fn push(&mut self, value: &Value) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
        self.out.write_all(if self.written == 0 { b"[\n" } else { b",\n" })?;
        // Pretty JSON escapes newlines inside strings, so every line break is structure: indent each line.
        for (i, line) in text.split('\n').enumerate() {
            if i > 0 {
                self.out.write_all(b"\n")?;
            }
            self.out.write_all(b"  ")?;
            self.out.write_all(line.as_bytes())?;
        }
        self.written += 1;
        Ok(())
    }

    /// Closes the array (`[]` when empty) and ends the line; returns the output.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.write_all(if self.written == 0 { b"[]\n" } else { b"\n]\n" })?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::PrettyArrayWriter;

    #[test]
    fn the_array_is_written_exactly_as_serde_json_pretty_prints_it_whole() {
        let lists = [
            vec![],
            vec![json!({})],
            vec![json!({"ID": {"Miner": 1, "Number": 2}, "Pieces": [], "Reason": "a\nb"}), json!([1, {"x": null}])],
        ];
        for list in lists {
            let mut writer = PrettyArrayWriter::new(Vec::new());
            for value in &list {
                writer.push(value).unwrap();
            }
            let written = String::from_utf8(writer.finish().unwrap()).unwrap();
            assert_eq!(written, serde_json::to_string_pretty(&list).unwrap() + "\n");
        }
    }
}
