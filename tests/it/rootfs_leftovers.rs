//! What builds and unpacks leave and what removes it: cached builds and
//! layer tars go when no stored image owns them, and the work and staging
//! directories of killed processes are swept (by gc or the next unpack)
//! while those of live ones stay.

use crate::rootfs_support::{rootless_build_options, store_with_fixture};
use rootfs::UnpackOptions;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What `Store::gc` alone removed of rootfs's builds and layer tars.
fn collected(store: &ocistore::Store) -> rootfs::BuildFiles {
    rootfs::BuildFiles::collected(&store.gc().expect("gc").derived)
}

#[test]
fn builds_of_a_removed_and_collected_image_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "small");
    let (_, layered) = store_with_fixture(&dir.path().join("store"), "layered");
    let options = rootless_build_options();
    let small = rootfs::build(
        &store.image(&reference, None).expect("stored image"),
        &options,
    )
    .expect("build small");
    let kept = rootfs::build(
        &store.image(&layered, None).expect("stored image"),
        &options,
    )
    .expect("build layered");
    assert_eq!(collected(&store).images, 0, "both images are stored");
    assert!(store.remove(&reference).expect("removed"));
    // `Store::gc` alone: no rootfs call collects the build.
    let removed = collected(&store);
    assert_eq!(removed.images, 1);
    assert_eq!(removed.bytes, small.size);
    assert!(!small.path.exists());
    assert!(
        !owner_file(&small.path).exists(),
        "the removed build's owner file is left"
    );
    assert!(kept.path.exists());
    assert!(owner_file(&kept.path).exists());
}

/// The file naming what keeps a cached build or layer tar.
fn owner_file(kept: &Path) -> PathBuf {
    let mut name = kept.as_os_str().to_owned();
    name.push(".owner");
    PathBuf::from(name)
}

#[test]
fn layer_tars_and_layer_images_stay_while_an_image_has_their_layer() {
    // `layered` (gzip) and `layered-zstd` share their diff IDs, so their
    // layer tars are the same files; the tars go only when both are gone.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let (store, zstd) = store_with_fixture(&root, "layered-zstd");
    let (_, gzip) = store_with_fixture(&root, "layered");
    let tars =
        rootfs::layer_tars(&store.image(&zstd, None).expect("stored image")).expect("zstd tars");
    assert!(
        rootfs::layer_tars(&store.image(&gzip, None).expect("stored image"))
            .expect("gzip tars")
            .iter()
            .all(|t| t.cached)
    );
    let layer_images = rootfs::build_layers(
        &store.image(&gzip, None).expect("stored image"),
        &rootless_build_options(),
    )
    .expect("per layer");
    let found = rootfs::cached_builds(&store).expect("counted");
    assert_eq!(
        (found.images, found.layer_tars),
        (layer_images.len(), tars.len())
    );
    let tar_bytes: u64 = tars
        .iter()
        .map(|t| std::fs::metadata(&t.path).expect("tar").len())
        .sum();
    let image_bytes: u64 = layer_images.iter().map(|l| l.size).sum();
    assert_eq!(found.bytes, tar_bytes + image_bytes);

    assert!(store.remove(&zstd).expect("removed"));
    let removed = collected(&store);
    assert_eq!(
        removed,
        rootfs::BuildFiles::default(),
        "the gzip image still has the layers"
    );
    assert!(tars.iter().all(|t| t.path.is_file()));

    assert!(store.remove(&gzip).expect("removed"));
    let removed = collected(&store);
    assert_eq!(
        (removed.images, removed.layer_tars, removed.bytes),
        (layer_images.len(), tars.len(), tar_bytes + image_bytes)
    );
    for path in tars
        .iter()
        .map(|t| &t.path)
        .chain(layer_images.iter().map(|l| &l.path))
    {
        assert!(!path.exists(), "{} is left", path.display());
        assert!(
            !owner_file(path).exists(),
            "the owner of {} is left",
            path.display()
        );
    }
    assert_eq!(
        rootfs::cached_builds(&store).expect("counted"),
        rootfs::BuildFiles::default()
    );
}

#[test]
fn work_directories_of_killed_processes_are_swept_and_live_ones_kept() {
    // A build killed with SIGKILL leaves its tree under the store, or in
    // /dev/shm (memory, until reboot): gc must reclaim them, never one a
    // live process holds.
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = store_with_fixture(&dir.path().join("store"), "small");
    let work = store.root().join(".cachectl/rootfs-tmp");
    let killed = work.join("build-killed");
    left_by_a_killed_process(&killed);
    let young = work.join("build-young");
    std::fs::create_dir_all(&young).expect("young");
    let live = work.join("build-live");
    old_dir(&live);
    let in_memory = Path::new("/dev/shm").join(format!("cachectl-test-{}", std::process::id()));
    let shm = std::fs::create_dir(&in_memory).is_ok();
    if shm {
        make_old(&in_memory);
    }
    // Another process holds the lock a live WorkDir holds.
    let mut holder = hold_lock(&live);

    let removed = rootfs::remove_stale_work(&store).expect("sweep");
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(!killed.exists(), "the killed build's tree is gone");
    assert!(young.exists(), "a directory younger than a minute is kept");
    assert!(live.exists(), "a locked directory is kept");
    if shm {
        assert!(!in_memory.exists(), "the in-memory tree is gone");
    }
    assert!(removed > usize::from(shm), "{removed}");
}

/// A work tree at `dir` as a killed process leaves it: a read-only
/// directory holding a file, two hours old, locked by no one.
fn left_by_a_killed_process(dir: &Path) {
    std::fs::create_dir_all(dir.join("tree/ro")).expect("killed tree");
    std::fs::write(dir.join("tree/ro/file"), b"left behind").expect("file");
    std::fs::set_permissions(
        dir.join("tree/ro"),
        std::os::unix::fs::PermissionsExt::from_mode(0o555),
    )
    .expect("read-only dir");
    make_old(dir);
}

/// Another process holding `flock` on the directory `dir` (as a live
/// unpack or build does) until killed.
fn hold_lock(dir: &Path) -> std::process::Child {
    let mut holder = Command::new("flock")
        .arg("-n")
        .arg(dir)
        .args(["-c", "echo locked; sleep 30"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("flock runs");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().expect("stdout")),
        &mut line,
    )
    .expect("flock says it holds the lock");
    assert_eq!(line.trim(), "locked");
    holder
}

/// An empty directory at `path`, two hours old.
fn old_dir(path: &Path) {
    std::fs::create_dir_all(path).expect("directory");
    make_old(path);
}

/// Sets the mtime of `path` two hours back.
fn make_old(path: &Path) {
    let touched = Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(path)
        .status()
        .expect("touch runs");
    assert!(touched.success());
}

#[test]
fn a_killed_unpacks_staging_directory_is_swept_by_the_next_unpack_into_that_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "small");
    let sandbox = dir.path().join("box");
    let killed = sandbox.join(".rootfs.unpack-killed");
    left_by_a_killed_process(&killed);
    // Another unpack into the same target, still running (locked), and
    // one into another target: neither is touched.
    let live = sandbox.join(".rootfs.unpack-live");
    old_dir(&live);
    let other = sandbox.join(".other.unpack-killed");
    old_dir(&other);
    let mut holder = hold_lock(&live);

    let unpacked = rootfs::unpack(
        &store.image(&reference, None).expect("stored image"),
        &sandbox.join("rootfs"),
        &UnpackOptions::rootless(),
    );
    let _ = holder.kill();
    let _ = holder.wait();
    unpacked.expect("unpack");
    assert!(!killed.exists(), "the killed unpack's staging dir is left");
    assert!(live.exists(), "a live unpack's staging dir was removed");
    assert!(other.exists(), "another target's staging dir was removed");
    assert!(sandbox.join("rootfs").is_dir());
    let notes = store.root().join(".cachectl/unpacking");
    let left = std::fs::read_dir(&notes).map_or(0, Iterator::count);
    assert_eq!(left, 0, "a finished unpack left its note in the store");
}

#[test]
fn gc_sweeps_the_staging_directories_of_killed_unpacks_wherever_they_are() {
    // A killed unpack leaves its staging dir beside a target the next
    // unpack may never name again: its note in the store lets gc find it.
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = store_with_fixture(&dir.path().join("store"), "small");
    let elsewhere = dir.path().join("vm-images");
    let killed = elsewhere.join(".guest.unpack-killed");
    left_by_a_killed_process(&killed);
    let live = elsewhere.join(".other.unpack-live");
    old_dir(&live);
    // A note naming a directory that is no staging directory: never removed.
    let precious = elsewhere.join("precious");
    old_dir(&precious);
    let notes = store.root().join(".cachectl/unpacking");
    std::fs::create_dir_all(&notes).expect("notes");
    for (name, path) in [("a", &killed), ("b", &live), ("c", &precious)] {
        std::fs::write(notes.join(name), path.as_os_str().as_encoded_bytes()).expect("note");
        make_old(&notes.join(name));
    }
    let mut holder = hold_lock(&live);
    let removed = rootfs::remove_stale_work(&store).expect("sweep");
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(!killed.exists(), "the killed unpack's staging dir is left");
    assert!(!notes.join("a").exists(), "its note is left");
    assert!(
        live.exists() && notes.join("b").exists(),
        "a live unpack was swept"
    );
    assert!(
        precious.exists(),
        "a directory that is no staging dir was removed"
    );
    assert!(!notes.join("c").exists(), "the stray note is left");
    assert!(removed >= 1, "{removed}");
}
