//! The [`Applier`]: applies layers, one after another, into one tree, and
//! keeps what the steps of applying an entry share (the report, the
//! directories to finish, the paths this layer wrote).

use super::confine::clean_path;
use super::entry::{Ctx, EntryInfo, Kind, read_entry};
use super::whiteout::whiteout_of;
use super::{Recorded, UnpackOptions, UnpackReport};
use crate::error::{Error, Result};
use ociref::Digest;
use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Metadata applied to a directory once all layers are in.
#[derive(Clone, Copy, Debug)]
pub(super) struct DirMeta {
    pub(super) mode: u32,
    pub(super) mtime: i64,
}

/// How the layers applied into one tree stand to each other.
pub(super) enum Layering {
    /// Every layer into the same tree (an unpack, a flattened build):
    /// whiteouts remove what lower layers left.
    Merged,
    /// One layer per tree (per-layer images), over the layers below:
    /// whiteouts become overlayfs whiteouts instead of removals, and a
    /// hardlink to a file of a lower layer becomes a copy of it.
    Overlay(Lower),
}

/// The layers below an overlay tree.
pub(super) struct Lower {
    /// Their merged tree, where hardlink targets of lower layers are
    /// copied from.
    pub(super) tree: PathBuf,
    /// What they say about each path of `tree` (owners, modes and times
    /// of files a hardlink copies).
    pub(super) records: BTreeMap<PathBuf, Recorded>,
    /// Extended attributes of `tree`'s files the host refused (rootless),
    /// which a copy must carry all the same.
    pub(super) xattrs: BTreeMap<PathBuf, Vec<(String, Vec<u8>)>>,
    /// The modes and times `tree`'s directories get once all its layers
    /// are in (not yet set on them).
    pub(super) dirs: BTreeMap<PathBuf, DirMeta>,
}

/// Applies entries, layer after layer, into one target.
pub(crate) struct Applier<'o> {
    pub(super) root: PathBuf,
    pub(super) options: &'o UnpackOptions,
    pub(super) rootless: bool,
    pub(crate) report: UnpackReport,
    /// Directories whose mode and mtime are set at the end, children first.
    pub(super) dirs: BTreeMap<PathBuf, DirMeta>,
    /// Paths checked to be real directories (no symlink), relative.
    pub(super) known_dirs: HashSet<PathBuf>,
    /// Paths the current layer wrote.
    pub(super) created: HashSet<PathBuf>,
    /// Those paths and their ancestors.
    pub(super) touched: HashSet<PathBuf>,
    pub(super) layering: Layering,
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
            layering: Layering::Merged,
        }
    }

    /// Overlay mode: whiteouts are written as overlayfs whiteouts (a
    /// character device 0:0, `trusted.overlay.opaque=y` on an opaque
    /// directory), and a hardlink to a file of a lower layer becomes a copy
    /// of it, taken from `lower` (the merged tree of the layers below),
    /// with the owner, mode, mtime and extended attributes `below` (the
    /// applier of the layers below into `lower`) gives that file; a
    /// directory this layer writes below without declaring it takes the
    /// lower's metadata too (an overlay shows the upper directory's).
    pub(crate) fn overlay(mut self, lower: &Path, below: &Applier<'_>) -> Applier<'o> {
        self.layering = Layering::Overlay(Lower {
            tree: lower.to_path_buf(),
            records: below.report.records.clone(),
            xattrs: below.report.pending_xattrs.clone(),
            dirs: below.dirs.clone(),
        });
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
        // Read to the end (what follows the end-of-archive blocks): a
        // layer read while it downloads is verified only at its end.
        std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(read_error)?;
        Ok(())
    }

    /// Applies one entry: counted, read (header, then PAX records), its
    /// path confined to the target, then applied as a whiteout, as the
    /// root directory's metadata, or as what it creates.
    fn apply_entry<R: Read>(&mut self, layer: &Digest, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let ctx = Ctx {
            layer,
            entry: &shown,
        };
        self.count_entry(&ctx)?;
        let Some(info) = read_entry(&mut entry, raw_path, &ctx)? else {
            // A header that names no file.
            return Ok(());
        };
        let shown = String::from_utf8_lossy(&info.path).into_owned();
        let ctx = Ctx {
            layer,
            entry: &shown,
        };
        let rel = clean_path(&info.path).map_err(|reason| ctx.unsafe_entry(reason))?;
        if let Some(whiteout) = whiteout_of(&rel) {
            return self.apply_whiteout(&ctx, &rel, whiteout, info.mtime);
        }
        if rel.as_os_str().is_empty() {
            return self.apply_root(&ctx, &info);
        }
        let abs = self.ensure_parent(&ctx, &rel)?;
        self.create(&ctx, &rel, &abs, &info, &mut entry)
    }

    /// Counts an entry, against [`UnpackOptions::max_entries`].
    fn count_entry(&mut self, ctx: &Ctx<'_>) -> Result<()> {
        self.report.entries += 1;
        match self.options.max_entries {
            Some(limit) if self.report.entries > limit => Err(ctx.limit_exceeded("entries", limit)),
            _ => Ok(()),
        }
    }

    /// The root directory itself (`./`): its metadata only.
    fn apply_root(&mut self, ctx: &Ctx<'_>, info: &EntryInfo) -> Result<()> {
        if !matches!(info.kind, Kind::Dir) {
            return Err(ctx.unsafe_entry("the root can only be a directory"));
        }
        let (mode, mtime) = (info.mode, info.mtime);
        self.dirs.insert(PathBuf::new(), DirMeta { mode, mtime });
        self.own(ctx, &self.root.clone(), info.uid, info.gid, false)?;
        self.record(Path::new(""), info.recorded());
        Ok(())
    }

    /// Notes `rel` as written by the current layer (what a whiteout in it
    /// leaves, and what an opaque marker keeps).
    pub(super) fn mark_created(&mut self, rel: &Path) {
        self.created.insert(rel.to_path_buf());
        let mut path = Some(rel);
        while let Some(p) = path {
            if p.as_os_str().is_empty() || !self.touched.insert(p.to_path_buf()) {
                break;
            }
            path = p.parent();
        }
    }

    pub(super) fn record(&mut self, rel: &Path, meta: Recorded) {
        self.report.records.insert(rel.to_path_buf(), meta);
    }

    /// A directory no entry declares (a missing parent, an opaque marker's
    /// directory): recorded 0:0, mode 0755, mtime 0, so the result never
    /// depends on when it was unpacked.
    pub(super) fn add_implicit_dir(&mut self, rel: &Path) {
        self.record(
            rel,
            Recorded {
                uid: 0,
                gid: 0,
                mode: 0o755,
                device: None,
                mtime: 0,
            },
        );
        self.dirs.insert(
            rel.to_path_buf(),
            DirMeta {
                mode: 0o755,
                mtime: 0,
            },
        );
    }
}
