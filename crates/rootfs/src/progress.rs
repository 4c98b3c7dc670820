//! Progress of layers, in the workspace's one vocabulary: a layer's reads
//! are [`Phase::Bytes`] events of [`Subject::Layer`] (compressed bytes,
//! counted by [`ocistore::ProgressReader`] on the blob), and
//! [`Phase::Finished`] is sent once the layer is applied.

use ociref::Digest;
pub use ocistore::{Phase, Progress, ProgressFn, Subject};

/// Sends the last event of `layer` ([`Phase::Finished`], `done ==
/// total`), if a callback is set.
pub(crate) fn finished(callback: Option<&ProgressFn>, layer: &Digest, total: u64) {
    if let Some(callback) = callback {
        callback.report(&Progress {
            subject: Subject::Layer(layer.clone()),
            phase: Phase::Finished,
            done: total,
            total,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_layer_reports_bytes_read_then_finished_once_applied() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let callback = ProgressFn::new(move |e: &Progress| {
            sink.lock().expect("lock").push((e.phase, e.done, e.total));
        });
        let layer = Digest::sha256_of(b"layer");
        let subject = Subject::Layer(layer.clone());
        let mut reader =
            ocistore::ProgressReader::new(&[7u8; 10][..], callback.clone(), subject, 10);
        let mut buffer = [0u8; 4];
        while reader.read(&mut buffer).expect("read") > 0 {}
        finished(Some(&callback), &layer, 10);
        assert_eq!(
            *seen.lock().expect("lock"),
            vec![
                (Phase::Bytes, 4, 10),
                (Phase::Bytes, 8, 10),
                (Phase::Bytes, 10, 10),
                (Phase::Finished, 10, 10)
            ]
        );
    }

    #[test]
    fn finished_names_the_layer() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let callback = ProgressFn::new(move |e: &Progress| {
            sink.lock().expect("lock").push(e.subject.clone());
        });
        let layer = Digest::sha256_of(b"layer");
        finished(Some(&callback), &layer, 3);
        finished(None, &layer, 3);
        assert_eq!(*seen.lock().expect("lock"), vec![Subject::Layer(layer)]);
    }
}
