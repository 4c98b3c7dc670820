//! `build` from the merged tar stream and from an unpacked tree give the
//! same tree (compared entry by entry with `debugfs`: type, mode, owner,
//! size, link count, mtime, devices, symlink targets, extended attributes,
//! content, hardlink groups), and e2fsck passes both: on every fixture,
//! on hand-built layers that hide, replace and link across layers, and on
//! GNU tar's odd and sparse forms. A name that is not UTF-8, which the
//! tree path cannot hand to debugfs, is built from the stream.

use crate::rootfs_ext4_tar::skip_without_tar_input;
use crate::rootfs_merge::{gnu_tar_forms, layer, layered_cases};
use crate::rootfs_support::{
    BUILD_FIXTURES, GZIP_LAYER, e2fsck_passes, gzip, hand_built_store, rootless_build_options,
    running_as_root, store_with_fixture,
};
use crate::rootfs_tree::{ImageTree, image_tree, tree_differences};
use ociref::Reference;
use ocistore::Store;
use rootfs::Ext4Input;

/// Builds `reference` from each input (as root when the tests run as
/// root: a rootless tree cannot hold a hardlink to a device node); asserts
/// the images hold one tree, but for the times past 2038 that mke2fs cuts
/// to 2038 and the writer keeps (as the unpack does); returns the
/// writer's tree.
fn assert_inputs_agree(store: &Store, reference: &Reference, case: &str) -> ImageTree {
    let stored = store.image(reference, None).expect("stored image");
    let mut trees = Vec::new();
    for input in [Ext4Input::Tree, Ext4Input::TarStream, Ext4Input::Writer] {
        let mut options = match running_as_root() {
            true => rootfs::BuildOptions::default(),
            false => rootless_build_options(),
        };
        options.input = Some(input);
        let built = rootfs::build(&stored, &options)
            .unwrap_or_else(|err| panic!("{case}: build from {input:?}: {err}"));
        assert_eq!(built.input, input, "{case}");
        e2fsck_passes(&built.path);
        trees.push(image_tree(&built.path));
    }
    assert!(trees[0].entries.len() > 1, "{case}: {:?}", trees[0]);
    let written = trees.pop().expect("the writer's tree");
    let mut compared = ImageTree {
        entries: written.entries.clone(),
        links: written.links.clone(),
    };
    for (path, line) in &mut compared.entries {
        if let Some(cut) = trees[0].entries.get(path)
            && cut.contains("mtime: 0x7fffffff:")
            && !line.contains("mtime: 0x7fffffff:")
        {
            line.clone_from(cut);
        }
    }
    for (input, other) in [("the stream", &trees[1]), ("the writer", &compared)] {
        let differences = tree_differences(&trees[0], other);
        assert!(
            differences.is_empty(),
            "{case}: {input} departs from the tree: {differences:#?}"
        );
    }
    written
}

#[test]
fn every_fixture_builds_the_same_tree_from_the_stream_and_from_a_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    if skip_without_tar_input(&dir.path().join("probe")) {
        return;
    }
    for name in BUILD_FIXTURES {
        let (store, reference) = store_with_fixture(&dir.path().join(name), name);
        assert_inputs_agree(&store, &reference, name);
    }
}

#[test]
fn layers_that_hide_replace_and_link_build_the_same_tree_from_either_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    if skip_without_tar_input(&dir.path().join("probe")) {
        return;
    }
    for (name, layers) in layered_cases() {
        let encoded: Vec<_> = layers.iter().map(|l| layer(l)).collect();
        let (store, reference) = hand_built_store(&dir.path().join(name), &encoded);
        assert_inputs_agree(&store, &reference, name);
    }
}

#[test]
fn gnu_tar_odd_and_sparse_forms_build_the_same_tree_from_either_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    if skip_without_tar_input(&dir.path().join("probe")) {
        return;
    }
    for (format, tar) in gnu_tar_forms(&dir.path().join("plain"), false) {
        let root = dir.path().join(&format).join("store");
        let (store, reference) = hand_built_store(&root, &[(gzip(&tar), GZIP_LAYER)]);
        let written = assert_inputs_agree(&store, &reference, &format);
        let late = &written.entries["/after-2242"];
        assert!(late.contains("2300"), "{format}: {late}");
    }
}

#[test]
fn a_name_that_is_not_utf8_is_built_from_the_stream_and_refused_by_the_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    if skip_without_tar_input(&dir.path().join("probe")) {
        return;
    }
    let (_, tar) = gnu_tar_forms(dir.path(), true).remove(0);
    let (store, reference) =
        hand_built_store(&dir.path().join("store"), &[(gzip(&tar), GZIP_LAYER)]);
    let stored = store.image(&reference, None).expect("stored image");
    let mut options = rootless_build_options();
    options.input = Some(Ext4Input::Tree);
    match rootfs::build(&stored, &options) {
        Err(err @ rootfs::Error::InvalidOption { .. }) => {
            assert!(err.to_string().contains("latin1-"), "{err}");
        }
        other => panic!("the tree path hands names to debugfs: {other:?}"),
    }
    options.input = Some(Ext4Input::TarStream);
    let built = rootfs::build(&stored, &options).expect("built from the stream");
    e2fsck_passes(&built.path);
    let listing = std::process::Command::new("debugfs")
        .args(["-R", "ls -p /"])
        .arg(&built.path)
        .output()
        .expect("debugfs runs");
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("/latin1-"), "{listing}");
    let tree = image_tree(&built.path);
    assert!(tree.entries.len() > 5, "{tree:?}");
}

/// Every file under `root` whose name starts with `prefix`.
fn files_named(root: &std::path::Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let path = entry.path();
            if entry.file_type().expect("file type").is_dir() {
                pending.push(path);
            } else if entry.file_name().to_string_lossy().starts_with(prefix) {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn a_bad_layer_fails_the_stream_build_with_its_own_error_while_later_layers_decompress() {
    use crate::rootfs_support::{Raw, hand_built_store_with_diff_ids, raw_tar};
    let dir = tempfile::tempdir().expect("tempdir");
    if skip_without_tar_input(&dir.path().join("probe")) {
        return;
    }
    // A layer large enough to be still decompressing when the one before
    // it is refused.
    let big: Vec<u8> = (0..24u32 << 20).map(|i| (i / 4096) as u8).collect();
    let good = gzip(&raw_tar(&[Raw::Dir("etc/"), Raw::File("etc/a", b"a")]));
    let hostile = gzip(&raw_tar(&[Raw::File("../escape", b"out")]));
    let large = gzip(&raw_tar(&[Raw::File("big", &big)]));
    let cases = [
        ("hostile", vec![good.clone(), hostile, large.clone()]),
        ("truncated", {
            let mut cut = large.clone();
            cut.truncate(cut.len() / 2);
            vec![good, cut, large]
        }),
    ];
    for (case, layers) in cases {
        let root = dir.path().join(case);
        let encoded: Vec<_> = layers.into_iter().map(|l| (l, GZIP_LAYER)).collect();
        // The diff IDs are not checked by a build; given, the cut layer
        // need not be decompressed to make the image.
        let diff_ids = vec![ociref::Digest::sha256_of(case.as_bytes()); 3];
        let (store, reference) = hand_built_store_with_diff_ids(&root, &encoded, &diff_ids);
        let stored = store.image(&reference, None).expect("stored image");
        let bad = stored.details().layers[1].descriptor.digest.clone();
        let unpacked = rootfs::unpack(
            &stored,
            &dir.path().join(format!("{case}-tree")),
            &Default::default(),
        )
        .expect_err("the unpack refuses it");
        let mut options = rootless_build_options();
        options.input = Some(Ext4Input::TarStream);
        // The work directory under the store, where leftovers are seen.
        options.memory_scratch = false;
        let started = std::time::Instant::now();
        let built = rootfs::build(&stored, &options).expect_err("the build refuses it");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{case}"
        );
        assert_eq!(built.to_string(), unpacked.to_string(), "{case}");
        match (case, &built) {
            ("hostile", rootfs::Error::UnsafeEntry { .. }) => {}
            ("truncated", rootfs::Error::LayerRead { layer, .. }) => assert_eq!(layer, &bad),
            _ => panic!("{case}: {built:?}"),
        }
        let copies = files_named(&root, "layer-");
        assert!(copies.is_empty(), "{case}: left {copies:?}");
    }
}

/// A store at `root` whose image has a small base layer and a layer of
/// 96 MiB of zeros (a few hundred KiB of gzip: the work directory's
/// estimate, 5 times the layers plus 64 MiB, fits an 80 MiB tmpfs, so a
/// build starts there and the layer's copy then fills it).
fn store_with_a_layer_of_zeros(root: &std::path::Path) -> Reference {
    use crate::rootfs_support::{Raw, raw_tar};
    let zeros = vec![0u8; 96 << 20];
    let base = gzip(&raw_tar(&[Raw::Dir("etc/"), Raw::File("etc/a", b"kept")]));
    let big = gzip(&raw_tar(&[Raw::File("big", &zeros)]));
    drop(zeros);
    assert!(big.len() < 2 << 20, "{} bytes of gzip", big.len());
    hand_built_store(root, &[(base, GZIP_LAYER), (big, GZIP_LAYER)]).1
}

/// Runs `rootfs-build ROOT REFERENCE --input INPUT` in a mount namespace
/// of its own after `mounts` (shell commands), then lists `/dev/shm` after
/// a `left:` line.
fn build_in_namespace(
    mounts: &str,
    root: &std::path::Path,
    (reference, input): (&Reference, &str),
) -> std::process::Output {
    std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "{mounts} && \"$0\" \"$@\" && echo left: && ls -A /dev/shm"
        ))
        .arg(env!("CARGO_BIN_EXE_rootfs-build"))
        .arg(root)
        .arg(reference.to_string())
        .args(["--input", input])
        .output()
        .expect("unshare runs")
}

#[test]
fn a_build_whose_tmpfs_fills_up_is_made_again_under_the_store() {
    use crate::rootfs_support::{debugfs, running_as_root};
    if !running_as_root() {
        eprintln!("skipped: mounting a tmpfs over /dev/shm needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let reference = store_with_a_layer_of_zeros(&root);
    let mounts = "mount -t tmpfs -o size=80m cachectl-test /dev/shm";
    let output = build_in_namespace(mounts, &root, (&reference, "tar-stream"));
    let image = built_leaving_no_tmpfs_file(&output);
    let image = image.as_path();
    assert!(debugfs(image, "stat /big").contains(&format!("Size: {}", 96 << 20)));
    assert_eq!(debugfs(image, "cat /etc/a"), "kept");
}

#[test]
fn a_build_with_no_room_anywhere_names_the_work_directory_it_filled() {
    use crate::rootfs_support::running_as_root;
    if !running_as_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let reference = store_with_a_layer_of_zeros(&root);
    let work = root.join(".cachectl/rootfs-tmp");
    std::fs::create_dir_all(&work).expect("work area");
    let mounts = format!(
        "mount -t tmpfs -o size=80m cachectl-test /dev/shm && \
         mount -t tmpfs -o size=16m,mode=0755 cachectl-test '{}'",
        work.display()
    );
    let output = build_in_namespace(&mounts, &root, (&reference, "tar-stream"));
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("No space left on device"), "{stderr}");
    // The work directory under the store, by its name, not `/proc/PID/fd`.
    let named = format!("{}/build-", work.display());
    assert!(stderr.contains(&named), "{stderr}");
    assert!(stderr.contains("/layers/layer-1.tar"), "{stderr}");
    assert!(!stderr.contains("/proc/"), "{stderr}");
    // The writer keeps no copy of a layer anywhere: the same build, with
    // both places still full, is made.
    let output = build_in_namespace(&mounts, &root, (&reference, "writer"));
    built_leaving_no_tmpfs_file(&output);
}

/// The image a [`build_in_namespace`] run made, after asserting it
/// succeeded, left nothing on `/dev/shm` and made an image e2fsck passes.
fn built_leaving_no_tmpfs_file(output: &std::process::Output) -> std::path::PathBuf {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (built, left) = stdout.split_once("left:").expect("both parts");
    assert_eq!(left.trim(), "", "the tmpfs kept {left}");
    let image = std::path::PathBuf::from(built.trim());
    e2fsck_passes(&image);
    image
}
