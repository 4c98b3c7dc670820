//! Progress of blob transfers, reported to a caller-owned callback. The
//! library never prints; the CLI draws.

use ociref::Digest;
use std::sync::Arc;

/// A callback receiving progress events. It runs on the task doing the
/// transfer: keep it quick (update a counter, send on a channel).
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// One progress event for one blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The blob.
    pub digest: Digest,
    /// What happened.
    pub kind: ProgressKind,
    /// Bytes transferred and verified so far (including bytes held before a
    /// resume).
    pub done: u64,
    /// Size of the blob.
    pub total: u64,
}

/// The kind of a [`Progress`] event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProgressKind {
    /// A download or upload began (at `done`, non-zero when resuming).
    Started,
    /// More bytes went through.
    Bytes,
    /// The connection dropped and the transfer resumed at `done`.
    Resumed,
    /// The blob was already present (upload skipped or mounted).
    Skipped,
    /// All bytes went through and the digest verified.
    Finished,
}
