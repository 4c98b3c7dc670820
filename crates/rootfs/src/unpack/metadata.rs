//! Metadata set on the host: owners (counted instead when rootless),
//! modes and times, device nodes and fifos (`mknod`), extended attributes
//! (counted, and kept for an ext4 build, where the host refuses them), and
//! directories' modes and times once all layers are in.

use super::applier::Applier;
use super::entry::Ctx;
use crate::error::{Result, io};
use std::fs::{FileTimes, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

impl Applier<'_> {
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

    /// Sets the owner (not when rootless: counted instead).
    pub(super) fn own(
        &mut self,
        ctx: &Ctx<'_>,
        abs: &Path,
        uid: u64,
        gid: u64,
        symlink: bool,
    ) -> Result<()> {
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
    pub(super) fn set_node_metadata(
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

    pub(super) fn mknod(
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
    pub(super) fn set_xattrs(
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

/// Access and modification times both at `mtime` (seconds since the
/// epoch, negative before it).
pub(super) fn times(mtime: i64) -> FileTimes {
    let time = if mtime >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(mtime as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(mtime.unsigned_abs())
    };
    FileTimes::new().set_accessed(time).set_modified(time)
}
