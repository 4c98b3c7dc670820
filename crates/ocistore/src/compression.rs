//! Compression of layers and archives: told by a stream's magic bytes or
//! named by a layer media type, read through the matching decoder, and the
//! read progress of a file.

use crate::error::{Result, io};
use crate::layout::Store;
use ocidist::{Phase, Progress, ProgressFn, Subject};
use ociref::Digest;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use ocidist::media_types::{
    DOCKER_FOREIGN_LAYER_GZIP, DOCKER_FOREIGN_LAYER_TAR, DOCKER_LAYER_GZIP, DOCKER_LAYER_TAR,
    DOCKER_LAYER_ZSTD, OCI_FOREIGN_LAYER_GZIP, OCI_FOREIGN_LAYER_TAR, OCI_FOREIGN_LAYER_ZSTD,
    OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD,
};

/// Bytes copied at a time when streaming entries and blobs.
pub(crate) const COPY_BUFFER: usize = 256 * 1024;

/// How a stream (a layer, an archive) is compressed: told by its first
/// bytes, or named by a layer media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// No known magic: read as it is.
    None,
    /// `1f 8b`.
    Gzip,
    /// `28 b5 2f fd`, or a zstd skippable frame (`5X 2a 4d 18`).
    Zstd,
}

impl Compression {
    /// The compression whose magic `head` starts with.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
            || matches!(head, [b, 0x2a, 0x4d, 0x18, ..] if b & 0xf0 == 0x50)
        {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The compression a layer media type names (OCI and Docker names,
    /// distributable or not); `None` for a media type that is no tar layer.
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        match media_type {
            OCI_LAYER_TAR | OCI_FOREIGN_LAYER_TAR | DOCKER_LAYER_TAR | DOCKER_FOREIGN_LAYER_TAR => {
                Some(Compression::None)
            }
            OCI_LAYER_GZIP
            | OCI_FOREIGN_LAYER_GZIP
            | DOCKER_LAYER_GZIP
            | DOCKER_FOREIGN_LAYER_GZIP => Some(Compression::Gzip),
            OCI_LAYER_ZSTD | OCI_FOREIGN_LAYER_ZSTD | DOCKER_LAYER_ZSTD => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// Its name in messages: `uncompressed`, `gzip` or `zstd`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The OCI layer media type of a tar compressed this way.
    pub fn layer_media_type(self) -> &'static str {
        match self {
            Compression::None => OCI_LAYER_TAR,
            Compression::Gzip => OCI_LAYER_GZIP,
            Compression::Zstd => OCI_LAYER_ZSTD,
        }
    }
}

impl Store {
    /// The compression the first bytes of the stored blob `digest` show.
    pub(crate) fn blob_compression(&self, digest: &Digest) -> Result<Compression> {
        let path = self.blob_path(digest);
        let mut head = [0u8; 4];
        let read = self
            .open_read(&path)?
            .read(&mut head)
            .map_err(io("reading", &path))?;
        Ok(Compression::detect(&head[..read]))
    }
}

/// `reader` decompressed as its first bytes say: every gzip member and
/// every zstd frame is read, one after the other.
pub(crate) fn decompressed<'r, R: BufRead + 'r>(
    mut reader: R,
) -> std::io::Result<Box<dyn Read + 'r>> {
    let head = reader.fill_buf()?;
    Ok(match Compression::detect(head) {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
    })
}

/// Opens the file at `path` for reading through [`decompressed`],
/// reporting the bytes of the file read to `progress`, if set (as
/// [`Phase::Bytes`] of [`Subject::File`]); returns it with the file's
/// size.
pub(crate) fn open_decompressed(
    path: &Path,
    progress: Option<&ProgressFn>,
) -> Result<(Box<dyn Read>, u64)> {
    let file = File::open(path).map_err(io("opening", path))?;
    let size = file.metadata().map_err(io("reading", path))?.len();
    let file: Box<dyn Read> = match progress {
        Some(progress) => Box::new(ProgressReader::new(
            file,
            progress.clone(),
            Subject::File(path.to_path_buf()),
            size,
        )),
        None => Box::new(file),
    };
    let reader =
        decompressed(BufReader::with_capacity(COPY_BUFFER, file)).map_err(io("reading", path))?;
    Ok((reader, size))
}

/// A reader that reports how many of `total` bytes of its subject it has
/// read so far, as a [`Phase::Bytes`] event after every read that returns
/// data. It never reports [`Phase::Finished`]: whoever owns the subject
/// knows when it is done with it.
pub struct ProgressReader<R> {
    inner: R,
    progress: ProgressFn,
    subject: Subject,
    done: u64,
    total: u64,
}

impl<R> ProgressReader<R> {
    /// Wraps `inner`, which holds the `total` bytes of `subject`.
    pub fn new(inner: R, progress: ProgressFn, subject: Subject, total: u64) -> ProgressReader<R> {
        ProgressReader {
            inner,
            progress,
            subject,
            done: 0,
            total,
        }
    }
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        if read > 0 {
            self.done += read as u64;
            self.progress.report(&Progress {
                subject: self.subject.clone(),
                phase: Phase::Bytes,
                done: self.done,
                total: self.total,
            });
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_media_types_name_their_compression() {
        for (media_type, want) in [
            ("application/vnd.oci.image.layer.v1.tar", Compression::None),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::Zstd,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar",
                Compression::None,
            ),
        ] {
            assert_eq!(Compression::from_media_type(media_type), Some(want));
            assert!(ocidist::media_types::is_layer(media_type), "{media_type}");
        }
        assert_eq!(Compression::from_media_type("application/json"), None);
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let named = compression.layer_media_type();
            assert_eq!(Compression::from_media_type(named), Some(compression));
        }
    }

    #[test]
    fn compression_is_told_by_magic_bytes() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"ustar"), Compression::None);
        assert_eq!(Compression::detect(&[]), Compression::None);
    }

    #[test]
    fn decoders_read_every_member_and_frame() {
        use std::io::Write;
        let mut gz = Vec::new();
        for part in [&b"abc"[..], b"def"] {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(part).expect("in memory");
            gz.extend(enc.finish().expect("in memory"));
        }
        let mut out = String::new();
        decompressed(&gz[..])
            .expect("gzip")
            .read_to_string(&mut out)
            .expect("reads");
        assert_eq!(out, "abcdef");
        let mut zst = zstd::encode_all(&b"abc"[..], 1).expect("in memory");
        zst.extend(zstd::encode_all(&b"def"[..], 1).expect("in memory"));
        out.clear();
        decompressed(&zst[..])
            .expect("zstd")
            .read_to_string(&mut out)
            .expect("reads");
        assert_eq!(out, "abcdef");
    }

    #[test]
    fn a_progress_reader_reports_its_subject_forward_to_the_total() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&seen);
        let callback = ProgressFn::new(move |event: &Progress| {
            sink.lock().expect("lock").push(event.clone());
        });
        let subject = Subject::File("/tmp/archive.tar".into());
        let mut reader = ProgressReader::new(&[7u8; 10][..], callback, subject.clone(), 10);
        let mut buffer = [0u8; 4];
        while reader.read(&mut buffer).expect("read") > 0 {}
        let seen = seen.lock().expect("lock");
        let done: Vec<u64> = seen.iter().map(|event| event.done).collect();
        assert_eq!(done, vec![4, 8, 10], "one event per read, none at the end");
        assert!(seen.iter().all(|event| event.subject == subject
            && event.phase == Phase::Bytes
            && event.total == 10));
    }
}
