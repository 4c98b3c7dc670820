//! Files rootfs did not create: what rootfs keeps under the store (ext4
//! builds, their owner files, layer tars, work directories, unpack notes)
//! is reached without following a symbolic link, never through a FIFO or
//! device it could block on, and through directory handles.
//!
//! - Directories (`.cachectl`, `.cachectl/ext4`, `.cachectl/layers`,
//!   `.cachectl/rootfs-tmp`, `.cachectl/unpacking`) are opened one
//!   component at a time from the store's root without following a link
//!   ([`ocistore::StoreDir`], [`existing_dir`]); one that is
//!   not a real directory is refused with a planted-file error naming it.
//!   Files are then created, renamed and removed relative to the handle,
//!   and tools that take paths (`mke2fs`, `debugfs`, the unpack) get the
//!   handle's anchor (`/proc/PID/fd/N`): a directory swapped for a link
//!   after it was opened changes nothing.
//! - A cached file (an image, a layer tar) counts as there only when it
//!   is a regular file with one name ([`cached_file`]); anything else at
//!   its name (a link, a FIFO, a hard link) is removed by name, never
//!   what it points to, and the file is made again. A directory there is
//!   refused.
//! - Files are read with `O_NOFOLLOW | O_NONBLOCK` and checked with
//!   `fstat` to be regular files ([`open_read`]); a cached image copied
//!   out must also have one name ([`open_cached`]).
//! - New files are temp files created `O_EXCL` with unique names, renamed
//!   over their final name (the rename replaces the name, never follows
//!   it); removals unlink the name.

use crate::error::{Error, Result, io};
use ocistore::{Store, StoreDir};
use std::fs::File;
use std::path::Path;

/// `dir` (under the store's root), open, creating it and missing
/// directories above it (mode 0755). The root itself is the caller's
/// choice and may be a link.
#[cfg(test)]
fn store_dir(store: &Store, dir: &Path) -> Result<StoreDir> {
    store.open_dir(dir).map_err(from_store)
}

/// A store error, with a planted file said as rootfs says it.
pub(crate) fn from_store(err: ocistore::Error) -> Error {
    match err {
        ocistore::Error::Planted { path, found } => Error::Planted { path, found },
        other => Error::Store(other),
    }
}

/// `dir` (under the store's root), open, when it exists (nothing is
/// created). A component that is not a real directory is refused.
pub(crate) fn existing_dir(store: &Store, dir: &Path) -> Result<Option<StoreDir>> {
    store.existing_dir(dir).map_err(from_store)
}

/// The name of `path` in its directory.
pub(crate) fn name_of(path: &Path) -> String {
    path.file_name()
        .expect("because store files have names")
        .to_string_lossy()
        .into_owned()
}

/// Whether the cached file `path` (an image or a layer tar in a store
/// directory) is there: a regular file with one name. A link, FIFO,
/// socket, device or hard link at its name is removed (the name only) and
/// counts as absent, so the file is made again; a directory there is
/// refused.
pub(crate) fn cached_file(store: &Store, path: &Path) -> Result<bool> {
    let Some((dir, name)) = store.existing_dir_of(path).map_err(from_store)? else {
        return Ok(false);
    };
    if dir.discard_foreign(name).map_err(from_store)? {
        return Ok(false);
    }
    Ok(dir.stat(name)?.is_some())
}

/// The size of the file `path` (in the store), looked up through its
/// directory's handle.
pub(crate) fn file_len(store: &Store, path: &Path) -> Result<u64> {
    let meta = match store.existing_dir_of(path).map_err(from_store)? {
        Some((dir, name)) => dir.stat(name)?,
        None => None,
    };
    meta.map(|meta| meta.len())
        .ok_or_else(|| io("reading", path)(std::io::ErrorKind::NotFound.into()))
}

/// Opens `path` (in the store) for reading without following a link or
/// waiting on a FIFO; anything but a regular file is [`Error::Planted`].
pub(crate) fn open_read(store: &Store, path: &Path) -> Result<File> {
    store.open_read(path).map_err(from_store)
}

/// [`open_read`] for a cached image about to be copied out: it must also
/// have exactly one name (a hard link's other name may be any file on the
/// same file system).
pub(crate) fn open_cached(store: &Store, path: &Path) -> Result<File> {
    match store.existing_dir_of(path).map_err(from_store)? {
        Some((dir, name)) => dir.open_read_single(name).map_err(from_store),
        None => Err(io("opening", path)(std::io::ErrorKind::NotFound.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plants_at_a_cached_name_are_removed_by_name_and_directories_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let canary = dir.path().join("canary");
        std::fs::write(&canary, b"keep").expect("written");
        let store = Store::open(dir.path().join("store")).expect("store");
        let ext4 = store.root().join(".cachectl/ext4");
        store_dir(&store, &ext4).expect("made");
        let image = ext4.join("x.ext4");
        std::os::unix::fs::symlink(&canary, &image).expect("link");
        assert!(!cached_file(&store, &image).expect("removed"));
        assert!(std::fs::symlink_metadata(&image).is_err());
        std::fs::hard_link(&canary, &image).expect("hard link");
        assert!(matches!(
            open_cached(&store, &image),
            Err(Error::Planted { .. })
        ));
        assert!(!cached_file(&store, &image).expect("removed"));
        assert_eq!(std::fs::read(&canary).expect("canary"), b"keep");
        std::fs::write(&image, b"image").expect("written");
        assert!(cached_file(&store, &image).expect("kept"));
        std::fs::remove_file(&image).expect("removed");
        std::fs::create_dir(&image).expect("dir");
        assert!(matches!(
            cached_file(&store, &image),
            Err(Error::Planted {
                found: "a directory",
                ..
            })
        ));

        std::fs::remove_dir_all(&ext4).expect("removed");
        std::os::unix::fs::symlink(dir.path(), &ext4).expect("linked dir");
        for result in [
            existing_dir(&store, &ext4).map(|d| d.is_some()),
            store_dir(&store, &ext4).map(|_| true),
            cached_file(&store, &image),
        ] {
            match result {
                Err(Error::Planted { path, found }) => {
                    assert_eq!((path.as_path(), found), (ext4.as_path(), "a symbolic link"));
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
