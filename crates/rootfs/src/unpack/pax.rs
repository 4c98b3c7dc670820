//! The PAX records of an entry that rootfs applies: owners, mtime,
//! extended attributes (`SCHILY.xattr.*`) and the `GNU.sparse.*` records
//! of a sparse file in PAX form. Other records are left to `tar` (`path`,
//! `linkpath`, `size`) or not read.

use super::entry::Ctx;
use crate::error::Result;
use crate::tar_sparse::SparseRecords;
use std::io::Read;

/// What an entry's PAX records say beyond its header.
#[derive(Default)]
pub(super) struct Pax {
    /// `SCHILY.xattr.*`: extended attributes.
    pub(super) xattrs: Vec<(String, Vec<u8>)>,
    /// `uid`, `gid`.
    pub(super) uid: Option<u64>,
    pub(super) gid: Option<u64>,
    /// `mtime`: its whole seconds (see [`seconds`]).
    pub(super) mtime: Option<i64>,
    /// `GNU.sparse.name`: the real name of a sparse file in PAX form.
    pub(super) sparse_name: Option<Vec<u8>>,
    /// The other `GNU.sparse.*` records.
    pub(super) sparse: SparseRecords,
}

/// The PAX records of an entry that rootfs applies.
pub(super) fn pax_of<R: Read>(entry: &mut tar::Entry<'_, R>, ctx: &Ctx<'_>) -> Result<Pax> {
    let mut pax = Pax::default();
    let bad = |what: &str| ctx.unsafe_entry(format!("bad PAX header: {what}"));
    let (mut sparse_major, mut sparse_minor) = (None, None);
    let Some(extensions) = entry.pax_extensions().map_err(|e| bad(&e.to_string()))? else {
        return Ok(pax);
    };
    for extension in extensions {
        let extension = extension.map_err(|e| bad(&e.to_string()))?;
        let Ok(key) = extension.key() else {
            continue;
        };
        let value = || {
            extension
                .value()
                .map_err(|_| bad(&format!("{key} is not UTF-8")))
        };
        let number = |text: &str| {
            text.trim()
                .parse::<u64>()
                .map_err(|_| bad(&format!("{key} {text:?} is not a number")))
        };
        match key {
            "GNU.sparse.name" => pax.sparse_name = Some(extension.value_bytes().to_vec()),
            "GNU.sparse.major" => sparse_major = Some(value()?.to_owned()),
            "GNU.sparse.minor" => sparse_minor = Some(value()?.to_owned()),
            "GNU.sparse.realsize" | "GNU.sparse.size" => {
                pax.sparse.real_size = Some(number(value()?)?);
            }
            "GNU.sparse.map" => {
                for part in value()?.split(',').filter(|p| !p.is_empty()) {
                    pax.sparse.map.push(number(part)?);
                }
            }
            "GNU.sparse.offset" | "GNU.sparse.numbytes" => {
                pax.sparse.map.push(number(value()?)?);
            }
            "uid" | "gid" => {
                let id = value()?
                    .parse::<u32>()
                    .map_err(|_| bad(&format!("{key} is not a 32-bit number")))?;
                let id = u64::from(id);
                if key == "uid" {
                    pax.uid = Some(id);
                } else {
                    pax.gid = Some(id);
                }
            }
            "mtime" => {
                let text = value()?;
                pax.mtime = Some(
                    seconds(text).ok_or_else(|| bad(&format!("mtime {text:?} is not a time")))?,
                );
            }
            _ => {
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    pax.xattrs
                        .push((name.to_owned(), extension.value_bytes().to_vec()));
                }
            }
        }
    }
    if sparse_major.is_some() || sparse_minor.is_some() {
        let unknown = || "?".to_owned();
        pax.sparse.version = Some((
            sparse_major.unwrap_or_else(unknown),
            sparse_minor.unwrap_or_else(unknown),
        ));
    }
    Ok(pax)
}

/// The whole seconds of a PAX time (`<seconds>[.<fraction>]`): the text
/// before the `.`, so the fraction is dropped, towards zero (`-1.5` is
/// -1). `None` when that part is no decimal number.
fn seconds(text: &str) -> Option<i64> {
    let seconds = text.split('.').next().unwrap_or_default();
    seconds.parse::<i64>().ok()
}
