//! A regular file's content written into the image as it is read: blocks
//! of zeros become holes, the other blocks go to the next free blocks in
//! order, and the file's extents are noted.

use super::extents::Extent;
use super::files::ImageFiles;
use super::layout::{Allocator, BLOCK};
use std::io::{self, Read};

/// Bytes read from a file's content at a time.
const CHUNK: usize = 1 << 20;

/// Why content could not be placed.
#[derive(Debug)]
pub(super) enum Failed {
    /// Reading the content.
    Reading(io::Error),
    /// Writing the image.
    Writing(io::Error),
}

/// Writes content into the image file, reusing one buffer.
pub(super) struct ContentWriter {
    buffer: Vec<u8>,
}

/// Where a file's content went.
#[derive(Debug, Default)]
pub(super) struct Placed {
    /// Its extents, in logical order.
    pub(super) extents: Vec<Extent>,
    /// Blocks written (holes not counted).
    pub(super) blocks: u64,
}

impl ContentWriter {
    /// A writer with its buffer.
    pub(super) fn new() -> ContentWriter {
        ContentWriter {
            buffer: vec![0; CHUNK],
        }
    }

    /// Reads `size` bytes from `data` into blocks `alloc` hands out in
    /// `image`; fails when `data` ends early. The error says which side
    /// failed.
    pub(super) fn write(
        &mut self,
        image: &ImageFiles<'_>,
        alloc: &mut Allocator,
        data: &mut dyn Read,
        size: u64,
    ) -> Result<Placed, Failed> {
        let mut placed = Placed::default();
        let mut logical = 0u64;
        let mut left = size;
        while left > 0 {
            let want = (CHUNK as u64).min(left) as usize;
            data.read_exact(&mut self.buffer[..want]).map_err(|err| {
                Failed::Reading(match err.kind() {
                    io::ErrorKind::UnexpectedEof => {
                        io::Error::new(err.kind(), "the content ended before its size")
                    }
                    _ => err,
                })
            })?;
            left -= want as u64;
            // The last block's tail is zeros.
            let blocks = want.div_ceil(BLOCK as usize);
            self.buffer[want..blocks * BLOCK as usize].fill(0);
            self.place_chunk(image, alloc, blocks, logical, &mut placed)
                .map_err(Failed::Writing)?;
            logical += blocks as u64;
        }
        Ok(placed)
    }

    /// Writes the first `blocks` blocks of the buffer, the file's blocks
    /// from `logical` on, skipping the blocks of zeros.
    fn place_chunk(
        &self,
        image: &ImageFiles<'_>,
        alloc: &mut Allocator,
        blocks: usize,
        logical: u64,
        placed: &mut Placed,
    ) -> io::Result<()> {
        let block = BLOCK as usize;
        let mut i = 0;
        while i < blocks {
            if is_zero(&self.buffer[i * block..(i + 1) * block]) {
                i += 1;
                continue;
            }
            let mut end = i + 1;
            while end < blocks && !is_zero(&self.buffer[end * block..(end + 1) * block]) {
                end += 1;
            }
            // The run of data blocks [i, end), in as many pieces as the
            // allocator gives.
            let mut at = i;
            while at < end {
                let (start, len) = alloc.take((end - at) as u64);
                let bytes = &self.buffer[at * block..(at + len as usize) * block];
                image.write_all_at(bytes, start * BLOCK)?;
                push_extent(&mut placed.extents, logical + at as u64, start, len);
                placed.blocks += len;
                at += len as usize;
            }
            i = end;
        }
        Ok(())
    }
}

/// Makes `len` blocks at `start` of `image` read as zeros again (a hole).
pub(super) fn zero(image: &ImageFiles<'_>, start: u64, len: u64) -> io::Result<()> {
    image.punch(start * BLOCK, len * BLOCK)
}

/// Adds `len` blocks at `start` for logical block `logical`, joined to the
/// last extent when they follow it on disk and in the file.
pub(super) fn push_extent(extents: &mut Vec<Extent>, logical: u64, start: u64, len: u64) {
    if let Some(last) = extents.last_mut()
        && last.logical + last.len == logical
        && last.start + last.len == start
    {
        last.len += len;
        return;
    }
    extents.push(Extent {
        logical,
        start,
        len,
    });
}

/// Whether a block holds only zeros.
fn is_zero(block: &[u8]) -> bool {
    // Most data blocks differ from zero in their first bytes.
    block[..16].iter().all(|&b| b == 0) && block.iter().fold(0u8, |acc, &b| acc | b) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::unix::fs::FileExt;

    #[test]
    fn zero_blocks_become_holes_and_runs_become_extents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("img"))
            .expect("image");
        let mut alloc = Allocator::new(1);
        let mut content = vec![0u8; 5 * BLOCK as usize + 100];
        content[0] = 1; // block 0
        content[BLOCK as usize + 7] = 2; // block 1
        content[4 * BLOCK as usize] = 3; // block 4
        content[5 * BLOCK as usize + 99] = 4; // block 5, partial
        let placed = ContentWriter::new()
            .write(
                &ImageFiles::new(&image),
                &mut alloc,
                &mut &content[..],
                content.len() as u64,
            )
            .expect("written");
        assert_eq!(placed.blocks, 4);
        let shape: Vec<(u64, u64, u64)> = placed
            .extents
            .iter()
            .map(|e| (e.logical, e.start, e.len))
            .collect();
        assert_eq!(shape, [(0, 2, 2), (4, 4, 2)]);
        let mut back = vec![0u8; BLOCK as usize];
        image.read_exact_at(&mut back, 5 * BLOCK).expect("read");
        assert_eq!(back[99], 4);
        assert!(back[100..].iter().all(|&b| b == 0));
    }

    #[test]
    fn content_shorter_than_its_size_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = File::create(dir.path().join("img")).expect("image");
        let mut alloc = Allocator::new(1);
        let err = ContentWriter::new()
            .write(&ImageFiles::new(&image), &mut alloc, &mut &b"abc"[..], 10)
            .expect_err("short");
        let Failed::Reading(err) = err else {
            panic!("{err:?}");
        };
        assert!(err.to_string().contains("ended before its size"), "{err}");
    }
}
