//! `ocidist`: a client for the OCI distribution specification.
//!
//! This crate will resolve references to digests, fetch and push manifests and
//! blobs (streamed and verified as they pass), authenticate from registry
//! challenges and docker/containers credential files, and retry politely.
//! It sits directly above [`ociref`] and below `ocistore`.
//!
//! Status: a skeleton. Nothing is implemented yet; the work is tracked by the
//! issue "`ocidist`: a distribution client that real registries accept".
#![deny(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]
