//! A fault-injecting HTTP/1.1 proxy in front of the real registry, and a
//! recording server to redirect to.
//!
//! The proxy runs on its own threads (an accept thread and one thread per
//! connection), so blocking and async tests can both use it. Each connection
//! carries one exchange: the proxy reads a request, answers it with
//! `Connection: close`, and closes. `Host` is rewritten to the upstream, and
//! `Location` headers naming the upstream are rewritten to name the proxy,
//! so that uploads keep going through it.
//!
//! [`Rule`]s are consulted in order for every request; the first whose
//! matcher and occurrence apply injects its [`Fault`]; without one the
//! exchange passes through untouched. Every request is logged
//! ([`FaultProxy::requests`], [`FaultProxy::count`]).
//!
//! ```no_run
//! use cachectl_tests::fault_proxy::{Fault, FaultProxy, Rule};
//! let registry = cachectl_tests::registries().plain;
//! let proxy = FaultProxy::start(
//!     &registry,
//!     vec![Rule::new(Fault::ResetAfter(1000)).method("GET").path_contains("/blobs/").first(1)],
//! );
//! // Point the client at `proxy.addr()` instead of `registry`, then:
//! assert_eq!(proxy.count("GET", "/blobs/"), 2);
//! ```
//!
//! Request bodies (pushes) may be `Content-Length` framed, which is
//! streamed, or chunked, which is gathered in memory and sent on with a
//! `Content-Length`. Chunked response bodies reach the client decoded and
//! delimited by the close.

mod body;
mod http;

use body::Ending;
use http::{Framing, Head};
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a connection thread waits on a silent peer before giving up, so
/// no thread outlives a test by much.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Time given to the kernel to hand the bytes written before a reset to the
/// client; a reset drops whatever is still unsent.
const RESET_GRACE: Duration = Duration::from_millis(50);

/// What to do to a matching exchange. Body offsets count bytes of the
/// response body as the upstream sent it (a 206 body for a `Range` request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward the response head and this many body bytes, then reset the
    /// connection (`SO_LINGER` 0, so the client sees an RST). Keep it well
    /// under the loopback socket buffers (a few hundred KiB), as bytes still
    /// unsent when the reset goes out are lost.
    ResetAfter(u64),
    /// Forward the head (with the upstream's `Content-Length`) and this many
    /// body bytes, then close cleanly: a truncated body.
    Truncate(u64),
    /// Xor the body byte at this offset with `0xff`.
    FlipByte(u64),
    /// Send `after_bytes` body bytes, then nothing for `duration` (cut short
    /// when the proxy is dropped), then the rest.
    Stall {
        /// Body bytes sent before the pause.
        after_bytes: u64,
        /// How long nothing is sent.
        duration: Duration,
    },
    /// Send the body at about this rate.
    Throttle {
        /// Bytes per second.
        bytes_per_sec: u64,
    },
    /// Answer with this status, headers and body, without asking the
    /// upstream. See [`Fault::status`].
    Status {
        /// HTTP status code.
        code: u16,
        /// Headers to send, e.g. `("Retry-After", "1")`. `Content-Length`
        /// and `Connection` are added.
        headers: Vec<(String, String)>,
        /// The body.
        body: Vec<u8>,
    },
    /// Remove `Range` from the request, so that the upstream answers 200
    /// with the whole body, like a server that ignores ranges.
    IgnoreRange,
    /// Answer `307 Temporary Redirect` with `Location:` this URL (e.g.
    /// [`RecordingServer::url`]) followed by the request's path and query.
    RedirectTo(String),
}

impl Fault {
    /// A [`Fault::Status`] with these headers and an empty body.
    pub fn status(code: u16, headers: &[(&str, &str)]) -> Fault {
        Fault::Status {
            code,
            headers: headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            body: Vec::new(),
        }
    }
}

/// Which of the matching requests a rule fires on.
#[derive(Clone, Copy, Debug)]
enum Occurrence {
    Always,
    First(usize),
    Nth(usize),
}

type PathPredicate = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// A fault and the requests it applies to: built with [`Rule::new`] and
/// narrowed with the other methods. By default it fires on every request.
///
/// A rule counts every request its method and path match, whether or not
/// an earlier rule fired on it: `nth(2)` is the second such request.
pub struct Rule {
    method: Option<String>,
    path: Option<PathPredicate>,
    occurrence: Occurrence,
    matched: AtomicUsize,
    fault: Fault,
}

impl Rule {
    /// Injects `fault` into every request.
    pub fn new(fault: Fault) -> Rule {
        Rule {
            method: None,
            path: None,
            occurrence: Occurrence::Always,
            matched: AtomicUsize::new(0),
            fault,
        }
    }

    /// Only requests with this method (`"GET"`, `"HEAD"`, …).
    pub fn method(mut self, method: &str) -> Rule {
        self.method = Some(method.to_owned());
        self
    }

    /// Only requests whose path and query contain `part`.
    pub fn path_contains(self, part: &str) -> Rule {
        let part = part.to_owned();
        self.path_matches(move |path| path.contains(&part))
    }

    /// Only requests whose path and query satisfy `predicate`.
    pub fn path_matches(
        mut self,
        predicate: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Rule {
        self.path = Some(Arc::new(predicate));
        self
    }

    /// Only the first `n` matching requests.
    pub fn first(mut self, n: usize) -> Rule {
        self.occurrence = Occurrence::First(n);
        self
    }

    /// Only the `n`th matching request, counting from 1.
    pub fn nth(mut self, n: usize) -> Rule {
        self.occurrence = Occurrence::Nth(n);
        self
    }

    /// Counts the request if it matches; true if the fault fires on it.
    fn fires_on(&self, method: &str, path: &str) -> bool {
        let method_ok = self.method.as_deref().is_none_or(|m| m == method);
        let path_ok = self.path.as_ref().is_none_or(|matches| matches(path));
        if !(method_ok && path_ok) {
            return false;
        }
        let seen = self.matched.fetch_add(1, Ordering::SeqCst) + 1;
        match self.occurrence {
            Occurrence::Always => true,
            Occurrence::First(n) => seen <= n,
            Occurrence::Nth(n) => seen == n,
        }
    }
}

/// One request as the proxy received it.
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: String,
    /// Path and query, as sent.
    pub path_and_query: String,
    /// Every header, names lowercased, values as sent.
    pub headers: Vec<(String, String)>,
    /// Whether an `Authorization` header arrived.
    pub had_authorization: bool,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The fault injected into this exchange, if any.
    pub fault: Option<Fault>,
}

impl LoggedRequest {
    /// The first header called `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the connection threads share.
struct Shared {
    upstream: String,
    own: String,
    rules: Vec<Rule>,
    log: Mutex<Vec<LoggedRequest>>,
    stop: AtomicBool,
}

/// A running proxy on a free loopback port; dropping it stops it.
///
/// Dropping stops accepting and joins the accept thread; exchanges under
/// way finish on their own threads (a stall is cut short, and silent peers
/// time out after 30 s).
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (`host:port`, plain HTTP),
    /// with `rules` consulted in order.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub fn start(upstream: &str, rules: Vec<Rule>) -> FaultProxy {
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("a free loopback port for the proxy");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            own: addr.to_string(),
            rules,
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let accept_thread = std::thread::spawn({
            let shared = Arc::clone(&shared);
            move || accept_loop(&listener, &shared)
        });
        FaultProxy {
            addr,
            shared,
            accept_thread: Some(accept_thread),
        }
    }

    /// `127.0.0.1:PORT`: use it where the registry's `host:port` would go.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared
            .log
            .lock()
            .expect("no thread panics holding the log")
            .clone()
    }

    /// How many requests had exactly this method and a path (and query)
    /// containing `path_part`.
    pub fn count(&self, method: &str, path_part: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path_and_query.contains(path_part))
            .count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept thread, which then sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
    }
}

/// A server that records every request it gets (headers included) and
/// passes it on to the real registry, so that a redirected blob `GET` still
/// succeeds. Point [`Fault::RedirectTo`] at [`RecordingServer::url`], then
/// check [`RecordingServer::requests`] for an `Authorization` header that
/// must not have followed the redirect. Dropping it stops it.
pub struct RecordingServer {
    proxy: FaultProxy,
}

impl RecordingServer {
    /// Starts on a free loopback port, serving from `upstream` (`host:port`).
    pub fn start(upstream: &str) -> RecordingServer {
        RecordingServer {
            proxy: FaultProxy::start(upstream, Vec::new()),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.proxy.addr()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.proxy.url()
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.proxy.requests()
    }

    /// Whether any request so far carried an `Authorization` header.
    pub fn saw_authorization(&self) -> bool {
        self.requests().iter().any(|r| r.had_authorization)
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let shared = Arc::clone(shared);
        std::thread::spawn(move || {
            // A failed exchange is what some faults are for, or the
            // client's doing; the client sees it, nothing to report here.
            let _ = serve(stream, &shared);
        });
    }
}

/// A parsed request head.
struct Request {
    method: String,
    target: String,
    head: Head,
}

/// Handles one exchange on `client`, then closes it.
fn serve(client: TcpStream, shared: &Shared) -> io::Result<()> {
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    client.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let Some(head) = http::read_head(&mut reader)? else {
        return Ok(());
    };
    let request = Request {
        method: head.word(0).to_owned(),
        target: head.word(1).to_owned(),
        head,
    };
    let fault = shared.pick_fault(&request);
    shared.log(&request, fault.as_ref());
    let framing = match request.head.framing()? {
        Framing::UntilClose => Framing::Length(0),
        framing => framing,
    };
    let mut client = client;
    match &fault {
        Some(Fault::Status {
            code,
            headers,
            body,
        }) => {
            io::copy(
                &mut http::body_reader(&mut reader, framing),
                &mut io::sink(),
            )?;
            answer(&mut client, *code, headers, body)
        }
        Some(Fault::RedirectTo(base)) => {
            io::copy(
                &mut http::body_reader(&mut reader, framing),
                &mut io::sink(),
            )?;
            let location = format!("{}{}", base.trim_end_matches('/'), request.target);
            answer(&mut client, 307, &[("Location".to_owned(), location)], b"")
        }
        _ => forward(
            &request,
            &mut reader,
            framing,
            client,
            fault.as_ref(),
            shared,
        ),
    }
}

impl Shared {
    /// The fault of the first rule that fires; every rule counts the
    /// request if it matches.
    fn pick_fault(&self, request: &Request) -> Option<Fault> {
        let mut picked = None;
        for rule in &self.rules {
            if rule.fires_on(&request.method, &request.target) && picked.is_none() {
                picked = Some(rule.fault.clone());
            }
        }
        picked
    }

    fn log(&self, request: &Request, fault: Option<&Fault>) {
        let entry = LoggedRequest {
            method: request.method.clone(),
            path_and_query: request.target.clone(),
            headers: request
                .head
                .headers
                .iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
                .collect(),
            had_authorization: request.head.get("authorization").is_some(),
            range: request.head.get("range").map(str::to_owned),
            fault: fault.cloned(),
        };
        self.log
            .lock()
            .expect("no thread panics holding the log")
            .push(entry);
    }
}

/// Answers with a response made up by the proxy.
fn answer(
    client: &mut TcpStream,
    code: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> io::Result<()> {
    let mut all = headers.to_vec();
    all.push(("Content-Length".to_owned(), body.len().to_string()));
    all.push(("Connection".to_owned(), "close".to_owned()));
    http::write_head(client, &format!("HTTP/1.1 {code} Injected"), &all)?;
    client.write_all(body)?;
    client.flush()
}

/// Hop-by-hop and framing headers the proxy sets itself.
fn is_hop_header(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "upgrade",
        "content-length",
    ]
    .iter()
    .any(|hop| name.eq_ignore_ascii_case(hop))
}

/// Passes the exchange on to the upstream and its answer back, injecting a
/// body fault (or none).
fn forward(
    request: &Request,
    reader: &mut BufReader<TcpStream>,
    framing: Framing,
    mut client: TcpStream,
    fault: Option<&Fault>,
    shared: &Shared,
) -> io::Result<()> {
    let upstream = TcpStream::connect(&shared.upstream)?;
    upstream.set_read_timeout(Some(IO_TIMEOUT))?;
    upstream.set_write_timeout(Some(IO_TIMEOUT))?;
    send_request(request, reader, framing, &upstream, fault, shared)?;

    let mut upstream = BufReader::new(upstream);
    let response = http::read_head(&mut upstream)?
        .ok_or_else(|| http::invalid("the upstream closed without answering"))?;
    let response_framing = response.framing()?;
    http::write_head(
        &mut client,
        &response.first_line,
        &response_headers(&response, response_framing, shared),
    )?;
    let status = response.word(1);
    let has_body = request.method != "HEAD"
        && !(status.starts_with('1') || status == "204" || status == "304");
    let ending = if has_body {
        let mut body = http::body_reader(&mut upstream, response_framing);
        body::forward(&mut body, &mut client, fault, &shared.stop)?
    } else {
        Ending::Complete
    };
    close(client, &ending)
}

/// Sends the request head and body to the upstream.
fn send_request(
    request: &Request,
    reader: &mut BufReader<TcpStream>,
    framing: Framing,
    mut upstream: &TcpStream,
    fault: Option<&Fault>,
    shared: &Shared,
) -> io::Result<()> {
    let drop_range = matches!(fault, Some(Fault::IgnoreRange));
    let mut headers: Vec<(String, String)> = request
        .head
        .headers
        .iter()
        .filter(|(name, _)| !is_hop_header(name) && !name.eq_ignore_ascii_case("host"))
        .filter(|(name, _)| !(drop_range && name.eq_ignore_ascii_case("range")))
        .cloned()
        .collect();
    headers.push(("Host".to_owned(), shared.upstream.clone()));
    headers.push(("Connection".to_owned(), "close".to_owned()));
    let mut body = http::body_reader(reader, framing);
    match framing {
        Framing::Length(len) => {
            headers.push(("Content-Length".to_owned(), len.to_string()));
            http::write_head(&mut upstream, &request.head.first_line, &headers)?;
            io::copy(&mut body, &mut upstream)?;
        }
        _ => {
            let mut gathered = Vec::new();
            body.read_to_end(&mut gathered)?;
            headers.push(("Content-Length".to_owned(), gathered.len().to_string()));
            http::write_head(&mut upstream, &request.head.first_line, &headers)?;
            upstream.write_all(&gathered)?;
        }
    }
    upstream.flush()
}

/// The upstream's response headers as the client gets them: `Location`
/// pointing back at the proxy, one exchange per connection, and chunked
/// bodies passed on decoded (delimited by the close).
fn response_headers(response: &Head, framing: Framing, shared: &Shared) -> Vec<(String, String)> {
    let upstream_url = format!("http://{}", shared.upstream);
    let own_url = format!("http://{}", shared.own);
    let mut headers: Vec<(String, String)> = response
        .headers
        .iter()
        .filter(|(name, _)| !is_hop_header(name))
        .map(|(name, value)| {
            if name.eq_ignore_ascii_case("location") && value.starts_with(&upstream_url) {
                (name.clone(), value.replacen(&upstream_url, &own_url, 1))
            } else {
                (name.clone(), value.clone())
            }
        })
        .collect();
    if let Framing::Length(len) = framing {
        headers.push(("Content-Length".to_owned(), len.to_string()));
    }
    headers.push(("Connection".to_owned(), "close".to_owned()));
    headers
}

/// Closes the client connection the way the exchange ended.
fn close(client: TcpStream, ending: &Ending) -> io::Result<()> {
    match ending {
        Ending::Complete | Ending::Close => client.shutdown(Shutdown::Write),
        Ending::Reset => {
            std::thread::sleep(RESET_GRACE);
            socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO))
            // Dropping `client` now sends the RST.
        }
    }
}
