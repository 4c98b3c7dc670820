//! The media types the crates read and write, named once.
//!
//! The OCI names are `oci-spec`'s (`oci_spec::image::MediaType`; a unit
//! test holds each constant to it). They are repeated here as `&'static
//! str` constants because match arms and `const` items need them, which
//! `MediaType`'s `AsRef<str>` cannot give. The Docker names `oci-spec`
//! lacks (uncompressed, zstd and foreign layers, schema 1) are ours.

/// An OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// An OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// An OCI artifact manifest (image-spec 1.1 release candidates; still met
/// in registries).
pub const OCI_ARTIFACT_MANIFEST: &str = "application/vnd.oci.artifact.manifest.v1+json";
/// An uncompressed OCI layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// A gzip-compressed OCI layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// A zstd-compressed OCI layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// An uncompressed non-distributable OCI layer (deprecated by the spec).
pub const OCI_FOREIGN_LAYER_TAR: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
/// A gzip-compressed non-distributable OCI layer.
pub const OCI_FOREIGN_LAYER_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
/// A zstd-compressed non-distributable OCI layer.
pub const OCI_FOREIGN_LAYER_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";

/// A Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// A Docker schema 2 manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 1 manifests (refused).
pub const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];
/// An uncompressed Docker layer.
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// A gzip-compressed Docker layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// A zstd-compressed Docker layer (written by BuildKit).
pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
/// An uncompressed Docker foreign layer (Windows base layers).
pub const DOCKER_FOREIGN_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar";
/// A gzip-compressed Docker foreign layer.
pub const DOCKER_FOREIGN_LAYER_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// Whether `media_type` names a layer (a file system changeset), OCI or
/// Docker, distributable or not, whatever its compression.
pub fn is_layer(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.oci.image.layer.")
        || media_type.starts_with("application/vnd.docker.image.rootfs.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{MediaType, ToDockerV2S2};

    #[test]
    fn the_oci_names_are_oci_specs() {
        for (ours, spec) in [
            (OCI_MANIFEST, MediaType::ImageManifest),
            (OCI_INDEX, MediaType::ImageIndex),
            (OCI_CONFIG, MediaType::ImageConfig),
            (OCI_ARTIFACT_MANIFEST, MediaType::ArtifactManifest),
            (OCI_LAYER_TAR, MediaType::ImageLayer),
            (OCI_LAYER_GZIP, MediaType::ImageLayerGzip),
            (OCI_LAYER_ZSTD, MediaType::ImageLayerZstd),
            #[allow(deprecated)]
            (OCI_FOREIGN_LAYER_TAR, MediaType::ImageLayerNonDistributable),
            #[allow(deprecated)]
            (
                OCI_FOREIGN_LAYER_GZIP,
                MediaType::ImageLayerNonDistributableGzip,
            ),
            #[allow(deprecated)]
            (
                OCI_FOREIGN_LAYER_ZSTD,
                MediaType::ImageLayerNonDistributableZstd,
            ),
        ] {
            assert_eq!(ours, spec.as_ref());
            assert_eq!(MediaType::from(ours), spec, "{ours} parses to its variant");
        }
    }

    #[test]
    fn the_docker_names_oci_spec_knows_are_its_own() {
        for (ours, spec) in [
            (DOCKER_MANIFEST, MediaType::ImageManifest),
            (DOCKER_MANIFEST_LIST, MediaType::ImageIndex),
            (DOCKER_LAYER_GZIP, MediaType::ImageLayerGzip),
        ] {
            assert_eq!(Ok(ours), spec.to_docker_v2s2());
        }
    }

    #[test]
    fn layers_are_told_from_manifests_and_configs() {
        for layer in [
            OCI_LAYER_TAR,
            OCI_LAYER_GZIP,
            OCI_LAYER_ZSTD,
            OCI_FOREIGN_LAYER_GZIP,
            DOCKER_LAYER_TAR,
            DOCKER_LAYER_GZIP,
            DOCKER_LAYER_ZSTD,
            DOCKER_FOREIGN_LAYER_TAR,
        ] {
            assert!(is_layer(layer), "{layer}");
        }
        for other in [
            OCI_MANIFEST,
            OCI_CONFIG,
            DOCKER_MANIFEST,
            "application/json",
        ] {
            assert!(!is_layer(other), "{other}");
        }
    }
}
