//! How large an image must be: what the tree takes in ext4 (data blocks,
//! directory entries, extended attributes, inodes), the journal and group
//! metadata mke2fs adds, and the checks of a size the caller gives.

use crate::error::{Error, Result, io};
use crate::unpack::xattrs_of;
use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Block size of every image.
pub(crate) const BLOCK: u64 = 4096;
/// Inode size of every image.
pub(crate) const INODE_SIZE: u64 = 256;
/// The least size a caller may give: below 8 MiB, mke2fs makes no
/// journal.
pub(crate) const MIN_SIZE: u64 = 8 << 20;

/// The inode count (`mke2fs -N`) of an image of `entries` files: a quarter
/// more, and 256, for what a user adds to it.
pub(crate) fn inode_count(entries: u64) -> u64 {
    entries + entries / 4 + 256
}

/// Makes an image with `make(size)`: of the size the caller gave in
/// `given` (refused in words when below what `blocks` and `inodes` take),
/// else of the size computed from them plus `headroom`, grown a few times
/// when `full` says the estimate missed some layout of mke2fs's (the same
/// input always takes the same steps, so the result stays reproducible).
/// A given size that turns out too small is refused in words, no retry.
pub(crate) fn make_sized(
    given: Option<u64>,
    headroom: u64,
    (blocks, inodes): (u64, u64),
    full: impl Fn(&Error) -> bool,
    mut make: impl FnMut(u64) -> Result<()>,
) -> Result<()> {
    let mut size = match given {
        Some(size) => {
            let size = size.div_ceil(BLOCK) * BLOCK;
            check_given_size(size, blocks, inodes)?;
            size
        }
        None => computed_size(blocks, inodes, headroom),
    };
    let mut attempts = 0;
    loop {
        match make(size) {
            Err(err) if given.is_none() && attempts < 3 && full(&err) => {
                attempts += 1;
                size = grown(size);
            }
            Err(err) if given.is_some() && full(&err) => {
                return Err(too_small(size, computed_size(blocks, inodes, 0)));
            }
            made => return made,
        }
    }
}

/// `bytes` in MiB, one decimal, for messages.
pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

/// The least size that can hold `blocks` of content and `inodes` inodes
/// in an image of `size` bytes (its inode table and journal; no room for
/// group metadata, so a size above it may still be too small).
fn content_minimum(blocks: u64, inodes: u64, size: u64) -> u64 {
    let inode_table = (inodes * INODE_SIZE).div_ceil(BLOCK);
    (blocks + inode_table + journal_blocks(size / BLOCK)) * BLOCK
}

/// Refuses a `size` the caller gave that cannot hold `blocks` and
/// `inodes`, before mke2fs runs.
pub(crate) fn check_given_size(size: u64, blocks: u64, inodes: u64) -> Result<()> {
    if size < content_minimum(blocks, inodes, size) {
        return Err(too_small(size, computed_size(blocks, inodes, 0)));
    }
    Ok(())
}

/// A given `size` too small for the content, which needs about `needed`.
pub(crate) fn too_small(size: u64, needed: u64) -> Error {
    Error::InvalidOption {
        reason: format!(
            "size {} is too small for the content of the image, which needs about {} \
             (without a size, it is computed)",
            mib(size),
            mib(needed)
        ),
    }
}

/// Blocks (4 KiB) and inodes the tree needs.
pub(crate) fn measure(
    tree: &Path,
    pending_xattrs: &BTreeMap<PathBuf, Vec<(String, Vec<u8>)>>,
) -> Result<(u64, u64)> {
    let mut blocks = 0;
    let mut inodes = 0;
    let mut seen = HashSet::new();
    let mut stack = vec![tree.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut names = 0u64;
        for entry in std::fs::read_dir(&dir).map_err(io("reading", &dir))? {
            let entry = entry.map_err(io("reading", &dir))?;
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).map_err(io("reading", &path))?;
            names += 12 + entry.file_name().len() as u64;
            if !seen.insert(meta.ino()) {
                continue;
            }
            inodes += 1;
            // Attributes on the tree, and those debugfs adds (refused by
            // the host when rootless).
            let mut xattrs: Vec<(usize, usize)> = xattrs_of(&path)
                .map_err(io("reading attributes of", &path))?
                .iter()
                .map(|(name, value)| (name.len(), value.len()))
                .collect();
            if !pending_xattrs.is_empty()
                && let Ok(rel) = path.strip_prefix(tree)
            {
                let pending = pending_xattrs.get(rel).into_iter().flatten();
                xattrs.extend(pending.map(|(name, value)| (name.len(), value.len())));
            }
            blocks += xattr_blocks(&xattrs);
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                // Data plus one extent block for every 128 MiB.
                blocks += meta.len().div_ceil(BLOCK) + meta.len() / (128 << 20);
            } else if meta.file_type().is_symlink() && meta.len() >= 60 {
                blocks += 1;
            }
        }
        blocks += names.div_ceil(BLOCK).max(1);
        inodes += 1;
    }
    Ok((blocks, inodes))
}

/// Room for extended attributes inside a 256-byte inode: 256 less the
/// 128-byte base inode, 32 bytes of extra fields, the 4-byte header and a
/// 4-byte end marker.
const IN_INODE_XATTR_ROOM: u64 = 88;

/// Blocks that extended attributes of `(name, value)` lengths take outside
/// their inode: none when they fit in it, else a block (32-byte header)
/// per 4 KiB. Each entry is a 16-byte header and the name, then the value,
/// each padded to 4 bytes (names are counted with their prefix: a little
/// more than ext4 stores).
fn xattr_blocks(xattrs: &[(usize, usize)]) -> u64 {
    let size: u64 = xattrs
        .iter()
        .map(|&(name, value)| {
            (16 + name as u64).next_multiple_of(4) + (value as u64).next_multiple_of(4)
        })
        .sum();
    if size <= IN_INODE_XATTR_ROOM {
        0
    } else {
        (size + 32).div_ceil(BLOCK)
    }
}

/// Whether `err` is `mke2fs` running out of blocks or inodes while it
/// copies the tree in.
pub(crate) fn is_out_of_blocks(err: &Error) -> bool {
    matches!(err, Error::ToolFailed { tool: "mke2fs", stderr, .. }
        if stderr.contains("Could not allocate") || stderr.contains("No space left"))
}

/// The next size to try after [`is_out_of_blocks`]: a quarter more, at
/// least 16 MiB more, in whole blocks.
pub(crate) fn grown(size: u64) -> u64 {
    (size + (size / 4).max(16 << 20)).div_ceil(BLOCK) * BLOCK
}

/// An image size holding `blocks` of data and `inodes` inodes, plus the
/// journal, group metadata and `headroom`.
pub(crate) fn computed_size(blocks: u64, inodes: u64, headroom: u64) -> u64 {
    let inode_table = (inodes * INODE_SIZE).div_ceil(BLOCK);
    let base = blocks + inode_table + headroom.div_ceil(BLOCK);
    // Group descriptors, bitmaps, reserved GDT and lost+found: about 2%,
    // at least 1 MiB.
    let metadata = (base / 50).max(256);
    // At least 12 MiB before the journal, so there is one (mke2fs makes
    // none below 8 MiB).
    let without_journal = (base + metadata).max(3072);
    let total = without_journal + journal_blocks(without_journal);
    total * BLOCK
}

/// The journal size `mke2fs` picks for a file system of `blocks`
/// (`ext2fs_default_journal_size`).
pub(crate) fn journal_blocks(blocks: u64) -> u64 {
    match blocks {
        0..2048 => 0,
        2048..32768 => 1024,
        32768..262144 => 4096,
        262144..524288 => 8192,
        524288..4194304 => 16384,
        4194304..8388608 => 32768,
        8388608..16777216 => 65536,
        _ => 262144,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_that_fit_the_inode_take_no_block_and_large_ones_do() {
        assert_eq!(xattr_blocks(&[]), 0);
        // security.capability (20 bytes): in the inode.
        assert_eq!(xattr_blocks(&[("security.capability".len(), 20)]), 0);
        assert_eq!(xattr_blocks(&[("user.label".len(), 1000)]), 1);
        assert_eq!(
            xattr_blocks(&[("user.a".len(), 3000), ("user.b".len(), 3000)]),
            2
        );
    }

    #[test]
    fn only_mke2fs_running_out_of_room_is_retried_larger() {
        let failed = |tool, stderr: &str| Error::ToolFailed {
            tool,
            status: "exit status: 1".to_owned(),
            stderr: stderr.to_owned(),
        };
        // What mke2fs 1.47 says (seen with a too small computed size).
        let full = "__populate_fs: Could not allocate block in ext2 filesystem while \
                    writing file \"f2460\"\nmke2fs: Could not allocate block in ext2 \
                    filesystem while populating file system\n";
        assert!(is_out_of_blocks(&failed("mke2fs", full)));
        assert!(is_out_of_blocks(&failed(
            "mke2fs",
            "No space left on device"
        )));
        assert!(!is_out_of_blocks(&failed("debugfs", full)));
        assert!(!is_out_of_blocks(&failed("mke2fs", "invalid block size")));
        let size = 40 << 20;
        assert_eq!(grown(size), size + (16 << 20));
        let large = 1 << 30;
        assert_eq!(grown(large), large + large / 4);
        assert_eq!(grown(4097) % BLOCK, 0);
    }

    #[test]
    fn a_given_size_below_the_content_is_refused_in_words() {
        // 100 MiB of data.
        let blocks = 25_600;
        let err = check_given_size(50 << 20, blocks, 1000).expect_err("too small");
        assert_eq!(err.kind(), crate::ErrorKind::Usage);
        assert!(
            err.to_string().contains("size 50.0 MiB is too small"),
            "{err}"
        );
        check_given_size(200 << 20, blocks, 1000).expect("fits");
    }

    #[test]
    fn journal_grows_with_the_file_system() {
        assert_eq!(journal_blocks(1000), 0);
        assert_eq!(journal_blocks(20_000), 1024);
        assert!(computed_size(100, 1000, 0) >= (100 + 1024) * BLOCK);
    }
}
