//! Overlay mode: a hardlink to a file of a lower layer becomes a copy of
//! that file, read from the merged tree of the layers below (its parents
//! checked like ours: never a symlink), with that file's owner, mode,
//! mtime and extended attributes.

use super::Recorded;
use super::applier::{Applier, DirMeta, Layering, Lower};
use super::entry::{Ctx, EntryInfo, Kind};
use super::metadata::{times, xattrs_of};
use crate::error::Result;
use std::fs::{File, Metadata, Permissions};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A regular file of the lower tree that a hardlink names.
pub(super) struct LowerFile {
    /// Its path in the lower tree.
    source: PathBuf,
    /// Its metadata there (not following a symlink).
    found: Metadata,
    /// The owner, mode and mtime the copy gets.
    meta: Recorded,
    /// Extended attributes the host refused it, which the copy carries.
    refused_xattrs: Vec<(String, Vec<u8>)>,
}

impl Lower {
    /// The node `target_rel` of the lower tree when it is a symlink, a fifo
    /// or a device node (one a rootless unpack only recorded too), as an
    /// entry that makes it again with the layers' owner, mode and mtime;
    /// `None` for anything else (a regular file is copied by
    /// [`Lower::find`]).
    pub(super) fn node(&self, target_rel: &Path) -> Option<EntryInfo> {
        let parents_are_dirs = target_rel
            .ancestors()
            .skip(1)
            .take_while(|p| !p.as_os_str().is_empty())
            .all(|p| std::fs::symlink_metadata(self.tree.join(p)).is_ok_and(|m| m.is_dir()));
        if !parents_are_dirs {
            return None;
        }
        let source = self.tree.join(target_rel);
        let recorded = self.records.get(target_rel).copied();
        let found = std::fs::symlink_metadata(&source).ok();
        let file_type = found.as_ref().map(Metadata::file_type);
        let kind = match (recorded.and_then(|r| r.device), file_type) {
            (Some((tag, major, minor)), _) => Kind::Device(tag, major, minor),
            (None, Some(t)) if t.is_symlink() => Kind::Symlink(std::fs::read_link(&source).ok()?),
            (None, Some(t)) if t.is_fifo() => Kind::Fifo,
            (None, Some(t)) if t.is_char_device() || t.is_block_device() => {
                let rdev = found.as_ref().map_or(0, MetadataExt::rdev);
                let tag = if t.is_char_device() { b'c' } else { b'b' };
                Kind::Device(tag, rustix::fs::major(rdev), rustix::fs::minor(rdev))
            }
            _ => return None,
        };
        let meta = recorded.or_else(|| {
            found.as_ref().map(|m| Recorded {
                uid: u64::from(m.uid()),
                gid: u64::from(m.gid()),
                mode: m.mode() & 0o7777,
                device: None,
                mtime: m.mtime(),
            })
        })?;
        Some(EntryInfo {
            path: target_rel.as_os_str().as_encoded_bytes().to_vec(),
            kind,
            mode: meta.mode,
            uid: meta.uid,
            gid: meta.gid,
            mtime: meta.mtime,
            xattrs: Vec::new(),
            sparse: Default::default(),
            gnu_sparse: false,
        })
    }

    /// The regular file `target_rel` of the lower tree, its parents real
    /// directories; refused as in no layer otherwise.
    pub(super) fn find(&self, ctx: &Ctx<'_>, target_rel: &Path) -> Result<LowerFile> {
        let missing = || {
            ctx.unsafe_entry(format!(
                "hardlink target {} is in no layer",
                target_rel.display()
            ))
        };
        let mut prefix = PathBuf::new();
        for component in target_rel.parent().unwrap_or(Path::new("")).components() {
            prefix.push(component);
            match std::fs::symlink_metadata(self.tree.join(&prefix)) {
                Ok(found) if found.is_dir() => {}
                _ => return Err(missing()),
            }
        }
        let source = self.tree.join(target_rel);
        let found = match std::fs::symlink_metadata(&source) {
            Ok(found) if found.is_file() => found,
            _ => return Err(missing()),
        };
        // The layers' word on the file (owners are only recorded when
        // rootless), else what the merged tree holds.
        let meta = self.records.get(target_rel).copied().unwrap_or(Recorded {
            uid: u64::from(found.uid()),
            gid: u64::from(found.gid()),
            mode: found.mode() & 0o7777,
            device: None,
            mtime: found.mtime(),
        });
        let refused_xattrs = self.xattrs.get(target_rel).cloned().unwrap_or_default();
        Ok(LowerFile {
            source,
            found,
            meta,
            refused_xattrs,
        })
    }
}

impl Applier<'_> {
    /// Copies `lower` (a file of the lower tree) to `rel`, at `abs`.
    pub(super) fn copy_from_lower(
        &mut self,
        ctx: &Ctx<'_>,
        lower: LowerFile,
        rel: &Path,
        abs: &Path,
    ) -> Result<()> {
        let LowerFile {
            source,
            found,
            meta,
            refused_xattrs,
        } = lower;
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
        for (name, value) in refused_xattrs {
            if !xattrs.iter().any(|(known, _)| *known == name) {
                xattrs.push((name, value));
            }
        }
        self.set_xattrs(ctx, abs, &xattrs)?;
        file.set_times(times(meta.mtime))
            .map_err(ctx.io("setting times of", abs))?;
        self.record(rel, meta);
        self.mark_created(rel);
        Ok(())
    }
}

impl Applier<'_> {
    /// Overlay mode: the layers below, and what their tree holds at `rel`,
    /// when that is a directory.
    fn lower_dir(&self, rel: &Path) -> Option<(&Lower, Metadata)> {
        let Layering::Overlay(lower) = &self.layering else {
            return None;
        };
        let found = std::fs::symlink_metadata(lower.tree.join(rel)).ok()?;
        found.is_dir().then_some((lower, found))
    }

    /// Overlay mode: the directory `rel` (at `abs`), just made because
    /// this layer writes below it without declaring it, takes the owner,
    /// mode, mtime and extended attributes the layers below give it, when
    /// they have it: an overlay shows the upper directory's, and the unpack
    /// keeps the lower one's.
    pub(super) fn inherit_lower_dir(
        &mut self,
        ctx: &Ctx<'_>,
        rel: &Path,
        abs: &Path,
    ) -> Result<()> {
        let Some((lower, found)) = self.lower_dir(rel) else {
            return Ok(());
        };
        let recorded = lower.records.get(rel).copied();
        let (uid, gid) = recorded.map_or((u64::from(found.uid()), u64::from(found.gid())), |r| {
            (r.uid, r.gid)
        });
        let (mode, mtime) = match lower.dirs.get(rel) {
            Some(meta) => (meta.mode, meta.mtime),
            None => (found.mode() & 0o7777, found.mtime()),
        };
        self.own(ctx, abs, uid, gid, false)?;
        self.inherit_lower_xattrs(ctx, rel, abs)?;
        self.dirs.insert(rel.to_path_buf(), DirMeta { mode, mtime });
        self.record(
            rel,
            Recorded {
                uid,
                gid,
                mode,
                device: None,
                mtime,
            },
        );
        Ok(())
    }

    /// Overlay mode: the directory `rel` (at `abs`), just made in this
    /// layer's tree, gets the extended attributes the layers below gave
    /// it, when they have it (a declared directory's own are set after,
    /// over them, as on the unpack's existing directory).
    pub(super) fn inherit_lower_xattrs(
        &mut self,
        ctx: &Ctx<'_>,
        rel: &Path,
        abs: &Path,
    ) -> Result<()> {
        let Some((lower, _)) = self.lower_dir(rel) else {
            return Ok(());
        };
        let source = lower.tree.join(rel);
        let mut xattrs = xattrs_of(&source).map_err(ctx.io("reading attributes of", &source))?;
        xattrs.extend(lower.xattrs.get(rel).cloned().unwrap_or_default());
        self.set_xattrs(ctx, abs, &xattrs)
    }
}
