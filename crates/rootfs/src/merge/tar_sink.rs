//! The tar sink: merged entries as one POSIX (ustar + PAX) tar stream.
//! What a ustar header cannot hold goes in a PAX header before the entry:
//! names and link targets past 100 bytes (`path`, `linkpath`), owners past
//! 2,097,151 (`uid`, `gid`), times before 1970 or past 2242 (`mtime`),
//! sizes of 8 GiB and more (`size`), and extended attributes
//! (`SCHILY.xattr.<name>`, as GNU tar `--xattrs`, Docker and libarchive
//! write them).

use super::{EntrySink, MergedEntry, MergedKind};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;

/// The largest value of an 8-byte octal header field.
const OCTAL_7: u64 = 0o7777777;
/// The largest value of a 12-byte octal header field.
const OCTAL_11: u64 = 0o77777777777;

/// Writes merged entries as a tar stream to `W`.
pub struct TarSink<W: Write> {
    builder: tar::Builder<W>,
}

impl<W: Write> TarSink<W> {
    /// A sink writing to `writer`.
    pub fn new(writer: W) -> TarSink<W> {
        TarSink {
            builder: tar::Builder::new(writer),
        }
    }

    /// Ends the stream (two zero blocks) and gives the writer back,
    /// flushed.
    pub fn finish(self) -> std::io::Result<W> {
        let mut writer = self.builder.into_inner()?;
        writer.flush()?;
        Ok(writer)
    }
}

/// Writes `bytes` into a header `field`, NUL-padded, and answers whether
/// they fit (a NUL among them never does); what does not fit is written
/// cut, for readers that ignore the PAX record that then carries it.
fn fits(field: &mut [u8], bytes: &[u8]) -> bool {
    if bytes.len() > field.len() || bytes.contains(&0) {
        let cut = bytes.len().min(field.len());
        field[..cut].copy_from_slice(&bytes[..cut]);
        return false;
    }
    field.fill(0);
    field[..bytes.len()].copy_from_slice(bytes);
    true
}

impl<W: Write> EntrySink for TarSink<W> {
    fn entry(&mut self, entry: &MergedEntry<'_>, data: &mut dyn Read) -> std::io::Result<()> {
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        let mut header = tar::Header::new_ustar();
        let mut name = if entry.path.as_os_str().is_empty() {
            b".".to_vec()
        } else {
            entry.path.as_os_str().as_bytes().to_vec()
        };
        let (entry_type, size) = match &entry.kind {
            MergedKind::Dir => {
                name.push(b'/');
                (tar::EntryType::Directory, 0)
            }
            MergedKind::File { size } => (tar::EntryType::Regular, *size),
            MergedKind::Symlink(_) => (tar::EntryType::Symlink, 0),
            MergedKind::Hardlink(_) => (tar::EntryType::Link, 0),
            MergedKind::Device { block, .. } if *block => (tar::EntryType::Block, 0),
            MergedKind::Device { .. } => (tar::EntryType::Char, 0),
            MergedKind::Fifo => (tar::EntryType::Fifo, 0),
        };
        header.set_entry_type(entry_type);
        if !fits(&mut header.as_old_mut().name, &name) {
            pax.push(("path".to_owned(), name));
        }
        if let MergedKind::Symlink(target) | MergedKind::Hardlink(target) = &entry.kind {
            let target = target.as_os_str().as_bytes();
            if !fits(&mut header.as_old_mut().linkname, target) {
                pax.push(("linkpath".to_owned(), target.to_vec()));
            }
        }
        if let MergedKind::Device { major, minor, .. } = &entry.kind {
            header.set_device_major(*major)?;
            header.set_device_minor(*minor)?;
        }
        header.set_mode(entry.mode & 0o7777);
        for (key, id) in [("uid", entry.uid), ("gid", entry.gid)] {
            if id > OCTAL_7 {
                pax.push((key.to_owned(), id.to_string().into_bytes()));
            }
        }
        header.set_uid(if entry.uid > OCTAL_7 { 0 } else { entry.uid });
        header.set_gid(if entry.gid > OCTAL_7 { 0 } else { entry.gid });
        match u64::try_from(entry.mtime) {
            Ok(mtime) if mtime <= OCTAL_11 => header.set_mtime(mtime),
            _ => {
                pax.push(("mtime".to_owned(), entry.mtime.to_string().into_bytes()));
                header.set_mtime(entry.mtime.clamp(0, OCTAL_11 as i64) as u64);
            }
        }
        if size > OCTAL_11 {
            pax.push(("size".to_owned(), size.to_string().into_bytes()));
            header.set_size(0);
        } else {
            header.set_size(size);
        }
        for (key, value) in entry.xattrs {
            pax.push((format!("SCHILY.xattr.{key}"), value.clone()));
        }
        if !pax.is_empty() {
            self.builder
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
        }
        header.set_cksum();
        if size > OCTAL_11 {
            // The header says 0: write the bytes and their padding here.
            self.builder.append(&header, std::io::empty())?;
            let writer = self.builder.get_mut();
            let copied = std::io::copy(&mut data.take(size), writer)?;
            let padding = (512 - copied % 512) % 512;
            writer.write_all(&vec![0u8; padding as usize])?;
            return Ok(());
        }
        self.builder.append(&header, data)
    }
}

#[cfg(test)]
mod tests {
    use super::TarSink;
    use crate::merge::{EntrySink, MergedEntry, MergedKind};
    use std::collections::BTreeMap;
    use std::path::Path;

    fn entry<'a>(path: &'a Path, kind: MergedKind<'a>) -> MergedEntry<'a> {
        MergedEntry {
            path,
            kind,
            uid: 0,
            gid: 0,
            mode: 0o644,
            mtime: 1,
            xattrs: &[],
            source: None,
        }
    }

    #[test]
    fn what_a_ustar_header_cannot_hold_goes_in_pax_records() {
        let long = "d/".repeat(60) + "file";
        let target = "t".repeat(150);
        let xattrs = [("user.k".to_owned(), b"v\0w".to_vec())];
        let mut sink = TarSink::new(Vec::new());
        let mut file = entry(Path::new(&long), MergedKind::File { size: 3 });
        (file.uid, file.gid, file.mtime) = (3_000_000, 7, -86_400);
        file.xattrs = &xattrs;
        sink.entry(&file, &mut &b"abc"[..]).expect("file");
        let mut link = entry(Path::new("l"), MergedKind::Symlink(Path::new(&target)));
        link.mtime = 9_000_000_000;
        sink.entry(&link, &mut std::io::empty()).expect("symlink");
        let device = MergedKind::Device {
            block: false,
            major: 1,
            minor: 3,
        };
        sink.entry(&entry(Path::new("null"), device), &mut std::io::empty())
            .expect("device");
        let bytes = sink.finish().expect("finished");
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for item in archive.entries().expect("entries") {
            let mut item = item.expect("entry");
            let records: BTreeMap<String, Vec<u8>> = item
                .pax_extensions()
                .expect("pax")
                .into_iter()
                .flatten()
                .map(|r| {
                    let r = r.expect("record");
                    (r.key().expect("key").to_owned(), r.value_bytes().to_vec())
                })
                .collect();
            let path = item.path().expect("path").to_string_lossy().into_owned();
            let link = item.link_name().expect("link").map(|l| l.into_owned());
            let header = item.header();
            let device = header.device_major().ok().flatten();
            seen.push((path, link, records, device, item.size()));
        }
        assert_eq!(seen[0].0, long);
        let records = &seen[0].2;
        assert_eq!(records["uid"], b"3000000");
        assert_eq!(records["mtime"], b"-86400");
        assert_eq!(records["SCHILY.xattr.user.k"], b"v\0w");
        assert!(!records.contains_key("gid"), "{records:?}");
        assert_eq!(seen[0].4, 3);
        assert_eq!(seen[1].1.as_deref(), Some(Path::new(&target)));
        assert_eq!(seen[1].2["mtime"], b"9000000000");
        assert_eq!((seen[2].0.as_str(), seen[2].3), ("null", Some(1)));
    }
}
