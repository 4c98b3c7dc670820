//! What kind of failure an error is, shared by every crate's error type so
//! that callers (the command line's exit codes) decide in one place.

/// The kind of a failure: what a caller can do about it.
///
/// Every crate's `Error` has a `kind()` that answers with an exhaustive
/// match, so a new variant cannot be added without deciding its kind; the
/// enum itself is exhaustive, so a new kind cannot be added without callers
/// deciding what it means to them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The input is not valid: a reference, digest, platform, option or
    /// setting. Retrying the same input fails the same way.
    Usage,
    /// The image, platform or blob asked for is not in the local cache.
    NotCached,
    /// The registry refused the credentials or wants some.
    Auth,
    /// The registry (or a proxy in front of it) could not be reached, or
    /// kept failing: refused, reset, stalled, rate limited, TLS, 5xx.
    Network,
    /// Content does not match its digest or size, or a stored image lacks
    /// content it needs: the bytes cannot be trusted.
    Integrity,
    /// Anything else: a local file operation failed, the registry has no
    /// such image, a tool failed, an input is malformed in a way that is
    /// not a usage error.
    Other,
}

impl crate::Error {
    /// What kind of failure this is: every parse error is a usage error
    /// (the text given is wrong); a digest mismatch is an integrity error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            crate::Error::InvalidReference { .. }
            | crate::Error::InvalidDigest { .. }
            | crate::Error::UnsupportedAlgorithm { .. }
            | crate::Error::InvalidPlatform { .. } => ErrorKind::Usage,
            crate::Error::DigestMismatch { .. } => ErrorKind::Integrity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Digest, Platform, Reference};

    #[test]
    fn every_variant_has_its_kind() {
        let usage = [
            "Bad:x".parse::<Reference>().unwrap_err(),
            "sha256:xyz".parse::<Digest>().unwrap_err(),
            crate::Error::UnsupportedAlgorithm {
                algorithm: "md5".into(),
            },
            "linux".parse::<Platform>().unwrap_err(),
        ];
        for err in usage {
            assert_eq!(err.kind(), ErrorKind::Usage, "{err}");
        }
        let mismatch = crate::Error::DigestMismatch {
            expected: Digest::sha256_of(b"a"),
            actual: Digest::sha256_of(b"b"),
        };
        assert_eq!(mismatch.kind(), ErrorKind::Integrity);
    }
}
