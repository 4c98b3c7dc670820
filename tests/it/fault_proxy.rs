//! The fault-injecting proxy itself, in front of the real registry: each
//! fault does exactly what it says, the request log counts exactly, and
//! pushes keep going through the proxy.

use cachectl_tests::fault_proxy::{Fault, FaultProxy, RecordingServer, Rule};
use cachectl_tests::{blocking_client, registries, unique};
use reqwest::StatusCode;
use reqwest::blocking::{Body, Client, Response};
use std::io::{self, Cursor, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime};

/// A blob pushed straight to the registry.
struct Blob {
    repository: String,
    digest: String,
    bytes: Vec<u8>,
}

impl Blob {
    /// Pushes `len` bytes, a pattern seeded by `name`, to a repository of
    /// this test's own.
    fn pushed(name: &str, len: usize) -> Blob {
        let repository = unique(&format!("fault-proxy/{name}"));
        let seed = name.len();
        let bytes: Vec<u8> = (0..len).map(|i| ((i * 31 + seed) % 251) as u8).collect();
        let registry = registries().plain;
        let location = start_upload(&blocking_client(), &registry, &repository);
        let digest = sha256_digest(&bytes);
        finish_upload(&blocking_client(), &location, bytes.clone(), &digest);
        Blob {
            repository,
            digest,
            bytes,
        }
    }

    fn url(&self, addr: &str) -> String {
        format!("http://{addr}/v2/{}/blobs/{}", self.repository, self.digest)
    }
}

fn sha256_digest(bytes: &[u8]) -> String {
    ociref::Digest::sha256_of(bytes).to_string()
}

/// `POST /v2/<repository>/blobs/uploads/`; the upload's `Location`.
fn start_upload(client: &Client, addr: &str, repository: &str) -> String {
    let response = client
        .post(format!("http://{addr}/v2/{repository}/blobs/uploads/"))
        .send()
        .expect("POST reaches the registry");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    location(&response)
}

/// `PUT <location>&digest=<digest>` with `bytes`, the last (or only) part.
fn finish_upload(client: &Client, location: &str, bytes: Vec<u8>, digest: &str) {
    let response = client
        .put(with_digest(location, digest))
        .body(bytes)
        .send()
        .expect("PUT reaches the registry");
    assert_eq!(response.status(), StatusCode::CREATED, "{response:?}");
}

fn with_digest(location: &str, digest: &str) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}digest={digest}")
}

fn location(response: &Response) -> String {
    response
        .headers()
        .get("location")
        .expect("a Location header")
        .to_str()
        .expect("ASCII")
        .to_owned()
}

fn get(url: &str) -> Response {
    blocking_client()
        .get(url)
        .send()
        .unwrap_or_else(|err| panic!("GET {url}: {err}"))
}

fn body(response: Response) -> Vec<u8> {
    response.bytes().expect("a whole body").to_vec()
}

/// Reads the body until it fails; what arrived before. Panics when it ends
/// cleanly instead.
fn read_until_error(mut response: Response) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match response.read(&mut buf) {
            Ok(0) => panic!("the body ended cleanly after {} bytes", received.len()),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(_) => return received,
        }
    }
}

/// A `GET` over a bare socket: everything received (head included), and
/// how the stream ended.
fn raw_get(addr: &str, path: &str) -> (Vec<u8>, io::Result<usize>) {
    let mut stream = TcpStream::connect(addr).expect("the proxy accepts");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("request sent");
    let mut received = Vec::new();
    let ending = stream.read_to_end(&mut received);
    (received, ending)
}

/// The body of a raw response, i.e. what follows the blank line.
fn raw_body(received: &[u8]) -> &[u8] {
    let end = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    &received[end + 4..]
}

fn header<'r>(response: &'r Response, name: &str) -> Option<&'r str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[test]
fn passes_v2_through_with_the_distribution_header() {
    let proxy = FaultProxy::start(&registries().plain, Vec::new());
    let response = get(&format!("{}/v2/", proxy.url()));
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "docker-distribution-api-version"),
        Some("registry/2.0")
    );
    assert_eq!(header(&response, "connection"), Some("close"));
    let requests = proxy.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path_and_query, "/v2/");
    assert_eq!(requests[0].header("host"), Some(proxy.addr().as_str()));
    assert_eq!(requests[0].fault, None);
}

#[test]
fn blobs_come_through_byte_for_byte() {
    let blob = Blob::pushed("pass-through", 300_000);
    let proxy = FaultProxy::start(&registries().plain, Vec::new());
    let response = get(&blob.url(&proxy.addr()));
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body(response), blob.bytes);
}

#[test]
fn reset_after_n_bytes_cuts_the_body_exactly_there_once() {
    let blob = Blob::pushed("reset", 300_000);
    let rule = Rule::new(Fault::ResetAfter(50_000))
        .method("GET")
        .path_contains("/blobs/")
        .first(1);
    let proxy = FaultProxy::start(&registries().plain, vec![rule]);

    let first = get(&blob.url(&proxy.addr()));
    assert_eq!(first.content_length(), Some(300_000));
    assert_eq!(read_until_error(first), blob.bytes[..50_000]);

    assert_eq!(body(get(&blob.url(&proxy.addr()))), blob.bytes);
    let faults: Vec<_> = proxy.requests().into_iter().map(|r| r.fault).collect();
    assert_eq!(faults, vec![Some(Fault::ResetAfter(50_000)), None]);
}

#[test]
fn reset_after_is_a_real_reset() {
    let blob = Blob::pushed("reset-rst", 100_000);
    let rule = Rule::new(Fault::ResetAfter(20_000)).path_contains("/blobs/");
    let proxy = FaultProxy::start(&registries().plain, vec![rule]);
    let path = format!("/v2/{}/blobs/{}", blob.repository, blob.digest);
    let (received, ending) = raw_get(&proxy.addr(), &path);
    let error = ending.expect_err("a reset, not a clean end");
    assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(raw_body(&received), &blob.bytes[..20_000]);
}

#[test]
fn truncate_keeps_the_full_content_length_and_sends_less() {
    let blob = Blob::pushed("truncate", 100_000);
    let rule = Rule::new(Fault::Truncate(1234)).path_contains("/blobs/");
    let proxy = FaultProxy::start(&registries().plain, vec![rule]);
    let response = get(&blob.url(&proxy.addr()));
    assert_eq!(response.content_length(), Some(100_000));
    assert_eq!(read_until_error(response), blob.bytes[..1234]);

    // A clean close (FIN), where a reset would be an error.
    let path = format!("/v2/{}/blobs/{}", blob.repository, blob.digest);
    let (received, ending) = raw_get(&proxy.addr(), &path);
    assert!(ending.is_ok(), "{ending:?}");
    assert_eq!(raw_body(&received), &blob.bytes[..1234]);
}

#[test]
fn flip_byte_changes_exactly_that_byte() {
    let blob = Blob::pushed("flip", 100_000);
    let rule = Rule::new(Fault::FlipByte(40_000)).path_contains("/blobs/");
    let proxy = FaultProxy::start(&registries().plain, vec![rule]);
    let received = body(get(&blob.url(&proxy.addr())));
    assert_eq!(received.len(), blob.bytes.len());
    let differing: Vec<usize> = (0..received.len())
        .filter(|&i| received[i] != blob.bytes[i])
        .collect();
    assert_eq!(differing, vec![40_000]);
    assert_eq!(received[40_000], blob.bytes[40_000] ^ 0xff);
    assert_ne!(sha256_digest(&received), blob.digest);
}

#[test]
fn status_faults_answer_429_with_retry_after_then_pass() {
    let blob = Blob::pushed("status-429", 1000);
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(5));
    let proxy = FaultProxy::start(
        &registries().plain,
        vec![
            Rule::new(Fault::status(429, &[("Retry-After", "1")])).first(1),
            Rule::new(Fault::status(429, &[("Retry-After", &date)])).nth(2),
        ],
    );
    let url = blob.url(&proxy.addr());

    let seconds = get(&url);
    assert_eq!(seconds.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&seconds, "retry-after"), Some("1"));
    let http_date = get(&url);
    assert_eq!(http_date.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&http_date, "retry-after"), Some(date.as_str()));
    let passed = get(&url);
    assert_eq!(passed.status(), StatusCode::OK);
    assert_eq!(body(passed), blob.bytes);
}

#[test]
fn nth_fires_only_on_that_occurrence() {
    let proxy = FaultProxy::start(
        &registries().plain,
        vec![Rule::new(Fault::status(503, &[])).method("GET").nth(2)],
    );
    let url = format!("{}/v2/", proxy.url());
    let statuses: Vec<u16> = (0..3).map(|_| get(&url).status().as_u16()).collect();
    assert_eq!(statuses, vec![200, 503, 200]);
}

#[test]
fn ignore_range_gets_200_with_the_whole_body_where_the_registry_gives_206() {
    let blob = Blob::pushed("ignore-range", 10_000);
    let rule = Rule::new(Fault::IgnoreRange).nth(2);
    let proxy = FaultProxy::start(&registries().plain, vec![rule]);
    let ranged = || {
        blocking_client()
            .get(blob.url(&proxy.addr()))
            .header("Range", "bytes=100-199")
            .send()
            .expect("GET with Range")
    };

    let honoured = ranged();
    assert_eq!(honoured.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(body(honoured), blob.bytes[100..200]);

    let ignored = ranged();
    assert_eq!(ignored.status(), StatusCode::OK);
    assert_eq!(body(ignored), blob.bytes);

    let ranges: Vec<_> = proxy.requests().into_iter().map(|r| r.range).collect();
    assert_eq!(ranges, vec![Some("bytes=100-199".to_owned()); 2]);
}

#[test]
fn redirects_reach_the_recorder_without_authorization() {
    let registry = registries().plain;
    let blob = Blob::pushed("redirect", 5000);
    let recorder = RecordingServer::start(&registry);
    let rule = Rule::new(Fault::RedirectTo(recorder.url())).path_contains("/blobs/");
    let proxy = FaultProxy::start(&registry, vec![rule]);
    let path = format!("/v2/{}/blobs/{}", blob.repository, blob.digest);

    let not_followed = reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client builds")
        .get(blob.url(&proxy.addr()))
        .send()
        .expect("GET");
    assert_eq!(not_followed.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(location(&not_followed), format!("{}{path}", recorder.url()));
    assert!(recorder.requests().is_empty());

    let followed = blocking_client()
        .get(blob.url(&proxy.addr()))
        .bearer_auth("a-token-for-the-proxy-only")
        .send()
        .expect("GET, redirected");
    assert_eq!(followed.status(), StatusCode::OK);
    assert_eq!(body(followed), blob.bytes);

    let first_hop = proxy.requests().pop().expect("the proxy saw the GET");
    assert!(first_hop.had_authorization);
    let second_hop = recorder.requests();
    assert_eq!(second_hop.len(), 1);
    assert_eq!(second_hop[0].path_and_query, path);
    assert!(!recorder.saw_authorization(), "{second_hop:?}");
}

#[test]
fn the_request_log_counts_exactly() {
    let blob = Blob::pushed("counts", 2000);
    let proxy = FaultProxy::start(&registries().plain, Vec::new());
    let client = blocking_client();
    for _ in 0..2 {
        let head = client.head(blob.url(&proxy.addr())).send().expect("HEAD");
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(header(&head, "content-length"), Some("2000"));
    }
    assert_eq!(body(get(&blob.url(&proxy.addr()))), blob.bytes);
    get(&format!("{}/v2/", proxy.url()));

    assert_eq!(proxy.count("HEAD", "/blobs/"), 2);
    assert_eq!(proxy.count("GET", "/blobs/"), 1);
    assert_eq!(proxy.count("GET", "/v2/"), 2);
    assert_eq!(proxy.count("GET", &blob.repository), 1);
    assert_eq!(proxy.count("DELETE", "/"), 0);
    assert_eq!(proxy.requests().len(), 4);
}

#[test]
fn pushes_go_through_the_proxy_by_rewritten_locations() {
    let registry = registries().plain;
    let repository = unique("fault-proxy/push");
    let proxy = FaultProxy::start(&registry, Vec::new());
    let client = blocking_client();
    let monolithic = b"pushed through the proxy in one PUT".to_vec();
    let chunked: Vec<u8> = (0..70_000u32).map(|i| (i % 241) as u8).collect();

    let location = start_upload(&client, &proxy.addr(), &repository);
    assert!(location.starts_with(&proxy.url()), "{location}");
    let first = sha256_digest(&monolithic);
    finish_upload(&client, &location, monolithic.clone(), &first);

    // A chunked PATCH (a body of unknown length), then an empty PUT.
    let location = start_upload(&client, &proxy.addr(), &repository);
    let patched = client
        .patch(&location)
        .body(Body::new(Cursor::new(chunked.clone())))
        .send()
        .expect("PATCH");
    assert_eq!(patched.status(), StatusCode::ACCEPTED);
    let location = location_of(&patched, &proxy);
    let second = sha256_digest(&chunked);
    finish_upload(&client, &location, Vec::new(), &second);

    assert_eq!(proxy.count("POST", "/blobs/uploads/"), 2);
    assert_eq!(proxy.count("PATCH", "/blobs/uploads/"), 1);
    assert_eq!(proxy.count("PUT", "/blobs/uploads/"), 2);
    let requests = proxy.requests();
    let patch = requests
        .iter()
        .find(|r| r.method == "PATCH")
        .expect("the PATCH is logged");
    assert_eq!(patch.header("transfer-encoding"), Some("chunked"));
    for (digest, bytes) in [(first, monolithic), (second, chunked)] {
        let url = format!("http://{registry}/v2/{repository}/blobs/{digest}");
        assert_eq!(body(get(&url)), bytes, "stored in the registry");
    }
}

fn location_of(response: &Response, proxy: &FaultProxy) -> String {
    let location = location(response);
    assert!(location.starts_with(&proxy.url()), "{location}");
    location
}

#[test]
fn a_stall_sends_the_head_and_some_bytes_then_nothing() {
    let blob = Blob::pushed("stall", 100_000);
    let stall = Fault::Stall {
        after_bytes: 1000,
        duration: Duration::from_secs(30),
    };
    let proxy = FaultProxy::start(&registries().plain, vec![Rule::new(stall)]);
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(700))
        .build()
        .expect("client builds");
    let started = Instant::now();
    let response = client
        .get(blob.url(&proxy.addr()))
        .send()
        .expect("the head arrives");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(read_until_error(response), blob.bytes[..1000]);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn throttle_slows_the_body_down() {
    let blob = Blob::pushed("throttle", 50_000);
    let throttle = Fault::Throttle {
        bytes_per_sec: 100_000,
    };
    let proxy = FaultProxy::start(&registries().plain, vec![Rule::new(throttle)]);
    let started = Instant::now();
    assert_eq!(body(get(&blob.url(&proxy.addr()))), blob.bytes);
    // 0.5 s at that rate, less the pause after the last slice.
    assert!(
        started.elapsed() >= Duration::from_millis(380),
        "{:?}",
        started.elapsed()
    );
}
