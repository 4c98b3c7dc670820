//! `ocidist` through the fault-injecting proxy in front of the real
//! registry: resets, truncation, flipped bytes, stalls, 429/503, servers that
//! ignore `Range`, redirects to another host, and malformed manifests.

use bytes::Bytes;
use cachectl_tests::fault_proxy::{Fault, FaultProxy, Rule};
use cachectl_tests::{registries, unique};
use ocidist::credentials::{Credential, StaticCredentials};
use ocidist::{BlobSource, Client, ClientConfig, Descriptor, Error, OCI_MANIFEST, RetryPolicy};
use ociref::{Digest, Reference};
use std::sync::Arc;
use std::time::Duration;

const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const BLOB_SIZE: usize = 2 * 1024 * 1024;

fn quick_config() -> ClientConfig {
    let mut config = ClientConfig::default();
    config.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(5),
    };
    config
}

fn client(config: ClientConfig) -> Client {
    Client::new(config, Arc::new(StaticCredentials::new())).expect("client builds")
}

fn describe(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest: Digest::sha256_of(bytes),
        size: bytes.len() as u64,
    }
}

/// An image pushed straight to `registry`: its repository, layer bytes,
/// layer descriptor, manifest bytes.
struct Pushed {
    repository: String,
    layer: Bytes,
    layer_descriptor: Descriptor,
    manifest: Bytes,
}

impl Pushed {
    fn at(&self, registry: &str, tag: &str) -> Reference {
        format!("{registry}/{}:{tag}", self.repository)
            .parse()
            .expect("valid")
    }
}

async fn push_image(registry: &str, name: &str) -> Pushed {
    let repository = unique(&format!("faults/{name}"));
    let target: Reference = format!("{registry}/{repository}:v1")
        .parse()
        .expect("valid");
    let layer: Bytes = (0..BLOB_SIZE)
        .map(|i| (i * 7 % 253) as u8)
        .collect::<Vec<u8>>()
        .into();
    let config = Bytes::from_static(br#"{"architecture":"amd64","os":"linux"}"#);
    let layer_descriptor = describe(LAYER, &layer);
    let config_descriptor = describe(CONFIG, &config);
    let pusher = client(ClientConfig::default());
    pusher
        .push_blob(&target, &layer_descriptor, BlobSource::Bytes(layer.clone()))
        .await
        .expect("layer pushed");
    pusher
        .push_blob(&target, &config_descriptor, BlobSource::Bytes(config))
        .await
        .expect("config pushed");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config_descriptor.digest.to_string(), "size": config_descriptor.size},
        "layers": [{"mediaType": LAYER, "digest": layer_descriptor.digest.to_string(), "size": layer_descriptor.size}],
    });
    let manifest = Bytes::from(serde_json::to_vec(&manifest).expect("json"));
    pusher
        .push_manifest(&target, manifest.clone(), OCI_MANIFEST)
        .await
        .expect("manifest pushed");
    Pushed {
        repository,
        layer,
        layer_descriptor,
        manifest,
    }
}

#[tokio::test]
async fn a_reset_mid_blob_resumes_with_range_and_still_verifies() {
    let registries = registries();
    let image = push_image(&registries.plain, "reset").await;
    let proxy = FaultProxy::start(
        &registries.plain,
        vec![
            Rule::new(Fault::ResetAfter(300_000))
                .path_contains("/blobs/sha256:")
                .method("GET")
                .first(1),
        ],
    );
    let target = image.at(&proxy.addr(), "v1");
    let mut stream = client(quick_config())
        .blob(&target, &image.layer_descriptor)
        .await
        .expect("starts");
    let mut received = Vec::new();
    while let Some(chunk) = stream.next_chunk().await.expect("resumes and verifies") {
        received.extend_from_slice(&chunk);
    }
    assert_eq!(received, image.layer);
    assert_eq!(stream.resumes(), 1);
    let gets: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    // A reset discards what the kernel had not delivered yet: the client
    // resumes from what it really received, somewhere up to the cut.
    let start: u64 = gets[1]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse().ok())
        .expect("second GET asks for a range");
    assert!(start > 0 && start <= 300_000, "resumed at {start}");
}

#[tokio::test]
async fn a_server_ignoring_range_has_the_held_bytes_skipped() {
    let registries = registries();
    let image = push_image(&registries.plain, "ignore-range").await;
    let proxy = FaultProxy::start(
        &registries.plain,
        vec![
            Rule::new(Fault::Truncate(500_000))
                .path_contains("/blobs/sha256:")
                .method("GET")
                .first(1),
            Rule::new(Fault::IgnoreRange)
                .path_contains("/blobs/sha256:")
                .method("GET"),
        ],
    );
    let target = image.at(&proxy.addr(), "v1");
    let bytes = client(quick_config())
        .blob_bytes(&target, &image.layer_descriptor, 1 << 30)
        .await
        .expect("whole body skipped to the resume point");
    assert_eq!(bytes, image.layer);
    let ranges: Vec<_> = proxy.requests().into_iter().map(|r| r.range).collect();
    assert_eq!(ranges, vec![None, Some("bytes=500000-".to_owned())]);
}

#[tokio::test]
async fn a_body_truncated_every_time_fails_after_bounded_resumes() {
    let registries = registries();
    let image = push_image(&registries.plain, "truncated").await;
    let proxy = FaultProxy::start(
        &registries.plain,
        vec![
            Rule::new(Fault::Truncate(1000))
                .path_contains("/blobs/sha256:")
                .method("GET"),
        ],
    );
    let mut config = quick_config();
    config.max_resumes = 2;
    config.retry.max_attempts = 1;
    let target = image.at(&proxy.addr(), "v1");
    let err = client(config)
        .blob_bytes(&target, &image.layer_descriptor, 1 << 30)
        .await
        .expect_err("never completes");
    assert!(
        matches!(err, Error::SizeMismatch { .. } | Error::Network { .. }),
        "{err:?}"
    );
    // The first GET, then one per resume; the truncation at 1000 bytes of
    // each resumed answer still moves the download forward.
    assert_eq!(proxy.count("GET", "/blobs/"), 3);
}

#[tokio::test]
async fn a_flipped_byte_is_a_digest_mismatch_and_nothing_is_valid() {
    let registries = registries();
    let image = push_image(&registries.plain, "flip").await;
    let proxy = FaultProxy::start(
        &registries.plain,
        vec![
            Rule::new(Fault::FlipByte(12_345))
                .path_contains("/blobs/sha256:")
                .method("GET"),
        ],
    );
    let target = image.at(&proxy.addr(), "v1");
    let err = client(quick_config())
        .blob_bytes(&target, &image.layer_descriptor, 1 << 30)
        .await
        .expect_err("corrupt");
    let Error::DigestMismatch {
        expected,
        actual,
        what,
    } = &err
    else {
        panic!("expected DigestMismatch, got {err:?}");
    };
    assert_eq!(expected, &image.layer_descriptor.digest);
    let mut corrupt = image.layer.to_vec();
    corrupt[12_345] ^= 0xff;
    assert_eq!(actual, &Digest::sha256_of(&corrupt));
    assert!(what.contains(&image.repository), "{what}");
}

#[tokio::test]
async fn a_stalled_body_is_resumed_after_the_stall_timeout() {
    let registries = registries();
    let image = push_image(&registries.plain, "stall").await;
    let proxy = FaultProxy::start(
        &registries.plain,
        vec![
            Rule::new(Fault::Stall {
                after_bytes: 100_000,
                duration: Duration::from_secs(3),
            })
            .path_contains("/blobs/sha256:")
            .method("GET")
            .first(1),
        ],
    );
    let mut config = quick_config();
    config.stall_timeout = Duration::from_millis(500);
    let target = image.at(&proxy.addr(), "v1");
    let started = std::time::Instant::now();
    let bytes = client(config)
        .blob_bytes(&target, &image.layer_descriptor, 1 << 30)
        .await
        .expect("resumed");
    assert_eq!(bytes, image.layer);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "did not wait out the stall"
    );
    assert_eq!(proxy.requests()[1].range.as_deref(), Some("bytes=100000-"));
}

#[tokio::test]
async fn retry_after_429_and_503_then_success() {
    let registries = registries();
    let image = push_image(&registries.plain, "busy").await;
    let proxy = FaultProxy::start(
        &registries.plain,
        vec![
            Rule::new(Fault::Status {
                code: 429,
                headers: vec![("Retry-After".into(), "1".into())],
                body: vec![],
            })
            .path_contains("/manifests/")
            .method("HEAD")
            .first(1),
            // Rules count every request they match: the 2nd is the 503.
            Rule::new(Fault::status(503, &[]))
                .path_contains("/manifests/")
                .method("HEAD")
                .nth(2),
        ],
    );
    let target = image.at(&proxy.addr(), "v1");
    let started = std::time::Instant::now();
    let resolved = client(quick_config())
        .resolve(&target)
        .await
        .expect("eventually resolves");
    assert_eq!(resolved.digest, Digest::sha256_of(&image.manifest));
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After was not honoured"
    );
    // One 429, one 503, then the answer.
    assert_eq!(proxy.count("HEAD", "/manifests/"), 3);
}

#[tokio::test]
async fn a_retry_after_date_is_honoured_and_a_long_one_fails_fast() {
    let registries = registries();
    let image = push_image(&registries.plain, "ratelimit").await;
    let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2));
    let proxy = FaultProxy::start(
        &registries.plain,
        vec![
            Rule::new(Fault::Status {
                code: 429,
                headers: vec![("Retry-After".into(), later)],
                body: vec![],
            })
            .path_contains("/manifests/v1")
            .first(1),
            Rule::new(Fault::Status {
                code: 429,
                headers: vec![
                    ("Retry-After".into(), "3600".into()),
                    ("RateLimit-Remaining".into(), "0;w=21600".into()),
                ],
                body: vec![],
            })
            .path_contains("/manifests/v2"),
        ],
    );
    let client = client(quick_config());
    client
        .resolve(&image.at(&proxy.addr(), "v1"))
        .await
        .expect("waits for the date, then resolves");
    let started = std::time::Instant::now();
    let err = client
        .resolve(&image.at(&proxy.addr(), "v2"))
        .await
        .expect_err("an hour is longer than we wait");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "did not fail fast"
    );
    assert!(matches!(err, Error::RateLimited { .. }), "{err:?}");
    assert!(
        err.to_string().contains("ratelimit-remaining: 0;w=21600"),
        "{err}"
    );
    assert_eq!(proxy.count("HEAD", "/manifests/v2"), 1);
}

#[tokio::test]
async fn other_4xx_are_not_retried() {
    let registries = registries();
    let image = push_image(&registries.plain, "no-retry").await;
    let proxy = FaultProxy::start(
        &registries.plain,
        vec![
            Rule::new(Fault::Status {
                code: 400,
                headers: vec![],
                body: vec![],
            })
            .path_contains("/manifests/")
            .method("GET"),
        ],
    );
    let err = client(quick_config())
        .manifest(&image.at(&proxy.addr(), "v1"))
        .await
        .expect_err("400");
    assert!(matches!(err, Error::Status { status: 400, .. }), "{err:?}");
    assert_eq!(proxy.count("GET", "/manifests/"), 1);
}

#[tokio::test]
async fn resolve_falls_back_to_get_when_head_is_refused() {
    let registries = registries();
    let image = push_image(&registries.plain, "no-head").await;
    let proxy = FaultProxy::start(
        &registries.plain,
        vec![
            Rule::new(Fault::Status {
                code: 405,
                headers: vec![],
                body: vec![],
            })
            .path_contains("/manifests/")
            .method("HEAD"),
        ],
    );
    let resolved = client(quick_config())
        .resolve(&image.at(&proxy.addr(), "v1"))
        .await
        .expect("GET fallback");
    assert_eq!(resolved.digest, Digest::sha256_of(&image.manifest));
    assert_eq!(proxy.count("GET", "/manifests/"), 1);
}

#[tokio::test]
async fn a_warm_resolve_is_exactly_one_head_request() {
    let registries = registries();
    let image = push_image(&registries.plain, "one-request").await;
    let proxy = FaultProxy::start(&registries.plain, vec![]);
    client(quick_config())
        .resolve(&image.at(&proxy.addr(), "v1"))
        .await
        .expect("resolves");
    let requests = proxy.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].method, "HEAD");
}

#[tokio::test]
async fn malformed_manifests_are_distinct_errors() {
    let registries = registries();
    let image = push_image(&registries.plain, "malformed").await;
    let serve = |path: &str, content_type: &str, body: &[u8]| {
        Rule::new(Fault::Status {
            code: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.to_vec(),
        })
        .path_contains(path)
    };
    let good = String::from_utf8(image.manifest.to_vec()).expect("utf-8");
    let other_digest = Digest::sha256_of(b"something else");
    let proxy = FaultProxy::start(
        &registries.plain,
        vec![
            serve("/manifests/json", OCI_MANIFEST, b"{not json"),
            serve(
                "/manifests/version",
                OCI_MANIFEST,
                good.replace("\"schemaVersion\":2", "\"schemaVersion\":3")
                    .as_bytes(),
            ),
            serve(
                "/manifests/mismatch",
                ocidist::DOCKER_MANIFEST,
                good.as_bytes(),
            ),
            serve(
                &format!("/manifests/{other_digest}"),
                OCI_MANIFEST,
                good.as_bytes(),
            ),
            serve(
                "/manifests/schema1",
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
                br#"{"schemaVersion":1}"#,
            ),
        ],
    );
    let client = client(quick_config());
    let at = |tag: &str| image.at(&proxy.addr(), tag);
    let err = client
        .manifest(&at("json"))
        .await
        .expect_err("invalid JSON");
    assert!(matches!(err, Error::InvalidManifest { .. }), "{err:?}");
    let err = client
        .manifest(&at("version"))
        .await
        .expect_err("schemaVersion 3");
    assert!(
        matches!(
            err,
            Error::UnsupportedSchemaVersion {
                version: Some(3),
                ..
            }
        ),
        "{err:?}"
    );
    let err = client
        .manifest(&at("mismatch"))
        .await
        .expect_err("header vs body");
    assert!(matches!(err, Error::MediaTypeMismatch { .. }), "{err:?}");
    let err = client
        .manifest(&at("v1").by_digest_only(other_digest.clone()))
        .await
        .expect_err("wrong digest");
    let Error::DigestMismatch {
        expected, actual, ..
    } = &err
    else {
        panic!("expected DigestMismatch, got {err:?}");
    };
    assert_eq!(expected, &other_digest);
    assert_eq!(actual, &Digest::sha256_of(&image.manifest));
    let err = client.manifest(&at("schema1")).await.expect_err("schema 1");
    assert!(matches!(err, Error::UnsupportedMediaType { .. }), "{err:?}");
}

#[tokio::test]
async fn a_redirect_to_another_host_carries_no_authorization() {
    let registries = registries();
    // The blob lives in both registries; the Basic-auth one redirects blob
    // downloads to "object storage" (a second proxy in front of the
    // anonymous one), as Hub and S3-backed registries do.
    let repository = unique("faults/redirect");
    let layer = Bytes::from_static(b"redirected layer bytes");
    let descriptor = describe(LAYER, &layer);
    let storage = FaultProxy::start(&registries.plain, vec![]);
    let storage_base = format!("http://{}", storage.addr());
    let front = FaultProxy::start(
        &registries.basic,
        vec![
            Rule::new(Fault::RedirectTo(storage_base))
                .path_contains("/blobs/sha256:")
                .method("GET"),
        ],
    );
    let anonymous = client(ClientConfig::default());
    let plain_target: Reference = format!("{}/{repository}:v1", registries.plain)
        .parse()
        .expect("valid");
    anonymous
        .push_blob(&plain_target, &descriptor, BlobSource::Bytes(layer.clone()))
        .await
        .expect("pushed to storage");
    let credentials = StaticCredentials::new().with(
        &front.addr(),
        Credential::basic(
            registries.basic_user.clone(),
            registries.basic_password.clone(),
        ),
    );
    let authorized = Client::new(quick_config(), Arc::new(credentials)).expect("client");
    let target: Reference = format!("{}/{repository}:v1", front.addr())
        .parse()
        .expect("valid");
    // A first request meets the Basic challenge; later ones carry the
    // credentials from the start, as the blob GET below does.
    assert_eq!(
        authorized
            .blob_exists(&target, &descriptor.digest)
            .await
            .expect("HEAD"),
        None
    );
    let bytes = authorized
        .blob_bytes(&target, &descriptor, 1024)
        .await
        .expect("followed the redirect");
    assert_eq!(bytes, layer);
    let blob_get = front
        .requests()
        .into_iter()
        .find(|r| r.method == "GET")
        .expect("the blob GET reached the registry");
    assert!(
        blob_get.had_authorization,
        "the registry itself got credentials"
    );
    let at_storage = storage.requests();
    assert!(!at_storage.is_empty(), "the redirect was followed");
    assert!(
        at_storage.iter().all(|r| !r.had_authorization),
        "Authorization was forwarded to another host: {at_storage:?}"
    );
}

#[tokio::test]
async fn a_400_to_a_cached_token_renews_it_once() {
    // ECR Public answers 400 to an expired token.
    let registries = registries();
    let credentials = || {
        Arc::new(StaticCredentials::new().with(
            &registries.token,
            Credential::basic(
                registries.token_user.clone(),
                registries.token_password.clone(),
            ),
        ))
    };
    let repository = unique("faults/expired");
    let direct: Reference = format!("{}/{repository}:v1", registries.token)
        .parse()
        .expect("valid");
    let layer = Bytes::from_static(b"layer behind a token");
    let descriptor = describe(LAYER, &layer);
    let pusher = Client::new(quick_config(), credentials()).expect("client");
    pusher
        .push_blob(&direct, &descriptor, BlobSource::Bytes(layer.clone()))
        .await
        .expect("pushed");
    let proxy = FaultProxy::start(
        &registries.token,
        vec![
            Rule::new(Fault::status(400, &[]))
                .path_contains("/blobs/sha256:")
                .method("GET")
                .first(1),
        ],
    );
    let through: Reference = format!("{}/{repository}:v1", proxy.addr())
        .parse()
        .expect("valid");
    let client = Client::new(
        quick_config(),
        Arc::new(StaticCredentials::new().with(
            &proxy.addr(),
            Credential::basic(
                registries.token_user.clone(),
                registries.token_password.clone(),
            ),
        )),
    )
    .expect("client");
    // The HEAD gets the token; the GET with it meets the injected 400.
    assert!(
        client
            .blob_exists(&through, &descriptor.digest)
            .await
            .expect("HEAD")
            .is_some()
    );
    let bytes = client
        .blob_bytes(&through, &descriptor, 1024)
        .await
        .expect("renewed and fetched");
    assert_eq!(bytes, layer);
    let gets: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert!(gets.len() >= 2, "{gets:?}");
    assert!(
        gets[0].had_authorization,
        "the first GET carried the cached token"
    );
}

#[tokio::test]
async fn a_body_longer_than_its_descriptor_is_refused_unread() {
    let registries = registries();
    let image = push_image(&registries.plain, "too-long").await;
    // A descriptor that understates the size: the registry's 200 announces
    // more bytes than that, and the client refuses before reading them.
    let mut short = image.layer_descriptor.clone();
    short.size -= 1;
    let proxy = FaultProxy::start(&registries.plain, vec![]);
    let err = client(quick_config())
        .blob_bytes(&image.at(&proxy.addr(), "v1"), &short, 1 << 30)
        .await
        .expect_err("longer than described");
    assert!(
        matches!(err, Error::SizeMismatch { expected, actual, .. } if expected == short.size && actual == image.layer_descriptor.size),
        "{err:?}"
    );
}

#[tokio::test]
async fn blob_from_resumes_a_download_held_elsewhere() {
    let registries = registries();
    let image = push_image(&registries.plain, "blob-from").await;
    let half = image.layer.len() / 2;
    for ignore_range in [false, true] {
        let rules = if ignore_range {
            vec![Rule::new(Fault::IgnoreRange)]
        } else {
            vec![]
        };
        let proxy = FaultProxy::start(&registries.plain, rules);
        // The first half is "on disk" already: fed to the verifier.
        let mut verifier =
            ociref::DigestVerifier::new(image.layer_descriptor.digest.clone()).expect("sha256");
        verifier.update(&image.layer[..half]);
        let mut stream = client(quick_config())
            .blob_from(
                &image.at(&proxy.addr(), "v1"),
                &image.layer_descriptor,
                verifier,
            )
            .await
            .expect("resumes");
        let mut rest = Vec::new();
        while let Some(chunk) = stream.next_chunk().await.expect("verifies") {
            rest.extend_from_slice(&chunk);
        }
        assert_eq!(rest, &image.layer[half..], "ignore_range={ignore_range}");
        let requests = proxy.requests();
        assert_eq!(requests.len(), 1, "{requests:?}");
        assert_eq!(
            requests[0].range.as_deref(),
            Some(format!("bytes={half}-").as_str())
        );
    }
}
