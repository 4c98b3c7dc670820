//! `ocistore` `verify` and `gc` against the real registry: a corrupt blob
//! quarantined and repaired, sweeps of what no reference needs, gc beside
//! concurrent pulls, and the layered and docker v2s2 fixtures verified.

use crate::store::{
    assert_blobs_rehash, client, first_layer, fixture, noise, push_image, push_tags_sharing_layers,
    ref_names,
};
use cachectl_tests::{registries, unique};
use ocidist::OCI_MANIFEST;
use ociref::{Digest, Reference};
use ocistore::{PullOptions, Store};
use std::sync::Arc;

#[tokio::test]
async fn verify_reports_and_quarantines_a_corrupt_blob_and_pull_repairs_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let reference = fixture("small");
    let outcome = store
        .pull(&client(), &reference, &PullOptions::default())
        .await
        .expect("pull succeeds");
    let layer = first_layer(&store, &outcome.manifest_digest);
    std::fs::write(store.blob_path(&layer), b"not the layer").expect("corrupted");

    let report = store.verify().expect("verify runs");
    assert!(!report.is_ok());
    assert_eq!(report.corrupt.len(), 1, "{report:?}");
    let corrupt = &report.corrupt[0];
    assert_eq!(corrupt.digest, layer);
    assert_eq!(corrupt.references, vec![reference.to_string()]);
    let aside = corrupt.quarantined_to.as_ref().expect("moved aside");
    assert!(aside.starts_with(dir.path().join(".cachectl").join("quarantine")));
    assert_eq!(
        std::fs::read(aside).expect("quarantined file"),
        b"not the layer"
    );
    assert!(store.has_blob(&layer).is_none(), "never served again");
    assert!(report.missing.iter().any(|m| m.digest == layer));

    let repaired = store
        .pull(&client(), &reference, &PullOptions::default())
        .await
        .expect("pull repairs");
    assert!(!repaired.up_to_date);
    assert!(store.verify().expect("verifies").is_ok());
}

#[tokio::test]
async fn gc_sweeps_what_no_reference_needs() {
    let registries = registries();
    let client = client();
    let repository = unique("store/gc");
    let shared = noise(9, 10_000);
    let keep: Reference = format!("{}/{repository}:keep", registries.plain)
        .parse()
        .expect("valid");
    let drop: Reference = format!("{}/{repository}:drop", registries.plain)
        .parse()
        .expect("valid");
    push_image(&client, &keep, "keep", &[shared.clone(), noise(10, 5_000)]).await;
    push_image(&client, &drop, "drop", &[shared.clone(), noise(11, 7_000)]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    for reference in [&keep, &drop] {
        store
            .pull(&client, reference, &PullOptions::default())
            .await
            .expect("pulled");
    }
    let stale = dir.path().join(".cachectl/ingest/sha256-0000.partial");
    std::fs::write(&stale, b"stale").expect("written");
    let day_and_more = std::time::Duration::from_secs(25 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .and_then(|file| file.set_modified(std::time::SystemTime::now() - day_and_more))
        .expect("aged");
    assert!(store.remove(&drop).expect("removes"));
    assert!(!store.remove(&drop).expect("second remove is a no-op"));
    let report = store.gc().expect("gc runs");
    // drop's manifest, config and own layer.
    assert_eq!(report.removed_blobs, 3, "{report:?}");
    assert_eq!(report.removed_ingest_files, 1);
    assert!(report.bytes_freed >= 7_000);
    assert!(store.has_blob(&Digest::sha256_of(&shared)).is_some());
    assert!(store.verify().expect("verifies").is_ok());
    let again = store
        .pull(&client, &keep, &PullOptions::offline())
        .await
        .expect("still cached");
    assert!(again.up_to_date);
}

#[tokio::test]
async fn layered_and_docker_v2s2_fixtures_pull_and_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let client = client();
    let options = PullOptions::default().with_concurrency(2);
    for (name, blobs, media_type) in [
        ("docker-v2s2", 3, ocidist::DOCKER_MANIFEST),
        ("layered", 7, OCI_MANIFEST),
        ("layered-zstd", 7, OCI_MANIFEST),
    ] {
        let reference = fixture(name);
        let outcome = store
            .pull(&client, &reference, &options)
            .await
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(
            outcome.fetched_blobs + outcome.reused_blobs,
            blobs,
            "{name}: {outcome:?}"
        );
        let entry = store
            .list()
            .expect("lists")
            .into_iter()
            .find(|e| e.reference == reference.to_string())
            .expect("listed");
        assert_eq!(entry.media_type, media_type);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(store.verify().expect("verifies").is_ok());
    let order = |store: &Store| -> Vec<String> {
        store
            .list()
            .expect("lists")
            .into_iter()
            .map(|e| e.reference)
            .collect()
    };
    let name = |fixture_name: &str| fixture(fixture_name).to_string();
    assert_eq!(
        order(&store),
        [name("layered-zstd"), name("layered"), name("docker-v2s2")],
        "most recently used first"
    );
    // Using an image (a warm pull) moves it to the front, and only its
    // record changes: index.json stays as it was.
    let index_before = std::fs::read(dir.path().join("index.json")).expect("index");
    store
        .pull(&client, &fixture("docker-v2s2"), &PullOptions::offline())
        .await
        .expect("cached");
    assert_eq!(order(&store)[0], name("docker-v2s2"));
    assert_eq!(
        std::fs::read(dir.path().join("index.json")).expect("index"),
        index_before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_looping_beside_concurrent_pulls_breaks_nothing() {
    let client = client();
    let shared = noise(30, 200_000);
    let references = push_tags_sharing_layers(
        &client,
        "store/gc-race",
        6,
        std::slice::from_ref(&shared),
        40,
        100_000,
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    Store::open(&root).expect("store opens");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = std::thread::spawn({
        let (root, stop) = (root.clone(), Arc::clone(&stop));
        move || {
            let store = Store::open(&root).expect("store opens");
            let mut runs = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                store.gc().expect("gc runs");
                runs += 1;
            }
            runs
        }
    });
    let mut tasks = tokio::task::JoinSet::new();
    for reference in references.clone() {
        let (client, root) = (client.clone(), root.clone());
        tasks.spawn(async move {
            Store::open(&root)
                .expect("store opens")
                .pull(&client, &reference, &PullOptions::default())
                .await
                .expect("pull succeeds beside gc")
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task completes");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(collector.join().expect("gc thread finishes") > 0);
    let store = Store::open(&root).expect("store opens");
    assert_eq!(ref_names(&root).len(), 6);
    assert!(store.verify().expect("verifies").is_ok());
    assert_eq!(store.gc().expect("gc runs").removed_blobs, 0);
    assert_eq!(assert_blobs_rehash(&root), 6 * 3 + 1);
}

#[tokio::test]
async fn an_always_pull_rehashes_and_replaces_a_corrupt_blob() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let reference = fixture("small");
    let outcome = store
        .pull(&client(), &reference, &PullOptions::default())
        .await
        .expect("pull succeeds");
    let layer = first_layer(&store, &outcome.manifest_digest);
    let size = std::fs::metadata(store.blob_path(&layer))
        .expect("layer")
        .len();
    // Same size, other bytes: a stat-only check cannot see it.
    std::fs::write(store.blob_path(&layer), vec![0u8; size as usize]).expect("corrupted");

    let warm = store
        .pull(&client(), &reference, &PullOptions::default())
        .await
        .expect("warm pull");
    assert!(warm.up_to_date, "a default pull trusts what is stored");

    let checked = store
        .pull(&client(), &reference, &PullOptions::always())
        .await
        .expect("always pull");
    assert!(!checked.up_to_date);
    assert!(checked.fetched_blobs >= 2, "{checked:?}");
    assert!(store.verify().expect("verifies").is_ok());
    let quarantined = std::fs::read_dir(dir.path().join(".cachectl/quarantine"))
        .expect("quarantine exists")
        .count();
    assert_eq!(quarantined, 1);
    assert_eq!(assert_blobs_rehash(dir.path()), 3);
}
