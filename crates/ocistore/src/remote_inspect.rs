//! `inspect --remote`: an image at its registry described as
//! [`Store::inspect`](crate::Store::inspect) describes a stored one
//! (manifest, config, layers with sizes, platforms), from the registry
//! alone. Nothing is stored and the store is not read.

use crate::error::{Error, Result};
use crate::inspect::{ImageDetails, Inspection, LayerDetails, PlatformEntry, parse_config};
use crate::sizes::is_layer;
use crate::walk::{children, index_entries, parse_config_platform};
use ocidist::{Client, Manifest, ManifestKind};
use ociref::{Platform, Reference};

/// Largest config read into memory.
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Describes `reference` at its registry: one `GET` of its manifest; for an
/// index, every platform it offers and the image of `platform` (best match;
/// `None`: the host's), one `GET` more; then the image's config. The shape
/// is [`Store::inspect`](crate::Store::inspect)'s: `record` is `None`,
/// `stored` and `present` are `false` (nothing is stored) and layers'
/// `uncompressed_size` is unknown. [`Error::NoMatchingPlatform`] when an
/// index offers nothing for the platform.
pub async fn inspect_remote(
    client: &Client,
    reference: &Reference,
    platform: Option<&Platform>,
) -> Result<Inspection> {
    let top = client.manifest(reference).await?;
    let mut platforms = Vec::new();
    let (image, index_digest) = match &top.kind {
        ManifestKind::Index(_) => {
            let entries = index_entries(&top.digest, &top.bytes)?;
            let wanted = platform.cloned().unwrap_or_else(Platform::host);
            let (_, chosen) = wanted
                .best_match(&entries, |(p, _)| {
                    let p = p.as_ref()?;
                    Some((p.os(), p.architecture(), p.variant()))
                })
                .ok_or_else(|| Error::NoMatchingPlatform {
                    reference: reference.to_string(),
                    platform: wanted.clone(),
                })?;
            let child = client
                .manifest(&reference.with_digest(chosen.digest.clone()))
                .await?;
            for (platform, manifest) in entries {
                platforms.push(PlatformEntry {
                    platform,
                    manifest,
                    stored: false,
                });
            }
            (child, Some(top.digest.clone()))
        }
        _ => (top.clone(), None),
    };
    let (details, config_bytes) = image_details(client, reference, &image).await?;
    if platforms.is_empty() {
        platforms.push(PlatformEntry {
            platform: config_bytes.as_deref().and_then(parse_config_platform),
            manifest: image.descriptor(),
            stored: false,
        });
    }
    Ok(Inspection {
        reference: reference.to_string(),
        top: top.descriptor(),
        index_digest,
        platforms,
        images: vec![details],
        record: None,
    })
}

/// The details of the image manifest `image`, with its config's bytes
/// (fetched from the registry).
async fn image_details(
    client: &Client,
    reference: &Reference,
    image: &Manifest,
) -> Result<(ImageDetails, Option<Vec<u8>>)> {
    let kids = children(&image.digest, &image.bytes)?;
    let config_bytes = match &kids.config {
        Some(config) => Some(
            client
                .blob_bytes(reference, config, MAX_CONFIG_BYTES)
                .await?
                .to_vec(),
        ),
        None => None,
    };
    let layers: Vec<LayerDetails> = kids
        .required
        .iter()
        .filter(|d| is_layer(&d.media_type))
        .map(|d| LayerDetails {
            descriptor: d.clone(),
            uncompressed_size: None,
            present: false,
        })
        .collect();
    let details = ImageDetails {
        manifest: image.descriptor(),
        config_descriptor: kids.config,
        config: config_bytes
            .as_deref()
            .map(parse_config)
            .unwrap_or_default(),
        compressed_size: layers.iter().map(|l| l.descriptor.size).sum(),
        uncompressed_size: None,
        layers,
    };
    Ok((details, config_bytes))
}
