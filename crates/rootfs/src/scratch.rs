//! Private directories for intermediate trees (`build`, `build_layers`),
//! on the store's disk or, for `build`, in memory.
//!
//! A tree that only lives until `mke2fs -d` has read it need not reach a
//! disk: unpacked on a tmpfs (`/dev/shm`), it costs no journal, no
//! write-back and no block allocation, and `mke2fs` reads it from memory.
//! [`WorkDir::in_memory`] offers one when the tmpfs and the memory have
//! room for a generous estimate of the tree; when the estimate was wrong
//! the tmpfs fills up, the build sees `ENOSPC` ([`is_out_of_space`]) and
//! starts again on the store.

use crate::error::{Error, Result, io};
use crate::leftovers::{self, is_stale};
use crate::options::FsType;
use crate::safe;
use ocistore::{Store, StoreDir};
use std::fs::Permissions;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The tmpfs tried for in-memory trees.
const MEMORY_DIR: &str = "/dev/shm";
/// Layers are assumed to expand by at most this factor (gzip of typical
/// image content: 2–4x); a layer that expands more fills the tmpfs and
/// the build falls back to the store.
const EXPANSION: u64 = 5;
/// Room added to the estimate of a tree (directories, small files rounded
/// up to pages, mke2fs's own files).
const MARGIN: u64 = 64 << 20;

/// A private directory holding an unpacked tree, removed (even rootless,
/// even with read-only directories) when dropped. While it lives, the
/// directory is locked (`flock`), so [`remove_stale_work`] can tell it
/// from one a killed process left. It is held open: every use goes through
/// its anchor ([`WorkDir::path`]), so a directory swapped in at its name
/// is never written.
pub(crate) struct WorkDir {
    /// The directory, open and locked (the lock goes with the process).
    dir: StoreDir,
    /// Where every use goes: `/proc/PID/fd/N` of `dir`.
    anchor: PathBuf,
    /// The directory it is in, and its name there.
    parent: StoreDir,
    name: String,
}

impl WorkDir {
    /// A new, empty work directory under `store`
    /// (`.cachectl/rootfs-tmp/<prefix>…`).
    pub(crate) fn new(store: &Store, prefix: &str) -> Result<WorkDir> {
        // A work area of the store: `gc` removes what killed builds left.
        let parent = store.work_area(WORK_AREA).map_err(safe::from_store)?;
        WorkDir::new_in(parent, prefix)
    }

    /// A new, empty work directory on `/dev/shm` (`cachectl-<prefix>…`,
    /// mode 0700), when it is a directory whose free space is at least
    /// `estimate` plus a margin and the host's available memory at least
    /// twice that; `None` otherwise.
    pub(crate) fn in_memory(store: &Store, prefix: &str, estimate: u64) -> Option<WorkDir> {
        let needed = estimate.saturating_add(MARGIN);
        let stat = rustix::fs::statvfs(MEMORY_DIR).ok()?;
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        if free < needed || available_memory()? < needed.saturating_mul(2) {
            return None;
        }
        let parent = store.open_dir(Path::new(MEMORY_DIR)).ok()?;
        WorkDir::new_in(parent, &format!("cachectl-{prefix}")).ok()
    }

    fn new_in(parent: StoreDir, prefix: &str) -> Result<WorkDir> {
        // `<prefix>p<pid>-…`: the next build can tell when its owner is gone.
        // A new directory (`mkdir` fails on any name already there), mode
        // 0700: nobody else reads the tree or plants anything in it.
        let (name, dir) = parent
            .create_private_dir(&format!("{prefix}{}", leftovers::pid_tag()))
            .map_err(safe::from_store)?;
        let path = parent.child(&name);
        rustix::fs::flock(&dir, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| io("locking", &path)(e.into()))?;
        let anchor = dir.anchor();
        Ok(WorkDir {
            dir,
            anchor,
            parent,
            name,
        })
    }

    /// The path to use it by (the anchor of the directory held).
    pub(crate) fn path(&self) -> &Path {
        &self.anchor
    }

    /// Its path by name, for messages (`/dev/shm/cachectl-build-…`).
    fn named_path(&self) -> PathBuf {
        self.parent.child(&self.name)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        // Through the handle held: a directory swapped in at its name is
        // never emptied.
        if let Ok(names) = self.dir.names() {
            for name in names {
                let _ = self.dir.remove_tree(&name);
            }
        }
        let _ = self.parent.remove_dir(&self.name);
    }
}

/// Removes what killed processes left: the work directories under the
/// store's `.cachectl/rootfs-tmp/`, for in-memory trees
/// `/dev/shm/cachectl-*` (memory a killed build would hold until reboot),
/// the partial images of killed builds (`.cachectl/<fs>/partial-*.<fs>`
/// for ext4, squashfs and erofs),
/// and the staging directories of killed unpacks (beside their targets,
/// found through the notes in `.cachectl/unpacking/`). What a live process
/// holds is kept: a leftover goes when no one holds its lock and its
/// owner's process is gone or it is older than a minute. Returns how many
/// directories and partial images were removed. Blocking; [`crate::build`]
/// and [`crate::build_layers`] run it too.
pub fn remove_stale_work(store: &Store) -> Result<usize> {
    let mut partials = 0;
    for fs in [FsType::Ext4, FsType::Squashfs, FsType::Erofs] {
        let dir = store.root().join(".cachectl").join(fs.as_str());
        if let Some(dir) = safe::existing_dir(store, &dir)? {
            let suffix = format!(".{}", fs.as_str());
            partials += leftovers::remove_stale_files(&dir, "partial-", &suffix)?.0;
        }
    }
    let in_store = match safe::existing_dir(store, &store.root().join(WORK_ROOT))? {
        Some(dir) => remove_stale_dirs(&dir, "", None)?,
        None => 0,
    };
    // Only this user's: another user's names on the shared tmpfs are theirs.
    let uid = rustix::process::geteuid().as_raw();
    let in_memory = match store.open_dir(Path::new(MEMORY_DIR)) {
        Ok(dir) => remove_stale_dirs(&dir, "cachectl-", Some(uid))?,
        Err(_) => 0,
    };
    Ok(in_store + in_memory + remove_stale_staging(store)? + partials)
}

/// Where work directories on the store's disk are made: the store's work
/// area `.cachectl/rootfs-tmp`.
const WORK_AREA: &str = "rootfs-tmp";
/// The same, from the store's root.
const WORK_ROOT: &str = ".cachectl/rootfs-tmp";

/// Removes the directories in `parent` named `prefix…` (and owned by
/// `owner`, when given) that are stale ([`is_stale`]); how many. A missing
/// `parent` has none. Links are never followed.
fn remove_stale_dirs(parent: &StoreDir, prefix: &str, owner: Option<u32>) -> Result<usize> {
    let mut removed = 0;
    let Ok(names) = parent.names() else {
        return Ok(0);
    };
    let anchor = parent.anchor();
    for name in names.into_iter().filter(|name| name.starts_with(prefix)) {
        // `stat` does not follow a link.
        let ours = parent
            .stat(&name)
            .ok()
            .flatten()
            .is_some_and(|m| m.is_dir() && owner.is_none_or(|uid| m.uid() == uid));
        let path = anchor.join(&name);
        if ours && is_stale(&path) {
            parent.remove_tree(&name).map_err(safe::from_store)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Where unpacks note their staging directories (which lie beside their
/// targets, outside the store), so that [`remove_stale_work`] finds those a
/// killed process left: `.cachectl/unpacking/<id>`, holding the path.
const UNPACKING: &str = ".cachectl/unpacking";

/// An unpack's staging directory beside its target (`.<name>.unpack-…`,
/// mode 0755), locked while it lives and noted in the store. Dropped
/// without [`Staging::rename_to`], it is removed.
pub(crate) struct Staging {
    dir: Option<tempfile::TempDir>,
    /// The directory it is in (the target's).
    parent: StoreDir,
    _lock: std::fs::File,
    /// The note in the store, removed with the guard; none in a store
    /// this process cannot write (no `gc` can run there, and the next
    /// unpack into the same target still removes a killed one's staging
    /// directory).
    _marker: Option<Note>,
}

/// A note in `.cachectl/unpacking/`, removed when dropped.
struct Note {
    dir: StoreDir,
    name: String,
}

impl Drop for Note {
    fn drop(&mut self) {
        let _ = self.dir.remove(&self.name);
    }
}

/// Writes a note naming `staging` into `.cachectl/unpacking/`; `None`
/// in a store this process cannot write.
fn write_note(store: &Store, staging: &Path) -> Result<Option<Note>> {
    let notes = match store.open_dir(&store.root().join(UNPACKING)) {
        Ok(notes) => notes,
        Err(ocistore::Error::ReadOnly { .. }) => return Ok(None),
        Err(err) => return Err(safe::from_store(err)),
    };
    let (name, mut file) = match notes.create_temp("note") {
        Ok(created) => created,
        Err(ocistore::Error::ReadOnly { .. }) => return Ok(None),
        Err(err) => return Err(safe::from_store(err)),
    };
    let note = Note { dir: notes, name };
    std::io::Write::write_all(&mut file, staging.as_os_str().as_encoded_bytes())
        .map_err(io("writing", &note.dir.child(&note.name)))?;
    Ok(Some(note))
}

impl Staging {
    /// A new staging directory for `target`. Those of earlier unpacks into
    /// the same target that a killed process left (unlocked, older than a
    /// minute) are removed first.
    pub(crate) fn new(store: &Store, target: &Path) -> Result<Staging> {
        let parent = match target.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        let parent = std::fs::canonicalize(parent).map_err(io("resolving", parent))?;
        let name = target.file_name().unwrap_or_default().to_string_lossy();
        let prefix = format!(".{name}.unpack-");
        let parent_dir = store.open_dir(&parent)?;
        remove_stale_dirs(&parent_dir, &prefix, None)?;
        let dir = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(&parent)
            .map_err(io("creating a directory in", &parent))?;
        std::fs::set_permissions(dir.path(), Permissions::from_mode(0o755))
            .map_err(io("setting mode of", dir.path()))?;
        let lock = std::fs::File::open(dir.path()).map_err(io("opening", dir.path()))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| io("locking", dir.path())(e.into()))?;
        // Noted after it is locked: gc never sees a noted, unlocked one
        // that is alive.
        // A store this process cannot write keeps no note: gc cannot run
        // there either.
        let marker = write_note(store, dir.path())?;
        Ok(Staging {
            dir: Some(dir),
            parent: parent_dir,
            _lock: lock,
            _marker: marker,
        })
    }

    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        self.dir.as_ref().expect("until renamed").path()
    }

    /// Renames it to `target` (an absent or empty directory).
    pub(crate) fn rename_to(mut self, target: &Path) -> Result<()> {
        let dir = self.dir.take().expect("renamed once");
        // Replaces an empty `target` (rename(2) allows that for directories).
        if let Err(err) = std::fs::rename(dir.path(), target) {
            self.dir = Some(dir);
            return Err(io("renaming into place", target)(err));
        }
        let _ = dir.keep();
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            if let Some(name) = dir.path().file_name() {
                let _ = self.parent.remove_tree(&name.to_string_lossy());
            }
            // Gone already; the guard has nothing left to remove.
            let _ = dir.keep();
        }
        // The marker (a temp path) removes itself after this.
    }
}

/// Removes the staging directories named in `.cachectl/unpacking/` that a
/// killed unpack left (unlocked, older than a minute), and the notes of
/// those gone. Only directories named `.<name>.unpack-…` are touched,
/// whatever a note says. Returns how many directories were removed.
fn remove_stale_staging(store: &Store) -> Result<usize> {
    let mut removed = 0;
    let Some(notes) = safe::existing_dir(store, &store.root().join(UNPACKING))? else {
        return Ok(0);
    };
    let anchor = notes.anchor();
    for name in notes.names().unwrap_or_default() {
        // A regular file, never a link or a FIFO; its owner must own the
        // staging directory it names (a note planted by someone else
        // cannot point the sweep at another user's directory).
        let Some((text, note_owner)) = read_note(&notes, &name) else {
            continue;
        };
        let note = anchor.join(&name);
        let staging = PathBuf::from(std::ffi::OsStr::from_bytes(&text));
        let staging_name = staging.file_name().is_some_and(|n| {
            n.as_bytes().starts_with(b".") && n.as_bytes().windows(8).any(|w| w == b".unpack-")
        });
        let is_staging = staging_name
            && std::fs::symlink_metadata(&staging)
                .is_ok_and(|m| m.is_dir() && m.uid() == note_owner);
        if is_staging {
            if is_stale(&staging) && is_stale(&note) {
                remove_staging(store, &staging)?;
                let _ = notes.remove(&name);
                removed += 1;
            }
        } else if is_stale(&note) {
            // Renamed into place, removed, or not a staging directory: the
            // note is all that is left (once it is old enough to be sure).
            let _ = notes.remove(&name);
        }
    }
    Ok(removed)
}

/// Removes the staging directory at `staging` (beside a target, outside
/// the store) through its parent's handle.
fn remove_staging(store: &Store, staging: &Path) -> Result<()> {
    let (Some(parent), Some(name)) = (staging.parent(), staging.file_name()) else {
        return Ok(());
    };
    store
        .open_dir(parent)?
        .remove_tree(&name.to_string_lossy())
        .map_err(safe::from_store)
}

/// The text of the note `name` in `notes` and its owner, when it is a
/// regular file (opened without following a link or waiting on a FIFO).
fn read_note(notes: &StoreDir, name: &str) -> Option<(Vec<u8>, u32)> {
    let mut file = notes.open_read(name).ok()?;
    let owner = file.metadata().ok()?.uid();
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut text).ok()?;
    Some((text, owner))
}

/// Gives the owner read permission on every file and read and search
/// permission on every directory of `tree` that lacks them (an image's
/// `/etc/shadow` of mode 0000, a sudo of 4111, a directory of 0000), so
/// that this process can read the whole tree when it is not root (root
/// reads it anyway: nothing changes then). Whoever reads the tree takes
/// modes from the unpack's records, not from the disk.
pub(crate) fn make_readable(tree: &Path) -> Result<()> {
    if rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let add = |path: &Path, mode: u32, wanted: u32| -> Result<()> {
        if mode & wanted != wanted {
            std::fs::set_permissions(path, Permissions::from_mode((mode | wanted) & 0o7777))
                .map_err(io("setting mode of", path))?;
        }
        Ok(())
    };
    let root = std::fs::symlink_metadata(tree).map_err(io("reading", tree))?;
    add(tree, root.permissions().mode(), 0o500)?;
    let mut stack = vec![tree.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io("reading", &dir))? {
            let entry = entry.map_err(io("reading", &dir))?;
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).map_err(io("reading", &path))?;
            let mode = meta.permissions().mode();
            if meta.is_dir() {
                add(&path, mode, 0o500)?;
                stack.push(path);
            } else if meta.is_file() {
                add(&path, mode, 0o400)?;
            }
        }
    }
    Ok(())
}

/// Runs `attempt` in a new work directory (`prefix`…): on `/dev/shm` when
/// `memory` and it has room for [`tree_estimate`] of `layer_sizes`, and
/// again under the store when that one fills up; under the store at once
/// otherwise (a full disk elsewhere, the store's own, is no reason to
/// start again). Its errors name paths in the work directory by the
/// directory's name (`/dev/shm/cachectl-…`), not by its anchor.
pub(crate) fn with_work_dir<T>(
    store: &Store,
    memory: bool,
    prefix: &str,
    layer_sizes: impl IntoIterator<Item = u64>,
    attempt: impl Fn(&WorkDir) -> Result<T>,
) -> Result<T> {
    let named = |work: &WorkDir| {
        attempt(work).map_err(|err| err.relocated(work.path(), &work.named_path()))
    };
    if memory && let Some(work) = WorkDir::in_memory(store, prefix, tree_estimate(layer_sizes)) {
        match named(&work) {
            // Larger than estimated: again, on disk.
            Err(err)
                if is_out_of_space(&err)
                    && err
                        .io_path()
                        .is_none_or(|p| p.starts_with(work.named_path())) => {}
            done => return done,
        }
    }
    named(&WorkDir::new(store, prefix)?)
}

/// An upper estimate of the tree the layers of sizes `layer_sizes`
/// (compressed, as stored) unpack to.
pub(crate) fn tree_estimate(layer_sizes: impl IntoIterator<Item = u64>) -> u64 {
    layer_sizes
        .into_iter()
        .fold(0u64, |sum, size| sum.saturating_add(size))
        .saturating_mul(EXPANSION)
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// Whether `err` comes from a full file system (`ENOSPC`, `EDQUOT`).
pub(crate) fn is_out_of_space(err: &Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && matches!(
                io.raw_os_error(),
                Some(code) if code == rustix::io::Errno::NOSPC.raw_os_error()
                    || code == rustix::io::Errno::DQUOT.raw_os_error()
            )
        {
            return true;
        }
        source = current.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_file_systems_are_recognised_through_the_error_chain() {
        let full = Error::Io {
            what: "writing",
            path: "/x".into(),
            source: std::io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error()),
        };
        assert!(is_out_of_space(&full));
        let denied = Error::Io {
            what: "writing",
            path: "/x".into(),
            source: std::io::Error::from_raw_os_error(rustix::io::Errno::ACCESS.raw_os_error()),
        };
        assert!(!is_out_of_space(&denied));
    }

    #[test]
    fn work_directories_are_private_and_removed_without_following_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).expect("outside");
        std::fs::set_permissions(&outside, Permissions::from_mode(0o755)).expect("mode");
        let store = Store::open(dir.path().join("store")).expect("store");
        let parent = store.root().join(WORK_ROOT);
        let work = WorkDir::new(&store, "build-").expect("made");
        let meta = std::fs::metadata(work.path()).expect("there");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o700);
        assert!(
            work.path().starts_with("/proc"),
            "{}",
            work.path().display()
        );
        // Moved away and replaced by a link: the work goes on in the
        // directory held, never through the link.
        let work_dirs = |parent: &Path| -> Vec<std::ffi::OsString> {
            std::fs::read_dir(parent)
                .expect("parent")
                .map(|entry| entry.expect("entry").file_name())
                // The work area's marker.
                .filter(|name| name != ".work")
                .collect()
        };
        let name = work_dirs(&parent).pop().expect("one");
        let moved = dir.path().join("moved");
        std::fs::rename(parent.join(&name), &moved).expect("moved");
        std::os::unix::fs::symlink(&outside, parent.join(&name)).expect("swapped");
        std::fs::write(work.path().join("file"), b"tree").expect("written");
        assert!(moved.join("file").exists());
        assert!(!outside.join("file").exists());
        std::fs::remove_file(parent.join(&name)).expect("unswapped");
        std::fs::rename(&moved, parent.join(&name)).expect("moved back");
        std::os::unix::fs::symlink(&outside, work.path().join("link")).expect("link");
        std::fs::create_dir(work.path().join("ro")).expect("ro");
        std::fs::set_permissions(work.path().join("ro"), Permissions::from_mode(0o555))
            .expect("mode");
        drop(work);
        assert_eq!(work_dirs(&parent), Vec::<std::ffi::OsString>::new());
        let meta = std::fs::symlink_metadata(&outside).expect("outside");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
    }

    #[test]
    fn the_estimate_expands_the_compressed_sizes() {
        assert_eq!(tree_estimate([10, 20]), 30 * EXPANSION);
        assert_eq!(tree_estimate([u64::MAX, 1]), u64::MAX);
    }
}
