//! Extent trees: a file's runs of blocks as the four extents its inode
//! holds, or as a tree of 4 KiB blocks under it when there are more.

use super::layout::BLOCK;

/// The longest initialized extent, in blocks.
const MAX_EXTENT_LEN: u64 = 32768;
/// Entries of the tree root in the inode's `i_block`.
const ROOT_ENTRIES: usize = 4;
/// Entries of a tree block: (4096 - 12-byte header) / 12.
const BLOCK_ENTRIES: usize = 340;
/// The magic number of an extent header.
const MAGIC: u16 = 0xF30A;

/// `len` blocks from `start` on disk holding the file's blocks from
/// `logical` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Extent {
    /// The first block in the file.
    pub(super) logical: u64,
    /// The first block on disk.
    pub(super) start: u64,
    /// Blocks.
    pub(super) len: u64,
}

/// An extent tree laid out: the inode's `i_block` and the tree blocks
/// below it, each with the block number `place` gave it.
pub(super) struct Tree {
    /// The 60 bytes of `i_block`.
    pub(super) root: [u8; 60],
    /// Tree blocks: block number and content.
    pub(super) blocks: Vec<(u64, Vec<u8>)>,
}

/// Lays out the tree of `extents` (logical order), asking `place` for a
/// block for each tree block.
pub(super) fn tree(extents: &[Extent], place: &mut dyn FnMut() -> u64) -> Tree {
    // Leaf entries: (first logical block, 12 bytes).
    let mut level: Vec<(u64, [u8; 12])> = extents
        .iter()
        .flat_map(|e| split(*e))
        .map(|e| (e.logical, leaf_entry(e)))
        .collect();
    let mut depth = 0u16;
    let mut blocks = Vec::new();
    while level.len() > ROOT_ENTRIES {
        let mut next = Vec::new();
        for chunk in level.chunks(BLOCK_ENTRIES) {
            let number = place();
            let mut block = vec![0u8; BLOCK as usize];
            write_node(&mut block, chunk, BLOCK_ENTRIES, depth);
            blocks.push((number, block));
            next.push((chunk[0].0, index_entry(chunk[0].0, number)));
        }
        level = next;
        depth += 1;
    }
    let mut root = [0u8; 60];
    write_node(&mut root, &level, ROOT_ENTRIES, depth);
    Tree { root, blocks }
}

/// Extents of at most [`MAX_EXTENT_LEN`] blocks.
fn split(extent: Extent) -> impl Iterator<Item = Extent> {
    (0..extent.len.div_ceil(MAX_EXTENT_LEN)).map(move |i| {
        let off = i * MAX_EXTENT_LEN;
        Extent {
            logical: extent.logical + off,
            start: extent.start + off,
            len: (extent.len - off).min(MAX_EXTENT_LEN),
        }
    })
}

fn write_node(out: &mut [u8], entries: &[(u64, [u8; 12])], max: usize, depth: u16) {
    out[0..2].copy_from_slice(&MAGIC.to_le_bytes());
    out[2..4].copy_from_slice(&(entries.len() as u16).to_le_bytes());
    out[4..6].copy_from_slice(&(max as u16).to_le_bytes());
    out[6..8].copy_from_slice(&depth.to_le_bytes());
    for (i, (_, entry)) in entries.iter().enumerate() {
        out[12 + 12 * i..24 + 12 * i].copy_from_slice(entry);
    }
}

fn leaf_entry(e: Extent) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[0..4].copy_from_slice(&(e.logical as u32).to_le_bytes());
    out[4..6].copy_from_slice(&(e.len as u16).to_le_bytes());
    out[6..8].copy_from_slice(&((e.start >> 32) as u16).to_le_bytes());
    out[8..12].copy_from_slice(&(e.start as u32).to_le_bytes());
    out
}

fn index_entry(logical: u64, block: u64) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[0..4].copy_from_slice(&(logical as u32).to_le_bytes());
    out[4..8].copy_from_slice(&(block as u32).to_le_bytes());
    out[8..10].copy_from_slice(&((block >> 32) as u16).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(bytes: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([bytes[at], bytes[at + 1]])
    }

    #[test]
    fn few_extents_fit_the_inode_and_long_ones_are_split() {
        let extents = [Extent {
            logical: 0,
            start: 100,
            len: MAX_EXTENT_LEN + 5,
        }];
        let tree = tree(&extents, &mut || panic!("no tree block"));
        assert_eq!(u16_at(&tree.root, 0), MAGIC);
        assert_eq!(u16_at(&tree.root, 2), 2);
        assert_eq!(u16_at(&tree.root, 6), 0);
        // The second extent: logical 32768, 5 blocks.
        assert_eq!(&tree.root[24..28], &32768u32.to_le_bytes());
        assert_eq!(u16_at(&tree.root, 28), 5);
    }

    #[test]
    fn many_extents_make_a_deeper_tree() {
        let extents: Vec<Extent> = (0..2000)
            .map(|i| Extent {
                logical: 2 * i,
                start: 1000 + 2 * i,
                len: 1,
            })
            .collect();
        let mut next = 50;
        let tree = tree(&extents, &mut || {
            next += 1;
            next
        });
        // 2000 leaves: 6 leaf blocks, one index block above them.
        assert_eq!(tree.blocks.len(), 7);
        assert_eq!(u16_at(&tree.root, 6), 2);
        assert_eq!(u16_at(&tree.root, 2), 1);
        let top = &tree.blocks[6].1;
        assert_eq!(u16_at(top, 2), 6);
        assert_eq!(u16_at(top, 6), 1);
    }
}
