//! Progress, reported to a caller-owned callback: the one vocabulary for
//! every crate of the workspace. Blob transfers report here; the store's
//! archive imports and the root file system's layer reads report with
//! the same [`Progress`] events through the same [`ProgressFn`]. The
//! libraries never print; the CLI draws.

use ociref::Digest;
use std::path::PathBuf;
use std::sync::Arc;

/// One progress event: how far `subject` has got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// What the event is about.
    pub subject: Subject,
    /// What happened.
    pub phase: Phase,
    /// Bytes of the subject through so far (for a transfer, including the
    /// bytes held before a resume).
    pub done: u64,
    /// Size of the subject in bytes.
    pub total: u64,
}

/// What a [`Progress`] event is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Subject {
    /// A blob downloaded from or uploaded to a registry.
    Blob(Digest),
    /// A layer blob of the store, read (compressed bytes) and applied to a
    /// root file system.
    Layer(Digest),
    /// A file read in one pass (an archive imported into the store).
    File(PathBuf),
}

/// What happened to the subject of a [`Progress`] event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// A download or upload began (at `done`, non-zero when resuming).
    Started,
    /// More bytes went through (`done` may reach `total` before the
    /// subject is [`Phase::Finished`]).
    Bytes,
    /// The connection dropped and the transfer resumed at `done`.
    Resumed,
    /// The blob was already present (upload skipped or mounted).
    Skipped,
    /// The subject is done, sent once with `done == total`: a blob went
    /// through and its digest verified, a layer was applied, a file was
    /// read through.
    Finished,
}

/// A callback receiving [`Progress`] events. Cheap to clone; clones call
/// the same callback. It runs on the thread or task doing the work (a
/// layer's reads come from the thread decompressing it ahead): keep it
/// quick (update a counter, send on a channel).
#[derive(Clone)]
pub struct ProgressFn(Arc<dyn Fn(&Progress) + Send + Sync>);

impl ProgressFn {
    /// Wraps `callback`.
    pub fn new(callback: impl Fn(&Progress) + Send + Sync + 'static) -> ProgressFn {
        ProgressFn(Arc::new(callback))
    }

    /// Calls the callback with `event`.
    pub fn report(&self, event: &Progress) {
        (self.0)(event);
    }
}

impl std::fmt::Debug for ProgressFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressFn")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn clones_report_to_the_one_callback_with_the_subject_intact() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let callback = ProgressFn::new(move |event: &Progress| {
            sink.lock().expect("lock").push(event.clone());
        });
        let blob = Progress {
            subject: Subject::Blob(Digest::sha256_of(b"blob")),
            phase: Phase::Started,
            done: 0,
            total: 4,
        };
        let file = Progress {
            subject: Subject::File(PathBuf::from("/tmp/image.tar")),
            phase: Phase::Bytes,
            done: 2,
            total: 9,
        };
        callback.report(&blob);
        callback.clone().report(&file);
        assert_eq!(*seen.lock().expect("lock"), vec![blob, file]);
        assert_eq!(format!("{callback:?}"), "ProgressFn");
    }
}
