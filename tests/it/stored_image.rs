//! The store's image handle and the pulls callers build on: an image
//! resolved once (`Store::image`), pulled only when absent
//! (`Store::ensure_image`), several references at once
//! (`Store::pull_many`), and a cached tag served when its registry is down
//! (`PullOptions::stale_fallback`), all through the library alone.

use crate::store::{client, fixture, via};
use cachectl_tests::fault_proxy::FaultProxy;
use cachectl_tests::registries;
use ocidist::{Client, ClientConfig, RetryPolicy};
use ociref::{ErrorKind, Platform, Reference};
use ocistore::{Error, PullOptions, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn platform(text: &str) -> Platform {
    text.parse().expect("platform parses")
}

/// A client that gives up on an unreachable registry after one retry.
fn impatient_client() -> Client {
    let mut config = ClientConfig::default();
    config.retry = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(10),
        ..RetryPolicy::default()
    };
    Client::new(
        config,
        Arc::new(ocidist::credentials::StaticCredentials::new()),
    )
    .expect("client builds")
}

/// `ensure_image` through `client`, counting the calls of `on_pull`.
async fn ensure(
    store: &Store,
    client: &Client,
    reference: &Reference,
    options: &PullOptions,
    pulls: &Arc<AtomicUsize>,
) -> ocistore::Result<ocistore::StoredImage> {
    let pulls = Arc::clone(pulls);
    store
        .ensure_image(client, reference, options, move || {
            pulls.fetch_add(1, Ordering::SeqCst);
        })
        .await
}

#[tokio::test]
async fn ensure_image_pulls_an_absent_image_once_and_a_stored_one_costs_no_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let proxy = FaultProxy::start(&registries().plain, vec![]);
    let reference = via(&proxy.addr(), &fixture("multiarch"));
    let arm = PullOptions::for_platform(platform("linux/arm64"));
    let pulls = Arc::new(AtomicUsize::new(0));

    let mut offline = arm.clone();
    offline.offline = true;
    match ensure(&store, &client(), &reference, &offline, &pulls).await {
        Err(Error::ImageNotCached { reference: named }) => {
            assert!(named.contains("multiarch"), "{named}")
        }
        other => panic!("an offline ensure of an absent image must fail: {other:?}"),
    }
    assert_eq!(pulls.load(Ordering::SeqCst), 0, "offline never pulls");
    assert!(proxy.requests().is_empty(), "offline makes no request");

    let image = ensure(&store, &client(), &reference, &arm, &pulls)
        .await
        .expect("pulled, then resolved");
    assert_eq!(pulls.load(Ordering::SeqCst), 1, "told once before pulling");
    assert_eq!(image.platform(), Some(platform("linux/arm64/v8")));
    assert_eq!(image.reference(), &reference);
    assert!(!image.layers().is_empty());
    assert_eq!(image.config().architecture.as_deref(), Some("arm64"));
    let requests = proxy.requests().len();
    assert!(requests > 0, "the pull went through the proxy");
    drop(image);

    let again = ensure(&store, &client(), &reference, &arm, &pulls)
        .await
        .expect("resolved from the store");
    assert_eq!(pulls.load(Ordering::SeqCst), 1, "no second pull");
    assert_eq!(
        proxy.requests().len(),
        requests,
        "no request for a stored image"
    );
    assert_eq!(again.platform(), Some(platform("linux/arm64/v8")));
}

#[tokio::test]
async fn image_names_a_platform_not_stored_and_a_missing_layer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let reference = fixture("multiarch");
    store
        .pull(
            &client(),
            &reference,
            &PullOptions::for_platform(platform("linux/amd64")),
        )
        .await
        .expect("pull");
    let image = store.image(&reference, None).expect("the only platform");
    assert_eq!(image.platform(), Some(platform("linux/amd64")));
    let layer = image.layers()[0].descriptor.digest.clone();
    drop(image);

    let err = store
        .image(&reference, Some(&platform("linux/s390x")))
        .expect_err("s390x is not stored");
    assert!(
        matches!(&err, Error::ImageNotCached { reference } if reference.ends_with("(linux/s390x)")),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::NotCached);

    std::fs::remove_file(store.blob_path(&layer)).expect("layer removed");
    let err = store
        .image(&reference, None)
        .expect_err("a layer is missing");
    assert!(
        matches!(&err, Error::LayerMissing { layer: missing, .. } if *missing == layer),
        "{err:?}"
    );
    assert!(err.to_string().contains(&layer.to_string()), "{err}");
    assert_eq!(err.kind(), ErrorKind::Integrity);
}

#[tokio::test]
async fn pull_many_answers_in_order_and_a_failure_stays_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let missing: Reference = format!("{}/nothing/here:v1", registries().plain)
        .parse()
        .expect("reference");
    let references = [fixture("layered"), missing.clone(), fixture("small")];
    let outcomes = store
        .pull_many(&client(), &references, &PullOptions::default())
        .await;
    assert_eq!(outcomes.len(), 3);
    for (position, reference) in [(0, &references[0]), (2, &references[2])] {
        let outcome = outcomes[position].as_ref().expect("pulled");
        assert_eq!(outcome.reference, reference.to_string());
        assert!(store.image(reference, None).is_ok(), "{reference} stored");
    }
    let err = outcomes[1].as_ref().expect_err("no such repository");
    assert!(
        matches!(err, Error::Dist(ocidist::Error::NotFound { .. })),
        "{err:?}"
    );
    assert!(store.image(&missing, None).is_err());
}

#[tokio::test]
async fn a_cached_tag_is_served_stale_only_when_asked_and_only_when_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let proxy = FaultProxy::start(&registries().plain, vec![]);
    let reference = via(&proxy.addr(), &fixture("small"));
    let other = via(&proxy.addr(), &fixture("layered"));
    let pulled = store
        .pull(&client(), &reference, &PullOptions::default())
        .await
        .expect("pull");
    assert!(pulled.stale.is_none());
    drop(proxy);

    let client = impatient_client();
    let err = store
        .pull(&client, &reference, &PullOptions::default())
        .await
        .expect_err("the registry is down and no fallback was asked for");
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");

    let fallback = PullOptions::default().with_stale_fallback();
    let stale = store
        .pull(&client, &reference, &fallback)
        .await
        .expect("served from the store");
    assert_eq!(stale.manifest_digest, pulled.manifest_digest);
    let why = stale.stale.expect("marked stale");
    assert!(!why.reason.is_empty());
    let confirmed = why.confirmed_at.expect("the record says when");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    assert!(confirmed <= now && now - confirmed < 600_000, "{confirmed}");

    let err = store
        .pull(&client, &other, &fallback)
        .await
        .expect_err("nothing cached to fall back on");
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");
}
