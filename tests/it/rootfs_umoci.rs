//! `rootfs::unpack` of the fixture images (gzip, uncompressed, zstd,
//! Docker v2s2, with an SBOM, multi-arch) and of the host's own system
//! tree equals `umoci raw unpack` of the same image.

use crate::rootfs_compare::assert_same_as_umoci;
use crate::rootfs_support::{
    GZIP_LAYER, Raw, fixture_layout, gzip, hand_built_store, put_blob, raw_tar, store_with_fixture,
};
use ociref::{Digest, Reference};
use ocistore::Store;
use std::path::Path;
use std::process::Command;

/// [`assert_same_as_umoci`] for fixture `name`, umoci reading `umoci_name`.
fn assert_fixture_same_as_umoci(name: &str, umoci_name: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), name);
    let (umoci_store, umoci_reference) = if umoci_name == name {
        (store.clone(), reference.clone())
    } else {
        store_with_fixture(&dir.path().join("umoci-store"), umoci_name)
    };
    assert_same_as_umoci(
        &store,
        &reference,
        &umoci_store,
        &umoci_reference,
        dir.path(),
    );
}

#[test]
fn small_equals_umoci() {
    assert_fixture_same_as_umoci("small", "small");
}

#[test]
fn layered_equals_umoci() {
    assert_fixture_same_as_umoci("layered", "layered");
}

#[test]
fn layered_uncompressed_equals_umoci() {
    assert_fixture_same_as_umoci("layered-uncompressed", "layered-uncompressed");
}

#[test]
fn layered_zstd_equals_umoci_of_the_gzip_twin() {
    // umoci 0.4 refuses zstd layers: compare with the same layers in gzip.
    assert_fixture_same_as_umoci("layered-zstd", "layered");
}

/// Adds `descriptor` (a JSON object) under `reference` to the `index.json`
/// of the layout at `root`.
fn add_index_entry(root: &Path, mut descriptor: serde_json::Value, reference: &str) {
    descriptor["annotations"] = serde_json::json!({
        "org.opencontainers.image.ref.name": reference
    });
    let path = root.join("index.json");
    let mut index: serde_json::Value = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_else(|| serde_json::json!({"schemaVersion": 2, "manifests": []}));
    index["manifests"]
        .as_array_mut()
        .expect("manifests")
        .push(descriptor);
    std::fs::write(&path, serde_json::to_vec(&index).expect("json")).expect("index written");
}

#[test]
fn docker_v2s2_equals_umoci_of_its_oci_twin() {
    // skopeo's `oci:` transport does not read Docker manifests and umoci
    // refuses them: the store gets the fixture's blobs and index entry by
    // hand, and umoci reads an OCI manifest over the same layer.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let layout = fixture_layout();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index"))
            .expect("json");
    let descriptor = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "docker-v2s2")
        .expect("docker-v2s2 in the layout")
        .clone();
    std::fs::create_dir_all(root.join("blobs/sha256")).expect("blobs");
    for blob in std::fs::read_dir(layout.join("blobs/sha256")).expect("blobs") {
        let blob = blob.expect("blob");
        std::fs::copy(
            blob.path(),
            root.join("blobs/sha256").join(blob.file_name()),
        )
        .expect("copied");
    }
    std::fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("layout");
    let digest: Digest = descriptor["digest"]
        .as_str()
        .expect("digest")
        .parse()
        .expect("digest");
    let mut manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("blobs/sha256").join(digest.encoded())).expect("manifest"),
    )
    .expect("json");
    add_index_entry(&root, descriptor, "example.com/fixtures/docker-v2s2:v1");
    manifest["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
    manifest["config"]["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
    for layer in manifest["layers"].as_array_mut().expect("layers") {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        layer["mediaType"] = GZIP_LAYER.into();
    }
    let twin = serde_json::to_vec(&manifest).expect("json");
    let twin_digest = put_blob(&root, &twin);
    add_index_entry(
        &root,
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": twin_digest.to_string(),
            "size": twin.len(),
        }),
        "example.com/fixtures/docker-v2s2-oci:v1",
    );
    let store = Store::open(&root).expect("store opens");
    let reference: Reference = "example.com/fixtures/docker-v2s2:v1"
        .parse()
        .expect("reference");
    let twin_reference: Reference = "example.com/fixtures/docker-v2s2-oci:v1"
        .parse()
        .expect("reference");
    assert_same_as_umoci(&store, &reference, &store, &twin_reference, dir.path());
}

#[test]
fn with_sbom_equals_umoci() {
    assert_fixture_same_as_umoci("with-sbom", "with-sbom");
}

#[test]
fn multiarch_host_platform_equals_umoci() {
    assert_fixture_same_as_umoci("multiarch", "multiarch");
}

#[test]
fn host_system_tree_equals_umoci() {
    // No mirror for debootstrap here: the layer is the host's own /etc,
    // /usr/sbin, /usr/share/zoneinfo and /usr/share/perl, written by GNU tar
    // (its real owners, modes, symlinks); a second layer whites some out.
    let dir = tempfile::tempdir().expect("tempdir");
    let paths: Vec<&str> = ["etc", "usr/sbin", "usr/share/zoneinfo", "usr/share/perl"]
        .into_iter()
        .filter(|p| Path::new("/").join(p).exists())
        .collect();
    let output = Command::new("tar")
        .args(["-C", "/", "--numeric-owner", "-cf", "-"])
        // The parents first, as image builders write them (a parent no
        // layer declares gets mode 0755 and mtime 0 from rootfs, the time
        // of the unpack from umoci).
        .args(["--no-recursion", "usr", "usr/share", "--recursion"])
        .args(&paths)
        .output()
        .expect("tar runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let upper = raw_tar(&[
        Raw::File("usr/share/.wh.zoneinfo", b""),
        Raw::Dir("etc/"),
        Raw::File("etc/.wh..wh..opq", b""),
        Raw::File("etc/hostname", b"cachectl\n"),
    ]);
    let (store, reference) = hand_built_store(
        &dir.path().join("store"),
        &[
            (gzip(&output.stdout), GZIP_LAYER),
            (gzip(&upper), GZIP_LAYER),
        ],
    );
    assert_same_as_umoci(&store, &reference, &store, &reference, dir.path());
}
