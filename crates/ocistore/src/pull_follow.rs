//! A pull whose image can be read while its layers download: the image is
//! handed out once its manifest and config are stored, and a reader of a
//! layer the pull is still fetching follows the download
//! ([`crate::FollowedBlob`]) instead of waiting for the whole pull. A
//! build of the image then costs about the download, not the download and
//! then the build.
//!
//! The pull tells ([`Announce`]) which image manifest it chose and which
//! blobs it is about to fetch, before fetching them; those blobs are noted
//! on the store handle (shared by its clones), so that
//! [`Store::followed_blob`] can hand a reader the download in progress.
//! A followed read ends cleanly only once the blob is stored verified; any
//! other end is an error, so whatever was made from it must be discarded
//! (see [`FollowingPull::finish`]).

use crate::error::{Error, Result};
use crate::follow::FollowedBlob;
use crate::layout::Store;
use crate::pull::{PullOptions, PullOutcome};
use crate::stored_image::StoredImage;
use ocidist::{Client, Descriptor};
use ociref::{Digest, Reference};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// The blobs being pulled for followers, by digest: the descriptor and the
/// flag set when the pull fetching it ended.
pub(crate) type Following = Arc<Mutex<HashMap<Digest, (Descriptor, Arc<AtomicBool>)>>>;

/// What an [`Announce`] calls: the image manifest, then the blobs.
type Listener = dyn Fn(&Descriptor, &[Descriptor]) + Send + Sync;

/// Told the image manifest a pull stored and the blobs it is about to
/// fetch (config and layers).
#[derive(Clone)]
pub(crate) struct Announce(Arc<Listener>);

impl Announce {
    pub(crate) fn tell(&self, manifest: &Descriptor, blobs: &[Descriptor]) {
        (self.0)(manifest, blobs)
    }
}

impl std::fmt::Debug for Announce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Announce")
    }
}

/// Ends a followed pull when dropped: its blobs are forgotten and its
/// followers told.
struct Ended(Store, Arc<AtomicBool>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.forget_followed(&self.1);
    }
}

/// An image handed out while its pull may still run (see the module
/// docs). Made by [`Store::pull_following`].
#[derive(Debug)]
pub struct FollowingPull {
    image: StoredImage,
    pull: Option<JoinHandle<Result<PullOutcome>>>,
}

impl FollowingPull {
    /// The image: its manifest, config and layers, held from `gc`. Its
    /// layers may still be downloading; readers of them (rootfs) follow
    /// the download.
    pub fn image(&self) -> &StoredImage {
        &self.image
    }

    /// Whether a pull was started (the image was not stored whole).
    pub fn pulled(&self) -> bool {
        self.pull.is_some()
    }

    /// Waits for the pull and gives its outcome (`None` when nothing was
    /// pulled). Its error wins over anything read meanwhile: what was made
    /// from the image while the pull ran counts only when this succeeds.
    pub async fn finish(self) -> Result<Option<PullOutcome>> {
        match self.pull {
            Some(pull) => Ok(Some(pull.await??)),
            None => Ok(None),
        }
    }
}

impl Store {
    /// The stored image of `reference` (the platform of `options`), pulled
    /// when it is not stored, and handed out as soon as its manifest and
    /// config are, while its layers download (see the module docs).
    /// `on_pull` is called before a pull starts. An image already stored
    /// whole is handed out at once, with no request. The pull runs on the
    /// current tokio runtime, which must keep running while the image is
    /// read (a multi-threaded one).
    pub async fn pull_following(
        &self,
        client: &Client,
        reference: &Reference,
        options: &PullOptions,
        on_pull: impl FnOnce() + Send,
    ) -> Result<FollowingPull> {
        if !self.needs_pull(client, reference, options, on_pull).await? {
            return self.stored(reference, options).await;
        }
        let ended = Arc::new(AtomicBool::new(false));
        let (told, heard) = tokio::sync::oneshot::channel::<Descriptor>();
        let told = Mutex::new(Some(told));
        let (following, flag) = (self.following.clone(), ended.clone());
        let announce = Announce(Arc::new(move |manifest, blobs| {
            let mut noted = following.lock().expect("because no holder panics");
            for blob in blobs {
                noted.insert(blob.digest.clone(), (blob.clone(), flag.clone()));
            }
            if let Some(told) = told.lock().expect("because no holder panics").take() {
                let _ = told.send(manifest.clone());
            }
        }));
        let mut online = PullOptions {
            offline: false,
            ..options.clone()
        };
        online.announce = Some(announce);
        let (store, client, name) = (self.clone(), client.clone(), reference.clone());
        let pull = tokio::spawn(async move {
            // Followers learn the pull ended however it ends (a panic, or
            // the runtime dropping the task, included).
            let _ended = Ended(store.clone(), ended);
            store.pull(&client, &name, &online).await
        });
        let Ok(manifest) = heard.await else {
            // Ended without telling: an error, or nothing left to fetch.
            pull.await??;
            return self.stored(reference, options).await;
        };
        match self.following_image(reference, manifest).await {
            Ok(image) => Ok(FollowingPull {
                image,
                pull: Some(pull),
            }),
            // The pull's own error says more than a follower's.
            Err(err) => {
                pull.await??;
                Err(err)
            }
        }
    }

    /// A reader of `digest` following its download, when a pull of this
    /// handle is fetching it for followers (the blob read as stored once
    /// it is); `None` otherwise.
    pub fn followed_blob(&self, digest: &Digest) -> Option<FollowedBlob> {
        let noted = self.following.lock().expect("because no holder panics");
        let (descriptor, ended) = noted.get(digest)?;
        Some(self.follow_blob(descriptor, ended.clone()))
    }

    /// Forgets the blobs of the pull whose end flag is `ended`, and sets
    /// the flag.
    fn forget_followed(&self, ended: &Arc<AtomicBool>) {
        ended.store(true, Ordering::SeqCst);
        let mut noted = self.following.lock().expect("because no holder panics");
        noted.retain(|_, (_, flag)| !Arc::ptr_eq(flag, ended));
    }

    /// The image of `manifest` while its pull runs: its config read to the
    /// end (followed), its details, and a lease on the manifest.
    async fn following_image(
        &self,
        reference: &Reference,
        manifest: Descriptor,
    ) -> Result<StoredImage> {
        let (store, name) = (self.clone(), reference.clone());
        tokio::task::spawn_blocking(move || {
            let bytes = store.read_blob(&manifest.digest)?;
            if let Some(config) = crate::walk::children(&manifest.digest, &bytes)?.config
                && let Some(mut reader) = store.followed_blob(&config.digest)
            {
                std::io::copy(&mut reader, &mut std::io::sink()).map_err(|source| Error::Io {
                    what: "reading the config",
                    path: store.blob_path(&config.digest),
                    source,
                })?;
            }
            let shared = store.lock_shared("gc.lock")?;
            let lease = store.lease_roots(&name.to_string(), vec![manifest.clone()], shared)?;
            let details = store.image_details(manifest)?;
            Ok(StoredImage::new(store, name, details, lease))
        })
        .await?
    }

    /// The stored image, with no pull to wait for.
    async fn stored(&self, reference: &Reference, options: &PullOptions) -> Result<FollowingPull> {
        let (store, name, platform) = (self.clone(), reference.clone(), options.platform.clone());
        let image =
            tokio::task::spawn_blocking(move || store.image(&name, platform.as_ref())).await??;
        Ok(FollowingPull { image, pull: None })
    }
}
