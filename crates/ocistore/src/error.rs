//! The one error type of `ocistore`.

use ociref::{Digest, ErrorKind};
use std::path::PathBuf;

/// Everything that can go wrong with a store.
///
/// Messages start lowercase and name the path, reference or digest involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file operation failed.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done, e.g. `reading`, `renaming into place`.
        what: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The directory exists but is not an OCI image layout this crate reads.
    #[error("{} is not an OCI image layout: {reason}", path.display())]
    NotALayout {
        /// The store root (or the file inside it that is wrong).
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },

    /// A JSON file of the store could not be parsed.
    #[error("{} is not valid JSON", path.display())]
    InvalidJson {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },

    /// The image is not in the store (and the pull was offline, or the
    /// operation needs a stored image).
    #[error("image {reference} is not cached")]
    ImageNotCached {
        /// The reference, as `ociref` prints it.
        reference: String,
    },

    /// A blob on disk does not hash to its name.
    #[error("blob {digest} at {} is corrupt", path.display())]
    Corrupt {
        /// The digest the blob should have.
        digest: Digest,
        /// Where it was found.
        path: PathBuf,
    },

    /// A blob an operation needs is not in the store.
    #[error("blob {digest} is missing from the store (expected at {})", path.display())]
    BlobMissing {
        /// The blob.
        digest: Digest,
        /// Where it should be.
        path: PathBuf,
    },

    /// A stored reference lacks some of its blobs (run `verify`, then
    /// `repair` or pull again).
    #[error("image {reference} is incomplete in the store: some of its blobs are missing")]
    ImageIncomplete {
        /// The reference.
        reference: String,
    },

    /// An index offers no manifest for the wanted platform.
    #[error("{reference} has no manifest for platform {platform}")]
    NoMatchingPlatform {
        /// The reference pulled.
        reference: String,
        /// The platform asked for.
        platform: ociref::Platform,
    },

    /// The reference is stored, but not for the platform asked for.
    #[error("image {reference} has no stored image for platform {platform}")]
    PlatformNotCached {
        /// The reference.
        reference: String,
        /// The platform asked for, or `any`.
        platform: String,
    },

    /// A layer blob a stored image needs is not in the store.
    #[error("layer {layer} of image {reference} is not stored")]
    LayerMissing {
        /// The reference.
        reference: String,
        /// The layer's digest.
        layer: Digest,
    },

    /// A manifest in the store could not be understood.
    #[error("manifest {digest} is not usable: {reason}")]
    InvalidManifest {
        /// Its digest.
        digest: Digest,
        /// What is wrong.
        reason: String,
    },

    /// A file is not an image archive this crate reads (neither an OCI
    /// archive nor a `docker save` archive), or its layout is unusable.
    #[error("{} is not a usable image archive: {reason}", archive.display())]
    ArchiveFormat {
        /// The archive file.
        archive: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// One entry of an image archive is unusable (too large, invalid JSON,
    /// missing, inconsistent with the image config).
    #[error("entry {entry} of {} is not usable: {reason}", archive.display())]
    ArchiveEntry {
        /// The archive file.
        archive: PathBuf,
        /// The entry's name in the archive.
        entry: String,
        /// What is wrong.
        reason: String,
    },

    /// An entry of an image archive does not hash to the digest its name
    /// (or the image config) says it has.
    #[error("entry {entry} of {} hashes to {actual}, not {expected}", archive.display())]
    ArchiveDigestMismatch {
        /// The archive file.
        archive: PathBuf,
        /// The entry's name in the archive.
        entry: String,
        /// The digest it should have.
        expected: Digest,
        /// The digest of its content.
        actual: Digest,
    },

    /// A blob an image of an archive needs is neither in the archive nor in
    /// the store.
    #[error("blob {digest} needed by {reference} is neither in {} nor in the store", archive.display())]
    ArchiveMissingBlob {
        /// The archive file.
        archive: PathBuf,
        /// The reference (or archive entry) that needs it.
        reference: String,
        /// The missing blob.
        digest: Digest,
    },

    /// An image of an archive has no full reference name and none was given
    /// ([`crate::ImportOptions::name`]).
    #[error("{entry} of {} has no full reference name; give one to import it", archive.display())]
    ArchiveUnnamed {
        /// The archive file.
        archive: PathBuf,
        /// Which image (`index.json` entry or `manifest.json` item).
        entry: String,
    },

    /// An archive holds several images and nothing said which one to take
    /// ([`crate::ImportOptions::one`] without a `select` that picks one).
    #[error("{} holds several images ({names}); name one (FILE:REF)", archive.display())]
    ArchiveAmbiguous {
        /// The archive file (or directory).
        archive: PathBuf,
        /// The names of its images, as the archive writes them.
        names: String,
    },

    /// No image of an archive has the name asked for
    /// ([`crate::ImportOptions::select`]).
    #[error("{} holds no image named {name:?} (it holds: {names})", archive.display())]
    ArchiveNoSuchImage {
        /// The archive file (or directory).
        archive: PathBuf,
        /// The name asked for.
        name: String,
        /// The names of its images, as the archive writes them.
        names: String,
    },

    /// A copy source or destination is not written as a transport this
    /// crate knows ([`crate::Location`]).
    #[error("{input:?} is not an image location: {reason}")]
    Location {
        /// What was given.
        input: String,
        /// What is wrong, and what would be right.
        reason: String,
    },

    /// A stored layer does not decompress to the `diff_id` its image config
    /// lists (export to a docker archive).
    #[error("layer {layer} decompresses to {actual}, but the config lists diff_id {expected}")]
    DiffIdMismatch {
        /// The (compressed) layer blob.
        layer: Digest,
        /// The diff_id of the config.
        expected: Digest,
        /// The digest of the decompressed content.
        actual: Digest,
    },

    /// Where the store keeps one of its own files or directories there is
    /// something it did not create and will not write through: a symbolic
    /// link, a FIFO, a device, a hard link (a file with more than one
    /// name), or a file instead of a directory. Someone who can write to
    /// the store put it there; remove it (or the store) to go on.
    #[error("refusing {}: it is {found}, which the store did not create", path.display())]
    Planted {
        /// The path inside the store.
        path: PathBuf,
        /// What is there, e.g. `a symbolic link`.
        found: &'static str,
    },

    /// This process cannot write where the store must: a read-only mount,
    /// or a store directory owned by another user. Everything that only
    /// reads works on such a store; an operation that must change it (a
    /// pull of what is not cached, remove, gc, import) fails with this,
    /// naming the directory.
    #[error("cannot write to {}: the cache is read-only here", dir.display())]
    ReadOnly {
        /// The directory that could not be written.
        dir: PathBuf,
        /// The underlying error (`EROFS`, `EACCES` or `EPERM`).
        #[source]
        source: std::io::Error,
    },

    /// A push to a destination pinned by a digest that cannot name the
    /// image pushed: an algorithm this crate cannot compute, or another
    /// digest than the image's manifest; or per-platform tags that cannot
    /// be made (no tag to extend, no platform, two platforms with one
    /// tag). Said before anything is sent.
    #[error("cannot push {source_ref} to {destination}: {reason}")]
    PushDigest {
        /// The cached image.
        source_ref: String,
        /// The destination, as given.
        destination: String,
        /// Why the digest does not fit.
        reason: String,
    },

    /// An index cannot be made of these images: one is an index itself
    /// (or no image), names no platform, or has another's platform. Said
    /// before anything is written.
    #[error("cannot make index {name} of {source_ref}: {reason}")]
    IndexInput {
        /// The index's name.
        name: String,
        /// The image refused.
        source_ref: String,
        /// Why.
        reason: String,
    },

    /// The digest names no referrer stored with the reference.
    #[error("{digest} is not a stored referrer of {reference} (`pull --referrers` stores them)")]
    ReferrerNotStored {
        /// The reference.
        reference: String,
        /// The digest asked for.
        digest: Digest,
    },

    /// A blocking task panicked or was cancelled.
    #[error("background task failed")]
    Task(#[from] tokio::task::JoinError),

    /// Talking to the registry failed.
    #[error(transparent)]
    Dist(#[from] ocidist::Error),

    /// A digest or reference could not be parsed.
    #[error(transparent)]
    Reference(#[from] ociref::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// What kind of failure this is: a damaged store or archive is
    /// [`ErrorKind::Integrity`], an image the store lacks
    /// [`ErrorKind::NotCached`], registry errors keep their own kind. A
    /// store this process cannot write ([`Error::ReadOnly`]) is `Usage`:
    /// the same command on the same store fails the same way. A file
    /// planted in the store ([`Error::Planted`]) is `Integrity`: the store
    /// holds content nobody can vouch for.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::ImageNotCached { .. }
            | Error::PlatformNotCached { .. }
            | Error::ReferrerNotStored { .. } => ErrorKind::NotCached,
            Error::InvalidJson { .. }
            | Error::LayerMissing { .. }
            | Error::Corrupt { .. }
            | Error::BlobMissing { .. }
            | Error::ImageIncomplete { .. }
            | Error::ArchiveDigestMismatch { .. }
            | Error::ArchiveMissingBlob { .. }
            | Error::DiffIdMismatch { .. }
            | Error::Planted { .. } => ErrorKind::Integrity,
            Error::ArchiveUnnamed { .. }
            | Error::ArchiveAmbiguous { .. }
            | Error::ArchiveNoSuchImage { .. }
            | Error::Location { .. }
            | Error::ReadOnly { .. }
            | Error::PushDigest { .. }
            | Error::IndexInput { .. } => ErrorKind::Usage,
            Error::Io { .. }
            | Error::NotALayout { .. }
            | Error::NoMatchingPlatform { .. }
            | Error::InvalidManifest { .. }
            | Error::ArchiveFormat { .. }
            | Error::ArchiveEntry { .. }
            | Error::Task(_) => ErrorKind::Other,
            Error::Dist(err) => err.kind(),
            Error::Reference(err) => err.kind(),
        }
    }
}

/// Whether `source` says a write was refused because the file system is
/// read-only or this process may not write there (`EROFS`, `EACCES`,
/// `EPERM`).
pub(crate) fn is_read_only(source: &std::io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        Errno::from_io_error(source),
        Some(Errno::ROFS | Errno::ACCESS | Errno::PERM)
    )
}

/// [`Error::ReadOnly`] for `dir` when `source` says it cannot be written,
/// else [`Error::Io`] for `path`.
pub(crate) fn write_error(
    what: &'static str,
    path: &std::path::Path,
    dir: &std::path::Path,
    source: std::io::Error,
) -> Error {
    if is_read_only(&source) {
        Error::ReadOnly {
            dir: dir.to_path_buf(),
            source,
        }
    } else {
        Error::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Builds the closure `map_err` needs to wrap an I/O error with its path.
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

    /// One error of each variant that carries its own message.
    fn one_of_each() -> Vec<Error> {
        let digest = Digest::sha256_of(b"");
        vec![
            Error::Io {
                what: "reading",
                path: "/r/index.json".into(),
                source: std::io::Error::other("boom"),
            },
            Error::NotALayout {
                path: "/r".into(),
                reason: "unknown imageLayoutVersion \"2\"".into(),
            },
            Error::InvalidJson {
                path: "/r/index.json".into(),
                source: serde_json::from_slice::<serde_json::Value>(b"{").expect_err("invalid"),
            },
            Error::ImageNotCached {
                reference: "example.com/a:1".into(),
            },
            Error::Corrupt {
                digest: digest.clone(),
                path: "/r/blobs/sha256/x".into(),
            },
            Error::BlobMissing {
                digest: digest.clone(),
                path: "/r/blobs/sha256/x".into(),
            },
            Error::ImageIncomplete {
                reference: "example.com/a:1".into(),
            },
            Error::NoMatchingPlatform {
                reference: "example.com/a:1".into(),
                platform: "linux/s390x".parse().expect("platform"),
            },
            Error::PlatformNotCached {
                reference: "example.com/a:1".into(),
                platform: "linux/s390x".into(),
            },
            Error::LayerMissing {
                reference: "example.com/a:1".into(),
                layer: digest.clone(),
            },
            Error::InvalidManifest {
                digest: digest.clone(),
                reason: "expected value".into(),
            },
            Error::ArchiveFormat {
                archive: "/a.tar".into(),
                reason: "it has neither index.json nor manifest.json".into(),
            },
            Error::ArchiveEntry {
                archive: "/a.tar".into(),
                entry: "index.json".into(),
                reason: "larger than 4194304 bytes".into(),
            },
            Error::ArchiveDigestMismatch {
                archive: "/a.tar".into(),
                entry: "blobs/sha256/00".into(),
                expected: digest.clone(),
                actual: digest.clone(),
            },
            Error::ArchiveMissingBlob {
                archive: "/a.tar".into(),
                reference: "example.com/a:1".into(),
                digest: digest.clone(),
            },
            Error::ArchiveUnnamed {
                archive: "/a.tar".into(),
                entry: "index.json entry 0 (ref.name \"v1\")".into(),
            },
            Error::ArchiveAmbiguous {
                archive: "/a.tar".into(),
                names: "v1, v2".into(),
            },
            Error::ArchiveNoSuchImage {
                archive: "/a.tar".into(),
                name: "v3".into(),
                names: "v1, v2".into(),
            },
            Error::Location {
                input: "foo:bar".into(),
                reason: "unknown transport \"foo\"".into(),
            },
            Error::DiffIdMismatch {
                layer: digest.clone(),
                expected: digest.clone(),
                actual: digest,
            },
            Error::Planted {
                path: "/r/.cachectl/ingest/sha256-00.partial".into(),
                found: "a symbolic link",
            },
            Error::ReadOnly {
                dir: "/r/.cachectl/locks".into(),
                source: std::io::Error::from_raw_os_error(30),
            },
            Error::PushDigest {
                source_ref: "example.com/a:1".into(),
                destination: "example.com/b@md5:00".into(),
                reason: "unsupported digest algorithm \"md5\"".into(),
            },
            Error::IndexInput {
                name: "example.com/all:1".into(),
                source_ref: "example.com/a:1".into(),
                reason: "its platform linux/amd64 is example.com/b:1's too".into(),
            },
            Error::ReferrerNotStored {
                reference: "example.com/a:1".into(),
                digest: Digest::sha256_of(b""),
            },
        ]
    }

    #[test]
    fn every_variant_has_its_kind() {
        use ErrorKind::{Integrity, NotCached, Other, Usage};
        let kinds: Vec<ErrorKind> = one_of_each().iter().map(Error::kind).collect();
        assert_eq!(
            kinds,
            [
                Other, Other, Integrity, NotCached, Integrity, Integrity, Integrity, Other,
                NotCached, Integrity, Other, Other, Other, Integrity, Integrity, Usage, Usage,
                Usage, Usage, Integrity, Integrity, Usage, Usage, Usage, NotCached,
            ]
        );
        let dist = Error::Dist(ocidist::Error::Unauthorized {
            registry: "r".into(),
            reason: "no credentials".into(),
        });
        assert_eq!(dist.kind(), ErrorKind::Auth);
        let reference = Error::Reference("A:b".parse::<ociref::Reference>().unwrap_err());
        assert_eq!(reference.kind(), Usage);
    }

    #[tokio::test]
    async fn a_failed_task_is_other() {
        let task = tokio::spawn(std::future::pending::<()>());
        task.abort();
        let join = task.await.unwrap_err();
        assert_eq!(Error::Task(join).kind(), ErrorKind::Other);
    }

    #[test]
    fn every_message_names_what_failed() {
        let rendered: Vec<String> = one_of_each().iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            [
                "reading /r/index.json",
                "/r is not an OCI image layout: unknown imageLayoutVersion \"2\"",
                "/r/index.json is not valid JSON",
                "image example.com/a:1 is not cached",
                "blob sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 at /r/blobs/sha256/x is corrupt",
                "blob sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 is missing from the store (expected at /r/blobs/sha256/x)",
                "image example.com/a:1 is incomplete in the store: some of its blobs are missing",
                "example.com/a:1 has no manifest for platform linux/s390x",
                "image example.com/a:1 has no stored image for platform linux/s390x",
                "layer sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 of image example.com/a:1 is not stored",
                "manifest sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 is not usable: expected value",
                "/a.tar is not a usable image archive: it has neither index.json nor manifest.json",
                "entry index.json of /a.tar is not usable: larger than 4194304 bytes",
                "entry blobs/sha256/00 of /a.tar hashes to sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855, not sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "blob sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 needed by example.com/a:1 is neither in /a.tar nor in the store",
                "index.json entry 0 (ref.name \"v1\") of /a.tar has no full reference name; give one to import it",
                "/a.tar holds several images (v1, v2); name one (FILE:REF)",
                "/a.tar holds no image named \"v3\" (it holds: v1, v2)",
                "\"foo:bar\" is not an image location: unknown transport \"foo\"",
                "layer sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 decompresses to sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855, but the config lists diff_id sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "refusing /r/.cachectl/ingest/sha256-00.partial: it is a symbolic link, which the store did not create",
                "cannot write to /r/.cachectl/locks: the cache is read-only here",
                "cannot push example.com/a:1 to example.com/b@md5:00: unsupported digest algorithm \"md5\"",
                "cannot make index example.com/all:1 of example.com/a:1: its platform linux/amd64 is example.com/b:1's too",
                "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 is not a stored referrer of example.com/a:1 (`pull --referrers` stores them)",
            ]
        );
    }
}
