//! Pulling an image into the store: resolve with one request, skip when
//! cached, otherwise manifest (and index), then config and layers
//! concurrently, then `index.json` and the record.

use crate::blobs::Ingested;
use crate::error::{Error, Result};
use crate::layout::{IndexEntry, Store, now_unix_ms};
use crate::records::Record;
use crate::sizes::is_layer;
use crate::walk::{children, parse_config_platform};
use ocidist::{Client, Descriptor, Manifest, ManifestKind};
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
    /// Store every platform of an index, not one: the `index.json` entry
    /// then points at the index itself.
    pub all_platforms: bool,
    /// Also store the artifacts that refer to the image (signatures,
    /// SBOMs: the referrers API, or the `sha256-<hex>` tag schema), so that
    /// they travel with it and `gc` keeps them while the image is kept.
    pub referrers: bool,
    /// When the registry cannot be reached (a network error, 5xx or 429
    /// after the retries), serve a tag the store holds instead, marked
    /// [`PullOutcome::stale`]. Auth failures, 404 and integrity errors never
    /// fall back; a pinned digest never goes stale.
    pub stale_fallback: bool,
    /// Told the image manifest and the blobs the pull is about to fetch,
    /// once it stored the manifest (one platform only).
    pub(crate) announce: Option<crate::pull_follow::Announce>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: None,
            offline: false,
            concurrency: 4,
            always: false,
            all_platforms: false,
            referrers: false,
            stale_fallback: false,
            announce: None,
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

    /// These options storing every platform of an index
    /// ([`PullOptions::all_platforms`]).
    pub fn with_all_platforms(mut self) -> Self {
        self.all_platforms = true;
        self
    }

    /// These options storing the image's referrers too
    /// ([`PullOptions::referrers`]).
    pub fn with_referrers(mut self) -> Self {
        self.referrers = true;
        self
    }

    /// These options serving a cached tag when the registry is down
    /// ([`PullOptions::stale_fallback`]).
    pub fn with_stale_fallback(mut self) -> Self {
        self.stale_fallback = true;
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

/// What a pull wants of the content a reference resolves to.
#[derive(Clone, Debug, Default)]
struct Wanted {
    /// The platform to pick from an index; `None` for every platform.
    platform: Option<Platform>,
}

/// Sizes of an image as stored and once unpacked (when every layer's is
/// known).
struct Sizes {
    compressed: u64,
    uncompressed: Option<u64>,
}

/// What a pull did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PullOutcome {
    /// The reference pulled (full, normalized). Its `index.json` entry is
    /// named so, or `REF@os/arch[/variant]` when the plain name holds
    /// another platform (see the crate docs).
    pub reference: String,
    /// The image manifest now stored for the reference.
    pub manifest_digest: Digest,
    /// The index the manifest was picked from, if any.
    pub index_digest: Option<Digest>,
    /// The platform of the image, when known (`None` for an all-platform
    /// pull).
    pub platform: Option<Platform>,
    /// The platforms stored: one for a single-platform pull (when known),
    /// every platform of the index for an all-platform pull.
    pub platforms: Vec<Platform>,
    /// Referrers (signatures, SBOMs) stored with the image.
    pub referrers: Vec<Digest>,
    /// Blobs downloaded (config, layers, manifests).
    pub fetched_blobs: usize,
    /// Blobs already present and reused.
    pub reused_blobs: usize,
    /// Bytes of partial files reused instead of downloaded again.
    pub resumed_bytes: u64,
    /// Whether the store already held exactly this image (nothing fetched
    /// beyond the one resolve request, or none when offline).
    pub up_to_date: bool,
    /// Set when the registry could not be reached and the cached image was
    /// served instead ([`PullOptions::stale_fallback`]).
    pub stale: Option<Stale>,
}

/// Why a pull served the cached image, and how old it is.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Stale {
    /// What went wrong reaching the registry.
    pub reason: String,
    /// When a registry last confirmed the cached entry (else when it was
    /// stored), in milliseconds since the Unix epoch; `None` when unknown.
    pub confirmed_at: Option<u64>,
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

    /// Pulls `reference` into the store, without the stale fallback.
    pub(crate) async fn pull_fresh(
        &self,
        client: &Client,
        reference: &Reference,
        options: &PullOptions,
    ) -> Result<PullOutcome> {
        let name = reference.to_string();
        let wanted = Wanted {
            platform: (!options.all_platforms)
                .then(|| options.platform.clone().unwrap_or_else(Platform::host)),
        };
        if options.offline {
            return self.pull_offline(name, options).await;
        }
        // A digest cannot go stale: when its content is stored, no request.
        if let Some(pinned) = reference.digest().filter(|_| !options.always)
            && let Some(outcome) = self.cached_async(&name, Some(pinned), &wanted).await?
        {
            return Ok(outcome);
        }
        // A shared lease on the GC lock for the whole pull: `gc` (which
        // takes it exclusively) never sweeps blobs a running pull wrote
        // before its index update.
        let _lease = {
            let store = self.clone();
            tokio::task::spawn_blocking(move || store.lock_shared("gc.lock")).await??
        };
        let top = client.resolve(reference).await?;
        if !options.always
            && let Some(outcome) = self.cached_async(&name, Some(&top.digest), &wanted).await?
        {
            return Ok(outcome);
        }
        let manifest = client
            .manifest(&reference.with_digest(top.digest.clone()))
            .await?;
        self.put_blob_async(&manifest.digest, &manifest.bytes)
            .await?;
        let top = manifest.descriptor();
        let mut outcome = PullOutcome {
            reference: name.clone(),
            manifest_digest: manifest.digest.clone(),
            index_digest: None,
            platform: None,
            platforms: Vec::new(),
            referrers: Vec::new(),
            fetched_blobs: 1,
            reused_blobs: 0,
            resumed_bytes: 0,
            up_to_date: false,
            stale: None,
        };
        let (images, entry) = self
            .image_manifests(client, reference, manifest, options, &mut outcome)
            .await?;
        let mut required = Vec::new();
        let mut configs = Vec::new();
        for (image, _) in &images {
            let kids = children(&image.digest, &image.bytes)?;
            configs.push(kids.config);
            required.extend(kids.required);
        }
        if let (Some(announce), [(image, _)]) = (&options.announce, &images[..])
            && !options.all_platforms
        {
            announce.tell(&image.descriptor(), &required);
        }
        if options.always {
            self.quarantine_corrupt(&required).await?;
        }
        self.fetch_all(
            client,
            reference,
            &required,
            options.concurrency,
            &mut outcome,
        )
        .await?;
        self.note_platforms(&images, &configs, options, &mut outcome)
            .await?;
        if options.referrers {
            let subjects: Vec<Digest> = images.iter().map(|(m, _)| m.digest.clone()).collect();
            self.pull_referrers(
                client,
                reference,
                &subjects,
                options.concurrency,
                &mut outcome,
            )
            .await?;
        }
        let mut stored: Vec<Descriptor> = images.iter().map(|(m, _)| m.descriptor()).collect();
        stored.extend(required);
        stored.push(top);
        self.record_pull(&name, &stored, entry, &outcome).await?;
        Ok(outcome)
    }

    /// An offline pull: the stored image, or [`Error::ImageNotCached`].
    async fn pull_offline(&self, name: String, options: &PullOptions) -> Result<PullOutcome> {
        // Only a platform asked for explicitly must match: without one,
        // whatever the reference holds will do.
        let offline = Wanted {
            platform: options.platform.clone(),
        };
        let cached = self.cached_async(&name, None, &offline).await?;
        cached.ok_or_else(|| Error::ImageNotCached {
            reference: match &options.platform {
                Some(platform) => format!("{name} ({platform})"),
                None => name,
            },
        })
    }

    /// The image manifests to store, with their platforms when an index
    /// names them (fetched and stored), and the descriptor the reference's
    /// entry points at.
    async fn image_manifests(
        &self,
        client: &Client,
        reference: &Reference,
        manifest: Manifest,
        options: &PullOptions,
        outcome: &mut PullOutcome,
    ) -> Result<(Vec<(Manifest, Option<Platform>)>, Descriptor)> {
        if !matches!(manifest.kind, ManifestKind::Index(_)) {
            let descriptor = manifest.descriptor();
            return Ok((vec![(manifest, None)], descriptor));
        }
        let platform = options.platform.clone().unwrap_or_else(Platform::host);
        outcome.index_digest = Some(manifest.digest.clone());
        let children = crate::walk::index_entries(&manifest.digest, &manifest.bytes)?;
        let chosen: Vec<&(Option<Platform>, Descriptor)> = if options.all_platforms {
            children.iter().collect()
        } else {
            let found = platform
                .best_match(&children, |(p, _)| {
                    let p = p.as_ref()?;
                    Some((p.os(), p.architecture(), p.variant()))
                })
                .ok_or_else(|| Error::NoMatchingPlatform {
                    reference: reference.to_string(),
                    platform: platform.clone(),
                })?;
            vec![found]
        };
        let mut images = Vec::new();
        for (child_platform, descriptor) in chosen {
            let child = client
                .manifest(&reference.with_digest(descriptor.digest.clone()))
                .await?;
            self.put_blob_async(&child.digest, &child.bytes).await?;
            outcome.fetched_blobs += 1;
            images.push((child, child_platform.clone()));
        }
        let entry = if options.all_platforms {
            manifest.descriptor()
        } else {
            outcome.manifest_digest = images[0].0.digest.clone();
            images[0].0.descriptor()
        };
        Ok((images, entry))
    }

    /// The platforms of the pulled images: the index's, else their
    /// configs'.
    async fn note_platforms(
        &self,
        images: &[(Manifest, Option<Platform>)],
        configs: &[Option<Descriptor>],
        options: &PullOptions,
        outcome: &mut PullOutcome,
    ) -> Result<()> {
        for ((_, known), config) in images.iter().zip(configs) {
            let platform = match (known, config) {
                (Some(p), _) => Some(p.clone()),
                (None, Some(config)) => self.config_platform(&config.digest).await?,
                (None, None) => None,
            };
            outcome.platforms.extend(platform);
        }
        if !options.all_platforms {
            outcome.platform = outcome.platforms.first().cloned();
        }
        Ok(())
    }

    /// Writes the record and the `index.json` entry of a finished pull of
    /// `name` (see [`Store::commit`]); `stored` is everything it stored.
    async fn record_pull(
        &self,
        name: &str,
        stored: &[Descriptor],
        entry: Descriptor,
        outcome: &PullOutcome,
    ) -> Result<()> {
        let sizes = self.image_sizes(stored);
        let record = Record {
            reference: name.to_owned(),
            source: name.to_owned(),
            manifest_digest: entry.digest.clone(),
            index_digest: outcome.index_digest.clone(),
            platform: outcome.platform.clone(),
            platforms: outcome.platforms.clone(),
            compressed_size: sizes.compressed,
            uncompressed_size: sizes.uncompressed,
            referrers: outcome.referrers.clone(),
            stored_at: now_unix_ms(),
            last_used_at: now_unix_ms(),
            checked_at: Some(now_unix_ms()),
        };
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.commit(record, &entry)).await?
    }

    /// Writes the record and the `index.json` entry of a pulled image,
    /// pointing at `top`. The entry is named under the index lock, so that
    /// two pulls of two platforms of one tag never take the same name. The
    /// record first: a reader that finds the entry finds its record too.
    /// Blocking.
    fn commit(&self, mut record: Record, top: &Descriptor) -> Result<()> {
        let mut entry = IndexEntry::new(top);
        if let Some(platform) = &record.platform {
            entry.set_platform(platform);
        }
        self.update_index(|index| {
            record.reference = self.name_for(index, &record.source, record.platform.as_ref())?;
            self.write_record(&record)?;
            index.put(&record.reference, entry);
            Ok(())
        })?
    }

    /// [`Store::cached`] on the blocking pool.
    async fn cached_async(
        &self,
        name: &str,
        remote: Option<&Digest>,
        wanted: &Wanted,
    ) -> Result<Option<PullOutcome>> {
        let (store, name) = (self.clone(), name.to_owned());
        let (remote, wanted) = (remote.cloned(), wanted.clone());
        tokio::task::spawn_blocking(move || store.cached(&name, remote.as_ref(), &wanted)).await?
    }

    /// The platform a stored config declares.
    async fn config_platform(&self, config: &Digest) -> Result<Option<Platform>> {
        let path = self.blob_path(config);
        let store = self.clone();
        Ok(tokio::task::spawn_blocking(move || {
            store
                .read_file(&path)
                .ok()
                .and_then(|bytes| parse_config_platform(&bytes))
        })
        .await?)
    }

    /// Stores the manifests that refer to each of `subjects` (and what they
    /// need), listing them in `outcome.referrers`.
    async fn pull_referrers(
        &self,
        client: &Client,
        reference: &Reference,
        subjects: &[Digest],
        concurrency: usize,
        outcome: &mut PullOutcome,
    ) -> Result<()> {
        for subject in subjects {
            for descriptor in client.referrers(reference, subject, None).await? {
                let referrer = client
                    .manifest(&reference.with_digest(descriptor.digest.clone()))
                    .await?;
                self.put_blob_async(&referrer.digest, &referrer.bytes)
                    .await?;
                outcome.fetched_blobs += 1;
                let kids = children(&referrer.digest, &referrer.bytes)?;
                self.fetch_all(client, reference, &kids.required, concurrency, outcome)
                    .await?;
                outcome.referrers.push(referrer.digest);
            }
        }
        Ok(())
    }

    /// Compressed size (every stored blob once) and uncompressed size
    /// (layers decompressed, manifests and configs as they are), the latter
    /// only when every layer's size is already known: a pull never
    /// decompresses (see [`crate::sizes`]).
    fn image_sizes(&self, blobs: &[Descriptor]) -> Sizes {
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<&Descriptor> = blobs.iter().filter(|d| seen.insert(&d.digest)).collect();
        Sizes {
            compressed: unique.iter().map(|d| d.size).sum(),
            uncompressed: unique
                .iter()
                .map(|d| {
                    if is_layer(&d.media_type) {
                        self.known_uncompressed_size(&d.digest)
                    } else {
                        Some(d.size)
                    }
                })
                .sum(),
        }
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
    /// `remote` as `wanted`. Marks it used. Blocking.
    fn cached(
        &self,
        name: &str,
        remote: Option<&Digest>,
        wanted: &Wanted,
    ) -> Result<Option<PullOutcome>> {
        let index = self.read_index()?;
        // The entry pointing at `remote` itself, whatever its platform (a
        // single-platform image, or an all-platform index); else the one
        // for the wanted platform.
        let same = remote.and_then(|remote| {
            index
                .entries_of(name)
                .into_iter()
                .find(|e| e.digest == *remote)
                .cloned()
        });
        let entry = match (same, &wanted.platform) {
            (Some(entry), _) => Some(entry),
            (None, Some(platform)) => self.select_entry(&index, name, Some(platform))?,
            (None, None) => index.find(name).cloned(),
        };
        let Some(entry) = entry else {
            return Ok(None);
        };
        let entry_name = entry.ref_name().unwrap_or(name).to_owned();
        let record = self
            .record(&entry_name)?
            .filter(|r| r.manifest_digest == entry.digest);
        if let Some(remote) = remote {
            let same_top = *remote == entry.digest;
            // A single-platform entry picked from the index `remote`, for a
            // platform that the wanted one matches.
            let picked_from_it = wanted.platform.as_ref().is_some_and(|wanted| {
                record.as_ref().is_some_and(|r| {
                    r.index_digest.as_ref() == Some(remote)
                        && r.platform.as_ref().is_some_and(|p| wanted.matches(p))
                })
            });
            if !same_top && !picked_from_it {
                return Ok(None);
            }
        }
        let Some(present) = self.complete(&entry.descriptor())? else {
            return Ok(None);
        };
        self.mark_used_checked(&entry_name, remote.is_some())?;
        let record = record.unwrap_or_else(|| Record::unknown(&entry_name, &entry.digest));
        Ok(Some(PullOutcome {
            reference: name.to_owned(),
            manifest_digest: entry.digest.clone(),
            index_digest: record.index_digest,
            platform: record.platform,
            platforms: record.platforms,
            referrers: record.referrers,
            fetched_blobs: 0,
            reused_blobs: present,
            resumed_bytes: 0,
            up_to_date: true,
            stale: None,
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
                let bytes = self.read_file(&path)?;
                stack.extend(children(&descriptor.digest, &bytes)?.required);
            }
        }
        Ok(Some(count))
    }
}
