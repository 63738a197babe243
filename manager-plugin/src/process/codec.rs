//! Framing of the process-plugin protocol: one JSON document per line (JSON Lines). `serde_json` never writes a raw
//! newline inside a document, so a line is a message; a line longer than [`MAX_LINE`] is an error, not a hang.

use std::cell::RefCell;
use std::io::{self, BufRead, BufReader, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The longest message accepted (a 64 MiB JSON line; object bytes cross in chunks far smaller than that).
pub const MAX_LINE: usize = 64 << 20;

/// A thread's encoding buffer is kept for its next message up to this capacity (a larger one, left by a big
/// message such as an upload's chunk, is freed): most messages are encoded without allocating.
const KEEP_BUFFER: usize = 256 << 10;

thread_local! {
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Writes `message` as one line and flushes.
pub fn write_line<W: Write, T: Serialize>(out: &mut W, message: &T) -> io::Result<()> {
    // The thread's buffer, unless it is in use or gone (a message sent while the thread exits): then a fresh one.
    let kept = LINE.try_with(|cell| cell.try_borrow_mut().map(|mut line| encode_line(&mut line, out, message)).ok());
    match kept {
        Ok(Some(written)) => written,
        _ => encode_line(&mut Vec::new(), out, message),
    }
}

/// Encodes `message` into `line` (cleared first) and writes it to `out` with its newline.
fn encode_line<W: Write, T: Serialize>(line: &mut Vec<u8>, out: &mut W, message: &T) -> io::Result<()> {
    line.clear();
    let written = serde_json::to_writer(&mut *line, message).map_err(io::Error::other).and_then(|()| {
        line.push(b'\n');
        out.write_all(line)?;
        out.flush()
    });
    if line.capacity() > KEEP_BUFFER {
        *line = Vec::new();
    }
    written
}

/// Reads messages, one per line.
pub struct LineReader<R> {
    inner: BufReader<R>,
    line: Vec<u8>,
}

impl<R: Read> LineReader<R> {
    /// Reads from `inner`.
    pub fn new(inner: R) -> Self {
        LineReader { inner: BufReader::with_capacity(64 << 10, inner), line: Vec::new() }
    }

    /// The stream read from.
    pub fn get_ref(&self) -> &R {
        self.inner.get_ref()
    }

    /// Whether a whole message is already buffered (the next [`LineReader::read_message`] needs no read).
    pub fn has_buffered_message(&self) -> bool {
        self.inner.buffer().contains(&b'\n')
    }

    /// The next message; `Ok(None)` at the end of the stream. When a read timeout of the stream (`WouldBlock`,
    /// `TimedOut`) cuts a message, what was read of it is kept and the next call goes on from there.
    pub fn read_message<T: DeserializeOwned>(&mut self) -> io::Result<Option<T>> {
        let limit = (MAX_LINE + 1).saturating_sub(self.line.len()) as u64;
        let read = match (&mut self.inner).take(limit).read_until(b'\n', &mut self.line) {
            Ok(read) => read,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return Err(e),
            Err(e) => {
                self.line.clear();
                return Err(e);
            }
        };
        if read == 0 && self.line.is_empty() {
            return Ok(None);
        }
        if self.line.last() != Some(&b'\n') {
            let why = if self.line.len() > MAX_LINE {
                "longer than the 64 MiB limit"
            } else {
                "cut off by the end of the stream"
            };
            self.line.clear();
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a protocol message is {why}")));
        }
        // One UTF-8 check of the whole line, rather than one per string inside it.
        let parsed = match std::str::from_utf8(&self.line) {
            Ok(text) => serde_json::from_str(text).map_err(|e| format!("does not parse: {e}")),
            Err(e) => Err(format!("is not UTF-8: {e}")),
        };
        self.line.clear();
        parsed.map(Some).map_err(|why| io::Error::new(io::ErrorKind::InvalidData, format!("a protocol message {why}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_one_per_line_and_a_cut_line_is_an_error() {
        let mut out = Vec::new();
        write_line(&mut out, &("a\nb", 1)).unwrap();
        write_line(&mut out, &("c", 2)).unwrap();
        let mut reader = LineReader::new(out.as_slice());
        assert_eq!(reader.read_message::<(String, u32)>().unwrap(), Some(("a\nb".to_string(), 1)));
        assert_eq!(reader.read_message::<(String, u32)>().unwrap(), Some(("c".to_string(), 2)));
        assert_eq!(reader.read_message::<(String, u32)>().unwrap(), None);
        // A read timeout in the middle of a message loses nothing of it.
        let mut stalling = LineReader::new(Stalling(vec![b"[\"x\", ".to_vec(), b"2]\n".to_vec()]));
        assert_eq!(stalling.read_message::<(String, u32)>().unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert_eq!(stalling.read_message::<(String, u32)>().unwrap(), Some(("x".to_string(), 2)));
        let mut cut = LineReader::new(&b"[\"x\", 1"[..]);
        assert!(cut.read_message::<(String, u32)>().unwrap_err().to_string().contains("cut off"));
    }

    /// Gives its chunks one per read, with a read timeout (`WouldBlock`) after each.
    struct Stalling(Vec<Vec<u8>>);

    impl Read for Stalling {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            if self.0[0].is_empty() {
                self.0.remove(0);
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let chunk = std::mem::take(&mut self.0[0]);
            buf[..chunk.len()].copy_from_slice(&chunk);
            Ok(chunk.len())
        }
    }
}
