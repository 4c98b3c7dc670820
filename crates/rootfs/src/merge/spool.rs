//! The index pass of a build: each layer decompressed once, into a copy
//! in the build's work directory, and indexed from that copy.
//!
//! Up to [`AHEAD`] layers are decompressed at once, each on a thread of
//! its own, while the index reads the copies in layer order (headers only:
//! a copy is a plain file, so content is seeked over). The emit pass then
//! reads the copies instead of decompressing the layers again. A layer is
//! read to its very end (a layer read while it downloads is verified only
//! there). Errors come in layer order: a layer's index error before a
//! later layer's decompression error.

use super::index::Index;
use super::sorted::index_placed;
use crate::error::{Error, Result, io};
use crate::open_layer::open_layer;
use crate::progress::ProgressFn;
use ocistore::{ImageDetails, LayerDetails, Store};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// What is called once a layer is indexed: the index, the layer's number
/// and the copies (those up to it complete).
pub(super) type AfterLayer<'f> = dyn FnMut(&Index, u32, &[PathBuf]) -> Result<()> + 'f;

/// Layers decompressed at once (this many cores are worth keeping busy).
const AHEAD: usize = 2;

/// Decompresses every layer of `image` into `dir` (`layer-N.tar`) and
/// indexes the copies in order (where each file's entry starts included),
/// calling `after` with the index, the layer's number and the copies once
/// each layer is in; the copies' paths, base first.
pub(super) fn index_spooled(
    index: &mut Index,
    store: &Store,
    image: &ImageDetails,
    dir: &Path,
    progress: Option<&ProgressFn>,
    after: &mut AfterLayer<'_>,
) -> Result<Vec<PathBuf>> {
    let layers = &image.layers;
    let paths: Vec<PathBuf> = (0..layers.len())
        .map(|number| dir.join(format!("layer-{number}.tar")))
        .collect();
    let copies = &paths;
    std::thread::scope(|scope| -> Result<()> {
        let mut running = VecDeque::new();
        let mut started = 0;
        for (number, layer) in layers.iter().enumerate() {
            while started < layers.len() && started < number + AHEAD {
                let (next, path) = (&layers[started], &copies[started]);
                running.push_back(scope.spawn(move || copy_layer(store, next, path, progress)));
                started += 1;
            }
            let copying = running.pop_front().expect("because it was started above");
            match copying.join() {
                Ok(copied) => copied?,
                Err(panic) => std::panic::resume_unwind(panic),
            }
            let digest = &layer.descriptor.digest;
            let file = File::open(&copies[number]).map_err(io("reading", &copies[number]))?;
            let copy = BufReader::with_capacity(256 * 1024, file);
            index_placed(index, number as u32, digest, copy)?;
            crate::progress::finished(progress, digest, layer.descriptor.size);
            after(index, number as u32, copies)?;
        }
        Ok(())
    })?;
    Ok(paths)
}

/// Decompresses `layer`, to its very end, into the new file `path`.
fn copy_layer(
    store: &Store,
    layer: &LayerDetails,
    path: &Path,
    progress: Option<&ProgressFn>,
) -> Result<()> {
    let digest = &layer.descriptor.digest;
    let mut reader = open_layer(store, digest, &layer.descriptor.media_type, progress)?;
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io("creating", path))?;
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    let mut buffer = vec![0u8; 256 * 1024];
    // A failed write keeps its OS error (a full tmpfs is told apart by it).
    let written = |source| Error::Io {
        what: "copying a decompressed layer to",
        path: path.to_path_buf(),
        source,
    };
    loop {
        let read = reader
            .read(&mut buffer)
            .map_err(|source| Error::LayerRead {
                layer: digest.clone(),
                source,
            })?;
        if read == 0 {
            break;
        }
        writer.write_all(&buffer[..read]).map_err(written)?;
    }
    writer.flush().map_err(written)
}
