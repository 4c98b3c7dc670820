//! Files the store did not create, planted at every path it writes:
//! symbolic links (to a canary file and to a directory outside the store),
//! hard links to the canary, and FIFOs. For each plant the operation that
//! writes there runs (cold pull, warm pull, remove + gc, verify, inspect,
//! import); afterwards nothing outside the store has changed (bytes,
//! mtimes, no new entry), and the operation either succeeded (the store
//! then verifies) or failed naming the planted path.

use crate::plants::{DIR_PLANTS, FILE_PLANTS, HANG, Outside, Plant, plant};
use crate::store::{client, noise, push_image};
use cachectl_tests::{registries, unique};
use ociref::{Digest, Reference};
use ocistore::{ExportFormat, ImportOptions, PullOptions, Store};
use std::path::Path;
use std::time::Duration;

/// A small image pushed once per test: its reference, its layer, its
/// manifest digest.
struct Image {
    reference: Reference,
    layer: Digest,
    manifest: Digest,
}

async fn image(name: &str) -> Image {
    let client = client();
    let reference: Reference = format!("{}/{}:v1", registries().plain, unique(name))
        .parse()
        .expect("valid");
    let layer = noise(77, 300_000);
    let manifest = push_image(&client, &reference, name, std::slice::from_ref(&layer)).await;
    Image {
        reference,
        layer: Digest::sha256_of(&layer),
        manifest,
    }
}

type Op = Box<dyn FnOnce(&Path) -> Result<(), ocistore::Error> + Send>;

/// A pull of `reference` into the store at the root (opened by the pull).
fn pull(reference: &Reference) -> Op {
    let reference = reference.clone();
    Box::new(move |root| {
        let store = Store::open(root)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(store.pull(&client(), &reference, &PullOptions::default()))?;
        Ok(())
    })
}

/// Runs `op` on the store at `root` in a thread of its own, so that an
/// operation stuck on a FIFO fails the test instead of hanging it.
fn run(op: Op, root: &Path) -> Result<(), ocistore::Error> {
    let (send, receive) = std::sync::mpsc::channel();
    let root = root.to_path_buf();
    std::thread::spawn(move || {
        let _ = send.send(op(&root));
    });
    receive
        .recv_timeout(HANG)
        .unwrap_or_else(|_| panic!("the operation hung for {HANG:?} (stuck on a FIFO?)"))
}

/// Plants `kind` at `root/relative` in a store `prepare` made, runs `op`,
/// and checks that nothing outside changed and that the operation either
/// succeeded with a store that verifies or failed naming the plant.
fn check(prepare: &dyn Fn(&Path), relative: &str, kind: Plant, op: Op) {
    let outside = Outside::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    prepare(&root);
    let at = root.join(relative);
    plant(kind, &at, &outside);
    let before = outside.snapshot();
    let result = run(op, &root);
    let after = outside.snapshot();
    let case = format!("{kind:?} at {relative}");
    assert_eq!(after, before, "{case}: something outside the store changed");
    match result {
        Ok(()) => {
            let report = Store::open(&root)
                .and_then(|store| store.verify())
                .unwrap_or_else(|err| panic!("{case}: the store does not verify: {err}"));
            assert!(report.is_ok(), "{case}: verify found {report:?}");
        }
        Err(err) => {
            let text = cachectl_tests::error_chain(&err);
            assert!(
                text.contains(&at.display().to_string()),
                "{case}: the error does not name the planted path: {text}"
            );
        }
    }
}

fn fresh(root: &Path) {
    Store::open(root).expect("store opens");
}

fn pulled(reference: &Reference) -> impl Fn(&Path) + use<> {
    let reference = reference.clone();
    move |root| run(pull(&reference), root).expect("first pull")
}

fn partial_of(digest: &Digest) -> String {
    format!(".cachectl/ingest/sha256-{}.partial", digest.encoded())
}

fn blob_of(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.encoded())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_planted_ingest_partial_is_never_followed() {
    let image = image("plants/partial").await;
    tokio::task::spawn_blocking(move || {
        for kind in FILE_PLANTS {
            check(
                &fresh,
                &partial_of(&image.layer),
                kind,
                pull(&image.reference),
            );
        }
    })
    .await
    .expect("no panic");
}

#[tokio::test(flavor = "multi_thread")]
async fn plants_at_blob_index_layout_and_lock_paths_are_never_followed() {
    let image = image("plants/files").await;
    tokio::task::spawn_blocking(move || {
        let paths = [
            blob_of(&image.layer),
            blob_of(&image.manifest),
            "index.json".to_owned(),
            "oci-layout".to_owned(),
            ".cachectl/locks/index.lock".to_owned(),
            ".cachectl/locks/gc.lock".to_owned(),
            format!(".cachectl/locks/blob-sha256-{}.lock", image.layer.encoded()),
        ];
        for relative in &paths {
            for kind in FILE_PLANTS {
                check(&fresh, relative, kind, pull(&image.reference));
            }
        }
    })
    .await
    .expect("no panic");
}

#[tokio::test(flavor = "multi_thread")]
async fn plants_in_a_pulled_store_survive_a_warm_pull_and_rm_with_gc() {
    let image = image("plants/warm").await;
    tokio::task::spawn_blocking(move || {
        let record = format!(
            ".cachectl/records/{}.json",
            Digest::sha256_of(image.reference.to_string().as_bytes()).encoded()
        );
        let paths = [
            record,
            "index.json".to_owned(),
            ".cachectl/locks/index.lock".to_owned(),
            ".cachectl/locks/gc.lock".to_owned(),
            partial_of(&image.layer),
        ];
        for relative in &paths {
            for kind in FILE_PLANTS {
                check(
                    &pulled(&image.reference),
                    relative,
                    kind,
                    pull(&image.reference),
                );
                check(
                    &pulled(&image.reference),
                    relative,
                    kind,
                    rm_and_gc(&image.reference),
                );
            }
        }
        // Unreachable once the image is removed: gc removes what is there.
        for kind in FILE_PLANTS {
            check(
                &pulled(&image.reference),
                &blob_of(&image.layer),
                kind,
                rm_and_gc(&image.reference),
            );
        }
    })
    .await
    .expect("no panic");
}

fn rm_and_gc(reference: &Reference) -> Op {
    let reference = reference.clone();
    Box::new(move |root| {
        let store = Store::open(root)?;
        store.remove(&reference)?;
        store.gc_keeping_partials(Duration::ZERO)?;
        Ok(())
    })
}

/// Everything that writes: pull, inspect (sizes), a lease, verify
/// (quarantine), remove, gc.
fn everything(reference: &Reference) -> Op {
    let reference = reference.clone();
    Box::new(move |root| {
        pull(&reference)(root)?;
        let store = Store::open(root)?;
        store.inspect(&reference)?;
        drop(store.lease(&reference)?);
        store.verify()?;
        store.remove(&reference)?;
        store.gc_keeping_partials(Duration::ZERO)?;
        pull(&reference)(root)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn planted_store_directories_are_refused_naming_them() {
    let image = image("plants/dirs").await;
    tokio::task::spawn_blocking(move || {
        let dirs = [
            "blobs",
            "blobs/sha256",
            ".cachectl",
            ".cachectl/ingest",
            ".cachectl/locks",
            ".cachectl/records",
            ".cachectl/sizes",
            ".cachectl/quarantine",
            ".cachectl/leases",
        ];
        for relative in dirs {
            for kind in DIR_PLANTS {
                check(&fresh, relative, kind, everything(&image.reference));
            }
        }
    })
    .await
    .expect("no panic");
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_and_remembered_sizes_never_follow_plants() {
    let image = image("plants/verify").await;
    tokio::task::spawn_blocking(move || {
        let layer = image.layer.clone();
        let corrupted = {
            let reference = image.reference.clone();
            let layer = layer.clone();
            move |root: &Path| {
                pulled(&reference)(root);
                let path = root.join(blob_of(&layer));
                let mut bytes = std::fs::read(&path).expect("layer");
                bytes[0] ^= 0xff;
                std::fs::write(&path, bytes).expect("corrupted");
            }
        };
        // verify moves the corrupt layer aside, the pull fetches it again.
        let verify_then_pull = |reference: &Reference| -> Op {
            let reference = reference.clone();
            Box::new(move |root| {
                Store::open(root)?.verify()?;
                pull(&reference)(root)
            })
        };
        for kind in DIR_PLANTS {
            check(
                &corrupted,
                ".cachectl/quarantine",
                kind,
                verify_then_pull(&image.reference),
            );
        }
        for kind in FILE_PLANTS {
            check(
                &pulled(&image.reference),
                &blob_of(&layer),
                kind,
                verify_then_pull(&image.reference),
            );
        }
        let remember = |layer: &Digest| -> Op {
            let layer = layer.clone();
            Box::new(move |root| Store::open(root)?.remember_uncompressed_size(&layer, 300_000))
        };
        for kind in DIR_PLANTS {
            check(
                &pulled(&image.reference),
                ".cachectl/sizes",
                kind,
                remember(&layer),
            );
        }
        let size_file = format!(".cachectl/sizes/sha256-{}", layer.encoded());
        for kind in FILE_PLANTS {
            check(
                &pulled(&image.reference),
                &size_file,
                kind,
                remember(&layer),
            );
        }
    })
    .await
    .expect("no panic");
}

#[tokio::test(flavor = "multi_thread")]
async fn import_never_follows_plants() {
    let image = image("plants/import").await;
    tokio::task::spawn_blocking(move || {
        let archives = tempfile::tempdir().expect("tempdir");
        let archive = archives.path().join("image.tar");
        let source = archives.path().join("source");
        run(pull(&image.reference), &source).expect("pulled");
        Store::open(&source)
            .expect("opens")
            .export(
                std::slice::from_ref(&image.reference),
                ExportFormat::Oci,
                &archive,
            )
            .expect("exported");
        let paths = [
            blob_of(&image.layer),
            blob_of(&image.manifest),
            "index.json".to_owned(),
            ".cachectl/ingest".to_owned(),
            "blobs/sha256".to_owned(),
        ];
        for relative in &paths {
            for kind in FILE_PLANTS {
                let archive = archive.clone();
                let import: Op = Box::new(move |root| {
                    Store::open(root)?.import(&archive, &ImportOptions::default())?;
                    Ok(())
                });
                check(&fresh, relative, kind, import);
            }
        }
    })
    .await
    .expect("no panic");
}
