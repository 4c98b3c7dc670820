//! Just enough HTTP/1.1 for the proxy: message heads, body framing
//! (`Content-Length`, chunked, until close) and writing heads back out.

use std::io::{self, BufRead, Read, Write};

/// Longest head line accepted; a registry's are far shorter.
const MAX_LINE: u64 = 64 * 1024;

/// A request or status line and its headers, names as sent.
#[derive(Debug)]
pub(super) struct Head {
    pub(super) first_line: String,
    pub(super) headers: Vec<(String, String)>,
}

impl Head {
    /// The first header called `name` (case-insensitive).
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `n`th (0-based) space-separated word of the first line.
    pub(super) fn word(&self, n: usize) -> &str {
        self.first_line.split(' ').nth(n).unwrap_or_default()
    }

    /// How the body that follows this head is delimited.
    pub(super) fn framing(&self) -> io::Result<Framing> {
        let chunked = self
            .get("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        if chunked {
            return Ok(Framing::Chunked);
        }
        match self.get("content-length") {
            Some(len) => len
                .trim()
                .parse()
                .map(Framing::Length)
                .map_err(|_| invalid(format!("bad Content-Length {len:?}"))),
            None => Ok(Framing::UntilClose),
        }
    }
}

/// How a body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the sender closes (responses only; a request without framing
    /// has no body).
    UntilClose,
}

/// Reads a head, or `None` at a clean end of stream before its first byte.
pub(super) fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let Some(first_line) = read_line(reader)? else {
        return Ok(None);
    };
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or_else(|| invalid("end of stream in a head"))?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("header without a colon: {line:?}")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Ok(Some(Head {
        first_line,
        headers,
    }))
}

/// One CRLF- (or LF-) terminated line without its terminator, `None` at end
/// of stream.
fn read_line(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = String::new();
    if reader.take(MAX_LINE).read_line(&mut line)? == 0 {
        return Ok(None);
    }
    if !line.ends_with('\n') {
        return Err(invalid("head line too long or cut off"));
    }
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
}

/// Writes `first_line`, `headers` and the blank line that ends a head.
pub(super) fn write_head(
    out: &mut impl Write,
    first_line: &str,
    headers: &[(String, String)],
) -> io::Result<()> {
    let mut head = format!("{first_line}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())
}

/// The body that follows a head, decoded (chunk framing removed).
pub(super) fn body_reader<'a, R: BufRead + 'a>(reader: R, framing: Framing) -> Box<dyn Read + 'a> {
    match framing {
        Framing::Length(len) => Box::new(reader.take(len)),
        Framing::Chunked => Box::new(ChunkedReader {
            inner: reader,
            left_in_chunk: 0,
            done: false,
        }),
        Framing::UntilClose => Box::new(reader),
    }
}

/// Decodes `Transfer-Encoding: chunked`; trailers are read and dropped.
struct ChunkedReader<R> {
    inner: R,
    left_in_chunk: u64,
    done: bool,
}

impl<R: BufRead> ChunkedReader<R> {
    /// Reads the next chunk-size line; at the last chunk, its trailers too.
    fn next_chunk(&mut self) -> io::Result<()> {
        let line = read_line(&mut self.inner)?.ok_or_else(|| invalid("chunked body cut off"))?;
        let size = line.split(';').next().unwrap_or_default().trim();
        self.left_in_chunk = u64::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("bad chunk size {size:?}")))?;
        if self.left_in_chunk == 0 {
            self.done = true;
            while read_line(&mut self.inner)?.is_some_and(|trailer| !trailer.is_empty()) {}
        }
        Ok(())
    }
}

impl<R: BufRead> Read for ChunkedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left_in_chunk == 0 && !self.done {
            self.next_chunk()?;
        }
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left_in_chunk).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(invalid("chunked body cut off"));
        }
        self.left_in_chunk -= n as u64;
        if self.left_in_chunk == 0 {
            let end = read_line(&mut self.inner)?;
            if end.as_deref() != Some("") {
                return Err(invalid("chunk not followed by CRLF"));
            }
        }
        Ok(n)
    }
}

/// An `InvalidData` error with this message.
pub(super) fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode_and_drop_trailers() {
        let wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let mut reader = io::BufReader::new(&wire[..]);
        let mut body = Vec::new();
        body_reader(&mut reader, Framing::Chunked)
            .read_to_end(&mut body)
            .expect("valid chunked body");
        assert_eq!(body, b"hello world");
        let mut rest = String::new();
        reader.read_to_string(&mut rest).expect("rest");
        assert_eq!(rest, "NEXT");
    }

    #[test]
    fn heads_parse_and_frame() {
        let wire = b"GET /v2/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
        let mut reader = io::BufReader::new(&wire[..]);
        let head = read_head(&mut reader).expect("reads").expect("a head");
        assert_eq!((head.word(0), head.word(1)), ("GET", "/v2/"));
        assert_eq!(head.get("HOST"), Some("a"));
        assert_eq!(head.framing().expect("framed"), Framing::Length(3));
    }
}
