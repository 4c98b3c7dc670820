use super::ImportOptions;
use crate::error::Error;
use crate::layout::Store;
use ocidist::media_types::OCI_LAYER_TAR;
use ociref::{Digest, Reference};

fn file(builder: &mut tar::Builder<Vec<u8>>, name: &str, bytes: &[u8]) {
    let mut header = tar::Header::new_ustar();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, name, bytes)
        .expect("in memory");
}

/// A one-file uncompressed layer and a config listing it `count` times.
fn image(count: usize) -> (Vec<u8>, Digest, Vec<u8>) {
    let mut layer = tar::Builder::new(Vec::new());
    file(&mut layer, "hello", b"hello\n");
    let layer = layer.into_inner().expect("in memory");
    let diff_id = Digest::sha256_of(&layer);
    let config = serde_json::json!({
        "architecture": "arm64",
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": vec![diff_id.to_string(); count] },
    });
    (
        layer,
        diff_id,
        serde_json::to_vec(&config).expect("serializes"),
    )
}

fn layers_of(store: &Store, manifest: &Digest) -> Vec<(String, String)> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&store.read_blob(manifest).expect("stored")).expect("JSON");
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| (l["mediaType"].to_string(), l["digest"].to_string()))
        .collect()
}

#[test]
fn a_classic_docker_save_with_a_symlinked_layer_imports() {
    let (layer, diff_id, config) = image(2);
    let config_hex = Digest::sha256_of(&config).encoded().to_owned();
    let mut tar = tar::Builder::new(Vec::new());
    file(&mut tar, &format!("{config_hex}.json"), &config);
    file(&mut tar, "aaa/layer.tar", &layer);
    let mut link = tar::Header::new_ustar();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    tar.append_link(&mut link, "bbb/layer.tar", "../aaa/layer.tar")
        .expect("in memory");
    let manifest = serde_json::json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": ["alpine:3.20"],
        "Layers": ["aaa/layer.tar", "bbb/layer.tar"],
    }]);
    file(&mut tar, "manifest.json", manifest.to_string().as_bytes());
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("save.tar");
    std::fs::write(&archive, tar.into_inner().expect("in memory")).expect("written");
    let store = Store::open(dir.path().join("store")).expect("store");
    let report = store
        .import(&archive, &ImportOptions::default())
        .expect("imports");
    assert_eq!(report.images.len(), 1);
    assert_eq!(report.images[0].reference, "docker.io/library/alpine:3.20");
    let layer_entry = (format!("{OCI_LAYER_TAR:?}"), format!("\"{diff_id}\""));
    assert_eq!(
        layers_of(&store, &report.images[0].manifest_digest),
        [layer_entry.clone(), layer_entry]
    );
    let record = store
        .record("docker.io/library/alpine:3.20")
        .expect("reads")
        .expect("a record");
    assert_eq!(
        record.platform,
        Some("linux/arm64".parse().expect("platform"))
    );
    assert!(store.verify().expect("verify").is_ok());
    assert_eq!(
        std::fs::read_dir(store.ingest_dir())
            .expect("ingest")
            .count(),
        0
    );
}

#[test]
fn a_docker_25_archive_with_blob_paths_imports_under_options_name() {
    let (layer, diff_id, config) = image(1);
    let config_digest = Digest::sha256_of(&config);
    let mut tar = tar::Builder::new(Vec::new());
    file(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    file(
        &mut tar,
        "index.json",
        br#"{"schemaVersion":2,"manifests":[]}"#,
    );
    let blob = |d: &Digest| format!("blobs/sha256/{}", d.encoded());
    file(&mut tar, &blob(&config_digest), &config);
    file(&mut tar, &blob(&diff_id), &layer);
    let manifest = serde_json::json!([{
        "Config": blob(&config_digest),
        "RepoTags": null,
        "Layers": [blob(&diff_id)],
    }]);
    file(&mut tar, "manifest.json", manifest.to_string().as_bytes());
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("save.tar");
    std::fs::write(&archive, tar.into_inner().expect("in memory")).expect("written");
    let store = Store::open(dir.path().join("store")).expect("store");
    let err = store
        .import(&archive, &ImportOptions::default())
        .expect_err("no RepoTags and no name");
    assert!(matches!(err, Error::ArchiveUnnamed { .. }), "{err:?}");
    let name: Reference = "example.com/app:v2".parse().expect("reference");
    let report = store
        .import(&archive, &ImportOptions::default().with_name(name))
        .expect("imports");
    assert_eq!(report.images[0].reference, "example.com/app:v2");
    assert_eq!(
        layers_of(&store, &report.images[0].manifest_digest),
        [(format!("{OCI_LAYER_TAR:?}"), format!("\"{diff_id}\""))]
    );
    assert!(store.verify().expect("verify").is_ok());
}

#[test]
fn an_uncompressed_docker_layer_must_hash_to_its_diff_id() {
    let (layer, _, _) = image(1);
    let other = Digest::sha256_of(b"another layer");
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [other.to_string()] },
    })
    .to_string();
    let mut tar = tar::Builder::new(Vec::new());
    file(&mut tar, "c.json", config.as_bytes());
    file(&mut tar, "x/layer.tar", &layer);
    let manifest = r#"[{"Config":"c.json","RepoTags":["a.example/b:c"],"Layers":["x/layer.tar"]}]"#;
    file(&mut tar, "manifest.json", manifest.as_bytes());
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("save.tar");
    std::fs::write(&archive, tar.into_inner().expect("in memory")).expect("written");
    let store = Store::open(dir.path().join("store")).expect("store");
    let err = store
        .import(&archive, &ImportOptions::default())
        .expect_err("the layer is not its diff_id");
    assert!(
        matches!(&err, Error::ArchiveDigestMismatch { entry, expected, .. }
            if entry == "x/layer.tar" && *expected == other),
        "{err:?}"
    );
    assert!(store.list().expect("list").is_empty());
    assert_eq!(
        std::fs::read_dir(store.ingest_dir())
            .expect("ingest")
            .count(),
        0
    );
}

#[test]
fn entries_named_outside_the_archive_are_never_matched() {
    let mut tar = tar::Builder::new(Vec::new());
    let index = br#"{"schemaVersion":2,"manifests":[]}"#;
    for name in ["../index.json", "/index.json", "x/../../manifest.json"] {
        // `set_path` refuses such names: write the raw header field.
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(index.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append(&header, &index[..]).expect("in memory");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("escape.tar");
    std::fs::write(&archive, tar.into_inner().expect("in memory")).expect("written");
    let store = Store::open(dir.path().join("store")).expect("store");
    let err = store
        .import(&archive, &ImportOptions::default())
        .expect_err("nothing usable");
    assert!(matches!(err, Error::ArchiveFormat { .. }), "{err:?}");
    assert!(!dir.path().join("index.json").exists());
    assert!(!dir.path().join("manifest.json").exists());
}
