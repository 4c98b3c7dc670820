//! Progress of layer reads, for callers that draw it.

use ociref::Digest;
use std::io::Read;
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
}

impl std::fmt::Debug for ProgressFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressFn")
    }
}

/// A reader of a layer blob that reports the bytes read so far (never
/// `done == total`: [`finished`] sends that).
pub(crate) struct Counting<R> {
    inner: R,
    callback: ProgressFn,
    event: LayerProgress,
}

impl<R> Counting<R> {
    pub(crate) fn new(inner: R, callback: ProgressFn, layer: &Digest, total: u64) -> Counting<R> {
        Counting {
            inner,
            callback,
            event: LayerProgress {
                layer: layer.clone(),
                done: 0,
                total,
            },
        }
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        if read > 0 {
            self.event.done += read as u64;
            if self.event.done < self.event.total {
                self.callback.send(&self.event);
            }
        }
        Ok(read)
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
    use std::sync::Mutex;

    #[test]
    fn counting_reports_bytes_read_and_leaves_the_end_to_finished() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let callback = ProgressFn::new(move |e: &LayerProgress| {
            sink.lock().expect("lock").push((e.done, e.total));
        });
        let layer = Digest::sha256_of(b"layer");
        let mut reader = Counting::new(&[7u8; 10][..], callback.clone(), &layer, 10);
        let mut buffer = [0u8; 4];
        while reader.read(&mut buffer).expect("read") > 0 {}
        finished(Some(&callback), &layer, 10);
        assert_eq!(
            *seen.lock().expect("lock"),
            vec![(4, 10), (8, 10), (10, 10)]
        );
    }
}
