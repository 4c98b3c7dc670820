//! What every end-to-end test of the binary needs: the test registry's
//! environment, the fixtures summary, and `cachectl` run in a private home.
#![allow(dead_code)]

pub(crate) mod shapes;

use assert_cmd::Command;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The references `images --json` lists in `home`'s cache.
pub(crate) fn cached_images(home: &Path) -> serde_json::Value {
    let listed = cachectl(home)
        .args(["images", "--json"])
        .output()
        .expect("runs");
    serde_json::from_slice(&listed.stdout).expect("JSON")
}

/// The value of an environment variable `cargo xtask test` sets.
pub(crate) fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with `cargo xtask test` (README)")
    })
}

/// `(reference, digest)` of the fixture image `name`.
pub(crate) fn fixture(name: &str) -> (String, String) {
    let text = std::fs::read_to_string(env("CACHECTL_TEST_FIXTURES")).expect("fixtures summary");
    let summary: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    (
        summary[name]["reference"]
            .as_str()
            .expect("reference")
            .to_owned(),
        summary[name]["digest"].as_str().expect("digest").to_owned(),
    )
}

/// Pulls the small fixture into `home`'s cache; returns its reference and
/// digest.
pub(crate) fn cached_fixture(home: &Path) -> (String, String) {
    let (reference, digest) = fixture("small");
    let pulled = cachectl(home)
        .args(["pull", &reference])
        .output()
        .expect("runs");
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    (reference, digest)
}

/// `cachectl` with its cache, config and credentials under `home`.
pub(crate) fn cachectl(home: &Path) -> Command {
    Command::from_std(cachectl_process(home))
}

/// [`cachectl`] as a plain [`std::process::Command`], for a run in the
/// background (`spawn`).
pub(crate) fn cachectl_process(home: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("cachectl"));
    // Relative paths in generated arguments (`--root du`) land in `home`,
    // never in the source tree.
    command
        .current_dir(home)
        .env("CACHECTL_ROOT", home.join("cache"))
        .env("HOME", home)
        .env("DOCKER_CONFIG", home.join("docker"))
        .env_remove("XDG_CACHE_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("CACHECTL_CONFIG")
        .env_remove("CACHECTL_HOSTS_DIR");
    for name in PROXY_VARIABLES {
        command.env_remove(name);
    }
    command
}

/// The proxy variables `cachectl` reads: removed for every test run, so a
/// proxy set in the developer's environment never sits between the tests
/// and their loopback registries (proxy tests set their own).
pub(crate) const PROXY_VARIABLES: &[&str] = &[
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// Standard output, as text.
pub(crate) fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Standard error, as text.
pub(crate) fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A loopback TCP forwarder to `upstream` that counts the connections it
/// accepts: zero connections means zero requests.
pub(crate) fn counting_forwarder(upstream: String) -> (String, Arc<AtomicUsize>) {
    failing_forwarder(upstream, 0)
}

/// [`counting_forwarder`] whose first `failures` connections are answered
/// `503 Service Unavailable` (and closed) instead of being forwarded, like
/// a registry busy for a moment.
pub(crate) fn failing_forwarder(upstream: String, failures: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let addr = listener.local_addr().expect("address").to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    std::thread::spawn(move || {
        for mut client in listener.incoming().flatten() {
            if counted.fetch_add(1, Ordering::SeqCst) < failures {
                answer_503(&mut client);
                continue;
            }
            forward(client, &upstream);
        }
    });
    (addr, count)
}

/// A loopback TCP forwarder to `upstream` that can be switched off: while
/// the flag is false, each connection is closed as soon as it is accepted,
/// like a registry that went down.
pub(crate) fn switchable_forwarder(upstream: String) -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let addr = listener.local_addr().expect("address").to_string();
    let up = Arc::new(AtomicBool::new(true));
    let switch = Arc::clone(&up);
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            if !switch.load(Ordering::SeqCst) {
                let _ = client.shutdown(Shutdown::Both);
                continue;
            }
            forward(client, &upstream);
        }
    });
    (addr, up)
}

/// Connects `client` to `upstream` and copies bytes both ways, each on its
/// own thread; a refused upstream drops the client.
fn forward(client: TcpStream, upstream: &str) {
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    for (mut from, mut to) in [
        (
            client.try_clone().expect("clone"),
            server.try_clone().expect("clone"),
        ),
        (server, client),
    ] {
        std::thread::spawn(move || {
            let mut buffer = [0u8; 16 * 1024];
            while let Ok(n) = from.read(&mut buffer) {
                if n == 0 || to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        });
    }
}

/// Reads one request head from `client` and answers 503, closing.
fn answer_503(client: &mut TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && matches!(client.read(&mut byte), Ok(1)) {
        head.push(byte[0]);
    }
    let _ = client.write_all(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    let _ = client.shutdown(Shutdown::Both);
}
