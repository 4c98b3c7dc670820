//! Blobs: lookups by `stat`, and verified, resumable, single-flight ingest.
//!
//! A blob reaches `blobs/<alg>/<hex>` only by `rename` after its digest was
//! checked. While it downloads, its bytes sit in
//! `.cachectl/ingest/<alg>-<hex>.partial` and the exclusive lock
//! `.cachectl/locks/blob-<alg>-<hex>.lock` is held: a second process that
//! wants the same blob waits for the lock, then finds the blob in place. A
//! partial file left by a crash or a dropped connection is re-hashed and the
//! download resumes from its length (HTTP `Range`).

use crate::dir_handle::{Access, StoreDir};
use crate::error::{Error, Result, io};
use crate::layout::Store;
use crate::safe::is_not_found;
use ocidist::{Client, Descriptor};
use ociref::{Digest, DigestVerifier, Reference};
use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// Bytes buffered before a write to the partial file.
const WRITE_BUFFER: usize = 256 * 1024;

/// What [`Store::ingest_blob`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ingested {
    /// The blob was already present (possibly fetched by another process
    /// meanwhile): nothing was downloaded.
    Reused,
    /// The blob was downloaded (`resumed_from` bytes came from a partial
    /// file left earlier).
    Fetched {
        /// Bytes of a partial file that were kept, not downloaded again.
        resumed_from: u64,
    },
}

impl Store {
    /// The size of blob `digest` if it is present (one `lstat`, no
    /// hashing): a regular file, never a link, FIFO or directory planted
    /// at its name (those count as absent and are replaced by the pull).
    pub fn has_blob(&self, digest: &Digest) -> Option<u64> {
        std::fs::symlink_metadata(self.blob_path(digest))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    /// Reads a (small) blob whole and checks that it hashes to `digest`, so
    /// that a blob damaged on disk is never served: [`Error::Corrupt`] then
    /// (run [`Store::verify`] to move it aside). Blocking.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let bytes = self.read_file(&path)?;
        if digest.verify(&bytes).is_err() {
            return Err(Error::Corrupt {
                digest: digest.clone(),
                path,
            });
        }
        Ok(bytes)
    }

    /// Makes sure the blob `descriptor` is present, downloading it from the
    /// repository of `reference` when it is not. Only one process downloads
    /// a given digest at a time; the others wait and reuse its result.
    pub async fn ingest_blob(
        &self,
        client: &Client,
        reference: &Reference,
        descriptor: &Descriptor,
    ) -> Result<Ingested> {
        descriptor.digest.supported_algorithm()?;
        if self.has_blob(&descriptor.digest) == Some(descriptor.size) {
            return Ok(Ingested::Reused);
        }
        let store = self.clone();
        let digest = descriptor.digest.clone();
        let lock = tokio::task::spawn_blocking(move || {
            store.lock(&format!(
                "blob-{}-{}.lock",
                digest.algorithm(),
                digest.encoded()
            ))
        })
        .await??;
        if self.has_blob(&descriptor.digest) == Some(descriptor.size) {
            return Ok(Ingested::Reused);
        }
        let result = self.download_locked(client, reference, descriptor).await;
        drop(lock);
        result
    }

    /// Stores `bytes` (already verified to hash to `digest`, e.g. a
    /// manifest) as a blob, unless present.
    pub(crate) fn put_blob_bytes(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        if self.has_blob(digest) == Some(bytes.len() as u64) {
            return Ok(());
        }
        digest.verify(bytes)?;
        let ingest = self.open_dir(&self.ingest_dir())?;
        self.blob_dir(digest)?
            .write_atomic_via(&ingest, digest.encoded(), bytes)
    }

    async fn download_locked(
        &self,
        client: &Client,
        reference: &Reference,
        descriptor: &Descriptor,
    ) -> Result<Ingested> {
        let partial = {
            let store = self.clone();
            let digest = descriptor.digest.clone();
            tokio::task::spawn_blocking(move || Partial::open(&store, &digest)).await??
        };
        // One attempt resuming from the partial file; when that yields a
        // digest mismatch, its bytes were bad: one more from zero.
        let mut resume = true;
        loop {
            let (file, verifier) = {
                let partial = partial.clone();
                let descriptor = descriptor.clone();
                tokio::task::spawn_blocking(move || open_partial(&partial, &descriptor, resume))
                    .await??
            };
            let resumed_from = verifier.bytes_seen();
            match self
                .stream_into(client, reference, descriptor, file, verifier, &partial)
                .await
            {
                Ok(()) => return Ok(Ingested::Fetched { resumed_from }),
                Err(Error::Dist(ocidist::Error::DigestMismatch { .. })) if resumed_from > 0 => {
                    tracing::warn!(digest = %descriptor.digest, resumed_from,
                        "resumed download did not verify; starting again from zero");
                    partial.dir.remove(&partial.name)?;
                    resume = false;
                }
                // A mirror served bad bytes and is skipped from now on: the
                // next attempt, from zero, goes to the next host.
                Err(Error::Dist(ocidist::Error::Mirror { .. })) => {
                    partial.dir.remove(&partial.name)?;
                    resume = false;
                }
                Err(err) => {
                    if matches!(err, Error::Dist(ocidist::Error::DigestMismatch { .. })) {
                        let _ = partial.dir.remove(&partial.name);
                    }
                    return Err(err);
                }
            }
        }
    }

    async fn stream_into(
        &self,
        client: &Client,
        reference: &Reference,
        descriptor: &Descriptor,
        file: File,
        verifier: DigestVerifier,
        partial: &Partial,
    ) -> Result<()> {
        let mut stream = client.blob_from(reference, descriptor, verifier).await?;
        let mut writer = Some(file);
        let mut buffer: Vec<u8> = Vec::with_capacity(WRITE_BUFFER);
        loop {
            let chunk = stream.next_chunk().await?;
            let last = chunk.is_none();
            if let Some(chunk) = &chunk {
                buffer.extend_from_slice(chunk);
            }
            if buffer.len() >= WRITE_BUFFER || (last && !buffer.is_empty()) {
                let mut file = writer
                    .take()
                    .expect("because the writer is put back after every write");
                let path = partial.path();
                let bytes = std::mem::take(&mut buffer);
                let (file, bytes) = tokio::task::spawn_blocking(move || {
                    file.write_all(&bytes)
                        .map(|()| (file, bytes))
                        .map_err(io("writing", &path))
                })
                .await??;
                writer = Some(file);
                buffer = bytes;
                buffer.clear();
            }
            if last {
                break;
            }
        }
        let file = writer.expect("because the writer is put back after every write");
        let partial = partial.clone();
        let store = self.clone();
        let digest = descriptor.digest.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            file.sync_all().map_err(io("syncing", &partial.path()))?;
            drop(file);
            // `renameat` replaces whatever name is in `blobs/<alg>` (a
            // planted link or FIFO included) without following it.
            let blobs = store.blob_dir(&digest)?;
            partial
                .dir
                .rename(&partial.name, &blobs, digest.encoded())?;
            blobs.sync()
        })
        .await??;
        Ok(())
    }
}

/// A partial download: its name in `.cachectl/ingest/`, held open.
#[derive(Clone, Debug)]
struct Partial {
    dir: Arc<StoreDir>,
    name: String,
}

impl Partial {
    fn open(store: &Store, digest: &Digest) -> Result<Partial> {
        let dir = store.open_dir(&store.ingest_dir())?;
        let name = crate::follow::partial_name(digest);
        Ok(Partial {
            dir: Arc::new(dir),
            name,
        })
    }

    fn path(&self) -> PathBuf {
        self.dir.child(&self.name)
    }
}

/// Opens (or creates) the partial file of `descriptor` for appending, and a
/// verifier that has seen the bytes it already holds. A partial larger than
/// the blob, or unreadable, is thrown away; so is anything but a regular
/// file with one name (a planted link, FIFO or hard link: the name is
/// removed, never followed, and the download starts from zero).
fn open_partial(
    partial: &Partial,
    descriptor: &Descriptor,
    resume: bool,
) -> Result<(File, DigestVerifier)> {
    let mut verifier = DigestVerifier::new(descriptor.digest.clone())?;
    let (dir, name) = (&partial.dir, partial.name.as_str());
    dir.discard_foreign(name)?;
    if resume {
        // One descriptor both hashes what is there (reading from the
        // start) and appends (writes always go to the end).
        match dir.open_file(name, Access::ReadAppend) {
            Ok(mut existing) => {
                let len = existing.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
                if len <= descriptor.size && hash_into(&mut existing, &mut verifier).is_ok() {
                    return Ok((existing, verifier));
                }
                tracing::debug!(path = %partial.path().display(), len,
                    "discarding inconsistent partial download");
                verifier = DigestVerifier::new(descriptor.digest.clone())?;
            }
            Err(err) if is_not_found(&err) => {}
            Err(err) => return Err(err),
        }
    }
    dir.remove(name)?;
    let file = dir.open_file(name, Access::CreateNew)?;
    Ok((file, verifier))
}

/// Feeds everything `reader` holds into `sink`.
pub(crate) fn hash_into(reader: &mut impl Read, sink: &mut impl Write) -> std::io::Result<u64> {
    std::io::copy(reader, sink)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_blob_refuses_bytes_that_do_not_match_the_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("created");
        let digest = Digest::sha256_of(b"{}");
        store.put_blob_bytes(&digest, b"{}").expect("stored");
        assert_eq!(store.has_blob(&digest), Some(2));
        assert_eq!(store.read_blob(&digest).expect("reads"), b"{}");
        std::fs::write(store.blob_path(&digest), b"[]").expect("damaged");
        assert!(matches!(
            store.read_blob(&digest),
            Err(Error::Corrupt { digest: d, .. }) if d == digest
        ));
        let report = store.verify().expect("verify runs");
        assert_eq!(report.corrupt.len(), 1);
        assert!(store.has_blob(&digest).is_none());
    }

    #[test]
    fn put_blob_bytes_refuses_bytes_of_another_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("created");
        let digest = Digest::sha256_of(b"a");
        assert!(store.put_blob_bytes(&digest, b"b").is_err());
        assert!(store.has_blob(&digest).is_none());
    }
}
