//! Files the caller names, replaced atomically: `build`'s copy of the
//! image ([`crate::BuildOptions::output`]) and `export_tar_to`'s tar.
//!
//! The copy is written to a temp file beside the output
//! (`.<name>.tmp-p<pid>-<n>`, same directory, so same file system),
//! fsynced, renamed over the output, and the directory fsynced: the output
//! holds the old image or the new one, never part of one, also when the
//! build is killed or the disk fills up. A copy that fails removes its
//! temp file. A killed build cannot: its temp file stays locked (`flock`)
//! by no one, and the next build to the same output removes it (see
//! [`crate::leftovers`]). Where `copy_file_range` shares extents
//! (reflinks on Btrfs or XFS), it does so into the temp file: the
//! guarantees are the same.

use crate::error::{Error, Result, io};
use crate::leftovers;
use crate::sparse_copy::copy_sparse;
use ocistore::Store;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where a built image is for its caller: copied to `output` when one is
/// asked for, else the cached file itself.
pub(crate) fn deliver(store: &Store, cached: PathBuf, output: Option<&Path>) -> Result<PathBuf> {
    match output {
        Some(output) => {
            copy_to_output(store, &cached, output)?;
            Ok(output.to_path_buf())
        }
        None => Ok(cached),
    }
}

/// Copies the image `from` to `output` atomically (see the module docs).
pub(crate) fn copy_to_output(store: &Store, from: &Path, output: &Path) -> Result<()> {
    write_output(store, output, |file, temp| {
        let input = crate::safe::open_cached(store, from)?;
        copy_sparse(&input, from, file, temp)
    })
}

/// Writes `output` atomically (see the module docs) with `write`, given
/// the temp file and its path; what `write` reports as an error about the
/// temp file names `output`.
pub(crate) fn write_output(
    store: &Store,
    output: &Path,
    write: impl FnOnce(&File, &Path) -> Result<()>,
) -> Result<()> {
    write_output_with(store, output, write, || Ok(()))
}

/// [`write_output`], with `before_rename` run once the temp file is
/// written and synced: its error leaves the output as it was.
pub(crate) fn write_output_with(
    store: &Store,
    output: &Path,
    write: impl FnOnce(&File, &Path) -> Result<()>,
    before_rename: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let pending = PendingOutput::begin(store, output)?;
    write(pending.file(), pending.temp_path()).map_err(|err| pending.named(err))?;
    pending.complete(before_rename)
}

/// An output being written (see the module docs): its temp file, renamed
/// over the output by [`PendingOutput::complete`], removed when dropped
/// before that.
pub(crate) struct PendingOutput {
    temp: TempOutput,
    output: PathBuf,
    dir: PathBuf,
}

impl PendingOutput {
    /// Starts writing `output`: removes the temp files dead builds left
    /// for it and creates a new, empty one.
    pub(crate) fn begin(store: &Store, output: &Path) -> Result<PendingOutput> {
        let dir = match output.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let Some(name) = output.file_name() else {
            return Err(Error::InvalidOption {
                reason: format!("output {} names no file", output.display()),
            });
        };
        let prefix = temp_prefix(name);
        let held = store.open_dir(dir).map_err(crate::safe::from_store)?;
        leftovers::remove_stale_files(&held, &prefix.to_string_lossy(), "")?;
        Ok(PendingOutput {
            temp: TempOutput::create(dir, &prefix)?,
            output: output.to_path_buf(),
            dir: dir.to_path_buf(),
        })
    }

    /// The temp file, to be written.
    pub(crate) fn file(&self) -> &File {
        &self.temp.file
    }

    /// The temp file's path.
    pub(crate) fn temp_path(&self) -> &Path {
        &self.temp.path
    }

    /// `err`, told as an error about writing the output when it is about
    /// the temp file (the path people know; the cause is kept).
    pub(crate) fn named(&self, err: Error) -> Error {
        named_after(err, &self.temp.path, &self.output)
    }

    /// Syncs the temp file, runs `before_rename` (its error leaves the
    /// output as it was), renames the temp file over the output and syncs
    /// the directory.
    pub(crate) fn complete(self, before_rename: impl FnOnce() -> Result<()>) -> Result<()> {
        self.temp
            .file
            .sync_all()
            .map_err(io("syncing", &self.temp.path))
            .map_err(|err| self.named(err))?;
        before_rename()?;
        self.temp.persist(&self.output)?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing directory", &self.dir))
    }
}

/// `.<name>.tmp-`: the start of every temp file for the output `name`.
fn temp_prefix(name: &std::ffi::OsStr) -> std::ffi::OsString {
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".tmp-");
    prefix
}

/// An error about the temp file, told as one about writing `output`
/// (the path people know; the cause, e.g. `ENOSPC`, is kept).
fn named_after(err: Error, temp: &Path, output: &Path) -> Error {
    match err {
        Error::Io { path, source, .. } if path == temp => Error::Io {
            what: "writing the image to",
            path: output.to_path_buf(),
            source,
        },
        other => other,
    }
}

/// The temp file of an output being written, locked while it lives and
/// removed when dropped unless persisted.
struct TempOutput {
    path: PathBuf,
    file: File,
    persisted: bool,
}

impl TempOutput {
    /// A new temp file `<dir>/<prefix>p<pid>-<n>`, created exclusively and
    /// locked, with mode 0644 (less the umask).
    fn create(dir: &Path, prefix: &std::ffi::OsStr) -> Result<TempOutput> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let mut name = prefix.to_owned();
            name.push(leftovers::pid_tag());
            name.push(COUNTER.fetch_add(1, Ordering::Relaxed).to_string());
            let path = dir.join(name);
            match File::options().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    let temp = TempOutput {
                        path,
                        file,
                        persisted: false,
                    };
                    leftovers::lock(&temp.file, &temp.path)?;
                    return Ok(temp);
                }
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(io("creating a file in", dir)(err)),
            }
        }
    }

    /// Renames it to `output`.
    fn persist(mut self, output: &Path) -> Result<()> {
        std::fs::rename(&self.path, output).map_err(io("renaming into place", output))?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempOutput {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store beside the test's directory (the output is not in it).
    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        (dir, store)
    }

    #[test]
    fn the_output_is_replaced_whole_and_no_temp_file_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let from = dir.path().join("image");
        std::fs::write(&from, b"new image").expect("write");
        let output = dir.path().join("vm.ext4");
        std::fs::write(&output, b"old").expect("write");
        // A temp file a dead process left (PID above the kernel's maximum).
        let left = dir.path().join(".vm.ext4.tmp-p4194305-0");
        std::fs::write(&left, b"half").expect("write");
        let (_keep, store) = store();
        copy_to_output(&store, &from, &output).expect("copied");
        assert_eq!(std::fs::read(&output).expect("read"), b"new image");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(!left.exists());
    }

    #[test]
    fn a_failed_copy_leaves_the_output_and_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let output = dir.path().join("vm.ext4");
        std::fs::write(&output, b"old").expect("write");
        let missing = dir.path().join("missing");
        let (_keep, store) = store();
        copy_to_output(&store, &missing, &output).expect_err("no source");
        assert_eq!(std::fs::read(&output).expect("read"), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
    }
}
