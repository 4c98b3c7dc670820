//! One layer as an overlayfs lower, from the index: what a per-layer
//! image holds, as merged entries, with no tree on the host.
//!
//! Right after the index has taken layer `L` (and before it takes the
//! next), the lower of `L` is:
//! - every path `L` wrote that survives `L` (an entry of `L` bound it),
//!   with the metadata the layers up to `L` give it;
//! - a character device 0:0 for each path a whiteout of `L` removed and
//!   `L` did not write again (whose parents are directories);
//! - `trusted.overlay.opaque=y` on each directory an opaque marker of `L`
//!   cleared, and on a directory `L` removed with a whiteout and then
//!   made again (the lower's content is gone);
//! - the directories above all of these, with their metadata as of `L`
//!   (an overlay shows the upper directory's owner, mode and time);
//! - the root, with the metadata of the last `./` up to `L`.
//!
//! A regular file is emitted under the first of its names in the lower
//! (path order), its content read at its entry in the layer copy that made
//! it, found again by seeking: a hardlink of `L` to a file of a lower layer
//! becomes a copy, as overlayfs cannot link across layers. The other names
//! of the lower become hardlinks to it.

use super::index::{Index, Inode, InodeId, Mark, NodeKind};
use super::{EntrySink, MergedKind, TreeStats, entry_content};
use crate::error::{Error, Result, io};
use ociref::Digest;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The attribute that makes an overlayfs directory opaque.
const OPAQUE: &str = "trusted.overlay.opaque";

/// What one path of a lower is.
#[derive(Clone, Copy, Debug)]
enum What {
    /// An inode of the tree.
    Node(InodeId),
    /// A whiteout, with its entry's mtime.
    Whiteout(i64),
}

/// The lower of one layer, planned from the index (see the module docs).
pub(crate) struct LayerDiff<'a> {
    index: &'a Index,
    /// Every path but the root, in path order.
    paths: BTreeMap<PathBuf, What>,
    /// Directories (the root as `""`) to be made opaque.
    opaque: BTreeSet<PathBuf>,
    /// The decompressed copies of the layers, base first.
    copies: &'a [PathBuf],
    /// The layers' digests, base first.
    digests: &'a [Digest],
}

impl<'a> LayerDiff<'a> {
    /// The lower of the layer the index took last (`layer`, from 0).
    pub(super) fn plan(
        index: &'a Index,
        layer: u32,
        copies: &'a [PathBuf],
        digests: &'a [Digest],
    ) -> LayerDiff<'a> {
        let stamp = layer + 1;
        let mut paths: BTreeMap<PathBuf, What> = index
            .tree
            .iter()
            .filter(|(_, binding)| binding.created == stamp && binding.pos.is_some())
            .map(|(path, binding)| (path.clone(), What::Node(binding.inode)))
            .collect();
        let mut opaque = BTreeSet::new();
        for mark in &index.marks {
            match mark {
                Mark::Whiteout { path, mtime } => match paths.get(path) {
                    Some(What::Node(id)) if index.inodes[*id as usize].kind == NodeKind::Dir => {
                        opaque.insert(path.clone());
                    }
                    Some(_) => {}
                    None if !index.tree.contains_key(path) && parents_are_dirs(index, path) => {
                        paths.insert(path.clone(), What::Whiteout(*mtime));
                    }
                    None => {}
                },
                Mark::Opaque(dir) => {
                    let is_dir =
                        dir.as_os_str().is_empty() || index.kind_at(dir) == Some(&NodeKind::Dir);
                    if is_dir {
                        opaque.insert(dir.clone());
                        if let Some(binding) = index.tree.get(dir) {
                            paths
                                .entry(dir.clone())
                                .or_insert(What::Node(binding.inode));
                        }
                    }
                }
            }
        }
        let listed: Vec<PathBuf> = paths.keys().cloned().collect();
        for path in &listed {
            for parent in path.ancestors().skip(1) {
                if parent.as_os_str().is_empty() || paths.contains_key(parent) {
                    continue;
                }
                if let Some(binding) = index.tree.get(parent) {
                    paths.insert(parent.to_path_buf(), What::Node(binding.inode));
                }
            }
        }
        LayerDiff {
            index,
            paths,
            opaque,
            copies,
            digests,
        }
    }

    /// What the lower holds (to size an image): its entries, content bytes
    /// (each inode once) and inodes with extended attributes.
    pub(crate) fn stats(&self) -> TreeStats {
        let mut seen = BTreeSet::new();
        let mut stats = TreeStats {
            entries: self.paths.len() as u64 + 1,
            with_xattrs: self.opaque.len() as u64,
            ..TreeStats::default()
        };
        for what in self.paths.values() {
            if let What::Node(id) = what
                && seen.insert(*id)
            {
                let inode = &self.index.inodes[*id as usize];
                stats.bytes += inode.size;
                stats.with_xattrs += u64::from(!inode.xattrs.is_empty());
            }
        }
        stats
    }

    /// Gives the lower's entries to `sink`, the root first, then in path
    /// order; returns how many.
    pub(crate) fn emit(&self, sink: &mut dyn EntrySink) -> Result<u64> {
        let index = self.index;
        let default_root = super::index::no_entry(NodeKind::Dir);
        let root = index.root.as_ref().unwrap_or(&default_root);
        self.send(
            sink,
            Path::new(""),
            MergedKind::Dir,
            root,
            &mut std::io::empty(),
        )?;
        let mut first: HashMap<InodeId, &Path> = HashMap::new();
        let mut readers: Vec<Option<BufReader<File>>> = self.copies.iter().map(|_| None).collect();
        for (path, what) in &self.paths {
            let id = match what {
                What::Whiteout(mtime) => {
                    let whiteout = Inode {
                        mtime: *mtime,
                        mode: 0,
                        ..super::index::no_entry(NodeKind::Device(b'c', 0, 0))
                    };
                    let kind = MergedKind::Device {
                        block: false,
                        major: 0,
                        minor: 0,
                    };
                    self.send(sink, path, kind, &whiteout, &mut std::io::empty())?;
                    continue;
                }
                What::Node(id) => *id,
            };
            let inode = &index.inodes[id as usize];
            if inode.kind != NodeKind::Dir
                && let Some(target) = first.get(&id)
            {
                let kind = MergedKind::Hardlink(target);
                self.send(sink, path, kind, inode, &mut std::io::empty())?;
                continue;
            }
            if inode.kind != NodeKind::Dir {
                first.insert(id, path);
            }
            if inode.kind == NodeKind::File {
                self.file(sink, path, inode, &mut readers)?;
                continue;
            }
            let kind = inode.kind.merged(0);
            self.send(sink, path, kind, inode, &mut std::io::empty())?;
        }
        Ok(self.paths.len() as u64 + 1)
    }

    /// A regular file, its content read at the entry that made it.
    fn file(
        &self,
        sink: &mut dyn EntrySink,
        path: &Path,
        inode: &Inode,
        readers: &mut [Option<BufReader<File>>],
    ) -> Result<()> {
        let source = inode.source.expect("a file is made by an entry");
        let number = source.layer as usize;
        let digest = &self.digests[number];
        let read_error = |source| Error::LayerRead {
            layer: digest.clone(),
            source,
        };
        let copy = &self.copies[number];
        let reader = match &mut readers[number] {
            Some(reader) => reader,
            empty => {
                let file = File::open(copy).map_err(io("reading", copy))?;
                empty.insert(BufReader::with_capacity(256 * 1024, file))
            }
        };
        let at = inode
            .at
            .expect("files read from layer copies know their place");
        reader.seek(SeekFrom::Start(at)).map_err(read_error)?;
        let mut archive = tar::Archive::new(reader);
        let mut entries = archive.entries().map_err(read_error)?;
        let short = || read_error(std::io::ErrorKind::UnexpectedEof.into());
        let entry = entries.next().ok_or_else(short)?.map_err(read_error)?;
        entry_content(digest, entry, |content| {
            let kind = MergedKind::File { size: content.size };
            let sent = self.send(sink, path, kind, inode, content);
            match content.failure.take() {
                Some(failure) => Err(failure),
                None => sent,
            }
        })
    }

    /// Gives the sink `path` with `data` as its content, the opaque
    /// attribute added where planned.
    fn send(
        &self,
        sink: &mut dyn EntrySink,
        path: &Path,
        kind: MergedKind<'_>,
        inode: &Inode,
        data: &mut dyn std::io::Read,
    ) -> Result<()> {
        let mut xattrs = std::borrow::Cow::Borrowed(&inode.xattrs[..]);
        if self.opaque.contains(path) {
            let mut owned: Vec<(String, Vec<u8>)> = inode
                .xattrs
                .iter()
                .filter(|(name, _)| name != OPAQUE)
                .cloned()
                .collect();
            owned.push((OPAQUE.to_owned(), b"y".to_vec()));
            xattrs = std::borrow::Cow::Owned(owned);
        }
        sink.entry(&inode.entry(path, kind, &xattrs), data)
            .map_err(|source| Error::Io {
                what: "writing the layer entry of",
                path: path.to_path_buf(),
                source,
            })
    }
}

/// Whether every parent of `path` is a directory of the tree.
fn parents_are_dirs(index: &Index, path: &Path) -> bool {
    path.ancestors()
        .skip(1)
        .take_while(|p| !p.as_os_str().is_empty())
        .all(|p| index.kind_at(p) == Some(&NodeKind::Dir))
}
