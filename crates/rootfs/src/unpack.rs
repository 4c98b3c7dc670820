//! Layer application into a directory: whiteouts, hardlinks, ownership,
//! device nodes, with no entry written outside the target.
//!
//! The entry points are here; an entry is applied by an [`Applier`] in
//! steps, each in its own module: `entry` reads what a tar entry says
//! (`pax` its PAX records), `confine` keeps its path inside the target,
//! `whiteout` applies whiteouts and opaque directories, `create` makes
//! what the entry holds (`lower_copy` for a hardlink to a lower layer of a
//! per-layer tree), `removal` makes room for it, and `metadata` sets
//! owners, modes, times, device nodes and extended attributes on the host.

mod applier;
mod confine;
#[cfg(test)]
mod confinement_tests;
mod create;
mod entry;
mod lower_copy;
mod metadata;
mod pax;
mod removal;
mod whiteout;

pub(crate) use applier::Applier;
pub(crate) use confine::clean_path;
pub(crate) use entry::{Ctx, EntryInfo, Kind, read_entry};
pub(crate) use metadata::xattrs_of;
pub(crate) use whiteout::whiteout_of;

use crate::error::{Error, Result, io};
use crate::open_layer::open_layer;
use crate::progress::{self, ProgressFn};
use crate::scratch::Staging;
use ociref::Digest;
use ocistore::{ImageDetails, Store, StoredImage};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How [`unpack`] applies layers.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct UnpackOptions {
    /// Apply no ownership and create no device nodes on the host, even when
    /// running as root (they are recorded and counted instead). Always on
    /// when the process is not root.
    pub rootless: bool,
    /// Stop with [`Error::LimitExceeded`] once the regular files of all
    /// layers hold more than this many bytes.
    pub max_bytes: Option<u64>,
    /// Stop with [`Error::LimitExceeded`] once the layers hold more than
    /// this many entries.
    pub max_entries: Option<u64>,
    /// Told of each layer, as [`crate::Subject::Layer`] events:
    /// [`crate::Phase::Bytes`] as its blob is read, and
    /// [`crate::Phase::Finished`] once it is applied.
    pub progress: Option<ProgressFn>,
}

impl UnpackOptions {
    /// Options for an unprivileged unpack (no chown, no mknod).
    pub fn rootless() -> UnpackOptions {
        UnpackOptions {
            rootless: true,
            ..UnpackOptions::default()
        }
    }
}

/// What [`unpack`] did.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct UnpackReport {
    /// The image manifest that was unpacked.
    pub manifest_digest: Option<Digest>,
    /// The layers applied, base first.
    pub layers: Vec<Digest>,
    /// Tar entries read (whiteouts included).
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
    /// Whiteouts and opaque markers applied.
    pub whiteouts: u64,
    /// Whether ownership and device nodes were left out (rootless).
    pub rootless: bool,
    /// What could not be applied on the host.
    pub not_applied: NotApplied,
    /// Ownership, mode and device of every path of the final tree
    /// (relative to the target), as the layers say; what an ext4 build
    /// applies inside the image when the host could not.
    pub(crate) records: BTreeMap<PathBuf, Recorded>,
    /// Extended attributes the host refused (rootless), by path, for an
    /// ext4 build to set inside the image.
    pub(crate) pending_xattrs: BTreeMap<PathBuf, Vec<(String, Vec<u8>)>>,
}

/// Counts of what the host did not get (rootless, or a file system
/// without extended attributes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NotApplied {
    /// Entries whose owner (uid/gid) was not set.
    pub ownership: u64,
    /// Character and block devices not created.
    pub devices: u64,
    /// Extended attributes not set.
    pub xattrs: u64,
}

/// What the layers say about one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    pub(crate) mode: u32,
    /// `(b'c' or b'b', major, minor)` for a device node.
    pub(crate) device: Option<(u8, u32, u32)>,
    /// Modification time, seconds since the epoch.
    pub(crate) mtime: i64,
}

/// Applies the layers of a stored image into `target`, base layer first.
///
/// `target` must be absent or an empty directory. The layers are applied
/// in a new directory beside it (`.<name>.unpack-*`, locked while in use),
/// renamed to `target` once all are in: a failed or interrupted unpack
/// leaves `target` as it was. A failed one removes its directory and names
/// paths in its errors as they would be under `target`; one a killed
/// process left is removed by the next unpack into the same target, or by
/// [`crate::remove_stale_work`] (noted in the store's
/// `.cachectl/unpacking/`).
/// Blocking.
pub fn unpack(
    stored: &StoredImage,
    target: &Path,
    options: &UnpackOptions,
) -> Result<UnpackReport> {
    let (store, image) = (stored.store(), stored.details());
    check_target(target)?;
    let staging = Staging::new(store, target)?;
    // A failure drops (removes) the staging directory.
    let report = apply_image(store, image, staging.path(), options)
        .map_err(|err| err.relocated(staging.path(), target))?;
    staging.rename_to(target)?;
    Ok(report)
}

/// Applies the layers of `image` into the existing, empty `target`.
pub(crate) fn apply_image(
    store: &Store,
    image: &ImageDetails,
    target: &Path,
    options: &UnpackOptions,
) -> Result<UnpackReport> {
    let rootless = options.rootless || !rustix::process::geteuid().is_root();
    let mut applier = Applier::new(target, options, rootless);
    applier.report.manifest_digest = Some(image.manifest.digest.clone());
    for layer in &image.layers {
        let digest = &layer.descriptor.digest;
        let progress = options.progress.as_ref();
        let stream = open_layer(store, digest, &layer.descriptor.media_type, progress)?;
        applier.apply_layer(digest, stream)?;
        progress::finished(progress, digest, layer.descriptor.size);
        applier.report.layers.push(digest.clone());
    }
    applier.finish()?;
    Ok(applier.report)
}

/// Checks that `target` is absent or an empty directory.
fn check_target(target: &Path) -> Result<()> {
    match std::fs::read_dir(target) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::TargetNotEmpty {
                    path: target.to_path_buf(),
                });
            }
            Ok(())
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotADirectory => Err(Error::TargetNotEmpty {
            path: target.to_path_buf(),
        }),
        Err(err) => Err(io("reading", target)(err)),
    }
}
