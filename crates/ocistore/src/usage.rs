//! Disk usage per image (total, shared, unique) and `prune`: dropping the
//! least recently used images by count, byte budget or age, then `gc`.

use crate::error::{Result, io};
use crate::layout::{Store, now_unix_ms};
use crate::manage::GcReport;
use ociref::Digest;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// What the store takes on disk.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct DiskUsage {
    /// Every blob under `blobs/`, referenced or not.
    pub blobs_bytes: u64,
    /// Blobs no reference reaches (what `gc` would free, with
    /// `ingest_bytes`).
    pub unreferenced_bytes: u64,
    /// Partial downloads (which `gc` keeps for a grace period so that pulls
    /// resume from them) and temp files under `.cachectl/ingest/`.
    pub ingest_bytes: u64,
    /// Blobs moved aside by `verify` under `.cachectl/quarantine/`.
    pub quarantine_bytes: u64,
    /// Per reference, most recently used first.
    pub images: Vec<ImageUsage>,
}

/// What one reference takes.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct ImageUsage {
    /// The reference name.
    pub reference: String,
    /// Bytes of every blob it reaches.
    pub total: u64,
    /// Of those, bytes of blobs other references reach too.
    pub shared: u64,
    /// Of those, bytes only it reaches: what removing it (then `gc`)
    /// frees.
    pub unique: u64,
    /// When it was last used (ms since the Unix epoch; 0 when unknown).
    pub last_used_at: u64,
}

/// Which images [`Store::prune`] removes. An image goes when any rule
/// says so; with no rule set, nothing goes. Build it with struct update
/// syntax: `PrunePolicy { keep: Some(3), ..PrunePolicy::default() }`.
#[derive(Clone, Debug, Default)]
pub struct PrunePolicy {
    /// Keep only the `n` most recently used images.
    pub keep: Option<usize>,
    /// Then remove the least recently used until the images together take
    /// at most this many bytes (shared blobs counted once).
    pub max_bytes: Option<u64>,
    /// Remove images not used for longer than this.
    pub older_than: Option<Duration>,
    /// Report what would go, remove nothing.
    pub dry_run: bool,
    /// How long the garbage collection that follows keeps partial
    /// downloads (`None`: [`crate::DEFAULT_PARTIAL_GRACE`]).
    pub partial_grace: Option<Duration>,
}

/// What [`Store::prune`] removed (or would remove, on a dry run).
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct PruneReport {
    /// The references removed, least recently used first.
    pub removed: Vec<String>,
    /// The references kept.
    pub kept: Vec<String>,
    /// Bytes freed (on a dry run: bytes that would be freed).
    pub bytes_freed: u64,
    /// What the garbage collection that followed did (none on a dry run).
    pub gc: Option<GcReport>,
}

impl Store {
    /// Measures the store: every blob once, and per reference its total,
    /// shared and unique bytes. Blocking.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let blob_sizes: BTreeMap<Digest, u64> = self
            .all_blobs()?
            .into_iter()
            .map(|(digest, path)| {
                let size = std::fs::symlink_metadata(path)
                    .map(|m| m.len())
                    .unwrap_or(0);
                (digest, size)
            })
            .collect();
        let reach = self.reach_per_reference()?;
        let mut users: BTreeMap<&Digest, usize> = BTreeMap::new();
        for blobs in reach.values() {
            for digest in blobs {
                *users.entry(digest).or_default() += 1;
            }
        }
        let mut usage = DiskUsage {
            blobs_bytes: blob_sizes.values().sum(),
            unreferenced_bytes: blob_sizes
                .iter()
                .filter(|(d, _)| !users.contains_key(d))
                .map(|(_, s)| s)
                .sum(),
            ingest_bytes: dir_bytes(&self.ingest_dir())?,
            quarantine_bytes: dir_bytes(&self.quarantine_dir())?,
            images: Vec::new(),
        };
        for entry in self.list()? {
            let blobs = reach.get(&entry.reference).cloned().unwrap_or_default();
            let mut image = ImageUsage {
                last_used_at: entry.record.map(|r| r.last_used_at).unwrap_or(0),
                reference: entry.reference,
                total: 0,
                shared: 0,
                unique: 0,
            };
            for digest in &blobs {
                let size = blob_sizes.get(digest).copied().unwrap_or(0);
                image.total += size;
                if users.get(digest).copied().unwrap_or(0) > 1 {
                    image.shared += size;
                } else {
                    image.unique += size;
                }
            }
            usage.images.push(image);
        }
        Ok(usage)
    }

    /// Removes the images `policy` selects, least recently used first, then
    /// runs [`Store::gc`]. A dry run only reports. Blocking.
    pub fn prune(&self, policy: &PrunePolicy) -> Result<PruneReport> {
        let reach = self.reach_per_reference()?;
        let blob_sizes: BTreeMap<Digest, u64> = reach
            .values()
            .flatten()
            .map(|d| (d.clone(), self.has_blob(d).unwrap_or(0)))
            .collect();
        // Most recently used first.
        let images: Vec<(String, u64)> = self
            .list()?
            .into_iter()
            .map(|e| (e.reference, e.record.map(|r| r.last_used_at).unwrap_or(0)))
            .collect();
        let now = now_unix_ms();
        let cutoff = policy
            .older_than
            .map(|age| now.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)));
        let mut kept: Vec<&str> = Vec::new();
        let mut removed: Vec<&str> = Vec::new();
        for (position, (name, last_used)) in images.iter().enumerate() {
            let too_many = policy.keep.is_some_and(|keep| position >= keep);
            let too_old = cutoff.is_some_and(|cutoff| *last_used < cutoff);
            if too_many || too_old {
                removed.push(name);
            } else {
                kept.push(name);
            }
        }
        if let Some(budget) = policy.max_bytes {
            let bytes_of = |names: &[&str]| -> u64 {
                let blobs: BTreeSet<&Digest> = names
                    .iter()
                    .filter_map(|n| reach.get(*n))
                    .flatten()
                    .collect();
                blobs.iter().map(|d| blob_sizes[*d]).sum()
            };
            while !kept.is_empty() && bytes_of(&kept) > budget {
                let least_recent = kept.pop().expect("because kept is not empty");
                removed.push(least_recent);
            }
        }
        removed.sort_by_key(|name| images.iter().position(|(n, _)| n == name));
        removed.reverse();
        // Freed: blobs the removed reach that no kept image does.
        let kept_blobs: BTreeSet<&Digest> = kept
            .iter()
            .filter_map(|n| reach.get(*n))
            .flatten()
            .collect();
        let freed_blobs: BTreeSet<&Digest> = removed
            .iter()
            .filter_map(|n| reach.get(*n))
            .flatten()
            .filter(|d| !kept_blobs.contains(d))
            .collect();
        let mut report = PruneReport {
            removed: removed.iter().map(|n| (*n).to_owned()).collect(),
            kept: kept.iter().map(|n| (*n).to_owned()).collect(),
            bytes_freed: freed_blobs.iter().map(|d| blob_sizes[*d]).sum(),
            gc: None,
        };
        if policy.dry_run {
            return Ok(report);
        }
        for name in &report.removed {
            self.remove_name(name)?;
        }
        let gc =
            self.gc_keeping_partials(policy.partial_grace.unwrap_or(crate::DEFAULT_PARTIAL_GRACE))?;
        report.bytes_freed = gc.bytes_freed;
        report.gc = Some(gc);
        Ok(report)
    }

    /// Untags the reference named `name` (as [`Store::remove`], for names
    /// already normalized). Blocking.
    pub(crate) fn remove_name(&self, name: &str) -> Result<bool> {
        let removed = self.update_index(|index| index.remove(name))?;
        self.remove_record(name)?;
        Ok(removed)
    }

    /// For each reference name, every blob it reaches: through `index.json`
    /// (indexes, manifests, configs, layers), the index its record names,
    /// and its stored referrers.
    fn reach_per_reference(&self) -> Result<BTreeMap<String, BTreeSet<Digest>>> {
        let (users, _) = self.reachability()?;
        let mut reach: BTreeMap<String, BTreeSet<Digest>> = BTreeMap::new();
        for (digest, names) in users {
            for name in names {
                reach.entry(name).or_default().insert(digest.clone());
            }
        }
        for entry in self.list()? {
            let Some(record) = entry.record else {
                continue;
            };
            let blobs = reach.entry(entry.reference).or_default();
            for digest in record.index_digest.into_iter().chain(record.referrers) {
                if self.has_blob(&digest).is_some() {
                    blobs.insert(digest.clone());
                    if let Some(kids) = self.stored_children(&digest) {
                        blobs.extend(kids.into_iter().filter(|d| self.has_blob(d).is_some()));
                    }
                }
            }
        }
        Ok(reach)
    }

    /// The digests a stored referrer manifest needs (not for indexes: a
    /// single-platform pull keeps the index, not its other platforms).
    fn stored_children(&self, digest: &Digest) -> Option<Vec<Digest>> {
        let bytes = self.read_file(&self.blob_path(digest)).ok()?;
        let kids = crate::walk::children(digest, &bytes).ok()?;
        kids.subject.as_ref()?;
        Some(kids.required.into_iter().map(|d| d.digest).collect())
    }
}

/// Bytes of the regular files directly in `dir` (0 when it is absent).
fn dir_bytes(dir: &std::path::Path) -> Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => return Err(io("reading", dir)(source)),
    };
    let mut total = 0;
    for entry in entries {
        let entry = entry.map_err(io("reading", dir))?;
        total += entry.metadata().map(|m| m.len()).unwrap_or(0);
    }
    Ok(total)
}
