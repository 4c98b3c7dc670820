//! Per-layer images: one image per layer of a stored image, for callers
//! that stack the layers with overlayfs (ext4, or read-only squashfs and
//! erofs lowers).
//!
//! Where the tool reads a tar stream (tar2sqfs, mkfs.erofs 1.8, mke2fs
//! 1.47.1 with libarchive), one index pass reads the layers (each
//! decompressed once into a copy in the work directory) and, as soon as it
//! has taken a layer, that layer's lower (`merge::LayerDiff`: what the
//! layer wrote, whiteouts as 0:0 character devices, opaque directories,
//! the directories above them with their metadata as of that layer) is
//! streamed into the tool: no tree on the host, no root. Otherwise (ext4
//! with an older mke2fs, or `Ext4Input::Tree` asked for) each layer is
//! applied into a tree of its own over the merged tree of the layers below
//! (the unpack's overlay mode) and `mke2fs -d DIR` reads it, with a
//! `debugfs` pass.

use crate::cache_files::{self, keep_image};
use crate::error::{Result, check_keepable, io};
use crate::ext4::{ImageInput, Tools, hex, make_image};
use crate::ext4_stream::make_streamed;
use crate::ext4_written::make_written;
use crate::leftovers;
use crate::merge::each_layer_lower;
use crate::mke2fs::Ext4Input;
use crate::open_layer::open_layer;
use crate::options::{BuildOptions, FsType};
use crate::progress;
use crate::readonly::{Made, Maker};
use crate::safe;
use crate::scratch::{WorkDir, remove_stale_work, with_work_dir};
use crate::tools::find_tool;
use crate::unpack::{Applier, UnpackReport};
use ociref::Digest;
use ocistore::{LayerDetails, Store, StoredImage};
use sha2::{Digest as _, Sha256};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// How each layer becomes an image.
enum LayerMaker<'a> {
    /// ext4 from the layer's overlay tree (`mke2fs -d DIR`).
    Ext4(Tools<'a>),
    /// ext4 from the layer's lower as a tar stream (`mke2fs -d -`).
    Ext4Stream,
    /// ext4 from the layer's lower by cachectl's own writer.
    Ext4Written,
    /// squashfs or erofs from the layer's lower as a tar stream.
    ReadOnly(Maker),
}

/// One layer as its own image, for callers that stack layers with
/// overlayfs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BuiltLayer {
    /// The layer blob.
    pub layer: Digest,
    /// The image file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Whether it came from the cache.
    pub cached: bool,
    /// Its file system type.
    pub fs: FsType,
}

/// Builds (or finds in the cache) one image per layer of a stored image
/// ([`BuildOptions::fs`]: ext4, squashfs or erofs), base first, with
/// whiteouts in overlayfs form: a
/// `.wh.<name>` becomes a character device 0:0 named `<name>`, an opaque
/// directory gets `trusted.overlay.opaque=y`, and a hardlink to a file of
/// a lower layer becomes a copy of that file. An ext4 image is sized from
/// its own content plus [`BuildOptions::headroom`] (`size` and `init`
/// apply to [`crate::build`] only). A layer's image is keyed by the layers
/// from the base up to it (copies of lower files depend on them), the file
/// system type and what of the options shapes its bytes (label and
/// headroom for ext4, the compressor), and the tool's version. Blocking.
pub fn build_layers(stored: &StoredImage, options: &BuildOptions) -> Result<Vec<BuiltLayer>> {
    options.check()?;
    let (store, image) = (stored.store(), stored.details());
    let _ = remove_stale_work(store);
    let (mke2fs, debugfs, maker);
    let fs = options.fs;
    let (kind, mut chain) = match fs {
        FsType::Ext4 if matches!(options.input, None | Some(Ext4Input::Writer)) => {
            // cachectl's own writer: no mke2fs to find or learn.
            let chain = format!(
                "rootfs-ext4-layer 2\nheadroom {}\nlabel {}\n{}\n",
                options.headroom,
                options.label,
                crate::ext4_written::WRITER_KEY
            );
            (LayerMaker::Ext4Written, chain)
        }
        FsType::Ext4 => {
            mke2fs = find_tool("mke2fs", options)?;
            debugfs = find_tool("debugfs", options)?;
            // Learned once per mke2fs binary: a cache hit starts no child.
            let found = crate::mke2fs::detect_mke2fs(store, options)?;
            let input = crate::ext4::choose_input(options, &found)?;
            let version = found.version;
            let mut chain = String::from("rootfs-ext4-layer 2\n");
            let _ = writeln!(
                chain,
                "headroom {}\nlabel {}",
                options.headroom, options.label
            );
            let _ = writeln!(chain, "mke2fs {version}");
            let tools = Tools {
                mke2fs: &mke2fs,
                debugfs: &debugfs,
            };
            // The stream where mke2fs reads tars (unless a tree is asked
            // for): other bytes (times), so its own keys.
            if input == Ext4Input::TarStream {
                chain.push_str("input tar-stream\n");
                (LayerMaker::Ext4Stream, chain)
            } else {
                (LayerMaker::Ext4(tools), chain)
            }
        }
        _ => {
            maker = Maker::find(store, options)?;
            let chain = format!(
                "rootfs-{}-layer 2\n{}",
                fs.as_str(),
                maker.key_text(options)
            );
            (LayerMaker::ReadOnly(maker), chain)
        }
    };
    let cache_dir = store.root().join(".cachectl").join(fs.as_str());
    let mut planned = Vec::new();
    for layer in &image.layers {
        let _ = writeln!(chain, "layer {}", layer.descriptor.digest);
        let key = hex(&Sha256::digest(chain.as_bytes()));
        let path = cache_dir.join(format!("layer-{key}.{}", fs.as_str()));
        let cached = safe::cached_file(store, &path)?;
        planned.push((layer, path, cached));
    }
    if let Some((layer, _, _)) = planned.iter().find(|(_, _, cached)| !cached) {
        check_keepable(store, &cache_dir, &layer.descriptor.digest)?;
        store.derived_dir(fs.as_str()).map_err(safe::from_store)?;
        match &kind {
            LayerMaker::ReadOnly(_) | LayerMaker::Ext4Stream | LayerMaker::Ext4Written => {
                streamed_lowers(stored, options, &kind, &planned)?
            }
            LayerMaker::Ext4(tools) => ext4_lowers(stored, options, tools, &planned)?,
        }
    }
    planned
        .into_iter()
        .map(|(layer, path, cached)| {
            // A layer image built for an image since removed is this
            // one's now.
            if cached {
                cache_files::claim(store, &path, &layer.descriptor.digest)?;
            }
            let size = safe::file_len(store, &path)?;
            Ok(BuiltLayer {
                layer: layer.descriptor.digest.clone(),
                path,
                size,
                cached,
                fs,
            })
        })
        .collect()
}

/// One layer's overlay tree, unpacked.
struct LayerTree<'a> {
    store: &'a Store,
    tree: &'a Path,
    report: &'a UnpackReport,
    /// The layer: its UUID seed, and the blob whose presence keeps its
    /// image (any image with this layer, and these below it, may ask).
    layer: &'a Digest,
    work: &'a Path,
}

/// Makes the ext4 image of one layer's tree, kept at `path`.
fn ext4_lower(
    tools: &Tools<'_>,
    layer: &LayerTree<'_>,
    options: &BuildOptions,
    path: &Path,
) -> Result<()> {
    let input = ImageInput {
        tree: layer.tree,
        report: layer.report,
        uuid_digest: layer.layer,
        owner: layer.layer,
        store: layer.store,
    };
    make_image(tools, &input, options, layer.work, path)
}

/// A layer, where its image is kept, and whether it is cached there.
type Planned<'a> = (&'a LayerDetails, PathBuf, bool);

/// Makes the ext4 lowers not cached: each layer applied into a tree of its
/// own over the merged tree of the layers below, then `mke2fs -d` of it.
fn ext4_lowers(
    stored: &StoredImage,
    options: &BuildOptions,
    tools: &Tools<'_>,
    planned: &[Planned<'_>],
) -> Result<()> {
    let store = stored.store();
    let work = WorkDir::new(store, "layers-")?;
    let merged = work.path().join("merged");
    std::fs::create_dir(&merged).map_err(io("creating", &merged))?;
    let rootless = options.unpack.rootless || !rustix::process::geteuid().is_root();
    let mut below = Applier::new(&merged, &options.unpack, rootless);
    let last_to_build = planned
        .iter()
        .rposition(|(_, _, cached)| !cached)
        .expect("one layer is not cached");
    for (index, (layer, path, cached)) in planned.iter().enumerate().take(last_to_build + 1) {
        let digest = &layer.descriptor.digest;
        let media_type = &layer.descriptor.media_type;
        if !cached {
            let tree = work.path().join(format!("layer-{index}"));
            std::fs::create_dir(&tree).map_err(io("creating", &tree))?;
            let mut applier =
                Applier::new(&tree, &options.unpack, rootless).overlay(&merged, &below);
            let progress = options.unpack.progress.as_ref();
            applier.apply_layer(digest, open_layer(store, digest, media_type, progress)?)?;
            progress::finished(progress, digest, layer.descriptor.size);
            applier.finish()?;
            let layer_work = work.path().join(format!("work-{index}"));
            std::fs::create_dir(&layer_work).map_err(io("creating", &layer_work))?;
            let layer_tree = LayerTree {
                store,
                tree: &tree,
                report: &applier.report,
                layer: digest,
                work: &layer_work,
            };
            ext4_lower(tools, &layer_tree, options, path)?;
        }
        if index < last_to_build {
            below.apply_layer(digest, open_layer(store, digest, media_type, None)?)?;
        }
    }
    Ok(())
}

/// Makes the lowers not cached from one index pass over copies of the
/// layers (see `merge::LayerDiff`), each streamed into its tool as soon as
/// the index has taken its layer: no tree on the host, no root.
fn streamed_lowers(
    stored: &StoredImage,
    options: &BuildOptions,
    kind: &LayerMaker<'_>,
    planned: &[Planned<'_>],
) -> Result<()> {
    let (store, image) = (stored.store(), stored.details());
    let cache = store
        .derived_dir(options.fs.as_str())
        .map_err(safe::from_store)?;
    let sizes = image.layers.iter().map(|l| l.descriptor.size);
    with_work_dir(store, options.memory_scratch, "layers-", sizes, |work| {
        let spool = work.path().join("layers");
        std::fs::create_dir(&spool).map_err(io("creating", &spool))?;
        let progress = options.unpack.progress.as_ref();
        each_layer_lower(store, image, &spool, progress, &mut |number, lower| {
            let (layer, path, cached) = &planned[number as usize];
            if *cached {
                return Ok(());
            }
            let digest = &layer.descriptor.digest;
            let partial = leftovers::partial_image(&cache, options.fs)?;
            match kind {
                LayerMaker::ReadOnly(maker) => {
                    let made = Made {
                        partial: partial.path(),
                        seed: digest,
                        label: &options.label,
                    };
                    maker.make(&made, |sink| lower.emit(sink).map(drop))?;
                }
                LayerMaker::Ext4Written => {
                    let emit = |sink: &mut dyn crate::merge::EntrySink| lower.emit(sink);
                    make_written(partial.as_file(), partial.path(), options, digest, &emit)
                        .map_err(|err| leftovers::named_in_cache(err, &cache, partial.path()))?;
                }
                _ => {
                    let layer_work = work.path().join(format!("work-{number}"));
                    std::fs::create_dir(&layer_work).map_err(io("creating", &layer_work))?;
                    let shape = (digest, lower.stats());
                    make_streamed(partial.path(), options, &layer_work, shape, &|sink| {
                        lower.emit(sink)
                    })?;
                }
            }
            keep_image(store, &cache, partial, path, digest)
        })
    })
}
