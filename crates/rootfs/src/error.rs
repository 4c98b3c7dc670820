//! The one error type of `rootfs`.

use ociref::{Digest, ErrorKind};
use std::path::PathBuf;

/// Everything that can go wrong while unpacking or building an image.
///
/// Messages start lowercase and name the layer digest, the entry path, the
/// file or the tool involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store could not describe or read the image.
    #[error("reading the image from the store")]
    Store(#[from] ocistore::Error),

    /// A layer's media type is not a tar layer this crate reads.
    #[error("layer {layer} has unsupported media type {media_type}")]
    UnsupportedMediaType {
        /// The layer's digest.
        layer: Digest,
        /// Its media type.
        media_type: String,
    },

    /// A layer's first bytes do not match the compression its media type
    /// names.
    #[error("layer {layer} is labelled {media_type} but its bytes are {detected}")]
    MislabelledLayer {
        /// The layer's digest.
        layer: Digest,
        /// The media type of its descriptor.
        media_type: String,
        /// What its magic bytes say (`gzip`, `zstd` or `uncompressed`).
        detected: &'static str,
    },

    /// The layer's stream (decompression or tar framing) is broken.
    #[error("reading layer {layer}")]
    LayerRead {
        /// The layer's digest.
        layer: Digest,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An entry would write outside the target, or is malformed.
    #[error("layer {layer}: entry {entry:?} refused: {reason}")]
    UnsafeEntry {
        /// The layer's digest.
        layer: Digest,
        /// The entry's path as written in the tar.
        entry: String,
        /// Why it was refused.
        reason: String,
    },

    /// Applying an entry failed on the file system.
    #[error("layer {layer}: entry {entry:?}: {what} {}", path.display())]
    Entry {
        /// The layer's digest.
        layer: Digest,
        /// The entry's path as written in the tar.
        entry: String,
        /// What was being done, e.g. `creating`, `linking`.
        what: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The image's manifest and config disagree.
    #[error("image manifest {manifest}: {reason}")]
    InvalidImage {
        /// The image manifest.
        manifest: Digest,
        /// What is wrong.
        reason: String,
    },

    /// A layer does not decompress to the diff ID its config gives.
    #[error("layer {layer} decompresses to {actual}, the config says {expected}")]
    DiffIdMismatch {
        /// The layer's digest.
        layer: Digest,
        /// The diff ID of the config.
        expected: Digest,
        /// The digest of the decompressed bytes.
        actual: Digest,
    },

    /// A cap of [`crate::UnpackOptions`] was reached (a decompression bomb,
    /// or an image larger than allowed).
    #[error("layer {layer}: entry {entry:?}: more than {limit} {what}")]
    LimitExceeded {
        /// The layer's digest.
        layer: Digest,
        /// The entry at which the cap was passed.
        entry: String,
        /// `bytes` or `entries`.
        what: &'static str,
        /// The cap.
        limit: u64,
    },

    /// The unpack target exists and is not an empty directory.
    #[error("target {} must be absent or an empty directory", path.display())]
    TargetNotEmpty {
        /// The target.
        path: PathBuf,
    },

    /// A file operation outside of any entry failed.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A program this crate runs is not installed.
    #[error("{tool} is not installed (install the {package} package)")]
    ToolNotFound {
        /// The program, e.g. `mke2fs`.
        tool: &'static str,
        /// The package that provides it, e.g. `e2fsprogs`.
        package: &'static str,
    },

    /// A program given by path ([`crate::BuildOptions::tool_paths`]) is
    /// not there.
    #[error("{tool} was given as {path}, which is not a file")]
    ToolPathMissing {
        /// The program, e.g. `mke2fs`.
        tool: &'static str,
        /// The path given.
        path: PathBuf,
    },

    /// A program this crate runs is installed, but too old for the job.
    #[error("{tool} at {path} ({found}) cannot do this: {needed} is needed")]
    ToolTooOld {
        /// The program, e.g. `mkfs.erofs`.
        tool: &'static str,
        /// Where it was found.
        path: PathBuf,
        /// The first line of its version text.
        found: String,
        /// The release needed, with its package.
        needed: &'static str,
    },

    /// A program this crate runs failed.
    #[error("{tool} failed ({status}): {stderr}")]
    ToolFailed {
        /// The program.
        tool: &'static str,
        /// Its exit status.
        status: String,
        /// What it wrote on stderr.
        stderr: String,
    },

    /// A file cannot be placed at a path of the image (an init): the path
    /// is not absolute, a parent is a file or a symlink loop, or a directory
    /// is at the path itself.
    #[error("cannot place {path:?} in the image: {reason}")]
    PlacePath {
        /// The path inside the image, as given.
        path: String,
        /// Why not.
        reason: String,
    },

    /// A file or directory rootfs keeps under the store is not what rootfs
    /// made: a symbolic link, a FIFO, a hard link or a directory planted
    /// at its name by someone who can write to the store. Remove it to go
    /// on.
    #[error("refusing {}: it is {found}, which rootfs did not create", path.display())]
    Planted {
        /// The planted path.
        path: PathBuf,
        /// What is there, e.g. `a symbolic link`.
        found: &'static str,
    },

    /// An ext4 build that is not cached cannot be kept: the store is
    /// read-only for this process (the source is
    /// [`ocistore::Error::ReadOnly`], naming the directory).
    #[error(
        "the ext4 image of {manifest} is not cached, and a new build cannot be kept in the store"
    )]
    BuildNotKept {
        /// The image manifest (or layer) whose build is missing.
        manifest: Digest,
        /// Why the store cannot keep it.
        #[source]
        source: Box<ocistore::Error>,
    },

    /// An entry of the final tree that an ext4 image cannot hold (an
    /// owner past 2^32, a name past 255 bytes, an attribute outside the
    /// namespaces ext4 stores).
    #[error("{} cannot be held in an ext4 image: {reason}", path.display())]
    NotInExt4 {
        /// The entry's path in the image.
        path: PathBuf,
        /// Why not.
        reason: String,
    },

    /// The options cannot be honoured.
    #[error("invalid option: {reason}")]
    InvalidOption {
        /// What is wrong.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// What kind of failure this is: a layer that does not match its image
    /// config, and a file planted under the store ([`Error::Planted`]),
    /// are [`ErrorKind::Integrity`]; store errors keep their kind (a
    /// platform the store lacks is [`ErrorKind::NotCached`], an absent
    /// layer [`ErrorKind::Integrity`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Store(err) => err.kind(),
            Error::DiffIdMismatch { .. } | Error::Planted { .. } => ErrorKind::Integrity,
            Error::TargetNotEmpty { .. }
            | Error::BuildNotKept { .. }
            | Error::InvalidOption { .. }
            | Error::PlacePath { .. }
            | Error::ToolPathMissing { .. } => ErrorKind::Usage,
            Error::UnsupportedMediaType { .. }
            | Error::MislabelledLayer { .. }
            | Error::LayerRead { .. }
            | Error::UnsafeEntry { .. }
            | Error::Entry { .. }
            | Error::InvalidImage { .. }
            | Error::LimitExceeded { .. }
            | Error::NotInExt4 { .. }
            | Error::Io { .. }
            | Error::ToolNotFound { .. }
            | Error::ToolTooOld { .. }
            | Error::ToolFailed { .. } => ErrorKind::Other,
        }
    }

    /// The file a file operation failed on, for the errors that name one.
    pub(crate) fn io_path(&self) -> Option<&std::path::Path> {
        match self {
            Error::Io { path, .. } | Error::Entry { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The same error with a path under `from` named under `to` instead
    /// (an unpack's staging directory becomes its target in messages).
    pub(crate) fn relocated(self, from: &std::path::Path, to: &std::path::Path) -> Error {
        let moved = |path: PathBuf| match path.strip_prefix(from) {
            Ok(rest) if rest.as_os_str().is_empty() => to.to_path_buf(),
            Ok(rest) => to.join(rest),
            Err(_) => path,
        };
        match self {
            Error::Entry {
                layer,
                entry,
                what,
                path,
                source,
            } => Error::Entry {
                layer,
                entry,
                what,
                path: moved(path),
                source,
            },
            Error::Io { what, path, source } => Error::Io {
                what,
                path: moved(path),
                source,
            },
            other => other,
        }
    }
}

/// Fails with [`Error::BuildNotKept`] (for the build of `manifest`) when
/// this process cannot create files in `dir` of `store`: checked before a
/// build unpacks anything, so a read-only store fails at once. Blocking.
pub(crate) fn check_keepable(
    store: &ocistore::Store,
    dir: &std::path::Path,
    manifest: &Digest,
) -> Result<()> {
    store
        .check_writable(dir)
        .map_err(|source| Error::BuildNotKept {
            manifest: manifest.clone(),
            source: Box::new(source),
        })
}

/// A closure turning an I/O error into [`Error::Io`] for `path`.
pub(crate) fn io(
    what: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { what, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_its_kind() {
        let layer = Digest::sha256_of(b"");
        let io = || std::io::Error::other("boom");
        let text = || "x".to_owned();
        let cases = [
            (
                Error::Store(ocistore::Error::ImageNotCached { reference: text() }),
                ErrorKind::NotCached,
            ),
            (
                Error::Store(ocistore::Error::PlatformNotCached {
                    reference: text(),
                    platform: text(),
                }),
                ErrorKind::NotCached,
            ),
            (
                Error::Store(ocistore::Error::LayerMissing {
                    reference: text(),
                    layer: layer.clone(),
                }),
                ErrorKind::Integrity,
            ),
            (
                Error::UnsupportedMediaType {
                    layer: layer.clone(),
                    media_type: text(),
                },
                ErrorKind::Other,
            ),
            (
                Error::MislabelledLayer {
                    layer: layer.clone(),
                    media_type: text(),
                    detected: "zstd",
                },
                ErrorKind::Other,
            ),
            (
                Error::LayerRead {
                    layer: layer.clone(),
                    source: io(),
                },
                ErrorKind::Other,
            ),
            (
                Error::UnsafeEntry {
                    layer: layer.clone(),
                    entry: text(),
                    reason: text(),
                },
                ErrorKind::Other,
            ),
            (
                Error::Entry {
                    layer: layer.clone(),
                    entry: text(),
                    what: "creating",
                    path: "/t/x".into(),
                    source: io(),
                },
                ErrorKind::Other,
            ),
            (
                Error::InvalidImage {
                    manifest: layer.clone(),
                    reason: text(),
                },
                ErrorKind::Other,
            ),
            (
                Error::DiffIdMismatch {
                    layer: layer.clone(),
                    expected: layer.clone(),
                    actual: layer.clone(),
                },
                ErrorKind::Integrity,
            ),
            (
                Error::LimitExceeded {
                    layer,
                    entry: text(),
                    what: "entries",
                    limit: 1,
                },
                ErrorKind::Other,
            ),
            (
                Error::TargetNotEmpty { path: "/t".into() },
                ErrorKind::Usage,
            ),
            (
                Error::Io {
                    what: "creating",
                    path: "/t".into(),
                    source: io(),
                },
                ErrorKind::Other,
            ),
            (
                Error::ToolNotFound {
                    tool: "mke2fs",
                    package: "e2fsprogs",
                },
                ErrorKind::Other,
            ),
            (
                Error::ToolFailed {
                    tool: "mke2fs",
                    status: text(),
                    stderr: text(),
                },
                ErrorKind::Other,
            ),
            (
                Error::PlacePath {
                    path: "/sbin/init".to_owned(),
                    reason: text(),
                },
                ErrorKind::Usage,
            ),
            (
                Error::Planted {
                    path: "/s/.cachectl/ext4/k.ext4".into(),
                    found: "a symbolic link",
                },
                ErrorKind::Integrity,
            ),
            (Error::InvalidOption { reason: text() }, ErrorKind::Usage),
            (
                Error::BuildNotKept {
                    manifest: Digest::sha256_of(b"m"),
                    source: Box::new(ocistore::Error::ReadOnly {
                        dir: "/r/.cachectl/ext4".into(),
                        source: std::io::Error::from_raw_os_error(30),
                    }),
                },
                ErrorKind::Usage,
            ),
        ];
        for (err, kind) in cases {
            assert_eq!(err.kind(), kind, "{err}");
        }
    }
}
