//! Opening a stored image's layers: compression from the media type,
//! checked against the magic bytes, decompressed ahead of the reader.

use crate::error::{Error, Result, io};
use crate::progress::{ProgressFn, Subject};
use crate::read_ahead::ReadAhead;
use ociref::Digest;
use ocistore::{Compression, Store};
use std::io::{BufRead, BufReader, Read};

/// Opens the stored layer `digest` and returns its decompressed tar
/// stream, after checking its magic bytes against `media_type`.
pub(crate) fn open_layer(
    store: &Store,
    digest: &Digest,
    media_type: &str,
    progress: Option<&ProgressFn>,
) -> Result<Box<dyn Read + Send>> {
    let declared =
        Compression::from_media_type(media_type).ok_or_else(|| Error::UnsupportedMediaType {
            layer: digest.clone(),
            media_type: media_type.to_owned(),
        })?;
    let path = store.blob_path(digest);
    // A layer a pull is still fetching is read as it downloads; a stored
    // one never through a link or a FIFO planted in the store.
    let (file, total): (Box<dyn Read + Send>, u64) = match store.followed_blob(digest) {
        Some(followed) => {
            let size = followed.size();
            (Box::new(followed), size)
        }
        None => {
            let file = crate::safe::open_read(store, &path)?;
            let size = file.metadata().map_err(io("reading layer", &path))?.len();
            (Box::new(file), size)
        }
    };
    let file: Box<dyn Read + Send> = match progress {
        Some(callback) => Box::new(ocistore::ProgressReader::new(
            file,
            callback.clone(),
            Subject::Layer(digest.clone()),
            total,
        )),
        None => Box::new(file),
    };
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let detected = Compression::detect(reader.fill_buf().map_err(io("reading layer", &path))?);
    if detected != declared {
        return Err(Error::MislabelledLayer {
            layer: digest.clone(),
            media_type: media_type.to_owned(),
            detected: detected.name(),
        });
    }
    let read_error = |source| Error::LayerRead {
        layer: digest.clone(),
        source,
    };
    // Decompression runs on its own thread, ahead of the tar reader
    // (see `read_ahead`); an uncompressed blob is read directly.
    Ok(match declared {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(
            ReadAhead::new(flate2::bufread::MultiGzDecoder::new(reader)).map_err(read_error)?,
        ),
        Compression::Zstd => Box::new(
            ReadAhead::new(zstd::stream::read::Decoder::with_buffer(reader).map_err(read_error)?)
                .map_err(read_error)?,
        ),
    })
}
