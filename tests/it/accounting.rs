//! Request accounting ([`ocidist::Client::usage`]) against what the
//! registries saw: the fault proxy in front of the origin and in front of
//! a pull-through mirror logs every request; the counts the client reports
//! must equal those logs. Rate-limit headers come from a 429 the fault
//! proxy answers once, as Docker Hub would.

use crate::mirrors::{fleet_client, hosts_dir, pull_and_verify, pushed_image};
use cachectl_tests::fault_proxy::{Fault, FaultProxy, LoggedRequest};
use cachectl_tests::pull_through::PullThrough;
use cachectl_tests::registries;
use ocidist::HostUsage;
use ocidist::credentials::StaticCredentials;

/// Requests our client (not the mirror's) sent, as a proxy logged them.
fn ours(log: &[LoggedRequest]) -> Vec<&LoggedRequest> {
    log.iter()
        .filter(|r| {
            r.header("user-agent")
                .is_some_and(|ua| ua.contains("ocidist"))
        })
        .collect()
}

/// `(manifest HEAD, manifest GET, blob GET, all)` in a proxy's log.
fn seen(log: &[&LoggedRequest]) -> (u64, u64, u64, u64) {
    let count = |method: &str, part: &str| {
        log.iter()
            .filter(|r| r.method == method && r.path_and_query.contains(part))
            .count() as u64
    };
    (
        count("HEAD", "/manifests/"),
        count("GET", "/manifests/"),
        count("GET", "/blobs/"),
        log.len() as u64,
    )
}

fn reported(usage: &HostUsage) -> (u64, u64, u64, u64) {
    (
        usage.manifest_head,
        usage.manifest_get,
        usage.blob_get,
        usage.requests(),
    )
}

fn usage_of(usage: &[HostUsage], host: &str) -> HostUsage {
    usage
        .iter()
        .find(|u| u.host == host)
        .unwrap_or_else(|| panic!("no usage for {host}: {usage:#?}"))
        .clone()
}

#[tokio::test]
async fn reported_requests_equal_what_the_origin_and_the_mirror_saw() {
    let plain = registries().plain;
    let origin = FaultProxy::start(&plain, Vec::new());
    let (reference, blobs) = pushed_image(
        &plain,
        &origin.addr(),
        "accounting/counts",
        StaticCredentials::new(),
    )
    .await;
    let mirror = PullThrough::start(&origin.addr(), None);
    let watched = FaultProxy::start(&mirror.addr(), Vec::new());
    let hosts = hosts_dir(&origin.addr(), &watched.url(), r#"["pull"]"#);
    let client = fleet_client(hosts.path(), StaticCredentials::new());
    pull_and_verify(&client, &reference).await;
    let usage = client.usage();
    eprintln!("usage: {usage:#?}");
    let at_origin = usage_of(&usage, &origin.addr());
    let at_mirror = usage_of(&usage, &watched.addr());
    let origin_log = origin.requests();
    assert_eq!(reported(&at_origin), seen(&ours(&origin_log)));
    let mirror_log = watched.requests();
    assert_eq!(
        reported(&at_mirror),
        seen(&mirror_log.iter().collect::<Vec<_>>())
    );
    assert!(at_mirror.mirror && !at_origin.mirror);
    assert_eq!(at_mirror.blob_get, blobs.len() as u64);
    assert_eq!(at_origin.blob_get, 0);
    assert!(
        at_mirror.bytes >= 2 * crate::mirrors::LAYER_BYTES as u64,
        "{at_mirror:?}"
    );
    assert_eq!(at_origin.retries + at_mirror.retries, 0);
}

#[tokio::test]
async fn rate_limit_headers_and_the_retry_they_cause_are_reported() {
    let plain = registries().plain;
    let busy = Fault::status(
        429,
        &[
            ("RateLimit-Limit", "100;w=21600"),
            ("RateLimit-Remaining", "5;w=21600"),
            ("Retry-After", "0"),
        ],
    );
    let rules = vec![
        cachectl_tests::fault_proxy::Rule::new(busy)
            .method("HEAD")
            .path_contains("/manifests/")
            .first(1),
    ];
    let origin = FaultProxy::start(&plain, rules);
    let (reference, _) = pushed_image(
        &plain,
        &origin.addr(),
        "accounting/limits",
        StaticCredentials::new(),
    )
    .await;
    let no_hosts = tempfile::tempdir().expect("tempdir");
    let client = fleet_client(no_hosts.path(), StaticCredentials::new());
    pull_and_verify(&client, &reference).await;
    let usage = usage_of(&client.usage(), &origin.addr());
    assert_eq!(reported(&usage), seen(&ours(&origin.requests())));
    assert_eq!(usage.manifest_head, 2, "the 429 and its retry");
    assert_eq!(usage.retries, 1);
    assert_eq!(usage.ratelimit_limit, Some(100));
    assert_eq!(usage.ratelimit_remaining, Some(5));
    assert_eq!(usage.retry_after_seconds, Some(0));
    assert!(ocidist::accounting::is_low(
        usage.ratelimit_limit,
        usage.ratelimit_remaining
    ));
}
