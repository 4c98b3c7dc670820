//! Decompressing a layer on its own thread, ahead of the tar reader.
//!
//! Applying a layer is one sequential stream: decompress, parse, write a
//! file, decompress the next. Measured on the bench image (100 MiB of
//! gzip content), decompression is about half of the unpack's CPU time and
//! the file-system calls the other half; [`ReadAhead`] runs the
//! decompressor on a second thread, a few chunks ahead, so both overlap.
//! The order of everything written into the target is unchanged: only
//! the decompression moved.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Bytes the decompressing thread reads at a time.
const CHUNK: usize = 256 * 1024;
/// Chunks it may be ahead of the reader (memory: `CHUNK * AHEAD`).
const AHEAD: usize = 8;

/// A reader fed by a thread that reads `inner` ahead, [`CHUNK`] bytes at a
/// time, at most [`AHEAD`] chunks ahead. Dropping it stops the thread.
pub(crate) struct ReadAhead {
    chunks: Option<Receiver<io::Result<Vec<u8>>>>,
    current: Vec<u8>,
    offset: usize,
    done: bool,
    thread: Option<JoinHandle<()>>,
}

impl ReadAhead {
    /// Starts reading `inner` on a new thread.
    pub(crate) fn new(inner: impl Read + Send + 'static) -> io::Result<ReadAhead> {
        let (sender, receiver) = sync_channel(AHEAD);
        let thread = std::thread::Builder::new()
            .name("layer-read-ahead".to_owned())
            .spawn(move || feed(inner, &sender))?;
        Ok(ReadAhead {
            chunks: Some(receiver),
            current: Vec::new(),
            offset: 0,
            done: false,
            thread: Some(thread),
        })
    }
}

/// The thread's work: chunks of `inner` into `sender` until its end, an
/// error, or the reader is gone.
fn feed(mut inner: impl Read, sender: &SyncSender<io::Result<Vec<u8>>>) {
    loop {
        let mut chunk = vec![0u8; CHUNK];
        let mut filled = 0;
        // Fill the chunk (decoders return short reads).
        let result = loop {
            match inner.read(&mut chunk[filled..]) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    filled += n;
                    if filled == chunk.len() {
                        break Ok(());
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => break Err(err),
            }
        };
        chunk.truncate(filled);
        let end = filled == 0;
        if filled > 0 && sender.send(Ok(chunk)).is_err() {
            return;
        }
        if let Err(err) = result {
            let _ = sender.send(Err(err));
            return;
        }
        if end {
            // An empty chunk marks the end of the stream.
            let _ = sender.send(Ok(Vec::new()));
            return;
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.offset == self.current.len() {
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            let next = match &self.chunks {
                Some(chunks) => chunks
                    .recv()
                    .map_err(|_| io::Error::other("the layer's decompressing thread stopped"))?,
                None => Ok(Vec::new()),
            };
            let chunk = next?;
            if chunk.is_empty() {
                self.done = true;
            }
            self.current = chunk;
            self.offset = 0;
        }
        let n = buf.len().min(self.current.len() - self.offset);
        buf[..n].copy_from_slice(&self.current[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // Closing the channel first makes a blocked `send` fail, so the
        // thread ends and can be joined.
        drop(self.chunks.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ahead_gives_the_same_bytes_and_errors() {
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        ReadAhead::new(io::Cursor::new(data.clone()))
            .expect("thread")
            .read_to_end(&mut out)
            .expect("read");
        assert_eq!(out, data);

        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("broken"))
            }
        }
        let mut out = Vec::new();
        let err = ReadAhead::new(Broken)
            .expect("thread")
            .read_to_end(&mut out)
            .expect_err("an error");
        assert_eq!(err.to_string(), "broken");
    }

    #[test]
    fn dropping_it_early_stops_the_thread() {
        let mut reader = ReadAhead::new(io::repeat(1)).expect("thread");
        let mut buf = [0u8; 10];
        reader.read_exact(&mut buf).expect("read");
        drop(reader);
    }
}
