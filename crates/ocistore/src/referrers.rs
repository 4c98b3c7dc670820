//! The stored referrers of an image: signatures, SBOMs and other artifacts
//! whose `subject` is the image, stored by a pull with
//! [`crate::PullOptions::referrers`].

use crate::error::{Error, Result};
use crate::layout::Store;
use ocidist::Descriptor;
use ociref::{Digest, Reference};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One stored referrer, as [`Store::referrers`] lists it.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct StoredReferrer {
    /// Its manifest: media type, digest, size.
    pub manifest: Descriptor,
    /// What it is (`application/spdx+json`, a signature type…): the
    /// manifest's `artifactType`, else its config's media type.
    pub artifact_type: Option<String>,
    /// The manifest it refers to (an image manifest of the reference).
    pub subject: Digest,
    /// The manifest's annotations.
    pub annotations: BTreeMap<String, String>,
}

impl Store {
    /// The referrers stored with `reference` (every platform of it), in
    /// the order they were pulled, each once. [`Error::ImageNotCached`]
    /// when the reference is not stored. Blocking.
    pub fn referrers(&self, reference: &Reference) -> Result<Vec<StoredReferrer>> {
        let name = reference.to_string();
        let index = self.read_index()?;
        let entries = index.entries_of(&name);
        if entries.is_empty() {
            return Err(Error::ImageNotCached { reference: name });
        }
        let mut digests: Vec<Digest> = Vec::new();
        for entry in entries {
            let record = self.record(entry.ref_name().unwrap_or(&name))?;
            for digest in record.map(|r| r.referrers).unwrap_or_default() {
                if !digests.contains(&digest) {
                    digests.push(digest);
                }
            }
        }
        let mut found = Vec::new();
        for digest in digests {
            let bytes = self.read_blob(&digest)?;
            found.push(describe(digest, &bytes)?);
        }
        Ok(found)
    }

    /// The exact bytes of the referrer `digest` of `reference`, one that
    /// [`Store::referrers`] lists ([`Error::ReferrerNotStored`] otherwise).
    /// Blocking.
    pub fn referrer_bytes(&self, reference: &Reference, digest: &Digest) -> Result<Vec<u8>> {
        if !self
            .referrers(reference)?
            .iter()
            .any(|r| r.manifest.digest == *digest)
        {
            return Err(Error::ReferrerNotStored {
                reference: reference.to_string(),
                digest: digest.clone(),
            });
        }
        self.read_blob(digest)
    }
}

/// What every referrer manifest says of itself, as `describe` and the
/// push of referrers read it.
#[derive(Deserialize)]
pub(crate) struct ReferrerHead {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    #[serde(rename = "artifactType")]
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    /// The image it refers to.
    pub(crate) subject: Option<Descriptor>,
}

impl ReferrerHead {
    /// Its media type (an OCI image manifest when it names none).
    pub(crate) fn media_type(&self) -> String {
        self.media_type
            .clone()
            .unwrap_or_else(|| ocidist::OCI_MANIFEST.to_owned())
    }

    /// Its artifact type: `artifactType`, else its config's media type.
    pub(crate) fn artifact_type(&self) -> Option<String> {
        self.artifact_type
            .clone()
            .or_else(|| self.config.as_ref().map(|c| c.media_type.clone()))
    }
}

/// The referrer manifest `bytes` (digest `digest`), described.
fn describe(digest: Digest, bytes: &[u8]) -> Result<StoredReferrer> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(flatten)]
        head: ReferrerHead,
        #[serde(default)]
        annotations: BTreeMap<String, String>,
    }
    let raw: Raw = serde_json::from_slice(bytes).map_err(|err| Error::InvalidManifest {
        digest: digest.clone(),
        reason: err.to_string(),
    })?;
    let subject = raw
        .head
        .subject
        .clone()
        .ok_or_else(|| Error::InvalidManifest {
            digest: digest.clone(),
            reason: "a referrer without a subject".into(),
        })?;
    Ok(StoredReferrer {
        manifest: Descriptor {
            media_type: raw.head.media_type(),
            size: bytes.len() as u64,
            digest,
        },
        artifact_type: raw.head.artifact_type(),
        subject: subject.digest,
        annotations: raw.annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_referrer_is_described_by_its_artifact_type_else_its_config() {
        let subject = Digest::sha256_of(b"image");
        let config = Digest::sha256_of(b"{}");
        let with_type = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "artifactType":"application/spdx+json",
            "config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{config}","size":2}},
            "layers":[],"subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "digest":"{subject}","size":5}},"annotations":{{"a":"b"}}}}"#
        );
        let described = describe(
            Digest::sha256_of(with_type.as_bytes()),
            with_type.as_bytes(),
        )
        .expect("described");
        assert_eq!(
            described.artifact_type.as_deref(),
            Some("application/spdx+json")
        );
        assert_eq!(described.subject, subject);
        assert_eq!(described.annotations["a"], "b");
        assert_eq!(described.manifest.size, with_type.len() as u64);
        let old_style = with_type.replace(r#""artifactType":"application/spdx+json","#, "");
        let described = describe(
            Digest::sha256_of(old_style.as_bytes()),
            old_style.as_bytes(),
        )
        .expect("described");
        assert_eq!(
            described.artifact_type.as_deref(),
            Some("application/vnd.oci.empty.v1+json")
        );
        let orphan = r#"{"schemaVersion":2,"layers":[]}"#;
        assert!(describe(Digest::sha256_of(orphan.as_bytes()), orphan.as_bytes()).is_err());
    }
}
