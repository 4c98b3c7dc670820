//! What `rootfs::unpack` makes of layers and what it refuses: whiteouts and
//! opaque directories, owners, devices and capabilities as root, a
//! mislabelled layer, a target that is not empty, caps on entries and
//! bytes, a failed unpack leaving nothing; and how its errors read.

use crate::rootfs_compare::tree;
use crate::rootfs_support::{
    GZIP_LAYER, Raw, gzip, hand_built_store, makedev, only_target_in, raw_tar, running_as_root,
    store_with_fixture, unpack_layers,
};
use ociref::Digest;
use rootfs::{Error, UnpackOptions};

#[test]
fn opaque_directory_keeps_own_layer_entries_before_and_after_the_marker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (result, sandbox) = unpack_layers(
        dir.path(),
        &[
            vec![
                Raw::Dir("d/"),
                Raw::File("d/old", b"lower"),
                Raw::Dir("d/sub/"),
                Raw::File("d/sub/old2", b"lower"),
                Raw::Dir("e/"),
                Raw::File("e/gone", b"lower"),
                Raw::File("e/kept", b"lower"),
            ],
            vec![
                Raw::Dir("d/"),
                Raw::File("d/before", b"upper"),
                Raw::Dir("d/sub/"),
                Raw::File("d/.wh..wh..opq", b""),
                Raw::File("d/after", b"upper"),
                Raw::File("e/.wh.gone", b""),
            ],
        ],
    );
    let report = result.expect("unpack succeeds");
    assert_eq!(report.whiteouts, 2);
    let nodes = tree(&sandbox.join("target"));
    let paths: Vec<&str> = nodes.keys().map(String::as_str).collect();
    assert_eq!(paths, ["d", "d/after", "d/before", "d/sub", "e", "e/kept"]);
}

#[test]
fn whiteout_removes_a_lower_directory_and_a_file_may_replace_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (result, sandbox) = unpack_layers(
        dir.path(),
        &[
            vec![Raw::Dir("a/"), Raw::Dir("a/b/"), Raw::File("a/b/c", b"x")],
            vec![Raw::File("a/.wh.b", b""), Raw::File("x", b"1")],
            vec![Raw::File("a/b", b"now a file"), Raw::Hardlink("y", "x")],
        ],
    );
    result.expect("unpack succeeds");
    let nodes = tree(&sandbox.join("target"));
    assert_eq!(nodes["a/b"].kind, "file");
    assert_eq!(nodes["y"].hardlinks, ["x", "y"]);
}

#[test]
fn unpack_as_root_applies_owners_devices_and_capabilities() {
    if !running_as_root() {
        eprintln!("not root: owners and devices are checked by the rootless tests only");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "layered");
    let target = dir.path().join("rootfs");
    let report = rootfs::unpack(
        &store.image(&reference, None).expect("stored image"),
        &target,
        &UnpackOptions::default(),
    )
    .expect("unpack succeeds");
    assert!(!report.rootless);
    assert_eq!(report.not_applied.devices, 0);
    assert_eq!(report.not_applied.ownership, 0);
    let nodes = tree(&target);
    let notes = &nodes["home/user/notes.txt"];
    assert_eq!((notes.uid, notes.gid, notes.mode), (1000, 1000, 0o640));
    assert_eq!(nodes["home/user"].uid, 1000);
    let null = &nodes["dev/null"];
    assert_eq!(null.kind, "char");
    assert_eq!(null.device, Some(makedev(1, 3)));
    assert_eq!(null.mode, 0o666);
    assert_eq!(nodes["usr/bin/setuid-tool"].mode, 0o4755);
    assert_eq!(nodes["tmp"].mode, 0o1777);
    assert!(
        nodes["usr/bin/ping"]
            .xattrs
            .contains_key("security.capability"),
        "capability kept: {:?}",
        nodes["usr/bin/ping"].xattrs
    );
}

#[test]
fn mislabelled_layer_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = raw_tar(&[Raw::File("f", b"x")]);
    let (store, reference) =
        hand_built_store(&dir.path().join("store"), &[(plain.clone(), GZIP_LAYER)]);
    let result = rootfs::unpack(
        &store.image(&reference, None).expect("stored image"),
        &dir.path().join("t"),
        &UnpackOptions::default(),
    );
    match result {
        Err(Error::MislabelledLayer {
            layer, detected, ..
        }) => {
            assert_eq!(layer, Digest::sha256_of(&plain));
            assert_eq!(detected, "uncompressed");
        }
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn non_empty_target_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "small");
    let target = dir.path().join("t");
    std::fs::create_dir(&target).expect("target");
    std::fs::write(target.join("x"), b"x").expect("written");
    let result = rootfs::unpack(
        &store.image(&reference, None).expect("stored image"),
        &target,
        &UnpackOptions::default(),
    );
    assert!(
        matches!(result, Err(Error::TargetNotEmpty { .. })),
        "{result:?}"
    );
}

#[test]
fn caps_on_entries_and_bytes_stop_an_unpack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "small");
    let mut options = UnpackOptions::default();
    options.max_entries = Some(3);
    let result = rootfs::unpack(
        &store.image(&reference, None).expect("stored image"),
        &dir.path().join("a"),
        &options,
    );
    assert!(
        matches!(
            &result,
            Err(Error::LimitExceeded {
                what: "entries",
                limit: 3,
                ..
            })
        ),
        "{result:?}"
    );
    let mut options = UnpackOptions::default();
    options.max_bytes = Some(100);
    let result = rootfs::unpack(
        &store.image(&reference, None).expect("stored image"),
        &dir.path().join("b"),
        &options,
    );
    assert!(
        matches!(
            &result,
            Err(Error::LimitExceeded {
                what: "bytes",
                limit: 100,
                ..
            })
        ),
        "{result:?}"
    );
}

#[test]
fn a_failed_unpack_leaves_an_empty_target_empty_and_a_good_one_fills_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "layered");
    let sandbox = dir.path().join("box");
    let target = sandbox.join("rootfs");
    std::fs::create_dir_all(&target).expect("empty target");
    let mut capped = UnpackOptions::rootless();
    capped.max_entries = Some(20);
    let failed = rootfs::unpack(
        &store.image(&reference, None).expect("stored image"),
        &target,
        &capped,
    );
    assert!(
        matches!(failed, Err(Error::LimitExceeded { .. })),
        "{failed:?}"
    );
    let left: Vec<_> = std::fs::read_dir(&sandbox)
        .expect("box")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, ["rootfs"], "no staging directory is left");
    assert_eq!(
        std::fs::read_dir(&target).expect("target").count(),
        0,
        "the target is still empty"
    );
    let report = rootfs::unpack(
        &store.image(&reference, None).expect("stored image"),
        &target,
        &UnpackOptions::rootless(),
    )
    .expect("unpack into the empty target");
    assert!(report.entries > 20);
    assert!(target.join("etc").is_dir());
    let mode =
        std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(&target).expect("target")) & 0o777;
    assert_eq!(
        mode, 0o755,
        "the root of the tree is 0755 unless a layer says otherwise"
    );
}

#[test]
fn a_failed_unpack_names_paths_under_its_target_and_leaves_nothing() {
    // A name longer than NAME_MAX (255): the kernel refuses to create it,
    // in the staging directory; the error names it under the target.
    let long = "n".repeat(300);
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(1);
    builder
        .append_data(&mut header, &long, &b"x"[..])
        .expect("long name");
    let layer = gzip(&builder.into_inner().expect("tar"));
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = hand_built_store(&dir.path().join("store"), &[(layer, GZIP_LAYER)]);
    let sandbox = dir.path().join("box");
    std::fs::create_dir_all(&sandbox).expect("box");
    let target = sandbox.join("target");
    match rootfs::unpack(
        &store.image(&reference, None).expect("stored image"),
        &target,
        &UnpackOptions::rootless(),
    ) {
        Err(err @ Error::Entry { .. }) => {
            let message = err.to_string();
            let Error::Entry { path, entry, .. } = err else {
                unreachable!()
            };
            assert_eq!(path, target.join(&long), "{message}");
            assert_eq!(entry, long);
            assert!(!message.contains(".unpack-"), "{message}");
        }
        other => panic!("the long name was not refused: {other:?}"),
    }
    only_target_in(&sandbox);
}

#[test]
fn every_error_renders_with_what_a_person_needs() {
    let layer: Digest = "sha256:2422821aed02500dd3a39dba17551184c867df6ccedcbc07128e099c8f52a25f"
        .parse()
        .expect("digest");
    let unsafe_entry = Error::UnsafeEntry {
        layer: layer.clone(),
        entry: "../escape".to_owned(),
        reason: "path has a `..` component".to_owned(),
    };
    assert_eq!(
        unsafe_entry.to_string(),
        format!("layer {layer}: entry \"../escape\" refused: path has a `..` component")
    );
    let mislabelled = Error::MislabelledLayer {
        layer: layer.clone(),
        media_type: GZIP_LAYER.to_owned(),
        detected: "zstd",
    };
    assert!(mislabelled.to_string().contains(&layer.to_string()));
    let missing = Error::ToolNotFound {
        tool: "mke2fs",
        package: "e2fsprogs",
    };
    assert_eq!(
        missing.to_string(),
        "mke2fs is not installed (install the e2fsprogs package)"
    );
    let failed = Error::ToolFailed {
        tool: "mke2fs",
        status: "exit status: 1".to_owned(),
        stderr: "mke2fs: Device size reported to be zero.".to_owned(),
    };
    assert!(
        failed
            .to_string()
            .contains("Device size reported to be zero")
    );
}
