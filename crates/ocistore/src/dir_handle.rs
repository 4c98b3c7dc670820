//! Store directories held open: a directory is opened one component at a
//! time from the root with `O_NOFOLLOW | O_DIRECTORY`, and files in it are
//! then opened, created, renamed and removed relative to that handle
//! (`openat`, `unlinkat`, `renameat`). Swapping a directory for a link after
//! it was opened changes nothing for the handle: there is no window between
//! a check and the use. Every file the store writes, renames or removes
//! goes through a [`StoreDir`]; so do the files `rootfs` keeps in the store.
//!
//! Code that needs a path (a child process such as `mke2fs`, a library
//! that takes paths) uses [`StoreDir::anchor`]: `/proc/self/fd/N`, which
//! the kernel resolves to the directory held, wherever it was moved.

use crate::error::{Error, Result, write_error};
use crate::layout::Store;
use crate::safe::{DIR_MODE, planted_at};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A directory of the store, open: files in it are reached relative to the
/// handle, never through a link swapped in for the directory after it was
/// opened.
#[derive(Debug)]
pub struct StoreDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// How a file in a [`StoreDir`] is opened for writing.
#[derive(Clone, Copy, Debug)]
pub enum Access {
    /// Read and append to an existing file.
    ReadAppend,
    /// Create a new file (`O_EXCL`) and write it.
    CreateNew,
    /// Open for writing, creating it when missing, never truncating (a
    /// lock file, a file several processes add lines to).
    CreateOrOpen,
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(Errno) -> Error {
    let path = path.to_path_buf();
    move |errno| Error::Io {
        what,
        path,
        source: errno.into(),
    }
}

fn name_of(path: &Path) -> &str {
    path.file_name()
        .and_then(OsStr::to_str)
        .expect("because store file names are UTF-8")
}

impl Store {
    /// Opens `dir` (the root or a directory under it) one component at a
    /// time, never following a link below the root and creating missing
    /// directories (mode 0755); a component that is not a real directory
    /// is refused with [`Error::Planted`] naming it. The root itself is the
    /// caller's choice and may be a link. Blocking.
    pub fn open_dir(&self, dir: &Path) -> Result<StoreDir> {
        Ok(self
            .walk(dir, true)?
            .expect("because missing directories are created"))
    }

    /// [`Store::open_dir`] without creating anything: `None` when `dir` (or
    /// a directory above it) is missing. Blocking.
    pub fn existing_dir(&self, dir: &Path) -> Result<Option<StoreDir>> {
        self.walk(dir, false)
    }

    /// The directory `path` is in, open (see [`Store::open_dir`]), and the
    /// file's name in it.
    pub(crate) fn dir_of<'a>(&self, path: &'a Path) -> Result<(StoreDir, &'a str)> {
        let dir = crate::layout::parent_dir(path);
        Ok((self.open_dir(dir)?, name_of(path)))
    }

    /// The directory the store file `path` is in, open (see
    /// [`Store::existing_dir`]: nothing is created), and the file's name in
    /// it; `None` when a directory on the way is missing.
    pub fn existing_dir_of<'a>(&self, path: &'a Path) -> Result<Option<(StoreDir, &'a str)>> {
        let dir = crate::layout::parent_dir(path);
        Ok(self.existing_dir(dir)?.map(|dir| (dir, name_of(path))))
    }

    fn walk(&self, dir: &Path, create: bool) -> Result<Option<StoreDir>> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let Ok(relative) = dir.strip_prefix(self.root()) else {
            // Not the store's (an export's target directory): the caller's.
            let fd = rustix::fs::open(dir, flags, Mode::empty())
                .map_err(io_error("opening directory", dir))?;
            let path = dir.to_path_buf();
            return Ok(Some(StoreDir { fd, path }));
        };
        let mut path = self.root().to_path_buf();
        let mut fd = match rustix::fs::open(&path, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if !create => return Ok(None),
            Err(errno) => return Err(io_error("opening directory", &path)(errno)),
        };
        for part in relative.components() {
            let name = part.as_os_str();
            path.push(name);
            if create {
                match rustix::fs::mkdirat(&fd, name, Mode::from_bits_truncate(DIR_MODE)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(errno) => {
                        let dir = crate::layout::parent_dir(&path);
                        return Err(write_error("creating", &path, dir, errno.into()));
                    }
                }
            }
            fd = match rustix::fs::openat(&fd, name, flags | OFlags::NOFOLLOW, Mode::empty()) {
                Ok(next) => next,
                Err(Errno::NOENT) if !create => return Ok(None),
                Err(Errno::LOOP | Errno::NOTDIR) => return Err(planted_at(&path)),
                Err(errno) => return Err(io_error("opening directory", &path)(errno)),
            };
        }
        Ok(Some(StoreDir { fd, path }))
    }
}

impl StoreDir {
    /// The directory's path (for messages; see [`StoreDir::anchor`] for
    /// a path to use).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in this directory (for messages).
    pub fn child(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// A path that reaches this very directory for as long as the handle
    /// lives, wherever the directory was moved and whatever was put at its
    /// name: `/proc/PID/fd/N`, with this process's id, so that child
    /// processes of the same user (`mke2fs`) can use it too. Where `/proc`
    /// is not mounted, or belongs to another PID namespace, the path.
    pub fn anchor(&self) -> PathBuf {
        let anchor = Path::new("/proc")
            .join(std::process::id().to_string())
            .join("fd")
            .join(self.fd.as_raw_fd().to_string());
        let same = match (rustix::fs::stat(&anchor), rustix::fs::fstat(&self.fd)) {
            (Ok(there), Ok(held)) => (there.st_dev, there.st_ino) == (held.st_dev, held.st_ino),
            _ => false,
        };
        if same { anchor } else { self.path.clone() }
    }

    /// Creates a new directory here, mode 0700 (only this user can read it
    /// or plant anything in it), named `prefix` and a unique suffix, and
    /// opens it. Returns its name and its handle.
    pub fn create_private_dir(&self, prefix: &str) -> Result<(String, StoreDir)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut tries = 0;
        loop {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!("{prefix}{nanos:08x}{n:x}");
            match rustix::fs::mkdirat(&self.fd, name.as_str(), Mode::from_bits_truncate(0o700)) {
                Ok(()) => {
                    let dir = self
                        .subdir(&name, false)?
                        .ok_or_else(|| planted_at(&self.child(&name)))?;
                    return Ok((name, dir));
                }
                Err(Errno::EXIST) if tries < 16 => tries += 1,
                Err(errno) => {
                    let path = self.child(&name);
                    return Err(write_error("creating", &path, &self.path, errno.into()));
                }
            }
        }
    }

    /// Removes `name` here: a directory with everything in it (directories
    /// a rootless unpack left read-only are made writable first, each
    /// opened from its parent with `O_NOFOLLOW` and changed through its
    /// handle, so a link is never followed), or the name itself when it is
    /// anything else. Nothing there is fine.
    pub fn remove_tree(&self, name: &str) -> Result<()> {
        match self.stat(name)? {
            None => Ok(()),
            Some(meta) if meta.is_dir() => {
                if let Some(tree) = self.subdir(name, false)? {
                    make_tree_writable(&tree.fd);
                }
                std::fs::remove_dir_all(self.anchor().join(name)).map_err(|source| {
                    write_error("removing", &self.child(name), &self.path, source)
                })
            }
            Some(_) => self.remove(name),
        }
    }

    /// Removes the empty directory `name` if it is there.
    pub fn remove_dir(&self, name: &str) -> Result<()> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(errno) => Err(write_error(
                "removing",
                &self.child(name),
                &self.path,
                errno.into(),
            )),
        }
    }

    /// The directory `name` in this one, opened without following a link
    /// (created, mode 0755, when `create`); `None` when it is missing and
    /// not created. Anything but a directory is refused naming it.
    pub fn subdir(&self, name: &str, create: bool) -> Result<Option<StoreDir>> {
        let path = self.child(name);
        if create {
            match rustix::fs::mkdirat(&self.fd, name, Mode::from_bits_truncate(DIR_MODE)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(errno) => return Err(write_error("creating", &path, &self.path, errno.into())),
            }
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => Ok(Some(StoreDir { fd, path })),
            Err(Errno::NOENT) => Ok(None),
            Err(Errno::LOOP | Errno::NOTDIR) => Err(planted_at(&path)),
            Err(errno) => Err(io_error("opening directory", &path)(errno)),
        }
    }

    /// The names in this directory (`.` and `..` left out).
    pub fn names(&self) -> Result<Vec<String>> {
        let read = || -> std::result::Result<Vec<String>, Errno> {
            let fd = rustix::fs::openat(
                &self.fd,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let mut names = Vec::new();
            for entry in rustix::fs::Dir::read_from(&fd)? {
                let name = entry?.file_name().to_bytes().to_vec();
                if name != b"." && name != b".." {
                    names.push(OsStr::from_bytes(&name).to_string_lossy().into_owned());
                }
            }
            Ok(names)
        };
        read().map_err(io_error("reading", &self.path))
    }

    /// What is at `name` (the name itself, not what a link there points
    /// to); `None` when nothing is.
    pub fn stat(&self, name: &str) -> Result<Option<std::fs::Metadata>> {
        // `O_PATH | O_NOFOLLOW` opens the name itself (a link included)
        // relative to the handle; std's `metadata` then `fstat`s it.
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => File::from(fd)
                .metadata()
                .map(Some)
                .map_err(crate::error::io("checking", &self.child(name))),
            Err(Errno::NOENT) => Ok(None),
            Err(errno) => Err(io_error("checking", &self.child(name))(errno)),
        }
    }

    /// Removes `name` when it is not a regular file with one name (a
    /// planted link, FIFO or hard link: the name goes, never what it points
    /// to); a directory there is refused. Returns whether it removed one.
    pub fn discard_foreign(&self, name: &str) -> Result<bool> {
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

    /// Opens the regular file `name` for reading (`O_NOFOLLOW |
    /// O_NONBLOCK`: a link or FIFO there is refused, never followed or
    /// waited on).
    pub fn open_read(&self, name: &str) -> Result<File> {
        self.open_checked(name, OFlags::RDONLY, false)
    }

    /// Reads the regular file `name` whole (see [`StoreDir::open_read`]).
    pub fn read(&self, name: &str) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut self.open_read(name)?, &mut bytes)
            .map_err(crate::error::io("reading", &self.child(name)))?;
        Ok(bytes)
    }

    /// Opens `name` for writing as `access` says; refuses anything but a
    /// regular file with one name (a hard link's other name may be outside
    /// the store).
    pub fn open_file(&self, name: &str, access: Access) -> Result<File> {
        let flags = match access {
            Access::ReadAppend => OFlags::RDWR | OFlags::APPEND,
            Access::CreateNew => OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
            Access::CreateOrOpen => OFlags::WRONLY | OFlags::CREATE,
        };
        self.open_checked(name, flags, true)
    }

    /// Opens the existing regular file `name` for reading only, with one
    /// name only (a lock file: `flock` needs no write access, so a
    /// read-only store can be locked shared).
    pub fn open_read_single(&self, name: &str) -> Result<File> {
        self.open_checked(name, OFlags::RDONLY, true)
    }

    fn open_checked(&self, name: &str, flags: OFlags, single: bool) -> Result<File> {
        let flags = flags | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let path = self.child(name);
        let fd = match rustix::fs::openat(&self.fd, name, flags, Mode::from_bits_truncate(0o666)) {
            Ok(fd) => fd,
            Err(Errno::LOOP | Errno::NXIO | Errno::ISDIR) => return Err(planted_at(&path)),
            Err(errno) if flags.contains(OFlags::WRONLY) || flags.contains(OFlags::RDWR) => {
                return Err(write_error("opening", &path, &self.path, errno.into()));
            }
            Err(errno) => return Err(io_error("opening", &path)(errno)),
        };
        let file = File::from(fd);
        let meta = file
            .metadata()
            .map_err(crate::error::io("checking", &path))?;
        if !meta.is_file() || (single && meta.nlink() > 1) {
            return Err(planted_at(&path));
        }
        Ok(file)
    }

    /// Creates a new temp file here for a file that will be named
    /// `target` (`.tmp-PID-N-target`, so a sweep can tell a dead process's
    /// leftovers), trying other names when one is taken (by a leftover or a
    /// plant). Returns its name and the open file.
    pub fn create_temp(&self, target: &str) -> Result<(String, File)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut tries = 0;
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!(".tmp-{}-{n}-{target}", std::process::id());
            match self.open_file(&name, Access::CreateNew) {
                Ok(file) => return Ok((name, file)),
                Err(Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists && tries < 16 =>
                {
                    tries += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Writes `bytes` to `name` atomically: a temp file here, written,
    /// fsynced, renamed over `name`, then the directory fsynced. A reader
    /// sees the old content or the new, never a mix.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.write_atomic_via(self, name, bytes)
    }

    /// [`StoreDir::write_atomic`] with the temp file in `temps` (on the
    /// same file system).
    pub(crate) fn write_atomic_via(
        &self,
        temps: &StoreDir,
        name: &str,
        bytes: &[u8],
    ) -> Result<()> {
        let (temp, mut file) = temps.create_temp(name)?;
        let result = (|| {
            let path = temps.child(&temp);
            file.write_all(bytes)
                .map_err(crate::error::io("writing", &path))?;
            file.sync_all()
                .map_err(crate::error::io("syncing", &path))?;
            drop(file);
            temps.rename(&temp, self, name)?;
            self.sync()
        })();
        if result.is_err() {
            let _ = temps.remove(&temp);
        }
        result
    }

    /// Removes `name` (the name itself, whatever it is) if it is there.
    pub fn remove(&self, name: &str) -> Result<()> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(errno) => Err(write_error(
                "removing",
                &self.child(name),
                &self.path,
                errno.into(),
            )),
        }
    }

    /// Renames `name` to `to_name` in `to`, replacing whatever name is
    /// there without following it.
    pub fn rename(&self, name: &str, to: &StoreDir, to_name: &str) -> Result<()> {
        rustix::fs::renameat(&self.fd, name, &to.fd, to_name).map_err(|errno| {
            write_error(
                "renaming into place",
                &to.child(to_name),
                &to.path,
                errno.into(),
            )
        })
    }

    /// fsyncs the directory, so that a rename into it survives a crash.
    pub fn sync(&self) -> Result<()> {
        rustix::fs::fsync(&self.fd).map_err(io_error("syncing directory", &self.path))
    }
}

/// Gives the owner read, write and search permission on `top` and every
/// directory under it, never following a link: each is opened from its
/// parent with `O_NOFOLLOW` and changed through its own handle (`fchmod`).
fn make_tree_writable(top: &OwnedFd) {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut stack = match rustix::fs::openat(top, ".", flags, Mode::empty()) {
        Ok(fd) => vec![fd],
        Err(_) => return,
    };
    while let Some(fd) = stack.pop() {
        let _ = rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700));
        let Ok(entries) = rustix::fs::Dir::read_from(&fd) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let kind = entry.file_type();
            let is_dir = kind == FileType::Directory || kind == FileType::Unknown;
            if !is_dir || name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            if let Ok(child) = rustix::fs::openat(&fd, name, flags, Mode::empty()) {
                stack.push(child);
            }
        }
    }
}

impl AsFd for StoreDir {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
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

    #[test]
    fn a_handle_keeps_writing_into_its_directory_after_a_swap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).expect("elsewhere");
        let store = Store::open(dir.path().join("store")).expect("store");
        let records = store.open_dir(&store.records_dir()).expect("records");
        let moved = store.private_dir().join("moved");
        std::fs::rename(store.records_dir(), &moved).expect("moved away");
        std::os::unix::fs::symlink(&elsewhere, store.records_dir()).expect("swapped");
        records.write_atomic("a.json", b"{}").expect("written");
        std::fs::write(records.anchor().join("b.json"), b"[]").expect("through the anchor");
        assert!(
            records.anchor().starts_with("/proc"),
            "{}",
            records.anchor().display()
        );
        assert_eq!(std::fs::read(moved.join("a.json")).expect("a"), b"{}");
        assert_eq!(std::fs::read(moved.join("b.json")).expect("b"), b"[]");
        let mut names = records.names().expect("names");
        names.sort();
        assert_eq!(names, ["a.json", "b.json"]);
        assert_eq!(std::fs::read_dir(&elsewhere).expect("elsewhere").count(), 0);
        assert!(
            records
                .stat("a.json")
                .expect("stat")
                .is_some_and(|m| m.is_file())
        );
        records.remove("a.json").expect("removed");
        assert!(records.stat("a.json").expect("stat").is_none());
    }
}
