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

#[cfg(test)]
mod tests {
    use super::{Pax, pax_of};
    use crate::error::{Error, Result};
    use crate::unpack::entry::Ctx;
    use ociref::Digest;

    /// One PAX record, its length counting itself.
    fn record(key: &str, value: &str) -> String {
        let body = format!(" {key}={value}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        format!("{len}{body}")
    }

    /// A tar of one file `f`, after a PAX header of `records`.
    fn tar_with(records: &[(&str, &str)]) -> Vec<u8> {
        let text: String = records.iter().map(|(k, v)| record(k, v)).collect();
        let mut builder = tar::Builder::new(Vec::new());
        let mut pax = tar::Header::new_ustar();
        pax.set_entry_type(tar::EntryType::XHeader);
        pax.set_path("PaxHeaders/f").expect("path");
        pax.set_size(text.len() as u64);
        pax.set_cksum();
        builder.append(&pax, text.as_bytes()).expect("pax");
        let mut file = tar::Header::new_ustar();
        file.set_path("f").expect("path");
        file.set_size(0);
        file.set_mtime(7);
        file.set_cksum();
        builder.append(&file, &[][..]).expect("file");
        builder.into_inner().expect("tar")
    }

    fn pax(records: &[(&str, &str)]) -> Result<Pax> {
        let tar = tar_with(records);
        let mut archive = tar::Archive::new(&tar[..]);
        let mut entry = archive
            .entries()
            .expect("entries")
            .next()
            .expect("f")
            .expect("f");
        let layer: Digest = format!("sha256:{}", "ab".repeat(32))
            .parse()
            .expect("digest");
        let ctx = Ctx {
            layer: &layer,
            entry: "f",
        };
        pax_of(&mut entry, &ctx)
    }

    #[test]
    fn mtime_records_keep_their_whole_seconds_and_owner_and_xattr_records_are_read() {
        for (text, want) in [
            ("1700000000.987654321", 1_700_000_000),
            ("-1.5", -1),
            ("-86400", -86_400),
            ("12", 12),
        ] {
            let read = pax(&[("mtime", text)]).expect("read");
            assert_eq!(read.mtime, Some(want), "{text}");
        }
        let read = pax(&[("uid", "4000000000"), ("gid", "70000")]).expect("read");
        assert_eq!((read.uid, read.gid), (Some(4_000_000_000), Some(70_000)));
        let read = pax(&[("SCHILY.xattr.user.k", "v")]).expect("read");
        assert_eq!(read.xattrs, [("user.k".to_owned(), b"v".to_vec())]);
    }

    #[test]
    fn unreadable_owner_and_time_records_refuse_the_entry() {
        for (key, value) in [("mtime", ".5"), ("mtime", "soon"), ("uid", "4294967296")] {
            match pax(&[(key, value)]) {
                Err(Error::UnsafeEntry { reason, .. }) => {
                    assert!(reason.starts_with("bad PAX header"), "{reason}");
                }
                other => panic!("{key}={value} not refused: {:?}", other.map(|p| p.mtime)),
            }
        }
    }
}
