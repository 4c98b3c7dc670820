//! A build with an output hands that output over synced and keeps its
//! cached image before the image is synced, marked with the boot that
//! wrote it: a hit in the same boot serves the image (syncing it first
//! when it hands out the cached file itself), a hit after a reboot builds
//! it again, and `gc` drops the marker with the image.

use crate::rootfs_support::{e2fsck_passes, store_with_fixture};
use std::path::{Path, PathBuf};

/// The markers of unsynced images in the store at `root`.
fn markers(root: &Path) -> Vec<PathBuf> {
    let dir = root.join(".cachectl/ext4");
    let entries = std::fs::read_dir(dir).expect("the image cache");
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".unsynced-"))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// The cached whole-image files in the store at `root`.
fn cached_images(root: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(root.join(".cachectl/ext4")).expect("the image cache");
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "ext4"))
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            !name.starts_with('.') && !name.starts_with("partial-")
        })
        .collect()
}

fn boot_id() -> String {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot id");
    id.trim().to_owned()
}

fn build_to(stored: &ocistore::StoredImage, output: Option<&Path>) -> rootfs::BuiltImage {
    let mut options = rootfs::BuildOptions::default();
    options.output = output.map(Path::to_path_buf);
    rootfs::build(stored, &options).expect("built")
}

#[test]
fn an_image_built_with_an_output_is_kept_unsynced_for_this_boot_only() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let (store, reference) = store_with_fixture(&root, "layered");
    let stored = store.image(&reference, None).expect("stored image");
    let output = dir.path().join("vm.ext4");

    let built = build_to(&stored, Some(&output));
    assert!(!built.cached);
    let image = cached_images(&root);
    assert_eq!(image.len(), 1, "{image:?}");
    let marked = markers(&root);
    assert_eq!(
        marked.len(),
        1,
        "no marker for the unsynced image: {marked:?}"
    );
    let inode = std::fs::metadata(&image[0]).expect("meta").ino();
    let name = marked[0].file_name().unwrap_or_default().to_string_lossy();
    assert!(name.starts_with(&format!(".unsynced-{inode}-")), "{name}");
    assert_eq!(
        std::fs::read_to_string(&marked[0]).expect("read").trim(),
        boot_id()
    );
    let first = std::fs::read(&output).expect("read");
    assert!(
        first == std::fs::read(&image[0]).expect("read"),
        "output != image"
    );
    e2fsck_passes(&output);

    // Another output in this boot: served as it is, still marked.
    let second = dir.path().join("second.ext4");
    assert!(build_to(&stored, Some(&second)).cached);
    assert_eq!(markers(&root), marked);
    assert!(std::fs::read(&second).expect("read") == first);

    // After a reboot the marker names another boot: the image may be
    // torn, so it is built again (the same bytes), marked anew.
    std::fs::write(&marked[0], "11111111-2222-3333-4444-555555555555\n").expect("rewrite");
    let third = dir.path().join("third.ext4");
    assert!(
        !build_to(&stored, Some(&third)).cached,
        "a torn image was served"
    );
    assert!(std::fs::read(&third).expect("read") == first);
    let remarked = markers(&root);
    assert_eq!(remarked.len(), 1, "{remarked:?}");
    assert_eq!(
        std::fs::read_to_string(&remarked[0]).expect("read").trim(),
        boot_id()
    );

    // A hit that hands out the cached file itself syncs it and drops the
    // marker.
    let hit = build_to(&stored, None);
    assert!(hit.cached);
    assert_eq!(markers(&root), Vec::<PathBuf>::new());
    assert!(std::fs::read(&hit.path).expect("read") == first);
}

#[test]
fn an_image_built_without_an_output_is_synced_and_gc_drops_a_marker_with_its_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let (store, reference) = store_with_fixture(&root, "small");
    let stored = store.image(&reference, None).expect("stored image");
    assert!(!build_to(&stored, None).cached);
    assert_eq!(markers(&root), Vec::<PathBuf>::new());
    // Built again with an output: kept unsynced.
    for image in cached_images(&root) {
        std::fs::remove_file(image).expect("removed");
    }
    build_to(&stored, Some(&dir.path().join("vm.ext4")));
    assert_eq!(markers(&root).len(), 1);
    // The stored image's lease would keep the blobs, and so the image.
    drop(stored);
    assert!(store.remove(&reference).expect("removed"));
    let report = store.gc().expect("gc");
    assert!(cached_images(&root).is_empty(), "{report:?}");
    assert_eq!(markers(&root), Vec::<PathBuf>::new(), "gc left the marker");
}
