//! The one error type of `ociref`, and the typed reasons it carries.

use crate::Digest;
use crate::digest::Algorithm;

/// What can go wrong parsing references, digests and platforms, or
/// verifying content against a digest.
///
/// Each variant carries what a person needs to act: the text as given and a
/// typed reason (which callers can match on), or both digests of a mismatch.
///
/// ```
/// use ociref::{Error, Reference, ReferenceReason};
/// let err = "Alpine".parse::<Reference>().unwrap_err();
/// assert_eq!(err.to_string(), "invalid reference \"Alpine\": repository must be lowercase");
/// assert!(matches!(err, Error::InvalidReference { reason: ReferenceReason::Uppercase, .. }));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A reference that does not follow the distribution grammar.
    #[error("invalid reference {input:?}: {reason}")]
    InvalidReference {
        /// The text as given.
        input: String,
        /// What is wrong with it.
        reason: ReferenceReason,
    },
    /// A digest that does not follow the OCI digest grammar.
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest {
        /// The text as given.
        input: String,
        /// What is wrong with it.
        reason: DigestReason,
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
        reason: PlatformReason,
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

/// Why a reference was refused. Its `Display` is the text after
/// `invalid reference "…": `.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceReason {
    /// Nothing was given.
    #[error("empty reference")]
    Empty,
    /// A character outside printable ASCII: whitespace, control or
    /// non-ASCII characters never occur in references.
    #[error("invalid character {0:?}")]
    InvalidCharacter(char),
    /// Nothing before the `:tag` or `@digest`.
    #[error("empty name")]
    EmptyName,
    /// Uppercase letters in the repository path (only the registry may have
    /// them).
    #[error("repository must be lowercase")]
    Uppercase,
    /// A path component is empty: leading, trailing or doubled `/`.
    #[error("empty path component")]
    EmptyPathComponent,
    /// A path component starts or ends with a separator.
    #[error("path component {component:?} must start and end with a lowercase letter or digit")]
    PathComponentEdge {
        /// The component.
        component: String,
    },
    /// A character other than lowercase letters, digits, `.`, `_` and `-`
    /// in a path component.
    #[error(
        "path component {component:?} may only contain lowercase letters, digits, '.', '_' and '-' (found {character:?})"
    )]
    PathComponentCharacter {
        /// The offending character.
        character: char,
        /// The component it occurs in.
        component: String,
    },
    /// A separator other than `.`, `_`, `__` or a run of `-` (`a..b`,
    /// `a___b`, `a.-b`).
    #[error(
        "invalid separator {separator:?} in path component {component:?} (allowed: '.', '_', '__', '-', '--', …)"
    )]
    InvalidSeparator {
        /// The offending separator.
        separator: String,
        /// The component it occurs in.
        component: String,
    },
    /// The full normalized name (`registry/repository`) is too long.
    #[error("name is longer than 255 characters")]
    NameTooLong {
        /// Its length.
        length: usize,
    },
    /// A bare 64-hex name, almost surely an image ID typed by mistake.
    #[error("repository name cannot be a 64-character hexadecimal string")]
    HexRepository,
    /// `name:` with nothing after the colon.
    #[error("empty tag")]
    EmptyTag,
    /// A tag longer than 128 characters.
    #[error("tag is longer than 128 characters")]
    TagTooLong {
        /// Its length.
        length: usize,
    },
    /// A tag starting with `.` or `-`.
    #[error("tag must start with a letter, digit or '_'")]
    TagStart,
    /// A tag with characters outside `[A-Za-z0-9_.-]`.
    #[error("tag may only contain letters, digits, '_', '.' and '-'")]
    TagCharacter,
    /// A registry such as `:5000`.
    #[error("empty registry host")]
    EmptyHost,
    /// A registry host that is not a domain name or IPv4 address.
    #[error(
        "invalid registry host {host:?} (letters, digits and inner '-' in '.'-separated labels)"
    )]
    InvalidHost {
        /// The host.
        host: String,
    },
    /// A port that is not a number from 0 to 65535.
    #[error("invalid port {port:?}")]
    InvalidPort {
        /// The port as given.
        port: String,
    },
    /// An IPv6 address written without brackets.
    #[error("IPv6 address in registry must be enclosed in brackets")]
    UnbracketedIpv6,
    /// `[` without its `]`.
    #[error("unterminated IPv6 address in registry")]
    UnterminatedIpv6,
    /// Text inside brackets that is no IPv6 address.
    #[error("invalid IPv6 address {address:?} in registry")]
    InvalidIpv6 {
        /// The text between the brackets.
        address: String,
    },
    /// Something other than `:port` after `[address]`.
    #[error("unexpected text after IPv6 address in registry")]
    TextAfterIpv6,
    /// The part after `@` is not a digest.
    #[error("invalid digest: {0}")]
    Digest(DigestReason),
}

/// Why a digest was refused. Its `Display` is the text after
/// `invalid digest "…": `.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestReason {
    /// Nothing was given.
    #[error("empty digest")]
    Empty,
    /// No `:` between algorithm and encoded part.
    #[error("missing ':' between algorithm and encoded part")]
    MissingColon,
    /// Nothing before the `:`.
    #[error("empty algorithm")]
    EmptyAlgorithm,
    /// Nothing after the `:`.
    #[error("empty encoded part")]
    EmptyEncoded,
    /// The algorithm does not follow `component ([+._-] component)*` with
    /// `component ::= [a-z0-9]+`.
    #[error("algorithm must be lowercase letters and digits joined by '+', '.', '_' or '-'")]
    InvalidAlgorithm,
    /// A sha256/sha512 digest with characters other than `0-9a-f`.
    #[error("{algorithm} hex must be lowercase hexadecimal (0-9, a-f)")]
    NotLowercaseHex {
        /// The algorithm.
        algorithm: Algorithm,
    },
    /// A sha256/sha512 digest with the wrong number of hex digits.
    #[error("digest hex has wrong length for {algorithm} (expected {expected}, got {actual})")]
    WrongLength {
        /// The algorithm.
        algorithm: Algorithm,
        /// The length it needs.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// An encoded part with characters outside `[a-zA-Z0-9=_-]`.
    #[error("encoded part may only contain letters, digits, '=', '_' and '-'")]
    InvalidEncoded,
}

/// Why a platform was refused. Its `Display` is the text after
/// `invalid platform "…": `.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlatformReason {
    /// Not two or three `/`-separated parts.
    #[error("expected os/arch or os/arch/variant")]
    Shape,
    /// An empty part.
    #[error("empty {part}")]
    EmptyPart {
        /// `os`, `architecture` or `variant`.
        part: &'static str,
    },
    /// A part with characters outside `[A-Za-z0-9._-]`.
    #[error("{part} {value:?} may only contain letters, digits, '.', '_' and '-'")]
    InvalidPart {
        /// `os`, `architecture` or `variant`.
        part: &'static str,
        /// The part as given.
        value: String,
    },
}
