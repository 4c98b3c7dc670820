//! Path confinement: no entry is written, linked or removed outside the
//! target. An entry's path is cleaned (`..` and absolute paths refused),
//! every parent is checked to be a real directory (a symlink is refused,
//! never followed), and a file is created with `O_CREAT|O_EXCL`, so its
//! last component is never followed either.

use super::applier::Applier;
use super::entry::Ctx;
use crate::error::Result;
use std::ffi::OsStr;
use std::fs::{File, Permissions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

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

impl Applier<'_> {
    /// Resolves the parent of `rel` below the root, creating missing
    /// directories, refusing any component that is a symlink or no
    /// directory. Returns the absolute path of `rel`.
    pub(super) fn ensure_parent(&mut self, ctx: &Ctx<'_>, rel: &Path) -> Result<PathBuf> {
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
                    // A parent no layer declares (or only a lower one).
                    self.add_implicit_dir(&prefix);
                    self.inherit_lower_dir(ctx, &prefix, &abs)?;
                }
                Err(err) => return Err(ctx.io("inspecting", &abs)(err)),
            }
            self.known_dirs.insert(prefix.clone());
        }
        Ok(self.root.join(rel))
    }

    /// Like [`Applier::ensure_parent`] but creating nothing: `None` when a
    /// parent is missing.
    pub(super) fn check_parent(&self, ctx: &Ctx<'_>, rel: &Path) -> Result<Option<PathBuf>> {
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
    pub(super) fn create_file(&mut self, ctx: &Ctx<'_>, rel: &Path, abs: &Path) -> Result<File> {
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
}

#[cfg(test)]
mod tests {
    use super::clean_path;
    use std::path::Path;

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
