//! The ext4 image of a stored image written by cachectl's own writer
//! ([`Ext4Input::Writer`]) from the merged entry stream: each layer is
//! indexed as it is decompressed (on its read-ahead thread; no copy is
//! kept), each regular file's content going straight into the image as it
//! is indexed, then the emit pass hands each entry to the writer, which
//! adds the metadata (content a later entry hid is freed). No `mke2fs`,
//! no `debugfs`, no tree, no root, no work directory; owners, modes,
//! devices, hardlinks and every extended attribute come from the layers.
//! The image is synced before it is kept.
//!
//! [`Ext4Input::Writer`]: crate::Ext4Input::Writer

use crate::cache_files::{IMAGES, keep_image};
use crate::error::{Error, Result, io};
use crate::ext4::{FAKE_TIME, FlatBuild};
use crate::ext4_writer::{Ext4Writer, IMAGE, ImageShape};
use crate::leftovers;
use crate::merge::EntrySink;
use crate::merge::index_image;
use crate::options::BuildOptions;
use crate::safe;
use crate::sparse_copy::copy_sparse;
use ociref::Digest;
use ocistore::Store;
use std::fs::File;
use std::path::Path;

/// What the cache key holds for an image of this writer: a new layout of
/// the image gets a new text.
pub(crate) const WRITER_KEY: &str = "cachectl ext4 writer 1";

/// Writes the ext4 image of the build: each regular file's content goes
/// into the image while its layer is indexed (decompressed on a thread of
/// its own, no copy anywhere), then the merged entries, without content,
/// complete it; kept at the build's cached path. Whether the output the
/// options ask for was written too: it is copied while the image is
/// synced.
pub(crate) fn build_written(build: &FlatBuild<'_>) -> Result<bool> {
    let (store, image, options) = (build.store, build.image, build.options);
    let cache = store.derived_dir(IMAGES).map_err(safe::from_store)?;
    let partial = leftovers::partial_image(&cache, crate::FsType::Ext4)?;
    let seed = &image.manifest.digest;
    let shape = image_shape(options, seed);
    let (file, path) = (partial.as_file(), partial.path());
    let named =
        |err: Error| leftovers::named_in_cache(err.relocated(Path::new(IMAGE), path), &cache, path);
    let mut writer = Ext4Writer::new(file, &shape);
    let progress = options.unpack.progress.as_ref();
    index_image(
        store,
        image,
        None,
        false,
        (None, progress),
        Some(&mut writer),
    )
    .and_then(|mut merge| {
        if let Some((source, target)) = &options.init {
            merge.place(source, target)?;
        }
        complete(writer, &shape, |sink| merge.emit_placed(sink).map(drop))
    })
    .map_err(named)?;
    let Some(output) = options.output.as_deref() else {
        file.sync_all()
            .map_err(io("syncing", path))
            .map_err(named)?;
        keep_image(store, &cache, partial, build.cached_path, seed)?;
        return Ok(false);
    };
    let (synced, delivered) = copy_while_syncing(store, output, (file, path));
    synced.map_err(io("syncing", path)).map_err(named)?;
    keep_image(store, &cache, partial, build.cached_path, seed)?;
    delivered.map(|()| true)
}

/// Copies the image `file` (at `path`) to `output` while another thread
/// syncs it; the output is renamed into place only once the image is
/// synced. The sync's result, then the copy's.
fn copy_while_syncing(
    store: &Store,
    output: &Path,
    (file, path): (&File, &Path),
) -> (std::io::Result<()>, Result<()>) {
    let join = |handle: Option<std::thread::ScopedJoinHandle<'_, std::io::Result<()>>>| {
        handle.map_or(Ok(()), |handle| {
            handle
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the sync panicked")))
        })
    };
    std::thread::scope(|scope| {
        let mut syncing = Some(scope.spawn(|| file.sync_all()));
        let mut synced = None;
        let delivered = crate::output::write_output_with(
            store,
            output,
            |out, temp| copy_sparse(file, path, out, temp),
            || {
                let result = join(syncing.take());
                let failed = result.is_err();
                synced = Some(result);
                match failed {
                    true => Err(Error::Io {
                        what: "syncing",
                        path: path.to_path_buf(),
                        source: std::io::Error::other("the image could not be synced"),
                    }),
                    false => Ok(()),
                }
            },
        );
        let synced = synced.unwrap_or_else(|| join(syncing.take()));
        (synced, delivered)
    })
}

/// Writes an ext4 image into `file` (empty; at `path`, for messages) from
/// the entries `emit` gives, their content with them (UUID from `seed`),
/// and syncs it.
pub(crate) fn make_written(
    file: &std::fs::File,
    path: &Path,
    options: &BuildOptions,
    seed: &Digest,
    emit: &dyn Fn(&mut dyn EntrySink) -> Result<u64>,
) -> Result<()> {
    let shape = image_shape(options, seed);
    let writer = Ext4Writer::new(file, &shape);
    complete(writer, &shape, |sink| emit(sink).map(drop))
        .and_then(|()| file.sync_all().map_err(io("syncing", path)))
        .map_err(|err| err.relocated(Path::new(IMAGE), path))
}

/// Hands `writer` the entries `emit` gives and completes the image.
fn complete(
    mut writer: Ext4Writer<'_>,
    shape: &ImageShape,
    emit: impl FnOnce(&mut dyn EntrySink) -> Result<()>,
) -> Result<()> {
    let emitted = emit(&mut writer);
    if let Some(err) = writer.failure().or(emitted.err()) {
        return Err(err);
    }
    writer.finish(shape)
}

/// The shape `options` ask for, UUID from `seed`.
fn image_shape(options: &BuildOptions, seed: &Digest) -> ImageShape {
    ImageShape {
        size: options.size,
        headroom: options.headroom,
        label: options.label.clone(),
        uuid: crate::ext4::uuid_bytes(seed),
        time: FAKE_TIME.parse().unwrap_or(0),
    }
}
