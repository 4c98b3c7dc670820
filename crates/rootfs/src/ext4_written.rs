//! The ext4 image of a stored image written by cachectl's own writer
//! ([`Ext4Input::Writer`]) from the merged entry stream: each layer is
//! indexed as it is decompressed (on its read-ahead thread; no copy is
//! kept), each regular file's content going straight into the image as it
//! is indexed, then the emit pass hands each entry to the writer, which
//! adds the metadata (content a later entry hid is freed). No `mke2fs`,
//! no `debugfs`, no tree, no root, no work directory; owners, modes,
//! devices, hardlinks and every extended attribute come from the layers.
//! An output asked for takes every write of the image as it is made (no
//! copy afterwards) and is synced; the image is then kept before it is
//! synced, marked with this boot (see `cache_files::servable`). Without
//! an output the image is synced before it is kept.
//!
//! [`Ext4Input::Writer`]: crate::Ext4Input::Writer

use crate::cache_files::{IMAGES, keep_image, keep_unsynced};
use crate::error::{Error, Result, io};
use crate::ext4::{FAKE_TIME, FlatBuild};
use crate::ext4_writer::{Ext4Writer, IMAGE, ImageFiles, ImageShape};
use crate::leftovers;
use crate::merge::EntrySink;
use crate::merge::index_image;
use crate::options::BuildOptions;
use crate::output::PendingOutput;
use crate::safe;
use crate::sparse_copy::{copy_sparse, give_mode_of};
use ociref::Digest;
use std::fs::File;
use std::path::Path;

/// What the cache key holds for an image of this writer: a new layout of
/// the image gets a new text.
pub(crate) const WRITER_KEY: &str = "cachectl ext4 writer 1";

/// Writes the ext4 image of the build: each regular file's content goes
/// into the image while its layer is indexed (decompressed on a thread of
/// its own, no copy anywhere), then the merged entries, without content,
/// complete it; kept at the build's cached path. Whether the output the
/// options ask for was written too: every write of the image goes to it
/// as well (it is copied from the image where that failed), and it is
/// synced and renamed into place before the image is kept unsynced. Where
/// a copy shares the image's extents, the output is copied and renamed in
/// once both are synced.
pub(crate) fn build_written(build: &FlatBuild<'_>) -> Result<bool> {
    let (store, image, options) = (build.store, build.image, build.options);
    let cache = store.derived_dir(IMAGES).map_err(safe::from_store)?;
    let partial = leftovers::partial_image(&cache, crate::FsType::Ext4)?;
    let seed = &image.manifest.digest;
    let shape = image_shape(options, seed);
    let (file, path) = (partial.as_file(), partial.path());
    let named =
        |err: Error| leftovers::named_in_cache(err.relocated(Path::new(IMAGE), path), &cache, path);
    // An output that cannot be started is reported once the image is kept.
    let output = options
        .output
        .as_deref()
        .map(|output| PendingOutput::begin(store, output));
    let mirroring =
        matches!(&output, Some(Ok(pending)) if !copy_shares_extents(file, pending.file()));
    let files = match &output {
        Some(Ok(pending)) if mirroring => ImageFiles::mirrored_into(file, pending.file()),
        _ => ImageFiles::new(file),
    };
    let mut writer = Ext4Writer::new(&files, &shape);
    let progress = options.unpack.progress.as_ref();
    index_image(
        store,
        image,
        None,
        false,
        (None, progress),
        Some(&mut writer),
    )
    .and_then(|mut merge| {
        if let Some((source, target)) = &options.init {
            merge.place(source, target)?;
        }
        complete(writer, &shape, |sink| merge.emit_placed(sink).map(drop))
    })
    .map_err(named)?;
    let mirrored = files.mirrored();
    let (synced, delivered) = match output {
        None => (file.sync_all(), None),
        Some(Err(err)) => (file.sync_all(), Some(Err(err))),
        // The caller gets the output synced; the image is kept before it
        // is synced, marked with this boot (see `cache_files::servable`),
        // so the disk takes the output first and the image after.
        Some(Ok(pending)) if mirroring => {
            let delivered = deliver(pending, mirrored, (file, path));
            let synced =
                match delivered.is_ok() && keep_unsynced(store, &cache, file, build.cached_path) {
                    true => Ok(()),
                    false => file.sync_all(),
                };
            (synced, Some(delivered))
        }
        Some(Ok(pending)) => {
            let (synced, delivered) = deliver_while_syncing(pending, (file, path));
            (synced, Some(delivered))
        }
    };
    synced.map_err(io("syncing", path)).map_err(named)?;
    keep_image(store, &cache, partial, build.cached_path, seed)?;
    delivered.map_or(Ok(false), |delivered| delivered.map(|()| true))
}

/// `statfs` magic numbers of file systems whose `copy_file_range` shares
/// extents between two files of the same file system (reflinks): XFS,
/// Btrfs, bcachefs and ZFS.
const SHARING_FILE_SYSTEMS: [u64; 4] = [0x5846_5342, 0x9123_683e, 0xca45_1a4e, 0x2fc1_2fc1];

/// Whether copying `image` into `output` once it is complete shares its
/// extents rather than writing its bytes again: both are on one file
/// system of [`SHARING_FILE_SYSTEMS`]. Then the output is copied, not
/// written along with the image.
fn copy_shares_extents(image: &File, output: &File) -> bool {
    let same_file_system = match (rustix::fs::fstat(image), rustix::fs::fstat(output)) {
        (Ok(image), Ok(output)) => image.st_dev == output.st_dev,
        _ => false,
    };
    // `f_type` is signed on some targets: compare the low 32 bits.
    same_file_system
        && rustix::fs::fstatfs(output)
            .is_ok_and(|fs| SHARING_FILE_SYSTEMS.contains(&(fs.f_type as u64 & 0xFFFF_FFFF)))
}

/// Writes the image `file` (at `path`) into the output `pending`: it
/// already holds the image when `mirrored`, else the image is copied.
fn fill_output(
    pending: &PendingOutput,
    mirrored: bool,
    (file, path): (&File, &Path),
) -> Result<()> {
    let (out, temp) = (pending.file(), pending.temp_path());
    let written = match mirrored {
        true => give_mode_of(file, path, out, temp).map(drop),
        // What the mirror holds is dropped first: the copy leaves holes
        // unwritten.
        false => out
            .set_len(0)
            .map_err(io("writing", temp))
            .and_then(|()| copy_sparse(file, path, out, temp)),
    };
    written.map_err(|err| pending.named(err))
}

/// Completes the output `pending` with the image `file` (at `path`),
/// see [`fill_output`].
fn deliver(pending: PendingOutput, mirrored: bool, image: (&File, &Path)) -> Result<()> {
    fill_output(&pending, mirrored, image)?;
    pending.complete(|| Ok(()))
}

/// Copies the image `file` (at `path`) into the output `pending` while
/// another thread syncs the image; the output is renamed into place only
/// once the image is synced. The sync's result, then the output's.
fn deliver_while_syncing(
    pending: PendingOutput,
    (file, path): (&File, &Path),
) -> (std::io::Result<()>, Result<()>) {
    let join = |handle: Option<std::thread::ScopedJoinHandle<'_, std::io::Result<()>>>| {
        handle.map_or(Ok(()), |handle| {
            handle
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the sync panicked")))
        })
    };
    std::thread::scope(|scope| {
        let mut syncing = Some(scope.spawn(|| file.sync_all()));
        let mut synced = None;
        let delivered = fill_output(&pending, false, (file, path)).and_then(|()| {
            pending.complete(|| {
                let result = join(syncing.take());
                let failed = result.is_err();
                synced = Some(result);
                match failed {
                    true => Err(Error::Io {
                        what: "syncing",
                        path: path.to_path_buf(),
                        source: std::io::Error::other("the image could not be synced"),
                    }),
                    false => Ok(()),
                }
            })
        });
        let synced = synced.unwrap_or_else(|| join(syncing.take()));
        (synced, delivered)
    })
}

/// Writes an ext4 image into `file` (empty; at `path`, for messages) from
/// the entries `emit` gives, their content with them (UUID from `seed`),
/// and syncs it.
pub(crate) fn make_written(
    file: &std::fs::File,
    path: &Path,
    options: &BuildOptions,
    seed: &Digest,
    emit: &dyn Fn(&mut dyn EntrySink) -> Result<u64>,
) -> Result<()> {
    let shape = image_shape(options, seed);
    let files = ImageFiles::new(file);
    let writer = Ext4Writer::new(&files, &shape);
    complete(writer, &shape, |sink| emit(sink).map(drop))
        .and_then(|()| file.sync_all().map_err(io("syncing", path)))
        .map_err(|err| err.relocated(Path::new(IMAGE), path))
}

/// Hands `writer` the entries `emit` gives and completes the image.
fn complete(
    mut writer: Ext4Writer<'_>,
    shape: &ImageShape,
    emit: impl FnOnce(&mut dyn EntrySink) -> Result<()>,
) -> Result<()> {
    let emitted = emit(&mut writer);
    if let Some(err) = writer.failure().or(emitted.err()) {
        return Err(err);
    }
    writer.finish(shape)
}

/// The shape `options` ask for, UUID from `seed`.
fn image_shape(options: &BuildOptions, seed: &Digest) -> ImageShape {
    ImageShape {
        size: options.size,
        headroom: options.headroom,
        label: options.label.clone(),
        uuid: crate::ext4::uuid_bytes(seed),
        time: FAKE_TIME.parse().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    /// An image of data, a hole and data, and an output `vm.ext4` being
    /// written beside it whose temp file holds `mirror` (what a mirror
    /// wrote before it was dropped).
    fn image_and_output(
        dir: &tempfile::TempDir,
        mirror: &[u8],
    ) -> (ocistore::Store, File, std::path::PathBuf, PendingOutput) {
        let store = ocistore::Store::open(dir.path().join("store")).expect("store");
        let path = dir.path().join("image");
        let image = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .expect("image");
        image.write_all_at(&[1; 4096], 0).expect("write");
        image.write_all_at(&[2; 4096], 1 << 20).expect("write");
        let pending = PendingOutput::begin(&store, &dir.path().join("vm.ext4")).expect("begun");
        pending.file().write_all_at(mirror, 0).expect("write");
        (store, image, path, pending)
    }

    #[test]
    fn an_output_the_mirror_gave_up_on_is_copied_whole_over_what_it_wrote() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The half-written mirror has bytes where the image has a hole.
        let (_store, image, path, pending) = image_and_output(&dir, &[9; 8192]);
        deliver(pending, false, (&image, &path)).expect("delivered");
        let ours = std::fs::read(&path).expect("read");
        let output = std::fs::read(dir.path().join("vm.ext4")).expect("read");
        assert!(ours == output, "the output differs from the image");
        assert_eq!(output[5000], 0, "the mirror's bytes stayed in a hole");
    }

    #[test]
    fn an_output_copied_while_the_image_syncs_equals_the_image() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_store, image, path, pending) = image_and_output(&dir, b"");
        let (synced, delivered) = deliver_while_syncing(pending, (&image, &path));
        synced.expect("synced");
        delivered.expect("delivered");
        let ours = std::fs::read(&path).expect("read");
        let output = std::fs::read(dir.path().join("vm.ext4")).expect("read");
        assert!(ours == output, "the output differs from the image");
    }

    #[test]
    fn a_mirrored_output_is_renamed_in_as_it_is_with_the_image_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_store, image, path, pending) = image_and_output(&dir, b"mirrored");
        use std::os::unix::fs::PermissionsExt;
        image
            .set_permissions(std::fs::Permissions::from_mode(0o4640))
            .expect("mode");
        deliver(pending, true, (&image, &path)).expect("delivered");
        let output = dir.path().join("vm.ext4");
        assert_eq!(std::fs::read(&output).expect("read"), b"mirrored");
        let mode = std::fs::metadata(&output)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o640, "{mode:o}");
        let names = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(names, 3, "store, image and output only");
    }
}
