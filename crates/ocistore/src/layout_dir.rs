//! OCI image layout directories outside the store (skopeo's `oci:DIR`):
//! read as the tar stream an OCI archive of them would be, so that
//! [`Store::import`] reads them with the one archive reader, and written
//! one image at a time ([`Store::export_dir`]).
//!
//! Writing never leaves a half-written file under a final name: each blob
//! is copied into a temp file in `blobs/<alg>/`, hashed while copied,
//! fsynced and renamed; `index.json` is rewritten the same way last, so
//! a reader of the directory sees the old image or the new one, complete.

use crate::archive::blob_entry_name;
use crate::compression::COPY_BUFFER;
use crate::error::{Error, Result, io};
use crate::export::ExportReport;
use crate::layout::{IndexEntry, IndexFile, LAYOUT_VERSION, Store};
use crate::temp_file::{TempFile, unbuffered};
use crate::walk::{children, is_manifest};
use ocidist::Descriptor;
use ociref::{Digest, HashingReader, Reference};
use std::collections::HashSet;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::thread::JoinHandle;

/// A directory read as a tar stream: a thread writes `oci-layout`,
/// `index.json` and `blobs/` into a pipe; its error, if any, is the
/// reader's at the end of the stream.
struct DirTar {
    pipe: std::io::PipeReader,
    worker: Option<JoinHandle<std::io::Result<()>>>,
}

impl Read for DirTar {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.pipe.read(buf)?;
        if n == 0
            && let Some(worker) = self.worker.take()
        {
            worker
                .join()
                .map_err(|_| std::io::Error::other("the directory reader panicked"))??;
        }
        Ok(n)
    }
}

/// The OCI image layout directory `dir` as a tar stream (what an OCI
/// archive of it holds), and its size as far as known (0: unknown).
pub(crate) fn tar_stream(dir: &Path) -> Result<(Box<dyn Read>, u64)> {
    for name in ["index.json", "blobs"] {
        if !dir.join(name).exists() {
            return Err(Error::ArchiveFormat {
                archive: dir.to_path_buf(),
                reason: format!("the directory has no {name}: it is not an OCI image layout"),
            });
        }
    }
    let (reader, writer) = std::io::pipe().map_err(io("reading", dir))?;
    let root = dir.to_path_buf();
    let worker = std::thread::spawn(move || -> std::io::Result<()> {
        let mut builder = tar::Builder::new(BufWriter::with_capacity(COPY_BUFFER, writer));
        builder.follow_symlinks(false);
        for name in ["oci-layout", "index.json"] {
            let path = root.join(name);
            if path.exists() {
                builder.append_path_with_name(&path, name)?;
            }
        }
        builder.append_dir_all("blobs", root.join("blobs"))?;
        builder.into_inner()?.flush()
    });
    let stream = DirTar {
        pipe: reader,
        worker: Some(worker),
    };
    Ok((Box::new(stream), 0))
}

impl Store {
    /// Writes the stored image `reference` into the OCI image layout
    /// directory `dir` (created when missing; other images in it are
    /// kept), its `index.json` entry annotated
    /// `org.opencontainers.image.ref.name` = `name` (replacing an entry of
    /// that name). Every blob is hashed while copied ([`Error::Corrupt`]
    /// when one no longer matches); blobs the directory holds are kept.
    /// Blocking.
    pub fn export_dir(
        &self,
        reference: &Reference,
        name: &str,
        dir: &Path,
    ) -> Result<ExportReport> {
        // `gc` must not remove blobs while they are copied.
        let _lease = self.lock_shared("gc.lock")?;
        let index = self.read_index()?;
        let wanted = reference.to_string();
        let Some(entry) = self.select_entry(&index, &wanted, None)? else {
            return Err(Error::ImageNotCached { reference: wanted });
        };
        let top = entry.descriptor();
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let layout = self.open_dir(dir)?;
        match layout.stat("oci-layout")? {
            Some(_) => check_layout(dir, &layout.read("oci-layout")?)?,
            None => layout.write_atomic(
                "oci-layout",
                format!(r#"{{"imageLayoutVersion":"{LAYOUT_VERSION}"}}"#).as_bytes(),
            )?,
        }
        let mut report = ExportReport::default();
        let mut seen = HashSet::new();
        let mut stack = vec![top.clone()];
        while let Some(descriptor) = stack.pop() {
            if !seen.insert(descriptor.digest.clone()) {
                continue;
            }
            if is_manifest(&descriptor.media_type) {
                let bytes = self.read_blob(&descriptor.digest)?;
                let kids = children(&descriptor.digest, &bytes)?;
                stack.extend(kids.required.into_iter().rev());
            }
            report.bytes_written += self.copy_blob_to(dir, &descriptor)?;
            report.blobs_written += 1;
        }
        let mut file: IndexFile = match layout.stat("index.json")? {
            Some(_) => {
                let bytes = layout.read("index.json")?;
                serde_json::from_slice(&bytes).map_err(|source| Error::InvalidJson {
                    path: dir.join("index.json"),
                    source,
                })?
            }
            None => IndexFile::default(),
        };
        file.put(name, IndexEntry::new(&top));
        let bytes = serde_json::to_vec(&file).expect("because an index always serializes");
        layout.write_atomic("index.json", &bytes)?;
        Ok(report)
    }

    /// Copies the stored blob `descriptor` to `blobs/<alg>/<hex>` under
    /// `dir` unless a file of its size is there; the bytes written.
    fn copy_blob_to(&self, dir: &Path, descriptor: &Descriptor) -> Result<u64> {
        let digest = &descriptor.digest;
        let target = dir.join(blob_entry_name(digest));
        if std::fs::symlink_metadata(&target)
            .is_ok_and(|m| m.is_file() && m.len() == descriptor.size)
        {
            return Ok(0);
        }
        let blobs = target
            .parent()
            .expect("because a blob path has a directory");
        std::fs::create_dir_all(blobs).map_err(io("creating", blobs))?;
        let source = self.blob_path(digest);
        let file = self.open_read(&source)?;
        let (temp, out) = TempFile::create(self, blobs, digest.encoded())?;
        let mut reader = HashingReader::new(file, digest.supported_algorithm()?);
        let mut writer = BufWriter::with_capacity(COPY_BUFFER, out);
        let written =
            std::io::copy(&mut reader, &mut writer).map_err(io("writing", temp.path()))?;
        if reader.verify(digest).is_err() {
            return Err(corrupt(digest, &source));
        }
        let out = unbuffered(writer, temp.path())?;
        out.sync_all().map_err(io("syncing", temp.path()))?;
        drop(out);
        temp.persist(self, &target)?;
        Ok(written)
    }
}

/// [`Error::Corrupt`] for the stored blob `digest` at `path`.
fn corrupt(digest: &Digest, path: &Path) -> Error {
    Error::Corrupt {
        digest: digest.clone(),
        path: path.to_path_buf(),
    }
}

/// Refuses a directory whose `oci-layout` is of another version.
fn check_layout(dir: &Path, bytes: &[u8]) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct LayoutFile {
        #[serde(rename = "imageLayoutVersion")]
        version: String,
    }
    match serde_json::from_slice::<LayoutFile>(bytes) {
        Ok(layout) if layout.version == LAYOUT_VERSION => Ok(()),
        Ok(layout) => Err(Error::NotALayout {
            path: dir.to_path_buf(),
            reason: format!("unknown imageLayoutVersion {:?}", layout.version),
        }),
        Err(err) => Err(Error::NotALayout {
            path: dir.to_path_buf(),
            reason: format!("its oci-layout is not valid: {err}"),
        }),
    }
}
