//! `ocidist` against the real registry: push and pull round trips, chunked
//! uploads, mounts, tags, referrers, manifest checks, and every auth mode
//! (anonymous, htpasswd Basic, token).

use bytes::Bytes;
use cachectl_tests::{TestRegistries, registries, unique};
use ocidist::credentials::{Credential, Secret, StaticCredentials};
use ocidist::{
    BlobSource, Client, ClientConfig, Descriptor, Error, ManifestKind, OCI_INDEX, OCI_MANIFEST,
};
use ociref::{Digest, Reference};
use std::sync::Arc;

const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

fn anonymous_client(config: ClientConfig) -> Client {
    Client::new(config, Arc::new(StaticCredentials::default())).expect("client builds")
}

fn client_with(registry: &str, user: &str, password: &str) -> Client {
    let credentials = StaticCredentials::default().with(
        registry,
        Credential::Basic {
            username: user.to_owned(),
            password: Secret::new(password.to_owned()),
        },
    );
    Client::new(ClientConfig::default(), Arc::new(credentials)).expect("client builds")
}

fn reference(text: &str) -> Reference {
    text.parse().unwrap_or_else(|err| panic!("{text}: {err}"))
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.to_owned(),
        digest: Digest::sha256_of(bytes),
        size: bytes.len() as u64,
    }
}

/// A small image: config, one layer of `layer` bytes, and its manifest.
struct TestImage {
    config: Bytes,
    layer: Bytes,
    manifest: Bytes,
}

impl TestImage {
    fn new(seed: &str, layer_len: usize) -> Self {
        let config = Bytes::from(format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"seed":"{seed}"}}"#
        ));
        let layer: Bytes = (0..layer_len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed.len() as u8))
            .collect::<Vec<u8>>()
            .into();
        let manifest = manifest_json(
            &descriptor(OCI_CONFIG, &config),
            &[descriptor(OCI_LAYER_TAR, &layer)],
            None,
        );
        TestImage {
            config,
            layer,
            manifest,
        }
    }

    async fn push(&self, client: &Client, target: &Reference) -> Digest {
        client
            .push_blob(
                target,
                &descriptor(OCI_CONFIG, &self.config),
                BlobSource::Bytes(self.config.clone()),
            )
            .await
            .expect("config pushed");
        client
            .push_blob(
                target,
                &descriptor(OCI_LAYER_TAR, &self.layer),
                BlobSource::Bytes(self.layer.clone()),
            )
            .await
            .expect("layer pushed");
        client
            .push_manifest(target, self.manifest.clone(), OCI_MANIFEST)
            .await
            .expect("manifest pushed")
    }
}

fn manifest_json(
    config: &Descriptor,
    layers: &[Descriptor],
    subject: Option<&Descriptor>,
) -> Bytes {
    let describe = |d: &Descriptor| serde_json::json!({"mediaType": d.media_type, "digest": d.digest.to_string(), "size": d.size});
    let mut manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": describe(config),
        "layers": layers.iter().map(describe).collect::<Vec<_>>(),
    });
    if let Some(subject) = subject {
        manifest["subject"] = describe(subject);
        manifest["artifactType"] = "application/spdx+json".into();
    }
    Bytes::from(serde_json::to_vec(&manifest).expect("serializable"))
}

#[tokio::test]
async fn push_then_resolve_fetch_and_stream_back() {
    let registries = registries();
    let client = anonymous_client(ClientConfig::default());
    let target = reference(&format!(
        "{}/{}:v1",
        registries.plain,
        unique("dist/roundtrip")
    ));
    let image = TestImage::new("roundtrip", 100_000);
    let pushed = image.push(&client, &target).await;
    assert_eq!(pushed, Digest::sha256_of(&image.manifest));

    let resolved = client.resolve(&target).await.expect("resolves");
    assert_eq!(resolved.digest, pushed);
    assert_eq!(resolved.media_type, OCI_MANIFEST);
    assert_eq!(resolved.size, image.manifest.len() as u64);

    let by_tag = client.manifest(&target).await.expect("manifest by tag");
    assert_eq!(by_tag.bytes, image.manifest);
    assert_eq!(by_tag.digest, pushed);
    let by_digest = client
        .manifest(&target.with_digest(pushed.clone()))
        .await
        .expect("manifest by digest");
    assert_eq!(by_digest.bytes, image.manifest);
    let ManifestKind::Image(parsed) = by_digest.kind else {
        panic!("expected an image manifest");
    };
    assert_eq!(parsed.layers().len(), 1);

    let layer = descriptor(OCI_LAYER_TAR, &image.layer);
    let fetched = client
        .blob_bytes(&target, &layer, 1 << 20)
        .await
        .expect("layer fetched");
    assert_eq!(fetched, image.layer);
    assert_eq!(
        client
            .blob_exists(&target, &layer.digest)
            .await
            .expect("HEAD"),
        Some(layer.size)
    );

    // Pushing again uploads nothing.
    let uploaded = client
        .push_blob(&target, &layer, BlobSource::Bytes(image.layer.clone()))
        .await
        .expect("second push");
    assert!(!uploaded, "an existing blob must not be uploaded again");
}

#[tokio::test]
async fn large_blobs_upload_in_chunks_from_a_file() {
    let registries = registries();
    let mut config = ClientConfig::default();
    config.monolithic_push_limit = 1024;
    config.push_chunk_bytes = 64 * 1024;
    let client = anonymous_client(config);
    let target = reference(&format!(
        "{}/{}:v1",
        registries.plain,
        unique("dist/chunked")
    ));
    let bytes: Vec<u8> = (0..300_001u32).map(|i| (i % 251) as u8).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("blob");
    std::fs::write(&path, &bytes).expect("blob written");
    let blob = descriptor(OCI_LAYER_TAR, &bytes);
    assert!(
        client
            .push_blob(&target, &blob, BlobSource::File(&path))
            .await
            .expect("chunked push")
    );
    let back = client
        .blob_bytes(&target, &blob, 1 << 20)
        .await
        .expect("fetched");
    assert_eq!(Digest::sha256_of(&back), blob.digest);
}

#[tokio::test]
async fn blobs_mount_across_repositories() {
    let registries = registries();
    let client = anonymous_client(ClientConfig::default());
    let from = reference(&format!(
        "{}/{}:v1",
        registries.plain,
        unique("dist/mount-from")
    ));
    let to = reference(&format!(
        "{}/{}:v1",
        registries.plain,
        unique("dist/mount-to")
    ));
    let image = TestImage::new("mount", 1000);
    image.push(&client, &from).await;
    let layer = descriptor(OCI_LAYER_TAR, &image.layer);
    assert_eq!(
        client.blob_exists(&to, &layer.digest).await.expect("HEAD"),
        None
    );
    assert!(
        client
            .mount_blob(&to, from.repository(), &layer.digest)
            .await
            .expect("mount")
    );
    assert_eq!(
        client.blob_exists(&to, &layer.digest).await.expect("HEAD"),
        Some(layer.size)
    );
}

#[tokio::test]
async fn tags_follow_link_pagination() {
    let registries = registries();
    let mut config = ClientConfig::default();
    config.list_page_size = 2;
    let client = anonymous_client(config);
    let repo = format!("{}/{}", registries.plain, unique("dist/tags"));
    let image = TestImage::new("tags", 10);
    let mut expected = Vec::new();
    for n in 0..5 {
        let tag = format!("t{n}");
        image
            .push(&client, &reference(&format!("{repo}:{tag}")))
            .await;
        expected.push(tag);
    }
    let mut tags = client.tags(&reference(&repo)).await.expect("tags listed");
    tags.sort();
    assert_eq!(tags, expected);
}

#[tokio::test]
async fn missing_things_are_not_found_errors_naming_them() {
    let registries = registries();
    let client = anonymous_client(ClientConfig::default());
    let missing = reference(&format!(
        "{}/{}:nope",
        registries.plain,
        unique("dist/missing")
    ));
    let err = client.resolve(&missing).await.expect_err("no such tag");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains(&missing.to_string()), "{err}");
    let err = client.manifest(&missing).await.expect_err("no such tag");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    let blob = descriptor(OCI_LAYER_TAR, b"never pushed");
    let err = client
        .blob_bytes(&missing, &blob, 1024)
        .await
        .expect_err("no such blob");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains(&blob.digest.to_string()), "{err}");
}

#[tokio::test]
async fn oversize_manifests_are_refused_unread() {
    let registries = registries();
    let pusher = anonymous_client(ClientConfig::default());
    let target = reference(&format!(
        "{}/{}:v1",
        registries.plain,
        unique("dist/oversize")
    ));
    let image = TestImage::new("oversize", 10);
    image.push(&pusher, &target).await;
    let mut config = ClientConfig::default();
    config.max_manifest_bytes = 64;
    let client = anonymous_client(config);
    let err = client.manifest(&target).await.expect_err("over the limit");
    assert!(
        matches!(err, Error::ManifestTooLarge { limit: 64, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn referrers_fall_back_to_the_tag_schema() {
    let registries = registries();
    let client = anonymous_client(ClientConfig::default());
    let repo = format!("{}/{}", registries.plain, unique("dist/referrers"));
    let subject_image = TestImage::new("subject", 10);
    let subject_digest = subject_image
        .push(&client, &reference(&format!("{repo}:v1")))
        .await;
    let subject = descriptor(OCI_MANIFEST, &subject_image.manifest);
    assert_eq!(subject.digest, subject_digest);

    // An SBOM artifact referring to it, and the referrers index at the
    // `sha256-<hex>` tag (distribution 2.8 has no referrers API).
    let empty = Bytes::from_static(b"{}");
    let sbom = Bytes::from_static(br#"{"spdxVersion":"SPDX-2.3"}"#);
    let target = reference(&format!("{repo}:sbom"));
    client
        .push_blob(
            &target,
            &descriptor("application/vnd.oci.empty.v1+json", &empty),
            BlobSource::Bytes(empty.clone()),
        )
        .await
        .expect("empty config");
    client
        .push_blob(
            &target,
            &descriptor("application/spdx+json", &sbom),
            BlobSource::Bytes(sbom.clone()),
        )
        .await
        .expect("sbom layer");
    let sbom_manifest = manifest_json(
        &descriptor("application/vnd.oci.empty.v1+json", &empty),
        &[descriptor("application/spdx+json", &sbom)],
        Some(&subject),
    );
    let sbom_digest = client
        .push_manifest(
            &reference(&format!("{repo}@{}", Digest::sha256_of(&sbom_manifest))),
            sbom_manifest.clone(),
            OCI_MANIFEST,
        )
        .await
        .expect("sbom manifest");
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": sbom_digest.to_string(),
            "size": sbom_manifest.len(),
            "artifactType": "application/spdx+json",
        }],
    });
    let tag = format!("{repo}:sha256-{}", subject_digest.hex());
    client
        .push_manifest(
            &reference(&tag),
            Bytes::from(serde_json::to_vec(&index).expect("json")),
            OCI_INDEX,
        )
        .await
        .expect("referrers index");

    let subject_ref = reference(&format!("{repo}:v1"));
    let found = client
        .referrers(&subject_ref, &subject_digest, None)
        .await
        .expect("referrers");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].digest, sbom_digest);
    let filtered = client
        .referrers(
            &subject_ref,
            &subject_digest,
            Some("application/vnd.example.sig"),
        )
        .await
        .expect("referrers filtered");
    assert!(filtered.is_empty());
    let none = client
        .referrers(&subject_ref, &sbom_digest, None)
        .await
        .expect("no referrers is an empty list");
    assert!(none.is_empty());
}

#[tokio::test]
async fn basic_auth_with_and_without_credentials() {
    let registries = registries();
    let repo = format!("{}/{}", registries.basic, unique("dist/basic"));
    let target = reference(&format!("{repo}:v1"));
    let image = TestImage::new("basic", 100);

    let authorized = client_with(
        &registries.basic,
        &registries.basic_user,
        &registries.basic_password,
    );
    let digest = image.push(&authorized, &target).await;
    assert_eq!(
        authorized
            .resolve(&target)
            .await
            .expect("resolves with credentials")
            .digest,
        digest
    );

    let anonymous = anonymous_client(ClientConfig::default());
    let err = anonymous
        .resolve(&target)
        .await
        .expect_err("credentials required");
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("Basic"), "{err}");

    let wrong = client_with(&registries.basic, &registries.basic_user, "wrong-password");
    let err = wrong.resolve(&target).await.expect_err("wrong password");
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert!(
        !format!("{err} {err:?}").contains("wrong-password"),
        "secret leaked: {err:?}"
    );
}

fn issuer_log(registries: &TestRegistries) -> Vec<serde_json::Value> {
    let body = cachectl_tests::blocking_client()
        .get(registries.token_issuer_log_url())
        .send()
        .and_then(|r| r.text())
        .expect("issuer log");
    serde_json::from_str(&body).expect("issuer log is JSON")
}

fn log_entries_for(registries: &TestRegistries, repo: &str) -> Vec<serde_json::Value> {
    issuer_log(registries)
        .into_iter()
        .filter(|entry| entry.to_string().contains(repo))
        .collect()
}

#[tokio::test]
async fn token_auth_pushes_and_pulls_with_the_scope_it_needs() {
    let registries = registries();
    let name = unique("dist/token");
    let target = reference(&format!("{}/{name}:v1", registries.token));
    let client = client_with(
        &registries.token,
        &registries.token_user,
        &registries.token_password,
    );
    let image = TestImage::new("token", 100);
    let digest = image.push(&client, &target).await;

    let pull_only = client_with(
        &registries.token,
        &registries.token_user,
        &registries.token_password,
    );
    assert_eq!(
        pull_only.resolve(&target).await.expect("resolves").digest,
        digest
    );
    let before = tokio::task::spawn_blocking({
        let registries = registries.clone();
        let name = name.clone();
        move || log_entries_for(&registries, &name)
    })
    .await
    .expect("log read");
    assert!(
        before.iter().any(|e| e
            .to_string()
            .contains(&format!("repository:{name}:pull,push"))
            && e.to_string().contains(&registries.token_user)),
        "issuer never saw a push scope for the user: {before:?}"
    );
    assert!(
        before.iter().any(|e| e
            .to_string()
            .contains(&format!("\"repository:{name}:pull\""))),
        "issuer never saw a pull-only scope: {before:?}"
    );
    // The token is cached: more reads ask the issuer for nothing new.
    pull_only.manifest(&target).await.expect("manifest");
    pull_only
        .manifest(&target.with_digest(digest))
        .await
        .expect("manifest by digest");
    let after = tokio::task::spawn_blocking({
        let registries = registries.clone();
        move || log_entries_for(&registries, &name)
    })
    .await
    .expect("log read");
    assert_eq!(after.len(), before.len(), "cached token was not reused");
    let log_text = serde_json::to_string(&after).expect("json");
    assert!(!log_text.contains(&registries.token_password));
}

#[tokio::test]
async fn token_auth_anonymous_pulls_public_repositories() {
    let registries = registries();
    let target = reference(&format!(
        "{}/public/{}:v1",
        registries.token,
        unique("dist-anon")
    ));
    let pusher = client_with(
        &registries.token,
        &registries.token_user,
        &registries.token_password,
    );
    let digest = TestImage::new("anon", 10).push(&pusher, &target).await;
    let anonymous = anonymous_client(ClientConfig::default());
    assert_eq!(
        anonymous
            .resolve(&target)
            .await
            .expect("anonymous pull")
            .digest,
        digest
    );

    let private = reference(&format!(
        "{}/{}:v1",
        registries.token,
        unique("dist/private")
    ));
    TestImage::new("private", 10).push(&pusher, &private).await;
    let err = anonymous
        .resolve(&private)
        .await
        .expect_err("private needs credentials");
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
}

#[tokio::test]
async fn token_auth_with_stale_credentials_still_pulls_public_images() {
    let registries = registries();
    let target = reference(&format!(
        "{}/public/{}:v1",
        registries.token,
        unique("dist-stale")
    ));
    let pusher = client_with(
        &registries.token,
        &registries.token_user,
        &registries.token_password,
    );
    let digest = TestImage::new("stale", 10).push(&pusher, &target).await;
    let stale = client_with(
        &registries.token,
        &registries.token_user,
        "expired-password",
    );
    let resolved = stale
        .resolve(&target)
        .await
        .expect("falls back to an anonymous token");
    assert_eq!(resolved.digest, digest);
}

#[tokio::test]
async fn progress_events_cover_every_byte() {
    let registries = registries();
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let client =
        anonymous_client(ClientConfig::default()).with_progress(ocidist::ProgressFn::new({
            let events = Arc::clone(&events);
            move |progress: &ocidist::Progress| events.lock().expect("lock").push(progress.clone())
        }));
    let target = reference(&format!(
        "{}/{}:v1",
        registries.plain,
        unique("dist/progress")
    ));
    let image = TestImage::new("progress", 300_000);
    image.push(&client, &target).await;
    let layer = descriptor(OCI_LAYER_TAR, &image.layer);
    events.lock().expect("lock").clear();
    client
        .blob_bytes(&target, &layer, 1 << 20)
        .await
        .expect("fetched");
    let events = events.lock().expect("lock").clone();
    assert_eq!(
        events.first().map(|e| e.phase),
        Some(ocidist::Phase::Started)
    );
    let last = events.last().expect("events");
    assert_eq!(last.phase, ocidist::Phase::Finished);
    assert_eq!((last.done, last.total), (layer.size, layer.size));
    let bytes: Vec<u64> = events
        .iter()
        .filter(|e| e.phase == ocidist::Phase::Bytes)
        .map(|e| e.done)
        .collect();
    assert!(!bytes.is_empty());
    assert!(
        bytes.windows(2).all(|w| w[0] < w[1]),
        "progress goes forward"
    );
    assert!(
        events
            .iter()
            .all(|e| e.subject == ocidist::Subject::Blob(layer.digest.clone()))
    );
}

#[tokio::test]
async fn a_short_file_fails_before_upload_naming_it() {
    let registries = registries();
    let client = anonymous_client(ClientConfig::default());
    let target = reference(&format!(
        "{}/{}:v1",
        registries.plain,
        unique("dist/short-file")
    ));
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("short");
    std::fs::write(&path, b"only ten b").expect("written");
    let claimed = Descriptor {
        media_type: OCI_LAYER_TAR.into(),
        digest: Digest::sha256_of(b"something longer than the file"),
        size: 30,
    };
    let err = client
        .push_blob(&target, &claimed, BlobSource::File(&path))
        .await
        .expect_err("the file is too short");
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}
