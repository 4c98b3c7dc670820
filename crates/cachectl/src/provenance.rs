//! `build -o FILE --provenance`: `FILE.json` beside the image, saying what
//! it was built from (reference, manifest, platform, layers) and with
//! (file system, options, programs, cachectl), and its size and SHA-256.
//!
//! The file has no time in it: two builds of one image with the same
//! options and programs write the same bytes. Its keys come in a fixed
//! order (the order of the structs below; docs/cli.md lists them).
//!
//! It is written like `-o FILE` itself: to a temp file beside it
//! (`.FILE.json.tmp-p<pid>-<n>`, locked while written), fsynced, renamed
//! over `FILE.json`, and the directory fsynced. A write that fails removes
//! its temp file and the old `FILE.json` (which describes an image that is
//! no longer there); a killed build's temp file is removed by the next
//! build to the same FILE.

use crate::error::CliError;
use ociref::Reference;
use serde::Serialize;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What `FILE.json` holds.
#[derive(Debug, Serialize)]
struct Provenance<'a> {
    reference: ReferenceNames<'a>,
    manifest_digest: String,
    platform: PlatformOf<'a>,
    layers: Vec<String>,
    fs: &'static str,
    options: OptionsUsed<'a>,
    tools: &'a BTreeMap<String, String>,
    image: ImageFile,
    cachectl: &'static str,
}

/// The reference as given on the command line and as cachectl read it.
#[derive(Debug, Serialize)]
struct ReferenceNames<'a> {
    given: &'a str,
    normalized: String,
}

/// The platform of the image built, from its config.
#[derive(Debug, Serialize)]
struct PlatformOf<'a> {
    os: Option<&'a str>,
    architecture: Option<&'a str>,
    variant: Option<&'a str>,
}

/// The build options that shape the image.
#[derive(Debug, Serialize)]
struct OptionsUsed<'a> {
    size: Option<u64>,
    headroom: u64,
    label: &'a str,
    init: Option<InitFile<'a>>,
    input: Option<&'static str>,
    compressor: Option<&'a str>,
}

/// The file `--init` placed, by where and what.
#[derive(Debug, Serialize)]
struct InitFile<'a> {
    path: &'a str,
    sha256: String,
}

/// The image file itself.
#[derive(Debug, Serialize)]
struct ImageFile {
    path: String,
    size: u64,
    sha256: String,
}

/// `FILE.json`, the provenance file of the image `FILE`.
pub(crate) fn path_of(image: &Path) -> PathBuf {
    let mut path = OsString::from(image.as_os_str());
    path.push(".json");
    PathBuf::from(path)
}

/// Writes the provenance of `built`, the image at `image` (`-o FILE`),
/// made with `options` from `reference` (`given` on the command line), to
/// `FILE.json` (see the module docs); returns its path.
pub(crate) fn write(
    image: &Path,
    given: &str,
    reference: &Reference,
    built: &rootfs::BuiltImage,
    options: &rootfs::BuildOptions,
) -> Result<PathBuf, CliError> {
    let target = path_of(image);
    replace_or_remove(&target, describe(image, given, reference, built, options))?;
    Ok(target)
}

/// Writes `described` to `target` atomically; when it could not be
/// described or written, removes the old `target`, which describes an
/// image that was just replaced.
fn replace_or_remove(target: &Path, described: Result<Vec<u8>, CliError>) -> Result<(), CliError> {
    let written = described.and_then(|bytes| write_atomically(target, &bytes));
    if written.is_err() {
        let _ = std::fs::remove_file(target);
    }
    written
}

/// The provenance of `built`, hashing the image and the init file.
fn describe(
    image: &Path,
    given: &str,
    reference: &Reference,
    built: &rootfs::BuiltImage,
    options: &rootfs::BuildOptions,
) -> Result<Vec<u8>, CliError> {
    let (image_sha256, image_size) = sha256_of_file(image)?;
    let init = match &options.init {
        Some((file, path)) => Some(InitFile {
            path,
            sha256: sha256_of_file(file)?.0,
        }),
        None => None,
    };
    let fs = options.fs;
    let provenance = Provenance {
        reference: ReferenceNames {
            given,
            normalized: reference.to_string(),
        },
        manifest_digest: built.manifest_digest.to_string(),
        platform: PlatformOf {
            os: built.config.os.as_deref(),
            architecture: built.config.architecture.as_deref(),
            variant: built.config.variant.as_deref(),
        },
        layers: built.layers.iter().map(ToString::to_string).collect(),
        fs: fs.as_str(),
        options: OptionsUsed {
            size: options.size,
            headroom: options.headroom,
            label: &options.label,
            init,
            input: (fs == rootfs::FsType::Ext4).then(|| built.input.as_str()),
            compressor: options.compressor.as_deref(),
        },
        tools: &built.tools,
        image: ImageFile {
            path: image
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
            size: image_size,
            sha256: image_sha256,
        },
        cachectl: env!("CARGO_PKG_VERSION"),
    };
    let mut bytes = serde_json::to_vec_pretty(&provenance).map_err(|err| CliError::Io {
        what: "describing the image".into(),
        source: err.into(),
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The SHA-256 (hex) and size of the file at `path`, read in pieces (an
/// image may be larger than memory).
fn sha256_of_file(path: &Path) -> Result<(String, u64), CliError> {
    let failed = |source| CliError::Io {
        what: format!("reading {} for its SHA-256", path.display()),
        source,
    };
    let mut file = File::open(path).map_err(failed)?;
    let mut hasher = ociref::Hasher::new(ociref::Algorithm::Sha256);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buffer[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(failed(err)),
        }
    }
    let size = hasher.bytes_seen();
    Ok((hasher.finish().hex().to_owned(), size))
}

/// Writes `bytes` to `target` through a temp file beside it (see the
/// module docs).
fn write_atomically(target: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let failed = |what: &str| {
        let what = format!("{what} {}", target.display());
        move |source| CliError::Io { what, source }
    };
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = target
        .file_name()
        .expect("because FILE.json ends in a file name");
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".tmp-");
    remove_stale_temps(dir, &prefix);
    let mut temp = Temp::create(dir, &prefix).map_err(failed("creating a temp file for"))?;
    temp.file
        .write_all(bytes)
        .and_then(|()| temp.file.sync_all())
        .map_err(failed("writing"))?;
    std::fs::rename(&temp.path, target).map_err(failed("renaming into place"))?;
    temp.persisted = true;
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(failed("syncing the directory of"))
}

/// Removes the temp files (`prefix…`) in `dir` that killed builds left:
/// locked by no one, their process gone.
fn remove_stale_temps(dir: &Path, prefix: &std::ffi::OsStr) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name
            .as_encoded_bytes()
            .starts_with(prefix.as_encoded_bytes())
            && ocistore::is_stale_leftover(&entry.path())
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A temp file being written, locked while it lives and removed when
/// dropped unless renamed into place.
struct Temp {
    path: PathBuf,
    file: File,
    persisted: bool,
}

impl Temp {
    /// A new `<dir>/<prefix>p<pid>-<n>`, created exclusively and locked.
    fn create(dir: &Path, prefix: &std::ffi::OsStr) -> std::io::Result<Temp> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let mut name = prefix.to_owned();
            name.push(format!(
                "p{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let path = dir.join(name);
            match File::options().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    let temp = Temp {
                        path,
                        file,
                        persisted: false,
                    };
                    temp.file.try_lock().map_err(|err| match err {
                        std::fs::TryLockError::Error(err) => err,
                        std::fs::TryLockError::WouldBlock => {
                            std::io::Error::from(std::io::ErrorKind::WouldBlock)
                        }
                    })?;
                    return Ok(temp);
                }
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(err),
            }
        }
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_hashed_in_pieces_as_sha256sum_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("image");
        // Over two pieces of the buffer.
        let bytes: Vec<u8> = (0..(3u32 << 19)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).expect("written");
        let (hex, size) = sha256_of_file(&path).expect("hashed");
        assert_eq!(size, bytes.len() as u64);
        assert_eq!(hex, ociref::Digest::sha256_of(&bytes).hex());
    }

    #[test]
    fn a_write_replaces_the_file_whole_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("vm.ext4.json");
        std::fs::write(&target, b"old").expect("written");
        // A temp file a killed build left (its process is gone: the PID is
        // above the kernel's maximum).
        let left = dir.path().join(".vm.ext4.json.tmp-p4194305-0");
        std::fs::write(&left, b"half").expect("written");
        write_atomically(&target, b"{}\n").expect("written");
        assert_eq!(std::fs::read(&target).expect("read"), b"{}\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("listed")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [OsString::from("vm.ext4.json")]);
        // A directory that cannot hold the temp file: no file left behind.
        let missing = dir.path().join("absent/vm.ext4.json");
        let err = write_atomically(&missing, b"{}").expect_err("no directory");
        assert!(err.to_string().contains("absent/vm.ext4.json"), "{err}");
    }

    #[test]
    fn a_provenance_that_fails_removes_the_old_one_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("vm.ext4.json");
        replace_or_remove(&target, Ok(b"{}\n".to_vec())).expect("written");
        assert_eq!(std::fs::read(&target).expect("read"), b"{}\n");
        // The image could not be hashed: the old file goes.
        let unreadable = sha256_of_file(&dir.path().join("absent.ext4")).map(|_| Vec::new());
        let err = replace_or_remove(&target, unreadable).expect_err("not described");
        assert!(err.to_string().contains("absent.ext4"), "{err}");
        assert!(!target.exists());
        // It could not be written (a directory has its name): no temp file
        // stays.
        std::fs::create_dir(&target).expect("made");
        replace_or_remove(&target, Ok(b"{}\n".to_vec())).expect_err("a directory is there");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("listed")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [OsString::from("vm.ext4.json")]);
    }
}
