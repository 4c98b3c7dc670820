//! cachectl's own ext4 writer on what fixtures are too small to show:
//! files large enough to cross the superblock copies of groups 1 and 3,
//! a file fragmented into more extents than its inode holds, files of
//! zeros (holes), a given size whose last group is too small to keep, and
//! layers that bring their own `lost+found`. Every image passes `e2fsck`
//! and gives back each file's bytes through `debugfs`.

use crate::rootfs_support::{
    GZIP_LAYER, debugfs, e2fsck_passes, entry_with, gzip, hand_built_store,
    hand_built_store_with_diff_ids, rootless_build_options,
};
use ociref::Digest;
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::path::Path;

const BLOCK: usize = 4096;

/// `len` bytes whose every 4 KiB block says its file and index, so a
/// block written in the wrong place reads back wrong.
struct Pattern {
    seed: u8,
    len: u64,
    at: u64,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.len - self.at).min(buf.len() as u64) as usize;
        for (i, byte) in buf[..n].iter_mut().enumerate() {
            let at = self.at + i as u64;
            let block = (at / BLOCK as u64) as u32;
            *byte = match at % 8 {
                0..4 => block.to_le_bytes()[(at % 4) as usize],
                4 => self.seed,
                _ => 0x5a,
            };
        }
        self.at += n as u64;
        Ok(n)
    }
}

/// Hashes what passes through to the inner writer.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn sha256_hex(mut reader: impl Read) -> String {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    hex(&hash.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of `path` in `image`, by `debugfs dump`.
fn dumped_hash(image: &Path, path: &str, work: &Path) -> String {
    let out = work.join("dumped");
    let _ = std::fs::remove_file(&out);
    debugfs(image, &format!("dump {path} {}", out.display()));
    sha256_hex(std::fs::File::open(&out).expect("dumped"))
}

#[test]
fn large_fragmented_and_zero_files_cross_group_copies_and_read_back_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 200 MiB + 250 MiB: past group 1's copy (128 MiB) and group 3's
    // (384 MiB).
    let files = [("big1", 1u8, 200u64 << 20), ("big2", 2, 250 << 20)];
    let mut fragmented = vec![0u8; 2000 * BLOCK];
    for block in (0..2000).step_by(2) {
        fragmented[block * BLOCK..(block + 1) * BLOCK].fill(block as u8 | 1);
    }
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut hashing = Hashing {
        inner: gz,
        hash: Sha256::new(),
    };
    {
        let mut tar = tar::Builder::new(&mut hashing);
        let mut add = |name: &str, len: u64, content: &mut dyn Read| {
            let mut header = tar::Header::new_gnu();
            header.set_size(len);
            header.set_mode(0o644);
            header.set_mtime(1_700_000_000);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, name, content).expect("entry");
        };
        for (name, seed, len) in files {
            add(name, len, &mut Pattern { seed, len, at: 0 });
        }
        add("fragmented", fragmented.len() as u64, &mut &fragmented[..]);
        add("zeros", 64 << 20, &mut std::io::repeat(0).take(64 << 20));
        add("empty", 0, &mut std::io::empty());
        tar.finish().expect("tar");
    }
    let diff_id: Digest = format!("sha256:{}", hex(&hashing.hash.finalize()))
        .parse()
        .expect("digest");
    let layer = hashing.inner.finish().expect("gzip");
    let (store, reference) = hand_built_store_with_diff_ids(
        &dir.path().join("store"),
        &[(layer, GZIP_LAYER)],
        &[diff_id],
    );
    let built = rootfs::build(
        &store.image(&reference, None).expect("stored image"),
        &rootless_build_options(),
    )
    .expect("built");
    assert_eq!(built.input, rootfs::Ext4Input::Writer);
    assert!(built.size > 450 << 20, "{}", built.size);
    e2fsck_passes(&built.path);
    for (name, seed, len) in files {
        let expected = sha256_hex(Pattern { seed, len, at: 0 });
        assert_eq!(
            dumped_hash(&built.path, name, dir.path()),
            expected,
            "{name}"
        );
    }
    assert_eq!(
        dumped_hash(&built.path, "fragmented", dir.path()),
        sha256_hex(&fragmented[..])
    );
    // 1000 runs of data: a tree below the inode.
    let extents = debugfs(&built.path, "ex fragmented");
    assert!(extents.contains(" 1/ 1 "), "no second level: {extents}");
    let zeros = debugfs(&built.path, "stat zeros");
    assert!(zeros.contains("Blockcount: 0"), "{zeros}");
    assert!(zeros.contains("Size: 67108864"), "{zeros}");
    assert_eq!(
        dumped_hash(&built.path, "zeros", dir.path()),
        sha256_hex(std::io::repeat(0).take(64 << 20))
    );
}

#[test]
fn a_given_size_whose_last_group_cannot_hold_its_copy_drops_the_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut layer = tar::Builder::new(Vec::new());
    entry_with(
        &mut layer,
        tar::EntryType::Regular,
        ("f", ""),
        (0o644, 0, 1),
        b"data",
    );
    let (store, reference) = hand_built_store(
        &dir.path().join("store"),
        &[(gzip(&layer.into_inner().expect("tar")), GZIP_LAYER)],
    );
    let mut options = rootless_build_options();
    // Group 1 would have two blocks, less than its superblock copy needs.
    let size = (128u64 << 20) + 2 * BLOCK as u64;
    options.size = Some(size);
    let built =
        rootfs::build(&store.image(&reference, None).expect("image"), &options).expect("built");
    assert_eq!(built.size, size);
    e2fsck_passes(&built.path);
    let stats = debugfs(&built.path, "stats");
    assert!(stats.contains("Block count:              32768"), "{stats}");
}

#[test]
fn layers_with_a_lost_and_found_of_their_own_keep_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut layer = tar::Builder::new(Vec::new());
    entry_with(
        &mut layer,
        tar::EntryType::Directory,
        ("lost+found", ""),
        (0o750, 7, 1_600_000_000),
        b"",
    );
    entry_with(
        &mut layer,
        tar::EntryType::Regular,
        ("lost+found/kept", ""),
        (0o644, 0, 1),
        b"kept",
    );
    let (store, reference) = hand_built_store(
        &dir.path().join("store"),
        &[(gzip(&layer.into_inner().expect("tar")), GZIP_LAYER)],
    );
    let built = rootfs::build(
        &store.image(&reference, None).expect("image"),
        &rootless_build_options(),
    )
    .expect("built");
    e2fsck_passes(&built.path);
    let stat = debugfs(&built.path, "stat lost+found");
    assert!(stat.contains("Inode: 11 "), "{stat}");
    assert!(stat.contains("Mode:  0750"), "{stat}");
    assert!(stat.contains("User:     7"), "{stat}");
    let listed = debugfs(&built.path, "ls -l lost+found");
    assert!(listed.contains("kept"), "{listed}");
}

#[test]
fn content_a_later_layer_hides_leaves_no_trace_in_the_image() {
    // Each 4 KiB block of the hidden files starts with the marker, so a
    // block of theirs left in the image is found by its first bytes.
    let marker = b"cachectl-hidden!";
    let mut block = vec![b'h'; BLOCK];
    block[..marker.len()].copy_from_slice(marker);
    let secret = block.repeat(24);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut base = tar::Builder::new(Vec::new());
    entry_with(
        &mut base,
        tar::EntryType::Directory,
        ("etc", ""),
        (0o755, 0, 1),
        b"",
    );
    for name in ["etc/secret", "etc/replaced", "etc/kept"] {
        entry_with(
            &mut base,
            tar::EntryType::Regular,
            (name, ""),
            (0o600, 0, 1),
            &secret,
        );
    }
    let mut upper = tar::Builder::new(Vec::new());
    entry_with(
        &mut upper,
        tar::EntryType::Regular,
        ("etc/.wh.secret", ""),
        (0o600, 0, 1),
        b"",
    );
    entry_with(
        &mut upper,
        tar::EntryType::Regular,
        ("etc/replaced", ""),
        (0o644, 0, 1),
        b"new",
    );
    entry_with(
        &mut upper,
        tar::EntryType::Regular,
        ("etc/.wh.kept", ""),
        (0o600, 0, 1),
        b"",
    );
    entry_with(
        &mut upper,
        tar::EntryType::Regular,
        ("etc/kept", ""),
        (0o644, 0, 1),
        b"again",
    );
    let (store, reference) = hand_built_store(
        &dir.path().join("store"),
        &[
            (gzip(&base.into_inner().expect("tar")), GZIP_LAYER),
            (gzip(&upper.into_inner().expect("tar")), GZIP_LAYER),
        ],
    );
    // Built with an output: the output takes every write of the image,
    // the freeing of hidden content included.
    let stored = store.image(&reference, None).expect("image");
    let mut options = rootless_build_options();
    options.output = Some(dir.path().join("out.ext4"));
    let built = rootfs::build(&stored, &options).expect("built");
    assert_eq!(built.input, rootfs::Ext4Input::Writer);
    options.output = None;
    let cached = rootfs::build(&stored, &options).expect("cache hit");
    assert!(cached.cached);
    e2fsck_passes(&built.path);
    let image = std::fs::read(&built.path).expect("image read");
    let same = std::fs::read(&cached.path).expect("image read") == image;
    assert!(same, "the output differs from the cached image");
    let left = image
        .chunks(BLOCK)
        .filter(|block| block.starts_with(marker))
        .count();
    assert_eq!(left, 0, "blocks of hidden files are still in the image");
    let listed = debugfs(&built.path, "ls -l etc");
    assert!(!listed.contains("secret"), "{listed}");
    let replaced = debugfs(&built.path, "cat etc/replaced");
    assert_eq!(replaced.trim(), "new");
}
