//! Pulling an image into the store: resolve with one request, skip when
//! cached, otherwise manifest (and index), then config and layers
//! concurrently, then `index.json` and the record.

use crate::blobs::Ingested;
use crate::error::{Error, Result};
use crate::layout::{IndexEntry, Store, now_unix_ms};
use crate::records::Record;
use crate::walk::{children, parse_config_platform};
use ocidist::{Client, Descriptor, ManifestKind};
use ociref::{Digest, Platform, Reference};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// How to pull.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PullOptions {
    /// The platform to pick from an index; `None` means the host's.
    pub platform: Option<Platform>,
    /// Make no request at all: succeed only when the image is cached
    /// (else [`Error::ImageNotCached`]).
    pub offline: bool,
    /// How many blobs download at once (at least 1).
    pub concurrency: usize,
    /// Re-check every blob: resolve and fetch the manifests even when the
    /// store holds the digest, re-hash every blob already present, and
    /// quarantine and download again any that no longer match.
    pub always: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: None,
            offline: false,
            concurrency: 4,
            always: false,
        }
    }
}

impl PullOptions {
    /// Options for `platform`, other fields default.
    pub fn for_platform(platform: Platform) -> Self {
        PullOptions {
            platform: Some(platform),
            ..PullOptions::default()
        }
    }

    /// These options with `concurrency` blobs downloading at once.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Options that re-check every blob ([`PullOptions::always`]).
    pub fn always() -> Self {
        PullOptions {
            always: true,
            ..PullOptions::default()
        }
    }

    /// Options for an offline pull, other fields default.
    pub fn offline() -> Self {
        PullOptions {
            offline: true,
            ..PullOptions::default()
        }
    }
}

/// What a pull did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PullOutcome {
    /// The reference name stored in `index.json` (full, normalized).
    pub reference: String,
    /// The image manifest now stored for the reference.
    pub manifest_digest: Digest,
    /// The index the manifest was picked from, if any.
    pub index_digest: Option<Digest>,
    /// The platform of the image, when known.
    pub platform: Option<Platform>,
    /// Blobs downloaded (config, layers, manifests).
    pub fetched_blobs: usize,
    /// Blobs already present and reused.
    pub reused_blobs: usize,
    /// Bytes of partial files reused instead of downloaded again.
    pub resumed_bytes: u64,
    /// Whether the store already held exactly this image (nothing fetched
    /// beyond the one resolve request, or none when offline).
    pub up_to_date: bool,
}

impl Store {
    /// Re-hashes each of `descriptors` that is present, quarantining those
    /// that no longer match so the pull downloads them again.
    async fn quarantine_corrupt(&self, descriptors: &[Descriptor]) -> Result<()> {
        let store = self.clone();
        let digests: Vec<Digest> = descriptors.iter().map(|d| d.digest.clone()).collect();
        tokio::task::spawn_blocking(move || {
            for digest in digests {
                if store.has_blob(&digest).is_some() {
                    store.quarantine_if_corrupt(&digest, &store.blob_path(&digest))?;
                }
            }
            Ok::<(), Error>(())
        })
        .await?
    }

    /// Pulls `reference` into the store (see the crate docs for the steps).
    pub async fn pull(
        &self,
        client: &Client,
        reference: &Reference,
        options: &PullOptions,
    ) -> Result<PullOutcome> {
        let name = reference.to_string();
        let platform = options.platform.clone().unwrap_or_else(Platform::host);
        if options.offline {
            let store = self.clone();
            let cached = {
                let name = name.clone();
                tokio::task::spawn_blocking(move || store.cached(&name, None, None)).await??
            };
            return cached.ok_or(Error::ImageNotCached { reference: name });
        }
        // A shared lease on the GC lock for the whole pull: `gc` (which
        // takes it exclusively) never sweeps blobs a running pull wrote
        // before its index update.
        let _lease = {
            let store = self.clone();
            tokio::task::spawn_blocking(move || store.lock_shared("gc.lock")).await??
        };
        let top = client.resolve(reference).await?;
        if !options.always {
            let store = self.clone();
            let name = name.clone();
            let digest = top.digest.clone();
            let wanted = platform.clone();
            if let Some(outcome) = tokio::task::spawn_blocking(move || {
                store.cached(&name, Some(&digest), Some(&wanted))
            })
            .await??
            {
                return Ok(outcome);
            }
        }
        let pinned = reference.with_digest(top.digest.clone());
        let manifest = client.manifest(&pinned).await?;
        self.put_blob_async(&manifest.digest, &manifest.bytes)
            .await?;
        let mut fetched = 1;
        let (image, index_digest, picked_platform) = match &manifest.kind {
            ManifestKind::Index(index) => {
                let candidates: Vec<(String, String, Option<String>, Descriptor)> = index
                    .manifests()
                    .iter()
                    .filter_map(|d| {
                        let p = d.platform().as_ref()?;
                        Some((
                            p.os().to_string(),
                            p.architecture().to_string(),
                            p.variant().clone(),
                            Descriptor::from_oci(d).ok()?,
                        ))
                    })
                    .collect();
                let chosen = platform
                    .best_match(&candidates, |c| Some((&c.0, &c.1, c.2.as_deref())))
                    .ok_or_else(|| Error::NoMatchingPlatform {
                        reference: name.clone(),
                        platform: platform.clone(),
                    })?;
                let child_platform = Platform::new(&chosen.0, &chosen.1, chosen.2.as_deref()).ok();
                let child = client
                    .manifest(&reference.with_digest(chosen.3.digest.clone()))
                    .await?;
                self.put_blob_async(&child.digest, &child.bytes).await?;
                fetched += 1;
                (child, Some(manifest.digest.clone()), child_platform)
            }
            _ => (manifest, None, None),
        };
        let blobs = children(&image.digest, &image.bytes)?;
        if options.always {
            self.quarantine_corrupt(&blobs.required).await?;
        }
        let mut outcome = PullOutcome {
            reference: name.clone(),
            manifest_digest: image.digest.clone(),
            index_digest,
            platform: picked_platform,
            fetched_blobs: fetched,
            reused_blobs: 0,
            resumed_bytes: 0,
            up_to_date: false,
        };
        self.fetch_all(
            client,
            reference,
            &blobs.required,
            options.concurrency,
            &mut outcome,
        )
        .await?;
        if outcome.platform.is_none()
            && let Some(config) = &blobs.config
        {
            let path = self.blob_path(&config.digest);
            outcome.platform = tokio::task::spawn_blocking(move || {
                std::fs::read(path)
                    .ok()
                    .and_then(|bytes| parse_config_platform(&bytes))
            })
            .await?;
        }
        let compressed_size =
            image.bytes.len() as u64 + blobs.required.iter().map(|d| d.size).sum::<u64>();
        let entry = IndexEntry::new(&image.descriptor());
        let record = Record {
            reference: name.clone(),
            source: name.clone(),
            manifest_digest: image.digest.clone(),
            index_digest: outcome.index_digest.clone(),
            platform: outcome.platform.clone(),
            compressed_size,
            stored_at: now_unix_ms(),
            last_used_at: now_unix_ms(),
        };
        let store = self.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            // The record first: a reader that finds the index entry finds
            // its record too.
            store.write_record(&record)?;
            store.update_index(|index| index.put(&record.reference, entry))
        })
        .await??;
        Ok(outcome)
    }

    /// [`Store::put_blob_bytes`] on the blocking pool.
    async fn put_blob_async(&self, digest: &Digest, bytes: &bytes::Bytes) -> Result<()> {
        let (store, digest, bytes) = (self.clone(), digest.clone(), bytes.clone());
        tokio::task::spawn_blocking(move || store.put_blob_bytes(&digest, &bytes)).await?
    }

    /// Downloads the missing blobs among `wanted`, `concurrency` at a time.
    async fn fetch_all(
        &self,
        client: &Client,
        reference: &Reference,
        wanted: &[Descriptor],
        concurrency: usize,
        outcome: &mut PullOutcome,
    ) -> Result<()> {
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut tasks = JoinSet::new();
        let mut seen = std::collections::HashSet::new();
        for descriptor in wanted {
            if !seen.insert(descriptor.digest.clone()) {
                continue;
            }
            if self.has_blob(&descriptor.digest) == Some(descriptor.size) {
                outcome.reused_blobs += 1;
                continue;
            }
            let store = self.clone();
            let client = client.clone();
            let reference = reference.clone();
            let descriptor = descriptor.clone();
            let permits = Arc::clone(&permits);
            tasks.spawn(async move {
                let _permit = permits
                    .acquire_owned()
                    .await
                    .expect("because the semaphore is never closed");
                store.ingest_blob(&client, &reference, &descriptor).await
            });
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            match joined.map_err(Error::from).and_then(|r| r) {
                Ok(Ingested::Reused) => outcome.reused_blobs += 1,
                Ok(Ingested::Fetched { resumed_from }) => {
                    outcome.fetched_blobs += 1;
                    outcome.resumed_bytes += resumed_from;
                }
                Err(err) => {
                    if first_error.is_none() {
                        first_error = Some(err);
                        tasks.abort_all();
                    }
                }
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// The outcome of a pull that needs nothing, when the store holds the
    /// reference named `name` completely, and (when given) it resolves to
    /// `remote` for `platform`. Marks it used. Blocking.
    fn cached(
        &self,
        name: &str,
        remote: Option<&Digest>,
        platform: Option<&Platform>,
    ) -> Result<Option<PullOutcome>> {
        let index = self.read_index()?;
        let Some(entry) = index.find(name) else {
            return Ok(None);
        };
        let record = self
            .record(name)?
            .filter(|r| r.manifest_digest == entry.digest);
        if let Some(remote) = remote {
            let same_manifest = *remote == entry.digest;
            let same_index = record.as_ref().is_some_and(|r| {
                r.index_digest.as_ref() == Some(remote)
                    && platform.is_none_or(|p| r.platform.as_ref().is_some_and(|rp| p.matches(rp)))
            });
            if !same_manifest && !same_index {
                return Ok(None);
            }
        }
        let Some(present) = self.complete(&entry.descriptor())? else {
            return Ok(None);
        };
        self.mark_used(name)?;
        Ok(Some(PullOutcome {
            reference: name.to_owned(),
            manifest_digest: entry.digest.clone(),
            index_digest: record.as_ref().and_then(|r| r.index_digest.clone()),
            platform: record.and_then(|r| r.platform),
            fetched_blobs: 0,
            reused_blobs: present,
            resumed_bytes: 0,
            up_to_date: true,
        }))
    }

    /// Whether `top` and everything it needs are present (by `stat`, with
    /// sizes); the number of blobs when so. Blocking.
    pub(crate) fn complete(&self, top: &Descriptor) -> Result<Option<usize>> {
        let mut stack = vec![top.clone()];
        let mut count = 0;
        while let Some(descriptor) = stack.pop() {
            if self.has_blob(&descriptor.digest) != Some(descriptor.size) {
                return Ok(None);
            }
            count += 1;
            if crate::walk::is_manifest(&descriptor.media_type) {
                let path = self.blob_path(&descriptor.digest);
                let bytes = std::fs::read(&path).map_err(crate::error::io("reading", &path))?;
                stack.extend(children(&descriptor.digest, &bytes)?.required);
            }
        }
        Ok(Some(count))
    }
}
