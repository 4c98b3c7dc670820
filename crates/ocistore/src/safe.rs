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
//! What is left: a directory is checked (`lstat`) and then used by path,
//! so someone who can write to the store's root could swap a checked
//! directory for a link between the check and the use. Partial downloads
//! avoid that through directory handles ([`crate::dir_handle`]). See
//! `docs/store.md`, "Files the store did not create".

use crate::error::{Error, Result, io, write_error};
use crate::layout::Store;
use std::fs::{DirBuilder, File, Metadata, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The mode the store creates its directories with (before the umask).
pub(crate) const DIR_MODE: u32 = 0o755;

/// The flags every open of a file in the store adds.
fn no_follow() -> i32 {
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    i32::try_from(flags.bits()).expect("because open flags fit an int")
}

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

/// Whether `err` says the file is not there.
pub(crate) fn is_not_found(err: &Error) -> bool {
    matches!(err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

/// Checks that `dir` is a real directory (not a symbolic link to one).
pub(crate) fn check_dir(dir: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(dir).map_err(io("checking", dir))?;
    if meta.is_dir() {
        Ok(())
    } else {
        Err(planted(dir, &meta))
    }
}

/// Creates `dir` (mode [`DIR_MODE`], its parent must exist) unless it is
/// there, then checks that it is a real directory.
pub(crate) fn ensure_dir(dir: &Path) -> Result<()> {
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => check_dir(dir),
        Err(source) => Err(write_error(
            "creating",
            dir,
            crate::layout::parent_dir(dir),
            source,
        )),
    }
}

/// Opens `path` with `options` (plus `O_NOFOLLOW | O_NONBLOCK`) and
/// refuses anything but a regular file; when `writing`, also a file with
/// more than one name.
fn open_checked(path: &Path, options: &mut OpenOptions, writing: bool) -> Result<File> {
    let file = match options.custom_flags(no_follow()).open(path) {
        Ok(file) => file,
        Err(source) => {
            // ELOOP (a link), ENXIO (a FIFO nobody reads), EISDIR, …: say
            // what is there when it is not a regular file. A name taken
            // (`O_EXCL`) stays an I/O error: the caller may try another.
            let kind = source.kind();
            if kind != std::io::ErrorKind::NotFound
                && kind != std::io::ErrorKind::AlreadyExists
                && let Ok(meta) = std::fs::symlink_metadata(path)
                && !meta.is_file()
            {
                return Err(planted(path, &meta));
            }
            return Err(Error::Io {
                what: "opening",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let meta = file.metadata().map_err(io("checking", path))?;
    if !meta.is_file() || (writing && meta.nlink() > 1) {
        return Err(planted(path, &meta));
    }
    Ok(file)
}

/// Opens the regular file `path` for reading, never following a link and
/// never blocking on a FIFO.
pub(crate) fn open_read(path: &Path) -> Result<File> {
    open_checked(path, OpenOptions::new().read(true), false)
}

/// Reads the regular file `path` whole (see [`open_read`]).
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    let mut file = open_read(path)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes).map_err(io("reading", path))?;
    Ok(bytes)
}

/// Opens the regular file `path` with `options` for writing; it must have
/// one name only. A store this process cannot write fails with
/// [`Error::ReadOnly`] naming the file's directory.
pub(crate) fn open_write(path: &Path, options: &mut OpenOptions) -> Result<File> {
    open_checked(path, options, true).map_err(|err| match err {
        Error::Io { what, path, source } => {
            write_error(what, &path, crate::layout::parent_dir(&path), source)
        }
        other => other,
    })
}

/// Opens the existing regular file `path` for reading only; like a file
/// opened for writing, it must have one name only (a lock file: `flock`
/// needs no write access, so a read-only store can be locked shared).
pub(crate) fn open_read_single(path: &Path) -> Result<File> {
    open_checked(path, OpenOptions::new().read(true), true)
}

/// Creates the new file `path` (`O_EXCL`: never through a link, never over
/// anything already there).
pub(crate) fn create_new(path: &Path) -> Result<File> {
    open_write(path, OpenOptions::new().write(true).create_new(true))
}

/// Creates a new temp file in `dir` for a file that will become `target`,
/// trying other names when one is taken (by a leftover or a plant).
pub(crate) fn create_temp(dir: &Path, target: &Path) -> Result<(PathBuf, File)> {
    let mut tries = 0;
    loop {
        let path = crate::layout::temp_path(dir, target);
        match create_new(&path) {
            Ok(file) => return Ok((path, file)),
            Err(Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists && tries < 16 =>
            {
                tries += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

impl Store {
    /// `dir`, a directory of the store under its root, after checking that
    /// it and every directory between the root and it are real directories
    /// (creating missing ones, mode [`DIR_MODE`]). The root itself is the
    /// caller's choice and may be a link.
    pub(crate) fn checked_dir(&self, dir: &Path) -> Result<PathBuf> {
        let relative = dir
            .strip_prefix(self.root())
            .expect("because store directories are under the root");
        let mut path = self.root().to_path_buf();
        for part in relative.components() {
            path.push(part);
            ensure_dir(&path)?;
        }
        Ok(path)
    }

    /// The directory `blobs/<alg>` of `digest`'s algorithm, checked.
    pub(crate) fn checked_blob_dir(&self, digest: &ociref::Digest) -> Result<PathBuf> {
        self.checked_dir(&self.root().join("blobs").join(digest.algorithm()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_fifos_and_hard_links_are_refused_for_writing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"keep").expect("written");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).expect("symlink");
        let hard = dir.path().join("hard");
        std::fs::hard_link(&outside, &hard).expect("hard link");
        let append = || OpenOptions::new().append(true).clone();
        for (path, found) in [
            (&link, "a symbolic link"),
            (&hard, "a file with more than one name (a hard link)"),
        ] {
            match open_write(path, &mut append()) {
                Err(Error::Planted { path: p, found: f }) => {
                    assert_eq!((&p, f), (path, found));
                }
                other => panic!("{}: {other:?}", path.display()),
            }
        }
        assert!(matches!(read_file(&link), Err(Error::Planted { .. })));
        assert_eq!(read_file(&hard).expect("reading is fine"), b"keep");
        assert_eq!(std::fs::read(&outside).expect("still there"), b"keep");
        assert!(matches!(check_dir(&outside), Err(Error::Planted { .. })));
    }

    #[test]
    fn links_planted_at_the_next_temp_names_are_skipped_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let canary = dir.path().join("canary");
        std::fs::write(&canary, b"keep").expect("written");
        let store = dir.path().join("store");
        std::fs::create_dir(&store).expect("store dir");
        let target = store.join("index.json");
        // The temp names are predictable: the process id and a counter.
        let now = crate::layout::temp_path(&store, &target);
        let name = now
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        let mut parts = name.splitn(4, '-');
        let (_, pid, n) = (parts.next(), parts.next().expect("pid"), parts.next());
        let n: u64 = n.expect("counter").parse().expect("a number");
        let planted: Vec<PathBuf> = (n + 1..n + 6)
            .map(|next| store.join(format!(".tmp-{pid}-{next}-index.json")))
            .collect();
        for path in &planted {
            std::os::unix::fs::symlink(&canary, path).expect("planted");
        }
        crate::layout::atomic_write(&target, b"{}").expect("written beside the plants");
        assert_eq!(std::fs::read(&target).expect("target"), b"{}");
        assert_eq!(std::fs::read(&canary).expect("canary"), b"keep");
        for path in &planted {
            let meta = std::fs::symlink_metadata(path).expect("still there");
            assert!(meta.file_type().is_symlink(), "{}", path.display());
        }
    }
}
