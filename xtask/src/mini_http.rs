//! Just enough HTTP/1.1 for the test token issuer: one request per
//! connection, no bodies read, every answer closes the connection.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::io::{BufRead, Write};

/// Largest request head accepted (request line plus headers).
const MAX_HEAD: usize = 16 * 1024;

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct Request {
    /// `GET`, `POST`, ...
    pub(crate) method: String,
    /// The path, without the query.
    pub(crate) path: String,
    /// The raw query (after `?`), possibly empty.
    pub(crate) query: String,
    headers: Vec<(String, String)>,
}

impl Request {
    /// Reads a request line and headers, up to the empty line.
    pub(crate) fn read(reader: &mut impl BufRead) -> Result<Request, String> {
        let mut lines = Vec::new();
        let mut total = 0;
        loop {
            let mut line = String::new();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| format!("reading the request: {e}"))?;
            total += n;
            if n == 0 {
                return Err("connection closed inside the request head".to_owned());
            }
            if total > MAX_HEAD {
                return Err("request head too large".to_owned());
            }
            let line = line.trim_end_matches(['\r', '\n']).to_owned();
            if line.is_empty() {
                break;
            }
            lines.push(line);
        }
        let request_line = lines.first().ok_or("empty request")?;
        let mut words = request_line.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(format!("malformed request line {request_line:?}"));
        };
        if !version.starts_with("HTTP/1.") {
            return Err(format!("unsupported version {version:?}"));
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut headers = Vec::new();
        for line in &lines[1..] {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("malformed header line {line:?}"))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        Ok(Request {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers,
        })
    }

    /// The value of header `name` (case-insensitive), if present.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer: status, extra headers and a JSON body.
#[derive(Debug)]
pub(crate) struct Response {
    /// Status code.
    pub(crate) status: u16,
    /// Headers besides the content type, length and `Connection: close`.
    pub(crate) headers: Vec<(&'static str, String)>,
    /// JSON body.
    pub(crate) body: serde_json::Value,
}

impl Response {
    /// A JSON answer with `status`.
    pub(crate) fn json(status: u16, body: serde_json::Value) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// An error answer: `{"error": message}`.
    pub(crate) fn error(status: u16, message: &str) -> Response {
        Response::json(status, serde_json::json!({ "error": message }))
    }

    /// Adds a header.
    pub(crate) fn with_header(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }

    /// Writes the whole answer.
    pub(crate) fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let body = self.body.to_string();
        write!(
            out,
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            body.len()
        )?;
        for (name, value) in &self.headers {
            write!(out, "{name}: {value}\r\n")?;
        }
        write!(out, "\r\n{body}")?;
        out.flush()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    }
}

/// Splits a query string into decoded `(name, value)` pairs, in order.
pub(crate) fn query_pairs(query: &str) -> Result<Vec<(String, String)>, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(name)?, percent_decode(value)?))
        })
        .collect()
}

/// Decodes `%XX` escapes and `+` (a space in form encoding).
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent escape in {s:?}"))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("query value {s:?} is not UTF-8"))
}

/// The `(user, password)` of an `Authorization: Basic ...` header value.
pub(crate) fn basic_credentials(authorization: &str) -> Option<(String, String)> {
    let (scheme, encoded) = authorization.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_request_head() {
        let raw = "GET /token?service=s&scope=a HTTP/1.1\r\nHost: x\r\nAuthorization: Basic abc\r\n\r\nbody";
        let request = Request::read(&mut raw.as_bytes()).expect("valid request");
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/token");
        assert_eq!(request.query, "service=s&scope=a");
        assert_eq!(request.header("authorization"), Some("Basic abc"));
        assert_eq!(request.header("x-missing"), None);
    }

    #[test]
    fn rejects_a_truncated_or_malformed_head() {
        assert!(Request::read(&mut "GET / HTTP/1.1\r\nHost: x\r\n".as_bytes()).is_err());
        assert!(Request::read(&mut "GET /\r\n\r\n".as_bytes()).is_err());
        assert!(Request::read(&mut "GET / HTTP/1.1\r\nnocolon\r\n\r\n".as_bytes()).is_err());
    }

    #[test]
    fn decodes_repeated_query_parameters() {
        let pairs = query_pairs("scope=repository%3Ax%2Fy%3Apull%2Cpush&scope=a+b&account=")
            .expect("valid query");
        assert_eq!(
            pairs,
            [
                ("scope".to_owned(), "repository:x/y:pull,push".to_owned()),
                ("scope".to_owned(), "a b".to_owned()),
                ("account".to_owned(), String::new()),
            ]
        );
        assert!(query_pairs("scope=%zz").is_err());
        assert!(query_pairs("scope=%4").is_err());
    }

    #[test]
    fn decodes_basic_credentials() {
        let header = format!("Basic {}", STANDARD.encode("user:pa:ss"));
        assert_eq!(
            basic_credentials(&header),
            Some(("user".to_owned(), "pa:ss".to_owned()))
        );
        assert_eq!(basic_credentials("Bearer abc"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }

    #[test]
    fn writes_a_closing_json_answer() {
        let mut out = Vec::new();
        Response::error(401, "no")
            .with_header("WWW-Authenticate", "Basic realm=\"r\"".to_owned())
            .write_to(&mut out)
            .expect("writing to a vec");
        let text = String::from_utf8(out).expect("ascii");
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.contains("WWW-Authenticate: Basic realm=\"r\"\r\n"));
        assert!(text.ends_with("\r\n\r\n{\"error\":\"no\"}"));
    }
}
