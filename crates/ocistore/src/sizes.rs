//! Uncompressed sizes of layers: what a layer takes once unpacked, which
//! `inspect`, `du` and ext4 sizing need and no manifest says.
//!
//! A layer's size is found by decompressing it once (gzip or zstd, detected
//! from its first bytes, not from its media type, which some registries get
//! wrong) and counting; the answer is kept in
//! `.cachectl/sizes/<alg>-<hex>` (a decimal number), so no layer is ever
//! decompressed twice for this.

use crate::archive::open_decompressed;
use crate::error::{Error, Result, io};
use crate::layout::{Store, atomic_write};
use ociref::Digest;
use std::path::{Path, PathBuf};

/// Whether `media_type` names a layer (a filesystem changeset).
pub(crate) fn is_layer(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.oci.image.layer.")
        || media_type.starts_with("application/vnd.docker.image.rootfs.")
}

impl Store {
    fn size_path(&self, digest: &Digest) -> PathBuf {
        self.private_dir().join("sizes").join(format!(
            "{}-{}",
            digest.algorithm(),
            digest.encoded()
        ))
    }

    /// The uncompressed size of the stored layer `digest`, when it was
    /// computed before (no decompression). Blocking.
    pub(crate) fn known_uncompressed_size(&self, digest: &Digest) -> Option<u64> {
        std::fs::read_to_string(self.size_path(digest))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The uncompressed size of the stored layer `digest`: computed once by
    /// decompressing it, then remembered. Blocking.
    pub fn uncompressed_size(&self, digest: &Digest) -> Result<u64> {
        if let Some(size) = self.known_uncompressed_size(digest) {
            return Ok(size);
        }
        let path = self.blob_path(digest);
        let size = count_decompressed(&path)?;
        self.remember_uncompressed_size(digest, size)?;
        Ok(size)
    }

    /// Records `size` as the uncompressed size of layer `digest` (found
    /// while it downloaded, or while it was unpacked). Blocking.
    pub(crate) fn remember_uncompressed_size(&self, digest: &Digest, size: u64) -> Result<()> {
        let dir = self.private_dir().join("sizes");
        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        atomic_write(&self.size_path(digest), size.to_string().as_bytes())
    }
}

/// Decompresses the file at `path` (compression from its first bytes) and
/// counts the bytes.
fn count_decompressed(path: &Path) -> Result<u64> {
    let mut reader = open_decompressed(path)?;
    std::io::copy(&mut reader, &mut std::io::sink()).map_err(|source| Error::Io {
        what: "decompressing",
        path: path.to_path_buf(),
        source,
    })
}

/// Counts the decompressed bytes of a layer while it downloads, on a thread
/// of its own, so that the count costs no time on the download's path: the
/// download hands it each chunk (cheap reference-counted clones).
pub(crate) struct SizeCounter {
    chunks: Option<std::sync::mpsc::SyncSender<bytes::Bytes>>,
    thread: std::thread::JoinHandle<Option<u64>>,
}

impl SizeCounter {
    /// Starts the counting thread.
    pub(crate) fn start() -> SizeCounter {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<bytes::Bytes>(64);
        let thread = std::thread::spawn(move || {
            let reader = std::io::BufReader::with_capacity(
                256 * 1024,
                ChunkReader {
                    receiver,
                    current: bytes::Bytes::new(),
                },
            );
            let mut decoder = crate::archive::decompressed(reader).ok()?;
            std::io::copy(&mut decoder, &mut std::io::sink()).ok()
        });
        SizeCounter {
            chunks: Some(sender),
            thread,
        }
    }

    /// Hands over the next chunk of the blob. A counter that gave up (not
    /// a valid stream) just drops it. Blocks while 64 chunks wait to be
    /// decoded: back-pressure, so a slow decoder never makes memory grow
    /// (decoding outruns a network download, so this rarely waits).
    pub(crate) fn feed(&self, chunk: &bytes::Bytes) {
        if let Some(chunks) = &self.chunks {
            let _ = chunks.send(chunk.clone());
        }
    }

    /// Ends the stream and waits for the count (`None` when the blob did
    /// not decompress). Blocking.
    pub(crate) fn finish(mut self) -> Option<u64> {
        self.chunks = None;
        self.thread.join().ok().flatten()
    }
}

/// A `Read` over the chunks a [`SizeCounter`] receives.
struct ChunkReader {
    receiver: std::sync::mpsc::Receiver<bytes::Bytes>,
    current: bytes::Bytes,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.recv() {
                Ok(chunk) => self.current = chunk,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::Compression;
    use std::io::Write;

    #[test]
    fn the_counter_fed_in_chunks_counts_what_a_file_count_does() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let plain: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        encoder.write_all(&plain).expect("gzip");
        let gz = bytes::Bytes::from(encoder.finish().expect("gzip"));
        let counter = SizeCounter::start();
        for chunk in gz.chunks(1000) {
            counter.feed(&bytes::Bytes::copy_from_slice(chunk));
        }
        assert_eq!(counter.finish(), Some(200_000));
        let garbage = SizeCounter::start();
        garbage.feed(&bytes::Bytes::from_static(&[0x1f, 0x8b, 0, 0, 0]));
        assert_eq!(garbage.finish(), None);
    }

    #[test]
    fn detects_compression_from_magic_bytes() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(
            Compression::detect(&[0x5e, 0x2a, 0x4d, 0x18]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"ustar"), Compression::None);
        assert_eq!(Compression::detect(&[]), Compression::None);
    }

    #[test]
    fn counts_multi_member_gzip_and_multi_frame_zstd_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let mut gz = Vec::new();
        for part in [&[7u8; 1000][..], &[9u8; 500][..]] {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(part).expect("gzip");
            gz.extend(encoder.finish().expect("gzip"));
        }
        let mut zst = zstd::encode_all(&[1u8; 300][..], 1).expect("zstd");
        zst.extend(zstd::encode_all(&[2u8; 200][..], 1).expect("zstd"));
        for (bytes, want) in [(gz, 1500), (zst, 500), (vec![3u8; 42], 42)] {
            let digest = Digest::sha256_of(&bytes);
            store.put_blob_bytes(&digest, &bytes).expect("stored");
            assert_eq!(store.uncompressed_size(&digest).expect("size"), want);
            assert_eq!(store.known_uncompressed_size(&digest), Some(want));
        }
    }
}
