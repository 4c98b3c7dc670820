//! What the planted-file tests share: the kinds of plant, a canary
//! directory outside the store, and snapshots that show whether anything
//! there changed (`store_plants.rs` for the store's own paths,
//! `rootfs_plants.rs` for the paths rootfs keeps under it).

use ociref::Digest;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What is planted.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Plant {
    /// A symbolic link to the canary file outside the store.
    LinkToFile,
    /// A symbolic link to a directory outside the store.
    LinkToDir,
    /// A hard link to the canary file.
    HardLink,
    /// A FIFO nobody reads or writes.
    Fifo,
}

/// The plants put where a file belongs.
pub(crate) const FILE_PLANTS: [Plant; 4] = [
    Plant::LinkToFile,
    Plant::LinkToDir,
    Plant::HardLink,
    Plant::Fifo,
];

/// The plants put where a directory belongs.
pub(crate) const DIR_PLANTS: [Plant; 3] = [Plant::LinkToDir, Plant::LinkToFile, Plant::Fifo];

/// How long one operation may take before it counts as hung (on a FIFO).
pub(crate) const HANG: Duration = Duration::from_secs(60);

/// Entry of a tree: kind, digest of the bytes (files), mode, mtime.
pub(crate) type Snapshot = BTreeMap<PathBuf, (String, Option<Digest>, u32, SystemTime)>;

/// Every entry under `root` (not following links).
pub(crate) fn snapshot(root: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("outside dir readable") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("lstat");
            let bytes = meta
                .is_file()
                .then(|| Digest::sha256_of(&std::fs::read(&path).expect("read")));
            if meta.is_dir() {
                stack.push(path.clone());
            }
            let kind = format!("{:?}", meta.file_type());
            let mtime = meta.modified().expect("mtime");
            out.insert(path, (kind, bytes, meta.mode(), mtime));
        }
    }
    out
}

/// A directory outside the store holding a canary file and a directory
/// with one file in it.
pub(crate) struct Outside {
    dir: tempfile::TempDir,
}

impl Outside {
    pub(crate) fn new() -> Outside {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("canary"), b"canary: must never change\n").expect("canary");
        std::fs::create_dir(dir.path().join("target")).expect("target dir");
        std::fs::write(dir.path().join("target/inside"), b"inside\n").expect("inside");
        Outside { dir }
    }

    pub(crate) fn canary(&self) -> PathBuf {
        self.dir.path().join("canary")
    }

    pub(crate) fn target(&self) -> PathBuf {
        self.dir.path().join("target")
    }

    /// Everything under it.
    pub(crate) fn snapshot(&self) -> Snapshot {
        snapshot(self.dir.path())
    }
}

/// Puts `plant` at `at`, replacing whatever is there.
pub(crate) fn plant(kind: Plant, at: &Path, outside: &Outside) {
    match std::fs::symlink_metadata(at) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(at).expect("dir removed"),
        Ok(_) => std::fs::remove_file(at).expect("file removed"),
        Err(_) => {}
    }
    std::fs::create_dir_all(at.parent().expect("parent")).expect("parent exists");
    match kind {
        Plant::LinkToFile => std::os::unix::fs::symlink(outside.canary(), at).expect("symlink"),
        Plant::LinkToDir => std::os::unix::fs::symlink(outside.target(), at).expect("symlink"),
        Plant::HardLink => std::fs::hard_link(outside.canary(), at).expect("hard link"),
        Plant::Fifo => {
            let status = std::process::Command::new("mkfifo")
                .arg(at)
                .status()
                .expect("mkfifo runs");
            assert!(status.success(), "mkfifo {}", at.display());
        }
    }
}
