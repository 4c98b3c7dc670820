//! `push`: a stored image to a registry, blobs first (mounted from the
//! repository it came from when on the same registry, streamed from disk
//! otherwise), then manifests children first, the tag last, so the tag
//! never names something incomplete.

use crate::error::{Error, Result};
use crate::inspect::is_index;
use crate::layout::Store;
use crate::walk::{children, index_entries, parse_config_platform};
use ocidist::{BlobSource, Client, Descriptor};
use ociref::{Digest, Platform, Reference};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// What [`Store::push`] did.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct PushOutcome {
    /// The destination, as pushed.
    pub destination: String,
    /// The digest the destination tag now names (an index when the store
    /// holds the image's index with every platform it lists, else the
    /// image manifest).
    pub digest: Digest,
    /// Blobs uploaded.
    pub uploaded_blobs: usize,
    /// Blobs mounted from the source repository (same registry).
    pub mounted_blobs: usize,
    /// Blobs the destination already had.
    pub existing_blobs: usize,
    /// Manifests pushed (image manifests and the index).
    pub manifests: usize,
    /// The per-platform tags pushed ([`PushOptions::arch_tags`]).
    pub arch_tags: Vec<ArchTag>,
}

/// One per-platform tag [`Store::push_with`] pushed.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct ArchTag {
    /// The tagged reference, `REPO:TAG-ARCH[-VARIANT]`.
    pub reference: String,
    /// The platform.
    pub platform: Platform,
    /// The image manifest it names.
    pub digest: Digest,
}

/// How [`Store::push_with`] pushes.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PushOptions {
    /// Blobs uploaded at once.
    pub concurrency: usize,
    /// Also tag each platform's image manifest `TAG-ARCH` (`-VARIANT`
    /// appended when there is one, except arm64's default `v8`; `OS-`
    /// before the architecture for other systems than Linux), as
    /// linuxkit and many registries' users expect: `app:1.0-amd64`,
    /// `app:1.0-arm-v7`.
    pub arch_tags: bool,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            concurrency: 4,
            arch_tags: false,
        }
    }
}

impl PushOptions {
    /// These options with `concurrency` blobs uploaded at once.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// These options also pushing per-platform tags
    /// ([`PushOptions::arch_tags`]).
    pub fn with_arch_tags(mut self) -> Self {
        self.arch_tags = true;
        self
    }
}

impl Store {
    /// Pushes the stored image `source` to `destination`. Keeps the index
    /// (and so every platform) when the store holds it completely, as after
    /// an all-platform pull; otherwise pushes the one image manifest.
    pub async fn push(
        &self,
        client: &Client,
        source: &Reference,
        destination: &Reference,
        concurrency: usize,
    ) -> Result<PushOutcome> {
        let options = PushOptions::default().with_concurrency(concurrency);
        self.push_with(client, source, destination, &options).await
    }

    /// [`Store::push`] with `options`. With [`PushOptions::arch_tags`], the
    /// per-platform tags are checked before anything is sent (a destination
    /// without a tag, a platform without a name, two platforms with one
    /// tag: [`Error::PushDigest`]) and pushed after the destination tag.
    pub async fn push_with(
        &self,
        client: &Client,
        source: &Reference,
        destination: &Reference,
        options: &PushOptions,
    ) -> Result<PushOutcome> {
        let concurrency = options.concurrency;
        let name = source.to_string();
        let source_ref = name.clone();
        let refuse = |reason: String| Error::PushDigest {
            source_ref: source_ref.clone(),
            destination: destination.to_string(),
            reason,
        };
        let pinned = destination.digest();
        if let Some(pinned) = pinned
            && let Err(err) = pinned.supported_algorithm()
        {
            return Err(refuse(err.to_string()));
        }
        let (store, leased) = (self.clone(), source.clone());
        // Held until the push is done: `gc` keeps what it uploads.
        let (_lease, plan) = tokio::task::spawn_blocking(move || {
            let lease = store.lease(&leased)?;
            store.push_plan(&name).map(|plan| (lease, plan))
        })
        .await??;
        if let Some(pinned) = pinned
            && *pinned != plan.top.digest
        {
            return Err(refuse(format!(
                "the destination names {pinned}, but the image's manifest is {}",
                plan.top.digest
            )));
        }
        let arch_tags = if options.arch_tags {
            arch_tag_plan(destination, &plan.platforms).map_err(&refuse)?
        } else {
            Vec::new()
        };
        let mut outcome = PushOutcome {
            destination: destination.to_string(),
            digest: plan.top.digest.clone(),
            uploaded_blobs: 0,
            mounted_blobs: 0,
            existing_blobs: 0,
            manifests: 0,
            arch_tags: Vec::new(),
        };
        let mount_from = plan
            .source
            .filter(|s| s.registry() == destination.registry())
            .map(|s| s.repository().to_owned())
            .filter(|repo| repo != destination.repository());
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut tasks = JoinSet::new();
        for blob in plan.blobs {
            let (store, client, destination, mount_from, permits) = (
                self.clone(),
                client.clone(),
                destination.clone(),
                mount_from.clone(),
                Arc::clone(&permits),
            );
            tasks.spawn(async move {
                let _permit = permits
                    .acquire_owned()
                    .await
                    .expect("because the semaphore is never closed");
                store
                    .push_one_blob(&client, &destination, &blob, mount_from.as_deref())
                    .await
            });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined.map_err(Error::from).and_then(|r| r) {
                Ok(BlobPushed::Uploaded) => outcome.uploaded_blobs += 1,
                Ok(BlobPushed::Mounted) => outcome.mounted_blobs += 1,
                Ok(BlobPushed::Existing) => outcome.existing_blobs += 1,
                Err(err) => {
                    tasks.abort_all();
                    return Err(err);
                }
            }
        }
        for manifest in plan.manifests {
            self.push_stored_manifest(
                client,
                &destination.by_digest_only(manifest.digest.clone()),
                &manifest,
            )
            .await?;
            outcome.manifests += 1;
        }
        self.push_stored_manifest(client, destination, &plan.top)
            .await?;
        outcome.manifests += 1;
        for (tagged, platform, manifest) in arch_tags {
            self.push_stored_manifest(client, &tagged, &manifest)
                .await?;
            outcome.arch_tags.push(ArchTag {
                reference: tagged.to_string(),
                platform,
                digest: manifest.digest,
            });
        }
        Ok(outcome)
    }

    /// Pushes the stored referrer manifests `referrers` (signatures,
    /// SBOMs) and their blobs to the repository of `destination` (blobs
    /// mounted from `source`'s repository on the same registry). A
    /// registry without the referrers API then does not list them: each is
    /// added to the referrers tag schema index of its subject (tag
    /// `sha256-<hex>`), as the OCI distribution spec asks of clients.
    pub async fn push_referrers(
        &self,
        client: &Client,
        source: &Reference,
        destination: &Reference,
        referrers: &[Digest],
    ) -> Result<()> {
        let mount_from = (source.registry() == destination.registry()
            && source.repository() != destination.repository())
        .then(|| source.repository().to_owned());
        for digest in referrers {
            let (store, wanted) = (self.clone(), digest.clone());
            let bytes = tokio::task::spawn_blocking(move || store.read_blob(&wanted)).await??;
            for blob in children(digest, &bytes)?.required {
                self.push_one_blob(client, destination, &blob, mount_from.as_deref())
                    .await?;
            }
            let referrer: Referrer =
                serde_json::from_slice(&bytes).map_err(|err| Error::InvalidManifest {
                    digest: digest.clone(),
                    reason: err.to_string(),
                })?;
            let media_type = referrer.head.media_type();
            client
                .push_manifest(
                    &destination.by_digest_only(digest.clone()),
                    bytes.clone().into(),
                    &media_type,
                )
                .await?;
            let Some(subject) = &referrer.head.subject else {
                continue;
            };
            let listed = client.referrers(destination, &subject.digest, None).await?;
            if listed.iter().any(|d| d.digest == *digest) {
                continue;
            }
            let mut entry = serde_json::json!({
                "mediaType": media_type,
                "digest": digest,
                "size": bytes.len(),
            });
            if let Some(kind) = referrer.head.artifact_type() {
                entry["artifactType"] = kind.into();
            }
            if let Some(annotations) = referrer.annotations {
                entry["annotations"] = annotations.into();
            }
            self.add_to_referrers_tag(client, destination, &subject.digest, entry)
                .await?;
        }
        Ok(())
    }

    /// Adds `entry` to the referrers tag schema index of `subject` in the
    /// repository of `destination` (created when missing).
    async fn add_to_referrers_tag(
        &self,
        client: &Client,
        destination: &Reference,
        subject: &Digest,
        entry: serde_json::Value,
    ) -> Result<()> {
        let tag = format!("{}-{}", subject.algorithm(), subject.encoded());
        let target = destination.with_tag(&tag)?;
        let mut index: serde_json::Value = match client.manifest(&target).await {
            Ok(found) => {
                serde_json::from_slice(&found.bytes).map_err(|err| Error::InvalidManifest {
                    digest: found.digest.clone(),
                    reason: err.to_string(),
                })?
            }
            Err(ocidist::Error::NotFound { .. }) => serde_json::json!({
                "schemaVersion": 2,
                "mediaType": ocidist::OCI_INDEX,
                "manifests": [],
            }),
            Err(err) => return Err(err.into()),
        };
        if let Some(manifests) = index["manifests"].as_array_mut() {
            manifests.push(entry);
        }
        let bytes = serde_json::to_vec(&index).expect("because JSON values serialize");
        client
            .push_manifest(&target, bytes.into(), ocidist::OCI_INDEX)
            .await?;
        Ok(())
    }

    async fn push_stored_manifest(
        &self,
        client: &Client,
        target: &Reference,
        manifest: &Descriptor,
    ) -> Result<()> {
        let store = self.clone();
        let digest = manifest.digest.clone();
        let bytes = tokio::task::spawn_blocking(move || store.read_blob(&digest)).await??;
        client
            .push_manifest(target, bytes.into(), &manifest.media_type)
            .await?;
        Ok(())
    }

    async fn push_one_blob(
        &self,
        client: &Client,
        destination: &Reference,
        blob: &Descriptor,
        mount_from: Option<&str>,
    ) -> Result<BlobPushed> {
        if client.blob_exists(destination, &blob.digest).await? == Some(blob.size) {
            return Ok(BlobPushed::Existing);
        }
        if let Some(from) = mount_from
            && client.mount_blob(destination, from, &blob.digest).await?
        {
            return Ok(BlobPushed::Mounted);
        }
        let path = self.blob_path(&blob.digest);
        if self.has_blob(&blob.digest) != Some(blob.size) {
            return Err(Error::BlobMissing {
                digest: blob.digest.clone(),
                path,
            });
        }
        client
            .push_blob(destination, blob, BlobSource::File(&path))
            .await?;
        Ok(BlobPushed::Uploaded)
    }

    /// What to push for the reference named `name`: blobs, child
    /// manifests, and the manifest to tag. Blocking.
    fn push_plan(&self, name: &str) -> Result<PushPlan> {
        let index = self.read_index()?;
        let found =
            self.select_entry(&index, name, None)?
                .ok_or_else(|| Error::ImageNotCached {
                    reference: name.to_owned(),
                })?;
        let entry = found.descriptor();
        let record = self.record(found.ref_name().unwrap_or(name))?;
        let source = record
            .as_ref()
            .and_then(|r| r.source.parse::<Reference>().ok());
        // The index it was picked from, when the store holds all of it.
        let complete_index = record
            .as_ref()
            .and_then(|r| r.index_digest.clone())
            .filter(|d| *d != entry.digest)
            .and_then(|digest| {
                let bytes = self.read_file(&self.blob_path(&digest)).ok()?;
                let descriptor = Descriptor {
                    media_type: index_media_type(&bytes)?,
                    size: bytes.len() as u64,
                    digest,
                };
                self.complete(&descriptor).ok()?.map(|_| descriptor)
            });
        let top = complete_index.unwrap_or(entry);
        if self.complete(&top)?.is_none() {
            return Err(Error::ImageIncomplete {
                reference: name.to_owned(),
            });
        }
        let mut plan = PushPlan {
            source,
            blobs: Vec::new(),
            manifests: Vec::new(),
            platforms: Vec::new(),
            top: top.clone(),
        };
        let bytes = self.read_blob(&top.digest)?;
        let kids = children(&top.digest, &bytes)?;
        plan.platforms = if is_index(&top.media_type) {
            index_entries(&top.digest, &bytes)?
        } else {
            let config = match &kids.config {
                Some(config) => self.read_blob(&config.digest)?,
                None => Vec::new(),
            };
            vec![(parse_config_platform(&config), top.clone())]
        };
        if is_index(&top.media_type) {
            for child in kids.required {
                let child_bytes = self.read_blob(&child.digest)?;
                plan.blobs
                    .extend(children(&child.digest, &child_bytes)?.required);
                plan.manifests.push(child);
            }
        } else {
            plan.blobs.extend(kids.required);
        }
        let mut seen = std::collections::HashSet::new();
        plan.blobs.retain(|d| seen.insert(d.digest.clone()));
        Ok(plan)
    }
}

/// The media type an index's bytes declare, if they are an index.
fn index_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Top {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let top: Top = serde_json::from_slice(bytes).ok()?;
    top.manifests?;
    Some(
        top.media_type
            .unwrap_or_else(|| ocidist::OCI_INDEX.to_owned()),
    )
}

/// A referrer manifest, as its push reads it (annotations as they are).
#[derive(serde::Deserialize)]
struct Referrer {
    #[serde(flatten)]
    head: crate::referrers::ReferrerHead,
    annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What to push, in order.
struct PushPlan {
    /// Where the image came from (for cross-repository mounts).
    source: Option<Reference>,
    /// Configs and layers, once each.
    blobs: Vec<Descriptor>,
    /// Image manifests of an index, pushed by digest before it.
    manifests: Vec<Descriptor>,
    /// Each image manifest with its platform (the index's entries, or the
    /// one image with its config's platform).
    platforms: Vec<(Option<Platform>, Descriptor)>,
    /// What the destination tag names.
    top: Descriptor,
}

enum BlobPushed {
    Uploaded,
    Mounted,
    Existing,
}

/// The per-platform tags of a push to `destination`: `TAG-SUFFIX` for each
/// image manifest with a platform ([`arch_suffix`]); entries without one
/// (attestations, `unknown/unknown`) are skipped. Why not, when the
/// destination has no tag, no image names its platform, or two images
/// would share a tag.
fn arch_tag_plan(
    destination: &Reference,
    platforms: &[(Option<Platform>, Descriptor)],
) -> std::result::Result<Vec<(Reference, Platform, Descriptor)>, String> {
    let tag = match (destination.tag(), destination.digest()) {
        (Some(tag), None) => tag,
        _ => return Err("--arch-tags needs a destination with a tag (REPO:TAG)".to_owned()),
    };
    let mut planned: Vec<(Reference, Platform, Descriptor)> = Vec::new();
    for (platform, manifest) in platforms {
        let Some(platform) = platform.as_ref().filter(|p| p.os() != "unknown") else {
            continue;
        };
        let tagged = destination
            .with_tag(&format!("{tag}-{}", arch_suffix(platform)))
            .map_err(|err| err.to_string())?;
        if let Some((_, other, _)) = planned.iter().find(|(t, _, _)| *t == tagged) {
            return Err(format!(
                "platforms {other} and {platform} would both be tagged {tagged}"
            ));
        }
        planned.push((tagged, platform.clone(), manifest.clone()));
    }
    if planned.is_empty() {
        return Err("no image of it names its platform, so no per-platform tag can be made".into());
    }
    Ok(planned)
}

/// `amd64`, `arm64`, `arm-v7`, `windows-amd64`: the architecture, the
/// variant when there is one (but not arm64's default `v8`), and the
/// operating system first when it is not Linux.
pub(crate) fn arch_suffix(platform: &Platform) -> String {
    let mut suffix = String::new();
    if platform.os() != "linux" {
        suffix.push_str(platform.os());
        suffix.push('-');
    }
    suffix.push_str(platform.architecture());
    if let Some(variant) = platform.variant()
        && !(platform.architecture() == "arm64" && variant == "v8")
    {
        suffix.push('-');
        suffix.push_str(variant);
    }
    suffix
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(text: &str) -> Platform {
        let mut parts = text.split('/');
        let (os, arch) = (parts.next().unwrap(), parts.next().unwrap());
        Platform::new(os, arch, parts.next()).expect("a platform")
    }

    #[test]
    fn arch_suffixes_name_architecture_variant_and_other_systems() {
        for (given, suffix) in [
            ("linux/amd64", "amd64"),
            ("linux/arm64", "arm64"),
            ("linux/arm64/v8", "arm64"),
            ("linux/arm/v7", "arm-v7"),
            ("linux/arm/v6", "arm-v6"),
            ("windows/amd64", "windows-amd64"),
        ] {
            assert_eq!(arch_suffix(&platform(given)), suffix, "{given}");
        }
    }

    #[test]
    fn arch_tag_plans_refuse_digests_and_clashes_and_skip_unnamed_entries() {
        let manifest = Descriptor {
            media_type: ocidist::OCI_MANIFEST.into(),
            digest: Digest::sha256_of(b"m"),
            size: 1,
        };
        let destination: Reference = "127.0.0.1:5000/app:1.0".parse().expect("parses");
        let entries = vec![
            (Some(platform("linux/amd64")), manifest.clone()),
            (None, manifest.clone()),
            (Some(platform("linux/arm/v7")), manifest.clone()),
        ];
        let planned = arch_tag_plan(&destination, &entries).expect("planned");
        let tags: Vec<String> = planned.iter().map(|(r, _, _)| r.to_string()).collect();
        assert_eq!(
            tags,
            [
                "127.0.0.1:5000/app:1.0-amd64",
                "127.0.0.1:5000/app:1.0-arm-v7"
            ]
        );
        let pinned = destination.by_digest_only(manifest.digest.clone());
        assert!(
            arch_tag_plan(&pinned, &entries)
                .unwrap_err()
                .contains("tag")
        );
        let clash = vec![
            (Some(platform("linux/arm64")), manifest.clone()),
            (Some(platform("linux/arm64/v8")), manifest.clone()),
        ];
        assert!(
            arch_tag_plan(&destination, &clash)
                .unwrap_err()
                .contains("1.0-arm64")
        );
        assert!(arch_tag_plan(&destination, &[(None, manifest)]).is_err());
    }
}
