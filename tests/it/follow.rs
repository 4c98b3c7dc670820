//! Reading a layer while its pull downloads it (`Store::follow_blob`):
//! the reader gets the blob's bytes before the pull ends, ends exactly
//! when the verified blob is stored, and fails, never ends cleanly, when
//! the download does not verify or the pull stops without the blob.

use crate::store::{client, noise, push_image, via};
use cachectl_tests::fault_proxy::{Fault, FaultProxy, Rule};
use cachectl_tests::{registries, unique};
use ocidist::{Client, ClientConfig, Descriptor, RetryPolicy};
use ociref::{Digest, Reference};
use ocistore::{PullOptions, Store};
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Layer size: several of the store's 256 KiB write buffers, so bytes
/// reach the partial file long before the download ends.
const LAYER: usize = 3 << 20;
/// Bytes sent before the proxy pauses the layer's body.
const BEFORE_STALL: u64 = 1 << 20;

/// A new repository holding one image with one noise layer; its
/// reference and the layer's descriptor.
async fn one_layer_image(seed: u64) -> (Reference, Descriptor) {
    let target: Reference = format!(
        "{}/follow/{}:v1",
        registries().plain,
        unique(&format!("img{seed}"))
    )
    .parse()
    .expect("reference");
    let layer = noise(seed, LAYER);
    push_image(&client(), &target, "follow", std::slice::from_ref(&layer)).await;
    let descriptor = Descriptor {
        media_type: ocidist::media_types::OCI_LAYER_TAR.to_owned(),
        digest: Digest::sha256_of(&layer),
        size: layer.len() as u64,
    };
    (target, descriptor)
}

/// Pulls `reference` in the background; `ended` is set when it returns.
fn pull_in_background(
    store: &Store,
    client: Client,
    reference: Reference,
    ended: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(ocistore::Result<ocistore::PullOutcome>, Instant)> {
    let store = store.clone();
    tokio::spawn(async move {
        let pulled = store
            .pull(&client, &reference, &PullOptions::default())
            .await;
        ended.store(true, Ordering::Release);
        (pulled, Instant::now())
    })
}

/// Reads `descriptor` through [`Store::follow_blob`] on a thread; the
/// bytes (or the error) and when the first byte came.
fn follow(
    store: &Store,
    descriptor: &Descriptor,
    ended: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<(std::io::Result<Vec<u8>>, Option<Instant>)> {
    let mut reader = store.follow_blob(descriptor, Arc::clone(ended));
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut first = None;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buffer) {
                Ok(0) => return (Ok(bytes), first),
                Ok(n) => {
                    first.get_or_insert_with(Instant::now);
                    bytes.extend_from_slice(&buffer[..n]);
                }
                Err(err) => return (Err(err), first),
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_layer_read_while_it_downloads_is_the_verified_blob_and_starts_early() {
    let (reference, layer) = one_layer_image(71).await;
    let proxy = FaultProxy::start(
        &registries().plain,
        vec![
            Rule::new(Fault::Stall {
                after_bytes: BEFORE_STALL,
                duration: Duration::from_millis(1500),
            })
            .path_contains(&layer.digest.to_string())
            .method("GET"),
        ],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let ended = Arc::new(AtomicBool::new(false));
    let reader = follow(&store, &layer, &ended);
    let pull = pull_in_background(
        &store,
        client(),
        via(&proxy.addr(), &reference),
        Arc::clone(&ended),
    );
    let (pulled, pull_ended) = pull.await.expect("pull task");
    pulled.expect("pull");
    let (read, first_byte) = reader.join().expect("reader thread");
    let read = read.expect("the follower reads to the end");
    assert_eq!(read.len(), LAYER);
    assert_eq!(Digest::sha256_of(&read), layer.digest, "the verified bytes");
    let first_byte = first_byte.expect("bytes came");
    assert!(
        first_byte + Duration::from_millis(1000) < pull_ended,
        "the first bytes came {:?} before the pull ended: it did not overlap",
        pull_ended.saturating_duration_since(first_byte)
    );

    // A stored blob reads as it is, even with the pull long over.
    let mut again = Vec::new();
    store
        .follow_blob(&layer, Arc::new(AtomicBool::new(true)))
        .read_to_end(&mut again)
        .expect("stored");
    assert_eq!(again, read);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_that_does_not_verify_or_stops_is_an_error_for_the_reader() {
    let (reference, layer) = one_layer_image(72).await;
    // Every GET of the layer has one byte flipped: it never verifies.
    let lying = FaultProxy::start(
        &registries().plain,
        vec![
            Rule::new(Fault::FlipByte(BEFORE_STALL + 17))
                .path_contains(&layer.digest.to_string())
                .method("GET"),
        ],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let ended = Arc::new(AtomicBool::new(false));
    let reader = follow(&store, &layer, &ended);
    let (pulled, _) = pull_in_background(
        &store,
        client(),
        via(&lying.addr(), &reference),
        Arc::clone(&ended),
    )
    .await
    .expect("pull task");
    assert!(
        pulled.is_err(),
        "the lying registry's layer is refused: {pulled:?}"
    );
    let (read, _) = reader.join().expect("reader thread");
    let err = read.expect_err("the reader must not end cleanly on unverified bytes");
    assert!(
        err.to_string().contains(&layer.digest.to_string()),
        "the error names the blob: {err}"
    );

    // A pull that stops mid-blob (cut off, then the blob is gone): the
    // reader fails once told the pull ended.
    let cut = FaultProxy::start(
        &registries().plain,
        vec![
            Rule::new(Fault::Truncate(BEFORE_STALL))
                .path_contains(&layer.digest.to_string())
                .method("GET")
                .first(1),
            Rule::new(Fault::status(404, &[]))
                .path_contains(&layer.digest.to_string())
                .method("GET"),
        ],
    );
    let mut config = ClientConfig::default();
    config.retry = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    let impatient = Client::new(
        config,
        Arc::new(ocidist::credentials::StaticCredentials::new()),
    )
    .expect("client");
    let ended = Arc::new(AtomicBool::new(false));
    let reader = follow(&store, &layer, &ended);
    let (pulled, _) = pull_in_background(
        &store,
        impatient,
        via(&cut.addr(), &reference),
        Arc::clone(&ended),
    )
    .await
    .expect("pull task");
    assert!(
        pulled.is_err(),
        "a truncated body fails the pull: {:?}",
        cut.requests()
    );
    let (read, _) = reader.join().expect("reader thread");
    let err = read.expect_err("no clean end without the stored blob");
    assert!(err.to_string().contains("not stored"), "{err}");
}
