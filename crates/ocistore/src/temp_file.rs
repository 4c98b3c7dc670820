//! A temp file that deletes itself unless persisted: what an import stages
//! archive entries in and an export writes its archive to.

use crate::dir_handle::StoreDir;
use crate::error::{Error, Result};
use crate::layout::Store;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

/// A temp file that is removed when dropped, unless persisted; created,
/// renamed and removed relative to its directory's handle.
#[derive(Debug)]
pub(crate) struct TempFile {
    dir: StoreDir,
    name: String,
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    /// Creates a new temp file in `dir` (the store's, or the directory of
    /// an export's target) for a file that will be named `target`
    /// (`O_EXCL`: never through a link planted at its name) and guards it.
    pub(crate) fn create(store: &Store, dir: &Path, target: &str) -> Result<(TempFile, File)> {
        let dir = store.open_dir(dir)?;
        let (name, file) = dir.create_temp(target)?;
        let path = dir.child(&name);
        let temp = TempFile {
            dir,
            name,
            path,
            armed: true,
        };
        Ok((temp, file))
    }

    /// Where it is (for messages).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Opens it again for reading.
    pub(crate) fn open_read(&self) -> Result<File> {
        self.dir.open_read(&self.name)
    }

    /// Renames it to `target` (fsyncing the directory of `target`); it is
    /// no longer removed.
    pub(crate) fn persist(mut self, store: &Store, target: &Path) -> Result<()> {
        let (to, name) = store.dir_of(target)?;
        self.dir.rename(&self.name, &to, name)?;
        self.armed = false;
        to.sync()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.dir.remove(&self.name);
        }
    }
}

/// The file under `writer` (a temp file at `path`), its buffer written out.
pub(crate) fn unbuffered(writer: BufWriter<File>, path: &Path) -> Result<File> {
    writer.into_inner().map_err(|err| Error::Io {
        what: "writing",
        path: path.to_path_buf(),
        source: err.into_error(),
    })
}
