//! Files rootfs did not create: what rootfs keeps under the store (ext4
//! builds, their owner files, layer tars, work directories, unpack notes)
//! is reached without following a symbolic link, never through a FIFO or
//! device it could block on, and in store directories checked to be real
//! directories down from the root.
//!
//! - Directories (`.cachectl`, `.cachectl/ext4`, `.cachectl/layers`,
//!   `.cachectl/rootfs-tmp`, `.cachectl/unpacking`) are checked with
//!   `lstat` one component at a time from the store's root ([`store_dir`],
//!   [`existing_dir`]); one that is not a real directory is refused with
//!   [`Error::Planted`] naming it.
//! - A cached file (an image, a layer tar) counts as there only when it
//!   is a regular file with one name ([`cached_file`]); anything else at
//!   its name (a link, a FIFO, a hard link) is removed by name, never
//!   what it points to, and the file is made again. A directory there is
//!   refused.
//! - Files are read with `O_NOFOLLOW | O_NONBLOCK` and checked with
//!   `fstat` to be regular files ([`open_read`]); a cached image copied
//!   out must also have one name ([`open_cached`]).
//! - New files are temp files created `O_EXCL` with random names, renamed
//!   over their final name (the rename replaces the name, never follows
//!   it); removals unlink the name.

use crate::error::{Error, Result, io};
use ocistore::{Store, StoreDir};
use rustix::fs::{Mode, OFlags};
use std::fs::{DirBuilder, File, Metadata, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The mode rootfs creates store directories with (before the umask).
const DIR_MODE: u32 = 0o755;

fn planted(path: &Path, meta: &Metadata) -> Error {
    Error::Planted {
        path: path.to_path_buf(),
        found: ocistore::describe_file_kind(meta),
    }
}

/// [`Error::Planted`] for `path`, saying what is there now.
pub(crate) fn planted_at(path: &Path) -> Error {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => planted(path, &meta),
        Err(_) => Error::Planted {
            path: path.to_path_buf(),
            found: "something other than what rootfs made",
        },
    }
}

/// The relative components of `dir` under the store's root.
fn under_root<'a>(store: &Store, dir: &'a Path) -> &'a Path {
    dir.strip_prefix(store.root())
        .expect("because rootfs's directories are under the store's root")
}

/// `dir` (under the store's root), after checking that it and every
/// directory between the root and it are real directories, creating
/// missing ones (mode 0755). The root itself is the caller's choice and
/// may be a link.
pub(crate) fn store_dir(store: &Store, dir: &Path) -> Result<PathBuf> {
    let mut path = store.root().to_path_buf();
    for part in under_root(store, dir).components() {
        path.push(part);
        match DirBuilder::new().mode(DIR_MODE).create(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => check_dir(&path)?,
            Err(err) => return Err(io("creating", &path)(err)),
        }
    }
    Ok(path)
}

/// Whether `dir` (under the store's root) exists, every directory from
/// the root down to it checked as in [`store_dir`] (nothing is created). A
/// component that is not a real directory is [`Error::Planted`].
pub(crate) fn existing_dir(store: &Store, dir: &Path) -> Result<bool> {
    let mut path = store.root().to_path_buf();
    for part in under_root(store, dir).components() {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) => return Err(planted(&path, &meta)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(err) => return Err(io("checking", &path)(err)),
        }
    }
    Ok(true)
}

/// The store directory `path` (a file under the store's root) is in, open
/// and created when missing (see [`ocistore::Store::open_dir`]), and the
/// file's name in it.
pub(crate) fn dir_of(store: &Store, path: &Path) -> Result<(StoreDir, String)> {
    let parent = path
        .parent()
        .expect("because store files are in a directory");
    let name = path
        .file_name()
        .expect("because store files have names")
        .to_string_lossy()
        .into_owned();
    Ok((store.open_dir(parent)?, name))
}

/// Checks that `dir` is a real directory (not a link to one).
pub(crate) fn check_dir(dir: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(dir).map_err(io("checking", dir))?;
    if meta.is_dir() {
        Ok(())
    } else {
        Err(planted(dir, &meta))
    }
}

/// Whether the cached file `path` (an image or a layer tar in a store
/// directory) is there: a regular file with one name, in checked
/// directories. A link, FIFO, socket, device or hard link at its name is
/// removed (the name only) and counts as absent, so the file is made
/// again; a directory there is [`Error::Planted`].
pub(crate) fn cached_file(store: &Store, path: &Path) -> Result<bool> {
    let parent = path
        .parent()
        .expect("because cached files are in a directory");
    if !existing_dir(store, parent)? {
        return Ok(false);
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(io("checking", path)(err)),
    };
    if meta.is_file() && meta.nlink() == 1 {
        return Ok(true);
    }
    if meta.is_dir() {
        return Err(planted(path, &meta));
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(false),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(io("removing", path)(err)),
    }
}

/// Opens `path` for reading with `O_NOFOLLOW | O_NONBLOCK` (a link fails,
/// a FIFO does not wait for a writer) and refuses anything but a regular
/// file with [`Error::Planted`].
pub(crate) fn open_read(path: &Path) -> Result<File> {
    let flags = OFlags::NOFOLLOW | OFlags::NONBLOCK;
    let flags = i32::try_from(flags.bits()).expect("because open flags fit an int");
    let file = match OpenOptions::new().read(true).custom_flags(flags).open(path) {
        Ok(file) => file,
        Err(err) => {
            if err.kind() != std::io::ErrorKind::NotFound
                && let Ok(meta) = std::fs::symlink_metadata(path)
                && !meta.is_file()
            {
                return Err(planted(path, &meta));
            }
            return Err(io("opening", path)(err));
        }
    };
    let meta = file.metadata().map_err(io("checking", path))?;
    if !meta.is_file() {
        return Err(planted(path, &meta));
    }
    Ok(file)
}

/// [`open_read`] for a cached image about to be copied out: it must also
/// have exactly one name (a hard link's other name may be any file on the
/// same file system).
pub(crate) fn open_cached(path: &Path) -> Result<File> {
    let file = open_read(path)?;
    let meta = file.metadata().map_err(io("checking", path))?;
    if meta.nlink() > 1 {
        return Err(planted(path, &meta));
    }
    Ok(file)
}

/// Opens the directory `path` (for a lock) without following a link.
pub(crate) fn open_dir(path: &Path) -> Result<File> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => Ok(File::from(fd)),
        Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => Err(planted_at(path)),
        Err(errno) => Err(io("opening", path)(errno.into())),
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
        let ext4 = store_dir(&store, &store.root().join(".cachectl/ext4")).expect("made");
        let image = ext4.join("x.ext4");
        std::os::unix::fs::symlink(&canary, &image).expect("link");
        assert!(!cached_file(&store, &image).expect("removed"));
        assert!(std::fs::symlink_metadata(&image).is_err());
        std::fs::hard_link(&canary, &image).expect("hard link");
        assert!(matches!(open_cached(&image), Err(Error::Planted { .. })));
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
            existing_dir(&store, &ext4),
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
