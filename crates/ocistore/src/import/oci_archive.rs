//! The images of an OCI archive (a tar of an OCI image layout): named by
//! their `index.json` entries, picked from an index by platform, and
//! checked complete in the store.

use super::scan::Scan;
use super::{ImportOptions, Ready, parse_entry};
use crate::error::{Error, Result};
use crate::layout::{IndexFile, LAYOUT_VERSION, REF_NAME_ANNOTATION, Store};
use crate::walk::{children, parse_config_platform};
use ocidist::{DOCKER_MANIFEST_LIST, Descriptor, OCI_INDEX};
use ociref::{Digest, Platform, Reference};
use serde::Deserialize;
use std::path::Path;

/// The annotation containerd and Docker 25+ put the full image name in.
const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";

impl Store {
    /// The images of an OCI archive, checked complete.
    pub(super) fn oci_images(
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
        if options.one {
            return self.oci_one(archive, &index, options).map(|one| vec![one]);
        }
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

    /// The one image [`ImportOptions::one`] asks for, named by
    /// [`ImportOptions::name`], else by the archive's full name for it.
    fn oci_one(&self, archive: &Path, index: &IndexFile, options: &ImportOptions) -> Result<Ready> {
        let names: Vec<Vec<String>> = index
            .manifests
            .iter()
            .map(|entry| {
                [REF_NAME_ANNOTATION, CONTAINERD_NAME_ANNOTATION]
                    .iter()
                    .filter_map(|key| entry.annotations.as_ref()?.get(*key).cloned())
                    .collect()
            })
            .collect();
        if names.is_empty() {
            return Err(Error::ArchiveFormat {
                archive: archive.to_path_buf(),
                reason: "its index.json lists no image".into(),
            });
        }
        let n = super::pick_one(archive, &names, options.select.as_deref())?;
        let name = match &options.name {
            Some(name) => name.to_string(),
            None => names[n]
                .iter()
                .find_map(|value| full_reference(value))
                .ok_or_else(|| Error::ArchiveUnnamed {
                    archive: archive.to_path_buf(),
                    entry: match names[n].as_slice() {
                        [] => format!("index.json entry {n} (no ref.name)"),
                        given => format!("index.json entry {n} (ref.name {:?})", given[0]),
                    },
                })?,
        };
        self.complete_image(archive, name, &index.manifests[n].descriptor(), options)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
