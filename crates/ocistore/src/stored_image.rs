//! A stored image, resolved once: the reference, the platform's manifest,
//! its config and layers, and the [`Lease`] that keeps their blobs from
//! `gc` while the value lives.

use crate::error::{Error, Result};
use crate::inspect::{ConfigSummary, ImageDetails, LayerDetails};
use crate::layout::Store;
use crate::lease::Lease;
use ociref::{Platform, Reference};

/// How many times [`Store::image`] resolves again when the reference was
/// re-tagged between its lease and its inspection.
const LEASE_TRIES: usize = 3;

/// One image of the store, for one platform, with every layer present
/// (or, from [`Store::pull_following`], being downloaded). Made by
/// [`Store::image`]; readers (unpack, builds, exports) take it
/// instead of looking the reference up again. Holding it keeps the
/// image's blobs from [`Store::gc`]; drop it when they are read.
#[derive(Debug)]
pub struct StoredImage {
    store: Store,
    reference: Reference,
    details: ImageDetails,
    _lease: Lease,
}

impl StoredImage {
    /// The image `details` of `reference`, held by `lease`.
    pub(crate) fn new(
        store: Store,
        reference: Reference,
        details: ImageDetails,
        lease: Lease,
    ) -> StoredImage {
        StoredImage {
            store,
            reference,
            details,
            _lease: lease,
        }
    }

    /// The store the image is in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The reference it was resolved from.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// Its manifest, config and layers, as [`Store::inspect`] tells them.
    pub fn details(&self) -> &ImageDetails {
        &self.details
    }

    /// The image manifest's descriptor.
    pub fn manifest(&self) -> &ocidist::Descriptor {
        &self.details.manifest
    }

    /// The parts of its config people look at.
    pub fn config(&self) -> &ConfigSummary {
        &self.details.config
    }

    /// Its layers, base first (all present in the store).
    pub fn layers(&self) -> &[LayerDetails] {
        &self.details.layers
    }

    /// Its platform, when the config names one.
    pub fn platform(&self) -> Option<Platform> {
        let config = &self.details.config;
        Platform::new(
            config.os.as_deref()?,
            config.architecture.as_deref()?,
            config.variant.as_deref(),
        )
        .ok()
    }
}

impl Store {
    /// The stored image of `reference` for `platform`: the only one, or
    /// the best match ([`Platform::best_match`]) when the reference holds
    /// several (the host's platform when `platform` is `None`). Leases the
    /// reference first, then resolves again if it was re-tagged in
    /// between, so the value holds what it describes. Fails with
    /// [`Error::ImageNotCached`] when the reference is not stored,
    /// [`Error::PlatformNotCached`] when no stored platform matches and
    /// [`Error::LayerMissing`] when a layer blob is absent. No request.
    /// Blocking.
    pub fn image(&self, reference: &Reference, platform: Option<&Platform>) -> Result<StoredImage> {
        let mut tries = 0;
        let (lease, inspection) = loop {
            tries += 1;
            let lease = self.lease(reference)?;
            let inspection = self.inspect_platform(reference, platform)?;
            // Re-tagged since the lease: lease what the name holds now.
            if lease.holds(&inspection.top.digest) || tries == LEASE_TRIES {
                break (lease, inspection);
            }
        };
        let not_found = || Error::PlatformNotCached {
            reference: reference.to_string(),
            platform: platform.map_or_else(|| "any".to_owned(), ToString::to_string),
        };
        let host = Platform::host();
        let wanted = match platform {
            None if inspection.images.len() == 1 => None,
            None => Some(&host),
            Some(platform) => Some(platform),
        };
        let details = match wanted {
            None => inspection.images.into_iter().next(),
            Some(wanted) => wanted
                .best_match(&inspection.images, |image| {
                    let config = &image.config;
                    Some((
                        config.os.as_deref()?,
                        config.architecture.as_deref()?,
                        config.variant.as_deref(),
                    ))
                })
                .cloned(),
        }
        .ok_or_else(not_found)?;
        if let Some(layer) = details.layers.iter().find(|layer| !layer.present) {
            return Err(Error::LayerMissing {
                reference: reference.to_string(),
                layer: layer.descriptor.digest.clone(),
            });
        }
        Ok(StoredImage {
            store: self.clone(),
            reference: reference.clone(),
            details,
            _lease: lease,
        })
    }
}
