//! Reading a blob while it downloads, so that work on a layer (its
//! decompression, an unpack, a build) starts with its first bytes instead
//! of after the whole pull.
//!
//! A download writes `.cachectl/ingest/<alg>-<hex>.partial` by appending
//! only, hashes it as it goes, and renames it into `blobs/` once it
//! verifies (see `blobs.rs`). So a reader that opened the partial file
//! reads, at each offset, the bytes that the verified blob will hold there
//! — as long as the same file (the same inode) ends up under the blob's
//! name. [`FollowedBlob`] reads what is written, waits for more, and gives
//! end of file only once the blob's name holds the very file it read, at
//! its full size. Any other end (the download restarted from zero, its
//! bytes did not verify, the pull ended without the blob) is an error
//! naming the blob: whatever was read must then be thrown away. This works
//! across processes: the reader needs no word from the downloader but the
//! file system and, to stop waiting, the caller's flag that the pull
//! ended.

use crate::layout::Store;
use ocidist::Descriptor;
use ociref::Digest;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long a reader sleeps when it has read everything written so far.
const POLL: Duration = Duration::from_millis(2);

/// The name of the partial download of `digest` in `.cachectl/ingest/`.
pub(crate) fn partial_name(digest: &Digest) -> String {
    format!("{}-{}.partial", digest.algorithm(), digest.encoded())
}

/// A blob read while it may still be downloading (see the module docs).
/// Made by [`Store::follow_blob`].
#[derive(Debug)]
pub struct FollowedBlob {
    store: Store,
    digest: Digest,
    size: u64,
    ended: Arc<AtomicBool>,
    /// The file read and its `(device, inode)`.
    file: Option<(File, (u64, u64))>,
    offset: u64,
    /// The file read is the blob itself, verified.
    stored: bool,
}

impl Store {
    /// A reader of the blob `descriptor` that starts with the bytes its
    /// download has written and follows it to the end. `ended` is the
    /// caller's word that the pull writing the blob is over (successful
    /// or not): then a blob not yet stored is an error rather than
    /// something to wait for. A blob already stored reads as it is.
    pub fn follow_blob(&self, descriptor: &Descriptor, ended: Arc<AtomicBool>) -> FollowedBlob {
        FollowedBlob {
            store: self.clone(),
            digest: descriptor.digest.clone(),
            size: descriptor.size,
            ended,
            file: None,
            offset: 0,
            stored: false,
        }
    }
}

impl FollowedBlob {
    /// The blob's size, as its descriptor gives it.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The stored blob's `(device, inode)` and handle, when it is stored.
    fn stored_file(&self) -> std::io::Result<Option<(File, (u64, u64))>> {
        let path = self.store.blob_path(&self.digest);
        let Some((dir, name)) = self.store.existing_dir_of(&path).map_err(to_io)? else {
            return Ok(None);
        };
        match dir.open_read(name) {
            Ok(file) => Ok(Some(with_identity(file)?)),
            Err(err) if crate::safe::is_not_found(&err) => Ok(None),
            Err(err) => Err(to_io(err)),
        }
    }

    /// The partial download's handle, when there is one.
    fn partial_file(&self) -> std::io::Result<Option<(File, (u64, u64))>> {
        let Some(dir) = self
            .store
            .existing_dir(&self.store.ingest_dir())
            .map_err(to_io)?
        else {
            return Ok(None);
        };
        match dir.open_read(&partial_name(&self.digest)) {
            Ok(file) => Ok(Some(with_identity(file)?)),
            Err(err) if crate::safe::is_not_found(&err) => Ok(None),
            Err(err) => Err(to_io(err)),
        }
    }

    /// Opens the stored blob, else the partial download (checking the
    /// stored name once more: the rename may have come in between).
    fn open(&mut self) -> std::io::Result<()> {
        if let Some(stored) = self.stored_file()? {
            self.file = Some(stored);
            self.stored = true;
        } else if let Some(partial) = self.partial_file()? {
            self.file = Some(partial);
        } else if let Some(stored) = self.stored_file()? {
            self.file = Some(stored);
            self.stored = true;
        }
        Ok(())
    }

    /// At the end of what is written: whether the file read became the
    /// stored blob (then nothing more will be written to it), or an error
    /// when another file took the blob's name.
    fn check_stored(&mut self) -> std::io::Result<()> {
        let Some((_, identity)) = &self.file else {
            return Ok(());
        };
        let path = self.store.blob_path(&self.digest);
        let Some((dir, name)) = self.store.existing_dir_of(&path).map_err(to_io)? else {
            return Ok(());
        };
        if let Some(meta) = dir.stat(name).map_err(to_io)? {
            if (meta.dev(), meta.ino()) != *identity {
                return Err(self.failed("was downloaded again while it was read"));
            }
            self.stored = true;
        }
        Ok(())
    }

    fn failed(&self, what: &str) -> std::io::Error {
        std::io::Error::other(format!(
            "blob {} {what}; what was read of it must be read again",
            self.digest
        ))
    }
}

impl Read for FollowedBlob {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let want = usize::try_from(self.size - self.offset)
            .unwrap_or(usize::MAX)
            .min(buffer.len());
        loop {
            if self.file.is_none() {
                self.open()?;
            }
            if let Some((file, _)) = &self.file {
                let read = file.read_at(&mut buffer[..want], self.offset)?;
                if read > 0 {
                    self.offset += read as u64;
                    return Ok(read);
                }
                if self.offset == self.size && self.stored {
                    return Ok(0);
                }
                if self.offset > file.metadata()?.len() {
                    return Err(self.failed("shrank while it was read"));
                }
                if !self.stored {
                    self.check_stored()?;
                    if self.stored {
                        continue;
                    }
                }
                if self.stored {
                    // Stored, yet shorter than its descriptor says.
                    return Err(self.failed("is shorter than its descriptor says"));
                }
            }
            if self.ended.load(Ordering::Acquire) {
                // One last look: the rename may have been the pull's last step.
                self.check_stored()?;
                if self.file.is_none() {
                    self.open()?;
                }
                if !self.stored {
                    return Err(self.failed("was not stored by the pull"));
                }
                continue;
            }
            std::thread::sleep(POLL);
        }
    }
}

/// `file` with its `(device, inode)`.
fn with_identity(file: File) -> std::io::Result<(File, (u64, u64))> {
    let meta = file.metadata()?;
    Ok((file, (meta.dev(), meta.ino())))
}

/// A store error as the `std::io::Error` a reader returns.
fn to_io(err: crate::Error) -> std::io::Error {
    std::io::Error::other(err)
}
