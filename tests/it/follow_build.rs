//! A build started while its pull downloads the layers
//! (`Store::pull_following`): the image is handed out once its manifest
//! and config are stored, the build reads the layer as it arrives (long
//! before the pull ends), and the image is the one a build of the stored
//! image gives; a download that does not verify fails the pull and leaves
//! no image in the cache.

use crate::rootfs_support::{e2fsck_passes, rootless_build_options};
use crate::store::{client, noise, push_image, via};
use cachectl_tests::fault_proxy::{Fault, FaultProxy, Rule};
use cachectl_tests::{registries, unique};
use ociref::{Digest, Reference};
use ocistore::{PullOptions, Store};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The layer's one file: several of the store's write buffers.
const FILE: usize = 3 << 20;
/// Bytes sent before the proxy pauses the layer's body.
const BEFORE_STALL: u64 = 1 << 20;
/// How long it pauses.
const STALL: Duration = Duration::from_millis(1500);

/// A new repository holding one image whose one layer (an uncompressed
/// tar) holds a directory and a file of noise; its reference and the
/// layer's digest.
async fn one_layer_image(seed: u64) -> (Reference, Digest) {
    let target: Reference = format!(
        "{}/follow-build/{}:v1",
        registries().plain,
        unique(&format!("img{seed}"))
    )
    .parse()
    .expect("reference");
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    builder
        .append_data(&mut header, "data/", std::io::empty())
        .expect("dir");
    let content = noise(seed, FILE);
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_size(content.len() as u64);
    builder
        .append_data(&mut header, "data/noise", &content[..])
        .expect("file");
    let layer = bytes::Bytes::from(builder.into_inner().expect("tar"));
    push_image(
        &client(),
        &target,
        "follow-build",
        std::slice::from_ref(&layer),
    )
    .await;
    (target, Digest::sha256_of(&layer))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_build_reads_the_layer_while_it_downloads_and_gives_the_stored_image_build() {
    let (reference, layer) = one_layer_image(81).await;
    let proxy = FaultProxy::start(
        &registries().plain,
        vec![
            Rule::new(Fault::Stall {
                after_bytes: BEFORE_STALL,
                duration: STALL,
            })
            .path_contains(&layer.to_string())
            .method("GET"),
        ],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let through = via(&proxy.addr(), &reference);
    let mut announced = false;
    let following = store
        .pull_following(&client(), &through, &PullOptions::default(), || {
            announced = true
        })
        .await
        .expect("pull starts");
    assert!(
        announced && following.pulled(),
        "nothing was stored: it pulls"
    );
    assert!(
        !store.blob_path(&layer).exists(),
        "the image is handed out before its layer is stored"
    );
    // When the build first read layer bytes.
    let first_read: Arc<Mutex<Option<Instant>>> = Arc::default();
    let mut options = rootless_build_options();
    let noted = first_read.clone();
    options.unpack.progress = Some(rootfs::ProgressFn::new(
        move |progress: &rootfs::Progress| {
            if matches!(progress.subject, rootfs::Subject::Layer(_)) && progress.done > 0 {
                noted.lock().expect("lock").get_or_insert_with(Instant::now);
            }
        },
    ));
    let built = tokio::task::block_in_place(|| rootfs::build(following.image(), &options))
        .expect("built while the layer downloaded");
    let outcome = following.finish().await.expect("pull");
    let pull_ended = Instant::now();
    assert_eq!(
        outcome.expect("it pulled").manifest_digest,
        built.manifest_digest
    );
    let first_read = first_read
        .lock()
        .expect("lock")
        .expect("layer bytes were read");
    assert!(
        first_read + STALL - Duration::from_millis(500) < pull_ended,
        "the build read the layer {:?} before the pull ended: it did not overlap",
        pull_ended.saturating_duration_since(first_read)
    );
    e2fsck_passes(&built.path);
    assert!(!built.cached);
    // The stored image builds to the very same cached file.
    let stored = store.image(&through, None).expect("stored whole");
    let again = rootfs::build(&stored, &rootless_build_options()).expect("build");
    assert!(
        again.cached,
        "the build made while following is the cached one"
    );
    assert_eq!(again.path, built.path);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_layer_that_does_not_verify_fails_the_pull_and_keeps_no_image() {
    let (reference, layer) = one_layer_image(82).await;
    let lying = FaultProxy::start(
        &registries().plain,
        vec![
            Rule::new(Fault::FlipByte(BEFORE_STALL + 17))
                .path_contains(&layer.to_string())
                .method("GET"),
        ],
    );
    // In front of it, a pause before the flipped byte: the image is
    // handed out (manifest and config stored) while the layer is read.
    let slow = FaultProxy::start(
        &lying.addr(),
        vec![
            Rule::new(Fault::Stall {
                after_bytes: BEFORE_STALL,
                duration: STALL,
            })
            .path_contains(&layer.to_string())
            .method("GET"),
        ],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let through = via(&slow.addr(), &reference);
    let following = store
        .pull_following(&client(), &through, &PullOptions::default(), || {})
        .await
        .expect("the manifest and config are fine");
    let built =
        tokio::task::block_in_place(|| rootfs::build(following.image(), &rootless_build_options()));
    assert!(
        built.is_err(),
        "built from bytes that never verified: {built:?}"
    );
    let err = following.finish().await.expect_err("the pull fails");
    assert_eq!(err.kind(), ocistore::ErrorKind::Integrity, "{err}");
    let images = dir.path().join(".cachectl/ext4");
    let kept: Vec<_> = std::fs::read_dir(&images)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".ext4"))
                .collect()
        })
        .unwrap_or_default();
    assert!(kept.is_empty(), "no image kept: {kept:?}");
}
