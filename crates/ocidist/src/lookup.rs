//! Look-ups that store nothing: the digest a reference resolves to, and
//! the manifest it names, for a platform when it names an index.

use crate::client::Client;
use crate::error::{Error, Result};
use crate::manifest::{Descriptor, Manifest, ManifestKind};
use ociref::{Platform, Reference};

impl Client {
    /// The descriptor `reference` resolves to ([`Client::resolve`]: one
    /// `HEAD`). With `platform`, when that is an index (or a Docker
    /// manifest list), the descriptor of the manifest it offers for the
    /// platform (best match, as a pull picks it; one `GET` of the index
    /// more), [`Error::NotFound`] when it offers none; a single image is
    /// returned as it is.
    pub async fn resolve_platform(
        &self,
        reference: &Reference,
        platform: Option<&Platform>,
    ) -> Result<Descriptor> {
        let top = self.resolve(reference).await?;
        let Some(platform) = platform else {
            return Ok(top);
        };
        if !is_index(&top.media_type) {
            return Ok(top);
        }
        let index = self.manifest(&reference.with_digest(top.digest)).await?;
        let ManifestKind::Index(ref parsed) = index.kind else {
            return Ok(index.descriptor());
        };
        pick_platform(reference, parsed, platform)
    }

    /// The manifest `reference` names, its exact bytes ([`Client::manifest`]:
    /// one `GET`). With `platform`, when that is an index, the manifest it
    /// offers for the platform instead (best match, as a pull picks it; one
    /// `GET` more), [`Error::NotFound`] when it offers none.
    pub async fn manifest_for_platform(
        &self,
        reference: &Reference,
        platform: Option<&Platform>,
    ) -> Result<Manifest> {
        let top = self.manifest(reference).await?;
        let (Some(platform), ManifestKind::Index(index)) = (platform, &top.kind) else {
            return Ok(top);
        };
        let child = pick_platform(reference, index, platform)?;
        self.manifest(&reference.with_digest(child.digest)).await
    }
}

/// The descriptor of the best match for `platform` among the entries of
/// `index` (that of `reference`).
fn pick_platform(
    reference: &Reference,
    index: &oci_spec::image::ImageIndex,
    platform: &Platform,
) -> Result<Descriptor> {
    let children: Vec<(Platform, &oci_spec::image::Descriptor)> = index
        .manifests()
        .iter()
        .filter_map(|child| {
            let given = child.platform().as_ref()?;
            let platform = Platform::new(
                &given.os().to_string(),
                &given.architecture().to_string(),
                given.variant().as_deref(),
            )
            .ok()?;
            Some((platform, child))
        })
        .collect();
    let found = platform
        .best_match(&children, |(p, _)| {
            Some((p.os(), p.architecture(), p.variant()))
        })
        .ok_or_else(|| Error::NotFound {
            registry: reference.registry().to_owned(),
            what: format!("a manifest for platform {platform} in {reference}"),
        })?;
    Descriptor::from_oci(found.1)
}

/// Whether `media_type` names an index or a Docker manifest list.
fn is_index(media_type: &str) -> bool {
    media_type == crate::media_types::OCI_INDEX
        || media_type == crate::media_types::DOCKER_MANIFEST_LIST
}
