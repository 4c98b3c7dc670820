//! The options of [`crate::build`] and [`crate::build_layers`], and what
//! of them is checked before any layer is read.

use crate::error::{Error, Result};
use crate::mke2fs::Ext4Input;
use crate::place::check_image_path;
use crate::sizing::{MIN_SIZE, mib};
use crate::unpack::UnpackOptions;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

/// The longest file system label ext4 holds, in bytes.
pub const MAX_LABEL_BYTES: usize = 16;

/// How [`crate::build`] makes an image.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BuildOptions {
    /// Size of the image in bytes (rounded up to 4 KiB); computed from the
    /// content plus [`BuildOptions::headroom`] when `None`.
    pub size: Option<u64>,
    /// Free space added to a computed size, in bytes.
    pub headroom: u64,
    /// File system label (at most [`MAX_LABEL_BYTES`]).
    pub label: String,
    /// A host file copied into the image at the given absolute path, mode
    /// 0755, owner 0:0 (an init for a VM). The path is resolved as the
    /// guest resolves it: symlinked parents are followed inside the image
    /// (`/sbin/init` lands in `/usr/sbin/init` when `/sbin -> usr/sbin`),
    /// missing ones created, and whatever is at the path itself (a file, a
    /// symlink) replaced; a directory there is refused with
    /// [`Error::PlacePath`].
    pub init: Option<(PathBuf, String)>,
    /// Where to copy the built image; the cached file when `None` (callers
    /// that write to the image must ask for a copy).
    pub output: Option<PathBuf>,
    /// How the tree is unpacked before `mke2fs` reads it (rootless or not:
    /// the image gets the owners and devices of the layers either way).
    pub unpack: UnpackOptions,
    /// Where to look for `mke2fs` and `debugfs`; `PATH` followed by
    /// `/usr/sbin` and `/sbin` when `None`.
    pub search_path: Option<OsString>,
    /// Unpack the intermediate tree of [`build`](crate::build) (the inputs
    /// through mke2fs; the writer has none) on `/dev/shm` when it
    /// has room for five times the compressed layers and the host has
    /// twice that in available memory (the tree is read once by `mke2fs`
    /// and removed: it need not reach a disk). A tree that turns out
    /// larger fills the tmpfs and the build starts again under the store.
    /// On by default; off, the tree is always under the store.
    pub memory_scratch: bool,
    /// How [`build`](crate::build) makes an ext4 image:
    /// [`Ext4Input::Writer`] (and `None`, the default) hands the layers
    /// merged into one entry stream to this crate's own ext4 writer (no
    /// e2fsprogs, no tree, no root); [`Ext4Input::TarStream`] feeds that
    /// stream as a tar to `mke2fs -d -` as it is made, and is
    /// [`Error::InvalidOption`] on a host whose `mke2fs` cannot read tars
    /// ([`crate::detect_mke2fs`]); [`Ext4Input::Tree`] unpacks the layers
    /// into a directory for `mke2fs -d DIR`. Per-layer builds take it
    /// too: each layer's lower as a stream, or each layer's overlay tree.
    pub input: Option<Ext4Input>,
    /// The file system of the image: ext4 (the default, writable), or a
    /// read-only squashfs or erofs made from the merged tar stream.
    pub fs: FsType,
    /// The compressor of a squashfs or erofs image and its level,
    /// `NAME[,LEVEL]` (`lz4`, `zstd,3`); `None` is each one's default,
    /// fast to build and to read (see [`FsType`]). Refused for ext4.
    pub compressor: Option<String>,
    /// Programs at given paths, by name (`mke2fs`, `debugfs`, `tar2sqfs`,
    /// `mkfs.erofs`): used instead of searching [`BuildOptions::search_path`];
    /// a path that is not a file is [`Error::ToolPathMissing`] naming it.
    pub tool_paths: BTreeMap<String, PathBuf>,
}

/// The file system type of a built image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum FsType {
    /// ext4, made by `mke2fs` (e2fsprogs): writable, sized with headroom.
    #[default]
    Ext4,
    /// squashfs, made by `tar2sqfs` (squashfs-tools-ng) from the merged
    /// tar stream: read-only, lz4 by default.
    Squashfs,
    /// erofs, made by `mkfs.erofs --tar` (erofs-utils 1.7 or later) from
    /// the merged tar stream: read-only, lz4 by default.
    Erofs,
}

impl FsType {
    /// `ext4`, `squashfs` or `erofs`: the name `--fs`, `--json`, the file
    /// name extension and the cache directory use.
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Squashfs => "squashfs",
            FsType::Erofs => "erofs",
        }
    }
}

impl Default for BuildOptions {
    fn default() -> BuildOptions {
        BuildOptions {
            size: None,
            headroom: 64 << 20,
            label: "rootfs".to_owned(),
            init: None,
            output: None,
            unpack: UnpackOptions::default(),
            search_path: None,
            memory_scratch: true,
            input: None,
            fs: FsType::Ext4,
            compressor: None,
            tool_paths: BTreeMap::new(),
        }
    }
}

impl BuildOptions {
    /// Checks what can be checked before any work: the label fits ext4's
    /// [`MAX_LABEL_BYTES`], the init path is absolute, not `/` and free of
    /// `..` ([`Error::PlacePath`]), and a given size is at least 8 MiB (the
    /// least ext4 image with a journal). [`crate::build`] and
    /// [`crate::build_layers`] call it first; a size too small for the
    /// content is only known once the tree is unpacked, and is then refused
    /// before `mke2fs` runs. Errors are of kind usage and name the option
    /// and the limit.
    pub fn check(&self) -> Result<()> {
        if self.label.len() > MAX_LABEL_BYTES {
            return Err(Error::InvalidOption {
                reason: format!(
                    "label {:?} is {} bytes long; an ext4 label holds at most {MAX_LABEL_BYTES}",
                    self.label,
                    self.label.len()
                ),
            });
        }
        if let Some((_, path)) = &self.init {
            check_image_path(path)?;
        }
        // A program given at a path that is no file is refused even where
        // this build would not run it: the mistake shows at once.
        for tool in ["mke2fs", "debugfs", "tar2sqfs", "mkfs.erofs"] {
            crate::tools::given_tool(tool, self)?;
        }
        if self.fs == FsType::Ext4
            && let Some(compressor) = &self.compressor
        {
            return Err(Error::InvalidOption {
                reason: format!(
                    "compressor {compressor:?} applies to squashfs and erofs images; ext4 is not \
                     compressed"
                ),
            });
        }
        if self.fs != FsType::Ext4 && (self.size.is_some() || self.input.is_some()) {
            return Err(Error::InvalidOption {
                reason: format!(
                    "a {} image is as large as its content and made from the merged tar \
                     stream: the size and the input apply to ext4",
                    self.fs.as_str()
                ),
            });
        }
        if let Some(size) = self.size
            && size < MIN_SIZE
        {
            return Err(Error::InvalidOption {
                reason: format!(
                    "size {} is below {}, the least an ext4 image with a journal takes",
                    mib(size),
                    mib(MIN_SIZE)
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_in_words_naming_the_limit() {
        let reason = |options: &BuildOptions| match options.check() {
            Err(err) => {
                assert_eq!(err.kind(), crate::ErrorKind::Usage, "{err}");
                err.to_string()
            }
            Ok(()) => String::new(),
        };
        let mut options = BuildOptions::default();
        assert_eq!(reason(&options), "");
        options.label = "a".repeat(16);
        assert_eq!(reason(&options), "");
        options.label = "a".repeat(17);
        assert!(reason(&options).contains("is 17 bytes long; an ext4 label holds at most 16"));
        options.label = "rootfs".to_owned();
        for (path, why) in [
            ("sbin/init", "not absolute"),
            ("/", "root"),
            ("/sbin/../init", ".."),
        ] {
            options.init = Some(("/bin/true".into(), path.to_owned()));
            let text = reason(&options);
            assert!(text.contains(path) && text.contains(why), "{path}: {text}");
        }
        options.init = Some(("/bin/true".into(), "/sbin/init".to_owned()));
        assert_eq!(reason(&options), "");
        options.size = Some(1 << 20);
        assert!(reason(&options).contains("size 1.0 MiB is below 8.0 MiB"));
        options.size = Some(8 << 20);
        assert_eq!(reason(&options), "");
    }
}
