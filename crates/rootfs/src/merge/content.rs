//! The content of a regular file in pass two, as plain bytes: exactly the
//! size its header promises (a short entry is an error, never a short tar
//! entry), and a sparse file in PAX form expanded, its holes as zeros (an
//! old GNU sparse entry `tar` expands itself). Errors are kept for the
//! caller, who tells a broken layer from a failing sink.

use crate::error::Error;
use crate::tar_sparse::{SparseError, chunks_of};
use crate::unpack::{Ctx, EntryInfo};
use std::collections::VecDeque;
use std::io::Read;

/// A regular file's bytes, read from its entry.
pub(super) struct Content<'r> {
    data: &'r mut dyn Read,
    /// Chunks still to come (a sparse file), `(offset, length)`.
    chunks: Option<VecDeque<(u64, u64)>>,
    /// Bytes given so far.
    done: u64,
    /// The file's size.
    pub(super) size: u64,
    /// Why reading failed, in the crate's terms.
    pub(super) failure: Option<Error>,
    layer_read: Box<dyn Fn(std::io::Error) -> Error + 'r>,
    unsafe_entry: Box<dyn Fn(String) -> Error + 'r>,
}

impl<'r> Content<'r> {
    /// The content of the entry `info` describes, read from `data` (the
    /// entry, whose header gives `entry_size`).
    pub(super) fn new(
        ctx: &'r Ctx<'r>,
        info: &EntryInfo,
        entry_size: u64,
        data: &'r mut dyn Read,
    ) -> Result<Content<'r>, Error> {
        let (chunks, size) = if info.sparse.is_sparse() {
            let layout = info
                .sparse
                .layout()
                .map_err(|reason| ctx.unsafe_entry(reason))?;
            let chunks = chunks_of(&layout, &mut &mut *data).map_err(|err| match err {
                SparseError::Map(reason) => ctx.unsafe_entry(reason),
                SparseError::Io(source) => ctx.layer_read(source),
            })?;
            (Some(chunks.into()), layout.real_size)
        } else {
            (None, entry_size)
        };
        Ok(Content {
            data,
            chunks,
            done: 0,
            size,
            failure: None,
            layer_read: Box::new(|e| ctx.layer_read(e)),
            unsafe_entry: Box::new(|reason| ctx.unsafe_entry(reason)),
        })
    }

    fn fail(&mut self, error: Error) -> std::io::Error {
        let shown = std::io::Error::other(error.to_string());
        self.failure = Some(error);
        shown
    }

    /// Reads from the entry, at most `want` bytes; `None` at its end.
    fn read_data(&mut self, buf: &mut [u8], want: u64) -> std::io::Result<Option<usize>> {
        let want = want.min(buf.len() as u64) as usize;
        match self.data.read(&mut buf[..want]) {
            Ok(0) => Ok(None),
            Ok(read) => Ok(Some(read)),
            Err(err) => {
                let error = (self.layer_read)(err);
                Err(self.fail(error))
            }
        }
    }
}

impl Read for Content<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() || self.done == self.size {
            return Ok(0);
        }
        let Some(chunks) = &mut self.chunks else {
            let read = self.read_data(buf, self.size - self.done)?;
            let Some(read) = read else {
                let short = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
                let error = (self.layer_read)(short);
                return Err(self.fail(error));
            };
            self.done += read as u64;
            return Ok(read);
        };
        while let Some(&(offset, length)) = chunks.front() {
            if self.done >= offset + length {
                chunks.pop_front();
                continue;
            }
            if self.done < offset {
                let zeros = (offset - self.done).min(buf.len() as u64) as usize;
                buf[..zeros].fill(0);
                self.done += zeros as u64;
                return Ok(zeros);
            }
            let read = self.read_data(buf, offset + length - self.done)?;
            let Some(read) = read else {
                let copied = self.done - offset;
                let reason =
                    format!("sparse chunk at {offset} ends after {copied} of {length} bytes");
                let error = (self.unsafe_entry)(reason);
                return Err(self.fail(error));
            };
            self.done += read as u64;
            return Ok(read);
        }
        let zeros = (self.size - self.done).min(buf.len() as u64) as usize;
        buf[..zeros].fill(0);
        self.done += zeros as u64;
        Ok(zeros)
    }
}

#[cfg(test)]
mod tests {
    use super::Content;
    use crate::tar_sparse::SparseRecords;
    use crate::unpack::{Ctx, EntryInfo, Kind};
    use ociref::Digest;
    use std::io::Read;

    fn info(sparse: SparseRecords) -> EntryInfo {
        EntryInfo {
            path: b"f".to_vec(),
            kind: Kind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: Vec::new(),
            sparse,
            gnu_sparse: false,
        }
    }

    #[test]
    fn sparse_chunks_expand_with_zeros_and_short_data_is_an_error() {
        let layer: Digest = format!("sha256:{}", "cd".repeat(32))
            .parse()
            .expect("digest");
        let ctx = Ctx {
            layer: &layer,
            entry: "f",
        };
        let records = || SparseRecords {
            version: None,
            real_size: Some(10),
            map: vec![2, 3, 8, 1],
        };
        let mut data: &[u8] = b"abcd";
        let info = info(records());
        let mut content = Content::new(&ctx, &info, 4, &mut data).expect("content");
        let mut out = Vec::new();
        content.read_to_end(&mut out).expect("read");
        assert_eq!(out, b"\0\0abc\0\0\0d\0");
        let mut short: &[u8] = b"ab";
        let info = self::info(records());
        let mut content = Content::new(&ctx, &info, 2, &mut short).expect("content");
        assert!(content.read_to_end(&mut Vec::new()).is_err());
        let failure = content.failure.take().expect("kept").to_string();
        assert!(
            failure.contains("sparse chunk at 2 ends after 2 of 3"),
            "{failure}"
        );
        let mut plain: &[u8] = b"xy";
        let info = self::info(SparseRecords::default());
        let mut content = Content::new(&ctx, &info, 5, &mut plain).expect("content");
        assert!(
            content.read_to_end(&mut Vec::new()).is_err(),
            "short plain file"
        );
        assert!(matches!(
            content.failure,
            Some(crate::Error::LayerRead { .. })
        ));
    }
}
