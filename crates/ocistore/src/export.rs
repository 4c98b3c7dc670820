//! Exporting stored images as an uncompressed tar archive: an OCI archive
//! (a tar of an OCI image layout, what `skopeo … oci-archive:FILE:REF`
//! reads) or a classic `docker save` archive (what `docker load` and
//! `skopeo … docker-archive:FILE` read).
//!
//! Every blob is hashed while it is copied; one that no longer matches its
//! digest aborts the export with [`Error::Corrupt`]. The archive is written
//! to a temp file next to the output, fsynced and renamed over it: the
//! output path never holds a half-written archive.

use crate::archive::{ConfigRootFs, DockerItem, blob_entry_name};
use crate::compression::{COPY_BUFFER, Compression, decompressed};
use crate::error::{Error, Result, io};
use crate::layout::{IndexEntry, IndexFile, LAYOUT_VERSION, Store, parent_dir};
use crate::temp_file::{TempFile, unbuffered};
use crate::walk::{children, is_manifest};
use ocidist::Descriptor;
use ociref::{Algorithm, Digest, HashingReader, HashingWriter, Reference};
use serde::Deserialize;
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::path::Path;

/// The kind of archive [`Store::export`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportFormat {
    /// A tar of an OCI image layout: `oci-layout`, `index.json` (one entry
    /// per reference, annotated `org.opencontainers.image.ref.name` = the
    /// full reference) and `blobs/sha256/<hex>`.
    Oci,
    /// A classic `docker save` archive: `manifest.json`, each config as
    /// `<hex>.json` and each layer decompressed as `<diff_id hex>/layer.tar`.
    Docker,
}

/// What [`Store::export`] wrote.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ExportReport {
    /// Blobs (manifests, configs, layers) written into the archive, each
    /// once.
    pub blobs_written: usize,
    /// Size of the archive.
    pub bytes_written: u64,
}

/// The archive being written.
type Builder = tar::Builder<BufWriter<File>>;

impl Store {
    /// Writes the images `references` name into a new archive at `out`
    /// (replacing it). Each must be stored ([`Error::ImageNotCached`]
    /// otherwise); none is marked used. Blocking: call it from
    /// `spawn_blocking` in async code.
    ///
    /// A docker archive names each image by its tag (`alpine:3.20`,
    /// `127.0.0.1:5000/app:v1`); references pinned only by digest get no
    /// `RepoTags`.
    pub fn export(
        &self,
        references: &[Reference],
        format: ExportFormat,
        out: &Path,
    ) -> Result<ExportReport> {
        let named: Vec<(Reference, Option<String>)> =
            references.iter().map(|r| (r.clone(), None)).collect();
        self.export_named(&named, format, out)
    }

    /// [`Store::export`] naming each image as given instead of by its
    /// reference (when `Some`): the `org.opencontainers.image.ref.name`
    /// of an OCI archive (`v1`, as `skopeo … oci-archive:FILE:v1` writes,
    /// or any name) or the `RepoTags` entry of a docker archive
    /// (`app:v1`). Blocking.
    pub fn export_named(
        &self,
        references: &[(Reference, Option<String>)],
        format: ExportFormat,
        out: &Path,
    ) -> Result<ExportReport> {
        // `gc` must not remove blobs while they are copied.
        let _lease = self.lock_shared("gc.lock")?;
        let index = self.read_index()?;
        let mut images = Vec::new();
        for (reference, given) in references {
            let name = reference.to_string();
            let Some(entry) = self.select_entry(&index, &name, None)? else {
                return Err(Error::ImageNotCached { reference: name });
            };
            let label = match (given, format) {
                (Some(given), _) => Some(given.clone()),
                (None, ExportFormat::Oci) => Some(name),
                (None, ExportFormat::Docker) => reference
                    .tag()
                    .map(|tag| format!("{}:{tag}", reference.familiar_name())),
            };
            images.push((label, entry.descriptor()));
        }
        let target = out.file_name().and_then(|n| n.to_str()).unwrap_or("export");
        let (temp, file) = TempFile::create(self, parent_dir(out), target)?;
        let mut builder = tar::Builder::new(BufWriter::with_capacity(COPY_BUFFER, file));
        let mut writer = Writer {
            store: self,
            temp: temp.path(),
            builder: &mut builder,
            report: ExportReport::default(),
        };
        match format {
            ExportFormat::Oci => writer.oci(&images)?,
            ExportFormat::Docker => writer.docker(&images)?,
        }
        let mut report = writer.report;
        let buffered = builder.into_inner().map_err(io("writing", temp.path()))?;
        let file = unbuffered(buffered, temp.path())?;
        file.sync_all().map_err(io("syncing", temp.path()))?;
        report.bytes_written = file.metadata().map_err(io("reading", temp.path()))?.len();
        drop(file);
        temp.persist(self, out)?;
        Ok(report)
    }
}

/// Writes entries into the archive.
struct Writer<'a> {
    store: &'a Store,
    temp: &'a Path,
    builder: &'a mut Builder,
    report: ExportReport,
}

impl Writer<'_> {
    /// An OCI archive of `images`, each under its name.
    fn oci(&mut self, images: &[(Option<String>, Descriptor)]) -> Result<()> {
        let layout = format!(r#"{{"imageLayoutVersion":"{LAYOUT_VERSION}"}}"#);
        self.file("oci-layout", layout.as_bytes())?;
        let mut index = IndexFile::default();
        for (name, descriptor) in images {
            let mut entry = IndexEntry::new(descriptor);
            match name {
                Some(name) => index.put(name, entry),
                None => {
                    entry.annotations = None;
                    index.manifests.push(entry);
                }
            }
        }
        let bytes = serde_json::to_vec(&index).expect("because an index always serializes");
        self.file("index.json", &bytes)?;
        self.dir("blobs/")?;
        self.dir("blobs/sha256/")?;
        let mut seen = HashSet::new();
        let mut stack: Vec<Descriptor> = images.iter().map(|(_, d)| d.clone()).collect();
        stack.reverse();
        while let Some(descriptor) = stack.pop() {
            if !seen.insert(descriptor.digest.clone()) {
                continue;
            }
            let name = blob_entry_name(&descriptor.digest);
            if is_manifest(&descriptor.media_type) {
                let bytes = self.store.read_blob(&descriptor.digest)?;
                self.file(&name, &bytes)?;
                let kids = children(&descriptor.digest, &bytes)?;
                stack.extend(kids.required.into_iter().rev());
            } else {
                self.blob(&name, &descriptor.digest)?;
            }
            self.report.blobs_written += 1;
        }
        Ok(())
    }

    /// A docker archive of `images` (image manifests only), each with
    /// its `RepoTags` name when it has one.
    fn docker(&mut self, images: &[(Option<String>, Descriptor)]) -> Result<()> {
        #[derive(Deserialize)]
        struct Manifest {
            config: Descriptor,
            #[serde(default)]
            layers: Vec<Descriptor>,
        }
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        for (name, descriptor) in images {
            let bytes = self.store.read_blob(&descriptor.digest)?;
            let invalid = |reason: String| Error::InvalidManifest {
                digest: descriptor.digest.clone(),
                reason,
            };
            let manifest: Manifest = serde_json::from_slice(&bytes)
                .map_err(|err| invalid(format!("not an image manifest: {err}")))?;
            let config_bytes = self.store.read_blob(&manifest.config.digest)?;
            let config: ConfigRootFs = serde_json::from_slice(&config_bytes)
                .map_err(|err| invalid(format!("its config is not usable: {err}")))?;
            if config.rootfs.diff_ids.len() != manifest.layers.len() {
                return Err(invalid(format!(
                    "{} layers but its config lists {} diff_ids",
                    manifest.layers.len(),
                    config.rootfs.diff_ids.len()
                )));
            }
            let config_name = format!("{}.json", manifest.config.digest.encoded());
            if seen.insert(config_name.clone()) {
                self.file(&config_name, &config_bytes)?;
                self.report.blobs_written += 1;
            }
            let mut layers = Vec::new();
            for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
                let name = format!("{}/layer.tar", diff_id.encoded());
                if seen.insert(name.clone()) {
                    self.dir(&format!("{}/", diff_id.encoded()))?;
                    self.layer(&name, &layer.digest, diff_id)?;
                    self.report.blobs_written += 1;
                }
                layers.push(name);
            }
            let repo_tags = name.iter().cloned().collect();
            items.push(DockerItem {
                config: config_name,
                repo_tags: Some(repo_tags),
                layers,
            });
        }
        let bytes = serde_json::to_vec(&items).expect("because manifest.json always serializes");
        self.file("manifest.json", &bytes)
    }

    /// The layer blob `digest`, decompressed, as `name`; its content must
    /// hash to `diff_id`.
    fn layer(&mut self, name: &str, digest: &Digest, diff_id: &Digest) -> Result<()> {
        if self.store.blob_compression(digest)? == Compression::None {
            if digest != diff_id {
                return Err(Error::DiffIdMismatch {
                    layer: digest.clone(),
                    expected: diff_id.clone(),
                    actual: digest.clone(),
                });
            }
            return self.blob(name, digest);
        }
        let store = self.store;
        let path = store.blob_path(digest);
        let (temp, out) = TempFile::create(store, &store.ingest_dir(), "layer.tar")?;
        let file = store.open_read(&path)?;
        let hashing = HashingReader::new(file, digest.supported_algorithm()?);
        let mut source = BufReader::with_capacity(COPY_BUFFER, hashing);
        let mut sink = HashingWriter::new(
            BufWriter::with_capacity(COPY_BUFFER, out),
            Algorithm::Sha256,
        );
        let decoded = decompressed(&mut source)
            .and_then(|mut decoder| std::io::copy(&mut decoder, &mut sink));
        // Whatever the decoder left unread is hashed too: a blob that does
        // not match its digest is reported as corrupt, not as bad data.
        let drained = std::io::copy(&mut source, &mut std::io::sink());
        let corrupt = || Error::Corrupt {
            digest: digest.clone(),
            path: path.clone(),
        };
        if source.into_inner().verify(digest).is_err() {
            return Err(corrupt());
        }
        decoded.map_err(io("decompressing", &path))?;
        drained.map_err(io("reading", &path))?;
        let (buffered, actual) = sink.finish();
        drop(unbuffered(buffered, temp.path())?);
        if actual != *diff_id {
            return Err(Error::DiffIdMismatch {
                layer: digest.clone(),
                expected: diff_id.clone(),
                actual,
            });
        }
        let mut file = temp.open_read()?;
        let size = file.metadata().map_err(io("reading", temp.path()))?.len();
        let mut header = header(size, tar::EntryType::Regular);
        self.builder
            .append_data(&mut header, name, &mut file)
            .map_err(io("writing", self.temp))?;
        Ok(())
    }

    /// The stored blob `digest` as `name`, hashed while copied.
    fn blob(&mut self, name: &str, digest: &Digest) -> Result<()> {
        let path = self.store.blob_path(digest);
        let file = self.store.open_read(&path)?;
        let size = file.metadata().map_err(io("reading", &path))?.len();
        let mut reader = HashingReader::new(file.take(size), digest.supported_algorithm()?);
        let mut header = header(size, tar::EntryType::Regular);
        self.builder
            .append_data(&mut header, name, &mut reader)
            .map_err(io("writing", self.temp))?;
        if reader.bytes_read() != size || reader.verify(digest).is_err() {
            return Err(Error::Corrupt {
                digest: digest.clone(),
                path,
            });
        }
        Ok(())
    }

    /// A small file from memory.
    fn file(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let mut header = header(bytes.len() as u64, tar::EntryType::Regular);
        self.builder
            .append_data(&mut header, name, bytes)
            .map_err(io("writing", self.temp))
    }

    /// A directory entry.
    fn dir(&mut self, name: &str) -> Result<()> {
        let mut header = header(0, tar::EntryType::Directory);
        header.set_mode(0o755);
        self.builder
            .append_data(&mut header, name, std::io::empty())
            .map_err(io("writing", self.temp))
    }
}

/// A ustar header: root-owned, mode 0644, mtime 0 (the archive depends on
/// the blobs only).
fn header(size: u64, kind: tar::EntryType) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}
