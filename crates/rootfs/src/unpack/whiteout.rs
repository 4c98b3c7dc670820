//! Whiteouts and opaque directories, in both forms: removals in a merged
//! tree (`.wh.<name>` removes `<name>`, `.wh..wh..opq` empties its
//! directory of what lower layers left), or overlayfs markers in a tree
//! of its own (a character device 0:0, `trusted.overlay.opaque=y`).

use super::Recorded;
use super::applier::{Applier, Layering};
use super::entry::Ctx;
use crate::error::Result;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The name an entry at `rel` whites out (`.wh.<name>`, or `.wh..opq`
/// for the opaque marker), if it is a whiteout.
pub(crate) fn whiteout_of(rel: &Path) -> Option<&[u8]> {
    let name = rel.file_name().map(OsStr::as_bytes).unwrap_or_default();
    name.strip_prefix(b".wh.")
}

impl Applier<'_> {
    /// Applies the whiteout entry `rel`, whose name is `.wh.` + `whiteout`
    /// (`mtime` is that of an overlayfs whiteout).
    pub(super) fn apply_whiteout(
        &mut self,
        ctx: &Ctx<'_>,
        rel: &Path,
        whiteout: &[u8],
        mtime: i64,
    ) -> Result<()> {
        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        self.report.whiteouts += 1;
        if whiteout.is_empty() || whiteout == b"." || whiteout == b".." {
            return Err(ctx.unsafe_entry("whiteout of `.`, `..` or nothing"));
        }
        let opaque = whiteout == b".wh..opq";
        match (&self.layering, opaque) {
            (Layering::Overlay(_), true) => self.overlay_opaque(ctx, &parent),
            (Layering::Overlay(_), false) => {
                self.overlay_whiteout(ctx, &parent.join(OsStr::from_bytes(whiteout)), mtime)
            }
            (Layering::Merged, true) => self.opaque(ctx, &parent),
            (Layering::Merged, false) => {
                self.whiteout(ctx, &parent.join(OsStr::from_bytes(whiteout)))
            }
        }
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
        // What this layer wrote before the whiteout stays (as unpacked);
        // below a directory no layer has, nothing is hidden.
        if self.created.contains(rel) || !self.parent_in_view(ctx, rel)? {
            return Ok(());
        }
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

    /// Whether every parent of `rel` is a directory of this layer's tree or
    /// of the layers below it.
    fn parent_in_view(&self, ctx: &Ctx<'_>, rel: &Path) -> Result<bool> {
        if self.check_parent(ctx, rel)?.is_some() {
            return Ok(true);
        }
        let Layering::Overlay(lower) = &self.layering else {
            return Ok(false);
        };
        Ok(rel
            .ancestors()
            .skip(1)
            .take_while(|p| !p.as_os_str().is_empty())
            .all(|p| std::fs::symlink_metadata(lower.tree.join(p)).is_ok_and(|m| m.is_dir())))
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
                self.add_implicit_dir(dir);
                self.inherit_lower_dir(ctx, dir, &abs)?;
            }
            self.known_dirs.insert(dir.to_path_buf());
            self.mark_created(dir);
            abs
        };
        let opaque = [("trusted.overlay.opaque".to_owned(), b"y".to_vec())];
        self.set_xattrs(ctx, &abs, &opaque)
    }
}
