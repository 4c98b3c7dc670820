//! Leases: what a reader holds so that [`Store::gc`] leaves it in place.
//!
//! A reader (an unpack, a build, a push) resolves a reference and then
//! reads the blobs it reaches for as long as it works. Without a lease a
//! concurrent `remove` + `gc` could delete those blobs between the resolve
//! and the read. [`Store::lease`] resolves the reference while holding
//! `.cachectl/locks/gc.lock` shared (so no `gc` runs between the resolve
//! and the lease), writes the descriptors it found into a lease file
//! `.cachectl/leases/<pid>-<n>-<ms>.json` and keeps an exclusive `flock`
//! on that file for as long as the [`Lease`] lives. [`Store::gc`] (under
//! `gc.lock` exclusive) treats every lease whose lock is held as a root:
//! everything it reaches stays. A lease file whose lock is free belongs to
//! a process that is gone; `gc` removes it.
//!
//! Dropping the [`Lease`] removes its file and releases the lock. In a
//! store this process cannot write, the lease holds `gc.lock` shared
//! instead (a `gc` waits for it), or nothing when `gc.lock` cannot be
//! opened either (a read-only file system, where no `gc` runs).
//!
//! Temp files of atomic writes (`.tmp-PID-N-<name>`) left in the root and
//! in `.cachectl/records/` by a process killed mid-write are removed by
//! `gc` and by [`Store::open`] once their process is gone.

use crate::dir_handle::{Access, StoreDir};
use crate::error::{Error, Result, io};
use crate::layout::{Store, now_unix_ms};
use crate::walk::{children, is_manifest};
use ocidist::Descriptor;
use ociref::{Digest, Reference};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fs::{File, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A reader's hold on a stored image: while it lives, [`Store::gc`] keeps
/// every blob reachable from the entries of the reference it was taken
/// for (every platform, and the index a record names). Made by
/// [`Store::lease`]; dropping it releases the hold.
#[derive(Debug)]
pub struct Lease {
    /// The lease file's directory and name (none in a store this process
    /// cannot write).
    file_name: Option<(StoreDir, String)>,
    roots: Vec<Descriptor>,
    // The lease file, locked exclusively for the lease's life and closed
    // after it is removed (see `Drop`); else `gc.lock`, locked shared
    // (none when even that cannot be opened: a read-only file system).
    _file: Option<File>,
}

impl Lease {
    /// The descriptors the lease holds: the `index.json` entries of its
    /// reference and the indexes their records name.
    pub fn roots(&self) -> &[Descriptor] {
        &self.roots
    }

    /// Whether `digest` is one of [`Lease::roots`] (a reader checks that
    /// the manifest it resolves later is the one it holds).
    pub fn holds(&self, digest: &Digest) -> bool {
        self.roots.iter().any(|root| root.digest == *digest)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Removed while still locked: `gc` never reads a half-gone lease.
        if let Some((dir, name)) = &self.file_name {
            let _ = dir.remove(name);
        }
    }
}

/// What a lease file holds.
#[derive(Serialize, Deserialize)]
struct LeaseFile {
    /// The reference leased (for people reading the file).
    reference: String,
    /// The process holding it.
    pid: u32,
    /// What it keeps.
    roots: Vec<Descriptor>,
}

impl Store {
    /// Leases the stored image `reference` (every platform of it): until
    /// the returned [`Lease`] is dropped, [`Store::gc`] removes none of the
    /// blobs it reaches, even once the reference is removed. Take it
    /// before reading the image's blobs and keep it until done.
    /// [`Error::ImageNotCached`] when the reference has no entry. Blocking
    /// (waits while a `gc` runs).
    pub fn lease(&self, reference: &Reference) -> Result<Lease> {
        let name = reference.to_string();
        let shared = match self.lock_shared("gc.lock") {
            Ok(file) => file,
            // Nobody can collect a store on a read-only file system.
            Err(err) if unwritable(&err) => None,
            Err(err) => return Err(err),
        };
        let index = self.read_index()?;
        let entries = index.entries_of(&name);
        if entries.is_empty() {
            return Err(Error::ImageNotCached { reference: name });
        }
        let mut roots = Vec::new();
        for entry in entries {
            roots.push(entry.descriptor());
            let record = entry.ref_name().map(|n| self.record(n)).transpose()?;
            if let Some(index_digest) = record.flatten().and_then(|r| r.index_digest) {
                roots.push(Descriptor {
                    media_type: ocidist::OCI_INDEX.to_owned(),
                    digest: index_digest,
                    size: 0,
                });
            }
        }
        self.lease_roots(&name, roots, shared)
    }

    /// A lease named `name` holding `roots` (and what they reach) from
    /// `gc`; `shared` is `gc.lock` held shared, kept instead of a lease
    /// file in a store this process cannot write.
    pub(crate) fn lease_roots(
        &self,
        name: &str,
        roots: Vec<Descriptor>,
        shared: Option<File>,
    ) -> Result<Lease> {
        match self.write_lease(name, &roots) {
            Ok((dir, name, file)) => Ok(Lease {
                file_name: Some((dir, name)),
                roots,
                _file: Some(file),
            }),
            // A store this process cannot write: hold `gc.lock` shared
            // instead, so a `gc` by someone who can waits for this reader.
            Err(err) if unwritable(&err) => Ok(Lease {
                file_name: None,
                roots,
                _file: shared,
            }),
            Err(err) => Err(err),
        }
    }

    /// Writes and locks a new lease file holding `roots`.
    fn write_lease(
        &self,
        reference: &str,
        roots: &[Descriptor],
    ) -> Result<(StoreDir, String, File)> {
        let dir = self.open_dir(&self.leases_dir())?;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("{pid}-{n}-{}.json", now_unix_ms());
        let path = dir.child(&name);
        let mut file = dir.open_file(&name, Access::CreateNew)?;
        let content = LeaseFile {
            reference: reference.to_owned(),
            pid,
            roots: roots.to_vec(),
        };
        let bytes = serde_json::to_vec(&content).expect("because a lease always serializes");
        let written = file
            .lock()
            .and_then(|()| file.write_all(&bytes))
            .map_err(io("writing", &path));
        if let Err(err) = written {
            let _ = dir.remove(&name);
            return Err(err);
        }
        Ok((dir, name, file))
    }

    pub(crate) fn leases_dir(&self) -> PathBuf {
        self.private_dir().join("leases")
    }

    /// Everything the held leases reach (call it under `gc.lock`
    /// exclusive); removes the lease files no process holds.
    pub(crate) fn leased_digests(&self) -> Result<BTreeSet<Digest>> {
        let mut roots = Vec::new();
        let dir = self.open_dir(&self.leases_dir())?;
        for name in dir.names()? {
            if !name.ends_with(".json") {
                continue;
            }
            let path = dir.child(&name);
            let mut file = match dir.open_read(&name) {
                Ok(file) => file,
                Err(err) if crate::safe::is_not_found(&err) => continue,
                Err(err) => return Err(err),
            };
            match file.try_lock() {
                Ok(()) => {
                    // Its owner is gone (or has just dropped it, removing
                    // the file itself).
                    dir.remove(&name)?;
                }
                Err(TryLockError::WouldBlock) => {
                    // Read through the handle already open: the owner may
                    // drop the lease (and remove its name) at any moment.
                    let mut bytes = Vec::new();
                    std::io::Read::read_to_end(&mut file, &mut bytes)
                        .map_err(io("reading", &path))?;
                    let lease: LeaseFile = serde_json::from_slice(&bytes)
                        .map_err(|source| Error::InvalidJson { path, source })?;
                    roots.extend(lease.roots);
                }
                Err(TryLockError::Error(err)) => return Err(io("locking", &path)(err)),
            }
        }
        self.reachable_from(roots)
    }

    /// The digests reachable from `roots` through stored manifests and
    /// indexes (absent ones included: they are kept if they appear).
    fn reachable_from(&self, mut stack: Vec<Descriptor>) -> Result<BTreeSet<Digest>> {
        let mut seen = BTreeSet::new();
        while let Some(descriptor) = stack.pop() {
            if !seen.insert(descriptor.digest.clone()) {
                continue;
            }
            let path = self.blob_path(&descriptor.digest);
            if self.regular_file_len(&path).is_none() {
                continue;
            }
            if is_manifest(&descriptor.media_type) {
                let bytes = self.read_file(&path)?;
                if let Ok(kids) = children(&descriptor.digest, &bytes) {
                    stack.extend(kids.required);
                }
            }
        }
        Ok(seen)
    }

    /// Removes the temp files of atomic writes (`.tmp-PID-…`) in `dirs`
    /// (the root, `.cachectl/records/`) whose process is gone; how many and
    /// their bytes. Errors are skipped: a temp file left is harmless.
    pub(crate) fn sweep_dead_temps(&self, dirs: &[&Path]) -> (usize, u64) {
        let (mut count, mut bytes) = (0, 0);
        for dir in dirs {
            let Ok(Some(dir)) = self.existing_dir(dir) else {
                continue;
            };
            for name in dir.names().unwrap_or_default() {
                if !temp_of_dead_process(&name) {
                    continue;
                }
                let size = dir.stat(&name).ok().flatten().map_or(0, |m| m.len());
                if dir.remove(&name).is_ok() {
                    count += 1;
                    bytes += size;
                }
            }
        }
        (count, bytes)
    }
}

/// Whether `err` says the store cannot be written by this process
/// (permissions, a read-only file system).
pub(crate) fn unwritable(err: &Error) -> bool {
    match err {
        Error::ReadOnly { .. } => true,
        Error::Io { source, .. } => matches!(
            source.kind(),
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
        ),
        _ => false,
    }
}

/// Whether `name` is a temp file `.tmp-PID-N-…` whose process is gone.
fn temp_of_dead_process(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(".tmp-") else {
        return false;
    };
    let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    pid != std::process::id() && !process_exists(pid)
}

/// Whether a process `pid` runs (a zombie counts as gone). Without
/// `/proc`, every process counts as running.
pub(crate) fn process_exists(pid: u32) -> bool {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    match std::fs::read_to_string(proc.join(pid.to_string()).join("stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temps_of_dead_processes_are_told_from_live_ones() {
        let mine = format!(".tmp-{}-0-index.json", std::process::id());
        assert!(!temp_of_dead_process(&mine));
        assert!(!temp_of_dead_process(".tmp-1-0-index.json"), "init runs");
        assert!(!temp_of_dead_process("index.json"));
        assert!(!temp_of_dead_process(".tmp-x-0-index.json"));
        let mut child = std::process::Command::new("true").spawn().expect("spawns");
        let dead = child.id();
        child.wait().expect("reaped");
        assert!(temp_of_dead_process(&format!(".tmp-{dead}-3-oci-layout")));
    }
}
