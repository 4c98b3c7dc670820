//! What the host's `mke2fs` can do, learned once and kept.
//!
//! e2fsprogs 1.47.1 and later read a tar with `mke2fs -d FILE.tar` or
//! `-d -` (stdin), through libarchive loaded with `dlopen`
//! (`libarchive.so.13`); older releases, or a host without libarchive,
//! only read a directory. [`detect_mke2fs`] tells which, and the version
//! text (`mke2fs -V`) that is part of every ext4 cache key.
//!
//! Learning it costs two children: `mke2fs -V` (about 5 ms) and, when the
//! version is new enough, a real tar read (a one-entry tar on stdin into a
//! 256 KiB image, 40 to 85 ms on a 2-core VM): the only probe that also
//! shows libarchive loads. A cache hit must not pay that, so the answer is
//! kept twice, both keyed by the `mke2fs` binary's device, inode, size,
//! mtime and ctime (an upgrade replaces the file, so the key changes):
//! in this process (a memo), and in `.cachectl/ext4/.mke2fs-probe` under
//! the store (hidden: `gc` leaves it, and nothing counts it), written
//! atomically when the store is writable. A hit then costs one `stat` and
//! one small read. Not in the key: libarchive itself; removing it after a
//! probe makes tar builds fail with mke2fs's own message until the binary
//! changes or the record is deleted.

use crate::cache_files::IMAGES;
use crate::error::{Error, Result, io};
use crate::ext4::FAKE_TIME;
use crate::options::BuildOptions;
use crate::safe;
use crate::tools::{find_tool, run};
use ocistore::Store;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// The first e2fsprogs release whose `mke2fs -d` reads a tar.
pub const TAR_INPUT_SINCE: (u32, u32, u32) = (1, 47, 1);

/// The name of the kept answer in the store's ext4 directory.
const RECORD: &str = ".mke2fs-probe";
/// The first line of a record this version writes and reads.
const RECORD_HEADER: &str = "mke2fs-probe 1";

/// What `mke2fs -d` can read on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Ext4Input {
    /// A tar stream on stdin (`mke2fs -d -`): e2fsprogs >= 1.47.1 with
    /// libarchive.
    TarStream,
    /// A directory only (`mke2fs -d DIR`).
    Tree,
    /// No `mke2fs`: cachectl's own ext4 writer takes the merged entry
    /// stream (the default of flattened builds).
    Writer,
}

impl Ext4Input {
    /// `tar-stream`, `tree` or `writer`, as `--json` and `-v` say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Ext4Input::TarStream => "tar-stream",
            Ext4Input::Tree => "tree",
            Ext4Input::Writer => "writer",
        }
    }
}

/// What [`detect_mke2fs`] learned about the host's `mke2fs`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Mke2fsInfo {
    /// The program.
    pub path: PathBuf,
    /// What `mke2fs -V` prints (part of the ext4 cache keys).
    pub version: String,
    /// The release, `(1, 47, 2)`, when the version text names one.
    pub release: Option<(u32, u32, u32)>,
    /// What its `-d` reads.
    pub input: Ext4Input,
    /// Whether this call ran `mke2fs` to learn it (no memo or record
    /// matched).
    pub probed: bool,
}

/// The identity of an `mke2fs` binary: path, device, inode, size, mtime
/// and ctime (seconds and nanoseconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BinaryKey(pub(crate) String);

impl BinaryKey {
    /// The identity of the program at `path`.
    pub(crate) fn of(path: &Path) -> Result<BinaryKey> {
        let meta = std::fs::metadata(path).map_err(io("reading", path))?;
        Ok(BinaryKey(format!(
            "{} {} {} {} {}.{} {}.{}",
            path.display(),
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec()
        )))
    }
}

/// The answer of this process, for the binary it was learned from.
static MEMO: Mutex<Option<(BinaryKey, Mke2fsInfo)>> = Mutex::new(None);

/// What the `mke2fs` that builds for `store` with `options` can read,
/// and its version text: from this process's memo, else from the record
/// under the store, else learned by running it (see the module docs).
/// Blocking.
pub fn detect_mke2fs(store: &Store, options: &BuildOptions) -> Result<Mke2fsInfo> {
    let path = find_tool("mke2fs", options)?;
    let key = BinaryKey::of(&path)?;
    let memo = MEMO.lock().ok().and_then(|memo| memo.clone());
    if let Some((known, info)) = memo
        && known == key
    {
        return Ok(Mke2fsInfo {
            probed: false,
            ..info
        });
    }
    let info = match read_record(store, &key) {
        Some((version, input)) => Mke2fsInfo {
            release: parse_release(&version),
            path,
            version,
            input,
            probed: false,
        },
        None => {
            let (info, conclusive) = probe(&path)?;
            // A store this process cannot write: learned again next time.
            // A tar probe that could not be set up (no writable temporary
            // directory) says `Tree` for this process only.
            if conclusive {
                let _ = write_record(store, &key, &info);
            }
            info
        }
    };
    if let Ok(mut memo) = MEMO.lock() {
        *memo = Some((key, info.clone()));
    }
    Ok(info)
}

/// `(major, minor, patch)` from `mke2fs -V` output (`mke2fs 1.47.0
/// (5-Feb-2023)`; `1.48-WIP` reads as 1.48.0).
pub(crate) fn parse_release(text: &str) -> Option<(u32, u32, u32)> {
    let word = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("mke2fs "))?
        .split_whitespace()
        .next()?;
    let mut parts = word
        .split(|c: char| !c.is_ascii_digit())
        .map(|part| part.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next()??;
    Some((major, minor, parts.next().flatten().unwrap_or(0)))
}

/// Runs `mke2fs -V` and, when new enough, a one-entry tar read; whether
/// the answer is conclusive (the tar probe could be set up).
fn probe(mke2fs: &Path) -> Result<(Mke2fsInfo, bool)> {
    let version = run(Command::new(mke2fs).arg("-V"), "mke2fs")?;
    let release = parse_release(&version);
    let (input, conclusive) = if release.is_some_and(|r| r >= TAR_INPUT_SINCE) {
        match reads_a_tar(mke2fs) {
            Ok(true) => (Ext4Input::TarStream, true),
            Ok(false) => (Ext4Input::Tree, true),
            Err(_) => (Ext4Input::Tree, false),
        }
    } else {
        (Ext4Input::Tree, true)
    };
    let info = Mke2fsInfo {
        path: mke2fs.to_path_buf(),
        version,
        release,
        input,
        probed: true,
    };
    Ok((info, conclusive))
}

/// The `mke2fs.conf` of the tar probe: the smallest file system that
/// holds one entry, with no warning about missing types (a stanza counts
/// only with a relation in it).
const PROBE_CONF: &str = "[defaults]
\tblocksize = 1024
\tinode_size = 256
[fs_types]
\text2 = {
\t\tinode_size = 256
\t}
\tsmall = {
\t\tinode_size = 256
\t}
\tfloppy = {
\t\tinode_size = 256
\t}
";

/// Whether `mke2fs -d -` makes an image from a one-entry tar on stdin.
fn reads_a_tar(mke2fs: &Path) -> Result<bool> {
    let dir = tempfile::tempdir().map_err(io("creating", &std::env::temp_dir()))?;
    let conf = dir.path().join("mke2fs.conf");
    std::fs::write(&conf, PROBE_CONF).map_err(io("writing", &conf))?;
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(0);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, "probe", std::io::empty())
        .and_then(|()| tar.finish())
        .map_err(io("writing a probe tar in", dir.path()))?;
    let tar = tar
        .into_inner()
        .map_err(io("writing a probe tar in", dir.path()))?;
    let image = dir.path().join("probe.img");
    let mut command = Command::new(mke2fs);
    command
        .env("MKE2FS_CONFIG", &conf)
        .args(["-q", "-F", "-t", "ext2", "-O", "^resize_inode", "-N", "16"])
        .args(["-d", "-"])
        .arg(&image)
        .arg("256k")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    crate::tools::die_with_parent(&mut command);
    let mut child = command.spawn().map_err(|e| Error::ToolFailed {
        tool: "mke2fs",
        status: "not started".to_owned(),
        stderr: e.to_string(),
    })?;
    // An old mke2fs exits without reading: a broken pipe says no.
    let fed = child
        .stdin
        .take()
        .is_some_and(|mut stdin| stdin.write_all(&tar).is_ok());
    let status = child.wait().map_err(io("waiting for", mke2fs))?;
    Ok(fed && status.success())
}

/// The kept answer for `key`, if the store has one.
fn read_record(store: &Store, key: &BinaryKey) -> Option<(String, Ext4Input)> {
    let dir = safe::existing_dir(store, &store.root().join(".cachectl").join(IMAGES)).ok()??;
    let bytes = dir.read(RECORD).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    parse_record(&text, key)
}

fn parse_record(text: &str, key: &BinaryKey) -> Option<(String, Ext4Input)> {
    let mut lines = text.splitn(4, '\n');
    if lines.next()? != RECORD_HEADER || lines.next()?.strip_prefix("binary ")? != key.0 {
        return None;
    }
    let input = match lines.next()?.strip_prefix("input ")? {
        "tar-stream" => Ext4Input::TarStream,
        "tree" => Ext4Input::Tree,
        _ => return None,
    };
    Some((lines.next()?.to_owned(), input))
}

fn write_record(store: &Store, key: &BinaryKey, info: &Mke2fsInfo) -> Result<()> {
    let dir = store.derived_dir(IMAGES).map_err(safe::from_store)?;
    let text = format!(
        "{RECORD_HEADER}\nbinary {}\ninput {}\n{}",
        key.0,
        info.input.as_str(),
        info.version
    );
    dir.write_atomic(RECORD, text.as_bytes())
        .map_err(safe::from_store)
}

/// `mke2fs` with everything that makes its image reproducible: the private
/// `mke2fs.conf` at `conf`, the fixed time, block and inode sizes, no
/// reserved blocks, `label`, `uuid` as UUID and hash seed, root owned by
/// 0:0, `inodes` inodes. The caller adds `-d SOURCE`, the file and the size.
pub(crate) fn mke2fs_command(
    mke2fs: &Path,
    conf: &Path,
    label: &str,
    uuid: &str,
    inodes: u64,
) -> Command {
    let mut command = Command::new(mke2fs);
    command
        .env("MKE2FS_CONFIG", conf)
        .env("E2FSPROGS_FAKE_TIME", FAKE_TIME)
        .args([
            "-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256", "-m", "0",
        ])
        .arg("-L")
        .arg(label)
        .arg("-U")
        .arg(uuid)
        .arg("-E")
        .arg(format!("hash_seed={uuid},root_owner=0:0"))
        .arg("-N")
        .arg(inodes.to_string());
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_are_read_from_the_version_text() {
        let text = "mke2fs 1.47.0 (5-Feb-2023)\n\tUsing EXT2FS Library version 1.47.0\n";
        assert_eq!(parse_release(text), Some((1, 47, 0)));
        assert_eq!(
            parse_release("mke2fs 1.47.2 (1-Jan-2025)"),
            Some((1, 47, 2))
        );
        assert_eq!(parse_release("mke2fs 1.48-WIP (x)"), Some((1, 48, 0)));
        assert_eq!(parse_release("mkfs 2"), None);
        assert!(parse_release(text) < Some(TAR_INPUT_SINCE));
    }

    #[test]
    fn a_record_serves_only_its_binary() {
        let key = BinaryKey("/usr/sbin/mke2fs 1 2 3 4.5 6.7".to_owned());
        let version = "mke2fs 1.47.2 (1-Jan-2025)\n\tUsing EXT2FS Library version 1.47.2\n";
        let text = format!(
            "{RECORD_HEADER}\nbinary {}\ninput tar-stream\n{version}",
            key.0
        );
        assert_eq!(
            parse_record(&text, &key),
            Some((version.to_owned(), Ext4Input::TarStream))
        );
        let other = BinaryKey("/usr/sbin/mke2fs 1 2 3 4.5 6.8".to_owned());
        assert_eq!(parse_record(&text, &other), None);
        assert_eq!(parse_record("mke2fs-probe 0\n", &key), None);
    }
}
