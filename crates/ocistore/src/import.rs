//! Importing image archives: an OCI archive (a tar of an OCI image layout,
//! as `skopeo copy … oci-archive:FILE` writes) or a `docker save` archive
//! (`manifest.json`, classic or Docker 25+), plain, gzip or zstd.
//!
//! The archive is read in one sequential pass. Each regular file is
//! streamed into `.cachectl/ingest/` while hashed, never held in memory
//! (only small JSON files are, up to [`scan::MAX_JSON_BYTES`]):
//! - `blobs/<alg>/<hex>` entries must hash to their name; the missing ones
//!   are renamed into `blobs/` at once, the present ones are skipped;
//! - other files (docker layers) stay in temp files until the end.
//!
//! Then every image is checked to be complete, the records are written and
//! `index.json` is updated once. An import that fails leaves `index.json`
//! and the records as they were, and no temp file; blobs it already
//! verified and moved into `blobs/` stay (valid, and `gc` removes them).
//!
//! No name from the archive is ever joined to a filesystem path: entry
//! names are only compared with the names the archive's JSON files use, and
//! entries named with `..` or an absolute path never match.
//!
//! Its parts: [`scan`] reads the archive in its one pass, [`oci_archive`]
//! finds the images of an OCI archive and [`docker_archive`] converts those
//! of a `docker save` archive; this module names what they found.

mod docker_archive;
mod oci_archive;
mod scan;
#[cfg(test)]
mod tests;

use crate::error::{Error, Result};
use crate::layout::{IndexEntry, Store, now_unix_ms};
use crate::records::Record;
use ocidist::{Descriptor, ProgressFn};
use ociref::{Digest, Platform, Reference};
use std::path::Path;

/// How to import.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ImportOptions {
    /// The name of an image the archive does not name fully: an OCI
    /// archive entry whose `org.opencontainers.image.ref.name` is a bare tag
    /// (`v1`, as skopeo writes) or missing, or a docker archive item
    /// without `RepoTags`. Only one image may take it.
    pub name: Option<Reference>,
    /// The platform to pick from an index; `None` means the host's.
    pub platform: Option<Platform>,
    /// Told how far the archive has been read in its one pass:
    /// [`ocidist::Phase::Bytes`] events of [`ocidist::Subject::File`] (the
    /// archive's path, `done` of `total` bytes of the file), then
    /// [`ocidist::Phase::Finished`] once the pass is over.
    pub progress: Option<ProgressFn>,
    /// Import one image only, as `copy` does: the one the archive names
    /// [`ImportOptions::select`] when that is set, else the archive's only
    /// image ([`Error::ArchiveAmbiguous`] when it holds several). That one
    /// is stored under [`ImportOptions::name`] when set, whatever the
    /// archive calls it.
    pub one: bool,
    /// With [`ImportOptions::one`], the image to pick: an OCI archive's
    /// `org.opencontainers.image.ref.name` (a bare tag such as `v1`, or a
    /// full reference) or a docker archive's `RepoTags` entry
    /// ([`Error::ArchiveNoSuchImage`] when none matches).
    pub select: Option<String>,
}

impl ImportOptions {
    /// These options reporting the archive's read progress to `progress`.
    pub fn with_progress(mut self, progress: ProgressFn) -> Self {
        self.progress = Some(progress);
        self
    }

    /// These options with `name` for an image the archive does not name.
    pub fn with_name(mut self, name: Reference) -> Self {
        self.name = Some(name);
        self
    }

    /// These options importing one image ([`ImportOptions::one`]): the
    /// one the archive names `select`, else its only one.
    pub fn with_one(mut self, select: Option<String>) -> Self {
        self.one = true;
        self.select = select;
        self
    }

    /// These options picking `platform` from an index.
    pub fn with_platform(mut self, platform: Platform) -> Self {
        self.platform = Some(platform);
        self
    }
}

/// One image an import stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportedImage {
    /// The reference name now in `index.json` (full, normalized).
    pub reference: String,
    /// The image manifest it names.
    pub manifest_digest: Digest,
}

/// What [`Store::import`] did.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ImportReport {
    /// The images stored, in the order of the archive.
    pub images: Vec<ImportedImage>,
    /// Blobs written into the store.
    pub blobs_written: usize,
    /// Blobs the store already held (not written again).
    pub blobs_reused: usize,
    /// Bytes of the blobs written.
    pub bytes_written: u64,
}

/// An image ready to be named: the manifest descriptor and its record
/// fields.
struct Ready {
    name: String,
    manifest: Descriptor,
    index_digest: Option<Digest>,
    platform: Option<Platform>,
    compressed_size: u64,
}

impl Store {
    /// Imports the image archive at `path` (see the [module docs]: format
    /// and compression are told from the content, every blob is verified),
    /// or the OCI image layout directory at `path`, read as the archive of
    /// it would be.
    /// Blocking: call it from `spawn_blocking` in async code.
    ///
    /// [module docs]: crate::import
    pub fn import(&self, path: &Path, options: &ImportOptions) -> Result<ImportReport> {
        // Like a pull: `gc` must not sweep blobs written before the index
        // update.
        let _lease = self.lock_shared("gc.lock")?;
        let mut report = ImportReport::default();
        let scan = self.scan_archive(path, options.progress.as_ref(), &mut report)?;
        let ready = if scan.json.contains_key("manifest.json") {
            self.docker_images(path, scan, options, &mut report)?
        } else {
            self.oci_images(path, &scan, options)?
        };
        let blobs = self.root().join("blobs").join("sha256");
        self.open_dir(&blobs)?.sync()?;
        let now = now_unix_ms();
        let mut entries = Vec::new();
        for image in ready {
            let record = Record {
                reference: image.name.clone(),
                source: image.name.clone(),
                manifest_digest: image.manifest.digest.clone(),
                index_digest: image.index_digest,
                platforms: image.platform.iter().cloned().collect(),
                platform: image.platform,
                compressed_size: image.compressed_size,
                uncompressed_size: None,
                referrers: Vec::new(),
                stored_at: now,
                last_used_at: now,
                checked_at: None,
            };
            report.images.push(ImportedImage {
                reference: image.name.clone(),
                manifest_digest: image.manifest.digest.clone(),
            });
            let mut entry = IndexEntry::new(&image.manifest);
            if let Some(platform) = &record.platform {
                entry.set_platform(platform);
            }
            entries.push((record, entry));
        }
        self.update_index(|index| {
            for (mut record, entry) in entries {
                // One entry per reference and platform (see `entries`); the
                // record first: a reader that finds the entry finds its
                // record too.
                record.reference =
                    self.name_for(index, &record.source, record.platform.as_ref())?;
                self.write_record(&record)?;
                index.put(&record.reference, entry);
            }
            Ok::<(), Error>(())
        })??;
        Ok(report)
    }
}

/// The number of the one image [`ImportOptions::one`] picks among `items`
/// (each image's names in the archive): the one named `select` (as
/// written, or as the same normalized reference), else the only one.
fn pick_one(archive: &Path, items: &[Vec<String>], select: Option<&str>) -> Result<usize> {
    let listed = || {
        let names: Vec<String> = items
            .iter()
            .map(|names| match names.as_slice() {
                [] => "(unnamed)".to_owned(),
                names => names.join(" = "),
            })
            .collect();
        names.join(", ")
    };
    let matching: Vec<usize> = match select {
        None => (0..items.len()).collect(),
        Some(wanted) => {
            let normalized = |text: &str| text.parse::<Reference>().ok().map(|r| r.to_string());
            let wanted_full = normalized(wanted);
            (0..items.len())
                .filter(|&n| {
                    items[n].iter().any(|name| {
                        name == wanted || (wanted_full.is_some() && normalized(name) == wanted_full)
                    })
                })
                .collect()
        }
    };
    match (matching.as_slice(), select) {
        ([one], _) => Ok(*one),
        ([], Some(wanted)) => Err(Error::ArchiveNoSuchImage {
            archive: archive.to_path_buf(),
            name: wanted.to_owned(),
            names: listed(),
        }),
        _ => Err(Error::ArchiveAmbiguous {
            archive: archive.to_path_buf(),
            names: listed(),
        }),
    }
}

/// Parses the JSON entry `name`.
fn parse_entry<T: serde::de::DeserializeOwned>(
    archive: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|err| Error::ArchiveEntry {
        archive: archive.to_path_buf(),
        entry: name.to_owned(),
        reason: err.to_string(),
    })
}
