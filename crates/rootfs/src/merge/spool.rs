//! The index pass of a build: each layer decompressed once, into a copy
//! in the build's work directory, and indexed from that copy while it is
//! written.
//!
//! Up to [`AHEAD`] layers are decompressed at once, each on a thread of
//! its own, while the index reads the copies in layer order (headers only:
//! a copy is a plain file, so content is seeked over), following the
//! layer it is on as it is written (`growing`): a layer's index is done
//! moments after its decompression, not a whole read of the copy later.
//! The emit pass then reads the copies instead of decompressing the layers
//! again. A layer is read to its very end (a layer read while it downloads
//! is verified only there) before the index is said to have taken it.
//! Errors come in layer order: a layer's index error before a later
//! layer's decompression error; when a layer's decompression fails, its
//! error is the one told, not the index's view of a cut-off copy.

use super::growing::{EndOnDrop, Following, Growth};
use super::index::Index;
use super::sorted::index_placed;
use crate::error::{Error, Result, io};
use crate::open_layer::open_layer;
use crate::progress::ProgressFn;
use ocistore::{ImageDetails, LayerDetails, Store};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::ScopedJoinHandle;

/// What is called once a layer is indexed: the index, the layer's number
/// and the copies (those up to it complete).
pub(super) type AfterLayer<'f> = dyn FnMut(&Index, u32, &[PathBuf]) -> Result<()> + 'f;

/// Layers decompressed at once (this many cores are worth keeping busy).
const AHEAD: usize = 2;

/// A layer being decompressed into its copy.
struct Copying<'scope> {
    growth: Arc<Growth>,
    thread: ScopedJoinHandle<'scope, Result<()>>,
}

impl Copying<'_> {
    /// Waits for the copy to end: its own error, if it failed.
    fn finish(self) -> Result<()> {
        match self.thread.join() {
            Ok(copied) => copied,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

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
    mut placer: Option<&mut (dyn super::ContentPlacer + '_)>,
) -> Result<Vec<PathBuf>> {
    let layers = &image.layers;
    let paths: Vec<PathBuf> = (0..layers.len())
        .map(|number| dir.join(format!("layer-{number}.tar")))
        .collect();
    let copies = &paths;
    std::thread::scope(|scope| -> Result<()> {
        let mut running: VecDeque<Copying<'_>> = VecDeque::new();
        let mut started = 0;
        let result = (|| {
            for (number, layer) in layers.iter().enumerate() {
                while started < layers.len() && started < number + AHEAD {
                    let (next, path) = (&layers[started], &copies[started]);
                    // The file exists before its reader opens it.
                    let file = create_copy(path)?;
                    let growth = Growth::new();
                    let told = growth.clone();
                    let thread =
                        scope.spawn(move || copy_layer(store, next, file, path, &told, progress));
                    running.push_back(Copying { growth, thread });
                    started += 1;
                }
                let copying = running.pop_front().expect("because it was started above");
                let (path, placer) = (&copies[number], placer.as_deref_mut());
                let indexed = index_following(index, (number, layer), path, &copying, placer);
                if indexed.is_err() {
                    copying.growth.abandon();
                }
                // The decompression's own error first: an index error is
                // then only a cut-off copy.
                copying.finish()?;
                indexed?;
                crate::progress::finished(
                    progress,
                    &layer.descriptor.digest,
                    layer.descriptor.size,
                );
                after(index, number as u32, copies)?;
            }
            Ok(())
        })();
        // Layers still decompressing after an error are not waited for.
        for copying in &running {
            copying.growth.abandon();
        }
        result
    })?;
    Ok(paths)
}

/// Indexes layer `number` from its copy at `path`, following `copying`.
fn index_following(
    index: &mut Index,
    (number, layer): (usize, &LayerDetails),
    path: &Path,
    copying: &Copying<'_>,
    placer: Option<&mut (dyn super::ContentPlacer + '_)>,
) -> Result<()> {
    let file = File::open(path).map_err(io("reading", path))?;
    let copy = BufReader::with_capacity(256 * 1024, Following::new(file, copying.growth.clone()));
    index_placed(index, number as u32, &layer.descriptor.digest, copy, placer)
}

/// Creates the copy's file at `path`.
fn create_copy(path: &Path) -> Result<File> {
    File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io("creating", path))
}

/// Decompresses `layer`, to its very end, into `file` (new, at `path`),
/// telling `growth` each write; stops early, without error, when the
/// reader abandons it.
fn copy_layer(
    store: &Store,
    layer: &LayerDetails,
    mut file: File,
    path: &Path,
    growth: &Arc<Growth>,
    progress: Option<&ProgressFn>,
) -> Result<()> {
    let _end = EndOnDrop(growth.clone());
    let digest = &layer.descriptor.digest;
    let mut reader = open_layer(store, digest, &layer.descriptor.media_type, progress)?;
    let mut buffer = vec![0u8; 1 << 20];
    // A failed write keeps its OS error (a full tmpfs is told apart by it).
    let written = |source| Error::Io {
        what: "copying a decompressed layer to",
        path: path.to_path_buf(),
        source,
    };
    loop {
        let mut filled = 0;
        while filled < buffer.len() {
            let read = reader
                .read(&mut buffer[filled..])
                .map_err(|source| Error::LayerRead {
                    layer: digest.clone(),
                    source,
                })?;
            if read == 0 {
                break;
            }
            filled += read;
        }
        if filled == 0 {
            return Ok(());
        }
        if growth.abandoned() {
            return Ok(());
        }
        file.write_all(&buffer[..filled]).map_err(written)?;
        growth.grew(filled as u64);
    }
}
