//! Decisions about ambiguous cases, in one place.
//!
//! # Entry paths
//! - A leading `./` and empty components are dropped. **Absolute paths are
//!   refused**, not made relative: layers written by image builders never
//!   hold them, so one that does was crafted; refusing says so loudly
//!   ([`Error::UnsafeEntry`](crate::Error::UnsafeEntry)). A `..`
//!   component anywhere is refused too, even when it would stay inside.
//! - Every parent component is checked with `symlink_metadata` before an
//!   entry is written: a parent that is a symlink (planted by this layer or
//!   an earlier one) is refused, never followed. A parent found to be a
//!   real directory is not checked again until something at its path is
//!   removed. Missing parents are created with mode 0755, recorded as
//!   owner 0:0, and given mtime 0 (the epoch, so the result never depends
//!   on when it was unpacked; umoci uses the time of the unpack).
//! - An entry replacing something removes it first (a directory replacing
//!   a directory keeps it and its content). A regular file is created with
//!   `O_CREAT|O_EXCL` (tried first, and again once what was there is
//!   removed); symlinks, device nodes and fifos are made with
//!   `symlink(2)`/`mknod(2)`, which fail on an existing name: the last
//!   component is never followed either. The check and the write
//!   are two steps: this is safe because nothing else writes into the
//!   target during an unpack (the target must be absent or empty, and is
//!   private to the caller), not against a concurrent attacker.
//! - A hardlink's target goes through the same cleaning and parent check,
//!   must exist, and must not be a directory or the root; `link(2)` does
//!   not follow a target that is a symlink. A hardlink to its own path
//!   changes nothing. In a per-layer tree (see Whiteouts) a target that
//!   only a lower layer holds is copied instead (below).
//!
//! # Placed files
//! - The init of [`build`](crate::build) is placed where the guest will
//!   look for it, not where the path's text says: parent symlinks are
//!   followed inside the image (absolute targets from the image root, `..`
//!   stopping at it, at most 40 links), unlike layer entries, whose
//!   symlinked parents are refused. A layer is untrusted input; the init
//!   path is the caller's, and on merged-`/usr` images `/sbin/init` only
//!   works through the `/sbin -> usr/sbin` link. The last component is
//!   replaced, never followed, and a directory there is refused rather
//!   than removed with its content.
//!
//! # Whiteouts
//! - `.wh.<name>` removes `<name>` as lower layers left it (a directory
//!   with everything below it); a path written earlier by the same layer is
//!   kept (the spec forbids both in one layer; keeping is the harmless
//!   reading). Whiteout entries never appear in the output of an unpack,
//!   a flattened build or an export.
//! - `.wh..wh..opq` removes from its directory everything that this layer
//!   has not written: the layer's own paths and their ancestors are
//!   tracked, so entries before the marker survive, and entries after it are
//!   written afterwards anyway.
//! - A whiteout whose parent is a symlink, or an opaque marker whose
//!   directory is a symlink, is refused (it could delete outside the
//!   target); one whose path is not there does nothing. `.wh.`, `.wh..`
//!   and `.wh...` (a whiteout of nothing, `.` or `..`) are refused. An
//!   entry of any type that names a file is a whiteout when its name
//!   starts with `.wh.`.
//! - Per-layer images ([`build_layers`](crate::build_layers)) are overlayfs
//!   lowers, so that their overlay shows what the unpack holds: a
//!   whiteout that removed something becomes a character device 0:0 at
//!   `<name>` (a whiteout of what the same layer wrote earlier is ignored,
//!   as above, and one below a directory no layer has is left out: it
//!   hides nothing); `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its
//!   directory, as does a directory the layer whited out and made again;
//!   a directory the layer writes below without declaring it carries the
//!   owner, mode, mtime and attributes the lower layers gave it (an
//!   overlay shows the upper directory's), and a declared one adds its
//!   attributes to theirs. A hardlink to a file of a lower layer becomes a
//!   copy of that file with the owner, mode, mtime and extended attributes
//!   the lower layers gave it (from a tree, a regular file is read from
//!   the merged tree of the layers below, its parents real directories
//!   there too, and a symlink, fifo or device node is made again).
//!
//! # Metadata
//! - Directory modes and mtimes are applied once all layers are in,
//!   children first, so a read-only directory can still be filled and its
//!   mtime is the one its last layer gives. The root directory keeps its
//!   mode unless a layer carries `./`.
//! - PAX records override the header: `uid` and `gid` (32-bit decimal
//!   numbers), `mtime`, and `SCHILY.xattr.*` (below); `path`, `linkpath`
//!   and `size` are applied by `tar`. A `uid`, `gid` or `mtime` record
//!   that cannot be read (not UTF-8, not a number), or a malformed PAX
//!   header, refuses the entry.
//! - mtimes have one-second precision: a PAX `mtime` with a fraction is
//!   read for its whole seconds, the fraction dropped towards zero
//!   (`1.9` is 1, `-1.5` is -1; times before 1970 are kept). atime is set
//!   to the mtime.
//! - Owners: as root, every entry gets the uid/gid of its header, or of
//!   its PAX records (symlinks with `lchown`); owners are set before the
//!   mode so setuid/setgid bits survive. Rootless (asked, or not running
//!   as root): nothing is chowned and no character or block device is
//!   created; both are counted in [`NotApplied`](crate::NotApplied), and
//!   recorded for [`build`](crate::build), which applies them inside the
//!   ext4 image with `debugfs`. Fifos need no privilege and are always
//!   created.
//! - Extended attributes (`SCHILY.xattr.*` PAX records) are set on
//!   directories (not the root) and regular files, without following
//!   symlinks (those of other entries are not applied); an
//!   attribute the host file system does not support, or any refused one
//!   when rootless, is counted, not fatal, and kept for
//!   [`build`](crate::build), which sets it inside the image (`ea_set`).
//! - [`UnpackOptions`](crate::UnpackOptions) `max_entries` counts every
//!   tar entry the `tar` crate yields (whiteouts, global PAX headers and
//!   volume labels included; local PAX headers and GNU long names are
//!   part of their entry); `max_bytes` stops before a regular file whose
//!   size (a sparse file's full size) would take the bytes written past
//!   it.
//!
//! # Layers
//! - The compression comes from the media type (OCI and Docker names, for
//!   gzip, zstd and none) and must match the blob's magic bytes: a
//!   mislabelled layer is an error naming its digest. gzip may have several
//!   members and zstd several frames.
//! - Tar entries are read with the `tar` crate (headers, PAX and GNU long
//!   names) and applied by this crate: `Entry::unpack` is never used.
//!   By type:
//!   - regular (`0`, NUL), contiguous (`7`): a regular file; old GNU
//!     sparse (`S`): a regular file, as `tar` expands it, its aligned
//!     4 KiB blocks of zeros left as holes; a sparse file in PAX form (formats 0.0, 0.1 and 1.0,
//!     as GNU tar writes them) is written with its holes;
//!   - directory (`5`) and GNU dumpdir (`D`, its name list ignored): a
//!     directory; symlink (`2`), hardlink (`1`), character and block
//!     devices (`3`, `4`) and fifo (`6`) as such;
//!   - PAX headers (`x`, `g`), GNU long names (`L`, `K`) and a GNU volume
//!     label (`V`) name no file and are skipped;
//!   - GNU multi-volume continuations (`M`) and rename lists (`N`) are
//!     refused ([`Error::UnsafeEntry`](crate::Error::UnsafeEntry)): no file
//!     can be made of them;
//!   - any other type is extracted as a regular file, as POSIX asks and
//!     GNU tar does (umoci refuses the layer).
//!
//! # Speed
//! - gzip and zstd layers are decompressed on a thread of their own, a few
//!   256 KiB chunks ahead of the tar reader (`read_ahead`): decompression
//!   and the file-system calls overlap, while every write into the target
//!   stays in stream order on one thread, so the safety checks above keep
//!   their simple sequential reasoning. File creation itself is not spread
//!   over threads (figures: `cargo xtask bench unpack`, in
//!   docs/benchmarks.md).
//! - [`build`](crate::build) unpacks its intermediate tree on `/dev/shm`
//!   when the tmpfs has room for five times the compressed layers (plus
//!   64 MiB) and `MemAvailable` is at least twice that; a tree that is
//!   larger after all fills the tmpfs, and on `ENOSPC`/`EDQUOT` the build
//!   starts again under the store. Turned off with
//!   [`BuildOptions::memory_scratch`](crate::BuildOptions::memory_scratch).
//! - `build`'s `output` copy writes the data extents only
//!   (`SEEK_DATA`/`SEEK_HOLE` + `copy_file_range`): `std::fs::copy` wrote
//!   the image's holes as zeros (190 MB instead of ~100 MB).
//!
//! # Merged stream
//! - [`merged_tar`](crate::merged_tar) and
//!   [`merge_entries`](crate::merge_entries) give the final tree as a stream
//!   of entries without unpacking: a first pass reads every layer's
//!   headers, base first, and applies them to a tree in memory by the rules
//!   above (same refusals, same error: layer, entry, reason, before any
//!   entry is emitted); a second pass emits each surviving path once,
//!   regular files with content read from their entry. Duplicates within a
//!   layer are resolved by the first pass too: the last one wins, a
//!   hardlink made to an earlier one keeps that earlier content (its inode
//!   outlives the name), and the name that carries the content is then the
//!   link's. A single layer takes both passes too: an entry of it can
//!   be replaced or whited out by a later one of the same layer, and an
//!   emitted entry is never taken back.
//! - Order: layer order (an inode at the entry that made it, its other
//!   names as hardlinks at the entries that linked them; a directory with
//!   its final metadata at its first entry or before the first thing below
//!   it), so parents come before children and link targets before links,
//!   but a directory's entries are not contiguous: a consumer sets
//!   directory times at the end (`mke2fs -d -` writes the inode whole;
//!   GNU tar needs `--delay-directory-restore`). With `sorted` (what
//!   [`export_tar`](crate::export_tar) uses) the tree comes in path order,
//!   content read by seeking in the uncompressed layer tars.
//! - Memory: the index holds every path and inode, about 420 bytes an
//!   entry (41 MB for 100,000 entries; measured by
//!   `index_of_a_hundred_thousand_entries_stays_small`); content is never
//!   held. Reading the blobs costs two decompressions (the second stops
//!   after the last surviving file); with the layer tars the first pass
//!   seeks over content.
//! - The `./` entry of a layer gives the root's metadata and is emitted
//!   (not in `sorted` order: an export never changed the directory it is
//!   extracted into). Symlinks, devices and fifos linked by hardlinks stay
//!   linked, as in the unpacked tree. [`UnpackOptions`](crate::UnpackOptions)
//!   limits do not apply.
//!
//! # ext4
//! - See [`build`](crate::build): `mke2fs -d` from an unpacked tree, with
//!   UUID and hash seed derived from the manifest digest and a fixed
//!   `E2FSPROGS_FAKE_TIME`, so the same image and options give the same
//!   bytes.
