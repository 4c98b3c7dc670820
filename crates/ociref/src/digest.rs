//! Content digests: `algorithm:encoded`, as the OCI image spec defines them.

use crate::error::{DigestReason, Error};
use crate::hash::Hasher;
use std::fmt;
use std::str::FromStr;

/// A content digest such as `sha256:e3b0…b855`.
///
/// `sha256` and `sha512` are checked strictly (lowercase hex of the right
/// length) and can be computed. Other algorithms that follow the grammar
/// parse, so that a manifest naming one can still be read and reported, but
/// hashing or verifying with them fails with
/// [`Error::UnsupportedAlgorithm`].
///
/// ```
/// let digest: ociref::Digest =
///     "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse()?;
/// assert_eq!(digest.algorithm(), "sha256");
/// assert_eq!(digest, ociref::Digest::sha256_of(b""));
/// # Ok::<(), ociref::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    /// `algorithm:encoded`, validated.
    text: String,
    /// Position of the `:`.
    colon: usize,
}

/// Digest algorithms that can be computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// SHA-256, 64 hex digits.
    Sha256,
    /// SHA-512, 128 hex digits.
    Sha512,
}

impl Algorithm {
    /// Every algorithm that can be computed, in the order messages list
    /// them.
    pub const ALL: &'static [Algorithm] = &[Algorithm::Sha256, Algorithm::Sha512];

    /// The name used in digests.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex encoding.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// The algorithm named `name` (`sha256`, `sha512`), if supported.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Digest {
    /// The digest of `bytes` with `algorithm`.
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::new(algorithm);
        hasher.update(bytes);
        hasher.finish()
    }

    /// The SHA-256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha256, bytes)
    }

    /// The SHA-512 digest of `bytes`.
    pub fn sha512_of(bytes: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha512, bytes)
    }

    /// Whether `bytes` hash to this digest; an error when they do not
    /// ([`Error::DigestMismatch`]) or the algorithm cannot be computed
    /// ([`Error::UnsupportedAlgorithm`]).
    pub fn verify(&self, bytes: &[u8]) -> Result<(), Error> {
        let actual = Digest::of(self.supported_algorithm()?, bytes);
        self.expect(actual).map(drop)
    }

    /// `actual` when it equals this (expected) digest, else
    /// [`Error::DigestMismatch`] with both: the one comparison every
    /// verifying type ends with.
    pub(crate) fn expect(&self, actual: Digest) -> Result<Digest, Error> {
        if actual == *self {
            return Ok(actual);
        }
        Err(Error::DigestMismatch {
            expected: self.clone(),
            actual,
        })
    }

    /// Whether the algorithm is one this crate can compute.
    pub fn is_supported(&self) -> bool {
        Algorithm::from_name(self.algorithm()).is_some()
    }

    /// The algorithm part, e.g. `sha256`.
    pub fn algorithm(&self) -> &str {
        &self.text[..self.colon]
    }

    /// The encoded part (hex for sha256/sha512).
    pub fn encoded(&self) -> &str {
        &self.text[self.colon + 1..]
    }

    /// The encoded part; an alias of [`Digest::encoded`] for the hex
    /// algorithms.
    pub fn hex(&self) -> &str {
        self.encoded()
    }

    /// The algorithm, when it is one we can compute.
    pub fn supported_algorithm(&self) -> Result<Algorithm, Error> {
        Algorithm::from_name(self.algorithm()).ok_or_else(|| Error::UnsupportedAlgorithm {
            algorithm: self.algorithm().to_owned(),
        })
    }

    /// The full text, `algorithm:encoded`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Builds a digest from an algorithm and its raw hash output.
    pub(crate) fn from_raw(algorithm: Algorithm, hash: &[u8]) -> Digest {
        let text = format!("{}:{}", algorithm.name(), crate::hex::encode(hash));
        Digest {
            colon: algorithm.name().len(),
            text,
        }
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self, Error> {
        Digest::parse_text(input).map_err(|reason| Error::InvalidDigest {
            input: input.to_owned(),
            reason,
        })
    }
}

impl Digest {
    /// Parses `algorithm:encoded`, reporting only the reason on failure.
    pub(crate) fn parse_text(input: &str) -> Result<Digest, DigestReason> {
        let colon = check(input)?;
        Ok(Digest {
            text: input.to_owned(),
            colon,
        })
    }
}

/// Checks `algorithm:encoded` and returns the position of the `:`.
fn check(input: &str) -> Result<usize, DigestReason> {
    if input.is_empty() {
        return Err(DigestReason::Empty);
    }
    let Some((algorithm, encoded)) = input.split_once(':') else {
        return Err(DigestReason::MissingColon);
    };
    if algorithm.is_empty() {
        return Err(DigestReason::EmptyAlgorithm);
    }
    if encoded.is_empty() {
        return Err(DigestReason::EmptyEncoded);
    }
    if !valid_algorithm(algorithm) {
        return Err(DigestReason::InvalidAlgorithm);
    }
    let Some(known) = Algorithm::from_name(algorithm) else {
        if !encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b))
        {
            return Err(DigestReason::InvalidEncoded);
        }
        return Ok(algorithm.len());
    };
    if !encoded
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(DigestReason::NotLowercaseHex { algorithm: known });
    }
    if encoded.len() != known.hex_len() {
        return Err(DigestReason::WrongLength {
            algorithm: known,
            expected: known.hex_len(),
            actual: encoded.len(),
        });
    }
    Ok(algorithm.len())
}

/// `component ([+._-] component)*`, `component ::= [a-z0-9]+`.
fn valid_algorithm(algorithm: &str) -> bool {
    algorithm.split(['+', '.', '_', '-']).all(|component| {
        !component.is_empty()
            && component
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
