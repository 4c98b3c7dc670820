//! Records: what the store knows about each `index.json` entry beyond the
//! entry itself (where it came from, which platform, when it was stored and
//! last used). One small JSON file per entry, `.cachectl/records/<sha256 of
//! the entry name>.json` (the reference, or `REF@platform` for a further
//! platform of it), replaced atomically; marking an image used
//! rewrites only its record, never `index.json`.

use crate::error::{Error, Result};
use crate::layout::{Store, now_unix_ms};
use crate::safe::is_not_found;
use ociref::{Digest, Platform};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What the store recorded about one reference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Record {
    /// The entry name as in `index.json`: the full, normalized reference,
    /// or `REF@os/arch[/variant]` for a further platform of it.
    pub reference: String,
    /// The reference it was pulled from (differs from `reference` after a
    /// `tag`).
    pub source: String,
    /// The image manifest stored for it.
    pub manifest_digest: Digest,
    /// The index the manifest was picked from, when pulled through one.
    pub index_digest: Option<Digest>,
    /// The platform of the image, when known (`None` when the entry is an
    /// index holding every platform).
    pub platform: Option<Platform>,
    /// Every platform stored for the reference (one for a single-platform
    /// image whose platform is known).
    #[serde(default)]
    pub platforms: Vec<Platform>,
    /// Sum of the sizes of manifests, configs and layers, as stored.
    pub compressed_size: u64,
    /// The same with every layer counted decompressed: about what the image
    /// takes once unpacked. `None` when not computed (images another tool
    /// wrote, or imported ones before it was asked for).
    #[serde(default)]
    pub uncompressed_size: Option<u64>,
    /// Referrers (signatures, SBOMs) stored with the image.
    #[serde(default)]
    pub referrers: Vec<Digest>,
    /// When it was stored (milliseconds since the Unix epoch).
    pub stored_at: u64,
    /// When it was last pulled or used (milliseconds since the Unix
    /// epoch).
    pub last_used_at: u64,
    /// When a registry last said the reference points at this content
    /// (milliseconds since the Unix epoch): the pull that stored it, and
    /// every pull since that found it unchanged. `None` when no registry
    /// was asked (imported, or stored before this was kept); a tag keeps
    /// its source's.
    #[serde(default)]
    pub checked_at: Option<u64>,
}

impl Record {
    /// A record for an entry another tool wrote: what `index.json` says,
    /// nothing more.
    pub(crate) fn unknown(name: &str, digest: &Digest) -> Record {
        Record {
            reference: name.to_owned(),
            source: name.to_owned(),
            manifest_digest: digest.clone(),
            index_digest: None,
            platform: None,
            platforms: Vec::new(),
            compressed_size: 0,
            uncompressed_size: None,
            referrers: Vec::new(),
            stored_at: 0,
            last_used_at: 0,
            checked_at: None,
        }
    }
}

impl Store {
    fn record_path(&self, name: &str) -> PathBuf {
        let key = Digest::sha256_of(name.as_bytes());
        self.records_dir().join(format!("{}.json", key.encoded()))
    }

    /// The record of the reference named `name`, if any. Blocking.
    pub fn record(&self, name: &str) -> Result<Option<Record>> {
        let path = self.record_path(name);
        let bytes = match self.read_file(&path) {
            Ok(bytes) => bytes,
            Err(err) if is_not_found(&err) => return Ok(None),
            Err(err) => return Err(err),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| Error::InvalidJson { path, source })
    }

    /// Writes `record` atomically. Blocking.
    pub(crate) fn write_record(&self, record: &Record) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(record).expect("because a record always serializes");
        self.write_atomic(&self.record_path(&record.reference), &bytes)
    }

    /// Removes the record of `name`, if any. Blocking.
    pub(crate) fn remove_record(&self, name: &str) -> Result<()> {
        self.remove_file(&self.record_path(name))
    }

    /// Sets the last-used time of `name` to now; touches only its record
    /// (never `index.json`). Does nothing when there is no record, nor on a
    /// read-only store (see [`Store::skipped_records`]). Blocking.
    pub fn mark_used(&self, name: &str) -> Result<()> {
        self.mark_used_checked(name, false)
    }

    /// [`Store::mark_used`]; when `checked`, also notes that a registry
    /// just confirmed the reference ([`Record::checked_at`]).
    pub(crate) fn mark_used_checked(&self, name: &str, checked: bool) -> Result<()> {
        let Some(mut record) = self.record(name)? else {
            return Ok(());
        };
        let now = now_unix_ms();
        record.last_used_at = now;
        if checked {
            record.checked_at = Some(now);
        }
        self.unless_read_only(self.write_record(&record))
    }
}
