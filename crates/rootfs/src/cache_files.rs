//! What rootfs keeps under the store, and when it goes: the ext4 images in
//! `.cachectl/ext4/` and the layer tars in `.cachectl/layers/`.
//!
//! Each kept file has an owner file beside it (`<file>.owner`) naming, a
//! line each, the blobs whose presence in the store keeps it: the image
//! manifest for a whole-image build, the layer blobs for a per-layer image
//! or a layer tar (a gzip and a zstd blob of one layer share its tar). A
//! use adds its blob ([`claim`]); [`remove_unused_builds`] (run after
//! [`ocistore::Store::gc`]) removes the files none of whose owners is
//! stored any more. Two processes claiming one file at the same instant
//! may lose one line: the file is then made again when asked for after
//! the other owner goes, never wrong.

use crate::error::Result;
use crate::safe::{self, name_of};
use ociref::Digest;
use ocistore::{Store, StoreDir};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A count of rootfs's cached files: what [`remove_unused_builds`]
/// removed, or what [`cached_builds`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct BuildFiles {
    /// How many ext4 images (whole or per layer).
    pub images: usize,
    /// How many uncompressed layer tars ([`crate::layer_tars`](fn@crate::layer_tars)).
    pub layer_tars: usize,
    /// The total size of both, in bytes.
    pub bytes: u64,
    /// How many partial ext4 images (`.cachectl/ext4/partial-*.ext4`):
    /// builds in progress, or left by killed builds until the next build
    /// or [`crate::remove_stale_work`] removes them. Counted by
    /// [`cached_builds`] only.
    pub partial_images: usize,
    /// Their total size, in bytes (not in [`BuildFiles::bytes`]).
    pub partial_bytes: u64,
}

/// The owner file of `kept` (`<kept>.owner`).
fn owner_file(kept: &Path) -> PathBuf {
    let mut name = kept.as_os_str().to_owned();
    name.push(".owner");
    PathBuf::from(name)
}

/// Before owner files: builds named their manifest in `<key>.manifest`.
fn legacy_owner_file(kept: &Path) -> PathBuf {
    kept.with_extension("manifest")
}

/// The owners `kept` names (lines that do not parse are skipped). An
/// owner file that is a link, a FIFO or anything but a regular file names
/// none (it is never followed nor waited on; [`claim`] replaces it).
/// Read through `dir`, the handle of the directory `kept` is in.
fn owners_of(dir: &StoreDir, kept: &Path) -> Vec<Digest> {
    [owner_file(kept), legacy_owner_file(kept)]
        .iter()
        .find_map(|file| {
            let mut text = String::new();
            let mut opened = dir.open_read(&name_of(file)).ok()?;
            std::io::Read::read_to_string(&mut opened, &mut text).ok()?;
            Some(text)
        })
        .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Whether `digest` is a blob of the store (a regular file; a link there
/// is not followed).
fn is_stored(store: &Store, digest: &Digest) -> bool {
    std::fs::symlink_metadata(store.blob_path(digest)).is_ok_and(|meta| meta.is_file())
}

/// Whether one of the owners of `kept` (in `dir`) is still in the store.
fn is_owned(store: &Store, dir: &StoreDir, kept: &Path) -> bool {
    owners_of(dir, kept)
        .iter()
        .any(|digest| is_stored(store, digest))
}

/// Adds `owner` to the owners of `kept`, dropping those no longer stored
/// (written atomically; call it before `kept` is renamed into place, and
/// again whenever a cached `kept` is used).
pub(crate) fn claim(store: &Store, kept: &Path, owner: &Digest) -> Result<()> {
    let (dir, name) = safe::dir_of(store, &owner_file(kept))?;
    let mut owners = owners_of(&dir, kept);
    if owners.contains(owner) {
        return Ok(());
    }
    owners.retain(|digest| is_stored(store, digest));
    owners.push(owner.clone());
    let text: String = owners.iter().map(|digest| format!("{digest}\n")).collect();
    // A temp file created `O_EXCL`, renamed over the name: whatever was
    // planted there is replaced, never written through.
    dir.write_atomic(&name, text.as_bytes())?;
    Ok(())
}

/// Removes the owner file of `kept` when `kept` was not made after all
/// (a failed extraction leaves nothing behind).
pub(crate) fn unclaim_missing(store: &Store, kept: &Path) {
    if let Ok((dir, name)) = safe::dir_of(store, kept)
        && matches!(dir.stat(&name), Ok(None))
    {
        let _ = dir.remove(&format!("{name}.owner"));
    }
}

/// Removes the cached ext4 images and layer tars whose owner is no longer
/// in the store (run after [`ocistore::Store::gc`]), and says how many and
/// how many bytes. Files without a readable owner file are removed too.
/// Files a concurrent call removed first are not counted. Blocking.
pub fn remove_unused_builds(store: &Store) -> Result<BuildFiles> {
    let mut removed = BuildFiles::default();
    for (kind, dir, name, size) in cached_files(store)? {
        let path = dir.child(&name);
        if is_owned(store, &dir, &path) {
            continue;
        }
        // Another `gc` removed it first: not counted.
        if dir.stat(&name)?.is_none() {
            continue;
        }
        dir.remove(&name)?;
        let _ = dir.remove(&name_of(&owner_file(&path)));
        let _ = dir.remove(&name_of(&legacy_owner_file(&path)));
        removed.count(kind, size);
    }
    Ok(removed)
}

/// Counts the cached ext4 images (whole and per layer) and layer tars, and
/// their bytes, and the partial images apart. Blocking.
pub fn cached_builds(store: &Store) -> Result<BuildFiles> {
    let mut found = BuildFiles::default();
    for (kind, _, _, size) in cached_files(store)? {
        found.count(kind, size);
    }
    let ext4 = store.root().join(".cachectl/ext4");
    if let Some(dir) = safe::existing_dir(store, &ext4)? {
        for name in dir.names()? {
            if name.starts_with("partial-") && name.ends_with(".ext4") {
                found.partial_images += 1;
                found.partial_bytes += dir.stat(&name)?.map_or(0, |m| m.len());
            }
        }
    }
    Ok(found)
}

impl BuildFiles {
    fn count(&mut self, kind: Kind, size: u64) {
        match kind {
            Kind::Image => self.images += 1,
            Kind::LayerTar => self.layer_tars += 1,
        }
        self.bytes += size;
    }
}

/// A cached file: its kind, its directory (held) and name, its size.
type CachedFile = (Kind, Arc<StoreDir>, String, u64);

/// Which kind of cached file.
#[derive(Clone, Copy)]
enum Kind {
    Image,
    LayerTar,
}

/// The finished files in `.cachectl/ext4/` (`*.ext4`) and
/// `.cachectl/layers/` (`*.tar`), not the `partial-` files of work in
/// progress, with their sizes.
fn cached_files(store: &Store) -> Result<Vec<CachedFile>> {
    let mut files = Vec::new();
    for (kind, dir, extension) in [
        (Kind::Image, ".cachectl/ext4", ".ext4"),
        (Kind::LayerTar, ".cachectl/layers", ".tar"),
    ] {
        // Never a directory outside the store through a planted link.
        let Some(dir) = safe::existing_dir(store, &store.root().join(dir))? else {
            continue;
        };
        let dir = Arc::new(dir);
        for name in dir.names()? {
            if name.starts_with("partial-") || !name.ends_with(extension) {
                continue;
            }
            let size = dir.stat(&name)?.map_or(0, |m| m.len());
            files.push((kind, Arc::clone(&dir), name, size));
        }
    }
    Ok(files)
}
