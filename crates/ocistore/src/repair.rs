//! `repair`: fetching again, from the reference each image came from, the
//! blobs that `verify` found missing or moved aside as corrupt.

use crate::error::{Error, Result};
use crate::layout::{IndexEntry, Store};
use crate::walk::{children, is_manifest};
use ocidist::{Client, Descriptor};
use ociref::{Digest, Reference};
use std::collections::{BTreeMap, BTreeSet};

/// Rounds of repair: a manifest fetched again reveals the blobs it needs,
/// which the next round fetches (index → manifest → layers: three).
const MAX_ROUNDS: usize = 4;

/// Missing blobs: each with its descriptor and who needs it (reference
/// name → the source to fetch it from).
type Missing = BTreeMap<Digest, (Descriptor, BTreeMap<String, Reference>)>;

/// What [`Store::repair`] did.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[non_exhaustive]
pub struct RepairReport {
    /// Blobs fetched again and verified.
    pub repaired: Vec<Digest>,
    /// Blobs that could not be fetched again, with why.
    pub failed: Vec<RepairFailure>,
}

/// A blob [`Store::repair`] could not restore.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct RepairFailure {
    /// The blob.
    pub digest: Digest,
    /// The references it breaks.
    pub references: Vec<String>,
    /// Why it could not be fetched (the last error, as text).
    pub reason: String,
}

impl RepairReport {
    /// Whether every missing blob was restored.
    pub fn is_ok(&self) -> bool {
        self.failed.is_empty()
    }
}

impl Store {
    /// Fetches again every blob that a stored reference needs and the store
    /// lacks (missing, or moved aside by [`Store::verify`]), from the
    /// reference's source (its record; the reference itself otherwise),
    /// pinned by digest. Each blob is verified as any pulled blob is.
    pub async fn repair(&self, client: &Client) -> Result<RepairReport> {
        let _lease = {
            let store = self.clone();
            tokio::task::spawn_blocking(move || store.lock_shared("gc.lock")).await??
        };
        let mut report = RepairReport::default();
        let mut given_up: BTreeSet<Digest> = BTreeSet::new();
        for _ in 0..MAX_ROUNDS {
            let store = self.clone();
            let missing = tokio::task::spawn_blocking(move || store.missing_blobs()).await??;
            let todo: Vec<_> = missing
                .into_iter()
                .filter(|(digest, _)| !given_up.contains(digest))
                .collect();
            if todo.is_empty() {
                break;
            }
            for (digest, (descriptor, users)) in todo {
                match self.refetch(client, &descriptor, &users).await {
                    Ok(()) => report.repaired.push(digest),
                    Err(reason) => {
                        given_up.insert(digest.clone());
                        report.failed.push(RepairFailure {
                            digest,
                            references: users.into_keys().collect(),
                            reason,
                        });
                    }
                }
            }
        }
        Ok(report)
    }

    /// Tries each user's source in turn; the last error as text when none
    /// serves the blob.
    async fn refetch(
        &self,
        client: &Client,
        descriptor: &Descriptor,
        users: &BTreeMap<String, Reference>,
    ) -> std::result::Result<(), String> {
        let mut last = String::from("no reference names a source for it");
        for source in users.values() {
            let attempt = if is_manifest(&descriptor.media_type) {
                self.refetch_manifest(client, source, descriptor).await
            } else {
                self.ingest_blob(client, source, descriptor)
                    .await
                    .map(|_| ())
            };
            match attempt {
                Ok(()) => return Ok(()),
                Err(err) => {
                    tracing::warn!(digest = %descriptor.digest, %source, error = %err,
                        "repair: could not fetch the blob from this source");
                    last = format!("from {source}: {err}");
                }
            }
        }
        Err(last)
    }

    async fn refetch_manifest(
        &self,
        client: &Client,
        source: &Reference,
        descriptor: &Descriptor,
    ) -> Result<()> {
        let manifest = client
            .manifest(&source.by_digest_only(descriptor.digest.clone()))
            .await?;
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.put_blob_bytes(&manifest.digest, &manifest.bytes))
            .await?
    }

    /// Every blob a reference needs that is absent, with its descriptor and
    /// the references that need it (name → where to fetch it from).
    /// Blocking.
    fn missing_blobs(&self) -> Result<Missing> {
        let index = self.read_index()?;
        let mut missing = Missing::new();
        for entry in &index.manifests {
            let Some(name) = entry.ref_name() else {
                continue;
            };
            let source = self
                .record(name)?
                .and_then(|r| r.source.parse::<Reference>().ok())
                .or_else(|| name.parse().ok());
            let Some(source) = source else {
                continue;
            };
            let mut stack = vec![IndexEntry::descriptor(entry)];
            let mut seen = BTreeSet::new();
            while let Some(descriptor) = stack.pop() {
                if !seen.insert(descriptor.digest.clone()) {
                    continue;
                }
                if self.has_blob(&descriptor.digest) != Some(descriptor.size) {
                    missing
                        .entry(descriptor.digest.clone())
                        .or_insert_with(|| (descriptor.clone(), BTreeMap::new()))
                        .1
                        .insert(name.to_owned(), source.clone());
                    continue;
                }
                if is_manifest(&descriptor.media_type) {
                    let path = self.blob_path(&descriptor.digest);
                    let bytes = self.read_file(&path)?;
                    match children(&descriptor.digest, &bytes) {
                        Ok(kids) => stack.extend(kids.required),
                        Err(Error::InvalidManifest { .. }) => {}
                        Err(err) => return Err(err),
                    }
                }
            }
        }
        Ok(missing)
    }
}
