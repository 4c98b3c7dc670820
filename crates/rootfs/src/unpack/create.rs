//! Making what an entry holds, once its parent is in place: a directory,
//! a regular file (plain, or sparse in PAX or old GNU form), a symlink
//! (verbatim), a hardlink (confined like a path), a device node or a fifo.

use super::Recorded;
use super::applier::{Applier, DirMeta, Layering};
use super::confine::clean_path;
use super::entry::{Ctx, EntryInfo, Kind};
use super::metadata::times;
use crate::error::Result;
use crate::tar_sparse::{SparseError, SparseLayout, write_sparse, write_with_holes};
use std::fs::{File, Permissions};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// How a regular file's content is laid out in its entry.
enum Content {
    /// A sparse file in PAX form: written chunks, placed by a layout.
    Sparse(SparseLayout),
    /// An old GNU sparse entry, expanded by `tar` with its holes as zeros.
    GnuSparse,
    /// Every byte in order.
    Plain,
}

impl Applier<'_> {
    /// Makes the entry `rel` (at `abs`, its parent in place) and notes it
    /// as written by this layer.
    pub(super) fn create<R: Read>(
        &mut self,
        ctx: &Ctx<'_>,
        rel: &Path,
        abs: &Path,
        info: &EntryInfo,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<()> {
        match &info.kind {
            Kind::Dir => self.make_dir(ctx, rel, abs, info)?,
            Kind::File => self.write_file(ctx, rel, abs, info, entry)?,
            Kind::Symlink(target) => self.make_symlink(ctx, rel, abs, target, info)?,
            // Notes what it made itself (a link to itself makes nothing).
            Kind::Hardlink(target) => return self.make_hardlink(ctx, rel, abs, target),
            Kind::Device(tag, major, minor) => {
                self.make_device(ctx, rel, abs, (*tag, *major, *minor), info)?;
            }
            Kind::Fifo => self.make_fifo(ctx, rel, abs, info)?,
        }
        self.mark_created(rel);
        Ok(())
    }

    /// A directory: one already there is kept (its content too); its mode
    /// and mtime are set at the end.
    fn make_dir(&mut self, ctx: &Ctx<'_>, rel: &Path, abs: &Path, info: &EntryInfo) -> Result<()> {
        self.clear(ctx, rel, abs, true)?;
        if !abs.is_dir() {
            std::fs::create_dir(abs).map_err(ctx.io("creating directory", abs))?;
            // Attributes add to those the layers below gave it.
            self.inherit_lower_xattrs(ctx, rel, abs)?;
        }
        self.known_dirs.insert(rel.to_path_buf());
        self.own(ctx, abs, info.uid, info.gid, false)?;
        self.set_xattrs(ctx, abs, &info.xattrs)?;
        let (mode, mtime) = (info.mode, info.mtime);
        self.dirs.insert(rel.to_path_buf(), DirMeta { mode, mtime });
        self.record(rel, info.recorded());
        Ok(())
    }

    /// A regular file, within [`super::UnpackOptions::max_bytes`], then
    /// its owner, mode, attributes and times.
    fn write_file<R: Read>(
        &mut self,
        ctx: &Ctx<'_>,
        rel: &Path,
        abs: &Path,
        info: &EntryInfo,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<()> {
        let content = if info.sparse.is_sparse() {
            let layout = info.sparse.layout();
            Content::Sparse(layout.map_err(|reason| ctx.unsafe_entry(reason))?)
        } else if info.gnu_sparse {
            Content::GnuSparse
        } else {
            Content::Plain
        };
        let size = match &content {
            Content::Sparse(layout) => layout.real_size,
            Content::GnuSparse | Content::Plain => entry.size(),
        };
        if let Some(limit) = self.options.max_bytes
            && self.report.bytes.saturating_add(size) > limit
        {
            return Err(ctx.limit_exceeded("bytes", limit));
        }
        let mut file = self.create_file(ctx, rel, abs)?;
        let written = match &content {
            Content::Sparse(layout) => {
                write_sparse(layout, entry, &mut file).map_err(|err| match err {
                    SparseError::Map(reason) => ctx.unsafe_entry(reason),
                    SparseError::Io(source) => ctx.layer_read(source),
                })?
            }
            Content::GnuSparse => {
                write_with_holes(entry, &mut file, size).map_err(|e| ctx.layer_read(e))?
            }
            Content::Plain => std::io::copy(&mut entry.by_ref().take(size), &mut file)
                .map_err(|e| ctx.layer_read(e))?,
        };
        self.report.bytes += written;
        self.set_file_metadata(ctx, &file, abs, info)?;
        self.record(rel, info.recorded());
        Ok(())
    }

    /// Owner (through the open file), mode, attributes and times of a
    /// regular file just written.
    fn set_file_metadata(
        &mut self,
        ctx: &Ctx<'_>,
        file: &File,
        abs: &Path,
        info: &EntryInfo,
    ) -> Result<()> {
        let (uid, gid) = (info.uid, info.gid);
        if !self.rootless {
            std::os::unix::fs::fchown(file, Some(uid as u32), Some(gid as u32))
                .map_err(ctx.io("changing owner of", abs))?;
        } else {
            self.report.not_applied.ownership += u64::from(uid != 0 || gid != 0);
        }
        file.set_permissions(Permissions::from_mode(info.mode))
            .map_err(ctx.io("setting mode of", abs))?;
        self.set_xattrs(ctx, abs, &info.xattrs)?;
        file.set_times(times(info.mtime))
            .map_err(ctx.io("setting times of", abs))
    }

    /// A symlink, its target written as given (never resolved here).
    fn make_symlink(
        &mut self,
        ctx: &Ctx<'_>,
        rel: &Path,
        abs: &Path,
        target: &Path,
        info: &EntryInfo,
    ) -> Result<()> {
        self.clear(ctx, rel, abs, false)?;
        std::os::unix::fs::symlink(target, abs).map_err(ctx.io("creating symlink", abs))?;
        self.own(ctx, abs, info.uid, info.gid, true)?;
        let time = filetime::FileTime::from_unix_time(info.mtime, 0);
        filetime::set_symlink_file_times(abs, time, time)
            .map_err(ctx.io("setting times of", abs))?;
        let recorded = Recorded {
            mode: 0o777,
            ..info.recorded()
        };
        self.record(rel, recorded);
        Ok(())
    }

    /// A hardlink to `target`, a path of the target confined like any
    /// entry's (in overlay mode, a copy when a lower layer holds it).
    fn make_hardlink(
        &mut self,
        ctx: &Ctx<'_>,
        rel: &Path,
        abs: &Path,
        target: &Path,
    ) -> Result<()> {
        let target_rel = clean_path(target.as_os_str().as_bytes())
            .map_err(|reason| ctx.unsafe_entry(format!("hardlink target: {reason}")))?;
        if target_rel.as_os_str().is_empty() {
            return Err(ctx.unsafe_entry("hardlink to the root directory"));
        }
        let here = self
            .check_parent(ctx, &target_rel)?
            .filter(|p| std::fs::symlink_metadata(p).is_ok());
        if here.is_none()
            && let Layering::Overlay(lower) = &self.layering
        {
            // A hardlink shares its target's inode: the header's owner,
            // mode and mtime are not the file's. A lower symlink, fifo or
            // device is made again; a regular file copied.
            if let Some(info) = lower.node(&target_rel) {
                match &info.kind {
                    Kind::Symlink(link) => self.make_symlink(ctx, rel, abs, link, &info)?,
                    Kind::Device(tag, major, minor) => {
                        self.make_device(ctx, rel, abs, (*tag, *major, *minor), &info)?;
                    }
                    _ => self.make_fifo(ctx, rel, abs, &info)?,
                }
                self.mark_created(rel);
                return Ok(());
            }
            let file = lower.find(ctx, &target_rel)?;
            return self.copy_from_lower(ctx, file, rel, abs);
        }
        let missing =
            || ctx.unsafe_entry(format!("hardlink target {} is missing", target.display()));
        let target_abs = here.ok_or_else(missing)?;
        let meta = std::fs::symlink_metadata(&target_abs).map_err(|_| missing())?;
        if meta.is_dir() {
            return Err(ctx.unsafe_entry("hardlink to a directory"));
        }
        if target_rel == rel {
            return Ok(());
        }
        self.clear(ctx, rel, abs, false)?;
        std::fs::hard_link(&target_abs, abs).map_err(ctx.io("linking", abs))?;
        let recorded = self.report.records.get(&target_rel).copied();
        if let Some(recorded) = recorded {
            self.report.records.insert(rel.to_path_buf(), recorded);
        }
        self.mark_created(rel);
        Ok(())
    }

    /// A character or block device (`tag` `b'c'` or `b'b'`): made as
    /// root, counted when rootless; recorded either way.
    fn make_device(
        &mut self,
        ctx: &Ctx<'_>,
        rel: &Path,
        abs: &Path,
        (tag, major, minor): (u8, u32, u32),
        info: &EntryInfo,
    ) -> Result<()> {
        self.clear(ctx, rel, abs, false)?;
        if self.rootless {
            self.report.not_applied.devices += 1;
        } else {
            let file_type = if tag == b'c' {
                rustix::fs::FileType::CharacterDevice
            } else {
                rustix::fs::FileType::BlockDevice
            };
            let dev = rustix::fs::makedev(major, minor);
            self.mknod(ctx, abs, file_type, info.mode, dev)?;
            self.set_node_metadata(ctx, abs, (info.uid, info.gid), info.mode, info.mtime)?;
        }
        let recorded = Recorded {
            device: Some((tag, major, minor)),
            ..info.recorded()
        };
        self.record(rel, recorded);
        Ok(())
    }

    /// A fifo (no privilege needed: made rootless too).
    fn make_fifo(&mut self, ctx: &Ctx<'_>, rel: &Path, abs: &Path, info: &EntryInfo) -> Result<()> {
        self.clear(ctx, rel, abs, false)?;
        self.mknod(ctx, abs, rustix::fs::FileType::Fifo, info.mode, 0)?;
        self.set_node_metadata(ctx, abs, (info.uid, info.gid), info.mode, info.mtime)?;
        self.record(rel, info.recorded());
        Ok(())
    }
}
