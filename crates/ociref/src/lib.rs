//! `ociref`: references, digests and platforms. Pure parsing, no I/O.
//!
//! Its roles:
//! - [`Reference`]: what users type (`alpine`, `ghcr.io/o/r:1@sha256:…`,
//!   `localhost:5000/a/b`), parsed by the distribution grammar and normalized
//!   as docker does (`docker.io/library/alpine:latest`);
//! - [`Digest`]: `sha256:…`/`sha512:…`, with [`DigestVerifier`] and the
//!   hashing reader and writer that check content as it streams;
//! - [`Platform`]: `os/arch[/variant]`, normalized, with the one matching
//!   rule every crate uses to pick a manifest from an index.
//!
//! ```
//! use ociref::{Digest, Platform, Reference};
//! let r: Reference = "localhost:5000/team/app:1.2@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse()?;
//! assert_eq!(r.registry(), "localhost:5000");
//! assert!(r.is_loopback());
//! assert_eq!(r.digest(), Some(&Digest::sha256_of(b"")));
//! let host = Platform::host();
//! assert!(host.matches(&host));
//! # Ok::<(), ociref::Error>(())
//! ```
#![deny(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod design;
mod digest;
mod error;
mod hash;
mod hex;
mod platform;
mod reference;

pub use digest::{Algorithm, Digest};
pub use error::Error;
pub use hash::{DigestVerifier, Hasher, HashingReader, HashingWriter};
pub use platform::Platform;
pub use reference::{
    DEFAULT_TAG, DOCKER_HUB, DOCKER_HUB_API_HOST, NAME_TOTAL_LENGTH_MAX, Reference, TAG_LENGTH_MAX,
    is_loopback_registry,
};
