//! An unpacked tree as merged entries ([`EntrySink`]), for the per-layer
//! read-only images: each layer's overlay tree (see `layers`) is read back
//! in path order, parents first, with what the unpack recorded where the
//! host could not hold it (a rootless tree's owners, modes, device nodes
//! and overlayfs whiteouts, the extended attributes the host refused).
//! Hardlinked files become one file and hardlink entries to it.

use crate::error::{Result, io};
use crate::merge::{EntrySink, MergedEntry, MergedKind};
use crate::unpack::UnpackReport;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Gives every path of `tree` (the root first, as `""`) to `sink`, in path
/// order; `report` is the unpack's (see the module docs). Returns how many
/// entries were given.
pub(crate) fn emit_tree(
    tree: &Path,
    report: &UnpackReport,
    sink: &mut dyn EntrySink,
) -> Result<u64> {
    let mut paths: BTreeSet<PathBuf> = BTreeSet::from([PathBuf::new()]);
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = tree.join(&rel);
        for entry in std::fs::read_dir(&dir).map_err(io("reading", &dir))? {
            let entry = entry.map_err(io("reading", &dir))?;
            let child = rel.join(entry.file_name());
            if entry.file_type().map_err(io("reading", &dir))?.is_dir() {
                stack.push(child.clone());
            }
            paths.insert(child);
        }
    }
    // Device nodes and whiteouts a rootless unpack could only record.
    for (rel, recorded) in &report.records {
        if recorded.device.is_some() {
            paths.insert(rel.clone());
        }
    }
    let mut first_names: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut count = 0;
    for rel in &paths {
        let abs = tree.join(rel);
        let recorded = report.records.get(rel);
        let meta = match std::fs::symlink_metadata(&abs) {
            Ok(meta) => Some(meta),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && recorded.is_some() => None,
            Err(err) => return Err(io("reading", &abs)(err)),
        };
        let target;
        let mut file = None;
        let kind = match (recorded.and_then(|r| r.device), &meta) {
            (Some((tag, major, minor)), _) => MergedKind::Device {
                block: tag == b'b',
                major,
                minor,
            },
            (None, None) => continue,
            (None, Some(meta)) => {
                let file_type = meta.file_type();
                if file_type.is_dir() {
                    MergedKind::Dir
                } else if file_type.is_symlink() {
                    target = std::fs::read_link(&abs).map_err(io("reading", &abs))?;
                    MergedKind::Symlink(&target)
                } else if file_type.is_fifo() {
                    MergedKind::Fifo
                } else if file_type.is_char_device() || file_type.is_block_device() {
                    let device = meta.rdev();
                    MergedKind::Device {
                        block: file_type.is_block_device(),
                        major: rustix::fs::major(device),
                        minor: rustix::fs::minor(device),
                    }
                } else if meta.nlink() > 1
                    && let Some(first) = first_names.get(&(meta.dev(), meta.ino()))
                {
                    target = first.clone();
                    MergedKind::Hardlink(&target)
                } else {
                    if meta.nlink() > 1 {
                        first_names.insert((meta.dev(), meta.ino()), rel.clone());
                    }
                    file = Some(std::fs::File::open(&abs).map_err(io("reading", &abs))?);
                    MergedKind::File { size: meta.len() }
                }
            }
        };
        let (uid, gid, mode, mtime) = match (report.rootless, recorded, &meta) {
            (true, Some(r), _) | (false, Some(r), None) => (r.uid, r.gid, r.mode, r.mtime),
            (_, _, Some(m)) => (
                u64::from(m.uid()),
                u64::from(m.gid()),
                m.mode() & 0o7777,
                m.mtime(),
            ),
            (_, None, None) => unreachable!("a path without metadata has a record"),
        };
        let xattrs = match kind {
            MergedKind::Dir | MergedKind::File { .. } => {
                xattrs_of(&abs, report.pending_xattrs.get(rel))?
            }
            _ => Vec::new(),
        };
        let entry = MergedEntry {
            path: rel,
            kind,
            uid,
            gid,
            mode,
            mtime,
            xattrs: &xattrs,
        };
        let data: &mut dyn std::io::Read = match &mut file {
            Some(file) => file,
            None => &mut std::io::empty(),
        };
        sink.entry(&entry, data)
            .map_err(io("writing the entry of", &abs))?;
        count += 1;
    }
    Ok(count)
}

/// The extended attributes of `abs` on the host, with those the host
/// refused (`pending`) added, sorted by name.
fn xattrs_of(
    abs: &Path,
    pending: Option<&Vec<(String, Vec<u8>)>>,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut found = BTreeMap::new();
    for name in xattr::list(abs).map_err(io("listing extended attributes of", abs))? {
        if let Some(value) =
            xattr::get(abs, &name).map_err(io("reading extended attributes of", abs))?
        {
            found.insert(name.to_string_lossy().into_owned(), value);
        }
    }
    for (name, value) in pending.into_iter().flatten() {
        found.insert(name.clone(), value.clone());
    }
    Ok(found.into_iter().collect())
}
