//! Pulls as callers use them: one reference with the stale fallback,
//! several at once, and "the stored image, pulled first when absent".

use crate::error::{Error, Result};
use crate::layout::Store;
use crate::pull::{PullOptions, PullOutcome, Stale};
use crate::stored_image::StoredImage;
use ocidist::Client;
use ociref::{ErrorKind, Reference};

impl Store {
    /// Pulls `reference` into the store (see the crate docs for the
    /// steps). With [`PullOptions::stale_fallback`], a registry that cannot
    /// be reached makes a tag the store holds come back as it is, with
    /// [`PullOutcome::stale`] saying why and since when.
    pub async fn pull(
        &self,
        client: &Client,
        reference: &Reference,
        options: &PullOptions,
    ) -> Result<PullOutcome> {
        let err = match self.pull_fresh(client, reference, options).await {
            Ok(outcome) => return Ok(outcome),
            Err(err) => err,
        };
        if !options.stale_fallback
            || options.offline
            || reference.digest().is_some()
            || err.kind() != ErrorKind::Network
        {
            return Err(err);
        }
        let offline = PullOptions {
            offline: true,
            ..options.clone()
        };
        let Ok(mut outcome) = self.pull_fresh(client, reference, &offline).await else {
            return Err(err);
        };
        let store = self.clone();
        let name = outcome.reference.clone();
        let record = tokio::task::spawn_blocking(move || store.record(&name)).await?;
        let confirmed_at = record
            .ok()
            .flatten()
            .map(|record| record.checked_at.unwrap_or(record.stored_at))
            .filter(|&at| at > 0);
        outcome.stale = Some(Stale {
            reason: err.to_string(),
            confirmed_at,
        });
        Ok(outcome)
    }

    /// Pulls every one of `references` at once, with the same options: the
    /// blobs they share are fetched once (the store's per-blob lock), and a
    /// slow registry does not hold up the rest. One result per reference,
    /// in the order given.
    pub async fn pull_many(
        &self,
        client: &Client,
        references: &[Reference],
        options: &PullOptions,
    ) -> Vec<Result<PullOutcome>> {
        let mut tasks = tokio::task::JoinSet::new();
        let mut positions = std::collections::HashMap::new();
        for (position, reference) in references.iter().enumerate() {
            let (store, client, reference, options) = (
                self.clone(),
                client.clone(),
                reference.clone(),
                options.clone(),
            );
            let task = tasks.spawn(async move { store.pull(&client, &reference, &options).await });
            positions.insert(task.id(), position);
        }
        let mut outcomes: Vec<Option<Result<PullOutcome>>> =
            references.iter().map(|_| None).collect();
        while let Some(joined) = tasks.join_next_with_id().await {
            let (id, outcome) = match joined {
                Ok((id, outcome)) => (id, outcome),
                // A pull that panicked fails alone.
                Err(err) => (err.id(), Err(Error::Task(err))),
            };
            outcomes[positions[&id]] = Some(outcome);
        }
        outcomes.into_iter().flatten().collect()
    }

    /// The stored image of `reference` for [`PullOptions::platform`],
    /// pulled first when the store does not hold it (unless
    /// [`PullOptions::offline`]: then [`Error::ImageNotCached`]). A stored
    /// image costs no request, also for a tag: call [`Store::pull`] to
    /// check a tag against its registry. `on_pull` is called once, before
    /// a pull starts (to tell the user why there is network traffic).
    pub async fn ensure_image(
        &self,
        client: &Client,
        reference: &Reference,
        options: &PullOptions,
        on_pull: impl FnOnce() + Send,
    ) -> Result<StoredImage> {
        if self.needs_pull(client, reference, options, on_pull).await? {
            let online = PullOptions {
                offline: false,
                ..options.clone()
            };
            self.pull(client, reference, &online).await?;
        }
        let (store, reference, platform) =
            (self.clone(), reference.clone(), options.platform.clone());
        tokio::task::spawn_blocking(move || store.image(&reference, platform.as_ref())).await?
    }

    /// Whether `reference` must be pulled: not stored (an offline lookup,
    /// no request, also for a pinned digest), and `options` are not
    /// offline (else [`Error::ImageNotCached`]); `on_pull` is called when
    /// it must.
    pub(crate) async fn needs_pull(
        &self,
        client: &Client,
        reference: &Reference,
        options: &PullOptions,
        on_pull: impl FnOnce() + Send,
    ) -> Result<bool> {
        let offline = PullOptions {
            offline: true,
            ..options.clone()
        };
        match self.pull_fresh(client, reference, &offline).await {
            Ok(_) => Ok(false),
            Err(Error::ImageNotCached { .. }) if !options.offline => {
                on_pull();
                Ok(true)
            }
            Err(err) => Err(err),
        }
    }
}
