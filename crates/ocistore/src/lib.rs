//! `ocistore`: a local, content-addressed cache of OCI images.
//!
//! The store root will be a valid OCI image layout (`oci-layout`,
//! `index.json`, `blobs/<alg>/<hex>`) that skopeo, umoci and oras can read,
//! safe against crashes and shared by several processes at once. It will pull
//! through `ocidist`, and list, tag, remove, garbage-collect, prune, verify,
//! import and export images.
//!
//! Status: a skeleton. Nothing is implemented yet; the work is tracked by the
//! issue "`ocistore`: a crash-safe, shared, interoperable image cache".
#![deny(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]
