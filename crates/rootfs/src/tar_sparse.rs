//! Sparse files in the PAX form GNU tar writes (`--sparse --format=pax`):
//! the entry's data holds only the written chunks; where they go comes from
//! PAX records (formats 0.0 and 0.1) or from a map at the start of the data
//! (format 1.0). The old GNU header form (type `S`) is expanded by `tar`
//! itself, holes as zeros: [`write_with_holes`] leaves its zero blocks
//! unwritten. Go's archive/tar, and so umoci, reads the PAX forms.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// What PAX records say of a sparse entry.
#[derive(Debug, Default)]
pub(crate) struct SparseRecords {
    /// `GNU.sparse.major`/`minor`, when given.
    pub(crate) version: Option<(String, String)>,
    /// `GNU.sparse.realsize` (1.0) or `GNU.sparse.size` (0.x).
    pub(crate) real_size: Option<u64>,
    /// `GNU.sparse.map` (0.1), or `GNU.sparse.offset`/`numbytes` pairs
    /// (0.0): offsets and lengths as numbers, in order.
    pub(crate) map: Vec<u64>,
}

/// Where each chunk of a sparse file goes.
#[derive(Debug)]
pub(crate) struct SparseLayout {
    /// The file's size.
    pub(crate) real_size: u64,
    /// `(offset, length)` of each chunk, in order; `None` when it is at the
    /// start of the data (1.0).
    chunks: Option<Vec<(u64, u64)>>,
}

impl SparseRecords {
    /// Whether any `GNU.sparse.*` record was seen.
    pub(crate) fn is_sparse(&self) -> bool {
        self.version.is_some() || self.real_size.is_some() || !self.map.is_empty()
    }

    /// The layout these records give, or why they cannot be used.
    pub(crate) fn layout(&self) -> Result<SparseLayout, String> {
        let real_size = self
            .real_size
            .ok_or("sparse file without GNU.sparse.realsize or GNU.sparse.size")?;
        let chunks = match &self.version {
            Some((major, minor)) if major == "1" && minor == "0" => None,
            Some((major, minor)) => {
                return Err(format!("sparse format {major}.{minor} is not supported"));
            }
            None => Some(pairs(&self.map)?),
        };
        Ok(SparseLayout { real_size, chunks })
    }
}

/// `[a, b, c, d]` as `[(a, b), (c, d)]`.
fn pairs(numbers: &[u64]) -> Result<Vec<(u64, u64)>, String> {
    if !numbers.len().is_multiple_of(2) {
        return Err("sparse map with an odd count of numbers".to_owned());
    }
    Ok(numbers.chunks(2).map(|pair| (pair[0], pair[1])).collect())
}

/// The chunks may not overlap, go backwards or pass the end.
fn check(chunks: &[(u64, u64)], real_size: u64) -> Result<(), String> {
    let mut end = 0u64;
    for &(offset, length) in chunks {
        let chunk_end = offset.checked_add(length).ok_or("sparse chunk past 2^64")?;
        if offset < end || chunk_end > real_size {
            return Err(format!(
                "sparse chunk at {offset} (+{length}) overlaps another or passes the size {real_size}"
            ));
        }
        end = chunk_end;
    }
    Ok(())
}

/// Why a sparse entry could not be written.
#[derive(Debug)]
pub(crate) enum SparseError {
    /// The map is bad, or the data ends before it says.
    Map(String),
    /// Reading the layer or writing the file failed.
    Io(std::io::Error),
}

impl From<std::io::Error> for SparseError {
    fn from(err: std::io::Error) -> SparseError {
        SparseError::Io(err)
    }
}

/// Writes the sparse file `layout` describes from the entry's `data` into
/// the new, empty `file`: each chunk at its offset, holes left as holes.
/// Returns the bytes of data written.
pub(crate) fn write_sparse(
    layout: &SparseLayout,
    data: &mut impl Read,
    file: &mut File,
) -> Result<u64, SparseError> {
    let chunks = chunks_of(layout, data)?;
    let mut written = 0;
    for (offset, length) in chunks {
        file.seek(SeekFrom::Start(offset))?;
        let copied = std::io::copy(&mut data.take(length), file)?;
        if copied != length {
            return Err(SparseError::Map(format!(
                "sparse chunk at {offset} ends after {copied} of {length} bytes"
            )));
        }
        written += copied;
    }
    file.set_len(layout.real_size)?;
    Ok(written)
}

/// Where the chunks of the sparse file `layout` describes go, checked:
/// from its records, or (format 1.0) read from the start of `data`, which
/// is then left at the first chunk.
pub(crate) fn chunks_of(
    layout: &SparseLayout,
    data: &mut impl Read,
) -> Result<Vec<(u64, u64)>, SparseError> {
    let chunks = match &layout.chunks {
        Some(chunks) => chunks.clone(),
        None => read_map(data)?,
    };
    check(&chunks, layout.real_size).map_err(SparseError::Map)?;
    Ok(chunks)
}

/// Writes `size` bytes of `data` into the new, empty `file`, leaving each
/// aligned 4 KiB block of zeros unwritten (a hole), and returns the bytes
/// read. For a GNU sparse entry, whose holes `tar` gives as zeros.
pub(crate) fn write_with_holes(
    data: &mut impl Read,
    file: &mut File,
    size: u64,
) -> std::io::Result<u64> {
    const BLOCK: usize = 4096;
    let mut buffer = vec![0u8; 64 * BLOCK];
    let mut done = 0u64;
    let mut data = data.take(size);
    loop {
        // Whole buffers, so blocks stay aligned to the file.
        let mut filled = 0;
        while filled < buffer.len() {
            match data.read(&mut buffer[filled..])? {
                0 => break,
                read => filled += read,
            }
        }
        if filled == 0 {
            break;
        }
        for block in buffer[..filled].chunks(BLOCK) {
            if block.iter().all(|&b| b == 0) {
                file.seek(SeekFrom::Current(block.len() as i64))?;
            } else {
                std::io::Write::write_all(file, block)?;
            }
        }
        done += filled as u64;
    }
    file.set_len(done)?;
    Ok(done)
}

/// Format 1.0: decimal lines (the count of chunks, then offset and length
/// of each) padded with zeros to 512 bytes, before the chunks.
fn read_map(data: &mut impl Read) -> Result<Vec<(u64, u64)>, SparseError> {
    let invalid = || SparseError::Map("bad number in the sparse map".to_owned());
    let mut consumed = 0u64;
    let mut number = || -> Result<u64, SparseError> {
        let mut digits = Vec::new();
        loop {
            let mut byte = [0u8];
            if data.read(&mut byte)? == 0 {
                return Err(SparseError::Map("the sparse map ends early".to_owned()));
            }
            consumed += 1;
            match byte[0] {
                b'\n' => break,
                digit @ b'0'..=b'9' if digits.len() < 20 => digits.push(digit),
                _ => return Err(invalid()),
            }
        }
        std::str::from_utf8(&digits)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(invalid)
    };
    let count = number()?;
    let mut chunks = Vec::new();
    for _ in 0..count {
        let offset = number()?;
        chunks.push((offset, number()?));
    }
    let padding = (512 - consumed % 512) % 512;
    let skipped = std::io::copy(&mut data.take(padding), &mut std::io::sink())?;
    if skipped != padding {
        return Err(SparseError::Map("the sparse map ends early".to_owned()));
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(version: Option<(&str, &str)>, real_size: u64, map: &[u64]) -> SparseRecords {
        SparseRecords {
            version: version.map(|(a, b)| (a.to_owned(), b.to_owned())),
            real_size: Some(real_size),
            map: map.to_vec(),
        }
    }

    #[test]
    fn chunks_land_at_their_offsets_with_holes_between() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let mut file = File::create(&path).expect("file");
        let layout = records(None, 10_000, &[4096, 3, 9998, 2, 10_000, 0])
            .layout()
            .expect("0.1");
        let written = write_sparse(&layout, &mut &b"abcde"[..], &mut file).expect("written");
        assert_eq!(written, 5);
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(bytes.len(), 10_000);
        assert_eq!(&bytes[4096..4099], b"abc");
        assert_eq!(&bytes[9998..], b"de");
        assert!(bytes[..4096].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_1_0_map_is_read_from_the_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let mut file = File::create(&path).expect("file");
        let mut data = b"2\n5\n2\n8\n1\n".to_vec();
        data.resize(512, 0);
        data.extend_from_slice(b"xyz");
        let layout = records(Some(("1", "0")), 12, &[]).layout().expect("1.0");
        write_sparse(&layout, &mut &data[..], &mut file).expect("written");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            b"\0\0\0\0\0xy\0z\0\0\0"
        );
    }

    #[test]
    fn zero_blocks_become_holes_and_the_content_stays() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let mut file = File::create(&path).expect("file");
        let mut content = vec![0u8; 4 << 20];
        content[5000] = 1;
        content.extend_from_slice(b"tail");
        let read =
            write_with_holes(&mut &content[..], &mut file, content.len() as u64).expect("written");
        assert_eq!(read, content.len() as u64);
        assert_eq!(std::fs::read(&path).expect("read"), content);
        let meta = std::fs::metadata(&path).expect("meta");
        assert!(meta.blocks() * 512 < 1 << 20, "{} blocks", meta.blocks());
    }

    #[test]
    fn bad_maps_and_formats_are_refused() {
        assert!(records(Some(("2", "0")), 1, &[]).layout().is_err());
        assert!(records(None, 10, &[0, 1, 2]).layout().is_err());
        let dir = tempfile::tempdir().expect("tempdir");
        let mut file = File::create(dir.path().join("f")).expect("file");
        for map in [&[0, 5, 2, 1][..], &[8, 5][..], &[u64::MAX, 2][..]] {
            let layout = records(None, 10, map).layout().expect("layout");
            let err = write_sparse(&layout, &mut &[0u8; 16][..], &mut file).expect_err("refused");
            assert!(matches!(err, SparseError::Map(_)), "{map:?}: {err:?}");
        }
        let layout = records(None, 10, &[0, 8]).layout().expect("layout");
        let short = write_sparse(&layout, &mut &b"abc"[..], &mut file).expect_err("short");
        assert!(matches!(short, SparseError::Map(_)), "{short:?}");
        let layout = records(Some(("1", "0")), 10, &[]).layout().expect("layout");
        let no_map = write_sparse(&layout, &mut &b"2\n0\n"[..], &mut file).expect_err("cut");
        assert!(matches!(no_map, SparseError::Map(_)), "{no_map:?}");
    }
}
