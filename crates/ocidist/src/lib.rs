//! `ocidist`: a client for the OCI distribution specification.
//!
//! Its roles:
//! - **resolve** a reference to a manifest digest with one `HEAD`
//!   ([`Client::resolve`]), and **fetch manifests** ([`Client::manifest`]):
//!   OCI image manifest and index, Docker schema 2 manifest and manifest list;
//!   schema 1 and unknown types are refused clearly, bodies over 4 MiB unread;
//! - **fetch blobs** as streams ([`Client::blob`]): hashed as they pass, never
//!   read past their size, resumed with `Range` when a connection drops;
//! - **push** blobs (monolithic or chunked, or mounted from another
//!   repository) and manifests;
//! - **list** tags and referrers;
//! - **authenticate** from the registry's challenge (Bearer tokens, Basic),
//!   with credentials from docker and containers config files
//!   ([`credentials`]); secrets never reach logs, errors or `Debug`;
//! - **retry** transient failures with backoff, honouring `Retry-After`;
//! - try **mirrors** first, configured as containerd configures them
//!   ([`hosts`]), skipping one that misbehaves for the rest of the run;
//! - **count** what it spends per host ([`accounting`]): requests by kind,
//!   bytes, retries, and the rate limits registries announce;
//! - go through **forwarding proxies** chosen per URL as curl chooses them
//!   ([`proxy`], `https_proxy`/`no_proxy`), never showing a registry's
//!   credentials to the proxy.
//!
//! TLS is rustls with the system's roots (plus per-registry extra CAs);
//! loopback registries use plain HTTP, as docker does. Redirects are followed
//! by hand so that `Authorization` never leaves the registry's origin.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ocidist::Error> {
//! use std::sync::Arc;
//! let client = ocidist::Client::new(
//!     ocidist::ClientConfig::default(),
//!     Arc::new(ocidist::credentials::default_source(ocidist::credentials::StaticCredentials::new())?),
//! )?;
//! let reference: ociref::Reference = "alpine:3.20".parse()?;
//! let descriptor = client.resolve(&reference).await?;
//! let manifest = client.manifest(&reference.with_digest(descriptor.digest.clone())).await?;
//! println!("{} {}", manifest.media_type, manifest.digest);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod accounting;
pub mod auth;
mod blob;
mod body;
mod client;
mod config;
pub mod credentials;
mod error;
pub mod hosts;
mod listing;
mod login;
mod lookup;
mod manifest;
pub mod media_types;
mod mirrors;
mod progress;
pub mod proxy;
mod push;
pub mod retry;
mod transport;

pub use accounting::HostUsage;
pub use blob::BlobStream;
pub use client::Client;
pub use config::{ClientConfig, DEFAULT_MAX_MANIFEST_BYTES};
pub use error::{Error, Result};
pub use hosts::HostsConfig;
pub use manifest::{Descriptor, Manifest, ManifestKind, is_manifest_media_type, parse_manifest};
pub use media_types::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_SCHEMA1, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST,
};
pub use mirrors::SkippedMirror;
/// The crate of references, digests and platforms this crate's API uses,
/// so that callers need not depend on a matching version of it.
pub use ociref;
pub use ociref::ErrorKind;
pub use progress::{Phase, Progress, ProgressFn, Subject};
pub use proxy::ProxyConfig;
pub use push::BlobSource;
pub use retry::RetryPolicy;
