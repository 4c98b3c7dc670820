//! `rootfs`: from a stored image to something a sandbox can boot.
//!
//! Its roles:
//! - [`unpack`](fn@unpack) applies the layers of an image stored by [`ocistore`] into
//!   a directory, base layer first: whiteouts and opaque directories,
//!   hardlinks (also to files of lower layers), symlinks verbatim,
//!   directory modes after their children, mtimes, setuid/setgid/sticky
//!   bits, and as root owners, device nodes and extended attributes. No
//!   entry writes outside the target (`..`, absolute paths, symlinked
//!   parents and hardlinks out are refused with an error naming the layer
//!   and the entry);
//! - [`build`] turns the same tree into a reproducible image
//!   ([`BuildOptions::fs`]): ext4 written by this crate's own ext4 writer
//!   from the merged entry stream (or, as [`BuildOptions::input`] asks,
//!   with `mke2fs -d` from the merged tar stream or an unpacked tree,
//!   owners and device nodes then fixed inside the image with `debugfs`
//!   when the unpack was rootless); read-only squashfs (`tar2sqfs`) or erofs
//!   (`mkfs.erofs`) from the merged tar stream. Images are cached under the
//!   store ([`ocistore::Store::gc`] drops those of images it removed, and
//!   the layer tars no stored layer needs);
//!   [`build_layers`] makes one image per layer, whiteouts in overlayfs
//!   form (overlayfs lowers);
//! - [`merged_tar`] and [`merge_entries`] merge the layers into the
//!   entries of the final tree as a stream, without unpacking (whiteouts
//!   resolved, each path once, parents before children), to a tar or any
//!   [`EntrySink`]; [`export_tar`] writes that stream in path order, as
//!   `docker export` does;
//! - [`layer_tars`](fn@layer_tars) keeps each layer as an uncompressed tar under the store,
//!   keyed by diff ID (checked), decompressed concurrently.
//!
//! The [`design`] module says how ambiguous cases are decided.
//!
//! Every entry point takes a [`ocistore::StoredImage`]: the image
//! resolved once ([`ocistore::Store::image`], or
//! [`ocistore::Store::ensure_image`] to pull it when absent), holding its
//! blobs from `gc` while it lives.
//!
//! ```no_run
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = ocistore::Store::open("/var/cache/cachectl")?;
//! let reference: ociref::Reference = "alpine:3.20".parse()?;
//! let image = store.image(&reference, None)?;
//! let report = rootfs::unpack(
//!     &image,
//!     std::path::Path::new("/tmp/alpine-rootfs"),
//!     &rootfs::UnpackOptions::rootless(),
//! )?;
//! println!("{} entries, {} bytes", report.entries, report.bytes);
//! let built = rootfs::build(&image, &rootfs::BuildOptions::default())?;
//! println!("{} ({} bytes, cached: {})", built.path.display(), built.size, built.cached);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]

mod cache_files;
pub mod design;
mod error;
mod export;
mod ext4;
mod ext4_stream;
mod ext4_tar;
mod ext4_writer;
mod ext4_written;
mod layer_tars;
mod layers;
mod leftovers;
mod merge;
mod mke2fs;
mod open_layer;
mod options;
mod output;
mod place;
mod progress;
mod read_ahead;
mod readonly;
mod safe;
mod scratch;
mod sizing;
mod sparse_copy;
mod tar_sparse;
mod tools;
mod unpack;

pub use cache_files::{BuildFiles, cached_builds};
pub use error::{Error, Result};
pub use export::{export_tar, export_tar_to};
pub use ext4::{BuiltImage, build};
pub use ext4_tar::{TarImage, TarImageReport, ext4_from_tar};
pub use layer_tars::{LayerTar, layer_tars};
pub use layers::{BuiltLayer, build_layers};
pub use merge::{
    EntrySink, MergeOptions, MergeReport, MergedEntry, MergedKind, TarSink, merge_entries,
    merged_tar,
};
pub use mke2fs::{Ext4Input, Mke2fsInfo, TAR_INPUT_SINCE, detect_mke2fs};
/// References, digests and platforms, as this crate's API takes them.
pub use ociref;
pub use ociref::ErrorKind;
/// The store this crate reads (and, through it, `ocidist`), so that
/// callers use the very version its API takes.
pub use ocistore;
pub use options::{BuildOptions, FsType, MAX_LABEL_BYTES};
pub use progress::{Phase, Progress, ProgressFn, Subject};
pub use scratch::remove_stale_work;
pub use unpack::{NotApplied, UnpackOptions, UnpackReport, unpack};
