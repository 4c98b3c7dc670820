//! Sorted emission, from the uncompressed layer tars: the final tree in
//! path order (each directory followed by what it holds, names sorted
//! bytewise, as `export_tar` has always listed it and as an extractor that
//! sets a directory's time when it leaves it needs), a regular file's
//! content read at the place of its entry, found again by seeking, and the
//! later names of an inode as hardlinks to its first.

use super::emit::{Action, Emitter};
use super::index::{Index, InodeId, NodeKind};
use super::{EntrySink, with_content};
use crate::error::{Error, Result};
use crate::layer_tars::LayerTar;
use ociref::Digest;
use ocistore::{ImageDetails, Store};
use std::cell::Cell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// A reader that notes its offset at the first read after `first` was
/// emptied: where `tar` starts reading the next entry's headers (it seeks
/// over content, and reads nothing else between two entries).
struct Tracked<'c, R> {
    inner: R,
    offset: u64,
    first: &'c Cell<Option<u64>>,
}

impl<R: Read> Read for Tracked<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.first.get().is_none() {
            self.first.set(Some(self.offset));
        }
        let read = self.inner.read(buf)?;
        self.offset += read as u64;
        Ok(read)
    }
}

impl<R: Seek> Seek for Tracked<'_, R> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.offset = self.inner.seek(pos)?;
        Ok(self.offset)
    }
}

/// A layer tar, buffered.
fn open_tar(store: &Store, tar: &LayerTar) -> Result<BufReader<File>> {
    let file = crate::safe::open_read(store, &tar.path)?;
    Ok(BufReader::with_capacity(256 * 1024, file))
}

/// Pass one over a layer tar: headers only (content is seeked over), with
/// where each regular file's entry starts.
pub(super) fn index_tar(
    index: &mut Index,
    store: &Store,
    number: u32,
    digest: &Digest,
    tar: &LayerTar,
) -> Result<()> {
    index_placed(index, number, digest, open_tar(store, tar)?, None)
}

/// Pass one over a plain layer tar that can be seeked: headers only, with
/// where each regular file's entry starts (for reading it again by
/// seeking).
pub(super) fn index_placed<R: Read + Seek>(
    index: &mut Index,
    number: u32,
    digest: &Digest,
    tar: R,
    placer: Option<&mut (dyn super::ContentPlacer + '_)>,
) -> Result<()> {
    let starts = Cell::new(None);
    let tracked = Tracked {
        inner: tar,
        offset: 0,
        first: &starts,
    };
    index_seekable(index, number, digest, tracked, Some(&starts), placer)
}

/// Pass one over a plain (uncompressed) layer tar that can be seeked:
/// headers only, content seeked over; `starts` as [`Index::add_layer`]
/// takes it.
pub(super) fn index_seekable<R: Read + Seek>(
    index: &mut Index,
    number: u32,
    digest: &Digest,
    tar: R,
    starts: Option<&Cell<Option<u64>>>,
    placer: Option<&mut (dyn super::ContentPlacer + '_)>,
) -> Result<()> {
    let mut archive = tar::Archive::new(tar);
    let entries = archive
        .entries_with_seek()
        .map_err(|source| Error::LayerRead {
            layer: digest.clone(),
            source,
        })?;
    index.add_layer(number, digest, entries, starts, placer)
}

/// Pass two, in path order.
pub(super) fn emit_sorted<S: EntrySink + ?Sized>(
    emitter: &mut Emitter<'_, S>,
    store: &Store,
    image: &ImageDetails,
    tars: &[LayerTar],
) -> Result<()> {
    let index: &Index = emitter.index;
    let mut readers: Vec<Option<BufReader<File>>> = tars.iter().map(|_| None).collect();
    let mut first: HashMap<InodeId, &Path> = HashMap::new();
    for (path, binding) in &index.tree {
        let id = binding.inode;
        let inode = &index.inodes[id as usize];
        if inode.kind == NodeKind::Dir {
            emitter.act(&Action::Dir(path), None)?;
            continue;
        }
        if let Some(target) = first.get(&id) {
            emitter.act(&Action::Link(path, target), None)?;
            continue;
        }
        first.insert(id, path);
        let action = Action::Inode(id, path);
        if inode.kind != NodeKind::File {
            emitter.act(&action, None)?;
            continue;
        }
        let source = inode.source.expect("a file is made by an entry");
        let number = source.layer as usize;
        let digest = &image.layers[number].descriptor.digest;
        let read_error = |source| Error::LayerRead {
            layer: digest.clone(),
            source,
        };
        let reader = match &mut readers[number] {
            Some(reader) => reader,
            empty => empty.insert(open_tar(store, &tars[number])?),
        };
        let at = inode
            .at
            .expect("files read from layer tars know their place");
        reader.seek(SeekFrom::Start(at)).map_err(read_error)?;
        let mut archive = tar::Archive::new(reader);
        let mut entries = archive.entries().map_err(read_error)?;
        let short = || read_error(std::io::ErrorKind::UnexpectedEof.into());
        let entry = entries.next().ok_or_else(short)?.map_err(read_error)?;
        with_content(emitter, digest, entry, &action)?;
    }
    Ok(())
}
