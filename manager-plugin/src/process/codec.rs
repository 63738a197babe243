//! Framing of the process-plugin protocol: one JSON document per line (JSON Lines). `serde_json` never writes a raw
//! newline inside a document, so a line is a message; a line longer than [`MAX_LINE`] is an error, not a hang.

use std::io::{self, BufRead, BufReader, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The longest message accepted (a 64 MiB JSON line; object bytes cross in chunks far smaller than that).
pub const MAX_LINE: usize = 64 << 20;

/// Writes `message` as one line and flushes.
pub fn write_line<W: Write, T: Serialize>(out: &mut W, message: &T) -> io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
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

    /// The next message; `Ok(None)` at the end of the stream.
    pub fn read_message<T: DeserializeOwned>(&mut self) -> io::Result<Option<T>> {
        self.line.clear();
        let read = (&mut self.inner).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut self.line)?;
        if read == 0 {
            return Ok(None);
        }
        if self.line.last() != Some(&b'\n') {
            let why = if self.line.len() > MAX_LINE {
                "longer than the 64 MiB limit"
            } else {
                "cut off by the end of the stream"
            };
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a protocol message is {why}")));
        }
        serde_json::from_slice(&self.line)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("a protocol message does not parse: {e}")))
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
        let mut cut = LineReader::new(&b"[\"x\", 1"[..]);
        assert!(cut.read_message::<(String, u32)>().unwrap_err().to_string().contains("cut off"));
    }
}
