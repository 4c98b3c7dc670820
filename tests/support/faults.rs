//! A fault-injecting HTTP/1.1 proxy in front of the real registry.
//!
//! Each connection carries one exchange (`Connection: close`). Rules pick
//! requests by method and path and inject one fault: a reset or a clean close
//! after N body bytes, a flipped byte, a stall, a status answered by the
//! proxy itself, a replaced body, a redirect, or a dropped `Range` header.
//! Every request is logged so tests can count them and see what arrived.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What to do to a matching exchange.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Forward the response head and `n` body bytes, then reset the
    /// connection (RST).
    ResetAfter(u64),
    /// Forward the head and `n` body bytes, then close cleanly: a truncated
    /// body.
    Truncate(u64),
    /// Flip (xor 0xff) the body byte at this offset.
    FlipByte(u64),
    /// Send `after` body bytes, then nothing for `pause`, then the rest.
    Stall {
        /// Bytes sent before the pause.
        after: u64,
        /// How long nothing is sent.
        pause: Duration,
    },
    /// Answer with this status and headers, without asking the registry.
    Status {
        /// HTTP status code.
        code: u16,
        /// Extra headers, e.g. `Retry-After`.
        headers: Vec<(String, String)>,
    },
    /// Answer 200 with this body and content type, without asking the
    /// registry.
    Body {
        /// `Content-Type` to send.
        content_type: String,
        /// The body.
        body: Vec<u8>,
    },
    /// Remove `Range` from the request: the registry answers 200 with the
    /// whole body, as some CDNs do.
    IgnoreRange,
    /// Answer `307` with `Location: <base><path and query>`.
    RedirectTo(String),
}

/// A fault and the requests it applies to.
#[derive(Debug)]
pub struct Rule {
    method: Option<String>,
    path_contains: String,
    times: Option<usize>,
    fired: AtomicUsize,
    fault: Fault,
}

impl Rule {
    /// Applies `fault` to every request whose path contains `path_contains`.
    pub fn new(path_contains: &str, fault: Fault) -> Rule {
        Rule {
            method: None,
            path_contains: path_contains.to_owned(),
            times: None,
            fired: AtomicUsize::new(0),
            fault,
        }
    }

    /// Only for requests with this method.
    pub fn method(mut self, method: &str) -> Rule {
        self.method = Some(method.to_owned());
        self
    }

    /// Only the first `n` matching requests.
    pub fn times(mut self, n: usize) -> Rule {
        self.times = Some(n);
        self
    }

    fn take(&self, method: &str, path: &str) -> Option<Fault> {
        if self.method.as_deref().is_some_and(|m| m != method)
            || !path.contains(&self.path_contains)
        {
            return None;
        }
        let fired = self.fired.fetch_add(1, Ordering::SeqCst);
        if self.times.is_some_and(|limit| fired >= limit) {
            return None;
        }
        Some(self.fault.clone())
    }
}

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Whether an `Authorization` header arrived.
    pub had_authorization: bool,
    /// The `Range` header, if any.
    pub range: Option<String>,
}

/// A running proxy; dropping it stops it.
pub struct FaultProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<LoggedRequest>>>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    upstream: String,
    own: String,
    rules: Vec<Rule>,
    log: Arc<Mutex<Vec<LoggedRequest>>>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of `upstream`
    /// (`host:port`), with `rules` consulted in order.
    pub fn start(upstream: &str, rules: Vec<Rule>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port for the proxy");
        let addr = listener.local_addr().expect("bound address");
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            own: addr.to_string(),
            rules,
            log: Arc::clone(&log),
        });
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = Arc::clone(&shared);
                    std::thread::spawn(move || {
                        let _ = serve(stream, &shared);
                    });
                }
            }
        });
        FaultProxy {
            addr,
            stop,
            log,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`, to use as a registry name.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Every request seen so far.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.log.lock().expect("log lock").clone()
    }

    /// How many requests had this method and a path containing `path`.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.target.contains(path))
            .count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Head {
    first_line: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> Option<u64> {
        self.get("content-length")
            .and_then(|v| v.trim().parse().ok())
    }
}

fn read_head(reader: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut first_line = String::new();
    if reader.read_line(&mut first_line)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    Ok(Some(Head {
        first_line: first_line.trim_end().to_owned(),
        headers,
    }))
}

fn serve(client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let Some(request) = read_head(&mut reader)? else {
        return Ok(());
    };
    let mut parts = request.first_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut body = vec![0; request.content_length().unwrap_or(0) as usize];
    reader.read_exact(&mut body)?;
    shared.log.lock().expect("log lock").push(LoggedRequest {
        method: method.clone(),
        target: target.clone(),
        had_authorization: request.get("authorization").is_some(),
        range: request.get("range").map(str::to_owned),
    });
    let fault = shared
        .rules
        .iter()
        .find_map(|rule| rule.take(&method, &target));
    let mut client = client;
    match &fault {
        Some(Fault::Status { code, headers }) => {
            let mut head =
                format!("HTTP/1.1 {code} Injected\r\nContent-Length: 0\r\nConnection: close\r\n");
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            return client.write_all(head.as_bytes());
        }
        Some(Fault::Body { content_type, body }) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            client.write_all(head.as_bytes())?;
            return client.write_all(body);
        }
        Some(Fault::RedirectTo(base)) => {
            let head = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {base}{target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            return client.write_all(head.as_bytes());
        }
        _ => {}
    }
    let mut upstream = TcpStream::connect(&shared.upstream)?;
    let mut forwarded = format!("{}\r\n", request.first_line);
    for (name, value) in &request.headers {
        let lower = name.to_ascii_lowercase();
        if lower == "host"
            || lower == "connection"
            || (lower == "range" && matches!(fault, Some(Fault::IgnoreRange)))
        {
            continue;
        }
        forwarded.push_str(&format!("{name}: {value}\r\n"));
    }
    forwarded.push_str(&format!(
        "Host: {}\r\nConnection: close\r\n\r\n",
        shared.upstream
    ));
    upstream.write_all(forwarded.as_bytes())?;
    upstream.write_all(&body)?;

    let mut upstream_reader = BufReader::new(upstream);
    let Some(response) = read_head(&mut upstream_reader)? else {
        return Ok(());
    };
    let mut head = format!("{}\r\n", response.first_line);
    for (name, value) in &response.headers {
        let lower = name.to_ascii_lowercase();
        if lower == "connection" {
            continue;
        }
        let value = if lower == "location" {
            value.replace(&shared.upstream, &shared.own)
        } else {
            value.clone()
        };
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    client.write_all(head.as_bytes())?;
    if method == "HEAD" {
        return Ok(());
    }
    forward_body(
        &mut upstream_reader,
        &mut client,
        response.content_length(),
        fault.as_ref(),
    )
}

fn forward_body(
    upstream: &mut impl Read,
    client: &mut TcpStream,
    length: Option<u64>,
    fault: Option<&Fault>,
) -> std::io::Result<()> {
    let mut sent: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let mut stalled = false;
    loop {
        if length.is_some_and(|len| sent >= len) {
            break;
        }
        let n = upstream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &mut buf[..n];
        let start = sent;
        let end = sent + n as u64;
        match fault {
            Some(Fault::ResetAfter(cut) | Fault::Truncate(cut)) if end > *cut => {
                let keep = cut.saturating_sub(start) as usize;
                client.write_all(&chunk[..keep])?;
                client.flush()?;
                if matches!(fault, Some(Fault::ResetAfter(_))) {
                    let socket = socket2::SockRef::from(&*client);
                    let _ = socket.set_linger(Some(Duration::ZERO));
                } else {
                    let _ = client.shutdown(Shutdown::Write);
                }
                return Ok(());
            }
            Some(Fault::FlipByte(offset)) if (start..end).contains(offset) => {
                chunk[(offset - start) as usize] ^= 0xff;
            }
            Some(Fault::Stall { after, pause }) if !stalled && end > *after => {
                let keep = after.saturating_sub(start) as usize;
                client.write_all(&chunk[..keep])?;
                client.flush()?;
                std::thread::sleep(*pause);
                stalled = true;
                client.write_all(&chunk[keep..])?;
                sent = end;
                continue;
            }
            _ => {}
        }
        client.write_all(chunk)?;
        sent = end;
    }
    client.flush()
}
