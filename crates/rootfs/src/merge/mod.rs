//! The merged entry stream: the layers of a stored image, base first,
//! merged into the entries of the final tree without a tree on the host,
//! and handed to a sink ([`EntrySink`]; [`TarSink`] writes a tar stream).
//!
//! # How
//! A later entry can hide an earlier one (a whiteout, an opaque directory,
//! the same path written again, in a later layer or the same one, a
//! directory replaced by a file), and an earlier inode can outlive its
//! name (a hardlink to a file a later entry replaces keeps the old
//! content). One pass cannot tell, at an entry, whether a later one hides
//! it, so the merge reads the layers twice:
//! 1. **Index** (`index`): the headers of every layer, base first, applied
//!    to a tree in memory by the rules the unpack applies to a directory
//!    (see [`crate::design`]), with the same entry reader, path cleaning
//!    and refusals, so a hostile layer fails with the error the unpack
//!    gives (same layer, entry and reason) before anything is emitted.
//!    The result is the final tree: every path bound to an inode, every
//!    inode made by one entry (layer, place in the layer) and carrying the
//!    owner, mode, mtime and extended attributes the layers give it (a
//!    directory's are its last declaration's, its attributes added to by
//!    each, as `setxattr` on the existing directory does).
//! 2. **Emit** (`emit`): the layers again, base first; at each entry that
//!    made a surviving inode, that inode is emitted once, a regular file
//!    with the entry's content; the other names of a hardlinked inode
//!    become hardlink entries to the name emitted first, placed at the
//!    entries that linked them (so after it). A hardlink whose target was
//!    later replaced points at the surviving copy, which carries the old
//!    content; when every name the content entry had is gone the first
//!    surviving link name takes the content. Directories are emitted with
//!    their final metadata at their first entry or before the first thing
//!    below them, so parents precede children (what `mke2fs -d -` and any
//!    extractor need); directories no entry declares (0755, 0:0, mtime 0)
//!    come then too, or at the end, sorted, when nothing below them
//!    survives. A layer with nothing left to emit is not read again, and
//!    one is read only up to its last surviving file.
//!
//! Only the index is held: about 420 bytes an entry (its path, the
//! binding, the inode, the plan; 41 MB for 100,000 entries), measured
//! by `index_of_a_hundred_thousand_entries_stays_small` (the RSS grown by
//! building it, printed). Content is never buffered: a file's bytes go
//! from the layer to the sink.
//!
//! # Layer sources
//! By default each pass decompresses the layer blob (on the read-ahead
//! thread of `open_layer::open_layer`): the index reads every byte (a
//! compressed stream cannot be skipped), the emit pass stops after the
//! last surviving file. A build spools instead (`index_image` with a work
//! directory): each layer is decompressed into a copy there (two at once,
//! each on a thread of its own) and indexed from the copy while it is
//! written, and the emit pass reads the copies, so each layer is
//! decompressed once; the index alone sizes the image
//! ([`IndexedMerge::stats`]) before anything is emitted, and a build that
//! must grow its image emits again from the same index. With
//! [`MergeOptions::layer_tars`] the uncompressed
//! layer tars of [`crate::layer_tars`] are used (made once, kept under the
//! store keyed by diff ID): the index pass then seeks over content and
//! reads headers only, and nothing is decompressed twice. They also
//! allow [`MergeOptions::sorted`] (`sorted`): the final tree in path
//! order, each file's content read by seeking back to its entry, what
//! [`crate::export_tar`] writes.
//!
//! A sink that can take content out of order (this crate's ext4 writer)
//! takes it during the index pass instead ([`ContentPlacer`], each
//! layer decompressed on its read-ahead thread, no copy): the emit pass
//! then reads no layer ([`IndexedMerge::emit_placed`]), and each regular
//! file names the entry whose content is its own
//! ([`MergedEntry::source`]).
//!
//! Layer order does not keep a directory's entries together (a later
//! layer adds to a directory emitted long before): a consumer sets
//! directory times once all entries are in (GNU tar needs
//! `--delay-directory-restore`); path order does.
//!
//! # Not handled here
//! [`crate::UnpackOptions`] limits (`max_entries`, `max_bytes`) and
//! progress callbacks are not applied; sparse files are emitted as plain
//! content (holes as zeros).

mod content;
mod emit;
mod growing;
mod index;
mod layer_diff;
mod sorted;
mod spool;
mod tar_sink;

pub(crate) use layer_diff::LayerDiff;
pub use tar_sink::TarSink;

use crate::error::{Error, Result};
use crate::layer_tars::{LayerTar, layer_tars};
use crate::open_layer::open_layer;
use crate::progress::ProgressFn;
use crate::unpack::{Ctx, read_entry};
use content::Content;
use emit::{Action, Emitter, plan};
use index::{Index, NodeKind, Pos};
use ociref::Digest;
use ocistore::{ImageDetails, Store, StoredImage};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// One entry of the final tree.
#[derive(Debug)]
#[non_exhaustive]
pub struct MergedEntry<'a> {
    /// Its path, relative to the root (empty for the root itself).
    pub path: &'a Path,
    /// What it is.
    pub kind: MergedKind<'a>,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Extended attributes (directories and regular files).
    pub xattrs: &'a [(String, Vec<u8>)],
    /// The entry that gave a regular file its content (layer, ordinal),
    /// as a [`ContentPlacer`] was told it.
    pub(crate) source: Option<ContentKey>,
}

/// What a [`MergedEntry`] is.
#[derive(Debug)]
#[non_exhaustive]
pub enum MergedKind<'a> {
    /// A directory.
    Dir,
    /// A regular file of `size` bytes, its content in the data reader.
    File {
        /// Its size.
        size: u64,
    },
    /// A symlink to this target, verbatim.
    Symlink(&'a Path),
    /// Another name of the inode emitted earlier at this path.
    Hardlink(&'a Path),
    /// A character or block device.
    Device {
        /// A block device (else a character device).
        block: bool,
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A fifo.
    Fifo,
}

/// A regular file's content entry: its layer (from 0, base first) and
/// its ordinal in the layer.
pub(crate) type ContentKey = (u32, u64);

/// Takes the content of every regular-file entry while the layers are
/// indexed (what a later entry hides included), so the emit pass need not
/// read the layers again ([`IndexedMerge::emit_placed`]).
pub(crate) trait ContentPlacer {
    /// The content of the entry `key`: `size` bytes from `data` (a
    /// sparse file expanded, its holes as zeros).
    fn place(&mut self, key: ContentKey, data: &mut dyn Read, size: u64) -> Result<()>;
}

/// Where merged entries go.
pub trait EntrySink {
    /// Takes one entry; `data` holds a regular file's content (exactly
    /// its size), nothing otherwise.
    fn entry(&mut self, entry: &MergedEntry<'_>, data: &mut dyn Read) -> std::io::Result<()>;
}

/// How [`merge_entries`] reads the layers.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct MergeOptions {
    /// Read the uncompressed layer tars ([`crate::layer_tars`], made when
    /// missing) instead of decompressing each layer twice.
    pub layer_tars: bool,
    /// Emit the final tree in path order (each directory followed by what
    /// it holds, names sorted bytewise) instead of layer order: what an
    /// extractor that sets a directory's time as it leaves it (GNU tar
    /// without `--delay-directory-restore`) needs. Reads content by
    /// seeking in the layer tars, so it implies `layer_tars`. The root
    /// (`./`) is then not emitted, as an export never changed the
    /// directory it is extracted into.
    pub sorted: bool,
}

/// What [`merge_entries`] did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MergeReport {
    /// The image manifest merged.
    pub manifest_digest: Digest,
    /// Its layers, base first.
    pub layers: Vec<Digest>,
    /// Tar entries read by the index (whiteouts included).
    pub entries: u64,
    /// Whiteouts and opaque markers.
    pub whiteouts: u64,
    /// Entries emitted.
    pub emitted: u64,
    /// Bytes of regular-file content emitted.
    pub bytes: u64,
}

/// Merges the layers of a stored image into the entries of its final
/// tree, given to `sink` parents first, each
/// path once (see the module documentation). Blocking.
pub fn merge_entries(
    stored: &StoredImage,
    sink: &mut dyn EntrySink,
    options: &MergeOptions,
) -> Result<MergeReport> {
    let tars = match options.layer_tars || options.sorted {
        true => Some(layer_tars(stored)?),
        false => None,
    };
    merge_image(
        stored.store(),
        stored.details(),
        tars.as_deref(),
        options.sorted,
        sink,
        None,
    )
}

/// [`merge_entries`] written to `writer` as one tar stream ([`TarSink`]).
pub fn merged_tar(
    stored: &StoredImage,
    writer: impl Write,
    options: &MergeOptions,
) -> Result<MergeReport> {
    let mut sink = TarSink::new(writer);
    let report = merge_entries(stored, &mut sink, options)?;
    sink.finish().map_err(|source| Error::Io {
        what: "ending the merged tar of",
        path: PathBuf::from(stored.reference().to_string()),
        source,
    })?;
    Ok(report)
}

/// Where a layer is read from.
enum Source<'t> {
    Blob,
    Tar(&'t LayerTar),
    /// The layer's tar, copied into a work directory by the index pass.
    Spooled(&'t Path),
}

/// What the final tree holds, known once the index pass is done: enough
/// to size an image before the first entry is emitted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TreeStats {
    /// Entries the emit pass gives (every path, hardlinks included, and
    /// the root when a layer carries it).
    pub(crate) entries: u64,
    /// Bytes of regular-file content, each inode once.
    pub(crate) bytes: u64,
    /// Inodes with extended attributes.
    pub(crate) with_xattrs: u64,
}

/// A merge whose index pass is done: the final tree is known, nothing is
/// emitted yet. [`IndexedMerge::emit`] may run more than once (a build
/// that ran out of room emits again into a larger image).
pub(crate) struct IndexedMerge<'a> {
    store: &'a Store,
    image: &'a ImageDetails,
    tars: Option<&'a [LayerTar]>,
    /// The spooled layer tars, one per layer, when the index pass kept
    /// what it decompressed.
    spooled: Vec<PathBuf>,
    sorted: bool,
    index: Index,
}

/// The merge of `image`, its layers read from `tars` when given (one per
/// layer, base first) or decompressed from their blobs; in path order when
/// `sorted` (which needs `tars`). `progress` hears of each blob as the
/// index pass reads it, and that it is done once indexed.
pub(crate) fn merge_image(
    store: &Store,
    image: &ImageDetails,
    tars: Option<&[LayerTar]>,
    sorted: bool,
    sink: &mut dyn EntrySink,
    progress: Option<&ProgressFn>,
) -> Result<MergeReport> {
    index_image(store, image, tars, sorted, (None, progress), None)?.emit(sink)
}

/// Pass one of [`merge_image`]. With `spool` (a private work directory,
/// and no `tars`), each layer is decompressed into a copy there (several
/// at once, see `spool`) and indexed from it, and the emit pass reads
/// those copies: every layer is decompressed once. `placer` (with no
/// `tars`) takes every regular file's content as it is indexed, so the
/// emit pass need not read the layers ([`IndexedMerge::emit_placed`]).
pub(crate) fn index_image<'a>(
    store: &'a Store,
    image: &'a ImageDetails,
    tars: Option<&'a [LayerTar]>,
    sorted: bool,
    (spool, progress): (Option<&Path>, Option<&ProgressFn>),
    placer: Option<&mut (dyn ContentPlacer + '_)>,
) -> Result<IndexedMerge<'a>> {
    let mut index = Index::default();
    let spooled = match (tars, spool) {
        (Some(tars), _) => {
            for (number, layer) in image.layers.iter().enumerate() {
                let digest = &layer.descriptor.digest;
                sorted::index_tar(&mut index, store, number as u32, digest, &tars[number])?;
            }
            Vec::new()
        }
        (None, Some(dir)) => {
            let after = &mut |_: &Index, _, _: &[PathBuf]| Ok(());
            spool::index_spooled(&mut index, store, image, dir, progress, after, placer)?
        }
        (None, None) => {
            let mut placer = placer;
            for (number, layer) in image.layers.iter().enumerate() {
                let placing = placer.as_deref_mut();
                index_blob(&mut index, store, (number as u32, layer), progress, placing)?;
            }
            Vec::new()
        }
    };
    Ok(IndexedMerge {
        store,
        image,
        tars,
        spooled,
        sorted,
        index,
    })
}

/// Each layer of `image` as an overlayfs lower ([`LayerDiff`]), from one
/// index pass over copies of the layers decompressed into `spool` (a
/// private work directory): `each` gets the layer's number and its lower
/// as soon as the index has taken that layer. Blocking.
pub(crate) fn each_layer_lower(
    store: &Store,
    image: &ImageDetails,
    spool: &Path,
    progress: Option<&ProgressFn>,
    each: &mut dyn FnMut(u32, &LayerDiff<'_>) -> Result<()>,
) -> Result<()> {
    let digests: Vec<Digest> = image
        .layers
        .iter()
        .map(|l| l.descriptor.digest.clone())
        .collect();
    let mut index = Index::default();
    let mut after = |index: &Index, number: u32, copies: &[PathBuf]| {
        each(number, &LayerDiff::plan(index, number, copies, &digests))
    };
    spool::index_spooled(&mut index, store, image, spool, progress, &mut after, None)?;
    Ok(())
}

/// Pass one over the blob of `layer`, decompressed as it is read (on the
/// read-ahead thread), each regular file's content to `placer`.
fn index_blob(
    index: &mut Index,
    store: &Store,
    (number, layer): (u32, &ocistore::LayerDetails),
    progress: Option<&ProgressFn>,
    placer: Option<&mut (dyn ContentPlacer + '_)>,
) -> Result<()> {
    let digest = &layer.descriptor.digest;
    let read_error = |source| Error::LayerRead {
        layer: digest.clone(),
        source,
    };
    let stream = open_layer(store, digest, &layer.descriptor.media_type, progress)?;
    let mut archive = tar::Archive::new(stream);
    let entries = archive.entries().map_err(read_error)?;
    index.add_layer(number, digest, entries, None, placer)?;
    // Read to the end (what follows the end-of-archive blocks): a layer
    // read while it downloads is verified only at its end.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(read_error)?;
    crate::progress::finished(progress, digest, layer.descriptor.size);
    Ok(())
}

impl IndexedMerge<'_> {
    /// What the final tree holds.
    pub(crate) fn stats(&self) -> TreeStats {
        self.index.stats()
    }

    /// Places the host file `source` at the guest path `target` of the
    /// final tree (an init), as the tree build places it: emitted after
    /// the layers, mode 0755, owner 0:0, mtime 0.
    pub(crate) fn place(&mut self, source: &Path, target: &str) -> Result<()> {
        let content = std::fs::read(source).map_err(crate::error::io("reading", source))?;
        self.index.place(target, content)
    }

    /// Pass two: the entries of the final tree, to `sink`.
    pub(crate) fn emit(&self, sink: &mut dyn EntrySink) -> Result<MergeReport> {
        self.emit_with(sink, true)
    }

    /// Pass two for a sink whose [`ContentPlacer`] took the content in
    /// pass one: no layer is read, a regular file comes with no data (its
    /// [`MergedEntry::source`] says which content is its own).
    pub(crate) fn emit_placed(&self, sink: &mut dyn EntrySink) -> Result<MergeReport> {
        self.emit_with(sink, false)
    }

    /// Pass two, reading content from the layers when `content`.
    fn emit_with(&self, sink: &mut dyn EntrySink, content: bool) -> Result<MergeReport> {
        let (store, image, index, sorted) = (self.store, self.image, &self.index, self.sorted);
        let source = |number: usize| match (self.tars, self.spooled.get(number)) {
            (Some(tars), _) => Source::Tar(&tars[number]),
            (None, Some(copy)) => Source::Spooled(copy),
            (None, None) => Source::Blob,
        };
        let plan = match sorted {
            true => Default::default(),
            false => plan(index),
        };
        let mut emitter = Emitter::new(index, sink);
        if !sorted {
            emitter.root()?;
        }
        if let (true, Some(tars)) = (sorted, self.tars) {
            sorted::emit_sorted(&mut emitter, store, image, tars)?;
        }
        for (number, layer) in image.layers.iter().enumerate().filter(|_| !sorted) {
            let first = Pos {
                layer: number as u32,
                ordinal: 0,
            };
            let next = Pos {
                layer: number as u32 + 1,
                ordinal: 0,
            };
            let actions: Vec<(&Pos, &Action<'_>)> = plan.range(first..next).collect();
            let needed = content && actions.iter().any(|(_, a)| needs_content(index, a));
            let stream = match needed {
                true => Some(open(store, layer, source(number))?),
                false => None,
            };
            emit_layer(&mut emitter, &layer.descriptor.digest, stream, actions)?;
        }
        emitter.placed()?;
        emitter.rest()?;
        Ok(MergeReport {
            manifest_digest: image.manifest.digest.clone(),
            layers: image
                .layers
                .iter()
                .map(|l| l.descriptor.digest.clone())
                .collect(),
            entries: index.entries,
            whiteouts: index.whiteouts,
            emitted: emitter.count,
            bytes: emitter.bytes,
        })
    }
}

/// The tar stream of `layer`, from `source`.
fn open(
    store: &Store,
    layer: &ocistore::LayerDetails,
    source: Source<'_>,
) -> Result<Box<dyn Read + Send>> {
    let digest = &layer.descriptor.digest;
    match source {
        Source::Blob => open_layer(store, digest, &layer.descriptor.media_type, None),
        Source::Tar(tar) => {
            let file = crate::safe::open_read(store, &tar.path)?;
            Ok(Box::new(BufReader::with_capacity(256 * 1024, file)))
        }
        Source::Spooled(copy) => {
            let file = std::fs::File::open(copy).map_err(crate::error::io("reading", copy))?;
            Ok(Box::new(BufReader::with_capacity(256 * 1024, file)))
        }
    }
}

/// Whether `action` emits a regular file's content.
fn needs_content(index: &Index, action: &Action) -> bool {
    matches!(action, Action::Inode(id, _) if index.inodes[*id as usize].kind == NodeKind::File)
}

/// Carries out the `actions` of one layer, reading `stream` (when some
/// need content and it is read) up to the last entry that does.
fn emit_layer<'a, S: EntrySink + ?Sized>(
    emitter: &mut Emitter<'a, S>,
    digest: &Digest,
    stream: Option<Box<dyn Read + Send>>,
    actions: Vec<(&Pos, &Action<'a>)>,
) -> Result<()> {
    let index = emitter.index;
    // The last entry to read content from (none when no stream is read).
    let last = actions
        .iter()
        .rev()
        .find(|(_, a)| stream.is_some() && needs_content(index, a))
        .map(|(pos, _)| pos.ordinal);
    let mut actions = actions.into_iter().peekable();
    if let (Some(stream), Some(last)) = (stream, last) {
        let read_error = |source| Error::LayerRead {
            layer: digest.clone(),
            source,
        };
        let mut archive = tar::Archive::new(stream);
        for (ordinal, entry) in (0u64..).zip(archive.entries().map_err(read_error)?) {
            if ordinal > last {
                break;
            }
            let entry = entry.map_err(read_error)?;
            let Some((pos, action)) = actions.next_if(|(pos, _)| pos.ordinal == ordinal) else {
                continue;
            };
            debug_assert_eq!(pos.ordinal, ordinal);
            if !needs_content(index, action) {
                emitter.act(action, None)?;
                continue;
            }
            with_content(emitter, digest, entry, action)?;
        }
    }
    for (_, action) in actions {
        // Content never read here: fine only when none was to be.
        if last.is_some() && needs_content(index, action) {
            let short = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
            return Err(Error::LayerRead {
                layer: digest.clone(),
                source: short,
            });
        }
        emitter.act(action, None)?;
    }
    Ok(())
}

/// Carries out `action` with the content of `entry`, the regular file it
/// emits.
fn with_content<'a, S: EntrySink + ?Sized, R: Read>(
    emitter: &mut Emitter<'a, S>,
    digest: &Digest,
    entry: tar::Entry<'_, R>,
    action: &Action<'a>,
) -> Result<()> {
    entry_content(digest, entry, |content| emitter.act(action, Some(content)))
}

/// Reads `entry` of the layer `digest` again, as pass one read it (the
/// same reader and checks; a layer that changed in between is refused),
/// and hands its content, as plain bytes, to `deliver`.
fn entry_content<R: Read>(
    digest: &Digest,
    mut entry: tar::Entry<'_, R>,
    deliver: impl FnOnce(&mut Content<'_>) -> Result<()>,
) -> Result<()> {
    let raw_path = entry.path_bytes().into_owned();
    let shown = String::from_utf8_lossy(&raw_path).into_owned();
    let ctx = Ctx {
        layer: digest,
        entry: &shown,
    };
    let changed = || ctx.unsafe_entry("the layer changed between the two passes");
    let info = read_entry(&mut entry, raw_path, &ctx)?.ok_or_else(changed)?;
    let shown = String::from_utf8_lossy(&info.path).into_owned();
    let ctx = Ctx {
        layer: digest,
        entry: &shown,
    };
    let size = entry.size();
    let mut content = Content::new(&ctx, &info, size, &mut entry)?;
    deliver(&mut content)
}
