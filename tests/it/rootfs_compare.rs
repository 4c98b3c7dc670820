//! The tree comparator of the `rootfs` tests: every path below a root as a
//! [`Node`] (type, mode, owner, size, content hash, link target, hardlink
//! group, mtime, xattrs, device), the differences between two trees, and
//! the comparison of an unpack with `umoci raw unpack --rootless`.

use crate::rootfs_support::running_as_root;
use ociref::{Digest, Reference};
use ocistore::Store;
use rootfs::UnpackOptions;
use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub(crate) fn umoci_unpack(root: &Path, reference: &Reference, target: &Path) {
    let output = Command::new("umoci")
        .args(["raw", "unpack", "--rootless", "--image"])
        .arg(format!("{}:{reference}", root.display()))
        .arg(target)
        .output()
        .expect("umoci runs");
    assert!(
        output.status.success(),
        "umoci raw unpack failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What the comparator sees of one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) kind: &'static str,
    /// Permission bits with setuid/setgid/sticky.
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) size: u64,
    pub(crate) sha256: Option<String>,
    pub(crate) link: Option<PathBuf>,
    pub(crate) mtime: i64,
    /// Other paths sharing the inode, sorted (hardlink group).
    pub(crate) hardlinks: Vec<String>,
    pub(crate) xattrs: BTreeMap<String, Vec<u8>>,
    pub(crate) device: Option<u64>,
}

/// Every path below `root` (the root itself excluded: its metadata is the
/// target's, not the image's), as the comparator sees it.
pub(crate) fn tree(root: &Path) -> BTreeMap<String, Node> {
    let mut nodes = BTreeMap::new();
    // Keyed by device and inode: an overlay mount shows files of different
    // layers with their layer's device, and inode numbers repeat across them.
    let mut inodes: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable") {
            let path = entry.expect("entry").path();
            let rel = path
                .strip_prefix(root)
                .expect("below root")
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            let file_type = meta.file_type();
            let kind = if file_type.is_dir() {
                stack.push(path.clone());
                "dir"
            } else if file_type.is_symlink() {
                "symlink"
            } else if file_type.is_file() {
                "file"
            } else if file_type.is_fifo() {
                "fifo"
            } else if file_type.is_char_device() {
                "char"
            } else if file_type.is_block_device() {
                "block"
            } else {
                "other"
            };
            if !file_type.is_dir() {
                inodes
                    .entry((meta.dev(), meta.ino()))
                    .or_default()
                    .push(rel.clone());
            }
            let xattrs = if file_type.is_symlink() {
                BTreeMap::new()
            } else {
                xattr::list(&path)
                    .map(|names| {
                        names
                            .filter_map(|name| {
                                let value = xattr::get(&path, &name).ok()??;
                                Some((name.to_string_lossy().into_owned(), value))
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            };
            nodes.insert(
                rel,
                Node {
                    kind,
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    size: if file_type.is_dir() { 0 } else { meta.len() },
                    sha256: file_type.is_file().then(|| {
                        Digest::sha256_of(&std::fs::read(&path).expect("readable")).to_string()
                    }),
                    link: file_type
                        .is_symlink()
                        .then(|| std::fs::read_link(&path).expect("link")),
                    mtime: meta.mtime(),
                    hardlinks: Vec::new(),
                    xattrs,
                    device: (file_type.is_char_device() || file_type.is_block_device())
                        .then(|| meta.rdev()),
                },
            );
        }
    }
    for group in inodes.values().filter(|g| g.len() > 1) {
        let mut sorted = group.clone();
        sorted.sort();
        for path in group {
            nodes.get_mut(path).expect("listed").hardlinks = sorted.clone();
        }
    }
    nodes
}

/// The differences between two trees, one line per path.
pub(crate) fn differences(
    ours: &BTreeMap<String, Node>,
    theirs: &BTreeMap<String, Node>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (path, node) in ours {
        match theirs.get(path) {
            None => out.push(format!("{path}: only in ours ({node:?})")),
            Some(other) if other != node => {
                out.push(format!("{path}: ours {node:?}\n    theirs {other:?}"))
            }
            Some(_) => {}
        }
    }
    for (path, node) in theirs {
        if !ours.contains_key(path) {
            out.push(format!("{path}: only in theirs ({node:?})"));
        }
    }
    out
}

/// The owner umoci --rootless records in `user.rootlesscontainers` (a
/// protobuf: field 1 uid, field 2 gid, varints); the xattr is removed.
pub(crate) fn apply_rootless_owner(node: &mut Node) {
    let Some(bytes) = node.xattrs.remove("user.rootlesscontainers") else {
        return;
    };
    // Absent fields are 0; `NoopID` (u32::MAX) means "the host's owner".
    let (mut uid, mut gid) = (0, 0);
    let mut i = 0;
    while i < bytes.len() {
        let tag = bytes[i];
        i += 1;
        let mut value = 0u32;
        let mut shift = 0;
        while i < bytes.len() {
            let byte = bytes[i];
            i += 1;
            value |= u32::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        match tag {
            0x08 => uid = value,
            0x10 => gid = value,
            _ => {}
        }
    }
    if uid != u32::MAX {
        node.uid = uid;
    }
    if gid != u32::MAX {
        node.gid = gid;
    }
}

/// Unpacks image `reference` of `store` with rootfs (as root: with owners
/// and devices; otherwise rootless), and `umoci_reference` of
/// `umoci_store` (the same content) with `umoci raw unpack --rootless`,
/// and compares the trees: paths, types, modes, owners, sizes, content,
/// symlink targets, hardlink groups, mtimes, xattrs.
pub(crate) fn assert_same_as_umoci(
    store: &Store,
    reference: &Reference,
    umoci_store: &Store,
    umoci_reference: &Reference,
    dir: &Path,
) {
    let ours_dir = dir.join("ours");
    let as_root = running_as_root();
    let options = if as_root {
        UnpackOptions::default()
    } else {
        UnpackOptions::rootless()
    };
    let started = Instant::now();
    let report = rootfs::unpack(
        &store.image(reference, None).expect("stored image"),
        &ours_dir,
        &options,
    )
    .expect("unpack succeeds");
    let ours_time = started.elapsed();
    let theirs_dir = dir.join("theirs");
    let started = Instant::now();
    umoci_unpack(umoci_store.root(), umoci_reference, &theirs_dir);
    let umoci_time = started.elapsed();
    eprintln!(
        "{reference}: rootfs {ours_time:?}, umoci {umoci_time:?}, {} entries",
        report.entries
    );
    let mut ours = tree(&ours_dir);
    let mut theirs = tree(&theirs_dir);
    for node in theirs.values_mut() {
        apply_rootless_owner(node);
    }
    if !as_root {
        // Without root neither tree has owners: compare the rest.
        for node in ours.values_mut().chain(theirs.values_mut()) {
            node.uid = 0;
            node.gid = 0;
        }
    }
    // umoci --rootless writes an empty file where a device should be;
    // rootfs as root makes the device, rootless it makes nothing.
    let placeholders: Vec<String> = theirs
        .iter()
        .filter(|(path, node)| {
            node.kind == "file"
                && node.size == 0
                && ours
                    .get(*path)
                    .is_none_or(|o| o.kind == "char" || o.kind == "block")
        })
        .map(|(path, _)| path.clone())
        .collect();
    let devices = ours
        .values()
        .filter(|o| o.kind == "char" || o.kind == "block")
        .count() as u64;
    assert_eq!(
        placeholders.len() as u64,
        devices + report.not_applied.devices,
        "device placeholders of umoci: {placeholders:?}"
    );
    for path in placeholders {
        let placeholder = theirs.remove(&path).expect("listed");
        if let Some(device) = ours.remove(&path) {
            assert_eq!(
                (device.mode, device.uid, device.gid, device.mtime),
                (
                    placeholder.mode,
                    placeholder.uid,
                    placeholder.gid,
                    placeholder.mtime
                ),
                "{path}"
            );
        }
    }
    let diff = differences(&ours, &theirs);
    assert!(
        diff.is_empty(),
        "{reference} differs from umoci:\n{}",
        diff.join("\n")
    );
    assert!(!ours.is_empty(), "{reference} unpacked to nothing");
}
