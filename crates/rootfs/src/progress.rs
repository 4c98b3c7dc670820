//! Progress of layer reads, for callers that draw it (counted by
//! [`ocistore::ProgressReader`] on the blob).

use ociref::Digest;
use std::sync::Arc;

/// How far one layer blob has been read (compressed bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayerProgress {
    /// The layer blob.
    pub layer: Digest,
    /// Bytes of the blob read so far.
    pub done: u64,
    /// The blob's size; `done == total` is sent once, when the layer is
    /// applied.
    pub total: u64,
}

/// A callback for [`LayerProgress`] events, set in
/// [`crate::UnpackOptions::progress`]. It may be called from another
/// thread than the caller's (layers are decompressed ahead on their own).
#[derive(Clone)]
pub struct ProgressFn(Arc<dyn Fn(&LayerProgress) + Send + Sync>);

impl ProgressFn {
    /// Wraps `callback`.
    pub fn new(callback: impl Fn(&LayerProgress) + Send + Sync + 'static) -> ProgressFn {
        ProgressFn(Arc::new(callback))
    }

    /// Sends `event`.
    pub(crate) fn send(&self, event: &LayerProgress) {
        (self.0)(event);
    }

    /// This callback told the bytes of `layer` read so far, as
    /// [`ocistore::ProgressReader`] counts them; never `done == total`:
    /// [`finished`] sends that once the layer is applied.
    pub(crate) fn reads_of(&self, layer: &Digest) -> ocistore::ReadProgressFn {
        let callback = self.clone();
        let layer = layer.clone();
        ocistore::ReadProgressFn::new(move |done, total| {
            if done < total {
                callback.send(&LayerProgress {
                    layer: layer.clone(),
                    done,
                    total,
                });
            }
        })
    }
}

impl std::fmt::Debug for ProgressFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressFn")
    }
}

/// Sends the last event of `layer` (`done == total`), if a callback is set.
pub(crate) fn finished(callback: Option<&ProgressFn>, layer: &Digest, total: u64) {
    if let Some(callback) = callback {
        callback.send(&LayerProgress {
            layer: layer.clone(),
            done: total,
            total,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::sync::Mutex;

    #[test]
    fn counting_reports_bytes_read_and_leaves_the_end_to_finished() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let callback = ProgressFn::new(move |e: &LayerProgress| {
            sink.lock().expect("lock").push((e.done, e.total));
        });
        let layer = Digest::sha256_of(b"layer");
        let mut reader =
            ocistore::ProgressReader::new(&[7u8; 10][..], callback.reads_of(&layer), 10);
        let mut buffer = [0u8; 4];
        while reader.read(&mut buffer).expect("read") > 0 {}
        finished(Some(&callback), &layer, 10);
        assert_eq!(
            *seen.lock().expect("lock"),
            vec![(4, 10), (8, 10), (10, 10)]
        );
    }
}
