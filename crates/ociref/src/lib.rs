//! `ociref`: references, digests and platforms. Pure parsing, no I/O.
#![deny(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]
