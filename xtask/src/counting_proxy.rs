//! A forwarding TCP proxy that records the request line of every HTTP
//! request sent through it, for counting the requests of a pull
//! (`cargo xtask bench pull`).

use crate::cmd::Error;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A forwarding TCP proxy on a free loopback port that records the request
/// line of every HTTP request clients send through it (one thread per
/// connection and direction). Dropping it stops accepting connections.
///
/// Request bodies are skipped by `Content-Length`; chunked request bodies
/// are not understood, which is fine for pulls (no request has a body).
pub(crate) struct CountingProxy {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl CountingProxy {
    /// Binds a free loopback port and forwards every connection to it to
    /// `upstream`.
    pub(crate) fn start(upstream: SocketAddr) -> Result<CountingProxy, Error> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding 127.0.0.1:0: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("reading the bound address: {e}"))?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let requests = Arc::clone(&requests);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let requests = Arc::clone(&requests);
                    std::thread::spawn(move || {
                        let _ = forward(client, upstream, &requests);
                    });
                }
            })
        };
        Ok(CountingProxy {
            addr,
            requests,
            stop,
            accept: Some(accept),
        })
    }

    /// The address clients connect to.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The request lines seen since the last call, oldest first.
    pub(crate) fn take_requests(&self) -> Vec<String> {
        let mut requests = self
            .requests
            .lock()
            .expect("because no thread panics while holding the lock");
        std::mem::take(&mut *requests)
    }
}

impl Drop for CountingProxy {
    /// Stops accepting connections and waits for the accept loop to end.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Forwards one connection both ways, recording the client's requests.
fn forward(
    mut client: TcpStream,
    upstream: SocketAddr,
    requests: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream)?;
    let mut client_back = client.try_clone()?;
    let mut server_back = server.try_clone()?;
    let answers = std::thread::spawn(move || {
        let _ = std::io::copy(&mut server_back, &mut client_back);
        let _ = client_back.shutdown(Shutdown::Write);
    });
    let mut parser = RequestParser::default();
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        let n = client.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        let lines = parser.feed(&buffer[..n]);
        if !lines.is_empty() {
            requests
                .lock()
                .expect("because no thread panics while holding the lock")
                .extend(lines);
        }
        server.write_all(&buffer[..n])?;
    }
    let _ = server.shutdown(Shutdown::Write);
    let _ = answers.join();
    Ok(())
}

/// Splits the bytes a client sends into HTTP/1.1 requests and returns their
/// request lines (`GET /v2/ HTTP/1.1`).
#[derive(Default)]
struct RequestParser {
    /// The head being read (up to the empty line).
    head: Vec<u8>,
    /// Body bytes of the current request still to skip.
    body_left: u64,
}

impl RequestParser {
    /// Feeds the next bytes; returns the request lines of the requests
    /// whose head ended in them.
    fn feed(&mut self, mut bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let skip = usize::try_from(self.body_left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                bytes = &bytes[skip..];
                self.body_left -= skip as u64;
                continue;
            }
            self.head.push(bytes[0]);
            bytes = &bytes[1..];
            if !self.head.ends_with(b"\r\n\r\n") {
                continue;
            }
            let head = String::from_utf8_lossy(&self.head).into_owned();
            self.head.clear();
            let mut head_lines = head.lines();
            let Some(request_line) = head_lines.next() else {
                continue;
            };
            if request_line.is_empty() {
                // A stray empty line between requests.
                continue;
            }
            lines.push(request_line.to_owned());
            self.body_left = head_lines
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse().ok())
                .unwrap_or(0);
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_parser_counts_pipelined_requests_split_anywhere() {
        let stream = b"HEAD /v2/a/manifests/v1 HTTP/1.1\r\nHost: x\r\n\r\n\
PUT /v2/a/blobs/uploads/1 HTTP/1.1\r\nContent-Length: 5\r\n\r\nGET /\
GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n";
        for split in 0..stream.len() {
            let mut parser = RequestParser::default();
            let mut lines = parser.feed(&stream[..split]);
            lines.extend(parser.feed(&stream[split..]));
            assert_eq!(
                lines,
                [
                    "HEAD /v2/a/manifests/v1 HTTP/1.1",
                    "PUT /v2/a/blobs/uploads/1 HTTP/1.1",
                    "GET /v2/ HTTP/1.1"
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn proxy_forwards_and_counts() {
        let server = TcpListener::bind("127.0.0.1:0").expect("binds");
        let upstream = server.local_addr().expect("has an address");
        let echo = std::thread::spawn(move || {
            let (mut stream, _) = server.accept().expect("accepts");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).expect("reads");
                head.push(byte[0]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .expect("writes");
        });
        let proxy = CountingProxy::start(upstream).expect("starts");
        let mut client = TcpStream::connect(proxy.addr()).expect("connects");
        client
            .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("writes");
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).expect("reads");
        assert!(answer.ends_with(b"ok"), "{answer:?}");
        echo.join().expect("the server thread ends");
        assert_eq!(proxy.take_requests(), ["GET /v2/ HTTP/1.1"]);
        assert!(proxy.take_requests().is_empty());
    }
}
