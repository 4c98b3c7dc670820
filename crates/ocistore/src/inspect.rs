//! `inspect`: what a stored image is (manifest, config, layers with sizes,
//! platforms, history), read from the store alone.

use crate::error::{Error, Result};
use crate::layout::{IndexEntry, Store};
use crate::records::Record;
use crate::sizes::is_layer;
use crate::walk::children;
use ocidist::Descriptor;
use ociref::{Digest, Platform, Reference};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A stored image, as [`Store::inspect`] describes it.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Inspection {
    /// The reference name.
    pub reference: String,
    /// What the `index.json` entry points at (an image manifest, or an
    /// index for an all-platform pull).
    pub top: Descriptor,
    /// The index the image was picked from or is, when there is one.
    pub index_digest: Option<Digest>,
    /// Every platform the index offers (or the image's one), and whether
    /// it is stored.
    pub platforms: Vec<PlatformEntry>,
    /// The images stored for the reference: one, or one per stored
    /// platform.
    pub images: Vec<ImageDetails>,
    /// What the store recorded (none for entries another tool wrote).
    pub record: Option<Record>,
}

/// One platform of an index (or of a single image).
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct PlatformEntry {
    /// `os/arch[/variant]`, when valid (`None` for attestations and other
    /// entries without a platform).
    pub platform: Option<Platform>,
    /// Its image manifest.
    pub manifest: Descriptor,
    /// Whether that manifest and everything it needs are stored.
    pub stored: bool,
}

/// One image manifest with its config and layers.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct ImageDetails {
    /// The image manifest.
    pub manifest: Descriptor,
    /// The config blob.
    pub config_descriptor: Option<Descriptor>,
    /// The parts of the config people look at.
    pub config: ConfigSummary,
    /// The layers, base first.
    pub layers: Vec<LayerDetails>,
    /// Sum of the layers' stored sizes.
    pub compressed_size: u64,
    /// Sum of the layers' uncompressed sizes, when all are known.
    pub uncompressed_size: Option<u64>,
}

/// One layer.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct LayerDetails {
    /// Media type, digest and stored size.
    pub descriptor: Descriptor,
    /// Size once decompressed (counted by `inspect` the first time, then
    /// remembered); `None` when the blob is absent or does not decompress.
    pub uncompressed_size: Option<u64>,
    /// Whether the blob is in the store.
    pub present: bool,
}

/// What an image config says about running and building the image.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConfigSummary {
    /// Operating system.
    pub os: Option<String>,
    /// CPU architecture.
    pub architecture: Option<String>,
    /// CPU variant.
    pub variant: Option<String>,
    /// When the image was created (RFC 3339, as written).
    pub created: Option<String>,
    /// The default user.
    pub user: Option<String>,
    /// Environment, `NAME=value`.
    pub env: Vec<String>,
    /// The entrypoint.
    pub entrypoint: Vec<String>,
    /// Default arguments.
    pub cmd: Vec<String>,
    /// Working directory.
    pub working_dir: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The layers' uncompressed digests (`rootfs.diff_ids`).
    pub diff_ids: Vec<String>,
    /// How the image was built, oldest step first.
    pub history: Vec<HistoryEntry>,
}

/// One step of an image's history.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HistoryEntry {
    /// When the step ran.
    #[serde(default)]
    pub created: Option<String>,
    /// The command of the step.
    #[serde(default)]
    pub created_by: Option<String>,
    /// A comment.
    #[serde(default)]
    pub comment: Option<String>,
    /// Whether the step left no layer.
    #[serde(default)]
    pub empty_layer: bool,
}

impl Store {
    /// Describes the stored image `reference` without any request.
    /// [`Error::ImageNotCached`] when the store has no such reference.
    /// Blocking.
    pub fn inspect(&self, reference: &Reference) -> Result<Inspection> {
        self.inspect_platform(reference, None)
    }

    /// [`Store::inspect`] of the entry of `reference` for `platform` (the
    /// best match among the platforms stored; `None`: the only one, else
    /// the host's, else the plain-named one). [`Error::ImageNotCached`]
    /// when no stored platform matches. Holds `gc.lock` shared while it
    /// reads (a `gc` waits); to read the image's blobs afterwards, take a
    /// [`crate::Lease`] first. Blocking.
    pub fn inspect_platform(
        &self,
        reference: &Reference,
        platform: Option<&Platform>,
    ) -> Result<Inspection> {
        let _shared = match self.lock_shared("gc.lock") {
            Ok(file) => file,
            // Read-only to this process: inspect without the lock.
            Err(err) if crate::lease::unwritable(&err) => None,
            Err(err) => return Err(err),
        };
        let name = reference.to_string();
        let found = self.stored_entry(&name, platform)?;
        let entry = found.descriptor();
        let record = self.record(found.ref_name().unwrap_or(&name))?;
        let index_digest = record
            .as_ref()
            .and_then(|r| r.index_digest.clone())
            .or_else(|| is_index(&entry.media_type).then(|| entry.digest.clone()));
        let mut platforms = Vec::new();
        if let Some(index_digest) = &index_digest
            && self.has_blob(index_digest).is_some()
        {
            for child in self.index_children(index_digest)? {
                let stored = self.complete(&child.1)?.is_some();
                platforms.push(PlatformEntry {
                    platform: child.0,
                    manifest: child.1,
                    stored,
                });
            }
        }
        let image_manifests: Vec<Descriptor> = if is_index(&entry.media_type) {
            platforms
                .iter()
                .filter(|p| p.stored && !is_index(&p.manifest.media_type))
                .map(|p| p.manifest.clone())
                .collect()
        } else {
            vec![entry.clone()]
        };
        let mut images = Vec::new();
        for manifest in image_manifests {
            images.push(self.image_details(manifest)?);
        }
        if platforms.is_empty()
            && let Some(image) = images.first()
        {
            let config = &image.config;
            let platform = config
                .os
                .as_deref()
                .zip(config.architecture.as_deref())
                .and_then(|(os, arch)| Platform::new(os, arch, config.variant.as_deref()).ok());
            platforms.push(PlatformEntry {
                platform,
                manifest: image.manifest.clone(),
                stored: true,
            });
        }
        let record = match record {
            Some(record) if record.uncompressed_size.is_none() => {
                Some(self.fill_uncompressed_size(record, &images)?)
            }
            other => other,
        };
        Ok(Inspection {
            reference: name,
            top: entry,
            index_digest,
            platforms,
            images,
            record,
        })
    }

    /// The `index.json` entry of `name` for `platform` (as
    /// [`Store::inspect_platform`] chooses it), or
    /// [`Error::ImageNotCached`] naming the reference and platform.
    fn stored_entry(&self, name: &str, platform: Option<&Platform>) -> Result<IndexEntry> {
        let index = self.read_index()?;
        self.select_entry(&index, name, platform)?
            .ok_or_else(|| Error::ImageNotCached {
                reference: match platform {
                    Some(platform) => format!("{name} ({platform})"),
                    None => name.to_owned(),
                },
            })
    }

    /// The exact bytes of the manifest (or index) the entry of `reference`
    /// for `platform` names (chosen as [`Store::inspect_platform`] chooses
    /// it), with its descriptor: what `skopeo inspect --raw` prints.
    /// [`Error::ImageNotCached`] when no stored entry matches. Blocking.
    pub fn raw_manifest(
        &self,
        reference: &Reference,
        platform: Option<&Platform>,
    ) -> Result<(Descriptor, Vec<u8>)> {
        let name = reference.to_string();
        let found = self.stored_entry(&name, platform)?;
        let descriptor = found.descriptor();
        let bytes = self.read_blob(&descriptor.digest)?;
        Ok((descriptor, bytes))
    }

    /// Sets the record's uncompressed size from `images` once every layer's
    /// is known, and saves it.
    fn fill_uncompressed_size(
        &self,
        mut record: Record,
        images: &[ImageDetails],
    ) -> Result<Record> {
        let mut total = 0;
        for image in images {
            let Some(layers) = image.uncompressed_size else {
                return Ok(record);
            };
            total += layers
                + image.manifest.size
                + image.config_descriptor.as_ref().map_or(0, |c| c.size);
        }
        if let Some(index) = &record.index_digest {
            total += self.has_blob(index).unwrap_or(0);
        }
        record.uncompressed_size = Some(total);
        self.unless_read_only(self.write_record(&record))?;
        Ok(record)
    }

    /// The entries of the stored index `digest`, with their platforms.
    fn index_children(&self, digest: &Digest) -> Result<Vec<(Option<Platform>, Descriptor)>> {
        crate::walk::index_entries(digest, &self.read_blob(digest)?)
    }

    pub(crate) fn image_details(&self, manifest: Descriptor) -> Result<ImageDetails> {
        let bytes = self.read_blob(&manifest.digest)?;
        let kids = children(&manifest.digest, &bytes)?;
        let config = match &kids.config {
            Some(config) if self.has_blob(&config.digest).is_some() => {
                parse_config(&self.read_blob(&config.digest)?)
            }
            _ => ConfigSummary::default(),
        };
        let layers: Vec<LayerDetails> = kids
            .required
            .iter()
            .filter(|d| is_layer(&d.media_type))
            .map(|d| LayerDetails {
                descriptor: d.clone(),
                // Counted now (once per store) when no pull or unpack has.
                uncompressed_size: (self.has_blob(&d.digest) == Some(d.size))
                    .then(|| self.uncompressed_size(&d.digest).ok())
                    .flatten(),
                present: self.has_blob(&d.digest) == Some(d.size),
            })
            .collect();
        Ok(ImageDetails {
            compressed_size: layers.iter().map(|l| l.descriptor.size).sum(),
            uncompressed_size: layers.iter().map(|l| l.uncompressed_size).sum(),
            manifest,
            config_descriptor: kids.config,
            config,
            layers,
        })
    }
}

/// Whether `media_type` names an index (OCI index or Docker manifest list).
pub(crate) fn is_index(media_type: &str) -> bool {
    media_type == ocidist::OCI_INDEX || media_type == ocidist::DOCKER_MANIFEST_LIST
}

/// The summary of an image config; fields that are absent or of another
/// shape stay empty (configs in the wild vary).
pub(crate) fn parse_config(bytes: &[u8]) -> ConfigSummary {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Raw {
        os: Option<String>,
        architecture: Option<String>,
        variant: Option<String>,
        created: Option<String>,
        config: Option<RunConfig>,
        rootfs: Option<RootFs>,
        history: Option<Vec<HistoryEntry>>,
    }
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct RunConfig {
        #[serde(rename = "User")]
        user: Option<String>,
        #[serde(rename = "Env")]
        env: Option<Vec<String>>,
        #[serde(rename = "Entrypoint")]
        entrypoint: Option<Vec<String>>,
        #[serde(rename = "Cmd")]
        cmd: Option<Vec<String>>,
        #[serde(rename = "WorkingDir")]
        working_dir: Option<String>,
        #[serde(rename = "Labels")]
        labels: Option<BTreeMap<String, String>>,
    }
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct RootFs {
        diff_ids: Vec<String>,
    }
    let raw: Raw = serde_json::from_slice(bytes).unwrap_or_default();
    let run = raw.config.unwrap_or_default();
    ConfigSummary {
        os: raw.os,
        architecture: raw.architecture,
        variant: raw.variant,
        created: raw.created,
        user: run.user.filter(|u| !u.is_empty()),
        env: run.env.unwrap_or_default(),
        entrypoint: run.entrypoint.unwrap_or_default(),
        cmd: run.cmd.unwrap_or_default(),
        working_dir: run.working_dir.filter(|w| !w.is_empty()),
        labels: run.labels.unwrap_or_default(),
        diff_ids: raw.rootfs.unwrap_or_default().diff_ids,
        history: raw.history.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_summary_reads_docker_style_fields_and_tolerates_nulls() {
        let config = br#"{
            "architecture": "arm64", "variant": "v8", "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {"User": "", "Env": ["PATH=/bin"], "Entrypoint": null,
                       "Cmd": ["/bin/sh"], "WorkingDir": "/srv",
                       "Labels": {"a": "b"}},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:aa"]},
            "history": [{"created_by": "ADD x /", "empty_layer": false},
                        {"created_by": "CMD", "empty_layer": true}]
        }"#;
        let summary = parse_config(config);
        assert_eq!(summary.os.as_deref(), Some("linux"));
        assert_eq!(summary.variant.as_deref(), Some("v8"));
        assert_eq!(summary.user, None);
        assert_eq!(summary.env, ["PATH=/bin"]);
        assert!(summary.entrypoint.is_empty());
        assert_eq!(summary.cmd, ["/bin/sh"]);
        assert_eq!(summary.working_dir.as_deref(), Some("/srv"));
        assert_eq!(summary.labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(summary.diff_ids, ["sha256:aa"]);
        assert_eq!(summary.history.len(), 2);
        assert!(summary.history[1].empty_layer);
        assert!(parse_config(b"not json").env.is_empty());
    }
}
