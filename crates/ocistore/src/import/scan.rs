//! The one pass over an archive: every regular entry streamed while
//! hashed, `blobs/<alg>/<hex>` entries verified and moved into `blobs/`,
//! small top-level JSON files kept in memory, other files (docker layers)
//! staged in temp files, and link entries remembered.

use super::ImportReport;
use crate::archive::{blob_name, entry_name, link_target};
use crate::compression::{COPY_BUFFER, Compression};
use crate::error::{Error, Result, io};
use crate::layout::Store;
use crate::temp_file::{TempFile, unbuffered};
use ocidist::{Phase, Progress, ProgressFn, Subject};
use ociref::{Digest, Hasher};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

/// Largest JSON file of an archive read into memory (`index.json`,
/// `manifest.json`, docker configs): 4 MiB.
pub(crate) const MAX_JSON_BYTES: u64 = 4 * 1024 * 1024;

/// A file of the archive kept in a temp file until the end.
#[derive(Debug)]
pub(super) struct Staged {
    pub(super) digest: Digest,
    pub(super) size: u64,
    pub(super) compression: Compression,
    /// `None` once moved into `blobs/`.
    pub(super) temp: Option<TempFile>,
}

/// What one pass over the archive found.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// Small JSON files at the top level, by name.
    pub(super) json: HashMap<String, Vec<u8>>,
    /// Other regular files (not under `blobs/`), by name.
    pub(super) staged: HashMap<String, Staged>,
    /// Link entries: name -> target name.
    links: HashMap<String, String>,
}

impl Scan {
    /// `name` with links followed (a few hops at most).
    pub(super) fn resolve(&self, name: &str) -> String {
        let mut name = name.to_owned();
        for _ in 0..8 {
            match self.links.get(&name) {
                Some(target) => name = target.clone(),
                None => break,
            }
        }
        name
    }
}

impl Store {
    /// The one pass over the archive, reported to `progress` as bytes of
    /// the file read, then [`Phase::Finished`].
    pub(super) fn scan_archive(
        &self,
        path: &Path,
        progress: Option<&ProgressFn>,
        report: &mut ImportReport,
    ) -> Result<Scan> {
        let (reader, size) = if path.is_dir() {
            crate::layout_dir::tar_stream(path)?
        } else {
            crate::compression::open_decompressed(path, progress)?
        };
        let mut archive = tar::Archive::new(reader);
        let mut scan = Scan::default();
        let read_err = io("reading archive", path);
        let entries = archive.entries().map_err(read_err)?;
        for entry in entries {
            let mut entry = entry.map_err(io("reading archive", path))?;
            let raw = entry.path().map_err(io("reading archive", path))?;
            let Some(name) = raw.to_str().and_then(entry_name) else {
                continue;
            };
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                let target = entry.link_name().map_err(io("reading archive", path))?;
                if let Some(target) = target
                    .as_deref()
                    .and_then(Path::to_str)
                    .and_then(|t| link_target(&name, t, kind.is_symlink()))
                {
                    scan.links.insert(name, target);
                }
                continue;
            }
            if !(kind.is_file() || kind.is_contiguous()) {
                continue;
            }
            let size = entry.size();
            let mut entry = Exact {
                inner: &mut entry,
                left: size,
                archive: path,
                name: &name,
            };
            if let Some(digest) = blob_name(&name) {
                self.take_blob(path, &name, &digest, size, &mut entry, report)?;
            } else if is_small_json(&name) {
                let bytes = read_small(path, &name, &mut entry)?;
                scan.json.insert(name, bytes);
            } else {
                let staged = self.stage(path, &mut entry)?;
                scan.staged.insert(name, staged);
            }
        }
        if let Some(progress) = progress {
            progress.report(&Progress {
                subject: Subject::File(path.to_path_buf()),
                phase: Phase::Finished,
                done: size,
                total: size,
            });
        }
        Ok(scan)
    }

    /// Stores the entry `name` (`size` bytes), which must hash to
    /// `digest`, unless the store holds it already (with that size; one of
    /// another size is replaced).
    fn take_blob(
        &self,
        archive: &Path,
        name: &str,
        digest: &Digest,
        size: u64,
        entry: &mut impl Read,
        report: &mut ImportReport,
    ) -> Result<()> {
        let algorithm = digest
            .supported_algorithm()
            .map_err(|err| Error::ArchiveEntry {
                archive: archive.to_path_buf(),
                entry: name.to_owned(),
                reason: err.to_string(),
            })?;
        if self.has_blob(digest) == Some(size) {
            std::io::copy(entry, &mut std::io::sink()).map_err(io("reading archive", archive))?;
            report.blobs_reused += 1;
            return Ok(());
        }
        let target = self.blob_path(digest);
        let (temp, file) = TempFile::create(self, &self.ingest_dir(), digest.encoded())?;
        let (actual, written, _) =
            copy_hashed(archive, entry, (temp.path(), file), Hasher::new(algorithm))?;
        if actual != *digest {
            return Err(Error::ArchiveDigestMismatch {
                archive: archive.to_path_buf(),
                entry: name.to_owned(),
                expected: digest.clone(),
                actual,
            });
        }
        temp.persist(self, &target)?;
        report.blobs_written += 1;
        report.bytes_written += written;
        Ok(())
    }

    /// Streams `entry` into a temp file, hashed with sha256.
    fn stage(&self, archive: &Path, entry: &mut impl Read) -> Result<Staged> {
        let (temp, file) = TempFile::create(self, &self.ingest_dir(), "staged")?;
        let (digest, size, compression) = copy_hashed(
            archive,
            entry,
            (temp.path(), file),
            Hasher::new(ociref::Algorithm::Sha256),
        )?;
        Ok(Staged {
            digest,
            size,
            compression,
            temp: Some(temp),
        })
    }
}

/// Streams `reader` into a new file at `path` while hashing; the digest,
/// the size and the compression its first bytes show. The file is synced.
fn copy_hashed(
    archive: &Path,
    reader: &mut impl Read,
    (path, file): (&Path, File),
    mut hasher: Hasher,
) -> Result<(Digest, u64, Compression)> {
    let mut writer = BufWriter::with_capacity(COPY_BUFFER, file);
    let mut buffer = vec![0u8; COPY_BUFFER];
    let mut head = Vec::new();
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(Error::Io {
                    what: "reading archive",
                    path: archive.to_path_buf(),
                    source,
                });
            }
        };
        if head.len() < 4 {
            let more = (4 - head.len()).min(n);
            head.extend_from_slice(&buffer[..more]);
        }
        hasher.update(&buffer[..n]);
        writer
            .write_all(&buffer[..n])
            .map_err(io("writing", path))?;
    }
    let file = unbuffered(writer, path)?;
    file.sync_all().map_err(io("syncing", path))?;
    let size = hasher.bytes_seen();
    Ok((hasher.finish(), size, Compression::detect(&head)))
}

/// An entry's reader that must yield exactly `left` more bytes: an entry
/// cut short by the end of the archive is an error, not a short file.
struct Exact<'a, R> {
    inner: &'a mut R,
    left: u64,
    archive: &'a Path,
    name: &'a str,
}

impl<R: Read> Read for Exact<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the archive {} ends {} bytes before the end of entry {} (truncated)",
                    self.archive.display(),
                    self.left,
                    self.name
                ),
            ));
        }
        self.left = self.left.saturating_sub(n as u64);
        Ok(n)
    }
}

/// Whether `name` is a small JSON file read into memory: a top-level
/// `*.json`, `oci-layout` or `repositories`.
fn is_small_json(name: &str) -> bool {
    !name.contains('/')
        && (name.ends_with(".json") || name == "oci-layout" || name == "repositories")
}

/// Reads the entry `name` whole, refusing more than [`MAX_JSON_BYTES`].
fn read_small(archive: &Path, name: &str, entry: &mut impl Read) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    entry
        .take(MAX_JSON_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io("reading archive", archive))?;
    if bytes.len() as u64 > MAX_JSON_BYTES {
        return Err(Error::ArchiveEntry {
            archive: archive.to_path_buf(),
            entry: name.to_owned(),
            reason: format!("larger than {MAX_JSON_BYTES} bytes"),
        });
    }
    Ok(bytes)
}
