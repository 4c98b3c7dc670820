//! Where things go in the image: the group geometry, the block groups that
//! hold a copy of the superblock and group descriptors, and the allocator
//! that hands out blocks in order around those copies.

/// Block size.
pub(super) const BLOCK: u64 = 4096;
/// Blocks in a group (one bitmap block's bits).
pub(super) const BLOCKS_PER_GROUP: u64 = 32768;
/// Inode size.
pub(super) const INODE_SIZE: u64 = 256;
/// Inodes in a block of the inode table.
pub(super) const INODES_PER_BLOCK: u64 = BLOCK / INODE_SIZE;
/// The most inodes a group holds (one bitmap block's bits).
pub(super) const MAX_INODES_PER_GROUP: u64 = BLOCKS_PER_GROUP;

/// Whether `group` holds a copy of the superblock and the group
/// descriptors (`sparse_super`: groups 0 and 1 and the powers of 3, 5
/// and 7).
pub(super) fn has_super(group: u64) -> bool {
    if group <= 1 {
        return true;
    }
    [3u64, 5, 7].iter().any(|&base| {
        let mut n = group;
        while n.is_multiple_of(base) {
            n /= base;
        }
        n == 1
    })
}

/// The first block of the next group after the one holding `block` that
/// holds a superblock copy.
fn next_copy(block: u64) -> u64 {
    let mut group = block / BLOCKS_PER_GROUP + 1;
    while !has_super(group) {
        group += 1;
    }
    group * BLOCKS_PER_GROUP
}

/// Hands out blocks in increasing order, stepping over the superblock and
/// descriptor copies at the start of the groups that hold one, and
/// remembers every block handed out (or kept for those copies) as runs.
#[derive(Clone, Debug)]
pub(super) struct Allocator {
    /// The next block to hand out.
    next: u64,
    /// Blocks of group descriptors kept after each superblock copy.
    gdt_blocks: u64,
    /// Used blocks, as increasing, non-adjacent `(start, len)` runs.
    used: Vec<(u64, u64)>,
}

impl Allocator {
    /// An allocator for an image whose group descriptors take
    /// `gdt_blocks` blocks: block 0 (boot sector and superblock) and the
    /// descriptors after it are taken.
    pub(super) fn new(gdt_blocks: u64) -> Allocator {
        let mut allocator = Allocator {
            next: 0,
            gdt_blocks,
            used: Vec::new(),
        };
        allocator.step_over_copies();
        allocator
    }

    /// Blocks of group descriptors after each superblock copy.
    pub(super) fn gdt_blocks(&self) -> u64 {
        self.gdt_blocks
    }

    /// The first block never handed out.
    pub(super) fn end(&self) -> u64 {
        self.next
    }

    /// Used runs, increasing.
    pub(super) fn used(&self) -> &[(u64, u64)] {
        &self.used
    }

    /// Up to `want` (at least 1) contiguous blocks: `(start, len)`, `len`
    /// shorter when a superblock copy comes first.
    pub(super) fn take(&mut self, want: u64) -> (u64, u64) {
        self.step_over_copies();
        let start = self.next;
        let len = want.max(1).min(next_copy(start) - start);
        self.mark(start, len);
        self.next = start + len;
        (start, len)
    }

    /// `want` contiguous blocks, stepping over a superblock copy (the
    /// blocks stepped over stay free).
    pub(super) fn take_contiguous(&mut self, want: u64) -> u64 {
        loop {
            self.step_over_copies();
            let start = self.next;
            let copy = next_copy(start);
            if start + want <= copy {
                self.mark(start, want);
                self.next = start + want;
                return start;
            }
            self.next = copy;
        }
    }

    /// Gives back the used blocks among `len` from `start`.
    pub(super) fn free(&mut self, start: u64, len: u64) {
        let end = start + len;
        let first = self.used.partition_point(|&(s, l)| s + l <= start);
        let mut last = first;
        let mut pieces = Vec::new();
        while let Some(&(run, run_len)) = self.used.get(last)
            && run < end
        {
            if run < start {
                pieces.push((run, start - run));
            }
            if end < run + run_len {
                pieces.push((end, run + run_len - end));
            }
            last += 1;
        }
        self.used.splice(first..last, pieces);
    }

    /// Marks `len` blocks from `start` used (whatever they were).
    pub(super) fn mark_used(&mut self, start: u64, len: u64) {
        self.free(start, len);
        let at = self.used.partition_point(|&(s, _)| s < start);
        self.used.insert(at, (start, len));
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.used.len());
        for &(s, l) in &self.used {
            match merged.last_mut() {
                Some(last) if last.0 + last.1 == s => last.1 += l,
                _ => merged.push((s, l)),
            }
        }
        self.used = merged;
    }

    /// Moves `next` past a superblock copy it sits in, marking the copy
    /// used.
    fn step_over_copies(&mut self) {
        let group = self.next / BLOCKS_PER_GROUP;
        let first = group * BLOCKS_PER_GROUP;
        let copy_end = first + 1 + self.gdt_blocks;
        if has_super(group) && self.next < copy_end {
            if self.next == first {
                self.mark(first, copy_end - first);
            }
            self.next = copy_end;
        }
    }

    fn mark(&mut self, start: u64, len: u64) {
        if let Some(last) = self.used.last_mut()
            && last.0 + last.1 == start
        {
            last.1 += len;
            return;
        }
        self.used.push((start, len));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_of_the_superblock_are_in_sparse_groups() {
        let groups: Vec<u64> = (0..50).filter(|&g| has_super(g)).collect();
        assert_eq!(groups, [0, 1, 3, 5, 7, 9, 25, 27, 49]);
    }

    #[test]
    fn blocks_are_handed_out_around_the_copies() {
        let mut alloc = Allocator::new(2);
        assert_eq!(alloc.take(10), (3, 10));
        // Up to the end of group 0: group 1 starts with a copy.
        assert_eq!(alloc.take(BLOCKS_PER_GROUP), (13, BLOCKS_PER_GROUP - 13));
        assert_eq!(alloc.take(5), (BLOCKS_PER_GROUP + 3, 5));
        // Group 2 has no copy: a run goes on into it.
        let (start, len) = alloc.take(BLOCKS_PER_GROUP);
        assert_eq!((start, len), (BLOCKS_PER_GROUP + 8, BLOCKS_PER_GROUP));
        assert_eq!(alloc.used(), [(0, BLOCKS_PER_GROUP + 8 + BLOCKS_PER_GROUP)]);
        // Blocks given back split their run.
        let mut freed = alloc.clone();
        freed.free(100, 10);
        assert_eq!(
            freed.used()[..2],
            [(0, 100), (110, 2 * BLOCKS_PER_GROUP + 8 - 110)]
        );
        freed.free(0, 1);
        freed.free(50, 0);
        freed.free(5_000_000, 10);
        freed.mark_used(0, 1);
        freed.mark_used(100, 10);
        assert_eq!(freed.used(), alloc.used());
        // A contiguous run that would cross group 3's copy goes after it.
        let at = alloc.take_contiguous(BLOCKS_PER_GROUP);
        assert_eq!(at, 3 * BLOCKS_PER_GROUP + 3);
        assert_eq!(alloc.used().len(), 2);
    }
}
