//! ext4 images straight from a tar stream: `mke2fs -d -` fed on stdin
//! (e2fsprogs >= 1.47.1 with libarchive, see [`crate::detect_mke2fs`]),
//! then one `debugfs -w -f` pass for the extended attributes mke2fs drops.
//!
//! mke2fs takes names, types, owners, modes, mtimes, device numbers,
//! symlinks and hardlinks from the tar, so no root and no host tree are
//! needed. Of the extended attributes libarchive hands it (pax
//! `SCHILY.xattr.*` and `LIBARCHIVE.xattr.*` alike) it keeps only
//! `security.capability` (and, from 1.47.2, `gnu.translator`): the stream
//! is read as it is fed, every other attribute is noted with its path, and
//! set afterwards with `ea_set` lines. The same reproducibility settings
//! as the tree path apply (private `mke2fs.conf`, `-U` and `-E hash_seed=`
//! from a digest, `E2FSPROGS_FAKE_TIME`), so one stream always gives the
//! same bytes, as root or not. Access and change times come from the tar
//! (pax `atime`/`ctime`; 0 when it has none).

use crate::error::{Error, Result, io};
use crate::ext4::{FAKE_TIME, MKE2FS_CONF, uuid_from};
use crate::mke2fs::mke2fs_command;
use crate::options::BuildOptions;
use crate::tools::{find_tool, run, run_fed};
use ociref::Digest;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path};
use std::process::Command;

/// The attribute mke2fs keeps from a tar; every other one is set with
/// `debugfs`.
const KEPT_BY_MKE2FS: &str = "security.capability";

/// Extended attributes by image path (`/etc/passwd`), each `(name, value)`.
pub(crate) type XattrsByPath = BTreeMap<String, Vec<(String, Vec<u8>)>>;

/// The shape of an image [`ext4_from_tar`] makes: a stream cannot be
/// measured before it is read, so the caller sizes it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TarImage {
    /// Size in bytes (rounded up to 4 KiB).
    pub size: u64,
    /// Inode count (`mke2fs -N`).
    pub inodes: u64,
    /// The digest the UUID and hash seed are derived from.
    pub seed: Digest,
}

impl TarImage {
    /// An image of `size` bytes with `inodes` inodes, UUID and hash seed
    /// from `seed`.
    pub fn new(size: u64, inodes: u64, seed: Digest) -> TarImage {
        TarImage { size, inodes, seed }
    }
}

/// What [`ext4_from_tar`] read and set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TarImageReport {
    /// Tar entries read.
    pub entries: u64,
    /// Bytes of tar read.
    pub bytes: u64,
    /// Extended attributes set with `debugfs` (those mke2fs drops).
    pub xattrs_set: usize,
}

/// Makes the ext4 image `image` (created or truncated) from the tar stream
/// `reader` with `mke2fs -t ext4 -d -`, label and tool search path from
/// `options`, then sets the extended attributes mke2fs drops (see the
/// module docs). Fails with [`Error::ToolFailed`] naming mke2fs's message
/// when the stream does not fit or mke2fs cannot read tars. Blocking.
pub fn ext4_from_tar(
    reader: impl Read,
    image: &Path,
    shape: &TarImage,
    options: &BuildOptions,
) -> Result<TarImageReport> {
    let work = tempfile::Builder::new()
        .prefix(".ext4-tar-")
        .tempdir_in(image.parent().unwrap_or(Path::new(".")))
        .map_err(io("creating a directory beside", image))?;
    ext4_from_tar_in(reader, image, shape, options, work.path())
}

/// [`ext4_from_tar`] with `work` (an existing private directory) for its
/// own files.
pub(crate) fn ext4_from_tar_in(
    reader: impl Read,
    image: &Path,
    shape: &TarImage,
    options: &BuildOptions,
    work: &Path,
) -> Result<TarImageReport> {
    ext4_fed(image, shape, options, work, |stdin| feed(reader, stdin))
}

/// Makes the ext4 image `image` with `mke2fs -d -` reading the tar that
/// `writer` writes to its standard input (both run at once), then sets the
/// extended attributes `writer` says mke2fs dropped, by path. The error of
/// a failed mke2fs wins over the writer's (a full image closes the pipe).
pub(crate) fn ext4_fed(
    image: &Path,
    shape: &TarImage,
    options: &BuildOptions,
    work: &Path,
    writer: impl FnOnce(std::process::ChildStdin) -> Result<(TarImageReport, XattrsByPath)>,
) -> Result<TarImageReport> {
    let mke2fs = find_tool("mke2fs", options)?;
    let conf = work.join("mke2fs.conf");
    std::fs::write(&conf, MKE2FS_CONF).map_err(io("writing", &conf))?;
    // A fresh file: mke2fs leaves what it does not write as it was.
    std::fs::File::create(image).map_err(io("creating", image))?;
    let uuid = uuid_from(&shape.seed);
    let mut command = mke2fs_command(&mke2fs, &conf, &options.label, &uuid, shape.inodes);
    command
        .args(["-d", "-"])
        .arg(image)
        .arg(format!("{}k", shape.size.div_ceil(4096) * 4));
    let (mut report, xattrs) = run_fed(&mut command, "mke2fs", writer)?;
    if !xattrs.is_empty() {
        let debugfs = find_tool("debugfs", options)?;
        report.xattrs_set = set_xattrs(&debugfs, image, work, &xattrs)?;
    }
    Ok(report)
}

/// Whether mke2fs keeps the extended attribute `name` from a tar (the
/// others are set afterwards).
pub(crate) fn kept_by_mke2fs(name: &str) -> bool {
    name == KEPT_BY_MKE2FS
}

/// Copies the tar `reader` to `stdin` while reading its entries; the
/// attributes mke2fs will drop, by path.
fn feed(
    reader: impl Read,
    stdin: std::process::ChildStdin,
) -> Result<(TarImageReport, XattrsByPath)> {
    let tee = Tee {
        reader,
        writer: std::io::BufWriter::with_capacity(1 << 20, stdin),
        bytes: 0,
    };
    let stream = Path::new("<tar stream>");
    let mut archive = tar::Archive::new(tee);
    let mut xattrs = XattrsByPath::new();
    let mut entries = 0;
    for entry in archive.entries().map_err(io("reading", stream))? {
        let mut entry = entry.map_err(io("reading", stream))?;
        entries += 1;
        let name = entry.path_bytes().into_owned();
        let path = image_path(&name);
        let is_dir = entry.header().entry_type().is_dir();
        let mut found = Vec::new();
        if let Some(extensions) = entry.pax_extensions().map_err(io("reading", stream))? {
            for extension in extensions {
                let extension = extension.map_err(io("reading", stream))?;
                if let Some(xattr) = pax_xattr(extension.key_bytes(), extension.value_bytes())
                    && !kept_by_mke2fs(&xattr.0)
                {
                    found.push(xattr);
                }
            }
        }
        if !found.is_empty() && std::str::from_utf8(&name).is_err() {
            return Err(Error::InvalidOption {
                reason: format!(
                    "extended attributes of {path}, a name that is not UTF-8, cannot be passed \
                     to debugfs"
                ),
            });
        }
        match xattrs.get_mut(&path) {
            // A directory met again keeps what it had (mke2fs adds).
            Some(had) if is_dir => had.extend(found),
            _ if found.is_empty() => {
                xattrs.remove(&path);
            }
            _ => {
                xattrs.insert(path, found);
            }
        }
    }
    let mut tee = archive.into_inner();
    // What follows the end-of-archive blocks goes to mke2fs as well.
    std::io::copy(&mut tee, &mut std::io::sink()).map_err(io("reading", stream))?;
    tee.writer
        .into_inner()
        .map_err(|e| io("writing to", Path::new("mke2fs"))(e.into_error()))?;
    let report = TarImageReport {
        entries,
        bytes: tee.bytes,
        xattrs_set: 0,
    };
    Ok((report, xattrs))
}

/// A reader that writes what it reads to `writer`.
struct Tee<R, W> {
    reader: R,
    writer: W,
    bytes: u64,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.reader.read(buf)?;
        self.writer.write_all(&buf[..n])?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// The image path of a tar name: `/`-rooted, without `.` components or a
/// trailing slash (`./etc/` is `/etc`).
pub(crate) fn image_path(name: &[u8]) -> String {
    let path = Path::new(std::ffi::OsStr::from_bytes(name));
    let mut out = String::new();
    for component in path.components() {
        if let Component::Normal(part) = component {
            out.push('/');
            out.push_str(&part.to_string_lossy());
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// `(name, value)` of a pax record naming an extended attribute:
/// `SCHILY.xattr.NAME` (raw value) or `LIBARCHIVE.xattr.NAME` (name
/// percent-encoded, value base64), as libarchive reads them.
pub(crate) fn pax_xattr(key: &[u8], value: &[u8]) -> Option<(String, Vec<u8>)> {
    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
        return Some((String::from_utf8_lossy(name).into_owned(), value.to_vec()));
    }
    let name = key.strip_prefix(b"LIBARCHIVE.xattr.")?;
    let name = percent_decode(name)?;
    Some((
        String::from_utf8_lossy(&name).into_owned(),
        base64_decode(value)?,
    ))
}

fn percent_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.iter();
    while let Some(&byte) = bytes.next() {
        if byte == b'%' {
            let high = char::from(*bytes.next()?).to_digit(16)?;
            let low = char::from(*bytes.next()?).to_digit(16)?;
            out.push(u8::try_from(high * 16 + low).ok()?);
        } else {
            out.push(byte);
        }
    }
    Some(out)
}

/// Standard base64, padding optional (libarchive writes none).
fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        let sextet = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        Some(u32::from(sextet))
    };
    let text: Vec<u8> = text.iter().copied().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// The longest `debugfs` command line written inline (its command files
/// are read in lines of at most 8,191 bytes).
const MAX_LINE: usize = 4000;

/// Sets `xattrs` in `image` with one `debugfs -w -f` pass of `ea_set`
/// lines; how many. Names and paths are double-quoted (a `"` doubled, as
/// debugfs's parser reads it); values are written `\xHH`-escaped inline,
/// or in a file under `work` for `ea_set -f` when the line would be long.
/// A name or path with a newline, or a value over 4 KiB (more than one
/// block, which ext4 without `ea_inode` cannot hold), is refused.
pub(crate) fn set_xattrs(
    debugfs: &Path,
    image: &Path,
    work: &Path,
    xattrs: &XattrsByPath,
) -> Result<usize> {
    let mut script = String::new();
    let mut count = 0;
    for (path, list) in xattrs {
        for (name, value) in list {
            let refuse = |reason: &str| Error::InvalidOption {
                reason: format!("extended attribute {name:?} of {path}: {reason}"),
            };
            if path.contains('\n') || name.contains('\n') || name.is_empty() {
                return Err(refuse("cannot be passed to debugfs"));
            }
            if value.len() > 4096 {
                return Err(refuse("its value is over 4096 bytes, more than ext4 holds"));
            }
            let (target, name) = (debugfs_quote(path), debugfs_quote(name));
            let inline = value.len() * 4 + target.len() + name.len() + 16 <= MAX_LINE;
            if inline {
                let mut encoded = String::with_capacity(value.len() * 4);
                for byte in value {
                    if byte.is_ascii_alphanumeric() {
                        encoded.push(char::from(*byte));
                    } else {
                        let _ = write!(encoded, "\\x{byte:02x}");
                    }
                }
                let _ = writeln!(script, "ea_set {target} {name} \"{encoded}\"");
            } else {
                let file = work.join(format!("xattr-{count}"));
                std::fs::write(&file, value).map_err(io("writing", &file))?;
                let file = debugfs_quote(&file.to_string_lossy());
                let _ = writeln!(script, "ea_set -f {file} {target} {name}");
            }
            count += 1;
        }
    }
    let script_file = work.join("xattrs.debugfs");
    std::fs::write(&script_file, script).map_err(io("writing", &script_file))?;
    let output = run(
        Command::new(debugfs)
            .env("E2FSPROGS_FAKE_TIME", FAKE_TIME)
            .arg("-w")
            .arg("-f")
            .arg(&script_file)
            .arg(image),
        "debugfs",
    )?;
    // debugfs echoes each command as `debugfs: …` and reports failures on
    // other lines, with a zero exit status.
    if let Some(line) = output
        .lines()
        .find(|l| !l.starts_with("debugfs") && !l.trim().is_empty())
    {
        return Err(Error::ToolFailed {
            tool: "debugfs",
            status: "0".to_owned(),
            stderr: format!("{} (setting extended attributes)", line.trim()),
        });
    }
    Ok(count)
}

/// `text` as one double-quoted debugfs argument (`"` written `""`).
fn debugfs_quote(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_names_become_image_paths() {
        assert_eq!(image_path(b"./etc/passwd"), "/etc/passwd");
        assert_eq!(image_path(b"etc/"), "/etc");
        assert_eq!(image_path(b"./"), "/");
        assert_eq!(image_path(b"/usr//bin/a b"), "/usr/bin/a b");
    }

    #[test]
    fn both_pax_forms_of_an_xattr_are_read() {
        assert_eq!(
            pax_xattr(b"SCHILY.xattr.user.a", b"\x00\xffv"),
            Some(("user.a".to_owned(), b"\x00\xffv".to_vec()))
        );
        // bsdtar: name percent-encoded, value base64 without padding.
        assert_eq!(
            pax_xattr(b"LIBARCHIVE.xattr.user.a%20b", b"aGVsbG8"),
            Some(("user.a b".to_owned(), b"hello".to_vec()))
        );
        assert_eq!(pax_xattr(b"path", b"x"), None);
        assert_eq!(base64_decode(b"AAEC/w=="), Some(vec![0, 1, 2, 255]));
    }

    #[test]
    fn debugfs_arguments_double_their_quotes() {
        assert_eq!(debugfs_quote("/a \"b\""), "\"/a \"\"b\"\"\"");
    }
}
