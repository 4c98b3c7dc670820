//! The ext4 image of a stored image written by cachectl's own writer
//! ([`Ext4Input::Writer`]) from the merged entry stream: the layers are
//! indexed as they are decompressed (copies in the build's work
//! directory), then the emit pass hands each entry to the writer, which
//! puts its content straight into the image. No `mke2fs`, no `debugfs`,
//! no tree, no root; owners, modes, devices, hardlinks and every extended
//! attribute come from the layers. The image is synced before it is kept.
//!
//! [`Ext4Input::Writer`]: crate::Ext4Input::Writer

use crate::cache_files::{IMAGES, keep_image};
use crate::error::{Result, io};
use crate::ext4::{FAKE_TIME, FlatBuild};
use crate::ext4_stream::index_for_build;
use crate::ext4_writer::{Ext4Writer, ImageShape};
use crate::leftovers;
use crate::merge::{EntrySink, TreeStats};
use crate::options::BuildOptions;
use crate::safe;
use ociref::Digest;
use std::path::Path;

/// What the cache key holds for an image of this writer: a new layout of
/// the image gets a new text.
pub(crate) const WRITER_KEY: &str = "cachectl ext4 writer 1";

/// Indexes the image (its layers copied into `work`), then writes its
/// ext4 image from the merged stream, kept at the build's cached path.
pub(crate) fn build_written(build: &FlatBuild<'_>, work: &Path) -> Result<()> {
    let (store, image, options) = (build.store, build.image, build.options);
    let merge = index_for_build(store, image, options, work)?;
    let cache = store.derived_dir(IMAGES).map_err(safe::from_store)?;
    let partial = leftovers::partial_image(&cache, crate::FsType::Ext4)?;
    let seed = &image.manifest.digest;
    make_written(
        partial.as_file(),
        partial.path(),
        options,
        (seed, merge.stats()),
        &|sink| merge.emit(sink).map(|report| report.emitted),
    )
    .map_err(|err| leftovers::named_in_cache(err, &cache, partial.path()))?;
    keep_image(store, &cache, partial, build.cached_path, seed)
}

/// Writes the ext4 image into `file` (empty; at `path`, for messages)
/// from the entries `emit` gives (the tree `stats` describes, UUID from
/// `seed`), and syncs it.
pub(crate) fn make_written(
    file: &std::fs::File,
    path: &Path,
    options: &BuildOptions,
    (seed, stats): (&Digest, TreeStats),
    emit: &dyn Fn(&mut dyn EntrySink) -> Result<u64>,
) -> Result<()> {
    let shape = ImageShape {
        size: options.size,
        headroom: options.headroom,
        label: options.label.clone(),
        uuid: uuid_bytes(seed),
        time: FAKE_TIME.parse().unwrap_or(0),
    };
    let mut writer = Ext4Writer::new(file, stats, &shape);
    let emitted = emit(&mut writer);
    let failure = writer.failure();
    if let Some(err) = failure.or(emitted.err()) {
        return Err(err.relocated(Path::new(crate::ext4_writer::IMAGE), path));
    }
    let image = Path::new(crate::ext4_writer::IMAGE);
    writer
        .finish(&shape)
        .map_err(|err| err.relocated(image, path))?;
    file.sync_all().map_err(io("syncing", path))
}

/// The UUID [`crate::ext4::uuid_from`] derives from `seed`, as bytes.
fn uuid_bytes(seed: &Digest) -> [u8; 16] {
    let text = crate::ext4::uuid_from(seed).replace('-', "");
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    bytes
}
