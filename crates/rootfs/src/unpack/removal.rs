//! Removing what is at a path, to make room for an entry or for a
//! whiteout, with everything the applier recorded of it (records, refused
//! attributes, directories to finish, directories known to be real).

use super::applier::Applier;
use super::entry::Ctx;
use crate::error::Result;
use std::path::{Path, PathBuf};

impl Applier<'_> {
    /// Makes room at `abs` for a new entry: removes what is there, except
    /// a directory when `keep_dir`.
    pub(super) fn clear(
        &mut self,
        ctx: &Ctx<'_>,
        rel: &Path,
        abs: &Path,
        keep_dir: bool,
    ) -> Result<()> {
        match std::fs::symlink_metadata(abs) {
            Ok(meta) if meta.is_dir() && keep_dir => Ok(()),
            Ok(_) => self.remove(ctx, rel, abs),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(ctx.io("inspecting", abs)(err)),
        }
    }

    /// Removes `rel` (a directory with all it holds; a symlink itself).
    pub(super) fn remove(&mut self, ctx: &Ctx<'_>, rel: &Path, abs: &Path) -> Result<()> {
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
}
