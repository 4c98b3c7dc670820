//! The journal: a superblock (big-endian, as jbd2 keeps it) in its first
//! block, the rest zeros; clean, nothing to replay.

pub(super) use crate::sizing::journal_blocks;

/// The journal superblock (the first 1024 bytes of its first block) of a
/// journal of `blocks` blocks in a file system with `uuid`.
pub(super) fn journal_superblock(blocks: u64, uuid: &[u8; 16]) -> Vec<u8> {
    let mut sb = vec![0u8; 1024];
    let mut put = |at: usize, value: u32| sb[at..at + 4].copy_from_slice(&value.to_be_bytes());
    put(0, 0xC03B_3998); // magic
    put(4, 4); // superblock, version 2
    put(12, 4096); // block size
    put(16, blocks as u32); // length
    put(20, 1); // first log block
    put(24, 1); // first expected sequence
    put(64, 1); // users of the journal
    sb[48..64].copy_from_slice(uuid);
    sb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_sizes_follow_mke2fs() {
        assert_eq!(journal_blocks(1000), 0);
        assert_eq!(journal_blocks(100_000), 4096);
        let sb = journal_superblock(4096, &[7; 16]);
        assert_eq!(&sb[0..4], &[0xC0, 0x3B, 0x39, 0x98]);
        assert_eq!(&sb[16..20], &4096u32.to_be_bytes());
    }
}
