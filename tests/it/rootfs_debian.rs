//! A Debian root file system, pushed to the test registry with skopeo,
//! pulled with `ocistore`, unpacked by rootfs and by `umoci raw unpack`
//! and compared with the comparator of `rootfs_compare.rs`; then its
//! per-layer ext4 images are stacked with overlayfs (see `rootfs_overlay.rs`).
//!
//! The base layer is `debootstrap --variant=minbase bookworm` output when
//! debootstrap is installed, the tests run as root and the mirror answers
//! within 5 s; otherwise (or with `CACHECTL_TEST_DEBIAN_SOURCE=host`) it is
//! a part of the host's own Debian system: `/etc`, `/usr/sbin`, the files of
//! `/usr/bin` up to 4 MiB, `/usr/share/doc` and `/usr/share/zoneinfo`. The
//! test prints which one it used. A second layer, generated here, whites
//! out a directory and a file, makes `/etc/default` opaque, replaces a file,
//! a symlink and a directory's owner and mode, links to a lower setuid file
//! and adds files with owners, setuid/setgid/sticky bits and xattrs.

use crate::rootfs_compare::assert_same_as_umoci;
use crate::rootfs_overlay::{
    assert_layer_images_of_type_stack_to_the_unpack, assert_layer_images_stack_to_the_unpack,
};
use crate::rootfs_support::running_as_root;
use crate::store::client;
use cachectl_tests::{registries, unique};
use ociref::{Digest, Reference};
use ocistore::{PullOptions, Store};
use sha2::Digest as _;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// `debootstrap` or `host`: which base layer to build (default: debootstrap
/// when possible, else host).
const ENV_SOURCE: &str = "CACHECTL_TEST_DEBIAN_SOURCE";
/// The Debian mirror for debootstrap (default `http://deb.debian.org/debian`).
const ENV_MIRROR: &str = "CACHECTL_TEST_DEBIAN_MIRROR";
const SUITE: &str = "bookworm";
const MTIME: u64 = 1_700_000_000;
/// Host files of `/usr/bin` above this size are left out of the host tree.
const HOST_MAX_FILE: u64 = 4 << 20;

/// `security.capability` granting `cap_net_raw=ep` (revision 2).
const CAP_NET_RAW: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00,
];

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn mirror() -> String {
    std::env::var(ENV_MIRROR).unwrap_or_else(|_| "http://deb.debian.org/debian".to_owned())
}

/// Why debootstrap cannot be used here, if it cannot.
fn debootstrap_unavailable(mirror: &str) -> Option<String> {
    if find_program("debootstrap").is_none() {
        return Some("debootstrap is not installed".to_owned());
    }
    if !running_as_root() {
        return Some("not root".to_owned());
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client builds");
    let url = format!("{mirror}/dists/{SUITE}/Release");
    match client.head(&url).send() {
        Ok(response) if response.status().is_success() => None,
        Ok(response) => Some(format!("{url} answered {}", response.status())),
        Err(err) => Some(format!("{url} unreachable: {err}")),
    }
}

/// Runs debootstrap into `root`, its downloads kept in the test target
/// directory for the next run.
fn debootstrap(root: &Path, mirror: &str) -> Result<(), String> {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debootstrap-cache");
    std::fs::create_dir_all(&cache).expect("cache dir");
    let output = Command::new(find_program("debootstrap").expect("found before"))
        .arg("--variant=minbase")
        .arg(format!("--cache-dir={}", cache.display()))
        .arg(SUITE)
        .arg(root)
        .arg(mirror)
        .output()
        .map_err(|err| format!("debootstrap cannot run: {err}"))?;
    if output.status.success() {
        return Ok(());
    }
    let log = std::fs::read_to_string(root.join("debootstrap/debootstrap.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(20).collect();
    Err(format!(
        "debootstrap failed ({}): {}{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    ))
}

/// `dir` and below, sorted, as paths relative to `/` (directories listed
/// before their content); files of `usr/bin` over [`HOST_MAX_FILE`] and
/// sockets are left out.
fn host_paths(rel: &str, out: &mut Vec<String>) {
    let path = Path::new("/").join(rel);
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        return;
    };
    let file_type = meta.file_type();
    if rel.starts_with("usr/bin/") && file_type.is_file() && meta.len() > HOST_MAX_FILE {
        return;
    }
    if std::os::unix::fs::FileTypeExt::is_socket(&file_type) {
        return;
    }
    out.push(rel.to_owned());
    if file_type.is_dir() {
        let mut names: Vec<String> = std::fs::read_dir(&path)
            .expect("readable")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            host_paths(&format!("{rel}/{name}"), out);
        }
    }
}

/// Writes the base layer as an uncompressed tar to `out` with GNU tar
/// (numeric owners, xattrs, sorted names); returns the root it was read
/// from and what it is.
fn base_layer(dir: &Path, out: &Path) -> (PathBuf, String) {
    let mirror = mirror();
    let forced = std::env::var(ENV_SOURCE).ok();
    let mut why_host = match forced.as_deref() {
        Some("host") => Some(format!("{ENV_SOURCE}=host")),
        Some("debootstrap") | None => debootstrap_unavailable(&mirror),
        Some(other) => panic!("{ENV_SOURCE}={other}: expected `debootstrap` or `host`"),
    };
    if forced.as_deref() == Some("debootstrap")
        && let Some(reason) = &why_host
    {
        panic!("{ENV_SOURCE}=debootstrap but {reason}");
    }
    let mut tar = Command::new("tar");
    tar.args([
        "--numeric-owner",
        "--xattrs",
        "--xattrs-include=*",
        "--sort=name",
        "-cf",
    ])
    .arg(out);
    let root = if why_host.is_none() {
        let root = dir.join("debootstrap");
        let started = Instant::now();
        match debootstrap(&root, &mirror) {
            Ok(()) => {
                eprintln!("debootstrap {SUITE} minbase: {:?}", started.elapsed());
            }
            Err(err) => {
                assert!(forced.is_none(), "{err}");
                why_host = Some(err);
            }
        }
        root
    } else {
        PathBuf::from("/")
    };
    let (root, source) = match why_host {
        None => {
            let mut names: Vec<String> = std::fs::read_dir(&root)
                .expect("debootstrap root")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                // debootstrap's own directory is left only after a failure.
                .filter(|name| name != "debootstrap")
                .collect();
            names.sort();
            tar.arg("-C").arg(&root).args(&names);
            (
                root,
                format!("debootstrap --variant=minbase {SUITE} {mirror}"),
            )
        }
        Some(reason) => {
            eprintln!("Debian tree from the host's own files: {reason}");
            let mut paths = vec!["usr".to_owned(), "usr/share".to_owned()];
            for top in [
                "etc",
                "usr/bin",
                "usr/sbin",
                "usr/share/doc",
                "usr/share/zoneinfo",
            ] {
                host_paths(top, &mut paths);
            }
            let list = dir.join("host-paths");
            std::fs::write(&list, paths.join("\0")).expect("list");
            tar.args(["-C", "/", "--no-recursion", "--null", "-T"])
                .arg(&list);
            (PathBuf::from("/"), format!("host files ({reason})"))
        }
    };
    let output = tar.output().expect("tar runs");
    assert!(
        output.status.success(),
        "tar of the base layer failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (root, source)
}

/// A tar entry of the second layer.
struct Entry {
    path: String,
    kind: tar::EntryType,
    mode: u32,
    owner: (u64, u64),
    link: String,
    mtime: u64,
    data: Vec<u8>,
    xattrs: Vec<(&'static str, Vec<u8>)>,
}

impl Entry {
    fn new(path: &str, kind: tar::EntryType, mode: u32) -> Entry {
        Entry {
            path: path.to_owned(),
            kind,
            mode,
            owner: (0, 0),
            link: String::new(),
            mtime: MTIME,
            data: Vec::new(),
            xattrs: Vec::new(),
        }
    }
    fn dir(path: &str, mode: u32) -> Entry {
        Entry::new(path, tar::EntryType::Directory, mode)
    }
    fn file(path: &str, mode: u32, data: &[u8]) -> Entry {
        let mut entry = Entry::new(path, tar::EntryType::Regular, mode);
        entry.data = data.to_vec();
        entry
    }
    fn link(path: &str, kind: tar::EntryType, target: &str) -> Entry {
        let mut entry = Entry::new(path, kind, 0o777);
        entry.link = target.to_owned();
        entry
    }
    fn owner(mut self, uid: u64, gid: u64) -> Entry {
        self.owner = (uid, gid);
        self
    }
}

/// One PAX record, `<length> <key>=<value>\n`, the length counting itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len += 1;
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        if !entry.xattrs.is_empty() {
            let records: Vec<u8> = entry
                .xattrs
                .iter()
                .flat_map(|(name, value)| pax_record(&format!("SCHILY.xattr.{name}"), value))
                .collect();
            let mut header = tar::Header::new_ustar();
            header.set_path("PaxHeaders/entry").expect("name");
            header.set_entry_type(tar::EntryType::XHeader);
            header.set_size(records.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(MTIME);
            header.set_cksum();
            builder.append(&header, &records[..]).expect("pax");
        }
        let mut header = tar::Header::new_ustar();
        header.set_path(&entry.path).expect("path");
        header.set_entry_type(entry.kind);
        if !entry.link.is_empty() {
            header.set_link_name(&entry.link).expect("link");
        }
        header.set_mode(entry.mode);
        header.set_uid(entry.owner.0);
        header.set_gid(entry.owner.1);
        header.set_mtime(entry.mtime);
        header.set_size(entry.data.len() as u64);
        header.set_cksum();
        builder.append(&header, &entry.data[..]).expect("append");
    }
    builder.into_inner().expect("tar")
}

/// The entries of `dir` (relative to `root`), sorted.
fn sorted_children(root: &Path, dir: &str) -> Vec<(String, std::fs::Metadata)> {
    let mut children: Vec<(String, std::fs::Metadata)> = std::fs::read_dir(root.join(dir))
        .unwrap_or_else(|err| panic!("{dir} in the base tree: {err}"))
        .map(|e| {
            let e = e.expect("entry");
            let meta = std::fs::symlink_metadata(e.path()).expect("metadata");
            (format!("{dir}/{}", e.file_name().to_string_lossy()), meta)
        })
        .collect();
    children.sort_by(|a, b| a.0.cmp(&b.0));
    children
}

/// Paths the second layer changes, for checking the unpacked tree.
struct Changes {
    /// A directory and a file of `etc` whited out.
    gone: [String; 2],
    /// A symlink of the base replaced by a file.
    now_file: String,
    /// A file of the base replaced by a symlink.
    now_symlink: String,
    /// A hardlink to a setuid file of the base.
    hardlink: String,
}

/// The second layer, chosen from what the base tree at `root` holds (the
/// first match by name, so the same base gives the same layer).
fn upper_layer(root: &Path) -> (Vec<u8>, Changes) {
    let etc = sorted_children(root, "etc");
    let non_empty_dir = |(path, meta): &&(String, std::fs::Metadata)| {
        meta.is_dir()
            && path != "etc/default"
            && std::fs::read_dir(root.join(path)).is_ok_and(|mut d| d.next().is_some())
    };
    let gone_dir = &etc
        .iter()
        .find(non_empty_dir)
        .expect("a directory in etc")
        .0;
    let gone_file = &etc
        .iter()
        .find(|(path, meta)| meta.is_file() && meta.len() > 0 && path != "etc/passwd")
        .expect("a file in etc")
        .0;
    let symlink = &etc
        .iter()
        .find(|(_, meta)| meta.is_symlink())
        .expect("a symlink in etc (os-release)")
        .0;
    let replaced = &etc
        .iter()
        .find(|(path, meta)| meta.is_file() && path != gone_file && path != "etc/passwd")
        .expect("a second file in etc")
        .0;
    let (setuid, setuid_meta) = &sorted_children(root, "usr/bin")
        .into_iter()
        .find(|(_, meta)| meta.is_file() && meta.mode() & 0o4000 != 0)
        .expect("a setuid program in usr/bin");
    assert!(
        root.join("etc/default").is_dir(),
        "no etc/default in the base"
    );
    let mut passwd = std::fs::read(root.join("etc/passwd")).expect("etc/passwd in the base");
    passwd.extend_from_slice(b"cachectl:x:1000:1000:cachectl:/home/user:/bin/sh\n");
    let name = |path: &str| path.rsplit_once('/').expect("below etc").1.to_owned();
    let hardlink = "usr/local/bin/setuid-link".to_owned();
    use tar::EntryType::{Link, Symlink};
    let mut tool = Entry::file("usr/local/bin/tool", 0o4755, b"#!/bin/sh\necho tool\n");
    tool.xattrs = vec![
        ("security.capability", CAP_NET_RAW.to_vec()),
        ("user.cachectl", b"layer 2".to_vec()),
    ];
    let entries = vec![
        Entry::dir("etc/", 0o755),
        Entry::file(&format!("etc/.wh.{}", name(gone_dir)), 0o644, b""),
        Entry::file(&format!("etc/.wh.{}", name(gone_file)), 0o644, b""),
        Entry::dir("etc/default/", 0o750).owner(0, 4),
        Entry::file("etc/default/.wh..wh..opq", 0o644, b""),
        Entry::file("etc/default/cachectl", 0o640, b"ENABLED=yes\n").owner(0, 4),
        Entry::file("etc/passwd", 0o644, &passwd),
        Entry::file(symlink, 0o644, b"a file where a symlink was\n"),
        Entry::link(replaced, Symlink, "passwd"),
        Entry::dir("home/", 0o755),
        Entry::dir("home/user/", 0o700).owner(1000, 1000),
        Entry::file("home/user/.profile", 0o600, b"PATH=$HOME/bin:$PATH\n").owner(1000, 1000),
        Entry::dir("srv/", 0o755),
        Entry::dir("srv/shared/", 0o3775).owner(0, 50),
        Entry::file("srv/shared/readme", 0o664, b"shared\n").owner(1000, 50),
        Entry::dir("usr/", 0o755),
        Entry::dir("usr/local/", 0o2775).owner(0, 50),
        Entry::dir("usr/local/bin/", 0o2775).owner(0, 50),
        tool,
        // The header carries the lower file's mode, owner and mtime, as GNU
        // tar writes them: `build_layers` gives its copy the header's
        // metadata, not the lower file's (see docs/rootfs.md).
        Entry {
            mode: setuid_meta.mode() & 0o7777,
            owner: (setuid_meta.uid().into(), setuid_meta.gid().into()),
            mtime: setuid_meta.mtime() as u64,
            ..Entry::link(&hardlink, Link, setuid)
        },
        Entry {
            mode: 0o4755,
            ..Entry::link("usr/local/bin/tool-link", Link, "usr/local/bin/tool")
        },
    ];
    let changes = Changes {
        gone: [gone_dir.clone(), gone_file.clone()],
        now_file: symlink.clone(),
        now_symlink: replaced.clone(),
        hardlink,
    };
    (layer_tar(&entries), changes)
}

/// Gzips `tar` into the layout's blobs; returns the layer descriptor and
/// the diff ID.
fn put_gzip_layer(layout: &Path, tar: &Path) -> (serde_json::Value, String) {
    let mut input = std::io::BufReader::new(std::fs::File::open(tar).expect("tar"));
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        let n = input.read(&mut buffer).expect("read");
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        encoder.write_all(&buffer[..n]).expect("gzip");
    }
    let diff_id: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let compressed = encoder.finish().expect("gzip");
    let digest = crate::rootfs_support::put_blob(layout, &compressed);
    (
        serde_json::json!({
            "mediaType": crate::rootfs_support::GZIP_LAYER,
            "digest": digest.to_string(),
            "size": compressed.len(),
        }),
        format!("sha256:{diff_id}"),
    )
}

/// Writes an OCI layout at `layout` whose image `debian` has these layer
/// tars (gzipped here).
fn write_layout(layout: &Path, tars: &[PathBuf]) {
    let (layers, diff_ids): (Vec<_>, Vec<_>) =
        tars.iter().map(|t| put_gzip_layer(layout, t)).unzip();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .expect("json");
    let config_digest = crate::rootfs_support::put_blob(layout, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest.to_string(),
            "size": config.len(),
        },
        "layers": layers,
    }))
    .expect("json");
    let digest: Digest = crate::rootfs_support::put_blob(layout, &manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest.to_string(),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "debian"},
        }],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).expect("index");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("layout");
}

/// Builds the Debian image (a debootstrap base and [`upper_layer`]) under
/// `dir`, pushes it with skopeo to the test registry and pulls it into a
/// store there: the store, the reference and what the upper layer changed.
fn pushed_and_pulled_debian(dir: &Path, started: Instant) -> (Store, Reference, Changes) {
    let base_tar = dir.join("base.tar");
    let (base_root, source) = base_layer(dir, &base_tar);
    let (upper, changes) = upper_layer(&base_root);
    let upper_tar = dir.join("upper.tar");
    std::fs::write(&upper_tar, &upper).expect("upper");
    let layout = dir.join("layout");
    write_layout(&layout, &[base_tar.clone(), upper_tar]);
    let base_size = std::fs::metadata(&base_tar).expect("base").len();
    assert!(
        base_size > 20 << 20,
        "base layer of {base_size} bytes is not a system"
    );
    if base_root != Path::new("/") {
        // The debootstrap tree is no longer needed: free the space.
        let _ = std::fs::remove_dir_all(&base_root);
    }
    eprintln!(
        "Debian image from {source}: base layer {} MB uncompressed, built in {:?}",
        base_size >> 20,
        started.elapsed()
    );

    let reference: Reference = format!("{}/{}:v1", registries().plain, unique("rootfs-debian"))
        .parse()
        .expect("reference");
    let push = Instant::now();
    let output = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:debian", layout.display()))
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo runs");
    assert!(
        output.status.success(),
        "skopeo copy to the registry failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let store = Store::open(dir.join("store")).expect("store opens");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let pulled = runtime
        .block_on(store.pull(&client(), &reference, &PullOptions::default()))
        .expect("pull succeeds");
    assert_eq!(pulled.fetched_blobs, 4, "manifest, config and two layers");
    eprintln!("skopeo push and store pull: {:?}", push.elapsed());
    std::fs::remove_dir_all(&layout).expect("layout removed");
    (store, reference, changes)
}

#[test]
fn debian_rootfs_pushed_and_pulled_equals_umoci_and_its_layer_overlay() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference, changes) = pushed_and_pulled_debian(dir.path(), started);
    let compare = Instant::now();
    let unpacked = dir.path().join("umoci");
    assert_same_as_umoci(&store, &reference, &store, &reference, &unpacked);
    // The comparator saw the second layer's changes (not two empty trees).
    let tree = crate::rootfs_compare::tree(&unpacked.join("ours"));
    assert!(tree.len() > 1000, "only {} paths", tree.len());
    assert_eq!(tree["usr/local/bin/tool"].mode, 0o4755);
    assert!(
        tree["usr/local/bin/tool"]
            .xattrs
            .contains_key("user.cachectl")
    );
    assert_eq!(tree["etc/default"].mode, 0o750);
    let in_default: Vec<&String> = tree
        .keys()
        .filter(|p| p.starts_with("etc/default/"))
        .collect();
    assert_eq!(in_default, ["etc/default/cachectl"], "opaque etc/default");
    for gone in &changes.gone {
        assert!(!tree.contains_key(gone), "{gone} was whited out");
    }
    assert_eq!(tree[&changes.now_file].kind, "file");
    assert_eq!(tree[&changes.now_symlink].kind, "symlink");
    let hardlink = &changes.hardlink;
    assert!(
        tree[hardlink].hardlinks.len() >= 2 && tree[hardlink].mode & 0o4000 != 0,
        "{hardlink} not linked to the lower setuid file: {:?}",
        tree[hardlink]
    );
    eprintln!(
        "unpack and compare with umoci ({} paths): {:?}",
        tree.len(),
        compare.elapsed()
    );
    std::fs::remove_dir_all(&unpacked).expect("trees removed");

    let merge = Instant::now();
    let merged = dir.path().join("merged");
    std::fs::create_dir(&merged).expect("dir");
    crate::rootfs_merge::assert_merge_equals_unpack(&store, &reference, &merged);
    std::fs::remove_dir_all(&merged).expect("trees removed");
    eprintln!(
        "merged stream and export against the unpack: {:?}",
        merge.elapsed()
    );

    let overlay = Instant::now();
    let layers_dir = dir.path().join("layers");
    std::fs::create_dir(&layers_dir).expect("dir");
    let check = assert_layer_images_stack_to_the_unpack(&store, &reference, &layers_dir);
    assert_eq!(check.layers, 2);
    assert_eq!((check.whiteouts, check.opaque), (2, 1));
    if let Some(split) = &check.split_links {
        assert!(split.contains(hardlink), "{hardlink} not split: {split:?}");
    }
    eprintln!("layer images and overlay: {:?}", overlay.elapsed());

    // The same layers as squashfs lowers, from the stream.
    let read_only = Instant::now();
    let squashfs_dir = dir.path().join("squashfs-layers");
    std::fs::create_dir(&squashfs_dir).expect("dir");
    let kind = (rootfs::FsType::Squashfs, false, None);
    let check =
        assert_layer_images_of_type_stack_to_the_unpack(&store, &reference, &squashfs_dir, kind);
    assert_eq!((check.layers, check.whiteouts, check.opaque), (2, 2, 1));
    // And the whole image as one squashfs root.
    crate::rootfs_readonly::assert_image_holds_the_unpack(
        &store,
        &reference,
        &squashfs_dir,
        rootfs::FsType::Squashfs,
    );
    eprintln!(
        "squashfs lowers and overlay, squashfs root: {:?}",
        read_only.elapsed()
    );

    // The same tree from the flattened tar through `mke2fs -d -`.
    if !crate::rootfs_ext4_tar::skip_without_tar_input(&dir.path().join("probe")) {
        let (build, export, from_tar) = crate::rootfs_ext4_tar::assert_tar_image_holds_the_build(
            &store,
            &reference,
            dir.path(),
        );
        eprintln!(
            "build {build:?}; export_tar {export:?}, then ext4_from_tar {from_tar:?}: same tree"
        );
    }
    eprintln!("total {:?}", started.elapsed());
}
