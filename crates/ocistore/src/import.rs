//! Importing image archives: an OCI archive (a tar of an OCI image layout,
//! as `skopeo copy … oci-archive:FILE` writes) or a `docker save` archive
//! (`manifest.json`, classic or Docker 25+), plain, gzip or zstd.
//!
//! The archive is read in one sequential pass. Each regular file is
//! streamed into `.cachectl/ingest/` while hashed, never held in memory
//! (only small JSON files are, up to [`MAX_JSON_BYTES`]):
//! - `blobs/<alg>/<hex>` entries must hash to their name; the missing ones
//!   are renamed into `blobs/` at once, the present ones are skipped;
//! - other files (docker layers) stay in temp files until the end.
//!
//! Then every image is checked to be complete, the records are written and
//! `index.json` is updated once. An import that fails leaves `index.json`
//! and the records as they were, and no temp file; blobs it already
//! verified and moved into `blobs/` stay (valid, and `gc` removes them).
//!
//! No name from the archive is ever joined to a filesystem path: entry
//! names are only compared with the names the archive's JSON files use, and
//! entries named with `..` or an absolute path never match.

use crate::archive::{blob_name, entry_name, link_target};
use crate::compression::{COPY_BUFFER, Compression, ReadProgressFn};
use crate::error::{Error, Result, io};
use crate::layout::now_unix_ms;
use crate::layout::{IndexEntry, IndexFile, LAYOUT_VERSION, REF_NAME_ANNOTATION, Store};
use crate::records::Record;
use crate::temp_file::TempFile;
use crate::walk::{children, parse_config_platform};
use ocidist::{DOCKER_MANIFEST_LIST, Descriptor, OCI_INDEX, OCI_MANIFEST};
use ociref::{Digest, Hasher, Platform, Reference};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

/// Largest JSON file of an archive read into memory (`index.json`,
/// `manifest.json`, docker configs): 4 MiB.
pub(crate) const MAX_JSON_BYTES: u64 = 4 * 1024 * 1024;

/// Media type of an OCI image config.
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// The annotation containerd and Docker 25+ put the full image name in.
const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";

/// How to import.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ImportOptions {
    /// The name of an image the archive does not name fully: an OCI
    /// archive entry whose `org.opencontainers.image.ref.name` is a bare tag
    /// (`v1`, as skopeo writes) or missing, or a docker archive item
    /// without `RepoTags`. Only one image may take it.
    pub name: Option<Reference>,
    /// The platform to pick from an index; `None` means the host's.
    pub platform: Option<Platform>,
    /// Told how far the archive has been read (one pass, `(done, total)`
    /// bytes of the file).
    pub progress: Option<ReadProgressFn>,
}

impl ImportOptions {
    /// These options reporting the archive's read progress to `progress`.
    pub fn with_progress(mut self, progress: ReadProgressFn) -> Self {
        self.progress = Some(progress);
        self
    }

    /// These options with `name` for an image the archive does not name.
    pub fn with_name(mut self, name: Reference) -> Self {
        self.name = Some(name);
        self
    }

    /// These options picking `platform` from an index.
    pub fn with_platform(mut self, platform: Platform) -> Self {
        self.platform = Some(platform);
        self
    }
}

/// One image an import stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportedImage {
    /// The reference name now in `index.json` (full, normalized).
    pub reference: String,
    /// The image manifest it names.
    pub manifest_digest: Digest,
}

/// What [`Store::import`] did.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ImportReport {
    /// The images stored, in the order of the archive.
    pub images: Vec<ImportedImage>,
    /// Blobs written into the store.
    pub blobs_written: usize,
    /// Blobs the store already held (not written again).
    pub blobs_reused: usize,
    /// Bytes of the blobs written.
    pub bytes_written: u64,
}

/// A file of the archive kept in a temp file until the end.
#[derive(Debug)]
struct Staged {
    digest: Digest,
    size: u64,
    compression: Compression,
    /// `None` once moved into `blobs/`.
    temp: Option<TempFile>,
}

/// What one pass over the archive found.
#[derive(Debug, Default)]
struct Scan {
    /// Small JSON files at the top level, by name.
    json: HashMap<String, Vec<u8>>,
    /// Other regular files (not under `blobs/`), by name.
    staged: HashMap<String, Staged>,
    /// Link entries: name -> target name.
    links: HashMap<String, String>,
}

impl Scan {
    /// `name` with links followed (a few hops at most).
    fn resolve(&self, name: &str) -> String {
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

/// An image ready to be named: the manifest descriptor and its record
/// fields.
struct Ready {
    name: String,
    manifest: Descriptor,
    index_digest: Option<Digest>,
    platform: Option<Platform>,
    compressed_size: u64,
}

impl Store {
    /// Imports the image archive at `path` (see the [module docs]: format
    /// and compression are told from the content, every blob is verified).
    /// Blocking: call it from `spawn_blocking` in async code.
    ///
    /// [module docs]: crate::import
    pub fn import(&self, path: &Path, options: &ImportOptions) -> Result<ImportReport> {
        // Like a pull: `gc` must not sweep blobs written before the index
        // update.
        let _lease = self.lock_shared("gc.lock")?;
        let mut report = ImportReport::default();
        let scan = self.scan_archive(path, options.progress.as_ref(), &mut report)?;
        let ready = if scan.json.contains_key("manifest.json") {
            self.docker_images(path, scan, options, &mut report)?
        } else {
            self.oci_images(path, &scan, options)?
        };
        let blobs = self.root().join("blobs").join("sha256");
        self.open_dir(&blobs)?.sync()?;
        let now = now_unix_ms();
        let mut entries = Vec::new();
        for image in ready {
            let record = Record {
                reference: image.name.clone(),
                source: image.name.clone(),
                manifest_digest: image.manifest.digest.clone(),
                index_digest: image.index_digest,
                platforms: image.platform.iter().cloned().collect(),
                platform: image.platform,
                compressed_size: image.compressed_size,
                uncompressed_size: None,
                referrers: Vec::new(),
                stored_at: now,
                last_used_at: now,
            };
            report.images.push(ImportedImage {
                reference: image.name.clone(),
                manifest_digest: image.manifest.digest.clone(),
            });
            let mut entry = IndexEntry::new(&image.manifest);
            if let Some(platform) = &record.platform {
                entry.set_platform(platform);
            }
            entries.push((record, entry));
        }
        self.update_index(|index| {
            for (mut record, entry) in entries {
                // One entry per reference and platform (see `entries`); the
                // record first: a reader that finds the entry finds its
                // record too.
                record.reference =
                    self.name_for(index, &record.source, record.platform.as_ref())?;
                self.write_record(&record)?;
                index.put(&record.reference, entry);
            }
            Ok::<(), Error>(())
        })??;
        Ok(report)
    }

    /// The one pass over the archive.
    fn scan_archive(
        &self,
        path: &Path,
        progress: Option<&ReadProgressFn>,
        report: &mut ImportReport,
    ) -> Result<Scan> {
        let reader = crate::compression::open_decompressed(path, progress)?;
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

    /// Stores `bytes` as a blob unless present; counts it.
    fn put_counted(&self, bytes: &[u8], report: &mut ImportReport) -> Result<Digest> {
        let digest = Digest::sha256_of(bytes);
        if self.has_blob(&digest) == Some(bytes.len() as u64) {
            report.blobs_reused += 1;
        } else {
            self.put_blob_bytes(&digest, bytes)?;
            report.blobs_written += 1;
            report.bytes_written += bytes.len() as u64;
        }
        Ok(digest)
    }

    /// The images of an OCI archive, checked complete.
    fn oci_images(
        &self,
        archive: &Path,
        scan: &Scan,
        options: &ImportOptions,
    ) -> Result<Vec<Ready>> {
        if let Some(bytes) = scan.json.get("oci-layout") {
            check_layout(archive, bytes)?;
        }
        let Some(index) = scan.json.get("index.json") else {
            return Err(Error::ArchiveFormat {
                archive: archive.to_path_buf(),
                reason: "it holds neither index.json nor manifest.json (or it is truncated)".into(),
            });
        };
        let index: IndexFile = parse_entry(archive, "index.json", index)?;
        let mut ready = Vec::new();
        let mut unnamed = Vec::new();
        for (n, entry) in index.manifests.iter().enumerate() {
            let full = [REF_NAME_ANNOTATION, CONTAINERD_NAME_ANNOTATION]
                .iter()
                .filter_map(|key| entry.annotations.as_ref()?.get(*key))
                .find_map(|value| full_reference(value));
            let label = match entry.ref_name() {
                Some(bare) => format!("index.json entry {n} (ref.name {bare:?})"),
                None => format!("index.json entry {n} (no ref.name)"),
            };
            let name = match full {
                Some(name) => name,
                None => {
                    unnamed.push(label.clone());
                    match (&options.name, unnamed.len()) {
                        (Some(name), 1) => name.to_string(),
                        _ => {
                            return Err(Error::ArchiveUnnamed {
                                archive: archive.to_path_buf(),
                                entry: unnamed.join(", "),
                            });
                        }
                    }
                }
            };
            ready.push(self.complete_image(archive, name, &entry.descriptor(), options)?);
        }
        if ready.is_empty() {
            return Err(Error::ArchiveFormat {
                archive: archive.to_path_buf(),
                reason: "its index.json lists no image".into(),
            });
        }
        Ok(ready)
    }

    /// Checks that the image `top` names (picking from an index) is
    /// complete in the store; what its record needs.
    fn complete_image(
        &self,
        archive: &Path,
        name: String,
        top: &Descriptor,
        options: &ImportOptions,
    ) -> Result<Ready> {
        let bytes = self.present(archive, &name, top)?;
        let (manifest, bytes, index_digest, mut platform) =
            if top.media_type == OCI_INDEX || top.media_type == DOCKER_MANIFEST_LIST {
                let wanted = options.platform.clone().unwrap_or_else(Platform::host);
                let chosen = pick_platform(&top.digest, &bytes, &wanted, &name)?;
                let child = self.present(archive, &name, &chosen.0)?;
                (chosen.0, child, Some(top.digest.clone()), chosen.1)
            } else {
                (top.clone(), bytes, None, None)
            };
        let kids = children(&manifest.digest, &bytes)?;
        let mut compressed_size = manifest.size;
        for child in &kids.required {
            if self.has_blob(&child.digest) != Some(child.size) {
                return Err(Error::ArchiveMissingBlob {
                    archive: archive.to_path_buf(),
                    reference: name,
                    digest: child.digest.clone(),
                });
            }
            compressed_size += child.size;
        }
        if platform.is_none()
            && let Some(config) = &kids.config
        {
            platform = parse_config_platform(&self.read_blob(&config.digest)?);
        }
        Ok(Ready {
            name,
            manifest,
            index_digest,
            platform,
            compressed_size,
        })
    }

    /// The bytes of the (small) blob `descriptor`, which must be present.
    fn present(&self, archive: &Path, name: &str, descriptor: &Descriptor) -> Result<Vec<u8>> {
        if self.has_blob(&descriptor.digest) != Some(descriptor.size) {
            return Err(Error::ArchiveMissingBlob {
                archive: archive.to_path_buf(),
                reference: name.to_owned(),
                digest: descriptor.digest.clone(),
            });
        }
        self.read_blob(&descriptor.digest)
    }

    /// The images of a docker archive, converted to OCI manifests and
    /// stored.
    fn docker_images(
        &self,
        archive: &Path,
        mut scan: Scan,
        options: &ImportOptions,
        report: &mut ImportReport,
    ) -> Result<Vec<Ready>> {
        let items: Vec<DockerItem> = parse_entry(
            archive,
            "manifest.json",
            scan.json
                .get("manifest.json")
                .map_or(&[][..], Vec::as_slice),
        )?;
        let mut ready = Vec::new();
        let mut used_name = false;
        for (n, item) in items.iter().enumerate() {
            let config_name = scan.resolve(&entry_name(&item.config).unwrap_or_default());
            let (config_digest, config_bytes) =
                match (blob_name(&config_name), scan.json.get(&config_name)) {
                    (Some(digest), _) => {
                        if self.has_blob(&digest).is_none() {
                            return Err(Error::ArchiveMissingBlob {
                                archive: archive.to_path_buf(),
                                reference: format!("manifest.json item {n}"),
                                digest,
                            });
                        }
                        let bytes = self.read_blob(&digest)?;
                        (digest, bytes)
                    }
                    (None, Some(bytes)) => (self.put_counted(bytes, report)?, bytes.clone()),
                    (None, None) => {
                        return Err(Error::ArchiveEntry {
                            archive: archive.to_path_buf(),
                            entry: item.config.clone(),
                            reason: format!(
                                "manifest.json item {n} names it but the archive lacks it"
                            ),
                        });
                    }
                };
            let config: DockerConfig = parse_entry(archive, &config_name, &config_bytes)?;
            if config.rootfs.diff_ids.len() != item.layers.len() {
                return Err(Error::ArchiveEntry {
                    archive: archive.to_path_buf(),
                    entry: config_name,
                    reason: format!(
                        "it lists {} diff_ids but manifest.json item {n} has {} layers",
                        config.rootfs.diff_ids.len(),
                        item.layers.len()
                    ),
                });
            }
            let mut layers = Vec::new();
            for (layer_name, diff_id) in item.layers.iter().zip(&config.rootfs.diff_ids) {
                let layer = self.docker_layer(archive, &mut scan, layer_name, report)?;
                if layer.media_type == crate::compression::OCI_LAYER_TAR && layer.digest != *diff_id
                {
                    return Err(Error::ArchiveDigestMismatch {
                        archive: archive.to_path_buf(),
                        entry: layer_name.clone(),
                        expected: diff_id.clone(),
                        actual: layer.digest,
                    });
                }
                layers.push(layer);
            }
            let config_descriptor = JsonDescriptor {
                media_type: OCI_CONFIG.into(),
                digest: config_digest,
                size: config_bytes.len() as u64,
            };
            let manifest = OciManifest {
                schema_version: 2,
                media_type: OCI_MANIFEST.into(),
                config: config_descriptor,
                layers,
            };
            let manifest_bytes =
                serde_json::to_vec(&manifest).expect("because a manifest always serializes");
            let manifest_digest = self.put_counted(&manifest_bytes, report)?;
            let descriptor = Descriptor {
                media_type: OCI_MANIFEST.into(),
                digest: manifest_digest,
                size: manifest_bytes.len() as u64,
            };
            let compressed_size = descriptor.size
                + manifest.config.size
                + manifest.layers.iter().map(|l| l.size).sum::<u64>();
            let platform = parse_config_platform(&config_bytes);
            let mut names = Vec::new();
            for tag in item.repo_tags.iter().flatten() {
                let reference: Reference = tag.parse().map_err(|err| Error::ArchiveEntry {
                    archive: archive.to_path_buf(),
                    entry: "manifest.json".into(),
                    reason: format!("item {n}: RepoTags: {err}"),
                })?;
                names.push(reference.to_string());
            }
            if names.is_empty() {
                match (&options.name, used_name) {
                    (Some(name), false) => {
                        used_name = true;
                        names.push(name.to_string());
                    }
                    _ => {
                        return Err(Error::ArchiveUnnamed {
                            archive: archive.to_path_buf(),
                            entry: format!("manifest.json item {n} (no RepoTags)"),
                        });
                    }
                }
            }
            for name in names {
                ready.push(Ready {
                    name,
                    manifest: descriptor.clone(),
                    index_digest: None,
                    platform: platform.clone(),
                    compressed_size,
                });
            }
        }
        if ready.is_empty() {
            return Err(Error::ArchiveFormat {
                archive: archive.to_path_buf(),
                reason: "its manifest.json lists no image".into(),
            });
        }
        Ok(ready)
    }

    /// The layer `name` of a docker archive, moved into `blobs/` (when
    /// missing there); its descriptor.
    fn docker_layer(
        &self,
        archive: &Path,
        scan: &mut Scan,
        name: &str,
        report: &mut ImportReport,
    ) -> Result<JsonDescriptor> {
        let resolved = scan.resolve(&entry_name(name).unwrap_or_default());
        if let Some(digest) = blob_name(&resolved) {
            let Some(size) = self.has_blob(&digest) else {
                return Err(Error::ArchiveMissingBlob {
                    archive: archive.to_path_buf(),
                    reference: format!("layer {name}"),
                    digest,
                });
            };
            let path = self.blob_path(&digest);
            let mut head = [0u8; 4];
            let read = self
                .open_read(&path)?
                .read(&mut head)
                .map_err(io("reading", &path))?;
            return Ok(JsonDescriptor {
                media_type: Compression::detect(&head[..read]).layer_media_type().into(),
                digest,
                size,
            });
        }
        let Some(staged) = scan.staged.get_mut(&resolved) else {
            return Err(Error::ArchiveEntry {
                archive: archive.to_path_buf(),
                entry: name.to_owned(),
                reason: "manifest.json names it but the archive lacks it".into(),
            });
        };
        if let Some(temp) = staged.temp.take() {
            if self.has_blob(&staged.digest) == Some(staged.size) {
                report.blobs_reused += 1;
            } else {
                let target = self.blob_path(&staged.digest);
                let file = temp.open_read()?;
                file.sync_all().map_err(io("syncing", temp.path()))?;
                temp.persist(self, &target)?;
                report.blobs_written += 1;
                report.bytes_written += staged.size;
            }
        }
        Ok(JsonDescriptor {
            media_type: staged.compression.layer_media_type().into(),
            digest: staged.digest.clone(),
            size: staged.size,
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
    let file = writer.into_inner().map_err(|err| Error::Io {
        what: "writing",
        path: path.to_path_buf(),
        source: err.into_error(),
    })?;
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

/// Parses the JSON entry `name`.
fn parse_entry<T: serde::de::DeserializeOwned>(
    archive: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|err| Error::ArchiveEntry {
        archive: archive.to_path_buf(),
        entry: name.to_owned(),
        reason: err.to_string(),
    })
}

/// Refuses an `oci-layout` of another version.
fn check_layout(archive: &Path, bytes: &[u8]) -> Result<()> {
    #[derive(Deserialize)]
    struct LayoutFile {
        #[serde(rename = "imageLayoutVersion")]
        version: String,
    }
    let layout: LayoutFile = parse_entry(archive, "oci-layout", bytes)?;
    if layout.version != LAYOUT_VERSION {
        return Err(Error::ArchiveEntry {
            archive: archive.to_path_buf(),
            entry: "oci-layout".into(),
            reason: format!("unknown imageLayoutVersion {:?}", layout.version),
        });
    }
    Ok(())
}

/// The normalized reference `value` names when it is a full one (it has a
/// `/`: `example.com/app:v1`, `docker.io/library/alpine:3.20`); `None` for
/// a bare tag such as `v1` or `3.20`.
fn full_reference(value: &str) -> Option<String> {
    if !value.contains('/') {
        return None;
    }
    value.parse::<Reference>().ok().map(|r| r.to_string())
}

/// The manifest of the index `bytes` that best matches `wanted`, with its
/// platform.
fn pick_platform(
    digest: &Digest,
    bytes: &[u8],
    wanted: &Platform,
    name: &str,
) -> Result<(Descriptor, Option<Platform>)> {
    let entries = crate::walk::index_entries(digest, bytes)?;
    let (platform, descriptor) = wanted
        .best_match(&entries, |(p, _)| {
            let p = p.as_ref()?;
            Some((p.os(), p.architecture(), p.variant()))
        })
        .ok_or_else(|| Error::NoMatchingPlatform {
            reference: name.to_owned(),
            platform: wanted.clone(),
        })?;
    Ok((descriptor.clone(), platform.clone()))
}

/// One item of a docker archive's `manifest.json`.
#[derive(Debug, Deserialize)]
struct DockerItem {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// The part of an image config an import checks.
#[derive(Debug, Deserialize)]
struct DockerConfig {
    rootfs: RootFs,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<Digest>,
}

/// A descriptor as written into a converted manifest (fixed field order).
#[derive(Debug, Serialize)]
struct JsonDescriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: Digest,
    size: u64,
}

/// The OCI image manifest a docker archive item is converted to.
#[derive(Debug, Serialize)]
struct OciManifest {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: String,
    config: JsonDescriptor,
    layers: Vec<JsonDescriptor>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::OCI_LAYER_TAR;

    #[test]
    fn only_names_with_a_slash_are_full_references() {
        assert_eq!(full_reference("v1"), None);
        assert_eq!(full_reference("3.20"), None);
        assert_eq!(
            full_reference("example.com/app:v1").as_deref(),
            Some("example.com/app:v1")
        );
        assert_eq!(
            full_reference("library/alpine:3.20").as_deref(),
            Some("docker.io/library/alpine:3.20")
        );
        assert_eq!(full_reference("Bad/Name"), None);
    }

    fn file(builder: &mut tar::Builder<Vec<u8>>, name: &str, bytes: &[u8]) {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, name, bytes)
            .expect("in memory");
    }

    /// A one-file uncompressed layer and a config listing it `count` times.
    fn image(count: usize) -> (Vec<u8>, Digest, Vec<u8>) {
        let mut layer = tar::Builder::new(Vec::new());
        file(&mut layer, "hello", b"hello\n");
        let layer = layer.into_inner().expect("in memory");
        let diff_id = Digest::sha256_of(&layer);
        let config = serde_json::json!({
            "architecture": "arm64",
            "os": "linux",
            "rootfs": { "type": "layers", "diff_ids": vec![diff_id.to_string(); count] },
        });
        (
            layer,
            diff_id,
            serde_json::to_vec(&config).expect("serializes"),
        )
    }

    fn layers_of(store: &Store, manifest: &Digest) -> Vec<(String, String)> {
        let manifest: serde_json::Value =
            serde_json::from_slice(&store.read_blob(manifest).expect("stored")).expect("JSON");
        manifest["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| (l["mediaType"].to_string(), l["digest"].to_string()))
            .collect()
    }

    #[test]
    fn a_classic_docker_save_with_a_symlinked_layer_imports() {
        let (layer, diff_id, config) = image(2);
        let config_hex = Digest::sha256_of(&config).encoded().to_owned();
        let mut tar = tar::Builder::new(Vec::new());
        file(&mut tar, &format!("{config_hex}.json"), &config);
        file(&mut tar, "aaa/layer.tar", &layer);
        let mut link = tar::Header::new_ustar();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        tar.append_link(&mut link, "bbb/layer.tar", "../aaa/layer.tar")
            .expect("in memory");
        let manifest = serde_json::json!([{
            "Config": format!("{config_hex}.json"),
            "RepoTags": ["alpine:3.20"],
            "Layers": ["aaa/layer.tar", "bbb/layer.tar"],
        }]);
        file(&mut tar, "manifest.json", manifest.to_string().as_bytes());
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = dir.path().join("save.tar");
        std::fs::write(&archive, tar.into_inner().expect("in memory")).expect("written");
        let store = Store::open(dir.path().join("store")).expect("store");
        let report = store
            .import(&archive, &ImportOptions::default())
            .expect("imports");
        assert_eq!(report.images.len(), 1);
        assert_eq!(report.images[0].reference, "docker.io/library/alpine:3.20");
        let layer_entry = (format!("{OCI_LAYER_TAR:?}"), format!("\"{diff_id}\""));
        assert_eq!(
            layers_of(&store, &report.images[0].manifest_digest),
            [layer_entry.clone(), layer_entry]
        );
        let record = store
            .record("docker.io/library/alpine:3.20")
            .expect("reads")
            .expect("a record");
        assert_eq!(
            record.platform,
            Some("linux/arm64".parse().expect("platform"))
        );
        assert!(store.verify().expect("verify").is_ok());
        assert_eq!(
            std::fs::read_dir(store.ingest_dir())
                .expect("ingest")
                .count(),
            0
        );
    }

    #[test]
    fn a_docker_25_archive_with_blob_paths_imports_under_options_name() {
        let (layer, diff_id, config) = image(1);
        let config_digest = Digest::sha256_of(&config);
        let mut tar = tar::Builder::new(Vec::new());
        file(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        file(
            &mut tar,
            "index.json",
            br#"{"schemaVersion":2,"manifests":[]}"#,
        );
        let blob = |d: &Digest| format!("blobs/sha256/{}", d.encoded());
        file(&mut tar, &blob(&config_digest), &config);
        file(&mut tar, &blob(&diff_id), &layer);
        let manifest = serde_json::json!([{
            "Config": blob(&config_digest),
            "RepoTags": null,
            "Layers": [blob(&diff_id)],
        }]);
        file(&mut tar, "manifest.json", manifest.to_string().as_bytes());
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = dir.path().join("save.tar");
        std::fs::write(&archive, tar.into_inner().expect("in memory")).expect("written");
        let store = Store::open(dir.path().join("store")).expect("store");
        let err = store
            .import(&archive, &ImportOptions::default())
            .expect_err("no RepoTags and no name");
        assert!(matches!(err, Error::ArchiveUnnamed { .. }), "{err:?}");
        let name: Reference = "example.com/app:v2".parse().expect("reference");
        let report = store
            .import(&archive, &ImportOptions::default().with_name(name))
            .expect("imports");
        assert_eq!(report.images[0].reference, "example.com/app:v2");
        assert_eq!(
            layers_of(&store, &report.images[0].manifest_digest),
            [(format!("{OCI_LAYER_TAR:?}"), format!("\"{diff_id}\""))]
        );
        assert!(store.verify().expect("verify").is_ok());
    }

    #[test]
    fn an_uncompressed_docker_layer_must_hash_to_its_diff_id() {
        let (layer, _, _) = image(1);
        let other = Digest::sha256_of(b"another layer");
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": { "type": "layers", "diff_ids": [other.to_string()] },
        })
        .to_string();
        let mut tar = tar::Builder::new(Vec::new());
        file(&mut tar, "c.json", config.as_bytes());
        file(&mut tar, "x/layer.tar", &layer);
        let manifest =
            r#"[{"Config":"c.json","RepoTags":["a.example/b:c"],"Layers":["x/layer.tar"]}]"#;
        file(&mut tar, "manifest.json", manifest.as_bytes());
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = dir.path().join("save.tar");
        std::fs::write(&archive, tar.into_inner().expect("in memory")).expect("written");
        let store = Store::open(dir.path().join("store")).expect("store");
        let err = store
            .import(&archive, &ImportOptions::default())
            .expect_err("the layer is not its diff_id");
        assert!(
            matches!(&err, Error::ArchiveDigestMismatch { entry, expected, .. }
                if entry == "x/layer.tar" && *expected == other),
            "{err:?}"
        );
        assert!(store.list().expect("list").is_empty());
        assert_eq!(
            std::fs::read_dir(store.ingest_dir())
                .expect("ingest")
                .count(),
            0
        );
    }

    #[test]
    fn entries_named_outside_the_archive_are_never_matched() {
        let mut tar = tar::Builder::new(Vec::new());
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        for name in ["../index.json", "/index.json", "x/../../manifest.json"] {
            // `set_path` refuses such names: write the raw header field.
            let mut header = tar::Header::new_old();
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_size(index.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append(&header, &index[..]).expect("in memory");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = dir.path().join("escape.tar");
        std::fs::write(&archive, tar.into_inner().expect("in memory")).expect("written");
        let store = Store::open(dir.path().join("store")).expect("store");
        let err = store
            .import(&archive, &ImportOptions::default())
            .expect_err("nothing usable");
        assert!(matches!(err, Error::ArchiveFormat { .. }), "{err:?}");
        assert!(!dir.path().join("index.json").exists());
        assert!(!dir.path().join("manifest.json").exists());
    }
}
