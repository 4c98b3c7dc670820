//! Read-only images (squashfs, erofs) of a stored image, made from its
//! merged tar stream: no tree on the host, no root, no sizing.
//!
//! The merge's index pass reads the layers once (each decompressed into a
//! copy in the build's work directory, as the ext4 stream does); the emit
//! pass then writes the merged tar, each path once, parents first:
//! - **squashfs**: straight into `tar2sqfs` (squashfs-tools-ng) on a pipe,
//!   both running at once. `--no-skip` makes a record tar2sqfs cannot take
//!   an error instead of a silent skip; times, owners, modes, devices,
//!   hardlinks and extended attributes come from the tar; directories no
//!   entry declares get 0:0, 0755 and mtime 0, as the merge gives them.
//!   The same stream always gives the same bytes (tar2sqfs writes no clock
//!   time), as root or not. squashfs holds an mtime in 32 unsigned bits:
//!   times before 1970 become 1970, after 2106 become 2106.
//! - **erofs**: `mkfs.erofs --tar=f` (erofs-utils 1.8 or later) reading
//!   the merged tar on a pipe the same way, UUID from the manifest digest,
//!   build time 0 (`-T0 --mkfs-time`: file times stay the tar's); an older
//!   `mkfs.erofs` (before 1.7 it reads only directories, before 1.8 it
//!   cannot fix the build time alone) is refused with [`Error::ToolTooOld`].
//!   Every image is checked with `fsck.erofs --extract` (each file decoded,
//!   nothing written) before it is kept: mkfs.erofs releases have written
//!   corrupt images and exited 0.
//!
//! Images are kept like ext4 ones, in `.cachectl/<fs>/<key>.<fs>`, owned by
//! the manifest (so `gc`, `prune` and `du` treat every type alike); the key
//! holds the manifest, the init, the compressor, the label (erofs) and the
//! first line of the tool's version text.

use crate::cache_files::keep_image;
use crate::error::{Error, Result, check_keepable, io};
use crate::ext4::{BuiltImage, Kept, hex, init_key_line, uuid_from};
use crate::leftovers;
use crate::merge::{EntrySink, TarSink};
use crate::mke2fs::{BinaryKey, Ext4Input};
use crate::options::{BuildOptions, FsType};
use crate::safe;
use crate::scratch::{remove_stale_work, with_work_dir};
use crate::tools::{find_tool, run, run_fed};
use ocistore::{Store, StoredImage};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The first erofs-utils release whose `mkfs.erofs` reads a tar stream
/// (1.7) and fixes the build time without touching file times
/// (`--mkfs-time`, 1.8).
const EROFS_TAR_SINCE: (u32, u32) = (1, 8);

/// The program that makes an image of one type, as found on this host.
pub(crate) struct Maker {
    /// The type it makes.
    pub(crate) fs: FsType,
    tool: &'static str,
    path: PathBuf,
    /// The first line of its version text.
    version: String,
    /// The compressor's arguments.
    compression: Vec<String>,
    /// `fsck.erofs`, which checks every erofs image before it is kept.
    check: Option<PathBuf>,
}

impl Maker {
    /// The program for `options.fs` (squashfs or erofs), its version, and
    /// the compressor arguments `options.compressor` asks for.
    pub(crate) fn find(store: &Store, options: &BuildOptions) -> Result<Maker> {
        let fs = options.fs;
        let tool = match fs {
            FsType::Erofs => "mkfs.erofs",
            _ => "tar2sqfs",
        };
        let path = find_tool(tool, options)?;
        let version = known_version(store, fs, tool, &path)?;
        let compressor = options.compressor.as_deref();
        let compression = match fs {
            FsType::Erofs => {
                let release = erofs_release(&version);
                if release.is_none_or(|r| r < EROFS_TAR_SINCE) {
                    return Err(Error::ToolTooOld {
                        tool,
                        path,
                        found: version,
                        needed: "erofs-utils 1.8 or later (mkfs.erofs --tar and --mkfs-time)",
                    });
                }
                erofs_compression(compressor)?
            }
            _ => squashfs_compression(compressor)?,
        };
        // erofs-utils releases have written corrupt images with exit 0:
        // each one is checked (the `fsck.erofs` beside `mkfs.erofs`, else
        // the one found as any tool is).
        let check = match fs {
            FsType::Erofs => match path.with_file_name("fsck.erofs") {
                sibling if sibling.is_file() => Some(sibling),
                _ => Some(find_tool("fsck.erofs", options)?),
            },
            _ => None,
        };
        Ok(Maker {
            fs,
            tool,
            path,
            version,
            compression,
            check,
        })
    }
}

/// The first line of `tool --version` (at `path`), learned once per binary
/// and kept (see [`ToolVersions`]): a cache hit starts no child.
fn known_version(store: &Store, fs: FsType, tool: &'static str, path: &Path) -> Result<String> {
    let key = BinaryKey::of(path)?;
    let memo = VERSIONS
        .lock()
        .ok()
        .and_then(|memo| memo.get(&key.0).cloned());
    if let Some(version) = memo {
        return Ok(version);
    }
    let record = format!(".{tool}-version");
    let kept = safe::existing_dir(store, &store.root().join(".cachectl").join(fs.as_str()))
        .ok()
        .flatten()
        .and_then(|dir| dir.read(&record).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| {
            let (binary, version) = text.strip_prefix("binary ")?.split_once('\n')?;
            (binary == key.0).then(|| version.trim_end().to_owned())
        });
    let version = match kept {
        Some(version) => version,
        None => {
            let version = match run(Command::new(path).arg("--version"), tool) {
                Ok(text) => text.lines().next().unwrap_or_default().trim().to_owned(),
                // mkfs.erofs learned `--version` in 1.6, reading tars in 1.7.
                Err(Error::ToolFailed { .. }) if fs == FsType::Erofs => {
                    "a release without --version (before 1.6)".to_owned()
                }
                Err(err) => return Err(err),
            };
            // A store this process cannot write: learned again next time.
            if let Ok(dir) = store.derived_dir(fs.as_str()) {
                let text = format!("binary {}\n{version}\n", key.0);
                let _ = dir.write_atomic(&record, text.as_bytes());
            }
            version
        }
    };
    if let Ok(mut memo) = VERSIONS.lock() {
        memo.insert(key.0, version.clone());
    }
    Ok(version)
}

/// The versions of the read-only tools this process learned, by binary
/// identity (path, device, inode, size, times: an upgrade changes it).
/// They are also kept in the store, in `.cachectl/<fs>/.<tool>-version`
/// (hidden: `gc` leaves it), as the `mke2fs` probe is.
type ToolVersions = Mutex<BTreeMap<String, String>>;

static VERSIONS: ToolVersions = Mutex::new(BTreeMap::new());

/// `(major, minor)` from `mkfs.erofs --version` (`mkfs.erofs 1.5`,
/// `mkfs.erofs (erofs-utils) 1.8.2`).
fn erofs_release(version: &str) -> Option<(u32, u32)> {
    let word = version
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    let mut parts = word.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// `NAME[,LEVEL]` split, the level checked to be a number.
fn name_and_level(compressor: &str) -> Result<(&str, Option<u32>)> {
    let (name, level) = match compressor.split_once(',') {
        Some((name, level)) => (name, Some(level)),
        None => (compressor, None),
    };
    let level = match level.map(str::parse::<u32>) {
        Some(Ok(level)) => Some(level),
        Some(Err(_)) => {
            return Err(Error::InvalidOption {
                reason: format!("compressor {compressor:?}: the level after ',' is not a number"),
            });
        }
        None => None,
    };
    Ok((name, level))
}

/// `tar2sqfs` arguments for `compressor` (lz4 when `None`: fast to build
/// and to read).
fn squashfs_compression(compressor: Option<&str>) -> Result<Vec<String>> {
    let compressor = compressor.unwrap_or("lz4");
    let (name, level) = name_and_level(compressor)?;
    let range = match name {
        "gzip" => Some(1..=9),
        "zstd" => Some(1..=22),
        "lz4" | "lz4hc" | "xz" | "lzo" | "lzma" => None,
        _ => {
            return Err(Error::InvalidOption {
                reason: format!(
                    "compressor {name:?} is not one squashfs takes: lz4, lz4hc, zstd[,1-22], \
                     gzip[,1-9], xz, lzo or lzma"
                ),
            });
        }
    };
    let mut args = match name {
        "lz4hc" => vec![
            "-c".to_owned(),
            "lz4".to_owned(),
            "-X".to_owned(),
            "hc".to_owned(),
        ],
        _ => vec!["-c".to_owned(), name.to_owned()],
    };
    match (level, range) {
        (Some(level), Some(range)) if range.contains(&level) => {
            args.extend(["-X".to_owned(), format!("level={level}")]);
        }
        (Some(level), Some(range)) => {
            return Err(Error::InvalidOption {
                reason: format!(
                    "compressor {name} level {level} is outside {}-{}",
                    range.start(),
                    range.end()
                ),
            });
        }
        (Some(_), None) => {
            return Err(Error::InvalidOption {
                reason: format!("compressor {name} takes no level in squashfs"),
            });
        }
        (None, _) => {}
    }
    Ok(args)
}

/// `mkfs.erofs` arguments for `compressor` (lz4 when `None`; `none`
/// stores files uncompressed).
fn erofs_compression(compressor: Option<&str>) -> Result<Vec<String>> {
    let compressor = compressor.unwrap_or("lz4");
    let (name, _) = name_and_level(compressor)?;
    match name {
        "none" => Ok(Vec::new()),
        "lz4" | "lz4hc" | "lzma" | "deflate" | "libdeflate" | "zstd" => {
            Ok(vec![format!("-z{compressor}")])
        }
        _ => Err(Error::InvalidOption {
            reason: format!(
                "compressor {name:?} is not one erofs takes: lz4, lz4hc[,LEVEL], lzma[,LEVEL], \
                 deflate[,LEVEL], zstd[,LEVEL] or none"
            ),
        }),
    }
}

/// Builds (or finds in the cache) the squashfs or erofs image of a stored
/// image (see the module docs); [`crate::build`] with
/// [`BuildOptions::fs`] other than ext4. Blocking.
pub(crate) fn build_readonly(stored: &StoredImage, options: &BuildOptions) -> Result<BuiltImage> {
    let (store, image) = (stored.store(), stored.details());
    let maker = Maker::find(store, options)?;
    let manifest_digest = image.manifest.digest.clone();
    let key = cache_key(&maker, &manifest_digest, options)?;
    let kind = maker.fs.as_str();
    let cache_dir = store.root().join(".cachectl").join(kind);
    let cached_path = cache_dir.join(format!("{key}.{kind}"));
    let cached = safe::cached_file(store, &cached_path)?;
    if !cached {
        // As `build` does: only a build sweeps what killed ones left.
        let _ = remove_stale_work(store);
        check_keepable(store, &cache_dir, &manifest_digest)?;
        let cache = store.derived_dir(kind).map_err(safe::from_store)?;
        let sizes = image.layers.iter().map(|l| l.descriptor.size);
        with_work_dir(store, options.memory_scratch, "build-", sizes, |work| {
            let partial = leftovers::partial_image(&cache, maker.fs)?;
            make(stored, options, &maker, work.path(), partial.path())?;
            keep_image(store, &cache, partial, &cached_path, &manifest_digest)
        })?;
    }
    let kept = Kept {
        cached_path,
        cached,
        input: Ext4Input::TarStream,
        fs: maker.fs,
        tool: (maker.tool, maker.version),
        output_made: false,
    };
    kept.delivered(store, image, options)
}

/// Indexes the image (its layers copied into `work`), then makes the image
/// at `partial` from the merged stream.
fn make(
    stored: &StoredImage,
    options: &BuildOptions,
    maker: &Maker,
    work: &Path,
    partial: &Path,
) -> Result<()> {
    let (store, image) = (stored.store(), stored.details());
    let merge = crate::ext4_stream::index_for_build(store, image, options, work, None)?;
    let made = Made {
        partial,
        seed: &image.manifest.digest,
        label: &options.label,
    };
    maker.make(&made, |sink| merge.emit(sink).map(drop))
}

/// Where an image is made, and what of it the stream does not say.
pub(crate) struct Made<'a> {
    /// The partial image file.
    pub(crate) partial: &'a Path,
    /// The digest its UUID comes from (erofs).
    pub(crate) seed: &'a ociref::Digest,
    /// Its label (erofs).
    pub(crate) label: &'a str,
}

impl Maker {
    /// Makes the image `made.partial` from the entries `emit` gives a tar
    /// sink, the tool reading them on a pipe as they come.
    pub(crate) fn make(
        &self,
        made: &Made<'_>,
        emit: impl FnOnce(&mut dyn EntrySink) -> Result<()>,
    ) -> Result<()> {
        let mut command = Command::new(&self.path);
        if self.fs == FsType::Erofs {
            // The build time fixed, every file's own mtime kept (-T alone
            // would set them all; SOURCE_DATE_EPOCH would clamp them).
            command
                .args(["--quiet", "--tar=f", "-T0", "--mkfs-time"])
                .args(&self.compression)
                .arg(format!("-U{}", uuid_from(made.seed)))
                .arg(format!("-L{}", made.label))
                .arg(made.partial);
        } else {
            command
                .args(["--quiet", "--force", "--no-skip"])
                .args(&self.compression)
                .args(["--defaults", "uid=0,gid=0,mode=0755,mtime=0"])
                .arg(made.partial);
        }
        run_fed(&mut command, self.tool, |stdin| {
            emit_tar(stdin, Path::new(self.tool), emit)
        })?;
        if let Some(fsck) = &self.check {
            // Every file decoded, nothing written (about 0.15 s for a
            // 130 MB image).
            run(
                Command::new(fsck).arg("--extract").arg(made.partial),
                "fsck.erofs",
            )?;
        }
        Ok(())
    }

    /// What the cache keys (whole image and per layer) hold of this maker:
    /// the compressor's arguments, the label (erofs) and the version.
    pub(crate) fn key_text(&self, options: &BuildOptions) -> String {
        let mut text = format!("compression {:?}\n", self.compression);
        if self.fs == FsType::Erofs {
            let _ = writeln!(text, "label {}", options.label);
        }
        let _ = writeln!(text, "{} {}", self.tool, self.version);
        text
    }
}

/// The entries `emit` gives, as a tar written to `writer` (named `to` in
/// errors).
fn emit_tar(
    writer: impl Write,
    to: &Path,
    emit: impl FnOnce(&mut dyn EntrySink) -> Result<()>,
) -> Result<()> {
    let mut sink = TarSink::new(BufWriter::with_capacity(1 << 20, writer));
    emit(&mut sink)?;
    let buffered = sink.finish().map_err(io("writing to", to))?;
    buffered
        .into_inner()
        .map_err(|e| io("writing to", to)(e.into_error()))?;
    Ok(())
}

fn cache_key(maker: &Maker, manifest: &ociref::Digest, options: &BuildOptions) -> Result<String> {
    let mut text = format!("rootfs-{} 1\nmanifest {manifest}\n", maker.fs.as_str());
    text.push_str(&init_key_line(options)?);
    text.push_str(&maker.key_text(options));
    Ok(hex(&Sha256::digest(text.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressors_are_checked_and_turned_into_arguments() {
        assert_eq!(squashfs_compression(None).expect("lz4"), ["-c", "lz4"]);
        assert_eq!(
            squashfs_compression(Some("zstd,3")).expect("zstd"),
            ["-c", "zstd", "-X", "level=3"]
        );
        assert_eq!(
            squashfs_compression(Some("lz4hc")).expect("lz4hc"),
            ["-c", "lz4", "-X", "hc"]
        );
        for (bad, says) in [
            ("zstd,23", "outside 1-22"),
            ("gzip,x", "not a number"),
            ("lz4,3", "takes no level"),
            ("brotli", "not one squashfs takes"),
        ] {
            let err = squashfs_compression(Some(bad)).expect_err(bad).to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert_eq!(erofs_compression(None).expect("lz4"), ["-zlz4"]);
        assert_eq!(
            erofs_compression(Some("lz4hc,9")).expect("hc"),
            ["-zlz4hc,9"]
        );
        assert!(erofs_compression(Some("none")).expect("none").is_empty());
        assert!(erofs_compression(Some("gzip")).is_err());
    }

    #[test]
    fn erofs_releases_are_read_from_either_version_text() {
        assert_eq!(erofs_release("mkfs.erofs 1.5"), Some((1, 5)));
        assert_eq!(
            erofs_release("mkfs.erofs (erofs-utils) 1.8.2"),
            Some((1, 8))
        );
        assert_eq!(erofs_release("mkfs.erofs 1.7.1-g1234"), Some((1, 7)));
        assert_eq!(erofs_release("mkfs.erofs"), None);
    }
}
