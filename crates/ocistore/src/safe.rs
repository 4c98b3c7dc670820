//! Files the store did not create: every file the store opens, creates,
//! renames or removes inside its root is reached without following a
//! symbolic link in its last component, is never a FIFO or device it could
//! block on or write into, and lies in a store directory that was checked
//! to be a real directory (not a link to somewhere else) just before.
//!
//! - Opens add `O_NOFOLLOW | O_NONBLOCK` (a symbolic link fails with
//!   `ELOOP`, a FIFO opens without waiting for a peer) and then check the
//!   open file with `fstat`: anything but a regular file is refused with
//!   [`Error::Planted`] naming the path. A file opened for writing must
//!   also have exactly one name (a hard link's other name may be outside
//!   the store).
//! - New files (temp files, partial downloads, import and export temps)
//!   are created with `O_CREAT | O_EXCL`, which never follows a link.
//! - `rename` and `unlink` act on the name itself, never on what a link at
//!   that name points to, so renaming over or removing a planted file is
//!   safe once its directory is checked.
//!
//! - Every directory is reached through a handle opened one component at
//!   a time from the root without following links ([`crate::dir_handle`]),
//!   and files are opened, renamed and removed relative to it: swapping a
//!   directory for a link between a check and a use changes nothing.
//!
//! The path-taking methods here open the file's directory that way first.
//! See `docs/store.md`, "Files the store did not create".

use crate::dir_handle::StoreDir;
use crate::error::{Error, Result};
use crate::layout::Store;
use std::fs::{File, Metadata};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// The mode the store creates its directories with (before the umask).
pub(crate) const DIR_MODE: u32 = 0o755;

/// What kind of file `meta` describes, in words for an error message:
/// `a symbolic link`, `a directory`, `a FIFO`, `a socket`, `a device`, `a
/// file with more than one name (a hard link)` or `a regular file`. The
/// store names what it found where it expected a file of its own with it
/// ([`Error::Planted`]); so does `rootfs` for the files it keeps there.
pub fn describe_file_kind(meta: &Metadata) -> &'static str {
    let kind = meta.file_type();
    if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else if meta.nlink() > 1 {
        "a file with more than one name (a hard link)"
    } else {
        "a regular file"
    }
}

fn planted(path: &Path, meta: &Metadata) -> Error {
    Error::Planted {
        path: path.to_path_buf(),
        found: describe_file_kind(meta),
    }
}

/// [`Error::Planted`] for `path`, saying what is there now.
pub(crate) fn planted_at(path: &Path) -> Error {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => planted(path, &meta),
        Err(_) => Error::Planted {
            path: path.to_path_buf(),
            found: "something other than what the store made",
        },
    }
}

impl Store {
    /// Opens the regular file `path` (in the store) for reading, never
    /// following a link and never blocking on a FIFO; its directory is
    /// reached through a handle (see [`StoreDir`]). Anything but a regular
    /// file there is [`Error::Planted`]. Blocking.
    pub fn open_read(&self, path: &Path) -> Result<File> {
        match self.existing_dir_of(path)? {
            Some((dir, name)) => dir.open_read(name),
            None => Err(not_found(path)),
        }
    }

    /// Reads the regular file `path` (in the store) whole (see
    /// [`Store::open_read`]).
    pub(crate) fn read_file(&self, path: &Path) -> Result<Vec<u8>> {
        match self.existing_dir_of(path)? {
            Some((dir, name)) => dir.read(name),
            None => Err(not_found(path)),
        }
    }

    /// Writes `bytes` to `path` (in the store) atomically (see
    /// [`crate::StoreDir::write_atomic`]), creating its directory.
    pub(crate) fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let (dir, name) = self.dir_of(path)?;
        dir.write_atomic(name, bytes)
    }

    /// Removes the name `path` (in the store) if it is there, never what a
    /// link there points to.
    pub(crate) fn remove_file(&self, path: &Path) -> Result<()> {
        match self.existing_dir_of(path)? {
            Some((dir, name)) => dir.remove(name),
            None => Ok(()),
        }
    }

    /// Whether a regular file is at `path` (in the store); its length.
    pub(crate) fn regular_file_len(&self, path: &Path) -> Option<u64> {
        let (dir, name) = self.existing_dir_of(path).ok()??;
        let meta = dir.stat(name).ok()??;
        meta.is_file().then_some(meta.len())
    }

    /// The directory `blobs/<alg>` of `digest`'s algorithm, open.
    pub(crate) fn blob_dir(&self, digest: &ociref::Digest) -> Result<StoreDir> {
        self.open_dir(&self.root().join("blobs").join(digest.algorithm()))
    }
}

/// The error for a file whose directory is missing.
fn not_found(path: &Path) -> Error {
    Error::Io {
        what: "opening",
        path: path.to_path_buf(),
        source: std::io::ErrorKind::NotFound.into(),
    }
}

/// Whether `err` says the file is not there.
pub(crate) fn is_not_found(err: &Error) -> bool {
    matches!(err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_fifos_and_hard_links_are_refused_for_writing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"keep").expect("written");
        let store = Store::open(dir.path().join("store")).expect("store");
        let records = store.open_dir(&store.records_dir()).expect("records");
        std::os::unix::fs::symlink(&outside, records.child("link")).expect("symlink");
        std::fs::hard_link(&outside, records.child("hard")).expect("hard link");
        for (name, found) in [
            ("link", "a symbolic link"),
            ("hard", "a file with more than one name (a hard link)"),
        ] {
            match records.open_file(name, crate::dir_handle::Access::ReadAppend) {
                Err(Error::Planted { path, found: f }) => {
                    assert_eq!((path, f), (records.child(name), found));
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        let link = records.child("link");
        assert!(matches!(store.read_file(&link), Err(Error::Planted { .. })));
        let hard = records.child("hard");
        assert_eq!(store.read_file(&hard).expect("reading is fine"), b"keep");
        assert_eq!(std::fs::read(&outside).expect("still there"), b"keep");
        std::fs::remove_dir(store.quarantine_dir()).ok();
        std::os::unix::fs::symlink(dir.path(), store.quarantine_dir()).expect("linked dir");
        assert!(matches!(
            store.open_dir(&store.quarantine_dir()),
            Err(Error::Planted { .. })
        ));
    }

    #[test]
    fn links_planted_at_the_next_temp_names_are_skipped_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let canary = dir.path().join("canary");
        std::fs::write(&canary, b"keep").expect("written");
        let store = Store::open(dir.path().join("store")).expect("store");
        let root = store.open_dir(store.root()).expect("root");
        // The temp names are predictable: the process id and a counter.
        let (now, _) = root.create_temp("index.json").expect("a temp");
        root.remove(&now).expect("removed");
        let mut parts = now.splitn(4, '-');
        let (_, pid, n) = (parts.next(), parts.next().expect("pid"), parts.next());
        let n: u64 = n.expect("counter").parse().expect("a number");
        let planted: Vec<_> = (n + 1..n + 6)
            .map(|next| root.child(&format!(".tmp-{pid}-{next}-index.json")))
            .collect();
        for path in &planted {
            std::os::unix::fs::symlink(&canary, path).expect("planted");
        }
        root.write_atomic("index.json", b"{}")
            .expect("written beside the plants");
        assert_eq!(std::fs::read(store.index_path()).expect("index"), b"{}");
        assert_eq!(std::fs::read(&canary).expect("canary"), b"keep");
        for path in &planted {
            let meta = std::fs::symlink_metadata(path).expect("still there");
            assert!(meta.file_type().is_symlink(), "{}", path.display());
        }
    }
}
