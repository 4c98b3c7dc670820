//! `ocistore` beyond the plain pull, against the real registry:
//! all-platform pulls, referrers kept by `gc`, `inspect`, disk usage,
//! `prune`, `repair`, `push`, listing a thousand images, and concurrent
//! pulls from separate processes.

use crate::store::{
    assert_blobs_rehash, client, first_layer, fixture, noise, push_image, push_tags_sharing_layers,
    read_index, via,
};
use cachectl_tests::fault_proxy::FaultProxy;
use cachectl_tests::{fixtures, registries, unique};
use ociref::{Digest, Reference};
use ocistore::{Error, PrunePolicy, PullOptions, Store};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn fixture_digest(name: &str) -> Digest {
    fixtures()[name]["digest"]
        .as_str()
        .expect("digest in summary")
        .parse()
        .expect("digest parses")
}

fn fresh_reference(name: &str, tag: &str) -> Reference {
    format!("{}/{}:{tag}", registries().plain, unique(name))
        .parse()
        .expect("valid reference")
}

#[tokio::test]
async fn all_platform_pull_stores_the_index_and_every_platform() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let reference = fixture("multiarch");
    let index_digest = fixture_digest("multiarch");

    // One platform first: a later all-platform pull must not call that
    // warm, since two platforms are missing.
    let one = store
        .pull(
            &client(),
            &reference,
            &PullOptions::for_platform("linux/arm/v7".parse().expect("platform")),
        )
        .await
        .expect("single-platform pull");
    assert_eq!(one.platforms.len(), 1);
    let all = store
        .pull(
            &client(),
            &reference,
            &PullOptions::default().with_all_platforms(),
        )
        .await
        .expect("all-platform pull");
    assert!(!all.up_to_date);
    assert!(all.fetched_blobs >= 2, "{all:?}");
    assert_eq!(all.manifest_digest, index_digest);
    assert_eq!(all.platform, None);
    let platforms: BTreeSet<String> = all.platforms.iter().map(ToString::to_string).collect();
    assert_eq!(
        platforms,
        BTreeSet::from([
            "linux/amd64".to_owned(),
            "linux/arm/v7".to_owned(),
            "linux/arm64/v8".to_owned()
        ])
    );
    let index = read_index(dir.path());
    assert_eq!(index["manifests"][0]["digest"], index_digest.to_string());
    assert_eq!(
        index["manifests"][0]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert!(store.verify().expect("verify runs").is_ok());

    let inspection = store.inspect(&reference).expect("inspects");
    assert_eq!(inspection.images.len(), 3);
    assert_eq!(inspection.platforms.len(), 3);
    assert!(inspection.platforms.iter().all(|p| p.stored));
    let record = inspection.record.expect("a record");
    assert_eq!(record.platforms.len(), 3);

    let warm = store
        .pull(
            &client(),
            &reference,
            &PullOptions::default().with_all_platforms(),
        )
        .await
        .expect("warm all-platform pull");
    assert!(warm.up_to_date);
    assert_eq!(warm.platforms.len(), 3);
}

#[tokio::test]
async fn push_keeps_the_index_and_its_platforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let client = client();
    let source = fixture("multiarch");
    store
        .pull(
            &client,
            &source,
            &PullOptions::default().with_all_platforms(),
        )
        .await
        .expect("all-platform pull");
    let destination = fresh_reference("store/push-index", "copy");
    let pushed = store
        .push(&client, &source, &destination, 4)
        .await
        .expect("push succeeds");
    assert_eq!(pushed.digest, fixture_digest("multiarch"));
    assert_eq!(pushed.manifests, 4, "three platforms and the index");
    // Same registry, another repository: the layers are mounted, not sent.
    assert!(pushed.mounted_blobs > 0, "{pushed:?}");
    assert_eq!(pushed.uploaded_blobs, 0, "{pushed:?}");
    let resolved = client.resolve(&destination).await.expect("resolves");
    assert_eq!(resolved.digest, pushed.digest);

    // Pulled back into a fresh store, every platform is there again.
    let other = tempfile::tempdir().expect("tempdir");
    let copy = Store::open(other.path()).expect("store opens");
    let back = copy
        .pull(
            &client,
            &destination,
            &PullOptions::default().with_all_platforms(),
        )
        .await
        .expect("pull of the pushed copy");
    assert_eq!(back.manifest_digest, pushed.digest);
    assert!(copy.verify().expect("verify").is_ok());

    // An image that is not stored is refused by name.
    let missing = fresh_reference("store/push-missing", "v1");
    match store.push(&client, &missing, &destination, 4).await {
        Err(Error::ImageNotCached { reference }) => assert_eq!(reference, missing.to_string()),
        other => panic!("expected ImageNotCached, got {other:?}"),
    }
}

#[tokio::test]
async fn push_of_one_platform_uploads_to_another_registry_and_keeps_the_digest() {
    let registries = registries();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let client = client();
    let source = fixture("multiarch");
    let pulled = store
        .pull(
            &client,
            &source,
            &PullOptions::for_platform("linux/arm64".parse().expect("platform")),
        )
        .await
        .expect("pull");
    // Through a proxy, the destination is another registry for the
    // client: nothing can be mounted, every blob is uploaded.
    let proxy = FaultProxy::start(&registries.plain, vec![]);
    let destination: Reference = format!("{}/{}:one", proxy.addr(), unique("store/push-one"))
        .parse()
        .expect("valid");
    let pushed = store
        .push(&client, &source, &destination, 2)
        .await
        .expect("push");
    // The index is not complete in the store, so the one image is pushed.
    assert_eq!(pushed.digest, pulled.manifest_digest);
    assert_eq!(pushed.manifests, 1);
    assert_eq!(pushed.mounted_blobs, 0);
    assert_eq!(
        pushed.uploaded_blobs + pushed.existing_blobs,
        2,
        "{pushed:?}"
    );
    assert!(proxy.count("PUT", "/manifests/one") == 1);
}

#[tokio::test]
async fn referrers_travel_with_the_image_and_gc_keeps_them_until_it_goes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let reference = fixture("with-sbom");
    let sbom: Digest = fixtures()["with-sbom"]["referrers"][0]["manifest"]["digest"]
        .as_str()
        .expect("referrer digest")
        .parse()
        .expect("parses");
    let pulled = store
        .pull(
            &client(),
            &reference,
            &PullOptions::default().with_referrers(),
        )
        .await
        .expect("pull with referrers");
    assert_eq!(pulled.referrers, vec![sbom.clone()]);
    assert!(store.has_blob(&sbom).is_some());
    let before = assert_blobs_rehash(dir.path());
    // manifest, config, layer; SBOM manifest, its empty config, the SBOM.
    assert_eq!(before, 6);

    let report = store.gc().expect("gc runs");
    assert_eq!(report.removed_blobs, 0, "gc kept the referrer: {report:?}");
    assert!(store.has_blob(&sbom).is_some());
    let usage = store.disk_usage().expect("du");
    assert_eq!(usage.unreferenced_bytes, 0, "{usage:?}");

    assert!(store.remove(&reference).expect("removed"));
    let report = store.gc().expect("gc runs");
    assert_eq!(report.removed_blobs, 6, "{report:?}");
    assert_eq!(assert_blobs_rehash(dir.path()), 0);
}

#[tokio::test]
async fn inspect_reports_config_layers_sizes_and_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let reference = fixture("layered");
    let pulled = store
        .pull(&client(), &reference, &PullOptions::default())
        .await
        .expect("pull");
    let inspection = store.inspect(&reference).expect("inspects");
    assert_eq!(inspection.reference, reference.to_string());
    assert_eq!(inspection.top.digest, pulled.manifest_digest);
    assert_eq!(inspection.images.len(), 1);
    let image = &inspection.images[0];
    assert!(image.layers.len() >= 2, "{image:?}");
    assert_eq!(image.config.os.as_deref(), Some("linux"));
    assert_eq!(image.config.diff_ids.len(), image.layers.len());
    assert!(!image.config.history.is_empty());
    for layer in &image.layers {
        assert!(layer.present);
        let unpacked = layer.uncompressed_size.expect("inspect counted the size");
        assert!(
            unpacked > layer.descriptor.size,
            "gzip layers grow: {layer:?}"
        );
    }
    let record = inspection.record.expect("record");
    let unpacked = record.uncompressed_size.expect("size recorded");
    assert!(unpacked > record.compressed_size);
    assert_eq!(
        image.uncompressed_size.expect("all layer sizes known"),
        image
            .layers
            .iter()
            .map(|l| l.uncompressed_size.unwrap_or(0))
            .sum::<u64>()
    );
    assert_eq!(inspection.platforms.len(), 1);

    let absent = fresh_reference("store/inspect-absent", "v1");
    assert!(matches!(
        store.inspect(&absent),
        Err(Error::ImageNotCached { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disk_usage_splits_shared_and_unique_bytes() {
    let client = client();
    let shared = [noise(301, 40_000)];
    let references = push_tags_sharing_layers(&client, "store/du", 2, &shared, 310, 5_000).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    for reference in &references {
        store
            .pull(&client, reference, &PullOptions::default())
            .await
            .expect("pull");
    }
    std::fs::write(store.blob_path(&Digest::sha256_of(b"stray")), b"stray").expect("stray blob");
    let usage = store.disk_usage().expect("du");
    assert_eq!(usage.images.len(), 2);
    for image in &usage.images {
        assert_eq!(image.shared, 40_000, "{image:?}");
        // own layer (5000), config and manifest.
        assert!(image.unique > 5_000 && image.unique < 7_000, "{image:?}");
        assert_eq!(image.total, image.shared + image.unique);
    }
    let unique_sum: u64 = usage.images.iter().map(|i| i.unique).sum();
    assert_eq!(usage.unreferenced_bytes, 5);
    assert_eq!(usage.blobs_bytes, 40_000 + unique_sum + 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prune_by_count_budget_and_age_with_a_dry_run_first() {
    let client = client();
    let references = push_tags_sharing_layers(
        &client,
        "store/prune",
        4,
        &[noise(401, 30_000)],
        410,
        20_000,
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    // Used in order t0, t1, t2, t3: t3 is the most recent.
    for reference in &references {
        store
            .pull(&client, reference, &PullOptions::default())
            .await
            .expect("pull");
        std::thread::sleep(Duration::from_millis(5));
    }
    let names: Vec<String> = references.iter().map(ToString::to_string).collect();
    let blobs_before = assert_blobs_rehash(dir.path());

    let dry = store
        .prune(&PrunePolicy {
            keep: Some(2),
            dry_run: true,
            ..PrunePolicy::default()
        })
        .expect("dry run");
    assert_eq!(dry.removed, [names[0].clone(), names[1].clone()]);
    assert!(dry.bytes_freed > 40_000, "{dry:?}");
    assert!(dry.gc.is_none());
    assert_eq!(
        store.list().expect("list").len(),
        4,
        "a dry run removes nothing"
    );
    assert_eq!(assert_blobs_rehash(dir.path()), blobs_before);

    let real = store
        .prune(&PrunePolicy {
            keep: Some(2),
            ..PrunePolicy::default()
        })
        .expect("prune");
    assert_eq!(real.removed, dry.removed);
    assert_eq!(
        real.bytes_freed, dry.bytes_freed,
        "the dry run predicted it"
    );
    assert_eq!(assert_blobs_rehash(dir.path()), blobs_before - 6);

    // A budget that holds one image: the least recent of the two goes.
    let one_image = store
        .disk_usage()
        .expect("du")
        .images
        .iter()
        .map(|i| i.total)
        .max()
        .expect("images");
    let budget = store
        .prune(&PrunePolicy {
            max_bytes: Some(one_image),
            ..PrunePolicy::default()
        })
        .expect("prune by budget");
    assert_eq!(budget.removed, [names[2].clone()]);
    assert_eq!(budget.kept, [names[3].clone()]);

    // Age: t3 was last used a second before a fresh pull of t0 started;
    // the threshold lies between their ages whatever the pull took (a
    // loaded machine makes it slow), with half a second to spare each way.
    std::thread::sleep(Duration::from_secs(1));
    let before_pull = std::time::Instant::now();
    store
        .pull(&client, &references[0], &PullOptions::default())
        .await
        .expect("pull");
    let aged = store
        .prune(&PrunePolicy {
            older_than: Some(before_pull.elapsed() + Duration::from_millis(500)),
            ..PrunePolicy::default()
        })
        .expect("prune by age");
    assert_eq!(aged.removed, [names[3].clone()]);
    assert_eq!(aged.kept, [names[0].clone()]);
    assert!(store.verify().expect("verify").is_ok());
}

#[tokio::test]
async fn repair_refetches_missing_and_corrupt_blobs_from_the_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let client = client();
    let reference = fixture("layered");
    let pulled = store
        .pull(&client, &reference, &PullOptions::default())
        .await
        .expect("pull");
    let layer = first_layer(&store, &pulled.manifest_digest);
    let manifest_bytes = store.read_blob(&pulled.manifest_digest).expect("manifest");
    // A corrupt layer, and the manifest itself gone: repair must fetch the
    // manifest before it can see what else is missing.
    std::fs::write(store.blob_path(&layer), b"rot").expect("corrupted");
    let verify = store.verify().expect("verify runs");
    assert_eq!(verify.corrupt.len(), 1);
    std::fs::remove_file(store.blob_path(&pulled.manifest_digest)).expect("removed");

    let repaired = store.repair(&client).await.expect("repair runs");
    assert!(repaired.is_ok(), "{repaired:?}");
    assert_eq!(repaired.repaired.len(), 2, "{repaired:?}");
    assert!(repaired.repaired.contains(&layer));
    assert_eq!(
        store.read_blob(&pulled.manifest_digest).expect("back"),
        manifest_bytes
    );
    assert!(store.verify().expect("verify").is_ok());

    // A blob the source no longer serves is reported with the image it
    // breaks, and nothing else is touched.
    let gone = fresh_reference("store/repair-gone", "v1");
    push_image(&client, &gone, "gone", &[noise(501, 1_000)]).await;
    let pulled = store
        .pull(&client, &gone, &PullOptions::default())
        .await
        .expect("pull");
    let own = first_layer(&store, &pulled.manifest_digest);
    std::fs::remove_file(store.blob_path(&own)).expect("removed");
    // Its record now names a source where nothing listens.
    let record_path = dir.path().join(".cachectl/records").join(format!(
        "{}.json",
        Digest::sha256_of(gone.to_string().as_bytes()).encoded()
    ));
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record_path).expect("record")).expect("JSON");
    let dead_source = via("127.0.0.1:9", &gone);
    record["source"] = dead_source.to_string().into();
    std::fs::write(&record_path, serde_json::to_vec(&record).expect("JSON")).expect("written");
    let report = store.repair(&client).await.expect("repair runs");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].digest, own);
    assert_eq!(report.failed[0].references, [gone.to_string()]);
    assert!(
        report.failed[0].reason.contains("127.0.0.1:9"),
        "the reason names the source: {}",
        report.failed[0].reason
    );
    assert!(store.has_blob(&own).is_none());
}

#[tokio::test]
async fn listing_a_thousand_images_takes_under_50_ms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let reference = fixture("small");
    store
        .pull(&client(), &reference, &PullOptions::default())
        .await
        .expect("pull");
    // Clone the index entry and record a thousand times, as a thousand
    // pulls would leave them (written directly: this times `list`).
    let index = read_index(dir.path());
    let entry = index["manifests"][0].clone();
    let record_dir = dir.path().join(".cachectl/records");
    let record_file = std::fs::read_dir(&record_dir)
        .expect("records")
        .next()
        .expect("one record")
        .expect("entry")
        .path();
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record_file).expect("record")).expect("JSON");
    let mut entries = Vec::new();
    for i in 0..1000u64 {
        let name = format!("{}/many/image-{i}:v1", registries().plain);
        let mut e = entry.clone();
        e["annotations"]["org.opencontainers.image.ref.name"] = name.clone().into();
        entries.push(e);
        let mut r = record.clone();
        r["reference"] = name.clone().into();
        r["last_used_at"] = (1_000_000 + i).into();
        let key = Digest::sha256_of(name.as_bytes());
        std::fs::write(
            record_dir.join(format!("{}.json", key.encoded())),
            serde_json::to_vec(&r).expect("JSON"),
        )
        .expect("record written");
    }
    let mut index = index;
    index["manifests"] = entries.into();
    std::fs::write(
        dir.path().join("index.json"),
        serde_json::to_vec(&index).expect("JSON"),
    )
    .expect("index written");
    // Best of 10: the test binary is a debug build and shares two cores
    // with the other tests (alone it lists in about 24 ms).
    let mut best = Duration::MAX;
    for _ in 0..10 {
        let started = Instant::now();
        let listed = store.list().expect("lists");
        best = best.min(started.elapsed());
        assert_eq!(listed.len(), 1000);
        assert!(listed[0].reference.ends_with("/many/image-999:v1"));
    }
    eprintln!("listing 1,000 images: best of 10 {best:?}");
    assert!(best < Duration::from_millis(50), "list took {best:?}");
}

#[test]
fn concurrent_pulls_from_separate_processes_download_each_blob_once() {
    let registries = registries();
    let shared = [noise(601, 2_000_000)];
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let references = runtime.block_on(push_tags_sharing_layers(
        &client(),
        "store/processes",
        3,
        &shared,
        610,
        300_000,
    ));
    let proxy = FaultProxy::start(&registries.plain, vec![]);
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = env!("CARGO_BIN_EXE_store-pull");
    // Two processes per tag, six in all, on one root.
    let children: Vec<_> = references
        .iter()
        .chain(references.iter())
        .map(|reference| {
            std::process::Command::new(exe)
                .arg(dir.path())
                .arg(via(&proxy.addr(), reference).to_string())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("child starts")
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().expect("child ends");
        assert!(
            output.status.success(),
            "store-pull failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let store = Store::open(dir.path()).expect("store opens");
    assert!(store.verify().expect("verify").is_ok());
    assert_eq!(store.list().expect("list").len(), 3);
    // shared layer + 3 × (own layer, config): each fetched once.
    let blob_gets = proxy.count("GET", "/blobs/sha256:");
    assert_eq!(blob_gets, 7, "{:#?}", proxy.requests());
    assert_eq!(assert_blobs_rehash(dir.path()), 10);
}
