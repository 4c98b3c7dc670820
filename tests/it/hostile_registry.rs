//! A registry that lies, end to end through the store: an HTML page where a
//! manifest or a blob should be, and a blob body that never ends. Each pull
//! fails with an error that names what was wrong, soon and with bounded
//! work, and leaves a store that passes `verify` with no image and no blob
//! of what was refused. (Digest lies, truncation, stalls, redirect loops and
//! bodies longer than described are in `distribution_faults.rs` and
//! `distribution_errors.rs`.)

use crate::store::{client, noise, push_image, ref_names, via};
use cachectl_tests::fault_proxy::{Fault, FaultProxy, Rule};
use cachectl_tests::{registries, unique};
use ociref::Reference;
use ocistore::{PullOptions, Store};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

const HTML: &[u8] = b"<!DOCTYPE html><html><body><h1>Welcome to our proxy</h1></body></html>";

/// Pushes a one-layer image; returns its reference and layer digest.
fn pushed(name: &str) -> (Reference, String) {
    let registries = registries();
    let target: Reference = format!("{}/{}:v1", registries.plain, unique(name))
        .parse()
        .expect("valid");
    let layer = noise(51, 300_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(push_image(
        &client(),
        &target,
        name,
        std::slice::from_ref(&layer),
    ));
    (target, ociref::Digest::sha256_of(&layer).to_string())
}

/// Pulls `reference` into a new store under `dir`; returns the store's
/// root, the error, and how long the pull took.
fn failed_pull(dir: &Path, reference: &Reference) -> (std::path::PathBuf, String, Duration) {
    let root = dir.join("store");
    let store = Store::open(&root).expect("store");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let started = Instant::now();
    let err = runtime
        .block_on(store.pull(&client(), reference, &PullOptions::default()))
        .expect_err("the pull must fail");
    let took = started.elapsed();
    assert!(ref_names(&root).is_empty(), "an image was stored");
    let report = store.verify().expect("verify runs");
    assert!(report.is_ok(), "{report:?}");
    (root, cachectl_tests::error_chain(&err), took)
}

fn html(path: &str) -> Rule {
    Rule::new(Fault::Status {
        code: 200,
        headers: vec![("Content-Type".into(), "text/html; charset=utf-8".into())],
        body: HTML.to_vec(),
    })
    .path_contains(path)
}

#[test]
fn an_html_page_for_a_manifest_is_refused_naming_its_type() {
    let (target, _) = pushed("hostile/html-manifest");
    let proxy = FaultProxy::start(&registries().plain, vec![html("/manifests/")]);
    let reference = via(&proxy.addr(), &target);
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, message, _) = failed_pull(dir.path(), &reference);
    assert!(message.contains("text/html"), "{message}");
    assert!(message.contains(reference.repository()), "{message}");
}

#[test]
fn an_html_page_for_a_blob_is_refused_at_fetch_time_naming_the_digest() {
    let (target, layer) = pushed("hostile/html-blob");
    let proxy = FaultProxy::start(&registries().plain, vec![html(&layer)]);
    let reference = via(&proxy.addr(), &target);
    let dir = tempfile::tempdir().expect("tempdir");
    let (root, message, _) = failed_pull(dir.path(), &reference);
    assert!(message.contains(&layer), "{message}");
    let blob = root.join("blobs/sha256").join(&layer["sha256:".len()..]);
    assert!(!blob.exists(), "the HTML was stored as the layer");
}

/// A server that answers every request with `200` and a chunked body of
/// zeros that never ends; returns its base URL.
fn endless_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                            Transfer-Encoding: chunked\r\n\r\n";
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = [0u8; 65_536];
                loop {
                    let sent = stream
                        .write_all(b"10000\r\n")
                        .and_then(|()| stream.write_all(&chunk))
                        .and_then(|()| stream.write_all(b"\r\n"));
                    if sent.is_err() {
                        return; // the client hung up
                    }
                }
            });
        }
    });
    url
}

#[test]
fn a_blob_body_that_never_ends_is_cut_at_its_size() {
    let (target, layer) = pushed("hostile/endless");
    let endless = endless_server();
    // The layer's download is redirected to the endless server (storage on
    // another host, as many registries do).
    let proxy = FaultProxy::start(
        &registries().plain,
        vec![Rule::new(Fault::RedirectTo(endless)).path_contains(&layer)],
    );
    let reference = via(&proxy.addr(), &target);
    let dir = tempfile::tempdir().expect("tempdir");
    let (root, message, took) = failed_pull(dir.path(), &reference);
    assert!(message.contains(&layer), "{message}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    // Nothing much bigger than the layer was written for it.
    let ingest = root.join(".cachectl/ingest");
    let held: u64 = std::fs::read_dir(&ingest)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    assert!(held <= 300_000, "{held} bytes held for a 300000-byte layer");
}

/// A first non-loopback IPv4 address of this machine (`hostname -I`).
fn own_outside_address() -> String {
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .expect("hostname runs");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .expect("the test needs a non-loopback IPv4 address (hostname -I)")
        .to_owned()
}

/// A token service on all addresses that answers every request with a
/// token and records whether each request carried `Authorization`.
fn recording_token_service() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<bool>>>) {
    let listener = TcpListener::bind("0.0.0.0:0").expect("binds");
    let port = listener.local_addr().expect("address").port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            let mut authorized = false;
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                authorized |= line.to_ascii_lowercase().starts_with("authorization:");
                line.clear();
            }
            record.lock().expect("lock").push(authorized);
            let body = r#"{"token":"t","access_token":"t"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, seen)
}

#[test]
fn credentials_go_to_a_token_realm_on_another_host_only_over_tls() {
    let registries = registries();
    let (port, seen) = recording_token_service();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // The same service, named once by a loopback address (credentials may
    // go: the check can see them) and once by this host's outside address
    // over plain HTTP (they must not).
    for (realm_host, may_see_credentials) in [
        ("127.0.0.1".to_owned(), true),
        (own_outside_address(), false),
    ] {
        let challenge =
            format!(r#"Bearer realm="http://{realm_host}:{port}/token",service="lying-registry""#);
        let proxy = FaultProxy::start(
            &registries.plain,
            vec![Rule::new(Fault::status(
                401,
                &[("WWW-Authenticate", &challenge)],
            ))],
        );
        let credentials = ocidist::credentials::StaticCredentials::new().with(
            &proxy.addr(),
            ocidist::credentials::Credential::basic("user", "hunter2-password"),
        );
        let client = ocidist::Client::new(
            ocidist::ClientConfig::default(),
            std::sync::Arc::new(credentials),
        )
        .expect("client");
        let reference: Reference = format!("{}/hostile/realm:v1", proxy.addr())
            .parse()
            .expect("valid");
        seen.lock().expect("lock").clear();
        let err = runtime
            .block_on(client.resolve(&reference))
            .expect_err("the registry refuses every token");
        assert!(
            !cachectl_tests::error_chain(&err).contains("hunter2"),
            "{err}"
        );
        let requests = seen.lock().expect("lock").clone();
        assert!(
            !requests.is_empty(),
            "{realm_host}: no token request: {err}"
        );
        assert_eq!(
            requests.iter().any(|authorized| *authorized),
            may_see_credentials,
            "{realm_host}: Authorization sent to the realm: {requests:?}"
        );
    }
}
