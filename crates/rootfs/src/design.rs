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
//!   an earlier one) is refused, never followed. Missing parents are
//!   created with mode 0755, owner 0:0 and mtime 0 (the epoch, so the
//!   result never depends on when it was unpacked; umoci uses the time of
//!   the unpack). A file, symlink or device replacing
//!   something removes it first and is created with `O_CREAT|O_EXCL`, so
//!   the last component is never followed either. The check and the write
//!   are two steps: this is safe because nothing else writes into the
//!   target during an unpack (the target must be absent or empty, and is
//!   private to the caller), not against a concurrent attacker.
//! - A hardlink's target goes through the same cleaning and parent check,
//!   must exist, and must not be a directory; `link(2)` does not follow a
//!   target that is a symlink.
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
//!   reading). Whiteout entries never appear in the output.
//! - `.wh..wh..opq` removes from its directory everything that this layer
//!   has not written: the layer's own paths and their ancestors are
//!   tracked, so entries before the marker survive, and entries after it are
//!   written afterwards anyway.
//! - A whiteout whose parent is a symlink is refused (it could delete
//!   outside the target).
//!
//! # Metadata
//! - Directory modes and mtimes are applied once all layers are in,
//!   children first, so a read-only directory can still be filled and its
//!   mtime is the one its last layer gives. The root directory keeps its
//!   mode unless a layer carries `./`.
//! - mtimes have one-second precision (the tar header's); atime is set to
//!   the mtime. PAX `mtime` records with fractions are not read.
//! - Owners: as root, every entry gets the uid/gid of its header (symlinks
//!   with `lchown`); owners are set before the mode so setuid/setgid bits
//!   survive. Rootless (asked, or not running as root): nothing is chowned
//!   and no character or block device is created; both are counted in
//!   [`NotApplied`](crate::NotApplied), and recorded for [`build`](crate::build),
//!   which applies them inside the ext4 image with `debugfs`. Fifos need no
//!   privilege and are always created.
//! - Extended attributes (`SCHILY.xattr.*` PAX records) are set without
//!   following symlinks; an attribute the host file system does not
//!   support, or any refused one when rootless, is counted, not fatal.
//!
//! # Layers
//! - The compression comes from the media type (OCI and Docker names, for
//!   gzip, zstd and none) and must match the blob's magic bytes: a
//!   mislabelled layer is an error naming its digest. gzip may have several
//!   members and zstd several frames.
//! - Tar entries are read with the `tar` crate (headers, PAX and GNU long
//!   names) and applied by this crate: `Entry::unpack` is never used.
//!   Entry types other than file, directory, symlink, hardlink, device and
//!   fifo are skipped.
//!
//! # Speed
//! - gzip and zstd layers are decompressed on a thread of their own, a few
//!   256 KiB chunks ahead of the tar reader (`read_ahead`): decompression
//!   and the file-system calls overlap, while every write into the target
//!   stays in stream order on one thread, so the safety checks above keep
//!   their simple sequential reasoning. File creation itself is not spread
//!   over threads: on the bench image (100 files of 1 MiB) the unpack went
//!   from 300 to 168 ms with the read-ahead alone; many-small-file images,
//!   where inode creation dominates, were not re-measured.
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
//! # ext4
//! - See [`build`](crate::build): `mke2fs -d` from an unpacked tree, with
//!   UUID and hash seed derived from the manifest digest and a fixed
//!   `E2FSPROGS_FAKE_TIME`, so the same image and options give the same
//!   bytes.
