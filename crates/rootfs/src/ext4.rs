//! ext4 images built with `mke2fs -d` from an unpacked tree, reproducible
//! and cached under the store.

use crate::cache_files::{IMAGES, keep_image, servable};
use crate::error::{Error, Result, check_keepable, io};
use crate::leftovers;
use crate::mke2fs::{Ext4Input, Mke2fsInfo, mke2fs_command};
use crate::options::BuildOptions;
use crate::output::deliver;
use crate::place::place_file;
use crate::safe;
use crate::scratch::{make_readable, remove_stale_work, with_work_dir};
use crate::sizing::{self, is_out_of_blocks, make_sized, measure};
use crate::tools::{find_tool, run};
use crate::unpack::{Recorded, UnpackReport, apply_image};
use ociref::Digest;
use ocistore::{ConfigSummary, Store, StoredImage};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The time `mke2fs` and `debugfs` see, and every inode's ctime/atime
/// otherwise copied from the host: 2023-11-14T22:13:20Z.
pub(crate) const FAKE_TIME: &str = "1700000000";

/// The `mke2fs.conf` every build uses, so the host's configuration cannot
/// change the features (and bytes) of an image. The usage types mke2fs
/// picks by size (`small` under 512 MiB, `floppy` under 3 MiB) hold what
/// the defaults hold: an empty stanza counts as missing, and mke2fs then
/// warns on every small image.
pub(crate) const MKE2FS_CONF: &str = "[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384

[fs_types]
\tsmall = {
\t\tinode_ratio = 16384
\t}
\tfloppy = {
\t\tinode_ratio = 16384
\t}
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
";

/// An image [`build`] made or found (ext4, squashfs or erofs).
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
    /// How it was made (see [`BuildOptions::input`]); `TarStream` for
    /// squashfs and erofs, which always read the stream.
    pub input: Ext4Input,
    /// Its file system type.
    pub fs: crate::FsType,
    /// The programs that make such an image, by name, each with the first
    /// line of its version text (what the cache key holds).
    pub tools: BTreeMap<String, String>,
}

/// Builds (or finds in the cache) an image of a stored image, of the file
/// system [`BuildOptions::fs`] names. squashfs and erofs images are made
/// from the merged tar stream (see docs/rootfs.md, "Read-only images"),
/// kept in `.cachectl/squashfs/` and `.cachectl/erofs/`; the rest of this
/// says how an ext4 image is made.
///
/// By default each layer is decompressed on a thread of its own and
/// indexed as it comes, every regular file's content going straight into
/// the image by this crate's own ext4 writer; the merged entries then
/// add the metadata (UUID and hash seed derived from the manifest digest,
/// every time fixed). No work directory is used. With
/// [`BuildOptions::input`] the merged stream is fed as a tar to
/// `mke2fs -d -` instead, or the layers are unpacked into a tree for
/// `mke2fs -d DIR` (both with a private work directory, on `/dev/shm`
/// when it has room, see [`BuildOptions::memory_scratch`], else
/// `.cachectl/rootfs-tmp/` under the store), with a private `mke2fs.conf`, a fixed
/// `E2FSPROGS_FAKE_TIME`, and `debugfs` setting every inode's ctime and
/// atime and, when the unpack was rootless, the owners and device nodes
/// the layers give. The result is kept at `.cachectl/ext4/<key>.ext4`,
/// key = SHA-256 of the manifest digest, the options and the writer's
/// format (or `mke2fs -V`). A store this process cannot write serves a
/// cached image; one not cached fails with [`Error::BuildNotKept`] before
/// anything is unpacked. Blocking.
pub fn build(stored: &StoredImage, options: &BuildOptions) -> Result<BuiltImage> {
    options.check()?;
    if options.fs != crate::FsType::Ext4 {
        return crate::readonly::build_readonly(stored, options);
    }
    let (store, image) = (stored.store(), stored.details());
    let manifest_digest = image.manifest.digest.clone();
    // mke2fs is looked for (and learned, once per binary: a cache hit
    // starts no child) only when an input of its is asked for.
    let maker = match options.input {
        None | Some(Ext4Input::Writer) => None,
        Some(_) => {
            let mke2fs = find_tool("mke2fs", options)?;
            let debugfs = find_tool("debugfs", options)?;
            let found = crate::mke2fs::detect_mke2fs(store, options)?;
            Some((mke2fs, debugfs, found))
        }
    };
    let (input, key_text, tool) = match &maker {
        None => (
            Ext4Input::Writer,
            crate::ext4_written::WRITER_KEY.to_owned(),
            ("cachectl", crate::ext4_written::WRITER_KEY.to_owned()),
        ),
        Some((_, _, found)) => {
            let input = choose_input(options, found)?;
            let mut key_text = found.version.clone();
            // The two inputs give different bytes (atime and ctime): their
            // own keys.
            if input == Ext4Input::TarStream {
                key_text.push_str("\ninput tar-stream");
            }
            let version = found.version.lines().next().unwrap_or("").trim();
            (input, key_text, ("mke2fs", version.to_owned()))
        }
    };
    let key = cache_key(&manifest_digest, options, &key_text)?;
    let cache_dir = store.root().join(".cachectl/ext4");
    let cached_path = cache_dir.join(format!("{key}.ext4"));
    // A link, FIFO or hard link planted at the name is removed: built again.
    let cached = safe::cached_file(store, &cached_path)?
        && servable(store, &cached_path, options.output.is_none())?;
    let mut output_made = false;
    if !cached {
        // What killed builds left (a hit sweeps nothing: its cost does not
        // grow with the cache); a sweep that fails does not stop this one.
        let _ = remove_stale_work(store);
        check_keepable(store, &cache_dir, &manifest_digest)?;
        let none = Path::new("");
        let tools = match &maker {
            Some((mke2fs, debugfs, _)) => Tools { mke2fs, debugfs },
            None => Tools {
                mke2fs: none,
                debugfs: none,
            },
        };
        output_made = build_into(&FlatBuild {
            store,
            image,
            options,
            tools,
            cached_path: &cached_path,
            input,
        })?;
    }
    let kept = Kept {
        cached_path,
        cached,
        input,
        fs: crate::FsType::Ext4,
        tool,
        output_made,
    };
    kept.delivered(store, image, options)
}

/// An image kept in the cache (just made unless `cached`), and what made
/// it.
pub(crate) struct Kept {
    pub(crate) cached_path: PathBuf,
    pub(crate) cached: bool,
    pub(crate) input: Ext4Input,
    pub(crate) fs: crate::FsType,
    /// The program that makes such images, and its version line.
    pub(crate) tool: (&'static str, String),
    /// Whether the build already wrote the output `options` ask for.
    pub(crate) output_made: bool,
}

impl Kept {
    /// The image of `image` as [`build`] gives it: copied to the output
    /// `options` asks for, else the cached file itself, with its size.
    pub(crate) fn delivered(
        self,
        store: &Store,
        image: &ocistore::ImageDetails,
        options: &BuildOptions,
    ) -> Result<BuiltImage> {
        let size = safe::file_len(store, &self.cached_path)?;
        let path = match (self.output_made, options.output.as_deref()) {
            (true, Some(output)) => output.to_path_buf(),
            (_, output) => deliver(store, self.cached_path, output)?,
        };
        Ok(BuiltImage {
            path,
            manifest_digest: image.manifest.digest.clone(),
            layers: image
                .layers
                .iter()
                .map(|l| l.descriptor.digest.clone())
                .collect(),
            size,
            cached: self.cached,
            config: image.config.clone(),
            input: self.input,
            fs: self.fs,
            tools: BTreeMap::from([(self.tool.0.to_owned(), self.tool.1)]),
        })
    }
}

/// The input a flattened build reads: as asked, else the merged tar
/// stream where the host's `mke2fs` reads tars, else the tree.
pub(crate) fn choose_input(options: &BuildOptions, found: &Mke2fsInfo) -> Result<Ext4Input> {
    match options.input {
        Some(Ext4Input::TarStream) if found.input != Ext4Input::TarStream => {
            Err(Error::InvalidOption {
                reason: format!(
                    "{} ({}) cannot read a tar: e2fsprogs 1.47.1 or later with libarchive is needed",
                    found.path.display(),
                    found.version.lines().next().unwrap_or("mke2fs").trim()
                ),
            })
        }
        Some(input) => Ok(input),
        None => Ok(found.input),
    }
}

/// What [`build`] makes one flattened image from, and where it keeps it.
pub(crate) struct FlatBuild<'a> {
    pub(crate) store: &'a Store,
    pub(crate) image: &'a ocistore::ImageDetails,
    pub(crate) options: &'a BuildOptions,
    tools: Tools<'a>,
    /// Where it is kept: `.cachectl/ext4/<key>.ext4` under the store.
    pub(crate) cached_path: &'a Path,
    /// What `mke2fs -d` reads.
    input: Ext4Input,
}

/// Makes the image; whether the output the options ask for was written
/// with it.
fn build_into(build: &FlatBuild<'_>) -> Result<bool> {
    let (store, image) = (build.store, build.image);
    store.derived_dir(IMAGES).map_err(safe::from_store)?;
    // The writer needs no work directory.
    if build.input == Ext4Input::Writer {
        return crate::ext4_written::build_written(build);
    }
    let sizes = image.layers.iter().map(|l| l.descriptor.size);
    with_work_dir(
        store,
        build.options.memory_scratch,
        "build-",
        sizes,
        |work| match build.input {
            Ext4Input::TarStream => crate::ext4_stream::build_streamed(build, work.path()),
            _ => build_in(build, work.path()),
        },
    )
    .map(|()| false)
}

/// Unpacks the image into `work/tree` and makes the image from it, with
/// `work` for the build's own files.
fn build_in(build: &FlatBuild<'_>, work: &Path) -> Result<()> {
    let (store, image, options) = (build.store, build.image, build.options);
    let tree = work.join("tree");
    std::fs::create_dir(&tree).map_err(io("creating", &tree))?;
    let mut report = apply_image(store, image, &tree, &options.unpack)?;
    if let Some((source, target)) = &options.init {
        place_file(&tree, source, target, &mut report.records)?;
    }
    let input = ImageInput {
        tree: &tree,
        report: &report,
        uuid_digest: &image.manifest.digest,
        owner: &image.manifest.digest,
        store,
    };
    make_image(&build.tools, &input, options, work, build.cached_path)
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
    cached_path: &Path,
) -> Result<()> {
    let (mke2fs, debugfs, tree) = (tools.mke2fs, tools.debugfs, input.tree);
    let records = &input.report.records;
    let rootless = input.report.rootless;
    // The image is made and renamed through the cache directory's handle:
    // a directory swapped in at its name is never written.
    let cache = input.store.derived_dir(IMAGES).map_err(safe::from_store)?;
    let partial = run_mke2fs(mke2fs, input, options, work, &cache)?;
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
    )
    .map_err(|err| leftovers::named_in_cache(err, &cache, partial.path()))?;
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
    keep_image(input.store, &cache, partial, cached_path, input.owner)
}

/// Runs `mke2fs -d` on the tree of `input` into a new partial image in
/// `cache` (locked while this build lives, so the next build or `gc` can
/// tell one a killed build left; see `leftovers`), sized as asked or
/// computed. The image's path goes through `cache`'s anchor.
fn run_mke2fs(
    mke2fs: &Path,
    input: &ImageInput<'_>,
    options: &BuildOptions,
    work: &Path,
    cache: &ocistore::StoreDir,
) -> Result<tempfile::NamedTempFile> {
    let tree = input.tree;
    make_readable(tree)?;
    let (blocks, inodes) = measure(tree, &input.report.pending_xattrs)?;
    let inode_count = sizing::inode_count(inodes);
    let uuid = uuid_from(input.uuid_digest);
    let conf = work.join("mke2fs.conf");
    std::fs::write(&conf, MKE2FS_CONF).map_err(io("writing", &conf))?;
    let partial = leftovers::partial_image(cache, crate::FsType::Ext4)?;
    make_sized(
        options.size,
        options.headroom,
        (blocks, inode_count),
        is_out_of_blocks,
        |size| {
            run(
                mke2fs_command(mke2fs, &conf, &options.label, &uuid, inode_count)
                    .arg("-d")
                    .arg(tree)
                    .arg(partial.path())
                    .arg(format!("{}k", size / 1024)),
                "mke2fs",
            )
            .map(drop)
        },
    )
    .map_err(|err| leftovers::named_in_cache(err, cache, partial.path()))?;
    Ok(partial)
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
    // The root's time from a layer's `./`, as the unpack gives its target
    // and mke2fs gives the root from a tar (last: linking in the root
    // above may have touched it).
    if let Some(root) = records.get(Path::new("")) {
        let _ = writeln!(out, "sif / mtime @{}", root.mtime);
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

/// A UUID (version 4 layout) made from the first bytes of the digest, as
/// bytes (what the ext4 writer stores).
pub(crate) fn uuid_bytes(digest: &Digest) -> [u8; 16] {
    let hex = digest.encoded();
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("00"), 16).unwrap_or(0);
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    bytes
}

/// [`uuid_bytes`] as text (what `mke2fs -U` takes).
pub(crate) fn uuid_from(digest: &Digest) -> String {
    let h: String = uuid_bytes(digest)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
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
    text.push_str(&init_key_line(options)?);
    let _ = writeln!(text, "mke2fs {version}");
    hasher.update(text.as_bytes());
    Ok(hex(&hasher.finalize()))
}

/// The cache key's line for the init of `options` (its guest path and the
/// SHA-256 of its content), empty without one.
pub(crate) fn init_key_line(options: &BuildOptions) -> Result<String> {
    match &options.init {
        Some((source, target)) => {
            let bytes = std::fs::read(source).map_err(io("reading init", source))?;
            Ok(format!("init {target} {}\n", hex(&Sha256::digest(&bytes))))
        }
        None => Ok(String::new()),
    }
}

/// Lower-case hexadecimal of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_derived_from_the_digest() {
        let digest: Digest =
            "sha256:2422821aed02500dd3a39dba17551184c867df6ccedcbc07128e099c8f52a25f"
                .parse()
                .expect("digest");
        assert_eq!(uuid_from(&digest), "2422821a-ed02-400d-93a3-9dba17551184");
    }
}
