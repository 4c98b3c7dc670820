//! The one error type of `ociref`.

use crate::Digest;

/// What can go wrong parsing references, digests and platforms, or
/// verifying content against a digest.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A reference that does not follow the distribution grammar.
    #[error("invalid reference {input:?}: {reason}")]
    InvalidReference {
        /// The text as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A digest that does not follow the OCI digest grammar.
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest {
        /// The text as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A digest algorithm that parses but that we cannot compute.
    #[error("unsupported digest algorithm {algorithm:?} (supported: sha256, sha512)")]
    UnsupportedAlgorithm {
        /// The algorithm named.
        algorithm: String,
    },
    /// A platform string that is not `os/arch[/variant]`.
    #[error("invalid platform {input:?}: {reason}")]
    InvalidPlatform {
        /// The text as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Content that does not hash to the digest it should.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest the content should have.
        expected: Digest,
        /// The digest of the content received.
        actual: Digest,
    },
}
