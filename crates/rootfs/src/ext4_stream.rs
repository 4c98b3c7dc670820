//! The ext4 image of a stored image from its merged tar stream, when the
//! host's `mke2fs` reads tars ([`Ext4Input::TarStream`]): no tree on the
//! host, no root, no `debugfs` pass for owners and devices.
//!
//! The layers are merged ([`crate::merge_entries`], layer order, each
//! layer decompressed for the index pass and again for the content) into
//! one tar file in the build's work directory (on `/dev/shm` when it has
//! room, as the tree of the other path), which sizes the image (the
//! merge reports the entries and bytes it emitted), then `mke2fs -d -`
//! reads it ([`crate::ext4_from_tar`]: the extended attributes mke2fs
//! drops are set by one `debugfs` pass). Owners, modes, devices, hardlinks
//! and mtimes come from the tar; atime and ctime are what mke2fs gives a
//! tar entry without them (0). The image differs in those bytes from one
//! the tree path makes, so the input is part of its cache key.

use crate::cache_files::{IMAGES, keep_image};
use crate::error::{Error, Result, io};
use crate::ext4::FlatBuild;
use crate::ext4_tar::{TarImage, ext4_from_tar_in};
use crate::leftovers;
use crate::merge::{EntrySink, MergedEntry, TarSink, merge_image};
use crate::safe;
use crate::sizing::{BLOCK, inode_count, is_out_of_blocks, make_sized};
use std::io::{BufWriter, Seek};
use std::path::Path;

/// Merges the image into `work/rootfs.tar` and makes its ext4 image from
/// it, kept at the build's cached path.
pub(crate) fn build_streamed(build: &FlatBuild<'_>, work: &Path) -> Result<()> {
    let (store, image, options) = (build.store, build.image, build.options);
    let tar_path = work.join("rootfs.tar");
    let file = std::fs::File::create(&tar_path).map_err(io("creating", &tar_path))?;
    let mut sink = CountingSink {
        tar: TarSink::new(BufWriter::with_capacity(1 << 20, file)),
        xattr_blocks: 0,
    };
    let progress = options.unpack.progress.as_ref();
    let merged = merge_image(store, image, None, false, &mut sink, progress)?;
    sink.tar
        .finish()
        .and_then(|writer| writer.into_inner().map_err(|e| e.into_error()))
        .map_err(io("writing", &tar_path))?;
    let mut tar = std::fs::File::open(&tar_path).map_err(io("reading", &tar_path))?;
    // Every file rounded up to a block, plus one per entry for
    // directories, symlinks and extents, and one per entry with extended
    // attributes (an attribute block): an upper bound.
    let blocks = merged.bytes.div_ceil(BLOCK) + merged.emitted + sink.xattr_blocks;
    let inodes = inode_count(merged.emitted);
    // The image is made and renamed through the cache directory's handle:
    // a directory swapped in at its name is never written.
    let cache = store.derived_dir(IMAGES).map_err(safe::from_store)?;
    let partial = leftovers::partial_image(&cache)?;
    make_sized(
        options.size,
        options.headroom,
        (blocks, inodes),
        is_full,
        |size| {
            tar.rewind().map_err(io("reading", &tar_path))?;
            let shape = TarImage::new(size, inodes, image.manifest.digest.clone());
            ext4_from_tar_in(&mut tar, partial.path(), &shape, options, work).map(drop)
        },
    )?;
    keep_image(
        store,
        &cache,
        partial,
        build.cached_path,
        &image.manifest.digest,
    )
}

/// Whether `err` says the image ran out of space: `mke2fs` writing the
/// content, or `debugfs` adding the extended attributes mke2fs dropped.
fn is_full(err: &Error) -> bool {
    is_out_of_blocks(err)
        || matches!(err, Error::ToolFailed { tool: "debugfs", stderr, .. }
            if stderr.contains("Could not allocate"))
}

/// The tar sink, counting the entries with extended attributes (each may
/// need an attribute block of its own).
struct CountingSink<W: std::io::Write> {
    tar: TarSink<W>,
    xattr_blocks: u64,
}

impl<W: std::io::Write> EntrySink for CountingSink<W> {
    fn entry(
        &mut self,
        entry: &MergedEntry<'_>,
        data: &mut dyn std::io::Read,
    ) -> std::io::Result<()> {
        if !entry.xattrs.is_empty() {
            self.xattr_blocks += 1;
        }
        self.tar.entry(entry, data)
    }
}
