//! Mirrors from a hosts directory (containerd's `hosts.toml`), against real
//! registries on loopback: the origin (the anonymous or Basic-auth test
//! registry, behind the fault proxy that counts what it serves), the CNCF
//! registry in proxy mode as the pull-through mirror, and stores standing
//! for the hosts of a fleet. A misbehaving mirror is the fault proxy in
//! front of the real mirror, answering HTML or flipping a byte.

use crate::store::{noise, push_image};
use cachectl_tests::fault_proxy::{Fault, FaultProxy, Rule};
use cachectl_tests::pull_through::PullThrough;
use cachectl_tests::{registries, unique};
use ocidist::credentials::{Credential, StaticCredentials};
use ocidist::{Client, ClientConfig, HostsConfig};
use ociref::{Digest, Reference};
use ocistore::{PullOptions, Store};
use std::sync::Arc;

/// Layers of the test image: big enough to be streamed in many chunks.
pub(crate) const LAYER_BYTES: usize = 256 * 1024;

/// An image pushed to `registry` (directly): its reference as seen
/// through `origin` (the counting proxy) and its blobs' digests.
pub(crate) async fn pushed_image(
    registry: &str,
    origin: &str,
    name: &str,
    credentials: StaticCredentials,
) -> (Reference, Vec<Digest>) {
    let repository = unique(name);
    let direct: Reference = format!("{registry}/{repository}:v1")
        .parse()
        .expect("valid");
    let pusher =
        Client::new(ClientConfig::default(), Arc::new(credentials)).expect("client builds");
    let seed = repository.len() as u64 * 7919;
    let layers = vec![noise(seed, LAYER_BYTES), noise(seed + 1, LAYER_BYTES)];
    let manifest = push_image(&pusher, &direct, &repository, &layers).await;
    let bytes = pusher
        .manifest(&direct.with_digest(manifest.clone()))
        .await
        .expect("manifest reads back");
    let ocidist::ManifestKind::Image(image) = bytes.kind else {
        panic!("an image manifest was pushed");
    };
    let mut blobs = vec![image.config().digest().to_string()];
    blobs.extend(image.layers().iter().map(|l| l.digest().to_string()));
    let reference = format!("{origin}/{repository}:v1").parse().expect("valid");
    let blobs = blobs.iter().map(|d| d.parse().expect("digest")).collect();
    (reference, blobs)
}

/// A hosts directory configuring `mirror_url` for `registry`.
pub(crate) fn hosts_dir(registry: &str, mirror_url: &str, capabilities: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let namespace = dir.path().join(registry);
    std::fs::create_dir_all(&namespace).expect("namespace directory");
    std::fs::write(
        namespace.join("hosts.toml"),
        format!("[host.\"{mirror_url}\"]\n  capabilities = {capabilities}\n"),
    )
    .expect("hosts.toml");
    dir
}

/// A client of one host of the fleet: fast retries, the given mirrors.
pub(crate) fn fleet_client(hosts: &std::path::Path, credentials: StaticCredentials) -> Client {
    let mut config = ClientConfig::default();
    config.hosts = HostsConfig::load(hosts).expect("hosts directory reads");
    config.retry.base_delay = std::time::Duration::from_millis(20);
    config.retry.max_attempts = 2;
    Client::new(config, Arc::new(credentials)).expect("client builds")
}

/// Pulls `reference` into a new store with `client`; checks the store.
pub(crate) async fn pull_and_verify(client: &Client, reference: &Reference) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    store
        .pull(client, reference, &PullOptions::default())
        .await
        .unwrap_or_else(|err| {
            panic!(
                "pull of {reference} fails: {}",
                cachectl_tests::error_chain(&err)
            )
        });
    let report = store.verify().expect("verifies");
    assert!(report.is_ok(), "nothing corrupt is stored: {report:?}");
    dir
}

/// Blob `GET`s the origin served, per blob.
fn origin_blob_gets(origin: &FaultProxy, blobs: &[Digest]) -> Vec<usize> {
    blobs
        .iter()
        .map(|digest| origin.count("GET", &format!("/blobs/{digest}")))
        .collect()
}

#[tokio::test]
async fn four_hosts_behind_one_pull_through_mirror_cost_the_origin_what_one_host_does() {
    let plain = registries().plain;
    let origin = FaultProxy::start(&plain, Vec::new());
    let (reference, blobs) = pushed_image(
        &plain,
        &origin.addr(),
        "mirrors/fleet",
        StaticCredentials::new(),
    )
    .await;
    let mirror = PullThrough::start(&origin.addr(), None);
    let hosts = hosts_dir(&origin.addr(), &mirror.url(), r#"["pull", "resolve"]"#);
    let mut stores = Vec::new();
    let mut served = Vec::new();
    for _ in 0..4 {
        let client = fleet_client(hosts.path(), StaticCredentials::new());
        stores.push(pull_and_verify(&client, &reference).await);
        assert_eq!(client.skipped_mirrors(), Vec::new());
        served.push(origin_blob_gets(&origin, &blobs));
    }
    let requests = origin.requests();
    eprintln!(
        "fleet figures: 4 hosts, {} blobs; origin blob GETs per blob after each host {served:?}; origin requests in all {}: manifest GETs {}, manifest HEADs {}, blob HEADs {}, GET /v2/ {}",
        blobs.len(),
        requests.len(),
        origin.count("GET", "/manifests/"),
        origin.count("HEAD", "/manifests/"),
        origin.count("HEAD", "/blobs/"),
        requests
            .iter()
            .filter(|r| r.path_and_query == "/v2/")
            .count(),
    );
    // The first host's pull makes the mirror fetch each blob (the CNCF
    // registry in proxy mode asks twice: once to store, once to stream);
    // the other three hosts cost the origin no blob at all.
    assert!(
        served[0].iter().all(|&n| (1..=2).contains(&n)),
        "{served:?}"
    );
    assert_eq!(served[3], served[0], "{served:?}");
    // The same four hosts without the mirror: each one costs the origin
    // every blob.
    let direct = FaultProxy::start(&plain, Vec::new());
    let direct_reference = crate::store::via(&direct.addr(), &reference);
    let no_hosts = tempfile::tempdir().expect("tempdir");
    for _ in 0..4 {
        let client = fleet_client(no_hosts.path(), StaticCredentials::new());
        stores.push(pull_and_verify(&client, &direct_reference).await);
    }
    let without = origin_blob_gets(&direct, &blobs);
    eprintln!(
        "fleet figures: the same 4 hosts without a mirror: origin blob GETs per blob {without:?}"
    );
    assert_eq!(without, vec![4; blobs.len()]);
    assert!(
        requests
            .iter()
            .all(|r| !r.path_and_query.contains("/blobs/")
                || r.header("user-agent")
                    .is_some_and(|ua| !ua.contains("ocidist"))),
        "every blob request at the origin came from the mirror"
    );
}

#[tokio::test]
async fn with_the_mirror_stopped_pulls_fall_back_to_the_origin() {
    let plain = registries().plain;
    let origin = FaultProxy::start(&plain, Vec::new());
    let (reference, blobs) = pushed_image(
        &plain,
        &origin.addr(),
        "mirrors/stopped",
        StaticCredentials::new(),
    )
    .await;
    let mut mirror = PullThrough::start(&origin.addr(), None);
    let hosts = hosts_dir(&origin.addr(), &mirror.url(), r#"["pull", "resolve"]"#);
    mirror.stop();
    let client = fleet_client(hosts.path(), StaticCredentials::new());
    pull_and_verify(&client, &reference).await;
    assert_eq!(origin_blob_gets(&origin, &blobs), vec![1; blobs.len()]);
    let skipped = client.skipped_mirrors();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0].mirror, format!("{}/", mirror.url()));
    assert_eq!(skipped[0].registry, origin.addr());
    // Skipped for the rest of the run: a second pull does not try it.
    pull_and_verify(&client, &reference).await;
    assert_eq!(client.skipped_mirrors().len(), 1);
}

/// A page a captive portal or a broken cache might send with status 200.
const PAGE: &[u8] = b"<!DOCTYPE html><html><body>Please log in</body></html>";

#[tokio::test]
async fn a_mirror_answering_html_is_skipped_and_the_origin_serves_the_pull() {
    let plain = registries().plain;
    let origin = FaultProxy::start(&plain, Vec::new());
    let (reference, blobs) = pushed_image(
        &plain,
        &origin.addr(),
        "mirrors/html",
        StaticCredentials::new(),
    )
    .await;
    let mirror = PullThrough::start(&origin.addr(), None);
    let page = Fault::Status {
        code: 200,
        headers: vec![("Content-Type".into(), "text/html; charset=utf-8".into())],
        body: PAGE.to_vec(),
    };
    let broken = FaultProxy::start(
        &mirror.addr(),
        vec![Rule::new(page).path_matches(|path| path.starts_with("/v2/") && path.len() > 4)],
    );
    let hosts = hosts_dir(&origin.addr(), &broken.url(), r#"["pull", "resolve"]"#);
    let client = fleet_client(hosts.path(), StaticCredentials::new());
    pull_and_verify(&client, &reference).await;
    let skipped = client.skipped_mirrors();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].reason.contains("text/html"), "{skipped:?}");
    assert_eq!(origin_blob_gets(&origin, &blobs), vec![1; blobs.len()]);
    assert!(
        broken.requests().len() <= 2,
        "one HEAD and one GET, then the mirror is skipped: {:#?}",
        broken.requests()
    );
}

#[tokio::test]
async fn a_mirror_serving_a_corrupt_layer_is_skipped_and_nothing_corrupt_is_stored() {
    let plain = registries().plain;
    let origin = FaultProxy::start(&plain, Vec::new());
    let (reference, blobs) = pushed_image(
        &plain,
        &origin.addr(),
        "mirrors/corrupt",
        StaticCredentials::new(),
    )
    .await;
    let mirror = PullThrough::start(&origin.addr(), None);
    let layer = blobs[1].to_string();
    let corrupt = FaultProxy::start(
        &mirror.addr(),
        vec![
            Rule::new(Fault::FlipByte(LAYER_BYTES as u64 / 2))
                .method("GET")
                .path_contains(&format!("/blobs/{layer}")),
        ],
    );
    let hosts = hosts_dir(&origin.addr(), &corrupt.url(), r#"["pull", "resolve"]"#);
    let client = fleet_client(hosts.path(), StaticCredentials::new());
    let store = pull_and_verify(&client, &reference).await;
    let skipped = client.skipped_mirrors();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].reason.contains("digest mismatch"), "{skipped:?}");
    // The layer came from the origin in the end: one GET of ours, besides
    // the mirror's own.
    let ours = origin
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path_and_query.contains(&format!("/blobs/{layer}")))
        .filter(|r| {
            r.header("user-agent")
                .is_some_and(|ua| ua.contains("ocidist"))
        })
        .count();
    assert_eq!(ours, 1);
    let stored = std::fs::read(
        store
            .path()
            .join("blobs")
            .join(blobs[1].algorithm())
            .join(blobs[1].encoded()),
    )
    .expect("the layer is stored");
    assert_eq!(Digest::sha256_of(&stored), blobs[1]);
}

#[tokio::test]
async fn origin_credentials_never_reach_the_mirror_and_tags_resolve_only_at_the_origin() {
    // The origin is the token-auth registry: the CNCF registry in proxy
    // mode logs in upstream through a Bearer realm only.
    let registries = registries();
    let login = || {
        Credential::basic(
            registries.token_user.clone(),
            registries.token_password.clone(),
        )
    };
    let origin = FaultProxy::start(&registries.token, Vec::new());
    let (reference, blobs) = pushed_image(
        &registries.token,
        &origin.addr(),
        "mirrors/credentials",
        StaticCredentials::new().with(&registries.token, login()),
    )
    .await;
    let mirror = PullThrough::start(
        &origin.addr(),
        Some((&registries.token_user, &registries.token_password)),
    );
    let watched = FaultProxy::start(&mirror.addr(), Vec::new());
    // Pull only: the tag is resolved at the origin (with its credentials),
    // the content comes from the mirror.
    let hosts = hosts_dir(&origin.addr(), &watched.url(), r#"["pull"]"#);
    let client = fleet_client(
        hosts.path(),
        StaticCredentials::new().with(&origin.addr(), login()),
    );
    pull_and_verify(&client, &reference).await;
    assert_eq!(client.skipped_mirrors(), Vec::new(), "{}", mirror.log());
    let seen = watched.requests();
    assert!(
        seen.iter().all(|r| !r.had_authorization),
        "no Authorization at the mirror: {seen:#?}"
    );
    for digest in &blobs {
        let path = format!("/blobs/{digest}?ns={}", origin.addr().replace(':', "%3A"));
        assert_eq!(watched.count("GET", &path), 1, "{seen:#?}");
    }
    assert!(
        seen.iter()
            .all(|r| !r.path_and_query.contains("/manifests/v1")),
        "the tag is never resolved at a pull-only mirror: {seen:#?}"
    );
    let ours = |r: &&cachectl_tests::fault_proxy::LoggedRequest| {
        r.header("user-agent")
            .is_some_and(|ua| ua.contains("ocidist"))
    };
    let at_origin = origin.requests();
    assert!(
        at_origin
            .iter()
            .filter(ours)
            .any(|r| r.had_authorization && r.path_and_query.contains("/manifests/v1")),
        "the tag was resolved at the origin, with its credentials: {at_origin:#?}"
    );
    assert!(
        !at_origin
            .iter()
            .filter(ours)
            .any(|r| r.path_and_query.contains("/blobs/")),
        "no blob came from the origin: {at_origin:#?}"
    );
}

#[tokio::test]
async fn a_mirror_that_drops_a_layer_midway_is_skipped_and_the_origin_sends_the_rest() {
    let plain = registries().plain;
    let origin = FaultProxy::start(&plain, Vec::new());
    let (reference, blobs) = pushed_image(
        &plain,
        &origin.addr(),
        "mirrors/reset",
        StaticCredentials::new(),
    )
    .await;
    let mirror = PullThrough::start(&origin.addr(), None);
    let layer = blobs[1].to_string();
    let dropping = FaultProxy::start(
        &mirror.addr(),
        vec![
            Rule::new(Fault::ResetAfter(64 * 1024))
                .method("GET")
                .path_contains(&format!("/blobs/{layer}")),
        ],
    );
    let hosts = hosts_dir(&origin.addr(), &dropping.url(), r#"["pull", "resolve"]"#);
    let client = fleet_client(hosts.path(), StaticCredentials::new());
    pull_and_verify(&client, &reference).await;
    let skipped = client.skipped_mirrors();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    // The origin was asked for the rest only, from where the mirror stopped.
    let ours: Vec<_> = origin
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path_and_query.contains(&format!("/blobs/{layer}")))
        .filter(|r| {
            r.header("user-agent")
                .is_some_and(|ua| ua.contains("ocidist"))
        })
        .collect();
    assert_eq!(ours.len(), 1, "{ours:#?}");
    let range = ours[0].range.clone().unwrap_or_default();
    let from: u64 = range
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap_or_else(|_| panic!("a Range from an offset, not {range:?}"));
    assert!(from > 0 && from <= 64 * 1024, "{range}");
}
