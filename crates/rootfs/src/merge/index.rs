//! Pass one of the merge: the headers of every layer, base first, applied
//! to a tree held in memory exactly as the unpack applies them to a
//! directory (the same entry reader, path cleaning, whiteout, opaque,
//! replacement and hardlink rules, and the same refusals), but writing
//! nothing. What is left is the final tree: each path bound to an inode,
//! each inode made by one entry (its place in its layer) with the metadata
//! the layers give it.

use super::ContentPlacer;
use super::content::Content;
use crate::error::Result;
use crate::place::{Found, GuestTree, refused, resolve_in};
use crate::unpack::{Ctx, EntryInfo, Kind, clean_path, read_entry, whiteout_of};
use ociref::Digest;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::ops::Bound;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where an entry is: its layer (base 0) and its place among the entries
/// `tar` yields for that layer (both passes read the same sequence).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Pos {
    pub(super) layer: u32,
    pub(super) ordinal: u64,
}

/// An index into [`Index::inodes`].
pub(super) type InodeId = u32;

/// What an inode is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum NodeKind {
    Dir,
    File,
    Symlink(PathBuf),
    /// `(b'c' or b'b', major, minor)`.
    Device(u8, u32, u32),
    Fifo,
}

impl NodeKind {
    /// The merged entry kind of this node; `size` is a regular file's.
    pub(super) fn merged(&self, size: u64) -> super::MergedKind<'_> {
        match self {
            NodeKind::Dir => super::MergedKind::Dir,
            NodeKind::File => super::MergedKind::File { size },
            NodeKind::Symlink(target) => super::MergedKind::Symlink(target),
            NodeKind::Device(tag, major, minor) => super::MergedKind::Device {
                block: *tag == b'b',
                major: *major,
                minor: *minor,
            },
            NodeKind::Fifo => super::MergedKind::Fifo,
        }
    }
}

/// One file of the tree, with every name it has.
#[derive(Debug)]
pub(super) struct Inode {
    pub(super) kind: NodeKind,
    pub(super) uid: u64,
    pub(super) gid: u64,
    pub(super) mode: u32,
    pub(super) mtime: i64,
    /// Set on directories and regular files only, as the unpack does.
    pub(super) xattrs: Vec<(String, Vec<u8>)>,
    /// The entry that made it (none for a directory no entry declares).
    pub(super) source: Option<Pos>,
    /// A regular file read from a layer tar: where its entry (its first
    /// header, PAX or GNU long-name headers included) starts in that tar.
    pub(super) at: Option<u64>,
    /// A regular file's size (a sparse file's, holes included); 0 for
    /// the rest.
    pub(super) size: u64,
}

impl Inode {
    /// This inode as the merged entry `path` of `kind`, with `xattrs`.
    pub(super) fn entry<'a>(
        &self,
        path: &'a Path,
        kind: super::MergedKind<'a>,
        xattrs: &'a [(String, Vec<u8>)],
    ) -> super::MergedEntry<'a> {
        super::MergedEntry {
            path,
            kind,
            uid: self.uid,
            gid: self.gid,
            mode: self.mode,
            mtime: self.mtime,
            xattrs,
            source: self.source.map(|pos| (pos.layer, pos.ordinal)),
        }
    }
}

/// A path of the tree: its inode and the entry that bound it there.
#[derive(Clone, Copy, Debug)]
pub(super) struct Binding {
    pub(super) inode: InodeId,
    pub(super) pos: Option<Pos>,
    /// The last layer (counted from 1) that wrote this path: a whiteout
    /// of that layer keeps it.
    pub(super) created: u32,
    /// The last layer (from 1) that wrote it or something below it: an
    /// opaque marker of that layer keeps it.
    touched: u32,
}

impl Binding {
    fn new(inode: InodeId, pos: Option<Pos>) -> Binding {
        Binding {
            inode,
            pos,
            created: 0,
            touched: 0,
        }
    }
}

/// The tree the layers make, without their content.
#[derive(Default)]
pub(super) struct Index {
    /// Every path (relative, never the root), sorted component-wise, so a
    /// directory's descendants follow it contiguously.
    pub(super) tree: BTreeMap<PathBuf, Binding>,
    /// Every inode ever made (those no path holds any more included).
    pub(super) inodes: Vec<Inode>,
    /// The root's metadata, when a layer carries `./`.
    pub(super) root: Option<Inode>,
    /// Tar entries read (whiteouts included).
    pub(super) entries: u64,
    /// Whiteouts and opaque markers read.
    pub(super) whiteouts: u64,
    /// The layer being read, counted from 1.
    stamp: u32,
    /// A host file placed after the layers (an init): its path and
    /// content; its inode is bound there with no entry.
    pub(super) placed: Option<(PathBuf, Vec<u8>)>,
    /// The whiteouts and opaque markers of the layer read last, as they
    /// took effect (what a per-layer lower shows of them).
    pub(super) marks: Vec<Mark>,
}

/// A whiteout or opaque marker that took effect.
#[derive(Clone, Debug)]
pub(super) enum Mark {
    /// `.wh.<name>` removed this path (or found nothing there), its
    /// parents directories; with the marker's mtime.
    Whiteout { path: PathBuf, mtime: i64 },
    /// `.wh..wh..opq` cleared this directory (`""`: the root).
    Opaque(PathBuf),
}

impl Index {
    /// Reads every header of one layer (`layer` counted from the base).
    /// `starts`, when given, holds where the reader under `entries` first
    /// read after it was emptied: the start of the next entry.
    pub(super) fn add_layer<R: Read>(
        &mut self,
        layer: u32,
        digest: &Digest,
        mut entries: tar::Entries<'_, R>,
        starts: Option<&Cell<Option<u64>>>,
        mut placer: Option<&mut (dyn ContentPlacer + '_)>,
    ) -> Result<()> {
        self.stamp = layer + 1;
        self.marks.clear();
        let ctx = Ctx {
            layer: digest,
            entry: "",
        };
        for ordinal in 0u64.. {
            if let Some(starts) = starts {
                starts.set(None);
            }
            let Some(entry) = entries.next() else {
                break;
            };
            let entry = entry.map_err(|e| ctx.layer_read(e))?;
            let at = starts.and_then(Cell::get);
            let pos = Pos { layer, ordinal };
            self.add_entry(pos, digest, entry, at, placer.as_deref_mut())?;
        }
        Ok(())
    }

    /// One entry, as `Applier::apply_entry` takes it.
    fn add_entry<R: Read>(
        &mut self,
        pos: Pos,
        digest: &Digest,
        mut entry: tar::Entry<'_, R>,
        at: Option<u64>,
        placer: Option<&mut (dyn ContentPlacer + '_)>,
    ) -> Result<()> {
        self.entries += 1;
        let stored_size = entry.size();
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let ctx = Ctx {
            layer: digest,
            entry: &shown,
        };
        let Some(info) = read_entry(&mut entry, raw_path, &ctx)? else {
            return Ok(());
        };
        let shown = String::from_utf8_lossy(&info.path).into_owned();
        let ctx = Ctx {
            layer: digest,
            entry: &shown,
        };
        let rel = clean_path(&info.path).map_err(|reason| ctx.unsafe_entry(reason))?;
        if let Some(whiteout) = whiteout_of(&rel) {
            let whiteout = whiteout.to_vec();
            return self.whiteout(&ctx, &rel, &whiteout, info.mtime);
        }
        if rel.as_os_str().is_empty() {
            if !matches!(info.kind, Kind::Dir) {
                return Err(ctx.unsafe_entry("the root can only be a directory"));
            }
            // Its owner, mode and mtime; extended attributes are not set
            // on the root.
            let mut root = inode_of(NodeKind::Dir, &info, None);
            root.xattrs.clear();
            self.root = Some(root);
            return Ok(());
        }
        self.ensure_parent(&ctx, &rel)?;
        let size = match info.sparse.is_sparse() {
            true => info.sparse.layout().map_or(stored_size, |l| l.real_size),
            false => stored_size,
        };
        if let (Some(placer), Kind::File) = (placer, &info.kind) {
            let mut content = Content::new(&ctx, &info, stored_size, &mut entry)?;
            let placed = placer.place((pos.layer, pos.ordinal), &mut content, size);
            if let Some(failure) = content.failure.take() {
                return Err(failure);
            }
            placed?;
        }
        self.create(&ctx, pos, rel, info, (at, size))
    }

    /// The kind of what `rel` holds.
    pub(super) fn kind_at(&self, rel: &Path) -> Option<&NodeKind> {
        self.tree
            .get(rel)
            .map(|binding| &self.inodes[binding.inode as usize].kind)
    }

    /// What the tree holds: its entries, content bytes and inodes with
    /// extended attributes, each inode counted once.
    pub(super) fn stats(&self) -> super::TreeStats {
        let mut seen = std::collections::HashSet::new();
        let mut stats = super::TreeStats {
            entries: self.tree.len() as u64 + u64::from(self.root.is_some()),
            ..Default::default()
        };
        for binding in self.tree.values() {
            if seen.insert(binding.inode) {
                let inode = &self.inodes[binding.inode as usize];
                stats.bytes += inode.size;
                stats.with_xattrs += u64::from(!inode.xattrs.is_empty());
            }
        }
        stats
    }

    /// Places `content` at the guest path `target` (resolved as the guest
    /// resolves it, missing parents made), as mode 0755, owner 0:0, mtime
    /// 0, replacing whatever but a directory is there: what
    /// [`crate::place::place_file`] does to an unpacked tree. Emitted after
    /// the layers.
    pub(super) fn place(&mut self, target: &str, content: Vec<u8>) -> Result<()> {
        let rel = resolve_in(self, target)?;
        if self.kind_at(&rel) == Some(&NodeKind::Dir) {
            return Err(refused(target, format!("{} is a directory", rel.display())));
        }
        self.clear(&rel, false);
        let inode = self.new_inode(Inode {
            size: content.len() as u64,
            ..no_entry(NodeKind::File)
        });
        self.tree.insert(rel.clone(), Binding::new(inode, None));
        self.placed = Some((rel, content));
        Ok(())
    }

    /// A directory no entry declares: 0755, 0:0, mtime 0.
    fn implicit_dir(&mut self, rel: &Path) {
        let inode = self.new_inode(no_entry(NodeKind::Dir));
        self.tree
            .insert(rel.to_path_buf(), Binding::new(inode, None));
    }

    fn new_inode(&mut self, inode: Inode) -> InodeId {
        self.inodes.push(inode);
        (self.inodes.len() - 1) as InodeId
    }

    /// Missing parents become directories (0755, 0:0, mtime 0); a parent
    /// that is a symlink or no directory refuses the entry.
    fn ensure_parent(&mut self, ctx: &Ctx<'_>, rel: &Path) -> Result<()> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        let mut prefix = PathBuf::new();
        for component in parent.components() {
            prefix.push(component);
            match self.kind_at(&prefix) {
                Some(NodeKind::Dir) => {}
                Some(NodeKind::Symlink(_)) => {
                    return Err(
                        ctx.unsafe_entry(format!("parent {} is a symlink", prefix.display()))
                    );
                }
                Some(_) => {
                    return Err(
                        ctx.unsafe_entry(format!("parent {} is not a directory", prefix.display()))
                    );
                }
                None => self.implicit_dir(&prefix),
            }
        }
        Ok(())
    }

    /// Whether every parent of `rel` is a directory (a symlink refuses
    /// the entry; anything else, or nothing, answers `false`).
    fn check_parent(&self, ctx: &Ctx<'_>, rel: &Path) -> Result<bool> {
        let mut prefix = PathBuf::new();
        for component in rel.parent().into_iter().flat_map(Path::components) {
            prefix.push(component);
            match self.kind_at(&prefix) {
                Some(NodeKind::Dir) => {}
                Some(NodeKind::Symlink(_)) => {
                    return Err(
                        ctx.unsafe_entry(format!("parent {} is a symlink", prefix.display()))
                    );
                }
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Removes `rel` and everything below it.
    fn remove(&mut self, rel: &Path) {
        let gone: Vec<PathBuf> = self
            .tree
            .range::<Path, _>((Bound::Included(rel), Bound::Unbounded))
            .take_while(|(path, _)| path.starts_with(rel))
            .map(|(path, _)| path.clone())
            .collect();
        for path in gone {
            self.tree.remove(&path);
        }
    }

    /// Makes room at `rel`: removes what is there, but a directory when
    /// `keep_dir`.
    fn clear(&mut self, rel: &Path, keep_dir: bool) {
        match self.kind_at(rel) {
            None => {}
            Some(NodeKind::Dir) if keep_dir => {}
            Some(_) => self.remove(rel),
        }
    }

    /// Notes `rel` as written by the current layer, and it and its
    /// ancestors as touched (up to one already noted: its ancestors are).
    fn mark_created(&mut self, rel: &Path) {
        let stamp = self.stamp;
        if let Some(binding) = self.tree.get_mut(rel) {
            binding.created = stamp;
        }
        for path in rel.ancestors().take_while(|p| !p.as_os_str().is_empty()) {
            match self.tree.get_mut(path) {
                Some(binding) if binding.touched == stamp => break,
                Some(binding) => binding.touched = stamp,
                None => {}
            }
        }
    }

    /// The whiteout `rel` (named `.wh.` + `whiteout`).
    fn whiteout(&mut self, ctx: &Ctx<'_>, rel: &Path, whiteout: &[u8], mtime: i64) -> Result<()> {
        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        self.whiteouts += 1;
        if whiteout.is_empty() || whiteout == b"." || whiteout == b".." {
            return Err(ctx.unsafe_entry("whiteout of `.`, `..` or nothing"));
        }
        if whiteout != b".wh..opq" {
            let rel = parent.join(OsStr::from_bytes(whiteout));
            let created = self.tree.get(&rel).is_some_and(|b| b.created == self.stamp);
            if !created && self.check_parent(ctx, &rel)? {
                self.remove(&rel);
                self.marks.push(Mark::Whiteout { path: rel, mtime });
            }
            return Ok(());
        }
        if !parent.as_os_str().is_empty() {
            if !self.check_parent(ctx, &parent)? {
                return Ok(());
            }
            match self.kind_at(&parent) {
                Some(NodeKind::Dir) => {}
                Some(NodeKind::Symlink(_)) => {
                    return Err(ctx.unsafe_entry("opaque directory is a symlink"));
                }
                _ => return Ok(()),
            }
        }
        self.prune(&parent);
        self.marks.push(Mark::Opaque(parent));
        Ok(())
    }

    /// Removes from `dir` what the current layer did not write.
    fn prune(&mut self, dir: &Path) {
        let children: Vec<(PathBuf, bool, bool)> = self
            .tree
            .range::<Path, _>((Bound::Excluded(dir), Bound::Unbounded))
            .take_while(|(path, _)| path.starts_with(dir))
            .filter(|(path, _)| path.parent() == Some(dir))
            .map(|(path, b)| {
                let is_dir = self.inodes[b.inode as usize].kind == NodeKind::Dir;
                (path.clone(), is_dir, b.touched == self.stamp)
            })
            .collect();
        for (child, is_dir, touched) in children {
            if !touched {
                self.remove(&child);
            } else if is_dir {
                self.prune(&child);
            }
        }
    }

    /// What the entry at `rel` makes (its parent in place).
    fn create(
        &mut self,
        ctx: &Ctx<'_>,
        pos: Pos,
        rel: PathBuf,
        info: EntryInfo,
        (at, size): (Option<u64>, u64),
    ) -> Result<()> {
        let kind = match info.kind {
            Kind::Dir => return self.make_dir(pos, rel, &info),
            Kind::Hardlink(ref target) => return self.link(ctx, pos, rel, target),
            Kind::File => NodeKind::File,
            Kind::Symlink(ref target) => NodeKind::Symlink(target.clone()),
            Kind::Device(tag, major, minor) => NodeKind::Device(tag, major, minor),
            Kind::Fifo => NodeKind::Fifo,
        };
        self.clear(&rel, false);
        let mut inode = inode_of(kind, &info, Some(pos));
        if let NodeKind::Symlink(_) = inode.kind {
            inode.mode = 0o777;
        }
        if inode.kind == NodeKind::File {
            (inode.at, inode.size) = (at, size);
        } else {
            inode.xattrs.clear();
        }
        let inode = self.new_inode(inode);
        self.tree
            .insert(rel.clone(), Binding::new(inode, Some(pos)));
        self.mark_created(&rel);
        Ok(())
    }

    /// A directory: one already there keeps its content and takes this
    /// entry's owner, mode and mtime; its attributes are added to.
    fn make_dir(&mut self, pos: Pos, rel: PathBuf, info: &EntryInfo) -> Result<()> {
        self.clear(&rel, true);
        match self.tree.get_mut(&rel) {
            Some(binding) => {
                binding.pos = binding.pos.or(Some(pos));
                let inode = &mut self.inodes[binding.inode as usize];
                (inode.uid, inode.gid) = (info.uid, info.gid);
                (inode.mode, inode.mtime) = (info.mode, info.mtime);
                for (name, value) in &info.xattrs {
                    match inode.xattrs.iter_mut().find(|(n, _)| n == name) {
                        Some(slot) => slot.1 = value.clone(),
                        None => inode.xattrs.push((name.clone(), value.clone())),
                    }
                }
            }
            None => {
                let inode = self.new_inode(inode_of(NodeKind::Dir, info, Some(pos)));
                self.tree
                    .insert(rel.clone(), Binding::new(inode, Some(pos)));
            }
        }
        self.mark_created(&rel);
        Ok(())
    }

    /// A hardlink: `rel` becomes another name of the inode at `target`.
    fn link(&mut self, ctx: &Ctx<'_>, pos: Pos, rel: PathBuf, target: &Path) -> Result<()> {
        let target_rel = clean_path(target.as_os_str().as_bytes())
            .map_err(|reason| ctx.unsafe_entry(format!("hardlink target: {reason}")))?;
        if target_rel.as_os_str().is_empty() {
            return Err(ctx.unsafe_entry("hardlink to the root directory"));
        }
        let missing =
            || ctx.unsafe_entry(format!("hardlink target {} is missing", target.display()));
        if !self.check_parent(ctx, &target_rel)? {
            return Err(missing());
        }
        let inode = self.tree.get(&target_rel).ok_or_else(missing)?.inode;
        if self.inodes[inode as usize].kind == NodeKind::Dir {
            return Err(ctx.unsafe_entry("hardlink to a directory"));
        }
        if target_rel == rel {
            return Ok(());
        }
        self.clear(&rel, false);
        if self.tree.get(&target_rel).map(|b| b.inode) != Some(inode) {
            // Removed with `rel` (it was below it): `link(2)` finds nothing.
            let gone = std::io::Error::from(std::io::ErrorKind::NotFound);
            return Err(ctx.io("linking", &rel)(gone));
        }
        self.tree
            .insert(rel.clone(), Binding::new(inode, Some(pos)));
        self.mark_created(&rel);
        Ok(())
    }
}

impl GuestTree for Index {
    fn look(&mut self, rel: &Path) -> Result<Found> {
        Ok(match self.kind_at(rel) {
            Some(NodeKind::Dir) => Found::Dir,
            Some(NodeKind::Symlink(target)) => Found::Symlink(target.clone()),
            Some(_) => Found::Other,
            None => Found::Missing,
        })
    }

    fn make_dir(&mut self, rel: &Path) -> Result<()> {
        self.implicit_dir(rel);
        Ok(())
    }
}

/// An inode of `kind` no entry made: 0755, owner 0:0, mtime 0, empty.
pub(super) fn no_entry(kind: NodeKind) -> Inode {
    Inode {
        kind,
        uid: 0,
        gid: 0,
        mode: 0o755,
        mtime: 0,
        xattrs: Vec::new(),
        source: None,
        at: None,
        size: 0,
    }
}

/// An inode of `kind` with the metadata `info` gives.
fn inode_of(kind: NodeKind, info: &EntryInfo, source: Option<Pos>) -> Inode {
    Inode {
        kind,
        uid: info.uid,
        gid: info.gid,
        mode: info.mode,
        mtime: info.mtime,
        xattrs: info.xattrs.clone(),
        source,
        at: None,
        size: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::Index;
    use ociref::Digest;
    use std::io::{BufReader, BufWriter};

    /// Resident memory of this process, bytes.
    fn rss() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .expect("VmRSS");
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("number");
        kib * 1024
    }

    #[test]
    fn index_of_a_hundred_thousand_entries_stays_small() {
        // Debian-like paths: 1,000 directories of 100 entries, every 20th
        // a symlink, every 97th a hardlink to the file before it.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("layer.tar");
        let file = std::fs::File::create(&path).expect("tar");
        let mut builder = tar::Builder::new(BufWriter::new(file));
        for d in 0..1_000 {
            let parent = format!("usr/share/doc/package-{d:04}");
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            builder
                .append_data(&mut header, &parent, std::io::empty())
                .expect("dir");
            for f in 0..99 {
                let name = format!("{parent}/changelog-{f:02}.Debian.gz");
                let mut header = tar::Header::new_ustar();
                header.set_mode(0o644);
                header.set_size(0);
                if f % 20 == 19 {
                    header.set_entry_type(tar::EntryType::Symlink);
                    builder.append_link(&mut header, &name, "changelog-00.Debian.gz")
                } else if f % 97 == 96 {
                    header.set_entry_type(tar::EntryType::Link);
                    builder.append_link(
                        &mut header,
                        &name,
                        format!("{parent}/changelog-00.Debian.gz"),
                    )
                } else {
                    builder.append_data(&mut header, &name, std::io::empty())
                }
                .expect("entry");
            }
        }
        builder.into_inner().expect("tar");
        let layer: Digest = format!("sha256:{}", "ef".repeat(32))
            .parse()
            .expect("digest");
        let before = rss();
        let file = std::fs::File::open(&path).expect("tar");
        let mut archive = tar::Archive::new(BufReader::new(file));
        let mut index = Index::default();
        let entries = archive.entries_with_seek().expect("entries");
        index
            .add_layer(0, &layer, entries, None, None)
            .expect("indexed");
        let plan = crate::merge::emit::plan(&index);
        let grown = rss().saturating_sub(before);
        eprintln!(
            "index and plan of {} entries: {} KiB ({} bytes an entry)",
            index.entries,
            grown / 1024,
            grown / index.entries
        );
        assert_eq!(index.entries, 100_000);
        // Paths: the 100,000 entries and `usr`, `usr/share`, `usr/share/doc`.
        assert_eq!(index.tree.len(), 100_003);
        assert_eq!(plan.len(), 100_000);
        // About 41 MiB alone; other tests of this binary allocate too.
        assert!(grown < 64 << 20, "{grown} bytes");
    }
}
