//! What import and export both know of image archives: the names of their
//! entries (normalized, links resolved inside the archive, the digest a
//! `blobs/<alg>/<hex>` name claims) and the items of a docker archive's
//! `manifest.json`. Names are only ever compared with names: no path from
//! an archive is joined to a filesystem path.

use ociref::Digest;
use serde::{Deserialize, Serialize};

/// The normalized name of a tar entry: `./` and empty components dropped,
/// `None` for an absolute name or one with a `..` component (such entries
/// are never matched). Names are only ever compared with names: no path
/// from an archive is joined to a filesystem path.
pub(crate) fn entry_name(raw: &str) -> Option<String> {
    if raw.starts_with('/') {
        return None;
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            part => parts.push(part),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The target of a link entry named `name`: a hard link's target is
/// relative to the archive root, a symbolic link's to the entry's
/// directory. `None` when it leaves the archive.
pub(crate) fn link_target(name: &str, target: &str, symbolic: bool) -> Option<String> {
    if !symbolic {
        return entry_name(target);
    }
    let dir = name.rsplit_once('/').map_or("", |(dir, _)| dir);
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    if target.starts_with('/') {
        return None;
    }
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The digest an entry named `blobs/<alg>/<hex>` claims, if it is one.
pub(crate) fn blob_name(name: &str) -> Option<Digest> {
    let rest = name.strip_prefix("blobs/")?;
    let (algorithm, encoded) = rest.split_once('/')?;
    if encoded.contains('/') {
        return None;
    }
    format!("{algorithm}:{encoded}").parse().ok()
}

/// The entry name of the blob `digest` in an OCI archive:
/// `blobs/<alg>/<hex>` (what [`blob_name`] reads back).
pub(crate) fn blob_entry_name(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.encoded())
}

/// One item of a docker archive's `manifest.json`: what `docker save`
/// writes and `docker load` reads.
#[derive(Debug, Deserialize, Serialize)]
pub(crate) struct DockerItem {
    /// The entry name of the image config.
    #[serde(rename = "Config")]
    pub(crate) config: String,
    /// The image's names (`alpine:3.20`); `null` or missing for none.
    #[serde(rename = "RepoTags", default)]
    pub(crate) repo_tags: Option<Vec<String>>,
    /// The entry names of the layers, base first.
    #[serde(rename = "Layers", default)]
    pub(crate) layers: Vec<String>,
}

/// The part of an image config that ties it to its layers.
#[derive(Debug, Deserialize)]
pub(crate) struct ConfigRootFs {
    /// Its `rootfs` object.
    pub(crate) rootfs: RootFs,
}

/// The `rootfs` of an image config.
#[derive(Debug, Deserialize)]
pub(crate) struct RootFs {
    /// The digest of each layer uncompressed, base first.
    #[serde(default)]
    pub(crate) diff_ids: Vec<Digest>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_normalized_and_escapes_refused() {
        assert_eq!(entry_name("./index.json").as_deref(), Some("index.json"));
        assert_eq!(
            entry_name("blobs//sha256/ab").as_deref(),
            Some("blobs/sha256/ab")
        );
        assert_eq!(entry_name("../index.json"), None);
        assert_eq!(entry_name("a/../../b"), None);
        assert_eq!(entry_name("/etc/passwd"), None);
        assert_eq!(entry_name("./"), None);
    }

    #[test]
    fn link_targets_resolve_inside_the_archive_only() {
        assert_eq!(
            link_target("b/layer.tar", "../a/layer.tar", true).as_deref(),
            Some("a/layer.tar")
        );
        assert_eq!(link_target("b/layer.tar", "../../x", true), None);
        assert_eq!(link_target("b/layer.tar", "/x", true), None);
        assert_eq!(
            link_target("b/layer.tar", "a/layer.tar", false).as_deref(),
            Some("a/layer.tar")
        );
    }

    #[test]
    fn blob_names_parse_only_in_blobs() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            blob_name(&format!("blobs/sha256/{hex}")).map(|d| d.to_string()),
            Some(format!("sha256:{hex}"))
        );
        let digest: Digest = format!("sha256:{hex}").parse().expect("digest");
        assert_eq!(blob_entry_name(&digest), format!("blobs/sha256/{hex}"));
        assert_eq!(blob_name(&format!("x/blobs/sha256/{hex}")), None);
        assert_eq!(blob_name("blobs/sha256/xyz"), None);
    }
}
