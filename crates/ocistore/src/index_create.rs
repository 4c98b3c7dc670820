//! `index create`: a multi-platform OCI index assembled from stored
//! single-platform images (each one's platform read from its config),
//! stored and named like an all-platform pull, so that `push` sends it
//! with every platform.

use crate::error::{Error, Result};
use crate::inspect::is_index;
use crate::layout::{IndexEntry, Store, now_unix_ms};
use crate::records::Record;
use crate::walk::{children, is_manifest, parse_config_platform};
use ocidist::Descriptor;
use ociref::{Digest, Platform, Reference};
use serde::Serialize;

/// What [`Store::create_index`] stored.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct CreatedIndex {
    /// The name it is stored under.
    pub reference: String,
    /// The index: OCI index media type, digest and size.
    pub index: Descriptor,
    /// Its entries, in the order of the sources.
    pub manifests: Vec<IndexMember>,
}

/// One entry of a [`CreatedIndex`].
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct IndexMember {
    /// The stored image it was made of.
    pub source: String,
    /// Its platform, from its config.
    pub platform: Platform,
    /// Its image manifest.
    pub manifest: Descriptor,
}

impl Store {
    /// Stores an OCI image index of the stored images `sources` (each the
    /// entry [`Store::inspect`] would pick: the only platform, else the
    /// host's) and names it `name` (replacing every platform `name` held).
    /// Each entry's platform is its config's. Refused with
    /// [`Error::IndexInput`], before anything is written: no source, a
    /// source that is an index (or not an image), whose config names no
    /// platform, or whose platform another source has already;
    /// [`Error::ImageNotCached`] and [`Error::ImageIncomplete`] for a
    /// source not (wholly) stored. Blocking.
    pub fn create_index(&self, name: &Reference, sources: &[Reference]) -> Result<CreatedIndex> {
        let name = name.to_string();
        let refuse = |source_ref: &str, reason: String| Error::IndexInput {
            name: name.clone(),
            source_ref: source_ref.to_owned(),
            reason,
        };
        if sources.is_empty() {
            return Err(refuse("(none)", "no image was given".into()));
        }
        // Held while the sources are read and the index named: a `gc`
        // waits, so no blob the index needs goes in between.
        let _shared = self.lock_shared("gc.lock")?;
        let index = self.read_index()?;
        let mut members: Vec<IndexMember> = Vec::new();
        let mut blobs: Vec<Descriptor> = Vec::new();
        for source in sources {
            let source = source.to_string();
            let entry = self
                .select_entry(&index, &source, None)?
                .ok_or_else(|| Error::ImageNotCached {
                    reference: source.clone(),
                })?
                .descriptor();
            if is_index(&entry.media_type) || !is_manifest(&entry.media_type) {
                return Err(refuse(
                    &source,
                    format!(
                        "it is {} ({}), not a single-platform image; name the images of its \
                         platforms instead",
                        if is_index(&entry.media_type) {
                            "a multi-platform index"
                        } else {
                            "not an image manifest"
                        },
                        entry.media_type
                    ),
                ));
            }
            if self.complete(&entry)?.is_none() {
                return Err(Error::ImageIncomplete { reference: source });
            }
            let kids = children(&entry.digest, &self.read_blob(&entry.digest)?)?;
            let platform = match &kids.config {
                Some(config) => parse_config_platform(&self.read_blob(&config.digest)?),
                None => None,
            }
            .ok_or_else(|| refuse(&source, "its config names no os and architecture".into()))?;
            if let Some(other) = members.iter().find(|m| m.platform == platform) {
                return Err(refuse(
                    &source,
                    format!(
                        "its platform {platform} is {}'s too; an index holds one image per \
                         platform",
                        other.source
                    ),
                ));
            }
            blobs.push(entry.clone());
            blobs.extend(kids.required);
            members.push(IndexMember {
                source,
                platform,
                manifest: entry,
            });
        }
        let bytes = index_bytes(&members);
        let top = Descriptor {
            media_type: ocidist::OCI_INDEX.to_owned(),
            digest: Digest::sha256_of(&bytes),
            size: bytes.len() as u64,
        };
        self.put_blob_bytes(&top.digest, &bytes)?;
        blobs.push(top.clone());
        let mut seen = std::collections::HashSet::new();
        blobs.retain(|d| seen.insert(d.digest.clone()));
        let now = now_unix_ms();
        let mut record = Record::unknown(&name, &top.digest);
        record.index_digest = Some(top.digest.clone());
        record.platforms = members.iter().map(|m| m.platform.clone()).collect();
        record.compressed_size = blobs.iter().map(|d| d.size).sum();
        record.stored_at = now;
        record.last_used_at = now;
        self.update_index(|index| {
            let old: Vec<String> = index
                .entries_of(&name)
                .iter()
                .filter_map(|e| e.ref_name().map(str::to_owned))
                .collect();
            for old in old {
                index.remove(&old);
                self.remove_record(&old)?;
            }
            self.write_record(&record)?;
            index.put(&name, IndexEntry::new(&top));
            Ok::<(), Error>(())
        })??;
        Ok(CreatedIndex {
            reference: name,
            index: top,
            manifests: members,
        })
    }
}

/// The OCI image index of `members` (compact JSON, keys sorted).
fn index_bytes(members: &[IndexMember]) -> Vec<u8> {
    let manifests: Vec<serde_json::Value> = members
        .iter()
        .map(|m| {
            let mut platform = serde_json::json!({
                "os": m.platform.os(),
                "architecture": m.platform.architecture(),
            });
            if let Some(variant) = m.platform.variant() {
                platform["variant"] = variant.into();
            }
            serde_json::json!({
                "mediaType": m.manifest.media_type,
                "digest": m.manifest.digest.to_string(),
                "size": m.manifest.size,
                "platform": platform,
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": ocidist::OCI_INDEX,
        "manifests": manifests,
    }))
    .expect("because JSON values serialize")
}
