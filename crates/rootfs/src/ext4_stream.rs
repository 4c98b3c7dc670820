//! The ext4 image of a stored image from its merged tar stream, when the
//! host's `mke2fs` reads tars ([`Ext4Input::TarStream`]): no tree on the
//! host, no root, no `debugfs` pass for owners and devices.
//!
//! One pipeline, two passes over the layers:
//! 1. The merge's index pass ([`crate::merge_entries`]) decompresses each
//!    layer once, learns the final tree, and copies the decompressed tar
//!    into the build's work directory (on `/dev/shm` when it has room, as
//!    the tree of the other path). The tree's entries, content bytes and
//!    attribute-bearing inodes size the image before anything is emitted.
//! 2. `mke2fs -d -` starts on a pipe, and the emit pass writes the merged
//!    tar into it from those copies while mke2fs reads it: the two run at
//!    once, on two cores, and no merged tar is ever stored. The extended
//!    attributes mke2fs drops are noted as they go by and set by one
//!    `debugfs` pass ([`crate::ext4_from_tar`]). An image too small for
//!    the tree is made again, larger, from the same index.
//!
//! Owners, modes, devices, hardlinks and mtimes come from the tar; atime
//! and ctime are what mke2fs gives a tar entry without them (0). The image
//! differs in those bytes from one the tree path makes, so the input is
//! part of its cache key.
//!
//! [`Ext4Input::TarStream`]: crate::Ext4Input::TarStream

use crate::cache_files::{IMAGES, keep_image};
use crate::error::{Error, Result, io};
use crate::ext4::FlatBuild;
use crate::ext4_tar::{
    TarImage, TarImageReport, XattrsByPath, ext4_fed, image_path, kept_by_mke2fs,
};
use crate::leftovers;
use crate::merge::{
    ContentPlacer, EntrySink, IndexedMerge, MergedEntry, TarSink, TreeStats, index_image,
};
use crate::options::BuildOptions;
use crate::safe;
use crate::sizing::{BLOCK, inode_count, is_out_of_blocks, make_sized};
use ociref::Digest;
use ocistore::{ImageDetails, Store};
use std::io::{BufWriter, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::process::ChildStdin;

/// Indexes the image (its layers copied into `work`), then makes its ext4
/// image with mke2fs reading the merged stream as it is emitted, kept at
/// the build's cached path.
pub(crate) fn build_streamed(build: &FlatBuild<'_>, work: &Path) -> Result<()> {
    let (store, image, options) = (build.store, build.image, build.options);
    let merge = index_for_build(store, image, options, work, None)?;
    // The image is made and renamed through the cache directory's handle:
    // a directory swapped in at its name is never written.
    let cache = store.derived_dir(IMAGES).map_err(safe::from_store)?;
    let partial = leftovers::partial_image(&cache, crate::FsType::Ext4)?;
    let seed = &image.manifest.digest;
    make_streamed(
        partial.path(),
        options,
        work,
        (seed, merge.stats()),
        &|sink| merge.emit(sink).map(|report| report.emitted),
    )
    .map_err(|err| leftovers::named_in_cache(err, &cache, partial.path()))?;
    keep_image(store, &cache, partial, build.cached_path, seed)
}

/// The merge of `image` for a build with `options`: its layers indexed
/// from copies decompressed into `work/layers` (each regular file's
/// content handed to `placer` as it is indexed, when given), the init
/// placed.
pub(crate) fn index_for_build<'a>(
    store: &'a Store,
    image: &'a ImageDetails,
    options: &BuildOptions,
    work: &Path,
    placer: Option<&mut (dyn ContentPlacer + '_)>,
) -> Result<IndexedMerge<'a>> {
    let spool = work.join("layers");
    std::fs::create_dir(&spool).map_err(io("creating", &spool))?;
    let progress = options.unpack.progress.as_ref();
    let mut merge = index_image(store, image, None, false, (Some(&spool), progress), placer)?;
    if let Some((source, target)) = &options.init {
        merge.place(source, target)?;
    }
    Ok(merge)
}

/// Makes the ext4 image `partial` from the entries `emit` gives (the tree
/// `stats` describes, UUID and hash seed from `seed`): mke2fs reads them as
/// a tar on a pipe while they are emitted, the attributes it drops are set
/// after, and an image too small is made again, larger.
pub(crate) fn make_streamed(
    partial: &Path,
    options: &BuildOptions,
    work: &Path,
    (seed, stats): (&Digest, TreeStats),
    emit: &dyn Fn(&mut dyn EntrySink) -> Result<u64>,
) -> Result<()> {
    let (blocks, inodes) = image_needs(stats);
    make_sized(
        options.size,
        options.headroom,
        (blocks, inodes),
        is_full,
        |size| {
            let shape = TarImage::new(size, inodes, seed.clone());
            ext4_fed(partial, &shape, options, work, |stdin| {
                emit_into(emit, stdin)
            })
            .map(drop)
        },
    )
}

/// The blocks and inodes the tree `stats` describes needs: every file
/// rounded up to a block, plus one block per entry for directories,
/// symlinks and extents, and one per inode with extended attributes (an
/// attribute block); an upper bound.
fn image_needs(stats: TreeStats) -> (u64, u64) {
    let blocks = stats.bytes.div_ceil(BLOCK) + stats.entries + stats.with_xattrs;
    (blocks, inode_count(stats.entries))
}

/// Writes the entries `emit` gives as a tar into mke2fs's standard input;
/// the attributes mke2fs will drop, by path.
fn emit_into(
    emit: &dyn Fn(&mut dyn EntrySink) -> Result<u64>,
    stdin: ChildStdin,
) -> Result<(TarImageReport, XattrsByPath)> {
    let mut sink = FeedSink {
        tar: TarSink::new(Counted {
            inner: BufWriter::with_capacity(1 << 20, stdin),
            bytes: 0,
        }),
        dropped: XattrsByPath::new(),
        failure: None,
    };
    let emitted = emit(&mut sink);
    if let Some(failure) = sink.failure.take() {
        return Err(failure);
    }
    let entries = emitted?;
    let pipe = Path::new("mke2fs");
    let counted = sink.tar.finish().map_err(io("writing to", pipe))?;
    let bytes = counted.bytes;
    counted
        .inner
        .into_inner()
        .map_err(|e| io("writing to", pipe)(e.into_error()))?;
    let report = TarImageReport {
        entries,
        bytes,
        xattrs_set: 0,
    };
    Ok((report, sink.dropped))
}

/// Whether `err` says the image ran out of space: `mke2fs` writing the
/// content, or `debugfs` adding the extended attributes mke2fs dropped.
fn is_full(err: &Error) -> bool {
    is_out_of_blocks(err)
        || matches!(err, Error::ToolFailed { tool: "debugfs", stderr, .. }
            if stderr.contains("Could not allocate"))
}

/// The tar sink feeding mke2fs, noting the extended attributes mke2fs
/// drops (each path is emitted once, with all of its inode's).
struct FeedSink<W: Write> {
    tar: TarSink<W>,
    dropped: XattrsByPath,
    /// Why an entry was refused, in the crate's terms.
    failure: Option<Error>,
}

impl<W: Write> EntrySink for FeedSink<W> {
    fn entry(
        &mut self,
        entry: &MergedEntry<'_>,
        data: &mut dyn std::io::Read,
    ) -> std::io::Result<()> {
        let dropped: Vec<(String, Vec<u8>)> = entry
            .xattrs
            .iter()
            .filter(|(name, _)| !kept_by_mke2fs(name))
            .cloned()
            .collect();
        if !dropped.is_empty() {
            let name = entry.path.as_os_str().as_bytes();
            let path = image_path(name);
            if std::str::from_utf8(name).is_err() {
                let reason = format!(
                    "extended attributes of {path}, a name that is not UTF-8, cannot be passed \
                     to debugfs"
                );
                self.failure = Some(Error::InvalidOption {
                    reason: reason.clone(),
                });
                return Err(std::io::Error::other(reason));
            }
            self.dropped.insert(path, dropped);
        }
        self.tar.entry(entry, data)
    }
}

/// A writer counting the bytes written through it.
struct Counted<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
