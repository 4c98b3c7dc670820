//! `cachectl` behind a proxy: the proxy variables of its environment are
//! honoured as curl honours them, checked through a real squid whose access
//! log says which requests it forwarded.

#[path = "../../../tests/support/squid.rs"]
#[allow(dead_code, unreachable_pub)]
mod squid;
mod support;

use squid::Squid;
use support::{cachectl, fixture, stderr, stdout};

/// The exit code docs/cli.md gives authentication failures.
const EXIT_AUTH: i32 = 4;
/// The exit code docs/cli.md gives usage errors.
const EXIT_USAGE: i32 = 2;

#[test]
fn pull_goes_through_the_proxy_of_its_environment() {
    let squid = Squid::start(&[]);
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, digest) = fixture("small");
    let registry = reference.split('/').next().expect("registry").to_owned();
    let pulled = cachectl(home.path())
        .args(["pull", &reference])
        .env("http_proxy", format!("http://{}", squid.addr()))
        // An https proxy that does not exist: the registry is plain HTTP,
        // so only http_proxy applies.
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .output()
        .expect("runs");
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    assert!(stdout(&pulled).contains(&digest), "{}", stdout(&pulled));
    let manifest = format!("http://{registry}/v2/");
    let log = squid.wait_for(|line| line.url.starts_with(&manifest) && line.status == 200);
    assert!(
        log.iter().any(|line| line.url.contains("/blobs/sha256:")),
        "{log:?}"
    );
}

#[test]
fn the_lower_case_no_proxy_wins_over_no_proxy_in_capitals() {
    let squid = Squid::start(&[]);
    let (reference, _) = fixture("small");
    let pull = |no_proxy: &str, upper: &str| {
        let home = tempfile::tempdir().expect("tempdir");
        let pulled = cachectl(home.path())
            .args(["pull", "-q", &reference])
            .env("http_proxy", format!("http://{}", squid.addr()))
            .env("no_proxy", no_proxy)
            .env("NO_PROXY", upper)
            .output()
            .expect("runs");
        assert!(pulled.status.success(), "{}", stderr(&pulled));
    };
    // Squid writes a line when a transaction ends, just after the client
    // has its answer: give it a moment before counting.
    let settled = || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        squid.log().len()
    };
    // NO_PROXY would bypass, but no_proxy is set and does not.
    pull("nothing.example", "127.0.0.0/8");
    let through = settled();
    assert!(through > 0, "the pull did not go through squid");
    // no_proxy bypasses (CIDR form): nothing more reaches squid.
    pull("example.com, 127.0.0.0/8", "nothing.example");
    assert_eq!(settled(), through, "{:?}", squid.log());
}

#[test]
fn a_407_from_the_proxy_exits_with_the_auth_code() {
    let squid = Squid::start_with_auth(&[], "proxyuser", "right-secret");
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, _) = fixture("small");
    let refused = cachectl(home.path())
        .args(["pull", &reference])
        .env(
            "http_proxy",
            format!("http://proxyuser:wrong-secret@{}", squid.addr()),
        )
        .output()
        .expect("runs");
    assert_eq!(
        refused.status.code(),
        Some(EXIT_AUTH),
        "{}",
        stderr(&refused)
    );
    let text = stderr(&refused);
    assert!(text.contains(&squid.addr().to_string()), "{text}");
    assert!(text.contains("407"), "{text}");
    assert!(!text.contains("wrong-secret"), "{text}");
    let log = squid.wait_for(|line| line.status == 407);
    assert!(log.iter().all(|line| line.status == 407), "{log:?}");
}

#[test]
fn an_unsupported_proxy_setting_is_a_usage_error_naming_the_variable() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, _) = fixture("small");
    let refused = cachectl(home.path())
        .args(["pull", &reference])
        .env("http_proxy", "socks5://user:hunter2@127.0.0.1:1080")
        .output()
        .expect("runs");
    assert_eq!(
        refused.status.code(),
        Some(EXIT_USAGE),
        "{}",
        stderr(&refused)
    );
    let text = stderr(&refused);
    assert!(
        text.contains("http_proxy") && text.contains("socks5://"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}
