//! Choosing an image of a reference and opening its layers: compression
//! from the media type, checked against the magic bytes.

use crate::error::{Error, Result, io};
use crate::progress::{ProgressFn, Subject};
use crate::read_ahead::ReadAhead;
use ociref::{Digest, Platform, Reference};
use ocistore::{Compression, ImageDetails, Lease, Store};
use std::io::{BufRead, BufReader, Read};

/// How many times [`select_image`] resolves again when the reference was
/// re-tagged between its lease and its inspection.
const LEASE_TRIES: usize = 3;

/// The stored image of `reference` for `platform` (the only one, or the
/// best match when the reference holds several), with the [`Lease`] that
/// keeps its blobs from `gc`: hold it for as long as the blobs are read.
pub(crate) fn select_image(
    store: &Store,
    reference: &Reference,
    platform: Option<&Platform>,
) -> Result<(Lease, ImageDetails)> {
    let mut tries = 0;
    let (lease, inspection) = loop {
        tries += 1;
        let lease = store.lease(reference)?;
        let inspection = store.inspect_platform(reference, platform)?;
        // Re-tagged since the lease: lease what the name holds now.
        if lease.holds(&inspection.top.digest) || tries == LEASE_TRIES {
            break (lease, inspection);
        }
    };
    let not_found = || Error::NoImageForPlatform {
        reference: reference.to_string(),
        platform: platform.map_or_else(|| "any".to_owned(), ToString::to_string),
    };
    let host = Platform::host();
    let wanted = match platform {
        None if inspection.images.len() == 1 => None,
        None => Some(&host),
        Some(platform) => Some(platform),
    };
    let image = match wanted {
        None => inspection.images.into_iter().next(),
        Some(wanted) => wanted
            .best_match(&inspection.images, |image| {
                let config = &image.config;
                Some((
                    config.os.as_deref()?,
                    config.architecture.as_deref()?,
                    config.variant.as_deref(),
                ))
            })
            .cloned(),
    }
    .ok_or_else(not_found)?;
    for layer in &image.layers {
        if !layer.present {
            return Err(Error::LayerMissing {
                reference: reference.to_string(),
                layer: layer.descriptor.digest.clone(),
            });
        }
    }
    Ok((lease, image))
}

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
    // Never through a link or a FIFO planted in the store.
    let file = crate::safe::open_read(store, &path)?;
    let file: Box<dyn Read + Send> = match progress {
        Some(callback) => {
            let total = file.metadata().map_err(io("reading layer", &path))?.len();
            Box::new(ocistore::ProgressReader::new(
                file,
                callback.clone(),
                Subject::Layer(digest.clone()),
                total,
            ))
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_name_their_compression() {
        for (media_type, want) in [
            ("application/vnd.oci.image.layer.v1.tar", Compression::None),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::Zstd,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Gzip,
            ),
        ] {
            assert_eq!(Compression::from_media_type(media_type), Some(want));
        }
        assert_eq!(Compression::from_media_type("application/json"), None);
    }

    #[test]
    fn magic_bytes_show_the_compression() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"bin/"), Compression::None);
    }
}
