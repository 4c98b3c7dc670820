//! Content digests: `algorithm:encoded`, as the OCI image spec defines them.

use crate::error::Error;
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

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

impl Digest {
    /// The SHA-256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::new(Algorithm::Sha256);
        hasher.update(bytes);
        hasher.finish()
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
        let invalid = |reason: String| Error::InvalidDigest {
            input: input.to_owned(),
            reason,
        };
        if input.is_empty() {
            return Err(invalid("empty digest".into()));
        }
        let Some((algorithm, encoded)) = input.split_once(':') else {
            return Err(invalid("missing ':' between algorithm and hex".into()));
        };
        if algorithm.is_empty() {
            return Err(invalid("empty algorithm".into()));
        }
        if encoded.is_empty() {
            return Err(invalid("empty encoded part".into()));
        }
        if !valid_algorithm(algorithm) {
            return Err(invalid(format!(
                "algorithm {algorithm:?} is not lowercase letters and digits joined by '+', '.', '_' or '-'"
            )));
        }
        if let Some(known) = Algorithm::from_name(algorithm) {
            if !encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(invalid(format!(
                    "{algorithm} hex must be lowercase hexadecimal"
                )));
            }
            if encoded.len() != known.hex_len() {
                return Err(invalid(format!(
                    "digest hex has wrong length for {algorithm} (expected {}, got {})",
                    known.hex_len(),
                    encoded.len()
                )));
            }
        } else if !encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b))
        {
            return Err(invalid(
                "encoded part must be letters, digits, '=', '_' or '-'".into(),
            ));
        }
        Ok(Digest {
            text: input.to_owned(),
            colon: algorithm.len(),
        })
    }
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
