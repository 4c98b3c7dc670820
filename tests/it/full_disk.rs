//! A pull onto a full file system: the store lives on a small tmpfs (the
//! test needs root, as the rootfs tests do). The pull fails with an error
//! that says the disk is full and names a path in the store; the store still
//! passes `verify` and lists no half-pulled image; and once there is room the
//! same pull completes. A build whose output's disk fills up while the
//! output is written beside the image still keeps the image it built.

use crate::store::{assert_blobs_rehash, client, noise, push_image, ref_names};
use cachectl_tests::{registries, unique};
use ociref::Reference;
use ocistore::{PullOptions, Store};
use std::path::Path;
use std::process::Command;

/// A tmpfs of `size` mounted on a new directory, unmounted when dropped.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(size: &str) -> SmallFs {
        let dir = tempfile::tempdir().expect("tempdir");
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "cachectl-test",
            ])
            .arg(dir.path())
            .output()
            .expect("mount runs");
        assert!(
            mounted.status.success(),
            "mounting a tmpfs (the test needs root): {}",
            String::from_utf8_lossy(&mounted.stderr)
        );
        SmallFs { dir }
    }

    fn grow(&self, size: &str) {
        let grown = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .output()
            .expect("mount runs");
        assert!(grown.status.success(), "{grown:?}");
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// The message of `err` (its whole chain), after asserting that it says the
/// disk is full and names a path in the store at `root`.
fn says_the_disk_is_full(err: &dyn std::error::Error, root: &Path) -> String {
    let message = cachectl_tests::error_chain(err);
    assert!(
        message.contains("No space left on device"),
        "the error does not say the disk is full: {message}"
    );
    assert!(
        message.contains(&root.display().to_string()),
        "the error names no path in the store: {message}"
    );
    message
}

#[test]
fn a_pull_onto_a_full_disk_fails_in_words_keeps_the_store_and_completes_later() {
    let registries = registries();
    // 6 MB of layers onto a 4 MiB file system.
    let layers = [
        noise(41, 2_000_000),
        noise(42, 2_000_000),
        noise(43, 2_000_000),
    ];
    let target: Reference = format!("{}/{}:v1", registries.plain, unique("full/pull"))
        .parse()
        .expect("valid");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(push_image(&client(), &target, "full", &layers));
    let disk = SmallFs::mount("4m");
    let root = disk.path().join("store");
    let store = Store::open(&root).expect("the store opens");

    let err = runtime
        .block_on(store.pull(&client(), &target, &PullOptions::default()))
        .expect_err("6 MB do not fit in 4 MiB");
    says_the_disk_is_full(&err, &root);
    assert!(ref_names(&root).is_empty(), "a half-pulled image is listed");
    let report = store.verify().expect("verify runs");
    assert!(report.is_ok(), "{report:?}");

    disk.grow("16m");
    let pulled = runtime
        .block_on(store.pull(&client(), &target, &PullOptions::default()))
        .expect("the pull completes once there is room");
    assert!(pulled.fetched_blobs >= 1, "{pulled:?}");
    assert_eq!(ref_names(&root), vec![target.to_string()]);
    assert!(store.verify().expect("verify runs").is_ok());
    assert_eq!(assert_blobs_rehash(&root), 5);
}

#[test]
fn a_build_onto_a_full_disk_fails_in_words_keeps_nothing_and_completes_later() {
    use crate::rootfs_support::{e2fsck_passes, noise_image_store};
    let disk = SmallFs::mount("12m");
    let root = disk.path().join("store");
    // 8 MB of noise: an 8 MB layer, and no room left for an image of it
    // (nor for the layer's copy, when the work directory is on this disk).
    let (store, reference) = noise_image_store(&root, 44, 8_000_000);
    let stored = store.image(&reference, None).expect("stored image");
    let mut options = rootfs::BuildOptions::default();
    // Everything on the small disk: the work directory too.
    options.memory_scratch = false;
    let err = rootfs::build(&stored, &options).expect_err("the image does not fit");
    let message = says_the_disk_is_full(&err, &root);
    assert!(!message.contains("/proc/"), "{message}");
    // mke2fs's own words about its configuration are not in it.
    assert!(!message.contains("mke2fs.conf"), "{message}");
    // With the work directory on /dev/shm, the store's full disk is no
    // reason to start again under the store: the image is what it names.
    options.memory_scratch = true;
    let err = rootfs::build(&stored, &options).expect_err("the image does not fit");
    let message = cachectl_tests::error_chain(&err);
    assert!(message.contains("/.cachectl/ext4/partial-"), "{message}");
    assert!(message.contains("No space left on device"), "{message}");
    options.memory_scratch = false;
    let left = rootfs::cached_builds(&store).expect("listed");
    assert_eq!((left.images, left.partial_images), (0, 0), "{left:?}");
    assert!(store.verify().expect("verify runs").is_ok());

    disk.grow("64m");
    let built = rootfs::build(&stored, &options).expect("the build completes once there is room");
    e2fsck_passes(&built.path);
}

#[test]
fn a_build_whose_output_disk_fills_midway_keeps_the_image_it_built() {
    use crate::rootfs_support::{e2fsck_passes, noise_image_store};
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let (store, reference) = noise_image_store(&root, 45, 8_000_000);
    let stored = store.image(&reference, None).expect("stored image");
    // The output's disk has room for part of the image only: the copy
    // written beside the image runs out of room midway.
    let disk = SmallFs::mount("4m");
    let output = disk.path().join("vm.ext4");
    std::fs::write(&output, b"the old image").expect("write");
    let mut options = rootfs::BuildOptions::default();
    options.output = Some(output.clone());
    let err = rootfs::build(&stored, &options).expect_err("the output does not fit");
    let message = cachectl_tests::error_chain(&err);
    assert!(message.contains("No space left on device"), "{message}");
    assert!(
        message.contains(&output.display().to_string()),
        "the error does not name the output: {message}"
    );
    assert_eq!(std::fs::read(&output).expect("read"), b"the old image");
    // The image itself was built and kept: the next build is a cache hit
    // and delivers it whole once there is room.
    disk.grow("64m");
    let built = rootfs::build(&stored, &options).expect("delivered once there is room");
    assert!(built.cached, "the image was not kept");
    options.output = None;
    let cached = rootfs::build(&stored, &options).expect("cache hit");
    let same = std::fs::read(&cached.path).expect("read") == std::fs::read(&output).expect("read");
    assert!(same, "the output differs from the cached image");
    e2fsck_passes(&output);
}

#[test]
fn a_build_whose_output_shares_a_disk_with_room_for_one_image_keeps_that_image() {
    use crate::rootfs_support::noise_image_store;
    // The layer (8 MB) and one image of it (8 MB) fit; a second image,
    // the output written beside it, does not.
    let disk = SmallFs::mount("20m");
    let root = disk.path().join("store");
    let (store, reference) = noise_image_store(&root, 46, 8_000_000);
    let stored = store.image(&reference, None).expect("stored image");
    let output = disk.path().join("vm.ext4");
    let mut options = rootfs::BuildOptions::default();
    options.output = Some(output.clone());
    let err = rootfs::build(&stored, &options).expect_err("no room for the output");
    let message = cachectl_tests::error_chain(&err);
    assert!(message.contains("No space left on device"), "{message}");
    assert!(
        message.contains(&output.display().to_string()),
        "the error is not about the output: {message}"
    );
    assert!(!output.exists());
    let kept = rootfs::cached_builds(&store).expect("listed");
    assert_eq!((kept.images, kept.partial_images), (1, 0), "{kept:?}");
    options.output = None;
    let cached = rootfs::build(&stored, &options).expect("cache hit");
    assert!(cached.cached, "the image was not kept");
    crate::rootfs_support::e2fsck_passes(&cached.path);
}
