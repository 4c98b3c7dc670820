//! Inodes as the writer keeps them while the tree comes in, and their
//! 256-byte on-disk form.

use super::dir::DirEntry;
use super::extents::Extent;
use super::layout::INODE_SIZE;
use super::xattr::Attr;

/// `i_flags`: the inode's blocks are an extent tree.
pub(super) const EXTENTS_FL: u32 = 0x0008_0000;
/// Bytes of extra inode fields past the first 128.
const EXTRA_ISIZE: u16 = 32;
/// A directory's link count once it has more subdirectories than ext4
/// counts (`dir_nlink`).
const MANY_LINKS: u32 = 65000;

/// File type bits of `i_mode`.
pub(super) mod mode {
    pub(in super::super) const FIFO: u16 = 0o010000;
    pub(in super::super) const CHAR: u16 = 0o020000;
    pub(in super::super) const DIR: u16 = 0o040000;
    pub(in super::super) const BLOCK: u16 = 0o060000;
    pub(in super::super) const REGULAR: u16 = 0o100000;
    pub(in super::super) const SYMLINK: u16 = 0o120000;
}

/// An inode of the tree being written.
#[derive(Debug)]
pub(super) struct Node {
    /// Type and permission bits.
    pub(super) mode: u16,
    pub(super) uid: u32,
    pub(super) gid: u32,
    /// Seconds since the epoch (also access, change and creation time).
    pub(super) mtime: i64,
    /// Names (a directory: 2 and one per subdirectory).
    pub(super) links: u32,
    /// Size in bytes (a directory's is set when its blocks are laid out).
    pub(super) size: u64,
    pub(super) body: Body,
    pub(super) attrs: Vec<Attr>,
}

/// What an inode's `i_block` describes.
#[derive(Debug)]
pub(super) enum Body {
    /// Nothing (a fifo).
    Empty,
    /// Blocks of data (a file, a long symlink): extents and blocks used.
    Data(Vec<Extent>, u64),
    /// Bytes kept in `i_block` itself (a short symlink, a device).
    Inline([u8; 60]),
    /// A directory: its parent and its entries.
    Dir(u32, Vec<DirEntry>),
}

impl Node {
    /// A node with no links yet and nothing in it.
    pub(super) fn new(mode: u16, uid: u32, gid: u32, mtime: i64) -> Node {
        Node {
            mode,
            uid,
            gid,
            mtime,
            links: 0,
            size: 0,
            body: Body::Empty,
            attrs: Vec::new(),
        }
    }

    /// Whether it is a directory.
    pub(super) fn is_dir(&self) -> bool {
        self.mode & 0o170000 == mode::DIR
    }
}

/// The `i_block` of a device: the old encoding when major and minor fit a
/// byte each, else the new one in the second word.
pub(super) fn device_block(major: u32, minor: u32) -> [u8; 60] {
    let mut out = [0u8; 60];
    if major < 256 && minor < 256 {
        out[0..4].copy_from_slice(&((major << 8) | minor).to_le_bytes());
    } else {
        let word = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
        out[4..8].copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// A time as ext4 keeps it: the low 32 bits (signed) and the extra field
/// (two epoch bits, no nanoseconds); clamped to what it can hold.
fn time(secs: i64) -> (u32, u32) {
    let secs = secs.clamp(-(1i64 << 31), (1i64 << 34) - (1i64 << 31) - 1);
    let low = secs as i32;
    let epoch = ((secs - i64::from(low)) >> 32) as u32 & 3;
    (low as u32, epoch)
}

/// What an inode's on-disk form needs beyond the node.
pub(super) struct Disk<'a> {
    pub(super) i_block: [u8; 60],
    pub(super) flags: u32,
    /// Blocks it uses (data, tree and attribute blocks).
    pub(super) blocks: u64,
    /// Its attribute block, or 0.
    pub(super) xattr_block: u64,
    /// Its in-inode attribute area (offsets 160 to 256), if any.
    pub(super) in_inode: Option<&'a [u8]>,
}

/// The 256 bytes of `node` on disk.
pub(super) fn encode(node: &Node, disk: &Disk<'_>) -> [u8; INODE_SIZE as usize] {
    let mut out = [0u8; INODE_SIZE as usize];
    let put16 =
        |out: &mut [u8], at: usize, v: u16| out[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 =
        |out: &mut [u8], at: usize, v: u32| out[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let links = match node.is_dir() && node.links > MANY_LINKS {
        true => 1,
        false => node.links,
    };
    let (secs, extra) = time(node.mtime);
    let sectors = disk.blocks * 8;
    put16(&mut out, 0, node.mode);
    put16(&mut out, 2, node.uid as u16);
    put32(&mut out, 4, node.size as u32);
    for at in [8, 12, 16, 144] {
        put32(&mut out, at, secs);
    }
    put16(&mut out, 24, node.gid as u16);
    put16(&mut out, 26, links as u16);
    put32(&mut out, 28, sectors as u32);
    put32(&mut out, 32, disk.flags);
    out[40..100].copy_from_slice(&disk.i_block);
    put32(&mut out, 104, disk.xattr_block as u32);
    put32(&mut out, 108, (node.size >> 32) as u32);
    put16(&mut out, 116, (sectors >> 32) as u16);
    put16(&mut out, 118, (disk.xattr_block >> 32) as u16);
    put16(&mut out, 120, (node.uid >> 16) as u16);
    put16(&mut out, 122, (node.gid >> 16) as u16);
    put16(&mut out, 128, EXTRA_ISIZE);
    for at in [132, 136, 140, 148] {
        put32(&mut out, at, extra);
    }
    if let Some(area) = disk.in_inode {
        out[160..].copy_from_slice(area);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_past_2038_keep_their_epoch_bits() {
        assert_eq!(time(0), (0, 0));
        assert_eq!(time(-1), (u32::MAX, 0));
        let (low, extra) = time(1 << 32);
        assert_eq!((low, extra), (0, 1));
        assert_eq!(time(i64::MAX).1, 3);
    }

    #[test]
    fn devices_use_the_new_encoding_when_numbers_are_large() {
        assert_eq!(&device_block(1, 3)[0..4], &0x0103u32.to_le_bytes());
        let large = device_block(259, 1);
        assert_eq!(&large[0..4], &[0; 4]);
        assert_eq!(&large[4..8], &((259u32 << 8) | 1).to_le_bytes());
    }
}
