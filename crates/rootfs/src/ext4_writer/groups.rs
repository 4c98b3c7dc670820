//! The group bitmaps, the group descriptors and the superblock, with the
//! copies of the last two in the groups that hold one.

use super::files::ImageFiles;
use super::finish::{Geometry, ImageShape, Placed};
use super::inode::Node;
use super::layout::{Allocator, BLOCK, BLOCKS_PER_GROUP, has_super};

/// Inodes 1 to 10 are reserved, in use whether or not they hold anything.
const FIRST_INODE: u64 = 11;

/// `s_feature_compat`: has_journal, ext_attr, dir_index.
const COMPAT_JOURNAL: u32 = 0x4;
const COMPAT: u32 = 0x8 | 0x20;
/// `s_feature_incompat`: filetype, extents, flex_bg.
const INCOMPAT: u32 = 0x2 | 0x40 | 0x200;
/// `s_feature_ro_compat`: sparse_super, large_file, huge_file, dir_nlink,
/// extra_isize.
const RO_COMPAT: u32 = 0x1 | 0x2 | 0x8 | 0x20 | 0x40;

/// Per group: free blocks, free inodes, directories.
struct Counts {
    free_blocks: Vec<u64>,
    free_inodes: Vec<u64>,
    dirs: Vec<u64>,
}

/// Writes the bitmaps, then the descriptors and superblock copies.
pub(super) fn write_groups(
    image: &ImageFiles<'_>,
    geometry: &Geometry,
    placed: &Placed,
    alloc: &Allocator,
    nodes: &[Node],
    shape: &ImageShape,
) -> std::io::Result<()> {
    // The descriptors take the blocks the group count needs; the rest of
    // the room kept after each superblock copy is free.
    let gdt_blocks = (geometry.groups * 32).div_ceil(BLOCK);
    let mut alloc = alloc.clone();
    for group in (0..geometry.groups).filter(|&g| has_super(g)) {
        let first = group * BLOCKS_PER_GROUP;
        alloc.free(first + 1 + gdt_blocks, alloc.gdt_blocks() - gdt_blocks);
        // A copy in a group the content never reached is used too.
        alloc.mark_used(first, 1 + gdt_blocks);
    }
    let counts = write_bitmaps(image, geometry, placed, &alloc, nodes)?;
    let descriptors = descriptors(geometry, placed, &counts, gdt_blocks);
    let free_blocks: u64 = counts.free_blocks.iter().sum();
    let free_inodes: u64 = counts.free_inodes.iter().sum();
    for group in (0..geometry.groups).filter(|&g| has_super(g)) {
        let first = group * BLOCKS_PER_GROUP;
        let mut block = vec![0u8; BLOCK as usize];
        let sb = superblock(geometry, placed, shape, (free_blocks, free_inodes), group);
        let at = if group == 0 { 1024 } else { 0 };
        block[at..at + 1024].copy_from_slice(&sb);
        image.write_all_at(&block, first * BLOCK)?;
        image.write_all_at(&descriptors, (first + 1) * BLOCK)?;
    }
    Ok(())
}

fn write_bitmaps(
    image: &ImageFiles<'_>,
    geometry: &Geometry,
    placed: &Placed,
    alloc: &Allocator,
    nodes: &[Node],
) -> std::io::Result<Counts> {
    let mut counts = Counts {
        free_blocks: Vec::new(),
        free_inodes: Vec::new(),
        dirs: Vec::new(),
    };
    let mut runs = alloc.used().iter().peekable();
    for group in 0..geometry.groups {
        let first = group * BLOCKS_PER_GROUP;
        let end = (first + BLOCKS_PER_GROUP).min(geometry.blocks);
        let mut bitmap = vec![0u8; BLOCK as usize];
        let mut used = 0;
        while let Some(&&(start, len)) = runs.peek() {
            let (from, to) = (start.max(first), (start + len).min(end));
            for block in from..to {
                set(&mut bitmap, block - first);
            }
            used += to.saturating_sub(from);
            if start + len > end {
                break;
            }
            runs.next();
        }
        // Bits past the last block are set.
        for bit in end - first..BLOCKS_PER_GROUP {
            set(&mut bitmap, bit);
        }
        counts.free_blocks.push(end - first - used);
        image.write_all_at(&bitmap, placed.block_bitmaps[group as usize] * BLOCK)?;

        let per_group = geometry.inodes_per_group;
        let mut bitmap = vec![0u8; BLOCK as usize];
        let (mut in_use, mut dirs) = (0, 0);
        for bit in 0..per_group {
            let inode = group * per_group + bit + 1;
            let node = nodes.get(inode as usize - 1);
            if inode < FIRST_INODE || node.is_some_and(|n| n.mode != 0) {
                set(&mut bitmap, bit);
                in_use += 1;
                dirs += u64::from(node.is_some_and(Node::is_dir));
            }
        }
        for bit in per_group..BLOCKS_PER_GROUP {
            set(&mut bitmap, bit);
        }
        counts.free_inodes.push(per_group - in_use);
        counts.dirs.push(dirs);
        image.write_all_at(&bitmap, placed.inode_bitmaps[group as usize] * BLOCK)?;
    }
    Ok(counts)
}

fn set(bitmap: &mut [u8], bit: u64) {
    bitmap[(bit / 8) as usize] |= 1 << (bit % 8);
}

/// The group descriptors, 32 bytes each, padded to whole blocks.
fn descriptors(geometry: &Geometry, placed: &Placed, counts: &Counts, gdt_blocks: u64) -> Vec<u8> {
    let mut out = vec![0u8; (gdt_blocks * BLOCK) as usize];
    for group in 0..geometry.groups as usize {
        let d = &mut out[group * 32..group * 32 + 32];
        d[0..4].copy_from_slice(&(placed.block_bitmaps[group] as u32).to_le_bytes());
        d[4..8].copy_from_slice(&(placed.inode_bitmaps[group] as u32).to_le_bytes());
        d[8..12].copy_from_slice(&(placed.tables[group] as u32).to_le_bytes());
        d[12..14].copy_from_slice(&(counts.free_blocks[group] as u16).to_le_bytes());
        d[14..16].copy_from_slice(&(counts.free_inodes[group] as u16).to_le_bytes());
        d[16..18].copy_from_slice(&(counts.dirs[group] as u16).to_le_bytes());
    }
    out
}

/// The superblock copy of `group`.
fn superblock(
    geometry: &Geometry,
    placed: &Placed,
    shape: &ImageShape,
    (free_blocks, free_inodes): (u64, u64),
    group: u64,
) -> Vec<u8> {
    let mut sb = vec![0u8; 1024];
    let mut put = |at: usize, value: u32| sb[at..at + 4].copy_from_slice(&value.to_le_bytes());
    let time = shape.time as u32;
    put(0, (geometry.groups * geometry.inodes_per_group) as u32);
    put(4, geometry.blocks as u32);
    put(12, free_blocks as u32);
    put(16, free_inodes as u32);
    put(24, 2); // 4 KiB blocks
    put(28, 2); // clusters of one block
    put(32, BLOCKS_PER_GROUP as u32);
    put(36, BLOCKS_PER_GROUP as u32);
    put(40, geometry.inodes_per_group as u32);
    put(48, time); // written
    put(64, time); // last checked
    put(76, 1); // dynamic revision
    put(84, FIRST_INODE as u32);
    let journal = geometry.journal > 0;
    put(92, COMPAT | if journal { COMPAT_JOURNAL } else { 0 });
    put(96, INCOMPAT);
    put(100, RO_COMPAT);
    if journal {
        put(224, 8);
    }
    put(256, 0x0004 | 0x0008); // user_xattr, acl
    put(264, time); // made
    put(352, 0x1); // signed directory hash
    let mut put16 = |at: usize, value: u16| sb[at..at + 2].copy_from_slice(&value.to_le_bytes());
    put16(52, 0); // mounts
    put16(54, 0xFFFF); // no mount-count check
    put16(56, 0xEF53);
    put16(58, 1); // clean
    put16(60, 1); // on errors, continue
    put16(88, 256); // inode size
    put16(90, group as u16);
    put16(348, 32); // extra inode bytes, least
    put16(350, 32); // and wanted
    sb[104..120].copy_from_slice(&shape.uuid);
    let label = shape.label.as_bytes();
    sb[120..120 + label.len().min(16)].copy_from_slice(&label[..label.len().min(16)]);
    for (i, word) in shape.uuid.chunks(4).enumerate() {
        sb[236 + 4 * i..240 + 4 * i].copy_from_slice(word);
    }
    sb[252] = 1; // half_md4 directory hash
    sb[372] = 4; // 16 groups a flex group
    if let Some((_, tree)) = &placed.journal {
        // A copy of the journal inode's block map and size.
        sb[253] = 1;
        sb[268..328].copy_from_slice(&tree.root);
        let size = geometry.journal * BLOCK;
        sb[328..332].copy_from_slice(&((size >> 32) as u32).to_le_bytes());
        sb[332..336].copy_from_slice(&(size as u32).to_le_bytes());
    }
    sb
}
