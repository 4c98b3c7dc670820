//! Read-only images (`BuildOptions::fs` squashfs and erofs) from the merged
//! stream: a squashfs image (and an erofs one, where mkfs.erofs is 1.8 or
//! later) holds exactly the tree the unpack makes (every
//! fixture, the hand-built layers that hide, replace and link, GNU tar's
//! odd and sparse forms; compared on a read-only loop mount as root, where
//! the host allows one: type, mode,
//! owner, size, content, link target, hardlink group, mtime, xattrs,
//! device), two builds give the same bytes, the image is cached, counted
//! and collected like an ext4 one, and a missing or too old tool is a clear
//! error naming its package.

use crate::rootfs_compare::{differences, tree};
use crate::rootfs_merge::{gnu_tar_forms, layer, layered_cases};
use crate::rootfs_overlay::{ENV_REQUIRE_OVERLAY, Mounts};
use crate::rootfs_support::{
    BUILD_FIXTURES, GZIP_LAYER, gzip, hand_built_store, running_as_root, store_with_fixture,
};
use ociref::Reference;
use ocistore::Store;
use rootfs::{BuildOptions, FsType, UnpackOptions};
use std::path::Path;
use std::process::Command;

fn squashfs_options() -> BuildOptions {
    options_for(FsType::Squashfs)
}

fn options_for(fs: FsType) -> BuildOptions {
    let mut options = BuildOptions::default();
    options.fs = fs;
    options
}

/// The read-only types this host builds: squashfs, and erofs where
/// `mkfs.erofs` is 1.8 or later.
fn read_only_types() -> Vec<FsType> {
    let mut types = vec![FsType::Squashfs];
    if erofs_reads_tars() {
        types.push(FsType::Erofs);
    } else {
        eprintln!("EROFS SKIPPED: mkfs.erofs is older than 1.8");
    }
    types
}

/// Builds the `fs` image of `reference` and compares what it holds with
/// the unpack of the same image, as root.
pub(crate) fn assert_image_holds_the_unpack(
    store: &Store,
    reference: &Reference,
    work: &Path,
    fs: FsType,
) {
    let stored = store.image(reference, None).expect("stored image");
    let built = rootfs::build(&stored, &options_for(fs))
        .unwrap_or_else(|err| panic!("{reference}: {fs:?} build: {err}"));
    assert_eq!(built.fs, fs);
    assert!(built.path.extension().is_some_and(|e| e == fs.as_str()));
    let tool = match fs {
        FsType::Erofs => ("mkfs.erofs", "erofs-utils"),
        FsType::Ext4 => ("cachectl", "ext4 writer"),
        _ => ("tar2sqfs", "squashfs-tools-ng"),
    };
    assert!(built.tools[tool.0].contains(tool.1), "{:?}", built.tools);
    let work = work.join(fs.as_str());
    // The kernel reads it (squashfs-tools-ng's rdsquashfs unpacks
    // hardlinks as copies and chowns after setting security.capability,
    // which drops it; squashfs-tools 4.5's unsquashfs cannot read the id
    // table of an lz4 image tar2sqfs writes).
    let mut mounts = Mounts(Vec::new());
    let extracted = work.join("mounted");
    if let Err(reason) = mounts.mount(&["-o", "loop,ro"], &built.path, &extracted) {
        assert!(
            std::env::var(ENV_REQUIRE_OVERLAY).as_deref() != Ok("1"),
            "{ENV_REQUIRE_OVERLAY}=1 but {reason}"
        );
        eprintln!("{reference}: {fs:?} MOUNT SKIPPED ({reason})");
        return;
    }
    let unpacked = work.join("unpacked");
    rootfs::unpack(&stored, &unpacked, &UnpackOptions::default()).expect("unpack");
    let (mut ours, mut theirs) = (tree(&extracted), tree(&unpacked));
    // ext4 has a lost+found of its own when the layers bring none.
    if fs == FsType::Ext4 && !theirs.contains_key("lost+found") {
        ours.retain(|path, _| path != "lost+found");
    }
    // squashfs holds an mtime in 32 unsigned bits: 1970 to 2106.
    for node in theirs.values_mut().filter(|_| fs == FsType::Squashfs) {
        node.mtime = node.mtime.clamp(0, i64::from(u32::MAX));
    }
    assert!(!theirs.is_empty(), "{reference}: {theirs:?}");
    let found = differences(&ours, &theirs);
    assert!(
        found.is_empty(),
        "{reference}: the {fs:?} image departs from the unpack: {found:#?}"
    );
}

#[test]
fn read_only_images_hold_the_tree_the_unpack_makes() {
    if !running_as_root() {
        eprintln!("skipped: loop mounts need root");
        return;
    }
    for fs in read_only_types() {
        assert_every_case_holds_the_unpack(fs);
    }
}

#[test]
fn written_ext4_images_hold_the_tree_the_unpack_makes_on_a_kernel_mount() {
    if !running_as_root() {
        eprintln!("skipped: loop mounts need root");
        return;
    }
    assert_every_case_holds_the_unpack(FsType::Ext4);
}

fn assert_every_case_holds_the_unpack(fs: FsType) {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in BUILD_FIXTURES {
        let (store, reference) = store_with_fixture(&dir.path().join(name), name);
        assert_image_holds_the_unpack(&store, &reference, &dir.path().join(name), fs);
    }
    for (name, layers) in layered_cases() {
        let encoded: Vec<_> = layers.iter().map(|l| layer(l)).collect();
        let root = dir.path().join(name);
        let (store, reference) = hand_built_store(&root.join("store"), &encoded);
        assert_image_holds_the_unpack(&store, &reference, &root, fs);
    }
    for (format, tar) in gnu_tar_forms(&dir.path().join("plain"), false) {
        let root = dir.path().join(&format);
        let (store, reference) = hand_built_store(&root.join("store"), &[(gzip(&tar), GZIP_LAYER)]);
        assert_image_holds_the_unpack(&store, &reference, &root, fs);
    }
}

#[test]
fn squashfs_builds_are_reproducible_cached_counted_and_collected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hashes = Vec::new();
    for round in ["one", "two"] {
        let (store, reference) = store_with_fixture(&dir.path().join(round), "layered");
        let stored = store.image(&reference, None).expect("stored image");
        let built = rootfs::build(&stored, &squashfs_options()).expect("squashfs build");
        assert!(!built.cached);
        let again = rootfs::build(&stored, &squashfs_options()).expect("cached build");
        assert!(again.cached && again.path == built.path);
        assert!(
            built
                .path
                .starts_with(store.root().join(".cachectl/squashfs"))
        );
        let bytes = std::fs::read(&built.path).expect("image");
        hashes.push(ociref::Digest::sha256_of(&bytes));
        // A compressor is part of the key: another file.
        let mut zstd = squashfs_options();
        zstd.compressor = Some("zstd,3".to_owned());
        let other = rootfs::build(&stored, &zstd).expect("zstd build");
        assert_ne!(other.path, built.path);
        let ext4 = rootfs::build(&stored, &BuildOptions::default()).expect("ext4 build");
        let counted = rootfs::cached_builds(&store).expect("counted");
        assert_eq!(counted.images, 3, "{counted:?}");
        let on_disk: u64 = [&built.path, &other.path, &ext4.path]
            .iter()
            .map(|p| std::fs::metadata(p).expect("image").len())
            .sum();
        assert!(counted.bytes >= on_disk, "{counted:?} < {on_disk}");
        drop(stored);
        store.remove(&reference).expect("removed");
        let report = store.gc().expect("gc");
        let collected = rootfs::BuildFiles::collected(&report.derived);
        assert_eq!(collected.images, 3, "{collected:?}");
        assert!(!built.path.exists() && !other.path.exists());
    }
    assert_eq!(
        hashes[0], hashes[1],
        "two stores, one image, two byte streams"
    );
}

#[test]
fn a_missing_or_too_old_tool_is_named_with_its_package() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "small");
    let stored = store.image(&reference, None).expect("stored image");
    let mut options = squashfs_options();
    options.search_path = Some(dir.path().join("empty").into_os_string());
    let err = rootfs::build(&stored, &options).expect_err("no tar2sqfs");
    let text = err.to_string();
    assert!(
        text.contains("tar2sqfs") && text.contains("squashfs-tools-ng"),
        "{text}"
    );
    let mut options = squashfs_options();
    let missing = dir.path().join("no-such-tar2sqfs");
    options
        .tool_paths
        .insert("tar2sqfs".to_owned(), missing.clone());
    let err = rootfs::build(&stored, &options).expect_err("no such path");
    assert_eq!(err.kind(), rootfs::ErrorKind::Usage, "{err}");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
    options.compressor = Some("brotli".to_owned());
    options.tool_paths.clear();
    let err = rootfs::build(&stored, &options).expect_err("no such compressor");
    assert!(err.to_string().contains("brotli"), "{err}");
    // erofs: refused with the release needed where mkfs.erofs cannot read
    // a tar; nothing is kept either way when it fails.
    let mut options = BuildOptions::default();
    options.fs = FsType::Erofs;
    match rootfs::build(&stored, &options) {
        Err(rootfs::Error::ToolTooOld { tool, needed, .. }) => {
            assert_eq!(tool, "mkfs.erofs");
            assert!(needed.contains("1.8"), "{needed}");
        }
        Err(rootfs::Error::ToolNotFound { tool, package }) => {
            assert_eq!((tool, package), ("mkfs.erofs", "erofs-utils"));
        }
        Err(other) => panic!("erofs: {other}"),
        Ok(built) => assert_eq!(built.fs, FsType::Erofs),
    }
    if !erofs_reads_tars() {
        // Only the hidden record of the version found, no image.
        let kept: Vec<String> = std::fs::read_dir(store.root().join(".cachectl/erofs"))
            .map(|dir| {
                dir.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                    .filter(|name| !name.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        assert!(kept.is_empty(), "{kept:?}");
    }
}

/// Whether the host's `mkfs.erofs` is 1.8 or later.
pub(crate) fn erofs_reads_tars() -> bool {
    let Ok(output) = Command::new("mkfs.erofs").arg("--version").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()));
    let mut parts = version
        .unwrap_or("0.0")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (1, 8)
}

#[test]
fn an_erofs_image_that_does_not_check_is_refused_and_not_kept() {
    if !erofs_reads_tars() {
        eprintln!("EROFS SKIPPED: mkfs.erofs is older than 1.8");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v mkfs.erofs"])
            .output()
            .expect("sh runs")
            .stdout,
    )
    .expect("utf-8");
    // mkfs.erofs, then its superblock overwritten: exit 0, a broken image.
    let wrapper = dir.path().join("mkfs.erofs");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n{} \"$@\" || exit $?\ncase \"$1\" in --version) exit 0;; esac\n\
             for last; do :; done\nprintf 'broken!!' | dd of=\"$last\" bs=1 seek=1024 \
             conv=notrunc 2>/dev/null\n",
            real.trim()
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("mode");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "small");
    let stored = store.image(&reference, None).expect("stored image");
    let mut options = options_for(FsType::Erofs);
    options.tool_paths.insert("mkfs.erofs".to_owned(), wrapper);
    let err = rootfs::build(&stored, &options).expect_err("the check fails");
    assert!(err.to_string().contains("fsck.erofs"), "{err}");
    let kept: Vec<_> = std::fs::read_dir(store.root().join(".cachectl/erofs"))
        .expect("erofs dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    assert!(kept.is_empty(), "nothing kept: {kept:?}");
}

#[test]
fn a_name_that_is_not_utf8_is_kept_byte_for_byte_in_a_squashfs_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, tar) = crate::rootfs_merge::gnu_tar_forms(dir.path(), true).remove(0);
    let (store, reference) =
        hand_built_store(&dir.path().join("store"), &[(gzip(&tar), GZIP_LAYER)]);
    let stored = store.image(&reference, None).expect("stored image");
    let built = rootfs::build(&stored, &squashfs_options()).expect("squashfs build");
    // sqfs2tar gives the names back as they are stored.
    let listed = Command::new("sqfs2tar")
        .arg(&built.path)
        .output()
        .expect("sqfs2tar runs");
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let mut archive = tar::Archive::new(&listed.stdout[..]);
    let names: Vec<Vec<u8>> = archive
        .entries()
        .expect("entries")
        .map(|e| e.expect("entry").path_bytes().into_owned())
        .collect();
    let latin1 = names
        .iter()
        .find(|name| name.windows(7).any(|w| w == b"latin1-"))
        .unwrap_or_else(|| panic!("{names:?}"));
    assert!(
        std::str::from_utf8(latin1).is_err(),
        "{latin1:?} is still not UTF-8"
    );
}
