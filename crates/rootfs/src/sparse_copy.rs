//! Copying an ext4 image without writing its holes.
//!
//! A built image is mostly holes (free blocks, the headroom): `mke2fs`
//! leaves them unallocated. `std::fs::copy` (an in-kernel
//! `copy_file_range` on ext4, which cannot share extents) reads the holes
//! as zeros and writes them, so a copy of a 190 MB image of 100 MB of
//! content wrote 190 MB and took four times as long as a copy of the data
//! extents only. [`copy_sparse`] copies the extents `SEEK_DATA`/`SEEK_HOLE`
//! report and leaves the rest a hole, so the copy holds the same bytes.

use crate::error::{Result, io};
use rustix::fs::SeekFrom;
use std::fs::File;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;

/// Copies `from` into `output` (an empty file at `to`, given the
/// permission bits of `from`, never its setuid, setgid or sticky bits),
/// writing only the data extents of `from`: holes stay holes. Falls back
/// to copying every byte where the file system cannot report extents.
/// `input` (the file at `from`) must be a regular file with one name,
/// opened without following a link (see `safe::open_cached`).
pub(crate) fn copy_sparse(input: &File, from: &Path, output: &File, to: &Path) -> Result<()> {
    let len = give_mode_of(input, from, output, to)?;
    let mut pos = 0;
    while pos < len {
        let data = match rustix::fs::seek(input, SeekFrom::Data(pos)) {
            Ok(data) => data,
            // No data after `pos`: the rest is a hole.
            Err(rustix::io::Errno::NXIO) => break,
            // No extent information: copy everything from here.
            Err(_) => pos,
        };
        let hole = match rustix::fs::seek(input, SeekFrom::Hole(data)) {
            Ok(hole) => hole.min(len),
            Err(_) => len,
        };
        copy_range(input, output, data, hole - data).map_err(io("copying into", to))?;
        pos = hole;
    }
    // The trailing hole, if any, is made by the length.
    output.set_len(len).map_err(io("writing", to))?;
    Ok(())
}

/// Gives `output` (at `to`) the permission bits of `input` (at `from`),
/// never its setuid, setgid or sticky bits; the length of `input`.
pub(crate) fn give_mode_of(input: &File, from: &Path, output: &File, to: &Path) -> Result<u64> {
    let meta = input.metadata().map_err(io("reading", from))?;
    output
        .set_permissions(std::fs::Permissions::from_mode(
            meta.permissions().mode() & 0o777,
        ))
        .map_err(io("setting mode of", to))?;
    Ok(meta.len())
}

/// Copies `count` bytes at `offset` from `input` to the same offset of
/// `output`, in the kernel when it can.
fn copy_range(input: &File, output: &File, offset: u64, count: u64) -> std::io::Result<()> {
    let (mut off_in, mut off_out) = (offset, offset);
    let end = offset + count;
    while off_in < end {
        let chunk = usize::try_from(end - off_in)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        match rustix::fs::copy_file_range(
            input,
            Some(&mut off_in),
            output,
            Some(&mut off_out),
            chunk,
        ) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file shrank while copied",
                ));
            }
            Ok(_) => {}
            // Not supported between these files: copy through memory.
            Err(_) => return copy_range_by_reading(input, output, off_in, end - off_in),
        }
    }
    Ok(())
}

/// [`copy_range`] through a buffer.
fn copy_range_by_reading(
    input: &File,
    output: &File,
    mut offset: u64,
    mut count: u64,
) -> std::io::Result<()> {
    let mut buffer = vec![0u8; 1 << 20];
    while count > 0 {
        let want = usize::try_from(count)
            .unwrap_or(usize::MAX)
            .min(buffer.len());
        input.read_exact_at(&mut buffer[..want], offset)?;
        output.write_all_at(&buffer[..want], offset)?;
        offset += want as u64;
        count -= want as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_sparse_copy_holds_the_same_bytes_and_keeps_the_holes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let from = dir.path().join("from");
        let file = File::create(&from).expect("create");
        file.set_len(64 << 20).expect("length");
        file.write_all_at(b"start", 0).expect("write");
        file.write_all_at(&[7u8; 10000], 20 << 20).expect("write");
        file.write_all_at(b"end", (64 << 20) - 3).expect("write");
        drop(file);
        let to = dir.path().join("to");
        let output = File::create(&to).expect("create");
        let input = File::open(&from).expect("open");
        copy_sparse(&input, &from, &output, &to).expect("copy");
        assert_eq!(
            std::fs::read(&from).expect("read"),
            std::fs::read(&to).expect("read")
        );
        let blocks = std::fs::metadata(&to).expect("meta").blocks() * 512;
        assert!(blocks < 16 << 20, "the copy allocated {blocks} bytes");
    }
}
