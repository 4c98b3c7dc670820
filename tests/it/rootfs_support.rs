//! Helpers of the `rootfs` tests: stores holding a fixture image (copied
//! with skopeo) or hand-built layers (raw tar entries, `..` and absolute
//! names included), build options, and the `e2fsck`/`debugfs` readers of
//! ext4 images.

use ociref::{Digest, Reference};
use ocistore::Store;
use rootfs::{BuildOptions, UnpackOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The fixture layout, built once per test binary.
pub(crate) fn fixture_layout() -> &'static Path {
    static LAYOUT: OnceLock<tempfile::TempDir> = OnceLock::new();
    LAYOUT
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            cachectl_fixtures::build_layout(dir.path(), &Default::default())
                .expect("fixtures build");
            dir
        })
        .path()
}

/// A store at `root` holding fixture `name` as `example.com/fixtures/<name>:v1`,
/// copied from the fixture layout with skopeo (no registry).
pub(crate) fn store_with_fixture(root: &Path, name: &str) -> (Store, Reference) {
    let reference = format!("example.com/fixtures/{name}:v1");
    let output = Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:{name}", fixture_layout().display()))
        .arg(format!("oci:{}:{reference}", root.display()))
        .output()
        .expect("skopeo runs");
    assert!(
        output.status.success(),
        "skopeo copy failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let store = Store::open(root).expect("store opens");
    (store, reference.parse().expect("reference"))
}

/// The single-platform fixtures every build test makes an image of.
pub(crate) const BUILD_FIXTURES: [&str; 6] = [
    "small",
    "layered",
    "layered-uncompressed",
    "layered-zstd",
    "merged-usr",
    "with-sbom",
];

pub(crate) fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
        == 0
}

pub(crate) fn makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xfffff000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffffff00) << 12)
        | (minor & 0xff)
}

/// One tar entry of a hand-built layer: raw name bytes (no validation, so
/// `..` and absolute paths can be written).
pub(crate) enum Raw<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

pub(crate) fn raw_tar(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_ustar();
        let (name, kind, link, data): (&str, tar::EntryType, &str, &[u8]) = match entry {
            Raw::File(name, data) => (name, tar::EntryType::Regular, "", data),
            Raw::Dir(name) => (name, tar::EntryType::Directory, "", b""),
            Raw::Symlink(name, target) => (name, tar::EntryType::Symlink, target, b""),
            Raw::Hardlink(name, target) => (name, tar::EntryType::Link, target, b""),
        };
        let old = header.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname = [0; 100];
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder.append(&header, data).expect("append");
    }
    builder.into_inner().expect("tar")
}

pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

pub(crate) fn put_blob(root: &Path, bytes: &[u8]) -> Digest {
    let digest = Digest::sha256_of(bytes);
    let dir = root.join("blobs/sha256");
    std::fs::create_dir_all(&dir).expect("blobs dir");
    std::fs::write(dir.join(digest.encoded()), bytes).expect("blob written");
    digest
}

/// A store at `root` holding an image of one gzip layer: a file `noise`
/// of `len` incompressible bytes from `seed`.
pub(crate) fn noise_image_store(root: &Path, seed: u64, len: usize) -> (Store, Reference) {
    let content = crate::store::noise(seed, len);
    let layer = gzip(&raw_tar(&[Raw::File("noise", &content)]));
    hand_built_store(root, &[(layer, GZIP_LAYER)])
}

/// A layout at `root` whose image `example.com/test/hand-built:v1` has these
/// layers (already encoded, with their media types).
pub(crate) fn hand_built_store(root: &Path, layers: &[(Vec<u8>, &str)]) -> (Store, Reference) {
    hand_built_store_with_diff_ids(root, layers, &[])
}

/// [`hand_built_store`] with the given diff IDs (computed when empty).
pub(crate) fn hand_built_store_with_diff_ids(
    root: &Path,
    layers: &[(Vec<u8>, &str)],
    given_diff_ids: &[Digest],
) -> (Store, Reference) {
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for (bytes, media_type) in layers {
        let digest = put_blob(root, bytes);
        let diff_id = given_diff_ids
            .get(diff_ids.len())
            .cloned()
            .unwrap_or_else(|| {
                let uncompressed = if bytes.starts_with(&[0x1f, 0x8b]) {
                    let mut out = Vec::new();
                    std::io::Read::read_to_end(
                        &mut flate2::read::MultiGzDecoder::new(&bytes[..]),
                        &mut out,
                    )
                    .expect("gunzip");
                    out
                } else {
                    bytes.clone()
                };
                Digest::sha256_of(&uncompressed)
            });
        diff_ids.push(format!("\"{diff_id}\""));
        descriptors.push(format!(
            r#"{{"mediaType":"{media_type}","digest":"{digest}","size":{}}}"#,
            bytes.len()
        ));
    }
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        diff_ids.join(",")
    );
    let config_digest = put_blob(root, config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{}]}}"#,
        config.len(),
        descriptors.join(",")
    );
    let manifest_digest = put_blob(root, manifest.as_bytes());
    let reference = "example.com/test/hand-built:v1";
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"{reference}"}}}}]}}"#,
        manifest.len()
    );
    std::fs::write(root.join("index.json"), index).expect("index");
    std::fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("layout");
    let store = Store::open(root).expect("store opens");
    (store, reference.parse().expect("reference"))
}

pub(crate) const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Unpacks hand-built gzip layers into `<dir>/box/target`; returns the
/// result and the `box` directory, which must hold nothing but `target`.
pub(crate) fn unpack_layers(
    dir: &Path,
    layers: &[Vec<Raw<'_>>],
) -> (rootfs::Result<rootfs::UnpackReport>, PathBuf) {
    let encoded: Vec<(Vec<u8>, &str)> = layers
        .iter()
        .map(|entries| (gzip(&raw_tar(entries)), GZIP_LAYER))
        .collect();
    let (store, reference) = hand_built_store(&dir.join("store"), &encoded);
    let sandbox = dir.join("box");
    std::fs::create_dir_all(&sandbox).expect("box");
    let result = rootfs::unpack(
        &store.image(&reference, None).expect("stored image"),
        &sandbox.join("target"),
        &UnpackOptions::default(),
    );
    (result, sandbox)
}

/// A refused unpack wrote nothing: not beside the target, not in it (the
/// layers go to a staging directory renamed into place on success).
pub(crate) fn only_target_in(sandbox: &Path) {
    let names: Vec<_> = std::fs::read_dir(sandbox)
        .expect("box")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(names.is_empty(), "something was left: {names:?}");
}

/// A tar entry with the given metadata (for tests where headers say
/// something other than [`raw_tar`]'s defaults).
pub(crate) fn entry_with(
    builder: &mut tar::Builder<Vec<u8>>,
    kind: tar::EntryType,
    (name, link): (&str, &str),
    (mode, uid, mtime): (u32, u64, u64),
    data: &[u8],
) {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_path(name).expect("path");
    if !link.is_empty() {
        header.set_link_name(link).expect("link name");
    }
    header.set_mode(mode);
    header.set_uid(uid);
    header.set_gid(uid);
    header.set_mtime(mtime);
    header.set_size(data.len() as u64);
    header.set_cksum();
    builder.append(&header, data).expect("append");
}

pub(crate) fn debugfs(image: &Path, request: &str) -> String {
    let output = Command::new("debugfs")
        .arg("-R")
        .arg(request)
        .arg(image)
        .output()
        .expect("debugfs runs");
    assert!(output.status.success(), "debugfs failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) fn e2fsck_passes(image: &Path) {
    let output = Command::new("e2fsck")
        .args(["-fn"])
        .arg(image)
        .output()
        .expect("e2fsck runs");
    assert!(
        output.status.success(),
        "e2fsck -fn failed on {}: {}{}",
        image.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

pub(crate) fn rootless_build_options() -> BuildOptions {
    let mut options = BuildOptions::default();
    options.unpack = UnpackOptions::rootless();
    options
}
