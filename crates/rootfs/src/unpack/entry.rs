//! What one tar entry says: the kind of file it makes (with its link
//! target or device numbers), its name, owner, mode, mtime and extended
//! attributes (from the header, overridden by PAX records), and the entry
//! named in errors.

use super::Recorded;
use super::pax::pax_of;
use crate::error::{Error, Result};
use crate::tar_sparse::SparseRecords;
use ociref::Digest;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The entry being applied, for error messages.
pub(crate) struct Ctx<'a> {
    pub(crate) layer: &'a Digest,
    pub(crate) entry: &'a str,
}

impl Ctx<'_> {
    pub(crate) fn unsafe_entry(&self, reason: impl Into<String>) -> Error {
        Error::UnsafeEntry {
            layer: self.layer.clone(),
            entry: self.entry.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(
        &self,
        what: &'static str,
        path: &Path,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let layer = self.layer.clone();
        let entry = self.entry.to_owned();
        let path = path.to_path_buf();
        move |source| Error::Entry {
            layer,
            entry,
            what,
            path,
            source,
        }
    }

    /// The layer could not be read (or decompressed) further.
    pub(crate) fn layer_read(&self, source: std::io::Error) -> Error {
        Error::LayerRead {
            layer: self.layer.clone(),
            source,
        }
    }

    /// `what` (entries, bytes) went past `limit` at this entry.
    pub(super) fn limit_exceeded(&self, what: &'static str, limit: u64) -> Error {
        Error::LimitExceeded {
            layer: self.layer.clone(),
            entry: self.entry.to_owned(),
            what,
            limit,
        }
    }
}

/// What an entry creates.
pub(crate) enum Kind {
    File,
    Dir,
    Symlink(PathBuf),
    Hardlink(PathBuf),
    Device(u8, u32, u32),
    Fifo,
}

/// One entry that names a file, as its header and PAX records give it.
pub(crate) struct EntryInfo {
    /// Its name: the header's, or the real name of a sparse file in PAX
    /// form (whose header says `GNUSparseFile.<pid>/<name>`).
    pub(crate) path: Vec<u8>,
    pub(crate) kind: Kind,
    /// Permission bits, with setuid, setgid and sticky.
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    /// Seconds since the epoch.
    pub(crate) mtime: i64,
    /// `SCHILY.xattr.*` records.
    pub(crate) xattrs: Vec<(String, Vec<u8>)>,
    /// The other `GNU.sparse.*` records: a sparse file in PAX form.
    pub(crate) sparse: SparseRecords,
    /// An old GNU sparse entry (type `S`): `tar` reads it with its holes
    /// as zeros.
    pub(crate) gnu_sparse: bool,
}

impl EntryInfo {
    /// What the layers say about the entry's path (no device).
    pub(super) fn recorded(&self) -> Recorded {
        Recorded {
            uid: self.uid,
            gid: self.gid,
            mode: self.mode,
            device: None,
            mtime: self.mtime,
        }
    }
}

/// Reads what `entry` (named `raw_path` by its header) says, or `None`
/// for a header that names no file.
pub(crate) fn read_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    raw_path: Vec<u8>,
    ctx: &Ctx<'_>,
) -> Result<Option<EntryInfo>> {
    let Some(kind) = kind_of(entry, ctx)? else {
        return Ok(None);
    };
    let header = entry.header();
    let gnu_sparse = header.entry_type() == tar::EntryType::GNUSparse;
    let mode = header
        .mode()
        .map_err(|e| ctx.unsafe_entry(format!("bad mode: {e}")))?
        & 0o7777;
    let (header_uid, header_gid) = (header.uid().unwrap_or(0), header.gid().unwrap_or(0));
    let header_mtime = header.mtime().unwrap_or(0) as i64;
    // PAX records override the header (large ids, times before 1970
    // or past 2242, as Go's archive/tar and GNU tar write them).
    let pax = pax_of(entry, ctx)?;
    Ok(Some(EntryInfo {
        path: pax.sparse_name.unwrap_or(raw_path),
        kind,
        mode,
        uid: pax.uid.unwrap_or(header_uid),
        gid: pax.gid.unwrap_or(header_gid),
        mtime: pax.mtime.unwrap_or(header_mtime),
        xattrs: pax.xattrs,
        sparse: pax.sparse,
        gnu_sparse,
    }))
}

/// What `entry` creates, by its type; `None` for a header that names no
/// file.
fn kind_of<R: Read>(entry: &tar::Entry<'_, R>, ctx: &Ctx<'_>) -> Result<Option<Kind>> {
    let header = entry.header();
    let entry_type = header.entry_type();
    let kind = match entry_type {
        // GNU sparse: `tar` reads it with its holes as zeros.
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            Kind::File
        }
        tar::EntryType::Directory => Kind::Dir,
        tar::EntryType::Symlink => Kind::Symlink(link_name(entry, ctx)?),
        tar::EntryType::Link => Kind::Hardlink(link_name(entry, ctx)?),
        tar::EntryType::Char | tar::EntryType::Block => {
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            let tag = if entry_type == tar::EntryType::Char {
                b'c'
            } else {
                b'b'
            };
            Kind::Device(tag, major, minor)
        }
        tar::EntryType::Fifo => Kind::Fifo,
        // PAX and GNU long-name headers are consumed by `tar`; a global
        // header and a volume label name no file.
        tar::EntryType::XGlobalHeader
        | tar::EntryType::XHeader
        | tar::EntryType::GNULongName
        | tar::EntryType::GNULongLink => return Ok(None),
        other => match other.as_byte() {
            b'V' => return Ok(None),
            // A GNU dumpdir: a directory (its data lists names, for
            // incremental restores only).
            b'D' => Kind::Dir,
            // Part of a file continued from another volume, or an
            // obsolete GNU rename list: no file can be made of it.
            b'M' | b'N' => {
                return Err(ctx.unsafe_entry(format!(
                    "GNU `{}` entry (multi-volume or rename list) cannot be applied",
                    char::from(other.as_byte())
                )));
            }
            // POSIX: an unknown type is extracted as a regular file (as
            // GNU tar does; umoci refuses the layer).
            _ => Kind::File,
        },
    };
    Ok(Some(kind))
}

/// The target of a symlink or hardlink entry, as written.
fn link_name<R: Read>(entry: &tar::Entry<'_, R>, ctx: &Ctx<'_>) -> Result<PathBuf> {
    let name = entry
        .link_name_bytes()
        .ok_or_else(|| ctx.unsafe_entry("link without a target"))?;
    Ok(PathBuf::from(OsStr::from_bytes(&name)))
}
