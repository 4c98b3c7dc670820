//! `ocistore`: a local, content-addressed, crash-safe, multi-process cache
//! of OCI images.
//!
//! The store root is an [OCI image layout] (image-spec v1.1) that skopeo,
//! umoci and oras read as it is:
//!
//! ```text
//! ROOT/
//!   oci-layout          {"imageLayoutVersion":"1.0.0"}
//!   index.json          one descriptor per reference and platform,
//!                       annotated org.opencontainers.image.ref.name = the
//!                       full normalized reference (`127.0.0.1:5000/app:v1`;
//!                       `…/app:v1@linux/arm64/v8` for a further platform)
//!   blobs/sha256/<hex>  immutable; created only by rename after verification
//!   .cachectl/          private: locks/, ingest/ (partial downloads),
//!                       records/ (source, platform, times), quarantine/,
//!                       leases/ (what running readers hold)
//! ```
//!
//! Its roles:
//! - [`Store::open`] creates or opens a layout (and refuses a directory
//!   that is something else); [`default_root`] says where the default one is;
//! - [`Store::pull`] resolves a reference with one request and, when the
//!   store already holds that digest for the wanted platform, stops there
//!   (offline, or a stored pinned digest: no request at all); otherwise it stores the manifest (and the index it was picked
//!   from, by [`ociref::Platform::best_match`]), then the missing config and
//!   layers, concurrently, each streamed into `.cachectl/ingest/` while
//!   hashed, fsynced, verified and renamed into `blobs/`;
//! - [`Store::list`], [`Store::tag`], [`Store::remove`], [`Store::verify`]
//!   and [`Store::gc`] manage what is stored.
//! - [`Store::import`] reads an OCI archive or a `docker save` archive
//!   (plain, gzip or zstd; told by content) in one pass, verifying every
//!   blob, and [`Store::export`] writes stored images as either kind
//!   (see [`import`] and [`export`]);
//! - [`Store::copy`] copies an image between skopeo's transports
//!   (`docker://`, `oci:`, `oci-archive:`, `docker-archive:`) and the
//!   store, through the store, keeping digests ([`copy`]).
//!
//! Sharing and crashes: every file is written to a temp file, fsynced and
//! renamed ([`StoreDir::write_atomic`]), so readers need no lock and a killed process
//! leaves either the old or the new file. `index.json` is read, changed and
//! written under an exclusive lock on `.cachectl/locks/index.lock`, held
//! briefly. One process at a time downloads a given blob (a lock per
//! digest); the others wait and reuse it. A partial download survives the
//! process and resumes with HTTP `Range` on the next pull.
//!
//! Decisions:
//! - The `index.json` entry of a reference points at the **image manifest**
//!   picked for the platform, not at the index it came from: the layout then
//!   holds everything each entry needs (skopeo, umoci and `verify` find no
//!   hole), while the index blob is stored too and its digest kept in the
//!   reference's [`Record`] (so a warm pull that resolves to the index
//!   digest costs one request, and `gc` keeps the index).
//! - Records live in `.cachectl/records/<sha256 of the reference
//!   name>.json`; [`Store::mark_used`] rewrites only that file. Times are
//!   milliseconds since the Unix epoch.
//! - A pull holds a shared lock on `.cachectl/locks/gc.lock` from resolve
//!   to index update; [`Store::gc`] takes it exclusively, so it never sweeps
//!   blobs a running pull has written but not yet named.
//! - A reader holds what it reads with a [`Lease`] ([`Store::lease`]): a
//!   file in `.cachectl/leases/` naming the descriptors it resolved, locked
//!   by its owner for as long as it reads; [`Store::gc`] keeps everything
//!   a held lease reaches and removes the lease files of gone processes.
//!   [`Store::verify`] and [`Store::export`] hold `gc.lock` shared while
//!   they run instead.
//! - Lock files are never deleted (deleting one while another process
//!   waits on it would let two processes hold "the" lock).
//! - A store this process cannot write (a read-only mount, another user's
//!   directories) serves every read: shared locks open their file
//!   read-only (or are skipped when it is missing, as nobody can be
//!   writing), last-used times and remembered sizes are skipped
//!   ([`Store::skipped_records`]), and what must write fails with
//!   [`Error::ReadOnly`] naming the directory.
//! - The store never writes through a file it did not create: a symbolic
//!   link, FIFO or hard link planted at one of its paths is removed (a
//!   partial download) or refused with [`Error::Planted`], and its
//!   directories are checked to be real directories before use.
//! - Progress is reported in [`ocidist`]'s one vocabulary ([`Progress`]
//!   events to a [`ProgressFn`]): per blob from the [`ocidist::Client`]'s
//!   callback ([`ocidist::Client::with_progress`]), per archive from
//!   [`ImportOptions::progress`]; [`ProgressReader`] counts the bytes of
//!   a file or blob read.
//!
//! The reference name in `index.json` is what tools address: for skopeo,
//! `skopeo inspect oci:ROOT:127.0.0.1:5000/app:v1` (skopeo splits at the
//! first `:` after the path, and the rest is the annotation value).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let client = ocidist::Client::new(
//!     ocidist::ClientConfig::default(),
//!     Arc::new(ocidist::credentials::StaticCredentials::new()),
//! )?;
//! let root = ocistore::default_root(|name| std::env::var(name).ok()).expect("HOME is set");
//! let store = ocistore::Store::open(root)?;
//! let reference: ociref::Reference = "alpine:3.20".parse()?;
//! let pulled = store.pull(&client, &reference, &ocistore::PullOptions::default()).await?;
//! println!("{} -> {}", pulled.reference, pulled.manifest_digest);
//! let again = store.pull(&client, &reference, &ocistore::PullOptions::offline()).await?;
//! assert!(again.up_to_date);
//! # Ok(()) }
//! ```
//!
//! [OCI image layout]: https://github.com/opencontainers/image-spec/blob/v1.1.0/image-layout.md
#![deny(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]

mod archive;
mod blobs;
mod compression;
mod copy;
mod derived;
mod derived_sync;
mod dir_handle;
mod entries;
mod error;
mod export;
mod file_system;
mod follow;
mod import;
mod index_create;
mod inspect;
mod layout;
mod layout_dir;
mod lease;
mod manage;
mod pull;
mod pull_follow;
mod pull_many;
mod push;
mod records;
mod referrers;
mod remote_inspect;
mod repair;
mod safe;
mod sizes;
mod stored_image;
mod temp_file;
mod usage;
mod walk;

pub use blobs::Ingested;
pub use compression::{Compression, ProgressReader};
pub use copy::{CopyOptions, CopyOutcome, Location, TRANSPORTS};
pub use derived::{DerivedFiles, STALE_AFTER, is_older_than_stale_after, is_stale_leftover};
pub use derived_sync::Durability;
pub use dir_handle::{Access, StoreDir};
pub use entries::split_entry_name;
pub use error::{Error, Result};
pub use export::{ExportFormat, ExportReport};
pub use follow::FollowedBlob;
pub use import::{ImportOptions, ImportReport, ImportedImage};
pub use index_create::{CreatedIndex, IndexMember};
pub use inspect::{
    ConfigSummary, HistoryEntry, ImageDetails, Inspection, LayerDetails, PlatformEntry,
};
pub use layout::{LAYOUT_VERSION, REF_NAME_ANNOTATION, Store, default_root};
pub use lease::Lease;
pub use manage::{DEFAULT_PARTIAL_GRACE, GcReport, ImageEntry, VerifyProblem, VerifyReport};
/// The distribution client this crate pulls and pushes with (and, through
/// it, `ociref`), so that callers use the very versions the store's API
/// takes.
pub use ocidist;
pub use ocidist::{Phase, Progress, ProgressFn, Subject};
/// References, digests and platforms, as the store's API takes them.
pub use ociref;
pub use ociref::ErrorKind;
pub use pull::{PullOptions, PullOutcome, Stale};
pub use pull_follow::FollowingPull;
pub use push::{ArchTag, PushOptions, PushOutcome};
pub use records::Record;
pub use referrers::StoredReferrer;
pub use remote_inspect::inspect_remote;
pub use repair::{RepairFailure, RepairReport};
pub use safe::describe_file_kind;
pub use stored_image::StoredImage;
pub use usage::{DiskUsage, ImageUsage, PrunePolicy, PruneReport};
