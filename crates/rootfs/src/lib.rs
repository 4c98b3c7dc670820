//! `rootfs`: from a stored image to something a sandbox can boot.
//!
//! This crate will apply an image's layers (whiteouts, hardlinks, ownership,
//! with no path escaping the target) into a directory, stream a flattened tar,
//! or build a reproducible ext4 image with `mke2fs`, and cache the results
//! under the store.
//!
//! Status: a skeleton. Nothing is implemented yet; the work is tracked by the
//! issue "`rootfs`: from a stored image to a directory, a tar stream or a
//! bootable ext4 image".
#![deny(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]
