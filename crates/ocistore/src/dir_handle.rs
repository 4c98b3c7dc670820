//! Store directories held open: a directory is opened one component at a
//! time from the root with `O_NOFOLLOW | O_DIRECTORY`, and files in it are
//! then opened, removed and renamed relative to that handle (`openat`,
//! `unlinkat`, `renameat`). Swapping a directory for a link after it was
//! opened changes nothing for the handle: there is no window between a
//! check and the use. Partial downloads and their commit into `blobs/` go
//! through these handles.

use crate::error::{Error, Result, write_error};
use crate::layout::Store;
use crate::safe::{DIR_MODE, planted_at};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A store directory, open.
#[derive(Debug)]
pub(crate) struct DirHandle {
    fd: OwnedFd,
    path: PathBuf,
}

/// How a file in a [`DirHandle`] is opened.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Access {
    /// Read and append to an existing file.
    ReadAppend,
    /// Create a new file (`O_EXCL`) and write it.
    CreateNew,
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(Errno) -> Error {
    let path = path.to_path_buf();
    move |errno| Error::Io {
        what,
        path,
        source: errno.into(),
    }
}

impl Store {
    /// Opens `dir` (under the root) one component at a time, never
    /// following a link below the root and creating missing directories
    /// (mode [`DIR_MODE`]); a component that is not a real directory is
    /// refused with [`Error::Planted`] naming it.
    pub(crate) fn open_dir(&self, dir: &Path) -> Result<DirHandle> {
        let relative = dir
            .strip_prefix(self.root())
            .expect("because store directories are under the root");
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut path = self.root().to_path_buf();
        let mut fd = rustix::fs::open(&path, flags, Mode::empty())
            .map_err(io_error("opening directory", &path))?;
        for part in relative.components() {
            let name = part.as_os_str();
            path.push(name);
            match rustix::fs::mkdirat(&fd, name, Mode::from_bits_truncate(DIR_MODE)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(errno) => {
                    let dir = crate::layout::parent_dir(&path);
                    return Err(write_error("creating", &path, dir, errno.into()));
                }
            }
            fd = match rustix::fs::openat(&fd, name, flags | OFlags::NOFOLLOW, Mode::empty()) {
                Ok(next) => next,
                Err(Errno::LOOP | Errno::NOTDIR) => return Err(planted_at(&path)),
                Err(errno) => return Err(io_error("opening directory", &path)(errno)),
            };
        }
        Ok(DirHandle { fd, path })
    }
}

impl DirHandle {
    /// The path of `name` in this directory (for messages).
    pub(crate) fn child(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Removes `name` when it is not a regular file with one name (a
    /// planted link, FIFO or hard link: the name goes, never what it points
    /// to); a directory there is refused. Returns whether it removed one.
    pub(crate) fn discard_foreign(&self, name: &str) -> Result<bool> {
        let stat = match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => return Ok(false),
            Err(errno) => return Err(io_error("checking", &self.child(name))(errno)),
        };
        let kind = FileType::from_raw_mode(stat.st_mode);
        if kind == FileType::RegularFile && stat.st_nlink == 1 {
            return Ok(false);
        }
        if kind == FileType::Directory {
            return Err(planted_at(&self.child(name)));
        }
        tracing::warn!(path = %self.child(name).display(), ?kind, links = stat.st_nlink,
            "removing a file the store did not create");
        self.remove(name)?;
        Ok(true)
    }

    /// Opens `name` (`O_NOFOLLOW | O_NONBLOCK`); refuses anything but a
    /// regular file with one name.
    pub(crate) fn open_file(&self, name: &str, access: Access) -> Result<File> {
        let access = match access {
            Access::ReadAppend => OFlags::RDWR | OFlags::APPEND,
            Access::CreateNew => OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
        };
        let flags = access | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let path = self.child(name);
        let fd = match rustix::fs::openat(&self.fd, name, flags, Mode::from_bits_truncate(0o666)) {
            Ok(fd) => fd,
            Err(Errno::LOOP | Errno::NXIO | Errno::ISDIR) => return Err(planted_at(&path)),
            Err(errno) => return Err(write_error("opening", &path, &self.path, errno.into())),
        };
        let file = File::from(fd);
        let meta = file
            .metadata()
            .map_err(crate::error::io("checking", &path))?;
        if !meta.is_file() || meta.nlink() > 1 {
            return Err(planted_at(&path));
        }
        Ok(file)
    }

    /// Removes `name` (the name itself, whatever it is) if it is there.
    pub(crate) fn remove(&self, name: &str) -> Result<()> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(errno) => Err(io_error("removing", &self.child(name))(errno)),
        }
    }

    /// Renames `name` to `to_name` in `to`, replacing whatever name is
    /// there without following it.
    pub(crate) fn rename(&self, name: &str, to: &DirHandle, to_name: &str) -> Result<()> {
        rustix::fs::renameat(&self.fd, name, &to.fd, to_name)
            .map_err(io_error("renaming into place", &to.child(to_name)))
    }

    /// fsyncs the directory, so that a rename into it survives a crash.
    pub(crate) fn sync(&self) -> Result<()> {
        rustix::fs::fsync(&self.fd).map_err(io_error("syncing directory", &self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planted_names_are_removed_and_linked_directories_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let canary = dir.path().join("canary");
        std::fs::write(&canary, b"keep").expect("written");
        let store = Store::open(dir.path().join("store")).expect("store");
        let ingest = store.open_dir(&store.ingest_dir()).expect("ingest");
        std::os::unix::fs::symlink(&canary, ingest.child("a.partial")).expect("link");
        std::fs::hard_link(&canary, ingest.child("b.partial")).expect("hard link");
        for name in ["a.partial", "b.partial"] {
            assert!(matches!(
                ingest.open_file(name, Access::ReadAppend),
                Err(Error::Planted { .. })
            ));
            assert!(ingest.discard_foreign(name).expect("removed"), "{name}");
            assert!(!ingest.child(name).exists());
        }
        assert_eq!(std::fs::read(&canary).expect("canary"), b"keep");
        let mut file = ingest
            .open_file("c.partial", Access::CreateNew)
            .expect("new");
        std::io::Write::write_all(&mut file, b"x").expect("written");
        assert!(!ingest.discard_foreign("c.partial").expect("kept"));

        std::fs::remove_dir_all(store.ingest_dir()).expect("removed");
        std::os::unix::fs::symlink(dir.path(), store.ingest_dir()).expect("linked dir");
        match store.open_dir(&store.ingest_dir()) {
            Err(Error::Planted { path, found }) => {
                assert_eq!((path, found), (store.ingest_dir(), "a symbolic link"));
            }
            other => panic!("{other:?}"),
        }
    }
}
