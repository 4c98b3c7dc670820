//! `ocistore` against the real registry: cold and warm pulls (counted
//! through the fault proxy), offline pulls, platform selection, concurrent
//! pulls on one root, atomic `index.json` and resumed partial downloads;
//! with the helpers the other store modules share (`store_gc_verify`,
//! `store_tools`).

use bytes::Bytes;
use cachectl_tests::fault_proxy::{Fault, FaultProxy, Rule};
use cachectl_tests::{fixtures, registries, unique};
use ocidist::credentials::StaticCredentials;
use ocidist::{BlobSource, Client, ClientConfig, Descriptor, OCI_MANIFEST};
use ociref::{Digest, Platform, Reference};
use ocistore::{Error, PullOptions, REF_NAME_ANNOTATION, Store};
use std::path::Path;
use std::sync::Arc;

const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

pub(crate) fn client() -> Client {
    Client::new(ClientConfig::default(), Arc::new(StaticCredentials::new())).expect("client builds")
}

pub(crate) fn fixture(name: &str) -> Reference {
    let summary = fixtures();
    let text = summary[name]["reference"]
        .as_str()
        .unwrap_or_else(|| panic!("fixture {name} has a reference in {summary}"));
    text.parse().expect("fixture references parse")
}

/// `reference` with its registry replaced by `registry` (e.g. a proxy).
pub(crate) fn via(registry: &str, reference: &Reference) -> Reference {
    format!(
        "{registry}/{}:{}",
        reference.repository(),
        reference.tag().expect("fixtures are tagged")
    )
    .parse()
    .expect("valid reference")
}

fn describe(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.to_owned(),
        digest: Digest::sha256_of(bytes),
        size: bytes.len() as u64,
    }
}

/// Deterministic, poorly compressible bytes.
pub(crate) fn noise(seed: u64, len: usize) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// Pushes an image made of `config_seed` and `layers` to `target`; returns
/// the manifest digest.
pub(crate) async fn push_image(
    client: &Client,
    target: &Reference,
    config_seed: &str,
    layers: &[Bytes],
) -> Digest {
    let config = Bytes::from(format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"seed":"{config_seed}"}}"#
    ));
    let config_descriptor = describe(OCI_CONFIG, &config);
    client
        .push_blob(
            target,
            &config_descriptor,
            BlobSource::Bytes(config.clone()),
        )
        .await
        .expect("config pushed");
    let mut layer_descriptors = Vec::new();
    for layer in layers {
        let descriptor = describe(OCI_LAYER_TAR, layer);
        client
            .push_blob(target, &descriptor, BlobSource::Bytes(layer.clone()))
            .await
            .expect("layer pushed");
        layer_descriptors.push(descriptor);
    }
    let json = |d: &Descriptor| serde_json::json!({"mediaType": d.media_type, "digest": d.digest.to_string(), "size": d.size});
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": json(&config_descriptor),
        "layers": layer_descriptors.iter().map(json).collect::<Vec<_>>(),
    });
    let bytes = Bytes::from(serde_json::to_vec(&manifest).expect("serializable"));
    client
        .push_manifest(target, bytes, OCI_MANIFEST)
        .await
        .expect("manifest pushed")
}

/// Pushes `count` images tagged `t0`… to one new repository named after
/// `name`: each holds the `shared` layers, then a small layer of its own
/// (seeded from `own_seed + i`, `own_len` bytes).
pub(crate) async fn push_tags_sharing_layers(
    client: &Client,
    name: &str,
    count: u64,
    shared: &[Bytes],
    own_seed: u64,
    own_len: usize,
) -> Vec<Reference> {
    let registries = registries();
    let repository = unique(name);
    let mut references = Vec::new();
    for i in 0..count {
        let target: Reference = format!("{}/{repository}:t{i}", registries.plain)
            .parse()
            .expect("valid");
        let mut layers = shared.to_vec();
        layers.push(noise(own_seed + i, own_len));
        push_image(client, &target, &format!("{name}-{i}"), &layers).await;
        references.push(target);
    }
    references
}

pub(crate) fn read_index(root: &Path) -> serde_json::Value {
    let bytes = std::fs::read(root.join("index.json")).expect("index.json exists");
    serde_json::from_slice(&bytes).expect("index.json is JSON")
}

pub(crate) fn ref_names(root: &Path) -> Vec<String> {
    read_index(root)["manifests"]
        .as_array()
        .expect("manifests is an array")
        .iter()
        .filter_map(|m| {
            m["annotations"][REF_NAME_ANNOTATION]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// Asserts that every file under blobs/sha256 hashes to its name; returns
/// how many there are.
pub(crate) fn assert_blobs_rehash(root: &Path) -> usize {
    let dir = root.join("blobs").join("sha256");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("blobs/sha256 exists") {
        let entry = entry.expect("readable dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let bytes = std::fs::read(entry.path()).expect("readable blob");
        assert_eq!(
            Digest::sha256_of(&bytes).encoded(),
            name,
            "blob {name} re-hashes"
        );
        count += 1;
    }
    count
}

#[tokio::test]
async fn pull_small_into_an_empty_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let reference = fixture("small");
    let outcome = store
        .pull(&client(), &reference, &PullOptions::default())
        .await
        .expect("pull succeeds");
    assert_eq!(outcome.reference, reference.to_string());
    assert_eq!(outcome.index_digest, None);
    assert!(!outcome.up_to_date);
    assert_eq!(outcome.fetched_blobs, 3, "manifest, config, one layer");
    assert_eq!(
        outcome.platform,
        Some("linux/amd64".parse().expect("platform"))
    );

    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("oci-layout")).expect("oci-layout"))
            .expect("JSON");
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index = read_index(dir.path());
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let manifests = index["manifests"].as_array().expect("array");
    assert_eq!(manifests.len(), 1);
    assert_eq!(
        manifests[0]["annotations"][REF_NAME_ANNOTATION],
        reference.to_string()
    );
    assert_eq!(manifests[0]["digest"], outcome.manifest_digest.to_string());
    assert_eq!(manifests[0]["mediaType"], OCI_MANIFEST);
    assert_eq!(assert_blobs_rehash(dir.path()), 3);

    let listed = store.list().expect("lists");
    assert_eq!(listed.len(), 1);
    let record = listed[0].record.as_ref().expect("a record");
    assert_eq!(record.manifest_digest, outcome.manifest_digest);
    assert!(store.verify().expect("verifies").is_ok());
}

#[tokio::test]
async fn warm_pull_sends_exactly_one_head() {
    let registries = registries();
    let proxy = FaultProxy::start(&registries.plain, vec![]);
    let reference = via(&proxy.addr(), &fixture("small"));
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let client = client();
    let cold = store
        .pull(&client, &reference, &PullOptions::default())
        .await
        .expect("cold pull");
    let before = proxy.requests().len();
    let warm = Store::open(dir.path())
        .expect("second handle")
        .pull(&client, &reference, &PullOptions::default())
        .await
        .expect("warm pull");
    let requests = proxy.requests()[before..].to_vec();
    assert_eq!(requests.len(), 1, "warm pull requests: {requests:?}");
    assert_eq!(requests[0].method, "HEAD");
    assert!(warm.up_to_date);
    assert_eq!(warm.fetched_blobs, 0);
    assert_eq!(warm.manifest_digest, cold.manifest_digest);
}

#[tokio::test]
async fn offline_pull_makes_no_request() {
    let registries = registries();
    let proxy = FaultProxy::start(&registries.plain, vec![]);
    let reference = via(&proxy.addr(), &fixture("small"));
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let client = client();

    let missing = store
        .pull(&client, &reference, &PullOptions::offline())
        .await;
    match missing {
        Err(Error::ImageNotCached { reference: name }) => assert_eq!(name, reference.to_string()),
        other => panic!("expected ImageNotCached, got {other:?}"),
    }
    assert_eq!(proxy.requests().len(), 0);

    store
        .pull(&client, &reference, &PullOptions::default())
        .await
        .expect("online pull");
    let before = proxy.requests().len();
    let offline = store
        .pull(&client, &reference, &PullOptions::offline())
        .await
        .expect("offline pull of a cached image");
    assert!(offline.up_to_date);
    assert_eq!(proxy.requests().len(), before, "no request when offline");
}

#[tokio::test]
async fn multiarch_pull_stores_the_arm64_child_and_the_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let reference = fixture("multiarch");
    let index_digest: Digest = fixtures()["multiarch"]["digest"]
        .as_str()
        .expect("digest in summary")
        .parse()
        .expect("digest parses");
    let platform: Platform = "linux/arm64".parse().expect("platform");
    let outcome = store
        .pull(&client(), &reference, &PullOptions::for_platform(platform))
        .await
        .expect("pull succeeds");
    assert_eq!(outcome.index_digest.as_ref(), Some(&index_digest));
    assert_eq!(
        outcome.platform,
        Some("linux/arm64/v8".parse().expect("platform"))
    );
    assert!(
        store.has_blob(&index_digest).is_some(),
        "the index is stored"
    );
    assert!(store.has_blob(&outcome.manifest_digest).is_some());
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store.blob_path(&outcome.manifest_digest)).expect("manifest blob"),
    )
    .expect("JSON");
    let config_digest: Digest = manifest["config"]["digest"]
        .as_str()
        .expect("config digest")
        .parse()
        .expect("parses");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.blob_path(&config_digest)).expect("config"))
            .expect("JSON");
    assert_eq!(config["architecture"], "arm64");
    let index = read_index(dir.path());
    assert_eq!(
        index["manifests"][0]["digest"],
        outcome.manifest_digest.to_string()
    );
    assert_blobs_rehash(dir.path());

    // The same platform again: resolved to the index digest, still warm.
    let again = store
        .pull(
            &client(),
            &reference,
            &PullOptions::for_platform("linux/arm64/v8".parse().expect("platform")),
        )
        .await
        .expect("warm pull");
    assert!(again.up_to_date);
    assert!(store.verify().expect("verifies").is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn sixteen_concurrent_pulls_of_tags_sharing_layers() {
    let client = client();
    let shared = [noise(1, 300_000), noise(2, 200_000)];
    let references =
        push_tags_sharing_layers(&client, "store/concurrent", 16, &shared, 100, 50_000).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let mut tasks = tokio::task::JoinSet::new();
    for reference in references.clone() {
        let client = client.clone();
        let root = root.clone();
        tasks.spawn(async move {
            // A handle of its own per task, as separate processes would have.
            let store = Store::open(&root).expect("store opens");
            store
                .pull(&client, &reference, &PullOptions::default())
                .await
                .expect("pull succeeds")
        });
    }
    let mut fetched_shared = 0;
    while let Some(done) = tasks.join_next().await {
        let outcome = done.expect("task completes");
        fetched_shared += outcome.fetched_blobs;
    }
    let names = ref_names(&root);
    for reference in &references {
        assert!(
            names.contains(&reference.to_string()),
            "{reference} listed in {names:?}"
        );
    }
    assert_eq!(names.len(), 16);
    // 16 manifests + 16 configs + 16 own layers + 2 shared layers.
    assert_eq!(assert_blobs_rehash(&root), 16 * 3 + 2);
    assert_eq!(
        fetched_shared,
        16 * 3 + 2,
        "every blob downloaded exactly once"
    );
    let report = Store::open(&root)
        .expect("opens")
        .verify()
        .expect("verifies");
    assert!(report.is_ok(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_download_of_a_shared_layer_never_clobbers_it() {
    let registries = registries();
    let client = client();
    let shared = noise(50, 400_000);
    let targets = push_tags_sharing_layers(
        &client,
        "store/shared-failure",
        4,
        std::slice::from_ref(&shared),
        60,
        20_000,
    )
    .await;
    // The first download of the shared layer arrives with a flipped byte.
    let proxy = FaultProxy::start(
        &registries.plain,
        vec![
            Rule::new(Fault::FlipByte(1000))
                .method("GET")
                .path_contains(&format!("/blobs/{}", Digest::sha256_of(&shared)))
                .first(1),
        ],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    let mut tasks = tokio::task::JoinSet::new();
    for target in &targets {
        let (client, root, reference) = (client.clone(), root.clone(), via(&proxy.addr(), target));
        tasks.spawn(async move {
            let store = Store::open(&root).expect("store opens");
            let result = store
                .pull(&client, &reference, &PullOptions::default())
                .await;
            (reference, result)
        });
    }
    let mut failed = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (reference, result) = done.expect("task completes");
        if let Err(err) = result {
            failed.push((reference, err));
        }
    }
    assert!(failed.len() <= 1, "{failed:?}");
    assert!(
        proxy.requests().iter().any(|r| r.fault.is_some()),
        "the fault was injected"
    );
    let store = Store::open(&root).expect("store opens");
    assert!(store.verify().expect("verifies").is_ok());
    for (reference, _) in failed {
        store
            .pull(&client, &reference, &PullOptions::default())
            .await
            .expect("a second try succeeds");
    }
    assert_eq!(ref_names(&root).len(), 4);
    assert_eq!(assert_blobs_rehash(&root), 4 * 3 + 1);
    assert!(store.verify().expect("verifies").is_ok());
}

#[tokio::test]
async fn index_json_readers_never_see_invalid_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let source = fixture("small");
    store
        .pull(&client(), &source, &PullOptions::default())
        .await
        .expect("pull succeeds");
    let root = dir.path().to_path_buf();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || {
            let mut reads = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let bytes =
                    std::fs::read(root.join("index.json")).expect("index.json always exists");
                serde_json::from_slice::<serde_json::Value>(&bytes)
                    .unwrap_or_else(|err| panic!("invalid index.json after {reads} reads: {err}"));
                reads += 1;
            }
            reads
        }
    });
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let root = dir.path().to_path_buf();
            let source = source.clone();
            std::thread::spawn(move || {
                let store = Store::open(&root).expect("store opens");
                for i in 0..100 {
                    let target = source.with_tag(&format!("w{w}-{i}")).expect("valid tag");
                    store.tag(&source, &target).expect("tags");
                    if i % 2 == 0 {
                        assert!(store.remove(&target).expect("removes"));
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer finishes");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let reads = reader.join().expect("reader finishes");
    assert!(reads > 0);
    // 1 original + 2 writers x 50 kept tags: no update was lost.
    assert_eq!(ref_names(dir.path()).len(), 101);
}

#[tokio::test]
async fn partial_ingest_file_is_resumed_with_range() {
    let registries = registries();
    let client = client();
    let layer = noise(42, 1_000_000);
    let target: Reference = format!("{}/{}:v1", registries.plain, unique("store/resume"))
        .parse()
        .expect("valid");
    push_image(&client, &target, "resume", std::slice::from_ref(&layer)).await;
    let proxy = FaultProxy::start(&registries.plain, vec![]);
    let reference = via(&proxy.addr(), &target);

    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let layer_digest = Digest::sha256_of(&layer);
    let half = layer.len() / 2;
    std::fs::write(ingest_path(&store, &layer_digest), &layer[..half]).expect("partial written");

    let outcome = store
        .pull(&client, &reference, &PullOptions::default())
        .await
        .expect("pull succeeds");
    assert_eq!(outcome.resumed_bytes, half as u64);
    let gets: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path_and_query.contains(layer_digest.encoded()))
        .collect();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(
        gets[0].range.as_deref(),
        Some(format!("bytes={half}-").as_str())
    );
    assert!(
        !ingest_path(&store, &layer_digest).exists(),
        "the partial was renamed"
    );
    assert_eq!(
        std::fs::read(store.blob_path(&layer_digest)).expect("blob stored"),
        layer
    );
}

#[tokio::test]
async fn a_partial_download_survives_gc_within_its_grace_period_and_the_pull_resumes() {
    let registries = registries();
    let client = client();
    let layer = noise(43, 1_000_000);
    let target: Reference = format!("{}/{}:v1", registries.plain, unique("store/grace"))
        .parse()
        .expect("valid");
    push_image(&client, &target, "grace", std::slice::from_ref(&layer)).await;
    let proxy = FaultProxy::start(&registries.plain, vec![]);
    let reference = via(&proxy.addr(), &target);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let layer_digest = Digest::sha256_of(&layer);
    // What a pull killed at 90 % leaves.
    let done = layer.len() / 10 * 9;
    std::fs::write(ingest_path(&store, &layer_digest), &layer[..done]).expect("partial written");

    let report = store.gc().expect("gc runs");
    assert_eq!(report.kept_partials, 1, "{report:?}");
    assert_eq!(report.kept_partial_bytes, done as u64);
    assert_eq!(report.removed_ingest_files, 0);
    assert_eq!(
        store.disk_usage().expect("measures").ingest_bytes,
        done as u64
    );
    let outcome = store
        .pull(&client, &reference, &PullOptions::default())
        .await
        .expect("pull succeeds");
    assert_eq!(outcome.resumed_bytes, done as u64, "resumed, not refetched");
    let ranges: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path_and_query.contains(layer_digest.encoded()))
        .map(|r| r.range)
        .collect();
    assert_eq!(ranges, [Some(format!("bytes={done}-"))]);

    std::fs::write(ingest_path(&store, &layer_digest), &layer[..done]).expect("partial written");
    let report = store
        .gc_keeping_partials(std::time::Duration::ZERO)
        .expect("gc runs");
    assert_eq!((report.kept_partials, report.removed_ingest_files), (0, 1));
    assert!(!ingest_path(&store, &layer_digest).exists());
}

#[tokio::test]
async fn oversized_partial_is_discarded() {
    let registries = registries();
    let client = client();
    let layer = noise(7, 100_000);
    let target: Reference = format!("{}/{}:v1", registries.plain, unique("store/oversized"))
        .parse()
        .expect("valid");
    push_image(&client, &target, "oversized", std::slice::from_ref(&layer)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let layer_digest = Digest::sha256_of(&layer);
    std::fs::write(ingest_path(&store, &layer_digest), noise(8, 200_000)).expect("written");
    let outcome = store
        .pull(&client, &target, &PullOptions::default())
        .await
        .expect("pull succeeds");
    assert_eq!(outcome.resumed_bytes, 0);
    assert!(store.verify().expect("verifies").is_ok());
}

/// The digest of the first layer of the stored manifest `manifest`.
pub(crate) fn first_layer(store: &Store, manifest: &Digest) -> Digest {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.blob_path(manifest)).expect("manifest"))
            .expect("JSON");
    manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer digest")
        .parse()
        .expect("parses")
}

pub(crate) fn find_on_path(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|candidate| candidate.is_file())
    })
}

/// Where the store keeps the partial download of `digest` (docs/store.md,
/// "On disk").
pub(crate) fn ingest_path(store: &Store, digest: &Digest) -> std::path::PathBuf {
    store.root().join(".cachectl/ingest").join(format!(
        "{}-{}.partial",
        digest.algorithm(),
        digest.encoded()
    ))
}
