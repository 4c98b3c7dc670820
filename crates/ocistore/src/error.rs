//! The one error type of `ocistore`.

use ociref::Digest;
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
    #[error("{} is not valid: {source}", path.display())]
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

    /// A manifest in the store could not be understood.
    #[error("manifest {digest} is not usable: {reason}")]
    InvalidManifest {
        /// Its digest.
        digest: Digest,
        /// What is wrong.
        reason: String,
    },

    /// A blocking task panicked or was cancelled.
    #[error("background task failed: {0}")]
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

    #[test]
    fn every_message_names_what_failed() {
        let digest = Digest::sha256_of(b"");
        let errors = [
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
            Error::InvalidManifest {
                digest,
                reason: "expected value".into(),
            },
        ];
        let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            [
                "reading /r/index.json",
                "/r is not an OCI image layout: unknown imageLayoutVersion \"2\"",
                "/r/index.json is not valid: EOF while parsing an object at line 1 column 1",
                "image example.com/a:1 is not cached",
                "blob sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 at /r/blobs/sha256/x is corrupt",
                "blob sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 is missing from the store (expected at /r/blobs/sha256/x)",
                "image example.com/a:1 is incomplete in the store: some of its blobs are missing",
                "example.com/a:1 has no manifest for platform linux/s390x",
                "manifest sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 is not usable: expected value",
            ]
        );
    }
}
