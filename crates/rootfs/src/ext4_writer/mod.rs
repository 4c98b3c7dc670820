//! cachectl's own ext4 writer: the merged entry stream written straight
//! into an ext4 image, no `mke2fs`, no tree, no second tool pass.
//!
//! # Layout
//! Content goes first, in the order the entries come: each regular file's
//! blocks are written as they are read, to the next free blocks (blocks of
//! zeros become holes), so the image is written front to back at the speed
//! the stream comes. Everything that depends on the whole tree comes after
//! it, once the last entry is in: directory blocks, extent tree blocks of
//! files with more than four extents, attribute blocks (shared between
//! inodes with the same attributes), the journal, then every group's
//! bitmaps and inode table (`flex_bg` lets them live anywhere). The group
//! count, inodes per group and journal size follow from where that ends,
//! so nothing needs sizing before the first entry. Group descriptors and
//! the superblock come last, with their copies in groups 1 and the powers
//! of 3, 5 and 7 (`sparse_super`), which the block allocator steps over.
//!
//! # What the image holds
//! Features: `has_journal`, `ext_attr`, `dir_index`, `filetype`,
//! `extent`, `flex_bg`, `sparse_super`, `large_file`, `huge_file`,
//! `dir_nlink`, `extra_isize`; 4 KiB blocks, 256-byte inodes; no
//! metadata checksums. Directories are linear (the kernel indexes one
//! when it grows past a block; `e2fsck -fD` indexes the rest). Inode 11
//! is `lost+found` (16 KiB), the layers' own when they carry one. Every
//! inode's access, change and creation times are its mtime; the UUID and
//! hash seed come from the image digest and every superblock time is
//! fixed, so the same image always gives the same bytes.

mod content;
mod dir;
mod extents;
mod files;
mod finish;
mod groups;
mod inode;
mod journal;
mod layout;
mod xattr;

pub(crate) use finish::ImageShape;

use crate::error::{Error, Result};
use crate::merge::{ContentKey, ContentPlacer, EntrySink, MergedEntry, MergedKind};
use content::{ContentWriter, Failed, Placed};
use dir::{DirEntry, file_type};
use extents::Extent;
pub(crate) use files::ImageFiles;
use inode::{Body, Node, device_block, mode};
use layout::{Allocator, BLOCK, BLOCKS_PER_GROUP};
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What errors writing the image name as its path; the caller puts the
/// image's own name in its place ([`Error::relocated`]).
pub(crate) const IMAGE: &str = "the image";
/// The largest image the group descriptors have room for, unless a
/// larger size is given: 1 TiB (64 blocks of descriptors after each
/// superblock copy).
const MAX_COMPUTED: u64 = 1 << 40;
/// The root directory's inode.
const ROOT: u32 = 2;
/// `lost+found`'s inode, the first one not reserved.
const LOST_FOUND: u32 = 11;
/// The longest name of a directory entry.
const NAME_MAX: usize = 255;
/// The longest symlink target (`PATH_MAX` less the NUL).
const TARGET_MAX: usize = 4095;

/// Takes merged entries and writes them into an ext4 image; see the
/// module documentation. [`Ext4Writer::finish`] completes the image.
pub(crate) struct Ext4Writer<'f> {
    image: &'f ImageFiles<'f>,
    alloc: Allocator,
    content: ContentWriter,
    /// Inode `n` is `nodes[n - 1]`; 1 to 10 are reserved (zero).
    nodes: Vec<Node>,
    /// Every path written (the root is empty), to its inode.
    paths: HashMap<Box<[u8]>, u32>,
    /// Content placed while the layers were indexed, not yet claimed by
    /// an inode.
    placed: HashMap<ContentKey, Placed>,
    /// Why an entry was refused, in the crate's terms.
    failure: Option<Error>,
}

impl<'f> Ext4Writer<'f> {
    /// A writer into `image` (an empty file) of `shape`: the group
    /// descriptors' room is set for an image of up to [`MAX_COMPUTED`]
    /// (or the size given, when larger).
    pub(crate) fn new(image: &'f ImageFiles<'f>, shape: &ImageShape) -> Ext4Writer<'f> {
        let bound = shape.size.unwrap_or(0).max(MAX_COMPUTED) / BLOCK;
        let gdt_blocks = bound.div_ceil(BLOCKS_PER_GROUP).div_ceil(BLOCK / 32);
        let mut nodes: Vec<Node> = (1..=10).map(|_| Node::new(0, 0, 0, 0)).collect();
        let mut root = Node::new(mode::DIR | 0o755, 0, 0, shape.time);
        root.links = 3;
        root.body = Body::Dir(ROOT, Vec::new());
        nodes[ROOT as usize - 1] = root;
        let mut lost = Node::new(mode::DIR | 0o700, 0, 0, shape.time);
        lost.links = 2;
        lost.body = Body::Dir(ROOT, Vec::new());
        nodes.push(lost);
        let mut writer = Ext4Writer {
            image,
            alloc: Allocator::new(gdt_blocks),
            content: ContentWriter::new(),
            nodes,
            paths: HashMap::new(),
            placed: HashMap::new(),
            failure: None,
        };
        writer.paths.insert(Box::from(&b""[..]), ROOT);
        writer.link(ROOT, b"lost+found", LOST_FOUND);
        writer
            .paths
            .insert(Box::from(&b"lost+found"[..]), LOST_FOUND);
        writer
    }

    /// Why the last entry was refused, once.
    pub(crate) fn failure(&mut self) -> Option<Error> {
        self.failure.take()
    }

    /// Lays out what needs the whole tree and writes the metadata: the
    /// image is complete (not synced) when it returns.
    pub(crate) fn finish(self, shape: &ImageShape) -> Result<()> {
        if let Some(failure) = self.failure {
            return Err(failure);
        }
        let mut alloc = self.alloc;
        // Content no surviving inode claimed (a later entry hid it): its
        // blocks are freed and zeroed.
        for placed in self.placed.into_values() {
            for extent in placed.extents {
                alloc.free(extent.start, extent.len);
                content::zero(self.image, extent.start, extent.len).map_err(|source| {
                    Error::Io {
                        what: "freeing hidden content in",
                        path: IMAGE.into(),
                        source,
                    }
                })?;
            }
        }
        finish::finish(self.image, alloc, self.nodes, shape)
    }

    /// Adds `name` for `inode` to the directory `dir`.
    fn link(&mut self, dir: u32, name: &[u8], inode: u32) {
        let file_type = file_type_of(self.nodes[inode as usize - 1].mode);
        if let Body::Dir(_, entries) = &mut self.nodes[dir as usize - 1].body {
            entries.push(DirEntry {
                name: Box::from(name),
                inode,
                file_type,
            });
        }
    }

    /// Takes one entry; a refusal is an `Err` naming the path.
    fn add(&mut self, entry: &MergedEntry<'_>, data: &mut dyn Read) -> Result<()> {
        let path = entry.path.as_os_str().as_bytes();
        let refuse = |reason: String| Error::NotInExt4 {
            path: entry.path.to_path_buf(),
            reason,
        };
        let uid = u32::try_from(entry.uid)
            .map_err(|_| refuse(format!("owner {} is past 2^32", entry.uid)))?;
        let gid = u32::try_from(entry.gid)
            .map_err(|_| refuse(format!("group {} is past 2^32", entry.gid)))?;
        let attrs = entry
            .xattrs
            .iter()
            .map(|(name, value)| {
                xattr::attr(name, value)
                    .map_err(|why| refuse(format!("extended attribute {name}: {why}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let perms = (entry.mode & 0o7777) as u16;
        if path.is_empty() {
            // The root: the layers' metadata for it.
            let mut meta = Node::new(mode::DIR | perms, uid, gid, entry.mtime);
            meta.attrs = attrs;
            self.set_dir_metadata(ROOT, meta);
            return Ok(());
        }
        let (parent, name) = self.parent_of(entry.path).map_err(refuse)?;
        if let MergedKind::Hardlink(target) = &entry.kind {
            let target = *self
                .paths
                .get(target.as_os_str().as_bytes())
                .ok_or_else(|| {
                    refuse(format!(
                        "its target {} was not written before it",
                        target.display()
                    ))
                })?;
            if self.nodes[target as usize - 1].is_dir() {
                return Err(refuse("a hardlink to a directory".to_owned()));
            }
            self.nodes[target as usize - 1].links += 1;
            self.link(parent, name, target);
            self.paths.insert(Box::from(path), target);
            return Ok(());
        }
        if parent == ROOT && name == b"lost+found" {
            if matches!(entry.kind, MergedKind::Dir) {
                let mut meta = Node::new(mode::DIR | perms, uid, gid, entry.mtime);
                meta.attrs = attrs;
                self.set_dir_metadata(LOST_FOUND, meta);
                return Ok(());
            }
            self.drop_lost_found();
        }
        let mut node = Node::new(0, uid, gid, entry.mtime);
        node.attrs = attrs;
        node.links = 1;
        match &entry.kind {
            MergedKind::Dir => {
                node.mode = mode::DIR | perms;
                node.links = 2;
                node.body = Body::Dir(parent, Vec::new());
                self.nodes[parent as usize - 1].links += 1;
            }
            MergedKind::File { size } => {
                node.mode = mode::REGULAR | perms;
                node.size = *size;
                let placed = match entry.source.and_then(|key| self.placed.remove(&key)) {
                    Some(placed) => placed,
                    None => self.write_content(data, *size, entry.path)?,
                };
                node.body = Body::Data(placed.extents, placed.blocks);
            }
            MergedKind::Symlink(target) => {
                node.mode = mode::SYMLINK | 0o777;
                node.body = self
                    .symlink(target.as_os_str().as_bytes())
                    .map_err(|e| match e {
                        Ok(reason) => refuse(reason),
                        Err(source) => Error::Io {
                            what: "writing",
                            path: IMAGE.into(),
                            source,
                        },
                    })?;
                node.size = target.as_os_str().len() as u64;
            }
            MergedKind::Device {
                block,
                major,
                minor,
            } => {
                node.mode = if *block { mode::BLOCK } else { mode::CHAR } | perms;
                node.body = Body::Inline(device_block(*major, *minor));
            }
            MergedKind::Fifo => node.mode = mode::FIFO | perms,
            MergedKind::Hardlink(_) => unreachable!("handled above"),
        }
        self.nodes.push(node);
        let inode = self.nodes.len() as u32;
        self.link(parent, name, inode);
        self.paths.insert(Box::from(path), inode);
        Ok(())
    }

    /// Writes `size` bytes of content from `data` (the file at `path`).
    fn write_content(&mut self, data: &mut dyn Read, size: u64, path: &Path) -> Result<Placed> {
        self.content
            .write(self.image, &mut self.alloc, data, size)
            .map_err(|failed| match failed {
                Failed::Reading(source) => Error::Io {
                    what: "reading the content of",
                    path: path.to_path_buf(),
                    source,
                },
                Failed::Writing(source) => Error::Io {
                    what: "writing",
                    path: IMAGE.into(),
                    source,
                },
            })
    }

    /// The directory inode holding `path` and its last name, or why not.
    fn parent_of<'p>(&self, path: &'p Path) -> std::result::Result<(u32, &'p [u8]), String> {
        let name = path
            .file_name()
            .map(|n| n.as_bytes())
            .ok_or("a path without a name")?;
        if name.len() > NAME_MAX {
            return Err(format!(
                "a name of {} bytes (ext4 holds {NAME_MAX})",
                name.len()
            ));
        }
        let parent = path
            .parent()
            .map(|p| p.as_os_str().as_bytes())
            .unwrap_or(b"");
        match self.paths.get(parent) {
            Some(&dir) if self.nodes[dir as usize - 1].is_dir() => Ok((dir, name)),
            _ => Err("its parent directory was not written before it".to_owned()),
        }
    }

    /// Gives the directory `dir` the mode, owner, mtime and attributes of
    /// `meta`.
    fn set_dir_metadata(&mut self, dir: u32, meta: Node) {
        let node = &mut self.nodes[dir as usize - 1];
        node.mode = meta.mode;
        (node.uid, node.gid, node.mtime, node.attrs) = (meta.uid, meta.gid, meta.mtime, meta.attrs);
    }

    /// Takes `lost+found` out of the root: the layers put something else
    /// at its name.
    fn drop_lost_found(&mut self) {
        if let Body::Dir(_, entries) = &mut self.nodes[ROOT as usize - 1].body {
            entries.retain(|e| e.inode != LOST_FOUND);
        }
        self.nodes[ROOT as usize - 1].links -= 1;
        self.nodes[LOST_FOUND as usize - 1] = Node::new(0, 0, 0, 0);
        self.paths.remove(&b"lost+found"[..]);
    }

    /// A symlink's body: the target in `i_block` when shorter than 60
    /// bytes, else in a block of its own. `Err(Ok(reason))` refuses it.
    fn symlink(
        &mut self,
        target: &[u8],
    ) -> std::result::Result<Body, std::result::Result<String, std::io::Error>> {
        if target.len() < 60 {
            let mut inline = [0u8; 60];
            inline[..target.len()].copy_from_slice(target);
            return Ok(Body::Inline(inline));
        }
        if target.len() > TARGET_MAX {
            return Err(Ok(format!(
                "a symlink target of {} bytes (at most {TARGET_MAX})",
                target.len()
            )));
        }
        let (start, _) = self.alloc.take(1);
        let mut block = vec![0u8; BLOCK as usize];
        block[..target.len()].copy_from_slice(target);
        self.image
            .write_all_at(&block, start * BLOCK)
            .map_err(Err)?;
        Ok(Body::Data(
            vec![Extent {
                logical: 0,
                start,
                len: 1,
            }],
            1,
        ))
    }
}

impl ContentPlacer for Ext4Writer<'_> {
    fn place(&mut self, key: ContentKey, data: &mut dyn Read, size: u64) -> Result<()> {
        let placed = self.write_content(data, size, Path::new("a layer entry"))?;
        self.placed.insert(key, placed);
        Ok(())
    }
}

impl EntrySink for Ext4Writer<'_> {
    fn entry(&mut self, entry: &MergedEntry<'_>, data: &mut dyn Read) -> std::io::Result<()> {
        self.add(entry, data).map_err(|err| {
            let message = err.to_string();
            self.failure = Some(err);
            std::io::Error::other(message)
        })
    }
}

/// The directory entry type of an inode of `mode`.
fn file_type_of(mode: u16) -> u8 {
    match mode & 0o170000 {
        mode::DIR => file_type::DIR,
        mode::CHAR => file_type::CHAR,
        mode::BLOCK => file_type::BLOCK,
        mode::FIFO => file_type::FIFO,
        mode::SYMLINK => file_type::SYMLINK,
        _ => file_type::REGULAR,
    }
}
