//! Derived files kept before they are synced. When the caller of a build
//! was handed a synced copy of the derived file elsewhere (an output
//! file), the cached file need not wait for the disk: it is kept
//! *unsynced*, with a marker naming the boot that wrote it. Within that
//! boot the kernel holds every byte written to it (in the page cache, then
//! on the disk), so the file is whole; after a reboot it may not be (a
//! crash may have lost what was not yet written back), and it is dropped.
//!
//! The marker `.unsynced-<inode>-<name>` in the file's derived directory
//! holds the boot id (`/proc/sys/kernel/random/boot_id`). It is written
//! and synced before the file is renamed into place, and names the file's
//! inode, so it speaks of that file only: a file renamed over it later is
//! not taken for unsynced, and a process that synced the earlier file
//! never drops the marker of a later one. Hidden, a marker is never taken
//! for a derived file; `gc` drops it with its file, and one whose file is
//! gone or replaced once it is older than [`STALE_AFTER`].
//!
//! [`STALE_AFTER`]: crate::STALE_AFTER

use crate::derived::is_older_than_stale_after;
use crate::dir_handle::StoreDir;
use crate::error::{Error, Result};
use crate::layout::Store;
use std::fs::File;
use std::os::unix::fs::MetadataExt;

/// The prefix of the markers of unsynced derived files.
const MARKER_PREFIX: &str = ".unsynced-";

/// Where the kernel tells this boot's id.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// Whether a derived file survives a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Synced (it has no marker): whole, whatever happened since.
    Synced,
    /// Kept unsynced in this boot: whole, its bytes are with the kernel.
    ThisBoot,
    /// Kept unsynced in an earlier boot, or one this process cannot tell:
    /// a crash since may have torn it.
    EarlierBoot,
}

/// The id of this boot; `None` where the kernel does not tell it.
fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string(BOOT_ID).ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

/// The marker of the file with inode `inode` at `name`.
fn marker_name(name: &str, inode: u64) -> String {
    format!("{MARKER_PREFIX}{inode}-{name}")
}

/// The inode and file name a marker's name gives.
fn parse_marker(marker: &str) -> Option<(u64, &str)> {
    let (inode, name) = marker.strip_prefix(MARKER_PREFIX)?.split_once('-')?;
    Some((inode.parse().ok()?, name))
}

impl Store {
    /// Marks `file`, about to be renamed to `name` in `dir` (a derived
    /// directory), as kept unsynced in this boot; the marker is synced
    /// before this returns. `false` (nothing marked) where this boot
    /// cannot be told: sync the file before renaming it then. Blocking.
    pub fn mark_unsynced(&self, dir: &StoreDir, name: &str, file: &File) -> Result<bool> {
        let Some(boot) = boot_id() else {
            return Ok(false);
        };
        let inode = file
            .metadata()
            .map_err(crate::error::io("checking", &dir.child(name)))?
            .ino();
        dir.write_atomic(&marker_name(name, inode), format!("{boot}\n").as_bytes())?;
        Ok(true)
    }

    /// Whether the derived file `name` in `dir` (present) survives a
    /// crash. Blocking.
    pub fn durability(&self, dir: &StoreDir, name: &str) -> Result<Durability> {
        let Some(meta) = dir.stat(name)? else {
            return Ok(Durability::Synced);
        };
        let marker = marker_name(name, meta.ino());
        if dir.stat(&marker)?.is_none() {
            return Ok(Durability::Synced);
        }
        let marked = dir.read(&marker)?;
        let this_boot =
            boot_id().is_some_and(|boot| String::from_utf8_lossy(&marked).trim() == boot);
        Ok(match this_boot {
            true => Durability::ThisBoot,
            false => Durability::EarlierBoot,
        })
    }

    /// Syncs the derived file `name` in `dir` and drops its marker (kept
    /// on a store this process cannot write, whose file the kernel holds
    /// no unwritten bytes of). Blocking.
    pub fn sync_derived(&self, dir: &StoreDir, name: &str) -> Result<()> {
        let file = dir.open_read(name)?;
        let path = dir.child(name);
        let inode = file
            .metadata()
            .map_err(crate::error::io("checking", &path))?
            .ino();
        file.sync_all()
            .map_err(crate::error::io("syncing", &path))?;
        match dir.remove(&marker_name(name, inode)) {
            Ok(()) | Err(Error::ReadOnly { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Removes the derived file `name` in `dir`, a crash may have torn
    /// (see [`Durability::EarlierBoot`]), and its marker. Blocking.
    pub fn drop_unsynced(&self, dir: &StoreDir, name: &str) -> Result<()> {
        let inode = dir.stat(name)?.map(|meta| meta.ino());
        dir.remove(name)?;
        match inode {
            Some(inode) => dir.remove(&marker_name(name, inode)),
            None => Ok(()),
        }
    }
}

/// Removes the marker of the derived file `name` in `dir` that `gc` just
/// removed (its inode was `inode`).
pub(crate) fn remove_marker_of(dir: &StoreDir, name: &str, inode: u64) -> Result<()> {
    dir.remove(&marker_name(name, inode))
}

/// Removes the markers in `dir` whose file is gone or was replaced, once
/// they are older than [`STALE_AFTER`](crate::STALE_AFTER) (a younger one may be a build's
/// about to rename its file into place); how many.
pub(crate) fn sweep_orphan_markers(dir: &StoreDir) -> Result<usize> {
    let mut removed = 0;
    for marker in dir.names()? {
        let Some((inode, name)) = parse_marker(&marker) else {
            continue;
        };
        let Some(meta) = dir.stat(&marker)? else {
            continue;
        };
        let old = is_older_than_stale_after(&meta);
        let orphan = dir.stat(name)?.is_none_or(|file| file.ino() != inode);
        if old && orphan {
            dir.remove(&marker)?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn derived_file(dir: &StoreDir, name: &str, bytes: &[u8]) -> File {
        let (temp, mut file) = dir.create_temp(name).expect("temp");
        file.write_all(bytes).expect("written");
        dir.rename(&temp, dir, name).expect("renamed");
        file
    }

    #[test]
    fn a_marker_names_its_inode_and_file() {
        assert_eq!(
            parse_marker(&marker_name("a-b.ext4", 42)),
            Some((42, "a-b.ext4"))
        );
        assert_eq!(parse_marker(".unsynced-x-a"), None);
        assert_eq!(parse_marker("a.ext4"), None);
    }

    #[test]
    fn an_unsynced_file_is_of_this_boot_until_synced_and_of_an_earlier_one_after_a_reboot() {
        let root = tempfile::tempdir().expect("tempdir");
        let store = Store::open(root.path()).expect("store");
        let dir = store.derived_dir("ext4").expect("dir");
        let file = derived_file(&dir, "a.ext4", b"image");
        assert_eq!(
            store.durability(&dir, "a.ext4").expect("read"),
            Durability::Synced
        );
        assert!(store.mark_unsynced(&dir, "a.ext4", &file).expect("marked"));
        assert_eq!(
            store.durability(&dir, "a.ext4").expect("read"),
            Durability::ThisBoot
        );
        // What a reboot does to the marker: another boot's id.
        let marker = marker_name("a.ext4", file.metadata().expect("meta").ino());
        dir.write_atomic(&marker, b"00000000-0000-0000-0000-000000000000\n")
            .expect("rewritten");
        assert_eq!(
            store.durability(&dir, "a.ext4").expect("read"),
            Durability::EarlierBoot
        );
        store.sync_derived(&dir, "a.ext4").expect("synced");
        assert_eq!(
            store.durability(&dir, "a.ext4").expect("read"),
            Durability::Synced
        );
        assert!(dir.stat(&marker).expect("stat").is_none());
    }

    #[test]
    fn a_file_renamed_over_an_unsynced_one_is_synced_and_keeps_the_later_marker() {
        let root = tempfile::tempdir().expect("tempdir");
        let store = Store::open(root.path()).expect("store");
        let dir = store.derived_dir("ext4").expect("dir");
        let first = derived_file(&dir, "a.ext4", b"first");
        assert!(store.mark_unsynced(&dir, "a.ext4", &first).expect("marked"));
        let second = derived_file(&dir, "a.ext4", b"second");
        assert_eq!(
            store.durability(&dir, "a.ext4").expect("read"),
            Durability::Synced
        );
        // A later unsynced file is marked on its own; dropping it leaves
        // the earlier marker for the sweep, which spares it while young.
        assert!(
            store
                .mark_unsynced(&dir, "a.ext4", &second)
                .expect("marked")
        );
        assert_eq!(
            store.durability(&dir, "a.ext4").expect("read"),
            Durability::ThisBoot
        );
        store.drop_unsynced(&dir, "a.ext4").expect("dropped");
        assert!(dir.stat("a.ext4").expect("stat").is_none());
        let markers = |dir: &StoreDir| {
            let names = dir.names().expect("names");
            names
                .into_iter()
                .filter(|n| n.starts_with(MARKER_PREFIX))
                .count()
        };
        assert_eq!(markers(&dir), 1);
        assert_eq!(sweep_orphan_markers(&dir).expect("swept"), 0);
        assert_eq!(markers(&dir), 1);
    }
}
