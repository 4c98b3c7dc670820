//! Per-layer outputs: layer tars (`rootfs::layer_tars`) kept by diff ID and
//! checked against it, and per-layer ext4 images (`rootfs::build_layers`)
//! holding overlayfs whiteouts, opaque markers and copies of lower
//! hardlinks with the file's metadata.

use crate::rootfs_support::{
    GZIP_LAYER, Raw, debugfs, e2fsck_passes, entry_with, gzip, hand_built_store,
    hand_built_store_with_diff_ids, raw_tar, rootless_build_options, store_with_fixture,
};
use ociref::Digest;
use rootfs::{Error, UnpackOptions};

#[test]
fn layer_tars_are_kept_by_diff_id_and_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "layered-zstd");
    let tars = rootfs::layer_tars(&store.image(&reference, None).expect("stored image"))
        .expect("layer tars");
    assert_eq!(tars.len(), 5);
    for tar in &tars {
        assert!(!tar.cached);
        let bytes = std::fs::read(&tar.path).expect("tar");
        assert_eq!(Digest::sha256_of(&bytes), tar.diff_id);
        assert!(tar.path.starts_with(store.root().join(".cachectl/layers")));
    }
    let again =
        rootfs::layer_tars(&store.image(&reference, None).expect("stored image")).expect("again");
    assert!(again.iter().all(|t| t.cached));
    // The gzip twin has the same diff IDs: its tars are the same files.
    let (_, gzip) = store_with_fixture(&dir.path().join("store"), "layered");
    let shared =
        rootfs::layer_tars(&store.image(&gzip, None).expect("stored image")).expect("gzip layers");
    assert!(shared.iter().all(|t| t.cached));
}

#[test]
fn a_layer_that_is_not_its_diff_id_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let layer = gzip(&raw_tar(&[Raw::File("f", b"x")]));
    let wrong = Digest::sha256_of(b"something else");
    let (store, reference) = hand_built_store_with_diff_ids(
        &root,
        &[(layer.clone(), GZIP_LAYER)],
        std::slice::from_ref(&wrong),
    );
    match rootfs::layer_tars(&store.image(&reference, None).expect("stored image")) {
        Err(Error::DiffIdMismatch {
            layer: refused,
            expected,
            ..
        }) => {
            assert_eq!(refused, Digest::sha256_of(&layer));
            assert_eq!(expected, wrong);
        }
        other => panic!("{other:?}"),
    }
    let left: Vec<_> = std::fs::read_dir(root.join(".cachectl/layers"))
        .expect("dir")
        .map(|entry| entry.expect("entry").file_name())
        // The store's marker of a derived directory.
        .filter(|name| name != ".derived")
        .collect();
    assert_eq!(
        left,
        Vec::<std::ffi::OsString>::new(),
        "a partial file was left behind"
    );
}

#[test]
fn diff_ids_of_other_algorithms_are_checked_or_refused_naming_the_layer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = raw_tar(&[Raw::File("f", b"x")]);
    let layer = gzip(&tar);
    // sha512: computed while written, and the tar is kept under it.
    let sha512 = Digest::of(ociref::Algorithm::Sha512, &tar);
    let (store, reference) = hand_built_store_with_diff_ids(
        &dir.path().join("sha512"),
        &[(layer.clone(), GZIP_LAYER)],
        std::slice::from_ref(&sha512),
    );
    let tars = rootfs::layer_tars(&store.image(&reference, None).expect("stored image"))
        .expect("a sha512 diff ID");
    assert_eq!(tars[0].diff_id, sha512);
    // md5 parses but cannot be computed: the image is refused, naming the
    // layer and the algorithm, and nothing is written.
    let md5: Digest = "md5:d41d8cd98f00b204e9800998ecf8427e"
        .parse()
        .expect("well-formed");
    let root = dir.path().join("md5");
    let (store, reference) = hand_built_store_with_diff_ids(
        &root,
        &[(layer.clone(), GZIP_LAYER)],
        std::slice::from_ref(&md5),
    );
    match rootfs::layer_tars(&store.image(&reference, None).expect("stored image")) {
        Err(Error::InvalidImage { reason, .. }) => {
            assert!(
                reason.contains(&Digest::sha256_of(&layer).to_string()),
                "{reason}"
            );
            assert!(reason.contains("md5"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn layer_images_hold_overlayfs_whiteouts_and_copies_of_lower_hardlinks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "layered");
    let options = rootless_build_options();
    let layers = rootfs::build_layers(
        &store.image(&reference, None).expect("stored image"),
        &options,
    )
    .expect("layer images");
    assert_eq!(layers.len(), 5);
    for layer in &layers {
        assert!(!layer.cached);
        e2fsck_passes(&layer.path);
    }
    // Layer 2: whiteouts as character devices 0:0, a hardlink to a file of
    // layer 1 as a copy, a hardlink within the layer kept.
    let links = &layers[1].path;
    for whiteout in ["/etc/motd", "/var/cache/old"] {
        let stat = debugfs(links, &format!("stat {whiteout}"));
        assert!(
            stat.contains("Type: character special"),
            "{whiteout}: {stat}"
        );
        assert!(
            stat.contains("Device major/minor number: 00:00"),
            "{whiteout}: {stat}"
        );
    }
    let copy = debugfs(links, "stat /bin/tool-hardlink");
    assert!(copy.contains("Type: regular"), "{copy}");
    assert!(copy.contains("Size: 305"), "{copy}");
    let busybox = debugfs(links, "stat /bin/sh");
    assert!(busybox.contains("Links: 2"), "{busybox}");
    // Layer 3: the opaque directory.
    let opaque = debugfs(&layers[2].path, "ea_list /opt/app");
    assert!(
        opaque.contains("trusted.overlay.opaque (1) = \"y\""),
        "{opaque}"
    );
    let listing = debugfs(&layers[2].path, "ls /opt/app");
    assert!(listing.contains("before-opq.txt") && listing.contains("after-opq.txt"));
    assert!(!listing.contains(".wh."), "{listing}");
    // Layer 4 alone: the device and owners of its own entries.
    let null = debugfs(&layers[3].path, "stat /dev/null");
    assert!(null.contains("Device major/minor number: 01:03"), "{null}");
    let again = rootfs::build_layers(
        &store.image(&reference, None).expect("stored image"),
        &options,
    )
    .expect("again");
    assert!(again.iter().all(|l| l.cached));
    assert_eq!(
        again.iter().map(|l| &l.path).collect::<Vec<_>>(),
        layers.iter().map(|l| &l.path).collect::<Vec<_>>()
    );
}

#[test]
fn a_layer_image_copy_of_a_lower_hardlink_keeps_the_files_metadata() {
    // The copy a per-layer image holds for a hardlink to a lower file is
    // that file: its mode, owner, mtime and extended attributes, not the
    // link header's.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lower = tar::Builder::new(Vec::new());
    entry_with(
        &mut lower,
        tar::EntryType::Directory,
        ("usr/bin", ""),
        (0o755, 0, 1_600_000_000),
        b"",
    );
    lower
        .append_pax_extensions([("SCHILY.xattr.user.cachectl", &b"the lower file"[..])])
        .expect("pax");
    entry_with(
        &mut lower,
        tar::EntryType::Regular,
        ("usr/bin/chfn", ""),
        (0o4755, 0, 1_600_000_000),
        b"#!/bin/sh\necho chfn\n",
    );
    let mut upper = tar::Builder::new(Vec::new());
    entry_with(
        &mut upper,
        tar::EntryType::Link,
        ("usr/bin/chfn-again", "usr/bin/chfn"),
        (0o777, 1000, 1_700_000_000),
        b"",
    );
    let (store, reference) = hand_built_store(
        &dir.path().join("store"),
        &[
            (gzip(&lower.into_inner().expect("tar")), GZIP_LAYER),
            (gzip(&upper.into_inner().expect("tar")), GZIP_LAYER),
        ],
    );
    let layers = rootfs::build_layers(
        &store.image(&reference, None).expect("stored image"),
        &rootless_build_options(),
    )
    .expect("layer images");
    let copy = debugfs(&layers[1].path, "stat /usr/bin/chfn-again");
    assert!(copy.contains("Mode:  04755"), "{copy}");
    assert!(copy.contains("User:     0   Group:     0"), "{copy}");
    let attributes = debugfs(&layers[1].path, "ea_list /usr/bin/chfn-again");
    assert!(
        attributes.contains("user.cachectl (14) = \"the lower file\""),
        "the copy lost the file's extended attribute: {attributes}"
    );
    let unpacked = dir.path().join("unpacked");
    rootfs::unpack(
        &store.image(&reference, None).expect("stored image"),
        &unpacked,
        &UnpackOptions::rootless(),
    )
    .expect("unpack");
    let mtime = std::fs::metadata(unpacked.join("usr/bin/chfn-again"))
        .expect("unpacked")
        .modified()
        .expect("mtime");
    assert_eq!(
        mtime,
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000),
        "the flattened tree keeps the file's mtime too"
    );
    let mtime_line = debugfs(&layers[1].path, "stat /usr/bin/chfn-again");
    let expected = debugfs(&layers[0].path, "stat /usr/bin/chfn");
    let line = |text: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with("mtime:"))
            .map(str::to_owned)
            .expect("an mtime line")
    };
    assert_eq!(line(&mtime_line), line(&expected));
}
