//! Completing the image once the last entry is in: directory, extent tree
//! and attribute blocks, the journal, the group bitmaps and inode tables,
//! then the group descriptors and superblocks.

use super::dir::dir_blocks;
use super::extents::{self, Extent};
use super::files::ImageFiles;
use super::groups::write_groups;
use super::inode::{self, Body, Disk, EXTENTS_FL, Node};
use super::journal::{journal_blocks, journal_superblock};
use super::layout::{
    Allocator, BLOCK, BLOCKS_PER_GROUP, INODE_SIZE, INODES_PER_BLOCK, MAX_INODES_PER_GROUP,
    has_super,
};
use super::xattr::{self, Placement};
use super::{LOST_FOUND, content::push_extent};
use crate::error::{Error, Result};
use crate::sizing::{inode_count, mib, too_small};
use std::collections::HashMap;

/// Blocks of `lost+found`, so e2fsck can reconnect files without
/// allocating.
const LOST_FOUND_BLOCKS: usize = 4;
/// The fewest blocks a last group holding a superblock copy keeps beyond
/// the copy, else it is dropped (given size) or grown (computed size).
const LAST_GROUP_SLACK: u64 = 64;

/// What the image is, beyond its tree.
#[derive(Clone, Debug)]
pub(crate) struct ImageShape {
    /// Size in bytes when given, else computed.
    pub(crate) size: Option<u64>,
    /// Free space added to a computed size, in bytes.
    pub(crate) headroom: u64,
    /// Volume label (at most 16 bytes).
    pub(crate) label: String,
    /// UUID, also the directory hash seed.
    pub(crate) uuid: [u8; 16],
    /// Every time the superblock holds; the root's and `lost+found`'s
    /// mtime unless the layers give them.
    pub(crate) time: i64,
}

/// The group geometry.
pub(super) struct Geometry {
    /// Blocks of the file system.
    pub(super) blocks: u64,
    pub(super) groups: u64,
    pub(super) inodes_per_group: u64,
    /// Journal blocks (0: no journal).
    pub(super) journal: u64,
}

impl Geometry {
    /// Blocks of each group's inode table.
    pub(super) fn table_blocks(&self) -> u64 {
        self.inodes_per_group / INODES_PER_BLOCK
    }
}

/// Where each group's bitmaps and table went, and the journal's extents.
pub(super) struct Placed {
    pub(super) block_bitmaps: Vec<u64>,
    pub(super) inode_bitmaps: Vec<u64>,
    pub(super) tables: Vec<u64>,
    /// The journal's first block (its superblock) and extent tree.
    pub(super) journal: Option<(u64, extents::Tree)>,
}

/// Completes the image: see the module documentation.
pub(super) fn finish(
    image: &ImageFiles<'_>,
    mut alloc: Allocator,
    mut nodes: Vec<Node>,
    shape: &ImageShape,
) -> Result<()> {
    // Each names the image as its path (see `IMAGE`).
    let io = |what: &'static str| {
        move |source| Error::Io {
            what,
            path: super::IMAGE.into(),
            source,
        }
    };
    let mut disks =
        lay_out_dirs(image, &mut alloc, &mut nodes).map_err(io("writing directories into"))?;
    lay_out_attrs(image, &mut alloc, &nodes, &mut disks).map_err(|e| match e {
        Ok(inode) => Error::NotInExt4 {
            path: format!("inode {inode}").into(),
            reason: "its extended attributes take more than a 4 KiB block".to_owned(),
        },
        Err(source) => io("writing attribute blocks into")(source),
    })?;
    lay_out_extent_trees(image, &mut alloc, &nodes, &mut disks)
        .map_err(io("writing extent trees into"))?;
    let (geometry, placed) = geometry(&mut alloc, nodes.len() as u64, shape)?;
    write_journal(image, &placed, &geometry, shape, &mut nodes, &mut disks)
        .map_err(io("writing the journal into"))?;
    write_tables(image, &geometry, &placed, &nodes, &disks)
        .map_err(io("writing inode tables into"))?;
    write_groups(image, &geometry, &placed, &alloc, &nodes, shape)
        .map_err(io("writing group metadata into"))?;
    let bytes = match shape.size {
        Some(size) => size.div_ceil(BLOCK) * BLOCK,
        None => geometry.blocks * BLOCK,
    };
    image.set_len(bytes).map_err(io("sizing"))
}

/// What each inode's on-disk form needs beyond the node, by inode.
struct DiskParts {
    i_block: [u8; 60],
    flags: u32,
    blocks: u64,
    xattr_block: u64,
    in_inode: Option<Vec<u8>>,
    /// Extents still to turn into a tree.
    extents: Option<Vec<Extent>>,
}

/// Writes every directory's blocks, turning its body into data; the
/// other inodes' parts as they stand.
fn lay_out_dirs(
    image: &ImageFiles<'_>,
    alloc: &mut Allocator,
    nodes: &mut [Node],
) -> std::io::Result<Vec<DiskParts>> {
    let mut run = Run::default();
    for (i, node) in nodes.iter_mut().enumerate() {
        let Body::Dir(parent, entries) = &node.body else {
            continue;
        };
        let inode = i as u32 + 1;
        let min = if inode == LOST_FOUND {
            LOST_FOUND_BLOCKS
        } else {
            1
        };
        let blocks = dir_blocks(inode, *parent, entries, min);
        let mut extents = Vec::new();
        let mut logical = 0;
        while logical < blocks.len() {
            let (start, len) = alloc.take((blocks.len() - logical) as u64);
            for (k, block) in blocks[logical..logical + len as usize].iter().enumerate() {
                run.push(image, start + k as u64, block)?;
            }
            push_extent(&mut extents, logical as u64, start, len);
            logical += len as usize;
        }
        node.size = blocks.len() as u64 * BLOCK;
        node.body = Body::Data(extents, blocks.len() as u64);
    }
    run.flush(image)?;
    Ok(nodes
        .iter()
        .map(|node| {
            let (i_block, flags, blocks, extents) = match &node.body {
                Body::Empty => ([0u8; 60], 0, 0, None),
                Body::Inline(bytes) => (*bytes, 0, 0, None),
                Body::Data(extents, blocks) => {
                    ([0u8; 60], EXTENTS_FL, *blocks, Some(extents.clone()))
                }
                Body::Dir(..) => unreachable!("laid out above"),
            };
            let flags = if node.mode == 0 { 0 } else { flags };
            DiskParts {
                i_block,
                flags,
                blocks,
                xattr_block: 0,
                in_inode: None,
                extents,
            }
        })
        .collect())
}

/// Blocks written in order, gathered into one write while they follow
/// each other.
#[derive(Default)]
struct Run {
    start: u64,
    bytes: Vec<u8>,
}

impl Run {
    fn push(&mut self, image: &ImageFiles<'_>, block: u64, content: &[u8]) -> std::io::Result<()> {
        if !self.bytes.is_empty() && self.start + self.bytes.len() as u64 / BLOCK != block {
            self.flush(image)?;
        }
        if self.bytes.is_empty() {
            self.start = block;
        }
        self.bytes.extend_from_slice(content);
        if self.bytes.len() >= 1 << 20 {
            self.flush(image)?;
        }
        Ok(())
    }

    fn flush(&mut self, image: &ImageFiles<'_>) -> std::io::Result<()> {
        if !self.bytes.is_empty() {
            image.write_all_at(&self.bytes, self.start * BLOCK)?;
            self.bytes.clear();
        }
        Ok(())
    }
}

/// Places every inode's attributes: in the inode, or in a block shared by
/// the inodes with the same ones. `Err(Ok(inode))`: too many to hold.
fn lay_out_attrs(
    image: &ImageFiles<'_>,
    alloc: &mut Allocator,
    nodes: &[Node],
    disks: &mut [DiskParts],
) -> std::result::Result<(), std::result::Result<u32, std::io::Error>> {
    let mut shared: HashMap<Vec<u8>, (u64, u32)> = HashMap::new();
    let mut order = Vec::new();
    for (i, (node, disk)) in nodes.iter().zip(disks.iter_mut()).enumerate() {
        match xattr::place(&node.attrs).ok_or(Ok(i as u32 + 1))? {
            Placement::Nothing => {}
            Placement::InInode(area) => disk.in_inode = Some(area),
            Placement::Block(block) => {
                let entry = shared.entry(block).or_insert_with_key(|block| {
                    order.push(block.clone());
                    (alloc.take(1).0, 0)
                });
                entry.1 += 1;
                disk.xattr_block = entry.0;
                disk.blocks += 1;
            }
        }
    }
    let mut run = Run::default();
    for mut block in order {
        let (number, refs) = shared[&block];
        xattr::set_refcount(&mut block, refs);
        run.push(image, number, &block).map_err(Err)?;
    }
    run.flush(image).map_err(Err)?;
    Ok(())
}

/// Gives each inode its `i_block`: the extents, or the root of a tree
/// whose blocks are written here.
fn lay_out_extent_trees(
    image: &ImageFiles<'_>,
    alloc: &mut Allocator,
    nodes: &[Node],
    disks: &mut [DiskParts],
) -> std::io::Result<()> {
    let mut run = Run::default();
    for (node, disk) in nodes.iter().zip(disks.iter_mut()) {
        let Some(extents) = disk.extents.take() else {
            continue;
        };
        if node.mode == 0 {
            continue;
        }
        let tree = extents::tree(&extents, &mut || alloc.take(1).0);
        for (number, block) in &tree.blocks {
            run.push(image, *number, block)?;
        }
        disk.blocks += tree.blocks.len() as u64;
        disk.i_block = tree.root;
    }
    run.flush(image)
}

/// Decides the group count, inodes per group and journal size (each
/// depends on the others through the size), and places the journal, the
/// bitmaps and the inode tables.
fn geometry(
    alloc: &mut Allocator,
    used_inodes: u64,
    shape: &ImageShape,
) -> Result<(Geometry, Placed)> {
    let wanted_inodes = inode_count(used_inodes).max(used_inodes);
    let given = shape.size.map(|size| size.div_ceil(BLOCK));
    let mut total = given.unwrap_or(alloc.end() + shape.headroom.div_ceil(BLOCK));
    for _ in 0..16 {
        let mut groups = total.div_ceil(BLOCKS_PER_GROUP).max(1);
        groups = groups.max(wanted_inodes.div_ceil(MAX_INODES_PER_GROUP));
        let inodes_per_group = wanted_inodes
            .div_ceil(groups)
            .next_multiple_of(INODES_PER_BLOCK);
        let geometry = Geometry {
            blocks: total,
            groups,
            inodes_per_group,
            journal: journal_blocks(total),
        };
        let mut trial = alloc.clone();
        let placed = place_metadata(&mut trial, &geometry);
        let end = trial.end();
        if groups > trial.gdt_blocks() * (BLOCK / 32) {
            return Err(Error::InvalidOption {
                reason: format!(
                    "an image of {} is past what this build planned for",
                    mib(total * BLOCK)
                ),
            });
        }
        let next = match given {
            Some(given) if end > given => {
                return Err(too_small(
                    given * BLOCK,
                    (end + shape.headroom.div_ceil(BLOCK)) * BLOCK,
                ));
            }
            Some(given) => given,
            None => (end + shape.headroom.div_ceil(BLOCK)).max(end + 1),
        };
        let next = last_group_fitted(next, trial.gdt_blocks(), given.is_some());
        if next < end {
            return Err(too_small(
                next * BLOCK,
                (end + shape.headroom.div_ceil(BLOCK)) * BLOCK,
            ));
        }
        // A computed size never shrinks from one try to the next.
        let next = if given.is_some() {
            next
        } else {
            next.max(total)
        };
        if next == total {
            *alloc = trial;
            return Ok((geometry, placed));
        }
        total = next;
    }
    Err(Error::InvalidOption {
        reason: "the image's layout did not settle".to_owned(),
    })
}

/// `blocks`, adjusted so a last group holding a superblock copy has room
/// after it: grown when computed, the group dropped when the size was
/// given (as mke2fs does).
fn last_group_fitted(blocks: u64, gdt_blocks: u64, given: bool) -> u64 {
    let last = (blocks - 1) / BLOCKS_PER_GROUP;
    let start = last * BLOCKS_PER_GROUP;
    let need = 1 + gdt_blocks + LAST_GROUP_SLACK;
    if last == 0 || !has_super(last) || blocks - start >= need {
        return blocks;
    }
    match given {
        true => start,
        false => start + need,
    }
}

fn place_metadata(alloc: &mut Allocator, geometry: &Geometry) -> Placed {
    let mut journal = Vec::new();
    let mut logical = 0;
    while logical < geometry.journal {
        let (start, len) = alloc.take(geometry.journal - logical);
        push_extent(&mut journal, logical, start, len);
        logical += len;
    }
    let journal = journal.first().map(|first| {
        (
            first.start,
            extents::tree(&journal, &mut || alloc.take(1).0),
        )
    });
    let groups = geometry.groups as usize;
    let block_bitmaps = (0..groups).map(|_| alloc.take_contiguous(1)).collect();
    let inode_bitmaps = (0..groups).map(|_| alloc.take_contiguous(1)).collect();
    let tables = (0..groups)
        .map(|_| alloc.take_contiguous(geometry.table_blocks()))
        .collect();
    Placed {
        block_bitmaps,
        inode_bitmaps,
        tables,
        journal,
    }
}

/// Writes the journal's superblock and makes inode 8 the journal.
fn write_journal(
    image: &ImageFiles<'_>,
    placed: &Placed,
    geometry: &Geometry,
    shape: &ImageShape,
    nodes: &mut [Node],
    disks: &mut [DiskParts],
) -> std::io::Result<()> {
    let Some((first, tree)) = &placed.journal else {
        return Ok(());
    };
    image.write_all_at(
        &journal_superblock(geometry.journal, &shape.uuid),
        first * BLOCK,
    )?;
    for (number, block) in &tree.blocks {
        image.write_all_at(block, number * BLOCK)?;
    }
    let mut journal = Node::new(inode::mode::REGULAR | 0o600, 0, 0, shape.time);
    journal.links = 1;
    journal.size = geometry.journal * BLOCK;
    nodes[7] = journal;
    disks[7] = DiskParts {
        i_block: tree.root,
        flags: EXTENTS_FL,
        blocks: geometry.journal + tree.blocks.len() as u64,
        xattr_block: 0,
        in_inode: None,
        extents: None,
    };
    Ok(())
}

/// Writes each group's inode table (the part with inodes in use).
fn write_tables(
    image: &ImageFiles<'_>,
    geometry: &Geometry,
    placed: &Placed,
    nodes: &[Node],
    disks: &[DiskParts],
) -> std::io::Result<()> {
    let per_group = geometry.inodes_per_group as usize;
    for (group, (nodes, disks)) in nodes
        .chunks(per_group)
        .zip(disks.chunks(per_group))
        .enumerate()
    {
        let mut table = Vec::with_capacity(nodes.len() * INODE_SIZE as usize);
        for (node, disk) in nodes.iter().zip(disks) {
            let on_disk = Disk {
                i_block: disk.i_block,
                flags: disk.flags,
                blocks: disk.blocks,
                xattr_block: disk.xattr_block,
                in_inode: disk.in_inode.as_deref(),
            };
            match node.mode {
                0 => table.extend_from_slice(&[0u8; INODE_SIZE as usize]),
                _ => table.extend_from_slice(&inode::encode(node, &on_disk)),
            }
        }
        image.write_all_at(&table, placed.tables[group] * BLOCK)?;
    }
    Ok(())
}
