//! Layer application into a directory: whiteouts, hardlinks, ownership,
//! device nodes, with no entry written outside the target.

use crate::error::{Error, Result, io};
use crate::progress::{self, ProgressFn};
use crate::scratch::Staging;
use crate::stored_image::{open_layer, select_image};
use crate::tar_sparse::{SparseError, SparseRecords, write_sparse, write_with_holes};
use ociref::{Digest, Platform, Reference};
use ocistore::{ImageDetails, Store};
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fs::{File, FileTimes, Permissions};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

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
    /// Called as each layer blob is read, and once when it is applied.
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

/// Applies the layers of the stored image `reference` (for `platform`, or
/// the only or host-matching one) into `target`, base layer first.
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
    store: &Store,
    reference: &Reference,
    platform: Option<&Platform>,
    target: &Path,
    options: &UnpackOptions,
) -> Result<UnpackReport> {
    // Held until the layers are read: `gc` keeps them.
    let (_lease, image) = select_image(store, reference, platform)?;
    check_target(target)?;
    let staging = Staging::new(store, target)?;
    // A failure drops (removes) the staging directory.
    let report = apply_image(store, &image, staging.path(), options)
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

/// Metadata applied to a directory once all layers are in.
#[derive(Clone, Copy, Debug)]
struct DirMeta {
    mode: u32,
    mtime: i64,
}

/// Applies entries, layer after layer, into one target.
pub(crate) struct Applier<'o> {
    root: PathBuf,
    options: &'o UnpackOptions,
    rootless: bool,
    pub(crate) report: UnpackReport,
    /// Directories whose mode and mtime are set at the end, children first.
    dirs: BTreeMap<PathBuf, DirMeta>,
    /// Paths checked to be real directories (no symlink), relative.
    known_dirs: HashSet<PathBuf>,
    /// Paths the current layer wrote.
    created: HashSet<PathBuf>,
    /// Those paths and their ancestors.
    touched: HashSet<PathBuf>,
    /// Overlay mode (one layer per tree): the merged tree of the layers
    /// below, where hardlink targets of lower layers are copied from.
    /// Whiteouts become overlayfs whiteouts instead of removals.
    lower: Option<PathBuf>,
    /// Overlay mode: what the layers below say about each path of `lower`
    /// (owners, modes and times of files a hardlink copies).
    lower_records: BTreeMap<PathBuf, Recorded>,
    /// Overlay mode: extended attributes of `lower`'s files the host
    /// refused (rootless), which a copy must carry all the same.
    lower_xattrs: BTreeMap<PathBuf, Vec<(String, Vec<u8>)>>,
}

/// The entry being applied, for error messages.
struct Ctx<'a> {
    layer: &'a Digest,
    entry: &'a str,
}

impl Ctx<'_> {
    fn unsafe_entry(&self, reason: impl Into<String>) -> Error {
        Error::UnsafeEntry {
            layer: self.layer.clone(),
            entry: self.entry.to_owned(),
            reason: reason.into(),
        }
    }

    fn io(&self, what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
        let layer = self.layer.clone();
        let entry = self.entry.to_owned();
        let path = path.to_path_buf();
        move |source| Error::Entry {
            layer,
            entry,
            what,
            path,
            source,
        }
    }
}

/// What an entry creates.
enum Kind {
    File,
    Dir,
    Symlink(PathBuf),
    Hardlink(PathBuf),
    Device(u8, u32, u32),
    Fifo,
}

impl<'o> Applier<'o> {
    pub(crate) fn new(root: &Path, options: &'o UnpackOptions, rootless: bool) -> Applier<'o> {
        Applier {
            root: root.to_path_buf(),
            options,
            rootless,
            report: UnpackReport {
                rootless,
                ..UnpackReport::default()
            },
            dirs: BTreeMap::new(),
            known_dirs: HashSet::new(),
            created: HashSet::new(),
            touched: HashSet::new(),
            lower: None,
            lower_records: BTreeMap::new(),
            lower_xattrs: BTreeMap::new(),
        }
    }

    /// Overlay mode: whiteouts are written as overlayfs whiteouts (a
    /// character device 0:0, `trusted.overlay.opaque=y` on an opaque
    /// directory), and a hardlink to a file of a lower layer becomes a copy
    /// of it, taken from `lower` (the merged tree of the layers below),
    /// with the owner, mode, mtime and extended attributes `below` (the
    /// report of the unpack into `lower`) gives that file.
    pub(crate) fn overlay(mut self, lower: &Path, below: &UnpackReport) -> Applier<'o> {
        self.lower = Some(lower.to_path_buf());
        self.lower_records = below.records.clone();
        self.lower_xattrs = below.pending_xattrs.clone();
        self
    }

    /// Applies one decompressed layer.
    pub(crate) fn apply_layer(&mut self, layer: &Digest, stream: impl Read) -> Result<()> {
        self.created.clear();
        self.touched.clear();
        let read_error = |source| Error::LayerRead {
            layer: layer.clone(),
            source,
        };
        let mut archive = tar::Archive::new(stream);
        for entry in archive.entries().map_err(read_error)? {
            let entry = entry.map_err(read_error)?;
            self.apply_entry(layer, entry)?;
        }
        Ok(())
    }

    fn apply_entry<R: Read>(&mut self, layer: &Digest, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let ctx = Ctx {
            layer,
            entry: &shown,
        };
        self.report.entries += 1;
        if let Some(limit) = self.options.max_entries
            && self.report.entries > limit
        {
            return Err(Error::LimitExceeded {
                layer: layer.clone(),
                entry: shown.clone(),
                what: "entries",
                limit,
            });
        }
        let header = entry.header();
        let entry_type = header.entry_type();
        let kind = match entry_type {
            // GNU sparse: `tar` reads it with its holes as zeros.
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                Kind::File
            }
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink(link_name(&entry, &ctx)?),
            tar::EntryType::Link => Kind::Hardlink(link_name(&entry, &ctx)?),
            tar::EntryType::Char | tar::EntryType::Block => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let tag = if entry_type == tar::EntryType::Char {
                    b'c'
                } else {
                    b'b'
                };
                Kind::Device(tag, major, minor)
            }
            tar::EntryType::Fifo => Kind::Fifo,
            // PAX and GNU long-name headers are consumed by `tar`; a global
            // header and a volume label name no file.
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => return Ok(()),
            other => match other.as_byte() {
                b'V' => return Ok(()),
                // A GNU dumpdir: a directory (its data lists names, for
                // incremental restores only).
                b'D' => Kind::Dir,
                // Part of a file continued from another volume, or an
                // obsolete GNU rename list: no file can be made of it.
                b'M' | b'N' => {
                    return Err(ctx.unsafe_entry(format!(
                        "GNU `{}` entry (multi-volume or rename list) cannot be applied",
                        char::from(other.as_byte())
                    )));
                }
                // POSIX: an unknown type is extracted as a regular file (as
                // GNU tar does; umoci refuses the layer).
                _ => Kind::File,
            },
        };
        let mode = header
            .mode()
            .map_err(|e| ctx.unsafe_entry(format!("bad mode: {e}")))?
            & 0o7777;
        let (header_uid, header_gid) = (header.uid().unwrap_or(0), header.gid().unwrap_or(0));
        let header_mtime = header.mtime().unwrap_or(0) as i64;
        // PAX records override the header (large ids, times before 1970
        // or past 2242, as Go's archive/tar and GNU tar write them).
        let pax = pax_of(&mut entry, &ctx)?;
        // A sparse file in PAX form is named by its records, not by its
        // header (`GNUSparseFile.<pid>/<name>`).
        let raw_path = pax.sparse_name.clone().unwrap_or(raw_path);
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let ctx = Ctx {
            layer,
            entry: &shown,
        };
        let rel = clean_path(&raw_path).map_err(|reason| ctx.unsafe_entry(reason))?;
        let name = rel.file_name().map(OsStr::as_bytes).unwrap_or_default();
        if let Some(whiteout) = name.strip_prefix(b".wh.") {
            let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
            self.report.whiteouts += 1;
            if whiteout.is_empty() || whiteout == b"." || whiteout == b".." {
                return Err(ctx.unsafe_entry("whiteout of `.`, `..` or nothing"));
            }
            let mtime = pax.mtime.unwrap_or(header_mtime);
            if self.lower.is_some() {
                return if whiteout == b".wh..opq" {
                    self.overlay_opaque(&ctx, &parent)
                } else {
                    self.overlay_whiteout(&ctx, &parent.join(OsStr::from_bytes(whiteout)), mtime)
                };
            }
            return if whiteout == b".wh..opq" {
                self.opaque(&ctx, &parent)
            } else {
                self.whiteout(&ctx, &parent.join(OsStr::from_bytes(whiteout)))
            };
        }
        let uid = pax.uid.unwrap_or(header_uid);
        let gid = pax.gid.unwrap_or(header_gid);
        let mtime = pax.mtime.unwrap_or(header_mtime);
        let xattrs = pax.xattrs;

        if rel.as_os_str().is_empty() {
            // The root directory itself (`./`): its metadata only.
            if !matches!(kind, Kind::Dir) {
                return Err(ctx.unsafe_entry("the root can only be a directory"));
            }
            self.dirs.insert(PathBuf::new(), DirMeta { mode, mtime });
            self.own(&ctx, &self.root.clone(), uid, gid, false)?;
            self.record(
                &rel,
                Recorded {
                    uid,
                    gid,
                    mode,
                    device: None,
                    mtime,
                },
            );
            return Ok(());
        }
        let abs = self.ensure_parent(&ctx, &rel)?;
        match kind {
            Kind::Dir => {
                self.clear(&ctx, &rel, &abs, true)?;
                if !abs.is_dir() {
                    std::fs::create_dir(&abs).map_err(ctx.io("creating directory", &abs))?;
                }
                self.known_dirs.insert(rel.clone());
                self.own(&ctx, &abs, uid, gid, false)?;
                self.set_xattrs(&ctx, &abs, &xattrs)?;
                self.dirs.insert(rel.clone(), DirMeta { mode, mtime });
                self.record(
                    &rel,
                    Recorded {
                        uid,
                        gid,
                        mode,
                        device: None,
                        mtime,
                    },
                );
            }
            Kind::File => {
                let sparse = if pax.sparse.is_sparse() {
                    Some(
                        pax.sparse
                            .layout()
                            .map_err(|reason| ctx.unsafe_entry(reason))?,
                    )
                } else {
                    None
                };
                let size = sparse.as_ref().map_or(entry.size(), |s| s.real_size);
                if let Some(limit) = self.options.max_bytes
                    && self.report.bytes.saturating_add(size) > limit
                {
                    return Err(Error::LimitExceeded {
                        layer: layer.clone(),
                        entry: shown.clone(),
                        what: "bytes",
                        limit,
                    });
                }
                let mut file = self.create_file(&ctx, &rel, &abs)?;
                let read_error = |source| Error::LayerRead {
                    layer: layer.clone(),
                    source,
                };
                let written = match &sparse {
                    Some(layout) => {
                        write_sparse(layout, &mut entry, &mut file).map_err(|err| match err {
                            SparseError::Map(reason) => ctx.unsafe_entry(reason),
                            SparseError::Io(source) => read_error(source),
                        })?
                    }
                    None if entry_type == tar::EntryType::GNUSparse => {
                        write_with_holes(&mut entry, &mut file, size).map_err(read_error)?
                    }
                    None => std::io::copy(&mut (&mut entry).take(size), &mut file)
                        .map_err(read_error)?,
                };
                self.report.bytes += written;
                if !self.rootless {
                    std::os::unix::fs::fchown(&file, Some(uid as u32), Some(gid as u32))
                        .map_err(ctx.io("changing owner of", &abs))?;
                } else {
                    self.report.not_applied.ownership += u64::from(uid != 0 || gid != 0);
                }
                file.set_permissions(Permissions::from_mode(mode))
                    .map_err(ctx.io("setting mode of", &abs))?;
                self.set_xattrs(&ctx, &abs, &xattrs)?;
                file.set_times(times(mtime))
                    .map_err(ctx.io("setting times of", &abs))?;
                self.record(
                    &rel,
                    Recorded {
                        uid,
                        gid,
                        mode,
                        device: None,
                        mtime,
                    },
                );
            }
            Kind::Symlink(target) => {
                self.clear(&ctx, &rel, &abs, false)?;
                std::os::unix::fs::symlink(&target, &abs)
                    .map_err(ctx.io("creating symlink", &abs))?;
                self.own(&ctx, &abs, uid, gid, true)?;
                let time = filetime::FileTime::from_unix_time(mtime, 0);
                filetime::set_symlink_file_times(&abs, time, time)
                    .map_err(ctx.io("setting times of", &abs))?;
                self.record(
                    &rel,
                    Recorded {
                        uid,
                        gid,
                        mode: 0o777,
                        device: None,
                        mtime,
                    },
                );
            }
            Kind::Hardlink(target) => {
                let target_rel = clean_path(target.as_os_str().as_bytes())
                    .map_err(|reason| ctx.unsafe_entry(format!("hardlink target: {reason}")))?;
                if target_rel.as_os_str().is_empty() {
                    return Err(ctx.unsafe_entry("hardlink to the root directory"));
                }
                let here = self
                    .check_parent(&ctx, &target_rel)?
                    .filter(|p| std::fs::symlink_metadata(p).is_ok());
                if here.is_none()
                    && let Some(lower) = self.lower.clone()
                {
                    // A hardlink shares its target's inode: the header's
                    // owner, mode and mtime are not the file's.
                    return self.copy_from_lower(&ctx, &lower, &target_rel, &rel, &abs);
                }
                let target_abs = here.ok_or_else(|| {
                    ctx.unsafe_entry(format!("hardlink target {} is missing", target.display()))
                })?;
                let meta = std::fs::symlink_metadata(&target_abs).map_err(|_| {
                    ctx.unsafe_entry(format!("hardlink target {} is missing", target.display()))
                })?;
                if meta.is_dir() {
                    return Err(ctx.unsafe_entry("hardlink to a directory"));
                }
                if target_rel == rel {
                    return Ok(());
                }
                self.clear(&ctx, &rel, &abs, false)?;
                std::fs::hard_link(&target_abs, &abs).map_err(ctx.io("linking", &abs))?;
                let recorded = self.report.records.get(&target_rel).copied();
                if let Some(recorded) = recorded {
                    self.report.records.insert(rel.clone(), recorded);
                }
            }
            Kind::Device(tag, major, minor) => {
                self.clear(&ctx, &rel, &abs, false)?;
                if self.rootless {
                    self.report.not_applied.devices += 1;
                } else {
                    let file_type = if tag == b'c' {
                        rustix::fs::FileType::CharacterDevice
                    } else {
                        rustix::fs::FileType::BlockDevice
                    };
                    self.mknod(
                        &ctx,
                        &abs,
                        file_type,
                        mode,
                        rustix::fs::makedev(major, minor),
                    )?;
                    self.set_node_metadata(&ctx, &abs, (uid, gid), mode, mtime)?;
                }
                self.record(
                    &rel,
                    Recorded {
                        uid,
                        gid,
                        mode,
                        device: Some((tag, major, minor)),
                        mtime,
                    },
                );
            }
            Kind::Fifo => {
                self.clear(&ctx, &rel, &abs, false)?;
                self.mknod(&ctx, &abs, rustix::fs::FileType::Fifo, mode, 0)?;
                self.set_node_metadata(&ctx, &abs, (uid, gid), mode, mtime)?;
                self.record(
                    &rel,
                    Recorded {
                        uid,
                        gid,
                        mode,
                        device: None,
                        mtime,
                    },
                );
            }
        }
        self.mark_created(&rel);
        Ok(())
    }

    /// Sets directory modes and times, children before parents.
    pub(crate) fn finish(&mut self) -> Result<()> {
        for (rel, meta) in self.dirs.iter().rev() {
            let abs = self.root.join(rel);
            let Ok(found) = std::fs::symlink_metadata(&abs) else {
                continue;
            };
            if !found.is_dir() {
                continue;
            }
            let time = filetime::FileTime::from_unix_time(meta.mtime, 0);
            filetime::set_file_times(&abs, time, time).map_err(io("setting times of", &abs))?;
            std::fs::set_permissions(&abs, Permissions::from_mode(meta.mode))
                .map_err(io("setting mode of", &abs))?;
        }
        Ok(())
    }

    /// Resolves the parent of `rel` below the root, creating missing
    /// directories, refusing any component that is a symlink or no
    /// directory. Returns the absolute path of `rel`.
    fn ensure_parent(&mut self, ctx: &Ctx<'_>, rel: &Path) -> Result<PathBuf> {
        let mut prefix = PathBuf::new();
        let Some(parent) = rel.parent() else {
            return Ok(self.root.join(rel));
        };
        for component in parent.components() {
            prefix.push(component);
            if self.known_dirs.contains(&prefix) {
                continue;
            }
            let abs = self.root.join(&prefix);
            match std::fs::symlink_metadata(&abs) {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(
                        ctx.unsafe_entry(format!("parent {} is a symlink", prefix.display()))
                    );
                }
                Ok(_) => {
                    return Err(
                        ctx.unsafe_entry(format!("parent {} is not a directory", prefix.display()))
                    );
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir(&abs).map_err(ctx.io("creating directory", &abs))?;
                    std::fs::set_permissions(&abs, Permissions::from_mode(0o755))
                        .map_err(ctx.io("setting mode of", &abs))?;
                    self.record(
                        &prefix,
                        Recorded {
                            uid: 0,
                            gid: 0,
                            mode: 0o755,
                            device: None,
                            mtime: 0,
                        },
                    );
                    // A parent no layer declares: mode 0755, mtime 0, so
                    // the result never depends on when it was unpacked.
                    self.dirs.insert(
                        prefix.clone(),
                        DirMeta {
                            mode: 0o755,
                            mtime: 0,
                        },
                    );
                }
                Err(err) => return Err(ctx.io("inspecting", &abs)(err)),
            }
            self.known_dirs.insert(prefix.clone());
        }
        Ok(self.root.join(rel))
    }

    /// Like [`Applier::ensure_parent`] but creating nothing: `None` when a
    /// parent is missing.
    fn check_parent(&self, ctx: &Ctx<'_>, rel: &Path) -> Result<Option<PathBuf>> {
        let mut prefix = PathBuf::new();
        if let Some(parent) = rel.parent() {
            for component in parent.components() {
                prefix.push(component);
                if self.known_dirs.contains(&prefix) {
                    continue;
                }
                match std::fs::symlink_metadata(self.root.join(&prefix)) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(meta) if meta.file_type().is_symlink() => {
                        return Err(
                            ctx.unsafe_entry(format!("parent {} is a symlink", prefix.display()))
                        );
                    }
                    _ => return Ok(None),
                }
            }
        }
        Ok(Some(self.root.join(rel)))
    }

    /// Creates the regular file `abs` (mode 0600 until its own is set),
    /// making room first only when something is there: `O_CREAT|O_EXCL`
    /// never follows a symlink at `abs` and fails on anything present, so
    /// the common case (nothing there) skips the `lstat` of
    /// [`Applier::clear`] and the result is the same.
    fn create_file(&mut self, ctx: &Ctx<'_>, rel: &Path, abs: &Path) -> Result<File> {
        let create = || {
            File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(abs)
        };
        match create() {
            Ok(file) => Ok(file),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                self.clear(ctx, rel, abs, false)?;
                create().map_err(ctx.io("creating", abs))
            }
            Err(err) => Err(ctx.io("creating", abs)(err)),
        }
    }

    /// Makes room at `abs` for a new entry: removes what is there, except
    /// a directory when `keep_dir`.
    fn clear(&mut self, ctx: &Ctx<'_>, rel: &Path, abs: &Path, keep_dir: bool) -> Result<()> {
        match std::fs::symlink_metadata(abs) {
            Ok(meta) if meta.is_dir() && keep_dir => Ok(()),
            Ok(_) => self.remove(ctx, rel, abs),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(ctx.io("inspecting", abs)(err)),
        }
    }

    /// Removes `rel` (a directory with all it holds; a symlink itself).
    fn remove(&mut self, ctx: &Ctx<'_>, rel: &Path, abs: &Path) -> Result<()> {
        let meta = match std::fs::symlink_metadata(abs) {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(ctx.io("inspecting", abs)(err)),
        };
        if meta.is_dir() {
            // `remove_dir_all` never follows symlinks.
            std::fs::remove_dir_all(abs).map_err(ctx.io("removing", abs))?;
        } else {
            std::fs::remove_file(abs).map_err(ctx.io("removing", abs))?;
        }
        self.known_dirs.retain(|p| !p.starts_with(rel));
        let gone: Vec<PathBuf> = self
            .report
            .records
            .range(rel.to_path_buf()..)
            .take_while(|(p, _)| p.starts_with(rel))
            .map(|(p, _)| p.clone())
            .collect();
        self.report
            .pending_xattrs
            .retain(|path, _| !path.starts_with(rel));
        for path in gone {
            self.report.records.remove(&path);
            self.dirs.remove(&path);
        }
        self.dirs.remove(rel);
        Ok(())
    }

    /// `.wh.<name>`: removes `rel` as lower layers left it.
    fn whiteout(&mut self, ctx: &Ctx<'_>, rel: &Path) -> Result<()> {
        if self.created.contains(rel) {
            return Ok(());
        }
        let Some(abs) = self.check_parent(ctx, rel)? else {
            return Ok(());
        };
        self.remove(ctx, rel, &abs)
    }

    /// `.wh..wh..opq` in `dir`: removes what lower layers left in `dir`,
    /// keeping what this layer wrote, before or after the marker.
    fn opaque(&mut self, ctx: &Ctx<'_>, dir: &Path) -> Result<()> {
        let abs = if dir.as_os_str().is_empty() {
            self.root.clone()
        } else {
            match self.check_parent(ctx, dir)? {
                Some(abs) => abs,
                None => return Ok(()),
            }
        };
        match std::fs::symlink_metadata(&abs) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(ctx.unsafe_entry("opaque directory is a symlink"));
            }
            _ => return Ok(()),
        }
        self.prune(ctx, dir, &abs)
    }

    fn prune(&mut self, ctx: &Ctx<'_>, dir: &Path, abs: &Path) -> Result<()> {
        let mut children = Vec::new();
        for child in std::fs::read_dir(abs).map_err(ctx.io("reading", abs))? {
            let child = child.map_err(ctx.io("reading", abs))?;
            children.push((
                child.file_name(),
                child.file_type().map_err(ctx.io("reading", abs))?,
            ));
        }
        for (name, file_type) in children {
            let rel = dir.join(&name);
            let child_abs = abs.join(&name);
            if !self.touched.contains(&rel) {
                self.remove(ctx, &rel, &child_abs)?;
            } else if file_type.is_dir() {
                self.prune(ctx, &rel, &child_abs)?;
            }
        }
        Ok(())
    }

    /// Overlay mode: `.wh.<name>` becomes a character device 0:0 at
    /// `rel` (recorded, for debugfs, when rootless).
    fn overlay_whiteout(&mut self, ctx: &Ctx<'_>, rel: &Path, mtime: i64) -> Result<()> {
        let abs = self.ensure_parent(ctx, rel)?;
        self.clear(ctx, rel, &abs, false)?;
        if self.rootless {
            self.report.not_applied.devices += 1;
        } else {
            self.mknod(
                ctx,
                &abs,
                rustix::fs::FileType::CharacterDevice,
                0,
                rustix::fs::makedev(0, 0),
            )?;
        }
        let meta = Recorded {
            uid: 0,
            gid: 0,
            mode: 0,
            device: Some((b'c', 0, 0)),
            mtime,
        };
        self.record(rel, meta);
        self.mark_created(rel);
        Ok(())
    }

    /// Overlay mode: `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its
    /// directory (created when the layer has no entry for it).
    fn overlay_opaque(&mut self, ctx: &Ctx<'_>, dir: &Path) -> Result<()> {
        let abs = if dir.as_os_str().is_empty() {
            self.root.clone()
        } else {
            let abs = self.ensure_parent(ctx, dir)?;
            self.clear(ctx, dir, &abs, true)?;
            if !abs.is_dir() {
                std::fs::create_dir(&abs).map_err(ctx.io("creating directory", &abs))?;
                let meta = Recorded {
                    uid: 0,
                    gid: 0,
                    mode: 0o755,
                    device: None,
                    mtime: 0,
                };
                self.record(dir, meta);
                self.dirs.insert(
                    dir.to_path_buf(),
                    DirMeta {
                        mode: 0o755,
                        mtime: 0,
                    },
                );
            }
            self.known_dirs.insert(dir.to_path_buf());
            self.mark_created(dir);
            abs
        };
        let opaque = [("trusted.overlay.opaque".to_owned(), b"y".to_vec())];
        self.set_xattrs(ctx, &abs, &opaque)
    }

    /// Overlay mode: a hardlink to a file of a lower layer becomes a copy
    /// of that file, read from the merged tree `lower` (its parents checked
    /// like ours: never a symlink), with that file's owner, mode and mtime.
    fn copy_from_lower(
        &mut self,
        ctx: &Ctx<'_>,
        lower: &Path,
        target_rel: &Path,
        rel: &Path,
        abs: &Path,
    ) -> Result<()> {
        let missing = || {
            ctx.unsafe_entry(format!(
                "hardlink target {} is in no layer",
                target_rel.display()
            ))
        };
        let mut prefix = PathBuf::new();
        for component in target_rel.parent().unwrap_or(Path::new("")).components() {
            prefix.push(component);
            match std::fs::symlink_metadata(lower.join(&prefix)) {
                Ok(found) if found.is_dir() => {}
                _ => return Err(missing()),
            }
        }
        let source = lower.join(target_rel);
        let found = match std::fs::symlink_metadata(&source) {
            Ok(found) if found.is_file() => found,
            _ => return Err(missing()),
        };
        // The layers' word on the file (owners are only recorded when
        // rootless), else what the merged tree holds.
        let meta = self
            .lower_records
            .get(target_rel)
            .copied()
            .unwrap_or(Recorded {
                uid: u64::from(found.uid()),
                gid: u64::from(found.gid()),
                mode: found.mode() & 0o7777,
                device: None,
                mtime: found.mtime(),
            });
        self.clear(ctx, rel, abs, false)?;
        // The merged tree is ours: a file its owner may not read (mode
        // 0000, when not root) is given owner read there to be copied.
        let mut input = match File::open(&source) {
            Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
                let widened = Permissions::from_mode((found.mode() | 0o400) & 0o7777);
                std::fs::set_permissions(&source, widened)
                    .map_err(ctx.io("setting mode of", &source))?;
                File::open(&source)
            }
            opened => opened,
        }
        .map_err(ctx.io("reading", &source))?;
        let mut file = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(abs)
            .map_err(ctx.io("creating", abs))?;
        self.report.bytes +=
            std::io::copy(&mut input, &mut file).map_err(ctx.io("copying into", abs))?;
        if self.rootless {
            self.report.not_applied.ownership += u64::from(meta.uid != 0 || meta.gid != 0);
        } else {
            std::os::unix::fs::fchown(&file, Some(meta.uid as u32), Some(meta.gid as u32))
                .map_err(ctx.io("changing owner of", abs))?;
        }
        file.set_permissions(Permissions::from_mode(meta.mode))
            .map_err(ctx.io("setting mode of", abs))?;
        // The file's attributes: those the lower tree holds, and those the
        // host refused it (recorded).
        let mut xattrs = xattrs_of(&source).map_err(ctx.io("reading attributes of", &source))?;
        for (name, value) in self.lower_xattrs.get(target_rel).into_iter().flatten() {
            if !xattrs.iter().any(|(known, _)| known == name) {
                xattrs.push((name.clone(), value.clone()));
            }
        }
        self.set_xattrs(ctx, abs, &xattrs)?;
        file.set_times(times(meta.mtime))
            .map_err(ctx.io("setting times of", abs))?;
        self.record(rel, meta);
        self.mark_created(rel);
        Ok(())
    }

    fn mark_created(&mut self, rel: &Path) {
        self.created.insert(rel.to_path_buf());
        let mut path = Some(rel);
        while let Some(p) = path {
            if p.as_os_str().is_empty() || !self.touched.insert(p.to_path_buf()) {
                break;
            }
            path = p.parent();
        }
    }

    fn record(&mut self, rel: &Path, meta: Recorded) {
        self.report.records.insert(rel.to_path_buf(), meta);
    }

    /// Sets the owner (not when rootless: counted instead).
    fn own(&mut self, ctx: &Ctx<'_>, abs: &Path, uid: u64, gid: u64, symlink: bool) -> Result<()> {
        if self.rootless {
            self.report.not_applied.ownership += u64::from(uid != 0 || gid != 0);
            return Ok(());
        }
        let (uid, gid) = (Some(uid as u32), Some(gid as u32));
        if symlink {
            std::os::unix::fs::lchown(abs, uid, gid)
        } else {
            std::os::unix::fs::chown(abs, uid, gid)
        }
        .map_err(ctx.io("changing owner of", abs))
    }

    /// Owner, mode and times of a device node or fifo just made.
    fn set_node_metadata(
        &mut self,
        ctx: &Ctx<'_>,
        abs: &Path,
        (uid, gid): (u64, u64),
        mode: u32,
        mtime: i64,
    ) -> Result<()> {
        self.own(ctx, abs, uid, gid, false)?;
        std::fs::set_permissions(abs, Permissions::from_mode(mode))
            .map_err(ctx.io("setting mode of", abs))?;
        let time = filetime::FileTime::from_unix_time(mtime, 0);
        filetime::set_symlink_file_times(abs, time, time).map_err(ctx.io("setting times of", abs))
    }

    fn mknod(
        &mut self,
        ctx: &Ctx<'_>,
        abs: &Path,
        file_type: rustix::fs::FileType,
        mode: u32,
        dev: rustix::fs::Dev,
    ) -> Result<()> {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            abs,
            file_type,
            rustix::fs::Mode::from_raw_mode(mode & 0o777),
            dev,
        )
        .map_err(|errno| ctx.io("creating node", abs)(errno.into()))
    }

    /// Sets extended attributes (not following symlinks). Attributes the
    /// host refuses (unsupported, or not permitted rootless) are counted.
    fn set_xattrs(
        &mut self,
        ctx: &Ctx<'_>,
        abs: &Path,
        xattrs: &[(String, Vec<u8>)],
    ) -> Result<()> {
        for (name, value) in xattrs {
            match xattr::set(abs, name, value) {
                Ok(()) => {}
                Err(err) if self.rootless || err.raw_os_error() == Some(EOPNOTSUPP) => {
                    self.report.not_applied.xattrs += 1;
                    if let Ok(rel) = abs.strip_prefix(&self.root) {
                        self.report
                            .pending_xattrs
                            .entry(rel.to_path_buf())
                            .or_default()
                            .push((name.clone(), value.clone()));
                    }
                }
                Err(err) => return Err(ctx.io("setting extended attribute on", abs)(err)),
            }
        }
        Ok(())
    }
}

/// The extended attributes of `path` (not following a symlink; none where
/// the file system has none).
pub(crate) fn xattrs_of(path: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(err) if err.raw_os_error() == Some(EOPNOTSUPP) => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut xattrs = Vec::new();
    for name in names {
        if let Some(value) = xattr::get(path, &name)? {
            xattrs.push((name.to_string_lossy().into_owned(), value));
        }
    }
    Ok(xattrs)
}

/// `EOPNOTSUPP` on Linux: the file system has no extended attributes.
const EOPNOTSUPP: i32 = 95;

fn times(mtime: i64) -> FileTimes {
    let time = if mtime >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(mtime as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(mtime.unsigned_abs())
    };
    FileTimes::new().set_accessed(time).set_modified(time)
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>, ctx: &Ctx<'_>) -> Result<PathBuf> {
    let name = entry
        .link_name_bytes()
        .ok_or_else(|| ctx.unsafe_entry("link without a target"))?;
    Ok(PathBuf::from(OsStr::from_bytes(&name)))
}

/// What an entry's PAX records say beyond its header.
#[derive(Default)]
struct Pax {
    /// `SCHILY.xattr.*`: extended attributes.
    xattrs: Vec<(String, Vec<u8>)>,
    /// `uid`, `gid`.
    uid: Option<u64>,
    gid: Option<u64>,
    /// `mtime` (decimal seconds; the fraction is dropped).
    mtime: Option<i64>,
    /// `GNU.sparse.name`: the real name of a sparse file in PAX form.
    sparse_name: Option<Vec<u8>>,
    /// The other `GNU.sparse.*` records.
    sparse: SparseRecords,
}

/// The PAX records of an entry that rootfs applies.
fn pax_of<R: Read>(entry: &mut tar::Entry<'_, R>, ctx: &Ctx<'_>) -> Result<Pax> {
    let mut pax = Pax::default();
    let bad = |what: &str| ctx.unsafe_entry(format!("bad PAX header: {what}"));
    let (mut sparse_major, mut sparse_minor) = (None, None);
    let Some(extensions) = entry.pax_extensions().map_err(|e| bad(&e.to_string()))? else {
        return Ok(pax);
    };
    for extension in extensions {
        let extension = extension.map_err(|e| bad(&e.to_string()))?;
        let Ok(key) = extension.key() else {
            continue;
        };
        let value = || {
            extension
                .value()
                .map_err(|_| bad(&format!("{key} is not UTF-8")))
        };
        let number = |text: &str| {
            text.trim()
                .parse::<u64>()
                .map_err(|_| bad(&format!("{key} {text:?} is not a number")))
        };
        match key {
            "GNU.sparse.name" => pax.sparse_name = Some(extension.value_bytes().to_vec()),
            "GNU.sparse.major" => sparse_major = Some(value()?.to_owned()),
            "GNU.sparse.minor" => sparse_minor = Some(value()?.to_owned()),
            "GNU.sparse.realsize" | "GNU.sparse.size" => {
                pax.sparse.real_size = Some(number(value()?)?);
            }
            "GNU.sparse.map" => {
                for part in value()?.split(',').filter(|p| !p.is_empty()) {
                    pax.sparse.map.push(number(part)?);
                }
            }
            "GNU.sparse.offset" | "GNU.sparse.numbytes" => {
                pax.sparse.map.push(number(value()?)?);
            }
            "uid" | "gid" => {
                let id = value()?
                    .parse::<u32>()
                    .map_err(|_| bad(&format!("{key} is not a 32-bit number")))?;
                let id = u64::from(id);
                if key == "uid" {
                    pax.uid = Some(id);
                } else {
                    pax.gid = Some(id);
                }
            }
            "mtime" => {
                let text = value()?;
                let seconds = text.split('.').next().unwrap_or_default();
                pax.mtime = Some(
                    seconds
                        .parse::<i64>()
                        .map_err(|_| bad(&format!("mtime {text:?} is not a time")))?,
                );
            }
            _ => {
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    pax.xattrs
                        .push((name.to_owned(), extension.value_bytes().to_vec()));
                }
            }
        }
    }
    if sparse_major.is_some() || sparse_minor.is_some() {
        let unknown = || "?".to_owned();
        pax.sparse.version = Some((
            sparse_major.unwrap_or_else(unknown),
            sparse_minor.unwrap_or_else(unknown),
        ));
    }
    Ok(pax)
}

/// The path of an entry relative to the target: `./` and empty components
/// dropped; absolute paths and `..` refused. Empty for the root itself.
pub(crate) fn clean_path(raw: &[u8]) -> std::result::Result<PathBuf, String> {
    if raw.starts_with(b"/") {
        return Err("absolute path".to_owned());
    }
    let mut clean = PathBuf::new();
    for component in Path::new(OsStr::from_bytes(raw)).components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("path has a `..` component".to_owned()),
            Component::RootDir | Component::Prefix(_) => {
                return Err("absolute path".to_owned());
            }
        }
    }
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_refuses_escapes_and_drops_dots() {
        assert_eq!(clean_path(b"./bin/sh").unwrap(), Path::new("bin/sh"));
        assert_eq!(clean_path(b"bin//sh/").unwrap(), Path::new("bin/sh"));
        assert_eq!(clean_path(b"./").unwrap(), Path::new(""));
        assert!(clean_path(b"/etc/passwd").is_err());
        assert!(clean_path(b"a/../../x").is_err());
        assert!(clean_path(b"..").is_err());
    }
}
