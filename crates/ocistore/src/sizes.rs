//! Uncompressed sizes of layers: what a layer takes once unpacked, which
//! `inspect`, `du` and ext4 sizing need and no manifest says.
//!
//! A layer's size is found by decompressing it once (gzip or zstd, detected
//! from its first bytes, not from its media type, which some registries get
//! wrong) and counting, or told by whoever decompressed it anyway (an
//! unpack); the answer is kept in `.cachectl/sizes/<alg>-<hex>` (a decimal
//! number), so no layer is ever decompressed twice for this. A pull does not
//! decompress (that would cost about a second per GiB on the pull's path,
//! measured by `cargo xtask bench pull`): its record gets the size when every
//! layer's is already known, and `inspect` fills in the rest.

use crate::error::{Error, Result};
use crate::layout::Store;
use ociref::Digest;
use std::path::{Path, PathBuf};

pub(crate) use ocidist::media_types::is_layer;

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
        String::from_utf8(self.read_file(&self.size_path(digest)).ok()?)
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
        // A regular file, not a link or a FIFO planted at the blob's name.
        let file = self.open_read(&path)?;
        let size = count_decompressed(file, &path)?;
        self.remember_uncompressed_size(digest, size)?;
        Ok(size)
    }

    /// Records `size` as the uncompressed size of the stored layer `digest`
    /// (for callers that decompressed it anyway, such as an unpack), so that
    /// nobody decompresses it again to count. A read-only store keeps
    /// nothing (see [`Store::skipped_records`]). Blocking.
    pub fn remember_uncompressed_size(&self, digest: &Digest, size: u64) -> Result<()> {
        let written = self.write_atomic(&self.size_path(digest), size.to_string().as_bytes());
        self.unless_read_only(written)
    }
}

/// Decompresses the file at `path` (compression from its first bytes) and
/// counts the bytes.
fn count_decompressed(file: std::fs::File, path: &Path) -> Result<u64> {
    let mut reader = crate::compression::decompressed(std::io::BufReader::new(file))
        .map_err(crate::error::io("reading", path))?;
    std::io::copy(&mut reader, &mut std::io::sink()).map_err(|source| Error::Io {
        what: "decompressing",
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::Compression;
    use std::io::Write;

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
