//! What rootfs keeps under the store, and when it goes: the file system
//! images in `.cachectl/ext4/`, `.cachectl/squashfs/` and `.cachectl/erofs/`
//! and the layer tars in `.cachectl/layers/`, all derived directories of
//! the store ([`ocistore::Store::derived_dir`]).
//!
//! Each kept file has an owner file beside it (`<file>.owner`) naming, a
//! line each, the blobs whose presence in the store keeps it: the image
//! manifest for a whole-image build, the layer blobs for a per-layer image
//! or a layer tar (a gzip and a zstd blob of one layer share its tar). A
//! use adds its blob ([`claim`]); [`ocistore::Store::gc`] removes the
//! files none of whose owners is stored any more, so a library user who
//! calls only `gc` leaks nothing. Two processes claiming one file at the
//! same instant may lose one line: the file is then made again when asked
//! for after the other owner goes, never wrong.

use crate::error::{Result, io};
use crate::options::FsType;
use crate::safe::{from_store, name_of};
use ociref::Digest;
use ocistore::{DerivedFiles, Durability, Store};
use std::path::Path;

/// The derived directory of ext4 images.
pub(crate) const IMAGES: &str = "ext4";
/// The derived directory of layer tars.
pub(crate) const LAYER_TARS: &str = "layers";

/// A count of rootfs's cached files: what [`ocistore::Store::gc`] removed
/// ([`BuildFiles::collected`]), or what [`cached_builds`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct BuildFiles {
    /// How many file system images (ext4, squashfs and erofs, whole or
    /// per layer).
    pub images: usize,
    /// How many uncompressed layer tars ([`crate::layer_tars`](fn@crate::layer_tars)).
    pub layer_tars: usize,
    /// The total size of both, in bytes.
    pub bytes: u64,
    /// How many partial files of builds (`partial-*` ext4 images and layer
    /// tars): in progress, or left by killed builds until `gc` or the next
    /// build removes them.
    pub partial_images: usize,
    /// Their total size, in bytes (not in [`BuildFiles::bytes`]).
    pub partial_bytes: u64,
}

impl BuildFiles {
    /// rootfs's part of derived files the store counted or removed.
    pub fn collected(derived: &DerivedFiles) -> BuildFiles {
        BuildFiles {
            images: [FsType::Ext4, FsType::Squashfs, FsType::Erofs]
                .iter()
                .map(|fs| derived.files_of(fs.as_str()))
                .sum(),
            layer_tars: derived.files_of(LAYER_TARS),
            bytes: derived.bytes,
            partial_images: derived.partial_files,
            partial_bytes: derived.partial_bytes,
        }
    }
}

/// The derived directory a kept file is in (`ext4`, `squashfs`, `erofs` or
/// `layers`).
fn kind_of(kept: &Path) -> String {
    kept.parent()
        .and_then(Path::file_name)
        .expect("because kept files are in a derived directory")
        .to_string_lossy()
        .into_owned()
}

/// Adds `owner` to the owners of `kept`, dropping those no longer stored
/// (written atomically; call it before `kept` is renamed into place, and
/// again whenever a cached `kept` is used).
pub(crate) fn claim(store: &Store, kept: &Path, owner: &Digest) -> Result<()> {
    let dir = store.derived_dir(&kind_of(kept)).map_err(from_store)?;
    store
        .claim_derived(&dir, &name_of(kept), owner)
        .map_err(from_store)
}

/// Removes the owner file of `kept` when `kept` was not made after all
/// (a failed extraction leaves nothing behind).
pub(crate) fn unclaim_missing(store: &Store, kept: &Path) {
    if let Ok(dir) = store.derived_dir(&kind_of(kept)) {
        let _ = store.unclaim_unmade(&dir, &name_of(kept));
    }
}

/// Counts the cached ext4 images (whole and per layer) and layer tars, and
/// their bytes, and the partial files apart. Blocking.
pub fn cached_builds(store: &Store) -> Result<BuildFiles> {
    Ok(BuildFiles::collected(&store.derived_usage()?))
}

/// Keeps the finished `partial` image as `cached_path` in `cache`: its
/// owner file first (naming `owner`, so no image lacks one), then the
/// rename through the directory's handle.
pub(crate) fn keep_image(
    store: &Store,
    cache: &ocistore::StoreDir,
    partial: tempfile::NamedTempFile,
    cached_path: &Path,
    owner: &Digest,
) -> Result<()> {
    claim(store, cached_path, owner)?;
    let kept = cache.anchor().join(name_of(cached_path));
    partial.persist(kept).map_err(|e| {
        unclaim_missing(store, cached_path);
        io("renaming into place", cached_path)(e.error)
    })?;
    Ok(())
}

/// Marks the finished `image`, about to be kept at `cached_path` (in
/// `cache`, its derived directory), as kept before it is synced, in this
/// boot (its caller holds a synced copy); `false` where it cannot be (no
/// boot id, a marker not written): sync it then. See
/// [`ocistore::Durability`].
pub(crate) fn keep_unsynced(
    store: &Store,
    cache: &ocistore::StoreDir,
    image: &std::fs::File,
    cached_path: &Path,
) -> bool {
    store
        .mark_unsynced(cache, &name_of(cached_path), image)
        .unwrap_or(false)
}

/// Whether the cached file at `cached_path` (present) may be served. One
/// kept unsynced in an earlier boot may be torn: it is removed (and built
/// again). One kept unsynced in this boot is whole; it is synced first
/// when `handed_out` (the caller gets the cached file itself, which must
/// survive a crash) or once it is a minute old (written back by then, so
/// the sync costs little and spares a build after the next reboot).
pub(crate) fn servable(store: &Store, cached_path: &Path, handed_out: bool) -> Result<bool> {
    let dir = store
        .derived_dir(&kind_of(cached_path))
        .map_err(from_store)?;
    let name = name_of(cached_path);
    match store.durability(&dir, &name).map_err(from_store)? {
        Durability::Synced => Ok(true),
        Durability::EarlierBoot => match store.drop_unsynced(&dir, &name) {
            Ok(()) | Err(ocistore::Error::ReadOnly { .. }) => Ok(false),
            Err(err) => Err(from_store(err)),
        },
        Durability::ThisBoot => {
            let written_back = dir
                .stat(&name)
                .map_err(from_store)?
                .is_some_and(|meta| ocistore::is_older_than_stale_after(&meta));
            if handed_out || written_back {
                store.sync_derived(&dir, &name).map_err(from_store)?;
            }
            Ok(true)
        }
    }
}
