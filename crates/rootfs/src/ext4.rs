//! ext4 images built with `mke2fs -d` from an unpacked tree, reproducible
//! and cached under the store.

use crate::cache_files;
use crate::error::{Error, Result, io};
use crate::layer::open_layer;
use crate::layer::select_image;
use crate::leftovers;
use crate::output::copy_to_output;
use crate::place::place_file;
use crate::progress;
use crate::scratch::{WorkDir, is_out_of_space, make_readable, remove_stale_work, tree_estimate};
use crate::tools::{find_tool, run};
use crate::unpack::{Applier, Recorded, UnpackOptions, UnpackReport, apply_image, xattrs_of};
use ociref::{Digest, Platform, Reference};
use ocistore::{ConfigSummary, Store};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Block size of every image.
const BLOCK: u64 = 4096;
/// Inode size of every image.
const INODE_SIZE: u64 = 256;
/// The time `mke2fs` and `debugfs` see, and every inode's ctime/atime
/// otherwise copied from the host: 2023-11-14T22:13:20Z.
const FAKE_TIME: &str = "1700000000";

/// The `mke2fs.conf` every build uses, so the host's configuration cannot
/// change the features (and bytes) of an image.
const MKE2FS_CONF: &str = "[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384

[fs_types]
\tsmall = {
\t}
\tfloppy = {
\t}
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
";

/// How [`build`] makes an image.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BuildOptions {
    /// Size of the image in bytes (rounded up to 4 KiB); computed from the
    /// content plus [`BuildOptions::headroom`] when `None`.
    pub size: Option<u64>,
    /// Free space added to a computed size, in bytes.
    pub headroom: u64,
    /// File system label (at most 16 bytes).
    pub label: String,
    /// A host file copied into the image at the given absolute path, mode
    /// 0755, owner 0:0 (an init for a VM). The path is resolved as the
    /// guest resolves it: symlinked parents are followed inside the image
    /// (`/sbin/init` lands in `/usr/sbin/init` when `/sbin -> usr/sbin`),
    /// missing ones created, and whatever is at the path itself (a file, a
    /// symlink) replaced; a directory there is refused with
    /// [`Error::PlacePath`].
    pub init: Option<(PathBuf, String)>,
    /// Where to copy the built image; the cached file when `None` (callers
    /// that write to the image must ask for a copy).
    pub output: Option<PathBuf>,
    /// How the tree is unpacked before `mke2fs` reads it (rootless or not:
    /// the image gets the owners and devices of the layers either way).
    pub unpack: UnpackOptions,
    /// Where to look for `mke2fs` and `debugfs`; `PATH` followed by
    /// `/usr/sbin` and `/sbin` when `None`.
    pub search_path: Option<OsString>,
    /// Unpack the intermediate tree of [`build`] on `/dev/shm` when it
    /// has room for five times the compressed layers and the host has
    /// twice that in available memory (the tree is read once by `mke2fs`
    /// and removed: it need not reach a disk). A tree that turns out
    /// larger fills the tmpfs and the build starts again under the store.
    /// On by default; off, the tree is always under the store.
    pub memory_scratch: bool,
}

impl Default for BuildOptions {
    fn default() -> BuildOptions {
        BuildOptions {
            size: None,
            headroom: 64 << 20,
            label: "rootfs".to_owned(),
            init: None,
            output: None,
            unpack: UnpackOptions::default(),
            search_path: None,
            memory_scratch: true,
        }
    }
}

/// An ext4 image [`build`] made or found.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BuiltImage {
    /// The image file.
    pub path: PathBuf,
    /// The image manifest it was built from.
    pub manifest_digest: Digest,
    /// Its layers, base first.
    pub layers: Vec<Digest>,
    /// The image size in bytes.
    pub size: u64,
    /// Whether it came from the cache (no build ran).
    pub cached: bool,
    /// The image config (entrypoint, cmd, env, working directory, user)
    /// for the caller's VM.
    pub config: ConfigSummary,
}

/// Builds (or finds in the cache) an ext4 image of the stored image
/// `reference` for `platform`.
///
/// The layers are unpacked into a private directory on `/dev/shm` when it
/// has room (see [`BuildOptions::memory_scratch`]), else into
/// `.cachectl/rootfs-tmp/` under the store, then `mke2fs -t ext4 -d` makes
/// the image, with UUID and hash seed derived from the manifest digest, a
/// fixed `E2FSPROGS_FAKE_TIME` and a private `mke2fs.conf`; `debugfs` then sets every inode's ctime and atime
/// to that fixed time and, when the unpack was rootless, the owners and
/// device nodes the layers give. The result is kept at
/// `.cachectl/ext4/<key>.ext4`, key = SHA-256 of the manifest digest, the
/// options and `mke2fs -V`. Blocking.
pub fn build(
    store: &Store,
    reference: &Reference,
    platform: Option<&Platform>,
    options: &BuildOptions,
) -> Result<BuiltImage> {
    let image = select_image(store, reference, platform)?;
    // What killed builds left; a sweep that fails does not stop this one.
    let _ = remove_stale_work(store);
    let manifest_digest = image.manifest.digest.clone();
    let layers: Vec<Digest> = image
        .layers
        .iter()
        .map(|l| l.descriptor.digest.clone())
        .collect();
    if options.label.len() > 16 {
        return Err(Error::InvalidOption {
            reason: format!("label {:?} is longer than 16 bytes", options.label),
        });
    }
    let mke2fs = find_tool("mke2fs", options)?;
    let debugfs = find_tool("debugfs", options)?;
    let version = run(Command::new(&mke2fs).arg("-V"), "mke2fs")?;
    let key = cache_key(&manifest_digest, options, &version)?;
    let cache_dir = store.root().join(".cachectl/ext4");
    let cached_path = cache_dir.join(format!("{key}.ext4"));
    let cached = cached_path.is_file();
    if !cached {
        build_into(
            store,
            &image,
            options,
            &mke2fs,
            &debugfs,
            &cache_dir,
            &cached_path,
        )?;
    }
    let size = std::fs::metadata(&cached_path)
        .map_err(io("reading", &cached_path))?
        .len();
    let path = match &options.output {
        Some(output) => {
            copy_to_output(&cached_path, output)?;
            output.clone()
        }
        None => cached_path,
    };
    Ok(BuiltImage {
        path,
        manifest_digest,
        layers,
        size,
        cached,
        config: image.config,
    })
}

/// One layer as its own ext4 image, for callers that stack layers with
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
}

/// Builds (or finds in the cache) one ext4 image per layer of the stored
/// image `reference`, base first, with whiteouts in overlayfs form: a
/// `.wh.<name>` becomes a character device 0:0 named `<name>`, an opaque
/// directory gets `trusted.overlay.opaque=y`, and a hardlink to a file of
/// a lower layer becomes a copy of that file. Each image is sized from its
/// own content plus [`BuildOptions::headroom`] (`size` and `init` apply
/// to [`build`] only). A layer's image is keyed by the layers from the base
/// up to it (copies of lower files depend on them), the label and
/// `mke2fs -V`. Blocking.
pub fn build_layers(
    store: &Store,
    reference: &Reference,
    platform: Option<&Platform>,
    options: &BuildOptions,
) -> Result<Vec<BuiltLayer>> {
    let image = select_image(store, reference, platform)?;
    let _ = remove_stale_work(store);
    let mke2fs = find_tool("mke2fs", options)?;
    let debugfs = find_tool("debugfs", options)?;
    let version = run(Command::new(&mke2fs).arg("-V"), "mke2fs")?;
    let cache_dir = store.root().join(".cachectl/ext4");
    let mut chain = String::from("rootfs-ext4-layer 2\n");
    let _ = writeln!(
        chain,
        "headroom {}\nlabel {}",
        options.headroom, options.label
    );
    let _ = writeln!(chain, "mke2fs {version}");
    let mut planned = Vec::new();
    for layer in &image.layers {
        let _ = writeln!(chain, "layer {}", layer.descriptor.digest);
        let key = hex(&Sha256::digest(chain.as_bytes()));
        let path = cache_dir.join(format!("layer-{key}.ext4"));
        let cached = path.is_file();
        planned.push((layer, path, cached));
    }
    if planned.iter().any(|(_, _, cached)| !cached) {
        std::fs::create_dir_all(&cache_dir).map_err(io("creating", &cache_dir))?;
        let work = WorkDir::new(store, "layers-")?;
        let merged = work.path().join("merged");
        std::fs::create_dir(&merged).map_err(io("creating", &merged))?;
        let rootless = options.unpack.rootless || !rustix::process::geteuid().is_root();
        let mut below = Applier::new(&merged, &options.unpack, rootless);
        let last_to_build = planned
            .iter()
            .rposition(|(_, _, cached)| !cached)
            .expect("one layer is not cached");
        let tools = Tools {
            mke2fs: &mke2fs,
            debugfs: &debugfs,
        };
        for (index, (layer, path, cached)) in planned.iter().enumerate().take(last_to_build + 1) {
            let digest = &layer.descriptor.digest;
            let media_type = &layer.descriptor.media_type;
            if !cached {
                let tree = work.path().join(format!("layer-{index}"));
                std::fs::create_dir(&tree).map_err(io("creating", &tree))?;
                let mut applier =
                    Applier::new(&tree, &options.unpack, rootless).overlay(&merged, &below.report);
                let progress = options.unpack.progress.as_ref();
                applier.apply_layer(digest, open_layer(store, digest, media_type, progress)?)?;
                progress::finished(progress, digest, layer.descriptor.size);
                applier.finish()?;
                let input = ImageInput {
                    tree: &tree,
                    report: &applier.report,
                    uuid_digest: digest,
                    // The layer blob keeps it: any image with this layer
                    // (and these below it) may ask for it.
                    owner: digest,
                    store,
                };
                let layer_work = work.path().join(format!("work-{index}"));
                std::fs::create_dir(&layer_work).map_err(io("creating", &layer_work))?;
                make_image(&tools, &input, options, &layer_work, &cache_dir, path)?;
            }
            if index < last_to_build {
                below.apply_layer(digest, open_layer(store, digest, media_type, None)?)?;
            }
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
            let size = std::fs::metadata(&path)
                .map_err(io("reading", &path))?
                .len();
            Ok(BuiltLayer {
                layer: layer.descriptor.digest.clone(),
                path,
                size,
                cached,
            })
        })
        .collect()
}

fn build_into(
    store: &Store,
    image: &ocistore::ImageDetails,
    options: &BuildOptions,
    mke2fs: &Path,
    debugfs: &Path,
    cache_dir: &Path,
    cached_path: &Path,
) -> Result<()> {
    std::fs::create_dir_all(cache_dir).map_err(io("creating", cache_dir))?;
    let build = |work: &WorkDir| {
        let tree = work.path().join("tree");
        build_in(
            store,
            image,
            options,
            mke2fs,
            debugfs,
            work.path(),
            &tree,
            cache_dir,
            cached_path,
        )
    };
    if options.memory_scratch {
        let estimate = tree_estimate(image.layers.iter().map(|l| l.descriptor.size));
        if let Some(work) = WorkDir::in_memory("build-", estimate) {
            match build(&work) {
                // The tree was larger than estimated: again, on disk.
                Err(err) if is_out_of_space(&err) => {}
                done => return done,
            }
        }
    }
    build(&WorkDir::new(store, "build-")?)
}

#[allow(clippy::too_many_arguments)]
fn build_in(
    store: &Store,
    image: &ocistore::ImageDetails,
    options: &BuildOptions,
    mke2fs: &Path,
    debugfs: &Path,
    work: &Path,
    tree: &Path,
    cache_dir: &Path,
    cached_path: &Path,
) -> Result<()> {
    std::fs::create_dir(tree).map_err(io("creating", tree))?;
    let mut report = apply_image(store, image, tree, &options.unpack)?;
    if let Some((source, target)) = &options.init {
        place_file(tree, source, target, &mut report.records)?;
    }
    let tools = Tools { mke2fs, debugfs };
    let input = ImageInput {
        tree,
        report: &report,
        uuid_digest: &image.manifest.digest,
        owner: &image.manifest.digest,
        store,
    };
    make_image(&tools, &input, options, work, cache_dir, cached_path)
}

/// The two e2fsprogs programs a build runs.
pub(crate) struct Tools<'a> {
    pub(crate) mke2fs: &'a Path,
    pub(crate) debugfs: &'a Path,
}

/// What one ext4 image is made from.
pub(crate) struct ImageInput<'a> {
    /// The unpacked tree.
    pub(crate) tree: &'a Path,
    /// What the unpack recorded (owners, devices, refused xattrs).
    pub(crate) report: &'a UnpackReport,
    /// The digest the UUID and hash seed are derived from.
    pub(crate) uuid_digest: &'a Digest,
    /// The blob whose presence in the store keeps the image (see
    /// `cache_files`): the manifest, or the layer of a per-layer image.
    pub(crate) owner: &'a Digest,
    /// The store it is cached in.
    pub(crate) store: &'a Store,
}

/// Runs `mke2fs -d` and the `debugfs` fix-ups on `input`, and renames the
/// result to `cached_path`.
pub(crate) fn make_image(
    tools: &Tools<'_>,
    input: &ImageInput<'_>,
    options: &BuildOptions,
    work: &Path,
    cache_dir: &Path,
    cached_path: &Path,
) -> Result<()> {
    let (mke2fs, debugfs, tree) = (tools.mke2fs, tools.debugfs, input.tree);
    let records = &input.report.records;
    let rootless = input.report.rootless;
    make_readable(tree)?;
    let (blocks, inodes) = measure(tree, &input.report.pending_xattrs)?;
    let inode_count = inodes + inodes / 4 + 256;
    let mut size = match options.size {
        Some(size) => size.div_ceil(BLOCK) * BLOCK,
        None => computed_size(blocks, inode_count, options.headroom),
    };
    let uuid = uuid_from(input.uuid_digest);
    let conf = work.join("mke2fs.conf");
    std::fs::write(&conf, MKE2FS_CONF).map_err(io("writing", &conf))?;
    // Locked while this build lives, so the next build or `gc` can tell a
    // killed build's partial image (see `leftovers`).
    let partial = tempfile::Builder::new()
        .prefix(&format!("partial-{}", leftovers::pid_tag()))
        .suffix(".ext4")
        .tempfile_in(cache_dir)
        .map_err(io("creating a file in", cache_dir))?;
    leftovers::lock(partial.as_file(), partial.path())?;
    let mut attempts = 0;
    loop {
        let made = run(
            Command::new(mke2fs)
                .env("MKE2FS_CONFIG", &conf)
                .env("E2FSPROGS_FAKE_TIME", FAKE_TIME)
                .args([
                    "-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256", "-m", "0",
                ])
                .arg("-L")
                .arg(&options.label)
                .arg("-U")
                .arg(&uuid)
                .arg("-E")
                .arg(format!("hash_seed={uuid},root_owner=0:0"))
                .arg("-N")
                .arg(inode_count.to_string())
                .arg("-d")
                .arg(tree)
                .arg(partial.path())
                .arg(format!("{}k", size / 1024)),
            "mke2fs",
        );
        match made {
            // A computed size that was too small after all (the estimate
            // misses some layout of mke2fs's): larger, a few times. The
            // same tree always takes the same steps, so the result stays
            // reproducible. A size the caller gave is theirs: no retry.
            Err(err) if options.size.is_none() && attempts < 3 && is_out_of_blocks(&err) => {
                attempts += 1;
                size = grown(size);
            }
            made => {
                made?;
                break;
            }
        }
    }
    let mut commands = debugfs_commands(tree, records, rootless)?;
    // Extended attributes the host refused: each value in a file for
    // `ea_set -f` (values are binary).
    for (index, (rel, xattrs)) in input.report.pending_xattrs.iter().enumerate() {
        for (number, (name, value)) in xattrs.iter().enumerate() {
            // The name goes into a command line: plain names only.
            let plain = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !plain {
                return Err(Error::InvalidOption {
                    reason: format!(
                        "extended attribute {name:?} of {} cannot be passed to debugfs",
                        rel.display()
                    ),
                });
            }
            let value_file = work.join(format!("xattr-{index}-{number}"));
            std::fs::write(&value_file, value).map_err(io("writing", &value_file))?;
            let _ = writeln!(
                commands,
                "ea_set -f {} {} {name}",
                quoted_file(&value_file)?,
                quoted(rel)?
            );
        }
    }
    let command_file = work.join("debugfs.cmd");
    std::fs::write(&command_file, commands).map_err(io("writing", &command_file))?;
    let output = run(
        Command::new(debugfs)
            .env("E2FSPROGS_FAKE_TIME", FAKE_TIME)
            .arg("-w")
            .arg("-f")
            .arg(&command_file)
            .arg(partial.path()),
        "debugfs",
    )?;
    // debugfs echoes each command as `debugfs: …` and reports failures on
    // other lines, with a zero exit status; `mknod` says what it allocated.
    if let Some(line) = output.lines().find(|l| {
        !l.starts_with("debugfs") && !l.starts_with("Allocated inode") && !l.trim().is_empty()
    }) {
        return Err(Error::ToolFailed {
            tool: "debugfs",
            status: "0".to_owned(),
            stderr: line.to_owned(),
        });
    }
    // What keeps it (see `cache_files`); written first so no image lacks
    // an owner.
    cache_files::claim(input.store, cached_path, input.owner)?;
    partial.persist(cached_path).map_err(|e| {
        cache_files::unclaim_missing(cached_path);
        io("renaming into place", cached_path)(e.error)
    })?;
    Ok(())
}

/// Blocks (4 KiB) and inodes the tree needs.
fn measure(
    tree: &Path,
    pending_xattrs: &BTreeMap<PathBuf, Vec<(String, Vec<u8>)>>,
) -> Result<(u64, u64)> {
    let mut blocks = 0;
    let mut inodes = 0;
    let mut seen = HashSet::new();
    let mut stack = vec![tree.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut names = 0u64;
        for entry in std::fs::read_dir(&dir).map_err(io("reading", &dir))? {
            let entry = entry.map_err(io("reading", &dir))?;
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).map_err(io("reading", &path))?;
            names += 12 + entry.file_name().len() as u64;
            if !seen.insert(meta.ino()) {
                continue;
            }
            inodes += 1;
            // Attributes on the tree, and those debugfs adds (refused by
            // the host when rootless).
            let mut xattrs: Vec<(usize, usize)> = xattrs_of(&path)
                .map_err(io("reading attributes of", &path))?
                .iter()
                .map(|(name, value)| (name.len(), value.len()))
                .collect();
            if !pending_xattrs.is_empty()
                && let Ok(rel) = path.strip_prefix(tree)
            {
                let pending = pending_xattrs.get(rel).into_iter().flatten();
                xattrs.extend(pending.map(|(name, value)| (name.len(), value.len())));
            }
            blocks += xattr_blocks(&xattrs);
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                // Data plus one extent block for every 128 MiB.
                blocks += meta.len().div_ceil(BLOCK) + meta.len() / (128 << 20);
            } else if meta.file_type().is_symlink() && meta.len() >= 60 {
                blocks += 1;
            }
        }
        blocks += names.div_ceil(BLOCK).max(1);
        inodes += 1;
    }
    Ok((blocks, inodes))
}

/// Room for extended attributes inside a 256-byte inode: 256 less the
/// 128-byte base inode, 32 bytes of extra fields, the 4-byte header and a
/// 4-byte end marker.
const IN_INODE_XATTR_ROOM: u64 = 88;

/// Blocks that extended attributes of `(name, value)` lengths take outside
/// their inode: none when they fit in it, else a block (32-byte header)
/// per 4 KiB. Each entry is a 16-byte header and the name, then the value,
/// each padded to 4 bytes (names are counted with their prefix: a little
/// more than ext4 stores).
fn xattr_blocks(xattrs: &[(usize, usize)]) -> u64 {
    let size: u64 = xattrs
        .iter()
        .map(|&(name, value)| {
            (16 + name as u64).next_multiple_of(4) + (value as u64).next_multiple_of(4)
        })
        .sum();
    if size <= IN_INODE_XATTR_ROOM {
        0
    } else {
        (size + 32).div_ceil(BLOCK)
    }
}

/// Whether `err` is `mke2fs` running out of blocks or inodes while it
/// copies the tree in.
fn is_out_of_blocks(err: &Error) -> bool {
    matches!(err, Error::ToolFailed { tool: "mke2fs", stderr, .. }
        if stderr.contains("Could not allocate") || stderr.contains("No space left"))
}

/// The next size to try after [`is_out_of_blocks`]: a quarter more, at
/// least 16 MiB more, in whole blocks.
fn grown(size: u64) -> u64 {
    (size + (size / 4).max(16 << 20)).div_ceil(BLOCK) * BLOCK
}

/// An image size holding `blocks` of data and `inodes` inodes, plus the
/// journal, group metadata and `headroom`.
fn computed_size(blocks: u64, inodes: u64, headroom: u64) -> u64 {
    let inode_table = (inodes * INODE_SIZE).div_ceil(BLOCK);
    let base = blocks + inode_table + headroom.div_ceil(BLOCK);
    // Group descriptors, bitmaps, reserved GDT and lost+found: about 2%,
    // at least 1 MiB.
    let metadata = (base / 50).max(256);
    // At least 12 MiB before the journal, so there is one (mke2fs makes
    // none below 8 MiB).
    let without_journal = (base + metadata).max(3072);
    let total = without_journal + journal_blocks(without_journal);
    total * BLOCK
}

/// The journal size `mke2fs` picks for a file system of `blocks`
/// (`ext2fs_default_journal_size`).
fn journal_blocks(blocks: u64) -> u64 {
    match blocks {
        0..2048 => 0,
        2048..32768 => 1024,
        32768..262144 => 4096,
        262144..524288 => 8192,
        524288..4194304 => 16384,
        4194304..8388608 => 32768,
        8388608..16777216 => 65536,
        _ => 262144,
    }
}

/// `debugfs` commands: fixed ctime/atime on every inode, hardlinked
/// symlinks joined into one inode, and, when rootless, the owners and
/// device nodes the layers give.
fn debugfs_commands(
    tree: &Path,
    records: &BTreeMap<PathBuf, Recorded>,
    rootless: bool,
) -> Result<String> {
    let mut out = String::new();
    let mut paths = vec![PathBuf::new()];
    let mut stack = vec![PathBuf::new()];
    // Symlinks with more than one name, by (device, inode).
    let mut linked_symlinks: BTreeMap<(u64, u64), Vec<PathBuf>> = BTreeMap::new();
    while let Some(rel) = stack.pop() {
        let dir = tree.join(&rel);
        for entry in std::fs::read_dir(&dir).map_err(io("reading", &dir))? {
            let entry = entry.map_err(io("reading", &dir))?;
            let child = rel.join(entry.file_name());
            let file_type = entry.file_type().map_err(io("reading", &dir))?;
            if file_type.is_dir() {
                stack.push(child.clone());
            } else if file_type.is_symlink() {
                let meta = entry.metadata().map_err(io("reading", &dir))?;
                if meta.nlink() > 1 {
                    linked_symlinks
                        .entry((meta.dev(), meta.ino()))
                        .or_default()
                        .push(child.clone());
                }
            }
            paths.push(child);
        }
    }
    paths.sort();
    out.push_str(&join_linked_symlinks(linked_symlinks.into_values())?);
    if rootless {
        for (rel, recorded) in records {
            if let Some((tag, major, minor)) = recorded.device {
                let name = quoted(rel)?;
                let kind = if tag == b'c' { "c" } else { "b" };
                // debugfs's mknod takes a name in the current directory.
                let parent = quoted(rel.parent().unwrap_or(Path::new("")))?;
                let base = quoted(Path::new(rel.file_name().unwrap_or_default()))?;
                let base = base.replacen("\"/", "\"", 1);
                let _ = writeln!(out, "cd {parent}");
                let _ = writeln!(out, "mknod {base} {kind} {major} {minor}");
                let _ = writeln!(out, "cd /");
                let type_bits = if tag == b'c' { 0o020000 } else { 0o060000 };
                let _ = writeln!(out, "sif {name} mode 0{:o}", type_bits | recorded.mode);
                let _ = writeln!(out, "sif {name} mtime @{}", recorded.mtime);
                paths.push(rel.clone());
            }
        }
    }
    for rel in &paths {
        let name = quoted(rel)?;
        let _ = writeln!(out, "sif {name} ctime @{FAKE_TIME}");
        let _ = writeln!(out, "sif {name} atime @{FAKE_TIME}");
        if rootless && let Some(recorded) = records.get(rel) {
            // mke2fs copied the tree's owner, mode and type: only what
            // differs from the layers is set (a root process's rootless
            // tree is mostly 0:0 already; each command costs a lookup).
            let on_disk = std::fs::symlink_metadata(tree.join(rel)).ok();
            let (uid, gid, mode) = on_disk.as_ref().map_or((None, None, None), |m| {
                (Some(m.uid()), Some(m.gid()), Some(m.mode()))
            });
            if uid.map(u64::from) != Some(recorded.uid) {
                let _ = writeln!(out, "sif {name} uid {}", recorded.uid);
            }
            if gid.map(u64::from) != Some(recorded.gid) {
                let _ = writeln!(out, "sif {name} gid {}", recorded.gid);
            }
            // A mode `make_readable` widened (or the host's umask
            // changed): the layers' mode, with the tree's file type.
            if let Some(mode) = mode
                && mode & 0o7777 != recorded.mode
                && recorded.device.is_none()
            {
                let type_bits = mode & 0o170000;
                let _ = writeln!(out, "sif {name} mode 0{:o}", type_bits | recorded.mode);
            }
        }
    }
    Ok(out)
}

/// `mke2fs -d` gives every name of a hardlinked symlink its own inode
/// (it tracks hardlinks of other files only): for each group, the other
/// names' inodes are freed and the names linked to the first one, whose
/// link count is then set.
fn join_linked_symlinks(groups: impl Iterator<Item = Vec<PathBuf>>) -> Result<String> {
    let mut out = String::new();
    for mut names in groups {
        names.sort();
        let Some((first, others)) = names.split_first() else {
            continue;
        };
        let first = quoted(first)?;
        for other in others {
            let other = quoted(other)?;
            let _ = writeln!(out, "sif {other} links_count 0");
            let _ = writeln!(out, "kill_file {other}");
            let _ = writeln!(out, "unlink {other}");
            let _ = writeln!(out, "link {first} {other}");
        }
        let _ = writeln!(out, "sif {first} links_count {}", names.len());
    }
    Ok(out)
}

/// `"/rel"` for a debugfs command; names debugfs cannot parse are refused.
fn quoted(rel: &Path) -> Result<String> {
    let bytes = rel.as_os_str().as_bytes();
    let text = std::str::from_utf8(bytes)
        .ok()
        .filter(|t| !t.contains(['"', '\n', '\\']));
    match text {
        Some(text) => Ok(format!("\"/{text}\"")),
        None => Err(Error::InvalidOption {
            reason: format!("path {} cannot be passed to debugfs", rel.display()),
        }),
    }
}

/// A host path quoted for a debugfs command.
fn quoted_file(path: &Path) -> Result<String> {
    let text = path.to_str().filter(|t| !t.contains(['"', '\n', '\\']));
    match text {
        Some(text) => Ok(format!("\"{text}\"")),
        None => Err(Error::InvalidOption {
            reason: format!("path {} cannot be passed to debugfs", path.display()),
        }),
    }
}

/// A UUID (version 4 layout) made from the first bytes of the digest.
fn uuid_from(digest: &Digest) -> String {
    let hex = digest.encoded();
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("00"), 16).unwrap_or(0);
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn cache_key(manifest: &Digest, options: &BuildOptions, version: &str) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut text = format!(
        "rootfs-ext4 2\nmanifest {manifest}\nsize {:?}\nheadroom {}\nlabel {}\n",
        options.size, options.headroom, options.label
    );
    if let Some((source, target)) = &options.init {
        let bytes = std::fs::read(source).map_err(io("reading init", source))?;
        let _ = writeln!(text, "init {target} {}", hex(&Sha256::digest(&bytes)));
    }
    let _ = writeln!(text, "mke2fs {version}");
    hasher.update(text.as_bytes());
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_that_fit_the_inode_take_no_block_and_large_ones_do() {
        assert_eq!(xattr_blocks(&[]), 0);
        // security.capability (20 bytes): in the inode.
        assert_eq!(xattr_blocks(&[("security.capability".len(), 20)]), 0);
        assert_eq!(xattr_blocks(&[("user.label".len(), 1000)]), 1);
        assert_eq!(
            xattr_blocks(&[("user.a".len(), 3000), ("user.b".len(), 3000)]),
            2
        );
    }

    #[test]
    fn only_mke2fs_running_out_of_room_is_retried_larger() {
        let failed = |tool, stderr: &str| Error::ToolFailed {
            tool,
            status: "exit status: 1".to_owned(),
            stderr: stderr.to_owned(),
        };
        // What mke2fs 1.47 says (seen with a too small computed size).
        let full = "__populate_fs: Could not allocate block in ext2 filesystem while \
                    writing file \"f2460\"\nmke2fs: Could not allocate block in ext2 \
                    filesystem while populating file system\n";
        assert!(is_out_of_blocks(&failed("mke2fs", full)));
        assert!(is_out_of_blocks(&failed(
            "mke2fs",
            "No space left on device"
        )));
        assert!(!is_out_of_blocks(&failed("debugfs", full)));
        assert!(!is_out_of_blocks(&failed("mke2fs", "invalid block size")));
        let size = 40 << 20;
        assert_eq!(grown(size), size + (16 << 20));
        let large = 1 << 30;
        assert_eq!(grown(large), large + large / 4);
        assert_eq!(grown(4097) % BLOCK, 0);
    }

    #[test]
    fn uuid_is_derived_from_the_digest() {
        let digest: Digest =
            "sha256:2422821aed02500dd3a39dba17551184c867df6ccedcbc07128e099c8f52a25f"
                .parse()
                .expect("digest");
        assert_eq!(uuid_from(&digest), "2422821a-ed02-400d-93a3-9dba17551184");
    }

    #[test]
    fn journal_grows_with_the_file_system() {
        assert_eq!(journal_blocks(1000), 0);
        assert_eq!(journal_blocks(20_000), 1024);
        assert!(computed_size(100, 1000, 0) >= (100 + 1024) * BLOCK);
    }
}
