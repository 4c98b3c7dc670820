//! The index pass's copy of a layer: the decompressed tar written to a
//! work directory as the index reads it, so that the emit pass reads plain
//! bytes instead of decompressing the layer again.

use crate::error::{Error, Result, io};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// A reader that also writes what it reads to a file (when given one).
pub(super) struct Tee<R> {
    inner: R,
    copy: Option<(BufWriter<File>, PathBuf)>,
    /// The write that failed: the copy's error, kept with its OS code (a
    /// full tmpfs is told apart by it), not the reader's.
    failed: Option<std::io::Error>,
}

impl<R: Read> Tee<R> {
    /// Reads `inner`, copying it to the new file `copy`.
    pub(super) fn new(inner: R, copy: Option<&Path>) -> Result<Tee<R>> {
        let copy = match copy {
            Some(path) => {
                let file = File::options()
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .map_err(io("creating", path))?;
                Some((BufWriter::with_capacity(1 << 20, file), path.to_path_buf()))
            }
            None => None,
        };
        Ok(Tee {
            inner,
            copy,
            failed: None,
        })
    }

    /// Ends the copy, after `read` (what reading through the tee gave): a
    /// failed write is the error, whatever the reader made of it.
    pub(super) fn finish(mut self, read: Result<()>) -> Result<()> {
        if let (Some(source), Some((_, path))) = (self.failed.take(), &self.copy) {
            return Err(Error::Io {
                what: "copying a decompressed layer to",
                path: path.clone(),
                source,
            });
        }
        read?;
        if let Some((mut writer, path)) = self.copy.take() {
            writer.flush().map_err(io("writing", &path))?;
        }
        Ok(())
    }
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        if let Some((writer, _)) = &mut self.copy
            && let Err(err) = writer.write_all(&buf[..read])
        {
            let kind = err.kind();
            self.failed = Some(err);
            return Err(std::io::Error::new(kind, "the layer's copy failed"));
        }
        Ok(read)
    }
}
