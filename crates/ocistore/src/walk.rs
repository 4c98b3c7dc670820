//! What a stored manifest or index points at, read from its JSON without
//! re-serializing anything.

use crate::error::{Error, Result};
use ocidist::Descriptor;
use ociref::{Digest, Platform};
use serde::Deserialize;

/// The descriptors a manifest or index refers to.
#[derive(Debug, Default)]
pub(crate) struct Children {
    /// The config of an image manifest.
    pub(crate) config: Option<Descriptor>,
    /// Everything that must be present for the content to be usable:
    /// config and layers (`blobs` of artifact manifests), or the manifests
    /// of an index.
    pub(crate) required: Vec<Descriptor>,
    /// The `subject` (a referrer's image); never required.
    pub(crate) subject: Option<Descriptor>,
}

/// Whether `media_type` names a manifest or index (whose blob refers to
/// other blobs).
pub(crate) fn is_manifest(media_type: &str) -> bool {
    ocidist::is_manifest_media_type(media_type)
        || media_type == ocidist::media_types::OCI_ARTIFACT_MANIFEST
}

/// The children of the manifest or index `bytes` (digest `digest`).
pub(crate) fn children(digest: &Digest, bytes: &[u8]) -> Result<Children> {
    #[derive(Deserialize)]
    struct Any {
        config: Option<Descriptor>,
        #[serde(default)]
        layers: Vec<Descriptor>,
        #[serde(default)]
        blobs: Vec<Descriptor>,
        #[serde(default)]
        manifests: Vec<Descriptor>,
        subject: Option<Descriptor>,
    }
    let any: Any = serde_json::from_slice(bytes).map_err(|err| Error::InvalidManifest {
        digest: digest.clone(),
        reason: err.to_string(),
    })?;
    let mut required = Vec::new();
    required.extend(any.config.clone());
    required.extend(any.layers);
    required.extend(any.blobs);
    required.extend(any.manifests);
    Ok(Children {
        config: any.config,
        required,
        subject: any.subject,
    })
}

/// The platform an image config declares (`os`, `architecture`,
/// `variant`), if it is readable.
pub(crate) fn parse_config_platform(bytes: &[u8]) -> Option<Platform> {
    #[derive(Deserialize)]
    struct Config {
        os: String,
        architecture: String,
        variant: Option<String>,
    }
    let config: Config = serde_json::from_slice(bytes).ok()?;
    Platform::new(&config.os, &config.architecture, config.variant.as_deref()).ok()
}

/// The entries of the index `bytes` (digest `digest`), each with its
/// platform when it names a valid one (attestations and other entries get
/// `None`).
pub(crate) fn index_entries(
    digest: &Digest,
    bytes: &[u8],
) -> Result<Vec<(Option<Platform>, Descriptor)>> {
    #[derive(Deserialize)]
    struct Index {
        #[serde(default)]
        manifests: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        #[serde(flatten)]
        descriptor: Descriptor,
        platform: Option<PlatformJson>,
    }
    #[derive(Deserialize)]
    struct PlatformJson {
        os: String,
        architecture: String,
        variant: Option<String>,
    }
    let index: Index = serde_json::from_slice(bytes).map_err(|err| Error::InvalidManifest {
        digest: digest.clone(),
        reason: err.to_string(),
    })?;
    Ok(index
        .manifests
        .into_iter()
        .map(|e| {
            let platform = e
                .platform
                .and_then(|p| Platform::new(&p.os, &p.architecture, p.variant.as_deref()).ok());
            (platform, e.descriptor)
        })
        .collect())
}
