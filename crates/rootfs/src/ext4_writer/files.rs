//! The files an image is written into: the image and, when the caller
//! asked for a copy of it, a mirror that takes every write too, so the
//! copy needs no second pass over the image once it is complete.
//!
//! Every few megabytes written, the written range is handed to the
//! kernel's write-back (`POSIX_FADV_DONTNEED` starts it and does not wait
//! for it), so the disk takes the image while the layers are still being
//! read and the final sync finds little left to write. While a mirror is
//! kept, only the mirror is: the caller gets the mirror synced, while the
//! image is kept before it is synced (see `ext4_written`), so the disk
//! takes the mirror first and the image after the build.
//!
//! The mirror is a convenience: the first write it refuses (a full disk,
//! a file system without hole punching) drops it, and so does the first
//! write the image refuses while it is kept (on a disk both share, the
//! mirror may be what filled it): it is emptied, the image goes on, and
//! [`ImageFiles::mirrored`] tells the caller to copy the image instead
//! (which reports the cause if it persists).

use std::cell::Cell;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Bytes written between two hand-overs to the write-back.
const WRITE_BACK_EVERY: u64 = 16 << 20;

/// The image file and its mirror; see the module documentation.
pub(crate) struct ImageFiles<'f> {
    image: &'f File,
    /// The mirror, while it is kept.
    mirror: Cell<Option<&'f File>>,
    /// The byte range written since the last hand-over, and its bytes.
    unsent: Cell<Option<(u64, u64, u64)>>,
}

impl<'f> ImageFiles<'f> {
    /// Writes go to `image` alone.
    pub(crate) fn new(image: &'f File) -> ImageFiles<'f> {
        ImageFiles {
            image,
            mirror: Cell::new(None),
            unsent: Cell::new(None),
        }
    }

    /// Writes go to `image` and to `mirror` (an empty file).
    pub(crate) fn mirrored_into(image: &'f File, mirror: &'f File) -> ImageFiles<'f> {
        let files = ImageFiles::new(image);
        files.mirror.set(Some(mirror));
        files
    }

    /// Whether a mirror was given and took every write: it then holds
    /// the image byte for byte once the image is complete.
    pub(crate) fn mirrored(&self) -> bool {
        self.mirror.get().is_some()
    }

    /// Writes `bytes` at `offset` of the image (and the mirror). When the
    /// image refuses them while a mirror is kept, the mirror may be what
    /// filled the disk: it is dropped and the write tried once more.
    pub(crate) fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        if let Err(err) = self.image.write_all_at(bytes, offset) {
            if !self.drop_mirror() {
                return Err(err);
            }
            self.image.write_all_at(bytes, offset)?;
        }
        self.on_mirror(|mirror| mirror.write_all_at(bytes, offset));
        self.note_written(offset, bytes.len() as u64);
        Ok(())
    }

    /// Makes `len` bytes at `offset` read as zeros again, with no blocks
    /// behind them (a hole).
    pub(crate) fn punch(&self, offset: u64, len: u64) -> io::Result<()> {
        punch(self.image, offset, len)?;
        self.on_mirror(|mirror| punch(mirror, offset, len));
        Ok(())
    }

    /// Sets the length of the image (and the mirror).
    pub(crate) fn set_len(&self, len: u64) -> io::Result<()> {
        self.image.set_len(len)?;
        self.on_mirror(|mirror| mirror.set_len(len));
        Ok(())
    }

    /// Runs `op` on the mirror, if it is still kept; drops it when `op`
    /// fails.
    fn on_mirror(&self, op: impl FnOnce(&File) -> io::Result<()>) {
        if let Some(mirror) = self.mirror.get()
            && op(mirror).is_err()
        {
            self.drop_mirror();
        }
    }

    /// Stops writing the mirror and empties it, giving its blocks back to
    /// its disk (the image may share that disk). Whether there was one.
    fn drop_mirror(&self) -> bool {
        let Some(mirror) = self.mirror.take() else {
            return false;
        };
        let _ = mirror.set_len(0);
        true
    }

    /// Notes `len` bytes written at `offset`; hands the range written so
    /// far to the write-back once it holds [`WRITE_BACK_EVERY`] bytes.
    fn note_written(&self, offset: u64, len: u64) {
        let (start, end, bytes) = match self.unsent.get() {
            Some((start, end, bytes)) => (start.min(offset), end.max(offset + len), bytes + len),
            None => (offset, offset + len, len),
        };
        if bytes < WRITE_BACK_EVERY {
            self.unsent.set(Some((start, end, bytes)));
            return;
        }
        self.unsent.set(None);
        // While a mirror is kept, the image's write-back waits.
        start_write_back(self.mirror.get().unwrap_or(self.image), start, end - start);
    }
}

/// Punches a hole of `len` bytes at `offset` of `file`.
fn punch(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use rustix::fs::{FallocateFlags, fallocate};
    let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
    fallocate(file, flags, offset, len).map_err(io::Error::from)
}

/// Starts writing `len` bytes at `offset` of `file` back to its disk,
/// without waiting. A hint: its failure changes nothing (the final sync
/// writes what is left and reports errors).
fn start_write_back(file: &File, offset: u64, len: u64) {
    use rustix::fs::{Advice, fadvise};
    let _ = fadvise(
        file,
        offset,
        std::num::NonZeroU64::new(len),
        Advice::DontNeed,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &tempfile::TempDir, name: &str) -> File {
        File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join(name))
            .expect("file")
    }

    #[test]
    fn the_mirror_takes_every_write_punch_and_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (image, mirror) = (file(&dir, "image"), file(&dir, "mirror"));
        let files = ImageFiles::mirrored_into(&image, &mirror);
        let block = vec![7u8; 8192];
        files.write_all_at(&block, 0).expect("write");
        // More than one hand-over to the write-back.
        for n in 0..40u64 {
            files.write_all_at(&block, (n + 1) << 20).expect("write");
        }
        files.punch(4096, 4096).expect("punch");
        files.set_len(64 << 20).expect("length");
        assert!(files.mirrored());
        let read = |name: &str| std::fs::read(dir.path().join(name)).expect("read");
        let (ours, copy) = (read("image"), read("mirror"));
        assert_eq!(ours.len(), 64 << 20);
        assert!(ours == copy, "the mirror differs from the image");
        assert_eq!(&ours[4090..4100], &[7, 7, 7, 7, 7, 7, 0, 0, 0, 0]);
    }

    #[test]
    fn a_mirror_that_refuses_a_write_is_dropped_and_the_image_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = file(&dir, "image");
        // Read-only: every write to it fails.
        std::fs::write(dir.path().join("mirror"), b"").expect("create");
        let mirror = File::open(dir.path().join("mirror")).expect("open");
        let files = ImageFiles::mirrored_into(&image, &mirror);
        files
            .write_all_at(b"data", 0)
            .expect("the image is written");
        files
            .write_all_at(b"more", 4)
            .expect("the image is written");
        assert!(!files.mirrored());
        assert_eq!(
            std::fs::read(dir.path().join("image")).expect("read"),
            b"datamore"
        );
        assert!(!ImageFiles::new(&image).mirrored(), "no mirror given");
    }
}
