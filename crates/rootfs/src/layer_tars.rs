//! Per-layer uncompressed tars under the store, keyed by diff ID.

use crate::cache_files;
use crate::error::{Error, Result, io};
use crate::open_layer::open_layer;
use crate::safe;
use ociref::{Algorithm, Digest, Hasher};
use ocistore::{Store, StoredImage};
use std::io::{Read, Write};
use std::path::PathBuf;

/// One layer as an uncompressed tar file.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LayerTar {
    /// The layer blob (compressed).
    pub layer: Digest,
    /// Its diff ID (digest of the uncompressed tar), from the config.
    pub diff_id: Digest,
    /// `.cachectl/layers/<algorithm>-<hex>.tar` under the store.
    pub path: PathBuf,
    /// Whether it was there already.
    pub cached: bool,
}

/// The uncompressed tar of every layer of a stored image, base first: decompressed concurrently (one thread per
/// layer), checked against the config's diff IDs while written, and moved
/// into `.cachectl/layers/` by rename, so a reader never sees a partial
/// file. Layers already there are not decompressed again. Blocking.
pub fn layer_tars(stored: &StoredImage) -> Result<Vec<LayerTar>> {
    let (store, image) = (stored.store(), stored.details());
    let diff_ids = &image.config.diff_ids;
    if diff_ids.len() != image.layers.len() {
        return Err(Error::InvalidImage {
            manifest: image.manifest.digest.clone(),
            reason: format!(
                "{} layers but {} diff IDs in the config",
                image.layers.len(),
                diff_ids.len()
            ),
        });
    }
    let held = store
        .derived_dir(cache_files::LAYER_TARS)
        .map_err(safe::from_store)?;
    // Every file is made through the handle's anchor: the directory held,
    // whatever is put at its name meanwhile.
    let anchor = held.anchor();
    std::thread::scope(|scope| {
        let handles: Vec<_> = image
            .layers
            .iter()
            .zip(diff_ids)
            .map(|(layer, diff_id)| {
                let (held, anchor, manifest) = (&held, &anchor, &image.manifest.digest);
                scope.spawn(move || {
                    let digest = &layer.descriptor.digest;
                    let invalid = |reason: String| Error::InvalidImage {
                        manifest: manifest.clone(),
                        reason: format!("layer {digest}: {reason}"),
                    };
                    let diff_id: Digest = diff_id.parse().map_err(|_| {
                        invalid(format!(
                            "its diff ID {diff_id:?} in the config is not a digest"
                        ))
                    })?;
                    let algorithm = diff_id
                        .supported_algorithm()
                        .map_err(|err| invalid(format!("its diff ID {diff_id}: {err}")))?;
                    let name = format!("{}-{}.tar", diff_id.algorithm(), diff_id.encoded());
                    let path = held.child(&name);
                    // A link, FIFO or hard link at the name is removed:
                    // the tar is made again.
                    let cached = safe::cached_file(store, &path)?;
                    // The layer blob keeps the tar (see `cache_files`): a
                    // tar made for a blob since removed is this one's now.
                    cache_files::claim(store, &path, digest)?;
                    let media_type = &layer.descriptor.media_type;
                    if !cached
                        && let Err(err) = extract(
                            store,
                            digest,
                            media_type,
                            (&diff_id, algorithm),
                            &anchor.join(&name),
                        )
                    {
                        cache_files::unclaim_missing(store, &path);
                        return Err(err);
                    }
                    Ok(LayerTar {
                        layer: digest.clone(),
                        diff_id,
                        path,
                        cached,
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a layer thread does not panic"))
            .collect()
    })
}

/// Decompresses `layer` into a temp file beside `path` (a path through a
/// directory handle's anchor), hashing it, and renames it to `path` when
/// the hash is `diff_id`.
fn extract(
    store: &Store,
    layer: &Digest,
    media_type: &str,
    (diff_id, algorithm): (&Digest, Algorithm),
    path: &std::path::Path,
) -> Result<()> {
    let dir = path.parent().unwrap_or(store.root());
    let mut reader = open_layer(store, layer, media_type, None)?;
    // `partial-p<pid>-…`, locked while it is written: `gc` and the next
    // build tell it from one a killed process left.
    let mut file = tempfile::Builder::new()
        .prefix(&format!("partial-{}", crate::leftovers::pid_tag()))
        .tempfile_in(dir)
        .map_err(io("creating a file in", dir))?;
    crate::leftovers::lock(file.as_file(), file.path())?;
    let mut hasher = Hasher::new(algorithm);
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let read = reader
            .read(&mut buffer)
            .map_err(|source| Error::LayerRead {
                layer: layer.clone(),
                source,
            })?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        file.write_all(&buffer[..read])
            .map_err(io("writing", file.path()))?;
    }
    let actual = hasher.finish();
    if actual != *diff_id {
        return Err(Error::DiffIdMismatch {
            layer: layer.clone(),
            expected: diff_id.clone(),
            actual,
        });
    }
    file.as_file()
        .sync_all()
        .map_err(io("syncing", file.path()))?;
    file.persist(path)
        .map_err(|e| io("renaming into place", path)(e.error))?;
    Ok(())
}
