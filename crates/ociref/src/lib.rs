//! `ociref`: image references, content digests and platforms. Pure parsing
//! and hashing, no I/O.
//!
//! Its roles:
//! - [`Reference`]: what users type (`alpine`, `ghcr.io/o/r:1@sha256:…`,
//!   `localhost:5000/a/b`, `[::1]:5000/a`), checked against the distribution
//!   grammar and normalized as docker does (`docker.io/library/alpine:latest`);
//! - [`Digest`]: `sha256:…`/`sha512:…` (other algorithms parse but cannot be
//!   computed), with [`Hasher`], [`DigestVerifier`], [`HashingWriter`] and
//!   [`HashingReader`] to hash and check content as it streams;
//! - [`Platform`]: `os/arch[/variant]`, normalized, with the one matching
//!   rule ([`Platform::best_match`]) every crate uses to pick a manifest from
//!   an index;
//! - [`Error`]: the one error type, whose variants carry the input and a
//!   typed reason ([`ReferenceReason`], [`DigestReason`], [`PlatformReason`]).
//!
//! Why ambiguous cases are decided as they are is written down in
//! [`design`].
//!
//! ```
//! use ociref::{Digest, DigestVerifier, Platform, Reference};
//! use std::io::Write;
//!
//! let r: Reference = "localhost:5000/team/app:1.2@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse()?;
//! assert_eq!(r.registry(), "localhost:5000");
//! assert_eq!(r.repository(), "team/app");
//! assert!(r.is_loopback());
//!
//! let hub: Reference = "alpine:3.20".parse()?;
//! assert_eq!(hub.to_string(), "docker.io/library/alpine:3.20");
//! assert_eq!(hub.familiar(), "alpine:3.20");
//! assert_eq!(hub.registry_api_host(), "registry-1.docker.io");
//!
//! let expected = r.digest().expect("pinned").clone();
//! let mut verifier = DigestVerifier::new(expected)?;
//! verifier.write_all(b"")?;
//! assert_eq!(verifier.finish()?, Digest::sha256_of(b""));
//!
//! let wanted: Platform = "linux/aarch64".parse()?;
//! assert_eq!(wanted.to_string(), "linux/arm64/v8");
//! assert!(wanted.matches(&"linux/arm64".parse()?));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod design;
mod digest;
mod error;
mod hash;
mod hex;
mod kind;
mod platform;
mod reference;

pub use digest::{Algorithm, Digest};
pub use error::{DigestReason, Error, PlatformReason, ReferenceReason};
pub use hash::{DigestVerifier, Hasher, HashingReader, HashingWriter};
pub use kind::ErrorKind;
pub use platform::{Platform, PlatformParts};
pub use reference::{
    DEFAULT_TAG, DOCKER_HUB, DOCKER_HUB_API_HOST, NAME_TOTAL_LENGTH_MAX, Reference, TAG_LENGTH_MAX,
    is_loopback_registry,
};
