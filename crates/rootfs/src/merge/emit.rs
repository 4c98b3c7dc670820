//! Pass two of the merge: what to emit at which entry (the plan), and
//! emitting it to a sink, parents first.
//!
//! Every path of the final tree is emitted once. A non-directory inode is
//! emitted with its content (a regular file) at the entry that made it,
//! under one of its names (that entry's own, when it still holds the
//! inode; otherwise the name bound first); each other name becomes a
//! hardlink entry at the entry that bound it, later in the stream than the
//! inode. A directory is emitted, with its final metadata, at its own entry
//! or as soon as something below it is, whichever comes first; the
//! directories no entry declares and nothing emitted needed are emitted at
//! the end, sorted.

use super::content::Content;
use super::index::{Index, InodeId, NodeKind, Pos};
use super::{EntrySink, MergedKind};
use crate::error::{Error, Result};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// What to emit at one entry.
#[derive(Debug)]
pub(super) enum Action<'a> {
    /// The inode this entry made, under this name.
    Inode(InodeId, &'a Path),
    /// Another name of an inode already emitted under the second path.
    Link(&'a Path, &'a Path),
    /// A directory (if not emitted yet).
    Dir(&'a Path),
}

/// The actions of the final tree, by entry.
pub(super) fn plan(index: &Index) -> BTreeMap<Pos, Action<'_>> {
    // The name each inode is emitted under, with the entry that bound it:
    // the one its content entry bound, else the one bound first.
    let mut primary: Vec<Option<(Pos, &Path)>> = vec![None; index.inodes.len()];
    for (path, binding) in &index.tree {
        let inode = &index.inodes[binding.inode as usize];
        let (Some(pos), false) = (binding.pos, inode.kind == NodeKind::Dir) else {
            continue;
        };
        let slot = &mut primary[binding.inode as usize];
        let better = match slot {
            None => true,
            Some((held, _)) => {
                Some(*held) != inode.source && (Some(pos) == inode.source || pos < *held)
            }
        };
        if better {
            *slot = Some((pos, path));
        }
    }
    let mut plan = BTreeMap::new();
    for (path, binding) in &index.tree {
        let inode = &index.inodes[binding.inode as usize];
        let Some(pos) = binding.pos else {
            continue;
        };
        if inode.kind == NodeKind::Dir {
            plan.insert(pos, Action::Dir(path));
            continue;
        }
        let Some((_, name)) = primary[binding.inode as usize] else {
            continue;
        };
        if name != path.as_path() {
            plan.insert(pos, Action::Link(path, name));
        } else if let Some(source) = inode.source {
            plan.insert(source, Action::Inode(binding.inode, name));
        }
    }
    plan
}

/// Emits entries to a sink, each path once, parents first.
pub(super) struct Emitter<'a, S: EntrySink + ?Sized> {
    pub(super) index: &'a Index,
    pub(super) sink: &'a mut S,
    /// Paths emitted (borrowed from the index).
    emitted: HashSet<&'a Path>,
    /// Entries emitted.
    pub(super) count: u64,
    /// Bytes of regular-file content emitted.
    pub(super) bytes: u64,
}

impl<'a, S: EntrySink + ?Sized> Emitter<'a, S> {
    pub(super) fn new(index: &'a Index, sink: &'a mut S) -> Emitter<'a, S> {
        Emitter {
            index,
            sink,
            emitted: HashSet::new(),
            count: 0,
            bytes: 0,
        }
    }

    /// The root, when a layer carries `./`.
    pub(super) fn root(&mut self) -> Result<()> {
        let index = self.index;
        if let Some(root) = &index.root {
            self.send(Path::new(""), MergedKind::Dir, root, None)?;
        }
        Ok(())
    }

    /// Carries out `action`; `content` is the entry's (needed by a
    /// regular file's [`Action::Inode`] only).
    pub(super) fn act(
        &mut self,
        action: &Action<'a>,
        content: Option<&mut Content<'_>>,
    ) -> Result<()> {
        let index = self.index;
        match action {
            Action::Dir(path) => self.dir(path),
            Action::Link(path, target) => {
                self.parents(path)?;
                let inode = &index.inodes[index.tree[*path].inode as usize];
                self.send(path, MergedKind::Hardlink(target), inode, None)
            }
            Action::Inode(id, path) => {
                self.parents(path)?;
                let inode = &index.inodes[*id as usize];
                // Without content (placed in pass one): the size indexed.
                let kind = inode
                    .kind
                    .merged(content.as_ref().map_or(inode.size, |c| c.size));
                self.send(path, kind, inode, content)
            }
        }
    }

    /// Emits the directories above `path` not emitted yet, top first.
    fn parents(&mut self, path: &'a Path) -> Result<()> {
        let missing: Vec<&'a Path> = path
            .ancestors()
            .skip(1)
            .take_while(|p| !p.as_os_str().is_empty() && !self.emitted.contains(*p))
            .collect();
        for dir in missing.into_iter().rev() {
            self.dir(dir)?;
        }
        Ok(())
    }

    /// The directory `path`, with its final metadata, once.
    fn dir(&mut self, path: &'a Path) -> Result<()> {
        if self.emitted.contains(path) {
            return Ok(());
        }
        self.parents(path)?;
        let index = self.index;
        let inode = &index.inodes[index.tree[path].inode as usize];
        self.send(path, MergedKind::Dir, inode, None)
    }

    /// The host file placed after the layers, if any.
    pub(super) fn placed(&mut self) -> Result<()> {
        let index = self.index;
        let Some((path, content)) = &index.placed else {
            return Ok(());
        };
        self.parents(path)?;
        let inode = &index.inodes[index.tree[path].inode as usize];
        let size = content.len() as u64;
        self.deliver(path, MergedKind::File { size }, inode, &mut &content[..])?;
        self.bytes += size;
        Ok(())
    }

    /// The paths not emitted yet (directories no entry declared), sorted.
    pub(super) fn rest(&mut self) -> Result<()> {
        let index = self.index;
        for (path, binding) in &index.tree {
            if !self.emitted.contains(path.as_path()) {
                let inode = &index.inodes[binding.inode as usize];
                debug_assert_eq!(inode.kind, NodeKind::Dir, "{}", path.display());
                self.dir(path)?;
            }
        }
        Ok(())
    }

    fn send(
        &mut self,
        path: &'a Path,
        kind: MergedKind<'_>,
        inode: &super::index::Inode,
        content: Option<&mut Content<'_>>,
    ) -> Result<()> {
        match content {
            Some(content) => {
                let result = self.deliver(path, kind, inode, content);
                if let Some(failure) = content.failure.take() {
                    return Err(failure);
                }
                result?;
                self.bytes += content.size;
                Ok(())
            }
            None => self.deliver(path, kind, inode, &mut std::io::empty()),
        }
    }

    /// Gives the sink `path`, with `data` as its content.
    fn deliver(
        &mut self,
        path: &'a Path,
        kind: MergedKind<'_>,
        inode: &super::index::Inode,
        data: &mut dyn std::io::Read,
    ) -> Result<()> {
        self.sink
            .entry(&inode.entry(path, kind, &inode.xattrs), data)
            .map_err(|source| Error::Io {
                what: "writing the merged entry of",
                path: path.to_path_buf(),
                source,
            })?;
        self.count += 1;
        self.emitted.insert(path);
        Ok(())
    }
}
