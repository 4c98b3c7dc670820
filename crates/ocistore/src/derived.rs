//! Files other crates derive from stored blobs and keep in the store (ext4
//! images and layer tars of `rootfs`), and their work areas, owned by the
//! store so that one [`Store::gc`] collects everything.
//!
//! - A **derived directory** `.cachectl/<kind>/` ([`Store::derived_dir`],
//!   marked by a `.derived` file) holds finished files, each with an owner
//!   file `<name>.owner` naming, a line each, the blobs whose presence
//!   keeps it ([`Store::claim_derived`]). `gc` removes a finished file none
//!   of whose owners is stored any more (and one without an owner file),
//!   and a `partial-…` file of a build in progress once it is stale. A
//!   finished file may be kept before it is synced, marked with the boot
//!   that wrote it (see `derived_sync`); `gc` drops the marker with it.
//! - A **work area** `.cachectl/<kind>/` ([`Store::work_area`], marked by
//!   `.work`) holds entries (directories, files) that a live process
//!   locks (`flock`) while it uses them; `gc` removes the stale ones.
//!
//! *Stale*: nobody holds the entry's lock, and either the process its name
//! names (`…-p<pid>-<suffix>`) is gone or it is older than
//! [`STALE_AFTER`]. The minute covers the instant between creating an entry
//! and locking it.
//!
//! Everything goes through the directory's handle ([`StoreDir`]): a
//! directory swapped for a link is never swept.

use crate::derived_sync;
use crate::dir_handle::{Access, StoreDir};
use crate::error::{Error, Result};
use crate::layout::Store;
use ociref::Digest;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// The marker of a derived directory.
const DERIVED_MARKER: &str = ".derived";
/// The marker of a work area.
const WORK_MARKER: &str = ".work";
/// The suffix of owner files.
const OWNER_SUFFIX: &str = ".owner";
/// The prefix of files being made in a derived directory.
const PARTIAL_PREFIX: &str = "partial-";

/// The store's own directories under `.cachectl/`: never derived ones,
/// whatever is planted in them.
const STORE_OWN: [&str; 6] = [
    "locks",
    "ingest",
    "records",
    "sizes",
    "quarantine",
    "leases",
];

/// An entry whose name names no live owner is stale only when it is older
/// than this.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// Derived files and work entries, by kind: what [`Store::gc`] removed or
/// what [`Store::derived_usage`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct DerivedFiles {
    /// Finished files per derived directory (`ext4`, `layers`, …).
    pub files: BTreeMap<String, usize>,
    /// Their bytes.
    pub bytes: u64,
    /// `partial-…` files of builds (in progress, or stale ones removed).
    pub partial_files: usize,
    /// Their bytes.
    pub partial_bytes: u64,
    /// Stale entries of work areas (removed by `gc` only).
    pub work_entries: usize,
}

impl DerivedFiles {
    /// Finished files of derived directory `kind`.
    pub fn files_of(&self, kind: &str) -> usize {
        self.files.get(kind).copied().unwrap_or(0)
    }
}

impl Store {
    /// The derived directory `.cachectl/<kind>/`, open (created and marked
    /// when missing; a read-only store skips the marker). Blocking.
    pub fn derived_dir(&self, kind: &str) -> Result<StoreDir> {
        self.marked_dir(kind, DERIVED_MARKER)
    }

    /// The work area `.cachectl/<kind>/`, open (created and marked when
    /// missing). Blocking.
    pub fn work_area(&self, kind: &str) -> Result<StoreDir> {
        self.marked_dir(kind, WORK_MARKER)
    }

    fn marked_dir(&self, kind: &str, marker: &str) -> Result<StoreDir> {
        let dir = self.open_dir(&self.private_dir().join(kind))?;
        if dir.stat(marker)?.is_none() {
            match dir.open_file(marker, Access::CreateOrOpen) {
                Ok(_) | Err(Error::ReadOnly { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(dir)
    }

    /// Adds `owner` to the owners of the derived file `name` in `dir`
    /// (a [`Store::derived_dir`]), dropping owners no longer stored; written
    /// atomically. Call it before the file is renamed into place, and again
    /// whenever a cached one is used. Blocking.
    pub fn claim_derived(&self, dir: &StoreDir, name: &str, owner: &Digest) -> Result<()> {
        let mut owners = owners_of(dir, name);
        if owners.contains(owner) {
            return Ok(());
        }
        owners.retain(|digest| self.has_blob(digest).is_some());
        owners.push(owner.clone());
        let text: String = owners.iter().map(|digest| format!("{digest}\n")).collect();
        dir.write_atomic(&format!("{name}{OWNER_SUFFIX}"), text.as_bytes())
    }

    /// Removes the owner file of `name` in `dir` when `name` was not made
    /// after all. Blocking.
    pub fn unclaim_unmade(&self, dir: &StoreDir, name: &str) -> Result<()> {
        if dir.stat(name)?.is_none() {
            dir.remove(&format!("{name}{OWNER_SUFFIX}"))?;
        }
        Ok(())
    }

    /// What the derived directories hold: finished files per kind and
    /// partial files of builds in progress. Blocking.
    pub fn derived_usage(&self) -> Result<DerivedFiles> {
        let mut found = DerivedFiles::default();
        for (kind, dir) in self.marked_dirs(DERIVED_MARKER, false)? {
            for (name, size) in derived_entries(&dir)? {
                if name.starts_with(PARTIAL_PREFIX) {
                    found.partial_files += 1;
                    found.partial_bytes += size;
                } else {
                    *found.files.entry(kind.clone()).or_default() += 1;
                    found.bytes += size;
                }
            }
        }
        Ok(found)
    }

    /// Removes derived files none of whose owners is stored, stale partial
    /// files and stale work entries (see the module docs). Call it under
    /// `gc.lock` exclusive, after the blobs are swept. Blocking.
    pub(crate) fn collect_derived(&self) -> Result<DerivedFiles> {
        let mut removed = DerivedFiles::default();
        for (kind, dir) in self.marked_dirs(DERIVED_MARKER, true)? {
            for (name, size) in derived_entries(&dir)? {
                if name.starts_with(PARTIAL_PREFIX) {
                    if is_stale(&dir, &name) {
                        dir.remove(&name)?;
                        removed.partial_files += 1;
                        removed.partial_bytes += size;
                    }
                    continue;
                }
                let owned = owners_of(&dir, &name)
                    .iter()
                    .any(|owner| self.has_blob(owner).is_some());
                // Another `gc` removed it first: not counted.
                let inode = match dir.stat(&name)? {
                    Some(meta) if !owned => meta.ino(),
                    _ => continue,
                };
                dir.remove(&name)?;
                dir.remove(&format!("{name}{OWNER_SUFFIX}"))?;
                dir.remove(&legacy_owner_name(&name))?;
                derived_sync::remove_marker_of(&dir, &name, inode)?;
                *removed.files.entry(kind.clone()).or_default() += 1;
                removed.bytes += size;
            }
            derived_sync::sweep_orphan_markers(&dir)?;
        }
        for (_, dir) in self.marked_dirs(WORK_MARKER, true)? {
            removed.work_entries += sweep_work_area(&dir)?;
        }
        Ok(removed)
    }

    /// The directories of `.cachectl/` marked with `marker`, open.
    /// (`gc` marks a derived directory of an older cache it finds by its
    /// owner files: `mark` is true there.)
    fn marked_dirs(&self, marker: &str, mark: bool) -> Result<Vec<(String, StoreDir)>> {
        let Some(private) = self.existing_dir(&self.private_dir())? else {
            return Ok(Vec::new());
        };
        let mut dirs = Vec::new();
        for name in private.names()? {
            let is_dir = private.stat(&name)?.is_some_and(|meta| meta.is_dir());
            if !is_dir {
                continue;
            }
            let Some(dir) = private.subdir(&name, false)? else {
                continue;
            };
            let marked = dir.stat(marker)?.is_some_and(|meta| meta.is_file());
            // A derived directory of a cache made before the markers:
            // one of other crates' (never the store's own) holding owner
            // files. `gc` gives it its marker.
            let unmarked_derived = marker == DERIVED_MARKER
                && !marked
                && !STORE_OWN.contains(&name.as_str())
                && dir.names()?.iter().any(|n| n.ends_with(OWNER_SUFFIX));
            if unmarked_derived && mark {
                let _ = dir.open_file(marker, Access::CreateOrOpen);
            }
            if marked || unmarked_derived {
                dirs.push((name, dir));
            }
        }
        Ok(dirs)
    }
}

/// The finished and partial files of a derived directory (regular files
/// not hidden, not owner files), with their sizes.
fn derived_entries(dir: &StoreDir) -> Result<Vec<(String, u64)>> {
    let mut entries = Vec::new();
    for name in dir.names()? {
        if name.starts_with('.') || name.ends_with(OWNER_SUFFIX) || name.ends_with(".manifest") {
            continue;
        }
        if let Some(meta) = dir.stat(&name)?
            && meta.is_file()
        {
            entries.push((name, meta.len()));
        }
    }
    Ok(entries)
}

/// Removes the stale entries of a work area; how many.
fn sweep_work_area(dir: &StoreDir) -> Result<usize> {
    let mut removed = 0;
    for name in dir.names()? {
        if name.starts_with('.') || !is_stale(dir, &name) || dir.stat(&name)?.is_none() {
            continue;
        }
        dir.remove_tree(&name)?;
        removed += 1;
    }
    Ok(removed)
}

/// The owners the owner file of `name` names (lines that do not parse are
/// skipped); also the owner files of an older layout (`<stem>.manifest`).
fn owners_of(dir: &StoreDir, name: &str) -> Vec<Digest> {
    [format!("{name}{OWNER_SUFFIX}"), legacy_owner_name(name)]
        .iter()
        .find_map(|file| dir.read(file).ok())
        .map(|bytes| {
            String::from_utf8_lossy(&bytes)
                .lines()
                .filter_map(|line| line.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `<stem>.manifest`: the owner file of builds made before owner files.
fn legacy_owner_name(name: &str) -> String {
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    format!("{stem}.manifest")
}

/// The process ID a name carries: the field before its last `-` field,
/// when it is `p<digits>`.
fn pid_in_name(name: &[u8]) -> Option<u32> {
    let mut fields = name.rsplit(|&b| b == b'-');
    fields.next()?;
    let tag = fields.next()?.strip_prefix(b"p")?;
    if tag.is_empty() || !tag.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(tag).ok()?.parse().ok()
}

/// Whether the entry `name` of `dir` is stale (see the module docs).
fn is_stale(dir: &StoreDir, name: &str) -> bool {
    is_stale_leftover(&dir.anchor().join(name))
}

/// Whether what `meta` describes was last modified [`STALE_AFTER`] ago or
/// earlier (a time in the future is not).
pub fn is_older_than_stale_after(meta: &std::fs::Metadata) -> bool {
    meta.modified()
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age >= STALE_AFTER)
}

/// Whether the leftover at `path` (file or directory) is stale: locked by
/// no one, and the process its name names (`…-p<pid>-<suffix>`) gone or it
/// older than [`STALE_AFTER`]. The path's last component is never
/// followed. For leftovers outside the store too (a build's tree on a
/// tmpfs, an unpack's staging directory), which follow the same rules.
pub fn is_stale_leftover(path: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let owner_gone = path
        .file_name()
        .and_then(|n| pid_in_name(n.as_encoded_bytes()))
        .is_some_and(|pid| pid != std::process::id() && !crate::lease::process_exists(pid));
    let old = is_older_than_stale_after(&meta);
    let flags = rustix::fs::OFlags::RDONLY
        | rustix::fs::OFlags::NOFOLLOW
        | rustix::fs::OFlags::NONBLOCK
        | rustix::fs::OFlags::CLOEXEC;
    (owner_gone || old)
        && rustix::fs::open(path, flags, rustix::fs::Mode::empty()).is_ok_and(|f| {
            rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_is_read_from_the_field_before_the_last() {
        assert_eq!(pid_in_name(b"partial-p1234-abXY12.ext4"), Some(1234));
        assert_eq!(pid_in_name(b".vm.ext4.tmp-p77-3"), Some(77));
        assert_eq!(pid_in_name(b".a-p9-b.tmp-p77-3"), Some(77));
        assert_eq!(pid_in_name(b"cachectl-build-abc123"), None);
        assert_eq!(pid_in_name(b"partial-abc.ext4"), None);
        assert_eq!(pid_in_name(b"x-p-1"), None);
        assert_eq!(pid_in_name(b"x-p1a-1"), None);
    }

    #[test]
    fn gc_removes_unowned_derived_files_stale_partials_and_work_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let kept = Digest::sha256_of(b"kept");
        store.put_blob_bytes(&kept, b"kept").expect("stored");
        let gone = Digest::sha256_of(b"gone");
        let ext4 = store.derived_dir("ext4").expect("derived");
        for (name, owner) in [("a.ext4", &kept), ("b.ext4", &gone)] {
            store.claim_derived(&ext4, name, owner).expect("claimed");
            ext4.write_atomic(name, b"image").expect("made");
        }
        ext4.write_atomic("orphan.ext4", b"image").expect("made");
        // A partial of a dead process (PID above the kernel's maximum).
        ext4.write_atomic("partial-p4194305-x.ext4", b"half")
            .expect("made");
        let work = store.work_area("rootfs-tmp").expect("work");
        let (left, _) = work.create_private_dir("build-p4194305-").expect("made");
        let (_, live) = work
            .create_private_dir(&format!("build-p{}-", std::process::id()))
            .expect("made");
        rustix::fs::flock(&live, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .expect("locked");
        let usage = store.derived_usage().expect("usage");
        assert_eq!((usage.files_of("ext4"), usage.partial_files), (3, 1));
        // No image holds `kept`: gc removes it, then what it owned.
        let report = store.gc().expect("gc");
        assert_eq!(report.derived.files_of("ext4"), 3, "{report:?}");
        assert_eq!(report.derived.partial_files, 1);
        assert_eq!(report.derived.work_entries, 1);
        assert!(
            ext4.stat("a.ext4").expect("stat").is_none(),
            "its owner went with gc"
        );
        assert!(work.stat(&left).expect("stat").is_none());
        assert_eq!(
            work.names().expect("names").len(),
            2,
            "the marker and the live one"
        );
    }

    #[test]
    fn derived_directories_of_caches_made_before_markers_are_found_by_their_owner_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let gone = Digest::sha256_of(b"gone");
        let old = store
            .open_dir(&store.private_dir().join("ext4"))
            .expect("old");
        old.write_atomic("a.ext4", b"image").expect("made");
        old.write_atomic("a.ext4.owner", format!("{gone}\n").as_bytes())
            .expect("owned");
        // The same planted among the store's own records: never swept.
        let records = store.open_dir(&store.records_dir()).expect("records");
        records.write_atomic("x.json", b"{}").expect("record");
        records
            .write_atomic("x.json.owner", format!("{gone}\n").as_bytes())
            .expect("planted");
        let report = store.gc().expect("gc");
        assert_eq!(report.derived.files_of("ext4"), 1, "{report:?}");
        assert!(old.stat("a.ext4").expect("stat").is_none());
        assert!(
            old.stat(DERIVED_MARKER).expect("stat").is_some(),
            "marked now"
        );
        assert!(records.stat("x.json").expect("stat").is_some());
    }
}
