//! A layer copy read while it is being written: the index pass follows
//! the thread decompressing a layer into its copy, a few hundred KiB
//! behind it, instead of waiting for the whole layer before reading its
//! first header.
//!
//! The writer tells [`Growth`] how far the file is written and when it is
//! done (whether it succeeded is its own result, told apart by whoever
//! joins it); a [`Following`] reader blocks until the bytes it wants are
//! written, and ends where the writer ended. The reader can give the
//! writer up ([`Growth::abandon`]), which then stops early.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// How far a file being written has come.
#[derive(Debug, Default)]
pub(super) struct Growth {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Bytes written (and readable) from the start of the file.
    written: u64,
    /// The writer wrote its last byte, or failed.
    ended: bool,
    /// No one will read further: the writer may stop.
    abandoned: bool,
}

impl Growth {
    /// A file not written yet.
    pub(super) fn new() -> Arc<Growth> {
        Arc::default()
    }

    /// The writer wrote `bytes` more.
    pub(super) fn grew(&self, bytes: u64) {
        self.lock().written += bytes;
        self.changed.notify_all();
    }

    /// The writer is done (successfully or not): readers get the end of
    /// the file at what is written.
    pub(super) fn end(&self) {
        self.lock().ended = true;
        self.changed.notify_all();
    }

    /// The reader gives up the file.
    pub(super) fn abandon(&self) {
        self.lock().abandoned = true;
    }

    /// Whether the reader gave up the file.
    pub(super) fn abandoned(&self) -> bool {
        self.lock().abandoned
    }

    /// Waits until bytes past `offset` are written or the writer ended;
    /// returns how many bytes are written.
    fn wait_past(&self, offset: u64) -> u64 {
        let mut state = self.lock();
        while state.written <= offset && !state.ended {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        state.written
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a few numbers: one a panicking thread left is whole.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Ends a [`Growth`] when dropped, so a writer that returns early, fails
/// or panics never leaves its reader waiting.
pub(super) struct EndOnDrop(pub(super) Arc<Growth>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// Reads a file as far as its writer has written it, waiting for more.
pub(super) struct Following {
    file: File,
    growth: Arc<Growth>,
    offset: u64,
}

impl Following {
    /// Reads `file` (opened for reading) as `growth` says it grows.
    pub(super) fn new(file: File, growth: Arc<Growth>) -> Following {
        Following {
            file,
            growth,
            offset: 0,
        }
    }
}

impl Read for Following {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let written = self.growth.wait_past(self.offset);
        if written <= self.offset {
            return Ok(0);
        }
        let wanted = usize::try_from(written - self.offset).map_or(buf.len(), |n| n.min(buf.len()));
        let read = self.file.read_at(&mut buf[..wanted], self.offset)?;
        self.offset += read as u64;
        Ok(read)
    }
}

impl Seek for Following {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let offset = match to {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::Current(delta) => self.offset.checked_add_signed(delta),
            // The end is not known until the writer is done.
            SeekFrom::End(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "seeking from the end of a file still being written",
                ));
            }
        };
        self.offset = offset.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seeking before the start")
        })?;
        Ok(self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_reader_follows_the_writer_to_its_end_and_seeks_ahead_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copy");
        let mut writer = File::create(&path).unwrap();
        let growth = Growth::new();
        let mut reader = Following::new(File::open(&path).unwrap(), growth.clone());
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::thread::scope(|scope| {
            let growth = growth.clone();
            let content = &content;
            scope.spawn(move || {
                let _end = EndOnDrop(growth.clone());
                for chunk in content.chunks(7_000) {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                    writer.write_all(chunk).unwrap();
                    growth.grew(chunk.len() as u64);
                }
            });
            let mut head = vec![0u8; 10];
            reader.read_exact(&mut head).unwrap();
            assert_eq!(head, content[..10]);
            // Past what is written now: the read waits for the writer.
            assert_eq!(reader.seek(SeekFrom::Current(150_000)).unwrap(), 150_010);
            let mut rest = Vec::new();
            reader.read_to_end(&mut rest).unwrap();
            assert_eq!(rest, content[150_010..]);
        });
        assert!(reader.seek(SeekFrom::End(0)).is_err());
        assert!(reader.seek(SeekFrom::Current(-1_000_000)).is_err());
    }

    #[test]
    fn a_writer_that_stops_early_ends_the_file_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copy");
        let mut writer = File::create(&path).unwrap();
        let growth = Growth::new();
        let mut reader = Following::new(File::open(&path).unwrap(), growth.clone());
        std::thread::scope(|scope| {
            let growth = growth.clone();
            scope.spawn(move || {
                let _end = EndOnDrop(growth.clone());
                writer.write_all(b"partial").unwrap();
                growth.grew(7);
                // Dropped here without writing the rest, as a failed
                // decompression would.
            });
        });
        let mut all = Vec::new();
        reader.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"partial");
        assert!(!growth.abandoned());
        growth.abandon();
        assert!(growth.abandoned());
    }
}
