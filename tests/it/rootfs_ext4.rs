//! ext4 images of whole images (`rootfs::build`), checked with `e2fsck`
//! and read back with `debugfs`: reproducible and cached, owners and
//! devices rootless and as root, the same listing as the unpack, init and
//! label, hardlinks to symlinks, computed sizes with no headroom, and the
//! refusals (no mke2fs, a size too small).

use crate::rootfs_compare::assert_same_as_umoci;
use crate::rootfs_support::{
    GZIP_LAYER, Raw, debugfs, e2fsck_passes, entry_with, gzip, hand_built_store, raw_tar,
    rootless_build_options, running_as_root, store_with_fixture,
};
use rootfs::{BuildOptions, Error, UnpackOptions};
use std::path::Path;
use std::time::Instant;

#[test]
fn ext4_builds_are_reproducible_checked_and_cached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store_a, reference) = store_with_fixture(&dir.path().join("a"), "layered");
    let (store_b, _) = store_with_fixture(&dir.path().join("b"), "layered");
    let options = rootless_build_options();
    let started = Instant::now();
    let first = rootfs::build(
        &store_a.image(&reference, None).expect("stored image"),
        &options,
    )
    .expect("build a");
    eprintln!(
        "ext4 build of layered: {:?}, {} bytes",
        started.elapsed(),
        first.size
    );
    let second = rootfs::build(
        &store_b.image(&reference, None).expect("stored image"),
        &options,
    )
    .expect("build b");
    assert!(!first.cached && !second.cached);
    assert_eq!(first.layers.len(), 5);
    e2fsck_passes(&first.path);
    let a = std::fs::read(&first.path).expect("image a");
    let b = std::fs::read(&second.path).expect("image b");
    assert!(a == b, "two builds in different roots differ");
    let started = Instant::now();
    let again = rootfs::build(
        &store_a.image(&reference, None).expect("stored image"),
        &options,
    )
    .expect("cached");
    let elapsed = started.elapsed();
    eprintln!("cached ext4 build: {elapsed:?}");
    assert!(again.cached);
    assert_eq!(again.path, first.path);
    // The issue asks for under 10 ms; the bound leaves room for a loaded
    // machine.
    assert!(elapsed.as_millis() < 100, "cached build took {elapsed:?}");
}

#[test]
fn rootless_ext4_image_holds_the_owners_and_devices_of_the_layers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "layered");
    let built = rootfs::build(
        &store.image(&reference, None).expect("stored image"),
        &rootless_build_options(),
    )
    .expect("build");
    e2fsck_passes(&built.path);
    let notes = debugfs(&built.path, "stat /home/user/notes.txt");
    assert!(notes.contains("User:  1000   Group:  1000"), "{notes}");
    let passwd = debugfs(&built.path, "stat /etc/passwd");
    assert!(passwd.contains("User:     0   Group:     0"), "{passwd}");
    let null = debugfs(&built.path, "stat /dev/null");
    assert!(null.contains("Type: character special"), "{null}");
    assert!(null.contains("Mode:  0666"), "{null}");
    let setuid = debugfs(&built.path, "stat /usr/bin/setuid-tool");
    assert!(setuid.contains("Mode:  04755"), "{setuid}");
}

#[test]
fn ext4_built_as_root_holds_the_same_owners_and_devices() {
    if !running_as_root() {
        eprintln!("not root: the rootless build tests cover owners");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (root_store, reference) = store_with_fixture(&dir.path().join("a"), "layered");
    let (rootless_store, _) = store_with_fixture(&dir.path().join("b"), "layered");
    let as_root = rootfs::build(
        &root_store.image(&reference, None).expect("stored image"),
        &BuildOptions::default(),
    )
    .expect("build as root");
    let rootless = rootfs::build(
        &rootless_store
            .image(&reference, None)
            .expect("stored image"),
        &rootless_build_options(),
    )
    .expect("rootless build");
    e2fsck_passes(&as_root.path);
    for path in [
        "/home/user/notes.txt",
        "/dev/null",
        "/usr/bin/setuid-tool",
        "/tmp",
        "/etc/passwd",
    ] {
        let request = format!("stat {path}");
        let owner_and_mode = |image: &Path| -> Vec<String> {
            debugfs(image, &request)
                .lines()
                .filter(|l| {
                    l.starts_with("User:") || l.starts_with("Inode:") || l.contains("Device major")
                })
                .map(|l| {
                    // Inode numbers may differ (debugfs allocates devices last).
                    l.split_once("Type:").map_or(l, |(_, rest)| rest).to_owned()
                })
                .collect()
        };
        assert_eq!(
            owner_and_mode(&as_root.path),
            owner_and_mode(&rootless.path),
            "{path}"
        );
    }
    // The writer (the default) takes one path either way: the same bytes.
    assert_eq!(as_root.input, rootfs::Ext4Input::Writer);
    let same =
        std::fs::read(&as_root.path).expect("a") == std::fs::read(&rootless.path).expect("b");
    assert!(same, "root and rootless builds differ");
}

/// A name as `debugfs ls` prints it: bytes outside ASCII as `\\xNN`.
fn debugfs_name(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii() {
                char::from(b).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

#[test]
fn ext4_contents_match_the_directory_unpack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "layered");
    let built = rootfs::build(
        &store.image(&reference, None).expect("stored image"),
        &rootless_build_options(),
    )
    .expect("build");
    let target = dir.path().join("rootfs");
    rootfs::unpack(
        &store.image(&reference, None).expect("stored image"),
        &target,
        &UnpackOptions::rootless(),
    )
    .expect("unpack");
    for (dir_path, listing) in [
        ("/", ""),
        ("/bin", "bin"),
        ("/etc", "etc"),
        ("/opt/app", "opt/app"),
    ] {
        let mut from_image: Vec<String> = debugfs(&built.path, &format!("ls -l {dir_path}"))
            .lines()
            .filter_map(|line| line.split_whitespace().last().map(str::to_owned))
            .filter(|name| name != "." && name != ".." && name != "lost+found")
            .collect();
        from_image.sort();
        let mut from_tree: Vec<String> = std::fs::read_dir(target.join(listing))
            .expect("listing")
            .map(|e| debugfs_name(e.expect("entry").file_name().as_encoded_bytes()))
            .collect();
        if dir_path == "/dev" {
            from_tree.push("null".to_owned());
        }
        from_tree.sort();
        assert_eq!(from_image, from_tree, "listing of {dir_path}");
    }
}

#[test]
fn ext4_with_init_and_label_for_small() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "small");
    let init = dir.path().join("init");
    std::fs::write(&init, b"#!/bin/sh\nexec /bin/hello\n").expect("init");
    let mut options = rootless_build_options();
    options.label = "small-root".to_owned();
    options.init = Some((init, "/sbin/init".to_owned()));
    options.output = Some(dir.path().join("out.ext4"));
    let built = rootfs::build(
        &store.image(&reference, None).expect("stored image"),
        &options,
    )
    .expect("build");
    assert_eq!(built.path, dir.path().join("out.ext4"));
    e2fsck_passes(&built.path);
    let stat = debugfs(&built.path, "stat /sbin/init");
    assert!(stat.contains("Mode:  0755"), "{stat}");
    assert!(stat.contains("User:     0   Group:     0"), "{stat}");
    let stats = debugfs(&built.path, "stats");
    assert!(
        stats.contains("Filesystem volume name:   small-root"),
        "{stats}"
    );
    assert_eq!(built.config.os.as_deref(), Some("linux"));
}

#[test]
fn missing_mke2fs_is_tool_not_found_for_its_inputs_and_the_writer_needs_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "small");
    let stored = store.image(&reference, None).expect("stored image");
    let mut options = BuildOptions::default();
    options.search_path = Some(dir.path().join("empty").into_os_string());
    for input in [rootfs::Ext4Input::Tree, rootfs::Ext4Input::TarStream] {
        options.input = Some(input);
        match rootfs::build(&stored, &options) {
            Err(Error::ToolNotFound { tool, package }) => {
                assert_eq!((tool, package), ("mke2fs", "e2fsprogs"));
            }
            other => panic!("{input:?}: {other:?}"),
        }
    }
    options.input = None;
    let built = rootfs::build(&stored, &options).expect("the writer needs no mke2fs");
    assert_eq!(built.input, rootfs::Ext4Input::Writer);
    e2fsck_passes(&built.path);
}

#[test]
fn a_size_too_small_is_refused_in_words_not_with_mke2fs_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "small");
    let mut options = rootless_build_options();
    // Far too small for the journal and the content: refused before any
    // layer is read (nothing under the store's work directory).
    options.size = Some(64 * 1024);
    match rootfs::build(
        &store.image(&reference, None).expect("stored image"),
        &options,
    ) {
        Err(err @ Error::InvalidOption { .. }) => {
            assert_eq!(err.kind(), rootfs::ErrorKind::Usage);
            assert!(
                err.to_string()
                    .contains("size 0.1 MiB is below 8.0 MiB, the least"),
                "{err}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!store.root().join(".cachectl/rootfs-tmp").exists());
}

#[test]
fn hardlinks_to_a_symlink_unpack_and_build_as_one_inode() {
    // tar2ext4 once refused hardlinks to symlinks, which real images have
    // (PEERS row 21); `mke2fs -d` once split hardlinks into separate inodes.
    let dir = tempfile::tempdir().expect("tempdir");
    let lower = raw_tar(&[
        Raw::Dir("bin"),
        Raw::File("bin/busybox", b"#!/bin/sh\necho busybox\n"),
        Raw::Symlink("bin/sh", "busybox"),
    ]);
    let upper = raw_tar(&[
        Raw::Dir("usr"),
        Raw::Dir("usr/bin"),
        // Hardlinks to a symlink: of a lower layer and of this layer.
        Raw::Hardlink("usr/bin/sh", "bin/sh"),
        Raw::Symlink("usr/bin/env", "../../bin/busybox"),
        Raw::Hardlink("usr/bin/env2", "usr/bin/env"),
    ]);
    let (store, reference) = hand_built_store(
        &dir.path().join("store"),
        &[(gzip(&lower), GZIP_LAYER), (gzip(&upper), GZIP_LAYER)],
    );
    assert_same_as_umoci(&store, &reference, &store, &reference, dir.path());

    let built = rootfs::build(
        &store.image(&reference, None).expect("stored image"),
        &rootless_build_options(),
    )
    .expect("build");
    e2fsck_passes(&built.path);
    for (a, b, target) in [
        ("/bin/sh", "/usr/bin/sh", "busybox"),
        ("/usr/bin/env", "/usr/bin/env2", "../../bin/busybox"),
    ] {
        let (first, second) = (
            debugfs(&built.path, &format!("stat {a}")),
            debugfs(&built.path, &format!("stat {b}")),
        );
        let inode = |text: &str| {
            text.split_whitespace()
                .nth(1)
                .map(str::to_owned)
                .expect("an inode number")
        };
        assert_eq!(inode(&first), inode(&second), "{a} and {b} share an inode");
        assert!(first.contains("Type: symlink"), "{first}");
        assert!(first.contains("Links: 2"), "{first}");
        assert!(
            first.contains(&format!("Fast link dest: \"{target}\"")),
            "{first}"
        );
    }
}

#[test]
fn many_small_files_fit_a_computed_size_with_no_headroom() {
    // `mke2fs -d` fails with "Could not allocate block" when a size is
    // computed from file bytes alone and the image holds many small files
    // (PEERS row 22). The computed size must hold them with no headroom.
    let dir = tempfile::tempdir().expect("tempdir");
    let names: Vec<(String, Vec<u8>)> = (0..4000u32)
        .map(|i| {
            let size = (i * 37 % 9000) as usize;
            (
                format!("d{}/f{i}", i % 40),
                vec![b'a' + (i % 26) as u8; size],
            )
        })
        .collect();
    let dirs: Vec<String> = (0..40).map(|d| format!("d{d}")).collect();
    let mut entries: Vec<Raw<'_>> = dirs.iter().map(|d| Raw::Dir(d)).collect();
    entries.extend(names.iter().map(|(name, data)| Raw::File(name, data)));
    let (store, reference) = hand_built_store(
        &dir.path().join("store"),
        &[(gzip(&raw_tar(&entries)), GZIP_LAYER)],
    );
    let mut options = rootless_build_options();
    options.headroom = 0;
    let built = rootfs::build(
        &store.image(&reference, None).expect("stored image"),
        &options,
    )
    .expect("fits");
    e2fsck_passes(&built.path);
    let listing = debugfs(&built.path, "ls -l /d39");
    assert_eq!(listing.matches(" f").count(), 100, "{listing}");
}

#[test]
fn files_with_large_extended_attributes_fit_a_computed_size_with_no_headroom() {
    // An attribute too large for the inode takes a block of its own (one
    // per file when the values differ): a size computed from file data
    // alone is too small for them (PEERS row 22).
    let dir = tempfile::tempdir().expect("tempdir");
    let mut layer = tar::Builder::new(Vec::new());
    entry_with(
        &mut layer,
        tar::EntryType::Directory,
        ("etc", ""),
        (0o755, 0, 1_700_000_000),
        b"",
    );
    for i in 0..3000u32 {
        let value = format!("{i:0>1000}");
        layer
            .append_pax_extensions([("SCHILY.xattr.user.label", value.as_bytes())])
            .expect("pax");
        entry_with(
            &mut layer,
            tar::EntryType::Regular,
            (&format!("etc/f{i}"), ""),
            (0o644, 0, 1_700_000_000),
            b"x",
        );
    }
    let (store, reference) = hand_built_store(
        &dir.path().join("store"),
        &[(gzip(&layer.into_inner().expect("tar")), GZIP_LAYER)],
    );
    let mut options = rootless_build_options();
    options.headroom = 0;
    let built = rootfs::build(
        &store.image(&reference, None).expect("stored image"),
        &options,
    )
    .expect("fits");
    e2fsck_passes(&built.path);
    let attributes = debugfs(&built.path, "ea_list /etc/f2999");
    assert!(attributes.contains("user.label (1000)"), "{attributes}");
}
