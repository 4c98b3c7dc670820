//! `build -o` where the output's file system shares extents (XFS with
//! reflinks, made in a file and loop-mounted by the test, as root): the
//! output is a copy that shares the cached image's extents, not a second
//! write of its bytes.

use crate::rootfs_support::{e2fsck_passes, noise_image_store, rootless_build_options};
use std::path::{Path, PathBuf};
use std::process::Command;

/// An XFS file system in a file, loop-mounted on a new directory,
/// unmounted when dropped.
struct LoopXfs {
    /// Holds the file system's file and the mount point.
    _dir: tempfile::TempDir,
    mount: PathBuf,
}

impl LoopXfs {
    fn mount() -> LoopXfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = dir.path().join("xfs.img");
        std::fs::File::create(&image)
            .and_then(|file| file.set_len(600 << 20))
            .expect("image file");
        run(Command::new("mkfs.xfs")
            .args(["-q", "-f", "-m", "reflink=1"])
            .arg(&image));
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).expect("mount point");
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mount));
        LoopXfs { _dir: dir, mount }
    }

    fn path(&self) -> &Path {
        &self.mount
    }
}

impl Drop for LoopXfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
    }
}

/// Runs `command` to success (it needs root and xfsprogs).
fn run(command: &mut Command) {
    let out = command.output().expect("runs");
    assert!(
        out.status.success(),
        "{command:?} (the test needs root and xfsprogs): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The flags of each extent `filefrag -v` lists for `file`.
fn extent_flags(file: &Path) -> Vec<String> {
    let out = Command::new("filefrag")
        .arg("-v")
        .arg(file)
        .output()
        .expect("filefrag runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| {
            let line = line.trim_start();
            line.split(':')
                .next()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .map(|line| line.rsplit(':').next().unwrap_or("").trim().to_owned())
        .collect()
}

#[test]
fn an_output_beside_the_image_on_xfs_shares_its_extents() {
    let xfs = LoopXfs::mount();
    let (store, reference) = noise_image_store(&xfs.path().join("store"), 47, 4_000_000);
    let stored = store.image(&reference, None).expect("stored image");
    let mut options = rootless_build_options();
    options.output = Some(xfs.path().join("vm.ext4"));
    let built = rootfs::build(&stored, &options).expect("built");
    assert!(!built.cached);
    options.output = None;
    let cached = rootfs::build(&stored, &options).expect("cache hit");
    let same =
        std::fs::read(&built.path).expect("read") == std::fs::read(&cached.path).expect("read");
    assert!(same, "the output differs from the cached image");
    e2fsck_passes(&built.path);
    let flags = extent_flags(&built.path);
    assert!(!flags.is_empty(), "filefrag lists no extent");
    assert!(
        flags.iter().all(|flags| flags.contains("shared")),
        "the output holds extents of its own: {flags:?}"
    );
}
