//! The images of a `docker save` archive (`manifest.json`, classic or
//! Docker 25+): each item's config and layers found by name (links
//! followed), stored, and an OCI image manifest written for it.

use super::scan::Scan;
use super::{ImportOptions, ImportReport, Ready, parse_entry};
use crate::archive::{ConfigRootFs, DockerItem, blob_name, entry_name};
use crate::error::{Error, Result, io};
use crate::layout::Store;
use crate::walk::parse_config_platform;
use ocidist::media_types::OCI_LAYER_TAR;
use ocidist::{Descriptor, OCI_CONFIG, OCI_MANIFEST};
use ociref::{Digest, Reference};
use serde::Serialize;
use std::path::Path;

/// A config of a docker archive item, stored: its entry name, digest and
/// bytes.
struct StoredConfig {
    name: String,
    digest: Digest,
    bytes: Vec<u8>,
}

impl Store {
    /// The images of a docker archive, converted to OCI manifests and
    /// stored.
    pub(super) fn docker_images(
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
        let picked = if options.one {
            let names: Vec<Vec<String>> = items
                .iter()
                .map(|item| item.repo_tags.clone().unwrap_or_default())
                .collect();
            Some(super::pick_one(archive, &names, options.select.as_deref())?)
        } else {
            None
        };
        for (n, item) in items.iter().enumerate() {
            if picked.is_some_and(|one| one != n) {
                continue;
            }
            let config = self.docker_config(archive, &scan, n, item, report)?;
            let layers = self.docker_layers(archive, &mut scan, n, item, &config, report)?;
            let (manifest, compressed_size) = self.converted_manifest(&config, layers, report)?;
            let platform = parse_config_platform(&config.bytes);
            let names = match (&options.name, picked) {
                (Some(name), Some(_)) => vec![name.to_string()],
                _ => docker_names(archive, n, item, options, &mut used_name)?,
            };
            for name in names {
                ready.push(Ready {
                    name,
                    manifest: manifest.clone(),
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

    /// The config of `item` (number `n`): a blob already stored by the
    /// scan, or a JSON file of the archive, stored now.
    fn docker_config(
        &self,
        archive: &Path,
        scan: &Scan,
        n: usize,
        item: &DockerItem,
        report: &mut ImportReport,
    ) -> Result<StoredConfig> {
        let name = scan.resolve(&entry_name(&item.config).unwrap_or_default());
        let (digest, bytes) = match (blob_name(&name), scan.json.get(&name)) {
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
                    reason: format!("manifest.json item {n} names it but the archive lacks it"),
                });
            }
        };
        Ok(StoredConfig {
            name,
            digest,
            bytes,
        })
    }

    /// The layers of `item` (number `n`), stored, one for each diff ID of
    /// its `config`; an uncompressed one must hash to its diff ID.
    fn docker_layers(
        &self,
        archive: &Path,
        scan: &mut Scan,
        n: usize,
        item: &DockerItem,
        config: &StoredConfig,
        report: &mut ImportReport,
    ) -> Result<Vec<JsonDescriptor>> {
        let parsed: ConfigRootFs = parse_entry(archive, &config.name, &config.bytes)?;
        let diff_ids = parsed.rootfs.diff_ids;
        if diff_ids.len() != item.layers.len() {
            return Err(Error::ArchiveEntry {
                archive: archive.to_path_buf(),
                entry: config.name.clone(),
                reason: format!(
                    "it lists {} diff_ids but manifest.json item {n} has {} layers",
                    diff_ids.len(),
                    item.layers.len()
                ),
            });
        }
        let mut layers = Vec::new();
        for (layer_name, diff_id) in item.layers.iter().zip(&diff_ids) {
            let layer = self.docker_layer(archive, scan, layer_name, report)?;
            if layer.media_type == OCI_LAYER_TAR && layer.digest != *diff_id {
                return Err(Error::ArchiveDigestMismatch {
                    archive: archive.to_path_buf(),
                    entry: layer_name.clone(),
                    expected: diff_id.clone(),
                    actual: layer.digest,
                });
            }
            layers.push(layer);
        }
        Ok(layers)
    }

    /// Stores the OCI image manifest of `config` and `layers`; its
    /// descriptor and the compressed size of the image.
    fn converted_manifest(
        &self,
        config: &StoredConfig,
        layers: Vec<JsonDescriptor>,
        report: &mut ImportReport,
    ) -> Result<(Descriptor, u64)> {
        let manifest = OciManifest {
            schema_version: 2,
            media_type: OCI_MANIFEST.into(),
            config: JsonDescriptor {
                media_type: OCI_CONFIG.into(),
                digest: config.digest.clone(),
                size: config.bytes.len() as u64,
            },
            layers,
        };
        let bytes = serde_json::to_vec(&manifest).expect("because a manifest always serializes");
        let digest = self.put_counted(&bytes, report)?;
        let descriptor = Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest,
            size: bytes.len() as u64,
        };
        let compressed_size = descriptor.size
            + manifest.config.size
            + manifest.layers.iter().map(|l| l.size).sum::<u64>();
        Ok((descriptor, compressed_size))
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
            return Ok(JsonDescriptor {
                media_type: self.blob_compression(&digest)?.layer_media_type().into(),
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
}

/// The names `item` (number `n`) is stored under: its `RepoTags`, or the
/// import's name when none (for one item only: `used_name` tells).
fn docker_names(
    archive: &Path,
    n: usize,
    item: &DockerItem,
    options: &ImportOptions,
    used_name: &mut bool,
) -> Result<Vec<String>> {
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
        match (&options.name, *used_name) {
            (Some(name), false) => {
                *used_name = true;
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
    Ok(names)
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
