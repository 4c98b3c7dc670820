//! Directory blocks: linear lists of entries (inode, record length, name
//! length, file type, name), `.` and `..` first, the last entry of each
//! block reaching its end.

use super::layout::BLOCK;

/// File types of directory entries.
pub(super) mod file_type {
    pub(in super::super) const REGULAR: u8 = 1;
    pub(in super::super) const DIR: u8 = 2;
    pub(in super::super) const CHAR: u8 = 3;
    pub(in super::super) const BLOCK: u8 = 4;
    pub(in super::super) const FIFO: u8 = 5;
    pub(in super::super) const SYMLINK: u8 = 7;
}

/// One name in a directory.
#[derive(Clone, Debug)]
pub(super) struct DirEntry {
    pub(super) name: Box<[u8]>,
    pub(super) inode: u32,
    pub(super) file_type: u8,
}

fn record_len(name_len: usize) -> usize {
    (8 + name_len).next_multiple_of(4)
}

/// The blocks of a directory (at least one, `min_blocks` when more) that
/// holds `entries` after `.` (`inode`) and `..` (`parent`).
pub(super) fn dir_blocks(
    inode: u32,
    parent: u32,
    entries: &[DirEntry],
    min_blocks: usize,
) -> Vec<Vec<u8>> {
    let block = BLOCK as usize;
    let dot = DirEntry {
        name: Box::from(&b"."[..]),
        inode,
        file_type: file_type::DIR,
    };
    let dotdot = DirEntry {
        name: Box::from(&b".."[..]),
        inode: parent,
        file_type: file_type::DIR,
    };
    let mut blocks = vec![vec![0u8; block]];
    let mut at = 0;
    let mut last = 0;
    for entry in [&dot, &dotdot].into_iter().chain(entries) {
        let len = record_len(entry.name.len());
        if at + len > block {
            stretch(blocks.last_mut().expect("a block"), last, block);
            blocks.push(vec![0u8; block]);
            at = 0;
        }
        let out = blocks.last_mut().expect("a block");
        out[at..at + 4].copy_from_slice(&entry.inode.to_le_bytes());
        out[at + 4..at + 6].copy_from_slice(&(len as u16).to_le_bytes());
        out[at + 6] = entry.name.len() as u8;
        out[at + 7] = entry.file_type;
        out[at + 8..at + 8 + entry.name.len()].copy_from_slice(&entry.name);
        last = at;
        at += len;
    }
    stretch(blocks.last_mut().expect("a block"), last, block);
    while blocks.len() < min_blocks {
        // An empty block: one unused entry spanning it.
        let mut empty = vec![0u8; block];
        empty[4..6].copy_from_slice(&(block as u16).to_le_bytes());
        blocks.push(empty);
    }
    blocks
}

/// Makes the entry at `last` reach the end of the block.
fn stretch(block: &mut [u8], last: usize, end: usize) {
    block[last + 4..last + 6].copy_from_slice(&((end - last) as u16).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_fill_blocks_and_the_last_reaches_the_end() {
        let entries: Vec<DirEntry> = (0..400)
            .map(|i| DirEntry {
                name: format!("file-{i:04}").into_bytes().into_boxed_slice(),
                inode: 100 + i,
                file_type: file_type::REGULAR,
            })
            .collect();
        let blocks = dir_blocks(12, 2, &entries, 1);
        // 20-byte records: 204 a block.
        assert_eq!(blocks.len(), 2);
        let mut names = 0;
        for block in &blocks {
            let mut at = 0;
            while at < block.len() {
                let len = u16::from_le_bytes([block[at + 4], block[at + 5]]) as usize;
                assert!(len >= 12 && at + len <= block.len());
                names += 1;
                at += len;
            }
            assert_eq!(at, block.len());
        }
        assert_eq!(names, 402);
        assert_eq!(dir_blocks(11, 2, &[], 4).len(), 4);
    }
}
