//! Managing what is stored: list, tag, remove, verify, garbage-collect.
//! These are blocking (file work only); call them from `spawn_blocking` in
//! async code.

use crate::entries::split_entry_name;
use crate::error::{Error, Result, io};
use crate::layout::{IndexEntry, Store};
use crate::records::Record;
use crate::walk::{children, is_manifest};
use ociref::{Algorithm, Digest, Hasher, Platform, Reference};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

/// For each blob, the references that reach it.
type Users = BTreeMap<Digest, BTreeSet<String>>;

/// Largest blob read whole to look for a `subject` during GC.
const MAX_REFERRER_BYTES: u64 = 4 * 1024 * 1024;

/// One reference in the store.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ImageEntry {
    /// The entry's name (the `org.opencontainers.image.ref.name`
    /// annotation): the reference, or `REF@os/arch[/variant]` for a
    /// further platform of it.
    pub reference: String,
    /// The reference the entry belongs to (its name without the platform
    /// suffix).
    pub image_reference: String,
    /// The platform of the image, when known (`None` for an index holding
    /// every platform and for entries other tools wrote without one).
    pub platform: Option<ociref::Platform>,
    /// Media type of what it points at.
    pub media_type: String,
    /// Digest of what it points at.
    pub digest: Digest,
    /// Size of that manifest or index.
    pub size: u64,
    /// What the store recorded about it (none for entries written by other
    /// tools).
    pub record: Option<Record>,
}

/// A blob that `verify` found missing or corrupt.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct VerifyProblem {
    /// The blob.
    pub digest: Digest,
    /// Where a corrupt blob was moved (`.cachectl/quarantine/…`); `None`
    /// for a missing one, and for a corrupt one a read-only store could not
    /// move (it stays in place).
    pub quarantined_to: Option<PathBuf>,
    /// The references it breaks.
    pub references: Vec<String>,
}

/// What [`Store::verify`] found.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Blobs re-hashed.
    pub blobs_checked: usize,
    /// Blobs whose content did not match their name (now moved aside).
    pub corrupt: Vec<VerifyProblem>,
    /// Blobs needed by a reference but absent (including the corrupt ones).
    pub missing: Vec<VerifyProblem>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.corrupt.is_empty() && self.missing.is_empty()
    }
}

/// What [`Store::gc`] removed.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[non_exhaustive]
pub struct GcReport {
    /// Blobs kept (reachable).
    pub kept_blobs: usize,
    /// Blobs removed.
    pub removed_blobs: usize,
    /// Stale ingest files removed: partial downloads past their grace
    /// period, temp files of dead processes (also those of atomic writes
    /// in the root and in `.cachectl/records/`).
    pub removed_ingest_files: usize,
    /// Partial downloads kept because they are younger than the grace
    /// period: a pull of their blob resumes from them.
    pub kept_partials: usize,
    /// Their bytes.
    pub kept_partial_bytes: u64,
    /// Bytes freed, blobs and ingest files together.
    pub bytes_freed: u64,
    /// Derived files (builds other crates keep in the store) removed
    /// because no stored blob owns them any more, stale partial builds and
    /// stale work entries (see [`Store::derived_dir`]). Not serialized:
    /// callers say what the kinds are.
    #[serde(skip)]
    pub derived: crate::DerivedFiles,
}

/// How long [`Store::gc`] keeps a partial download that no pull is
/// writing, counted from its last write: a pull killed at 90 % resumes
/// from it within this time.
pub const DEFAULT_PARTIAL_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

impl Store {
    /// Every named reference, most recently used first (entries without a
    /// record last, by name).
    pub fn list(&self) -> Result<Vec<ImageEntry>> {
        let index = self.read_index()?;
        let mut entries = Vec::new();
        for entry in &index.manifests {
            let Some(name) = entry.ref_name() else {
                continue;
            };
            let record = self.record(name)?;
            let platform = match entry.declared_platform() {
                Some(platform) => Some(platform),
                None => record
                    .as_ref()
                    .and_then(|r| r.platform.clone())
                    .or_else(|| split_entry_name(name).1),
            };
            entries.push(ImageEntry {
                reference: name.to_owned(),
                image_reference: split_entry_name(name).0.to_owned(),
                platform,
                media_type: entry.media_type.clone(),
                digest: entry.digest.clone(),
                size: entry.size,
                record,
            });
        }
        entries.sort_by(|a, b| {
            let used = |e: &ImageEntry| e.record.as_ref().map(|r| r.last_used_at);
            used(b)
                .cmp(&used(a))
                .then_with(|| a.reference.cmp(&b.reference))
        });
        Ok(entries)
    }

    /// Names the image stored as `source` also `target`, every platform
    /// of it (replacing what `target` named before). No blob is copied.
    pub fn tag(&self, source: &Reference, target: &Reference) -> Result<()> {
        if source == target {
            return self.inspect(source).map(|_| ());
        }
        let (source, target) = (source.to_string(), target.to_string());
        self.update_index(|index| {
            let entries: Vec<IndexEntry> = index.entries_of(&source).into_iter().cloned().collect();
            if entries.is_empty() {
                return Err(Error::ImageNotCached {
                    reference: source.clone(),
                });
            }
            let old: Vec<String> = index
                .entries_of(&target)
                .iter()
                .filter_map(|e| e.ref_name().map(str::to_owned))
                .collect();
            for name in old {
                index.remove(&name);
                self.remove_record(&name)?;
            }
            for entry in entries {
                let name = entry.ref_name().unwrap_or(&source).to_owned();
                let renamed = format!("{target}{}", &name[source.len()..]);
                if let Some(mut record) = self.record(&name)? {
                    record.reference = renamed.clone();
                    self.write_record(&record)?;
                }
                index.put(&renamed, entry);
            }
            Ok(())
        })?
    }

    /// Untags `reference`, every platform of it; its blobs stay until
    /// [`Store::gc`]. Whether it was there.
    pub fn remove(&self, reference: &Reference) -> Result<bool> {
        let mut removed = false;
        for name in self.entry_names(&reference.to_string())? {
            removed |= self.remove_name(&name)?;
        }
        Ok(removed)
    }

    /// Untags the image of `reference` for `platform` only (the entry
    /// whose platform equals it, as `linux/arm64` equals `linux/arm64/v8`).
    /// When that was the plain-named entry and other platforms remain, the
    /// first of them takes the plain name, so that `oci:ROOT:REF` still
    /// names an image. Whether it was there.
    pub fn remove_platform(&self, reference: &Reference, platform: &Platform) -> Result<bool> {
        let reference = reference.to_string();
        self.update_index(|index| {
            let mut found = None;
            for entry in index.entries_of(&reference) {
                if self.entry_platform(entry)?.as_ref() == Some(platform) {
                    found = entry.ref_name().map(str::to_owned);
                    break;
                }
            }
            let Some(name) = found else {
                return Ok(false);
            };
            index.remove(&name);
            self.remove_record(&name)?;
            if name == reference
                && let Some(next) = index.entries_of(&reference).first().copied().cloned()
                && let Some(next_name) = next.ref_name().map(str::to_owned)
            {
                if let Some(mut record) = self.record(&next_name)? {
                    record.reference = reference.clone();
                    self.write_record(&record)?;
                }
                index.remove(&next_name);
                index.put(&reference, next);
                self.remove_record(&next_name)?;
            }
            Ok(true)
        })?
    }

    /// Re-hashes every blob, moves corrupt ones to `.cachectl/quarantine/`
    /// (a read-only store reports them where they are), and checks that
    /// everything reachable from `index.json` is present. Makes no request.
    /// Holds `gc.lock` shared while it runs: a concurrent `gc` waits, so a
    /// blob it removes is never reported missing.
    pub fn verify(&self) -> Result<VerifyReport> {
        let _shared = self.lock_shared("gc.lock")?;
        let mut report = VerifyReport::default();
        let mut corrupt = Vec::new();
        for (digest, path) in self.all_blobs()? {
            report.blobs_checked += 1;
            match self.quarantine_if_corrupt(&digest, &path) {
                Ok(None) => {}
                Ok(Some(aside)) => corrupt.push((digest, Some(aside))),
                Err(Error::ReadOnly { .. }) => corrupt.push((digest, None)),
                Err(err) => return Err(err),
            }
        }
        if corrupt.iter().any(|(_, aside)| aside.is_some()) {
            self.open_dir(&self.root().join("blobs").join("sha256"))?
                .sync()?;
        }
        let (users, missing) = self.reachability()?;
        let refs_of = |digest: &Digest| -> Vec<String> {
            users
                .get(digest)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default()
        };
        report.corrupt = corrupt
            .into_iter()
            .map(|(digest, aside)| VerifyProblem {
                references: refs_of(&digest),
                digest,
                quarantined_to: aside,
            })
            .collect();
        report.missing = missing
            .into_iter()
            .map(|digest| VerifyProblem {
                references: refs_of(&digest),
                digest,
                quarantined_to: None,
            })
            .collect();
        Ok(report)
    }

    /// Re-hashes the blob at `path`; when it does not match `digest`, moves
    /// it to `.cachectl/quarantine/` (never served again) and returns where.
    pub(crate) fn quarantine_if_corrupt(
        &self,
        digest: &Digest,
        path: &std::path::Path,
    ) -> Result<Option<PathBuf>> {
        let Ok(algorithm) = digest.supported_algorithm() else {
            return Ok(None);
        };
        if hash_file(self, path, algorithm)? == *digest {
            return Ok(None);
        }
        let quarantine = self.open_dir(&self.quarantine_dir())?;
        let (blobs, name) = self.dir_of(path)?;
        let aside_name = format!(
            "{}-{}-{}",
            digest.algorithm(),
            digest.encoded(),
            crate::layout::now_unix_ms()
        );
        blobs.rename(name, &quarantine, &aside_name)?;
        let aside = quarantine.child(&aside_name);
        tracing::warn!(%digest, to = %aside.display(), "corrupt blob moved aside");
        Ok(Some(aside))
    }

    /// Removes every blob not reachable from `index.json` (through indexes,
    /// manifests, configs, layers, and manifests whose `subject` is
    /// reachable) or from the index a record names, or from a held
    /// [`crate::Lease`], and stale ingest files and temp files of dead
    /// processes; removes the lease files of gone processes.
    /// Partial downloads are kept for [`DEFAULT_PARTIAL_GRACE`].
    /// Waits for pulls in progress to finish first, and blocks new ones
    /// while it runs.
    pub fn gc(&self) -> Result<GcReport> {
        self.gc_keeping_partials(DEFAULT_PARTIAL_GRACE)
    }

    /// [`Store::gc`], keeping partial downloads last written less than
    /// `grace` ago; `Duration::ZERO` removes every partial no pull is
    /// writing.
    pub fn gc_keeping_partials(&self, grace: Duration) -> Result<GcReport> {
        let _exclusive = self.lock("gc.lock")?;
        let mut report = GcReport::default();
        let (users, _) = self.reachability()?;
        let mut marked: BTreeSet<Digest> = users.into_keys().collect();
        marked.extend(self.leased_digests()?);
        for entry in self.list()? {
            if let Some(index) = entry.record.and_then(|r| r.index_digest) {
                marked.insert(index);
            }
        }
        let blobs = self.all_blobs()?;
        // Referrers: manifests whose subject is kept are kept, with what
        // they need; repeat until nothing changes (a referrer of a referrer).
        loop {
            let mut added = false;
            for (digest, path) in &blobs {
                if marked.contains(digest) {
                    continue;
                }
                let Some(bytes) = small_json(self, path) else {
                    continue;
                };
                let Ok(kids) = children(digest, &bytes) else {
                    continue;
                };
                if kids.subject.is_some_and(|s| marked.contains(&s.digest)) {
                    marked.insert(digest.clone());
                    marked.extend(kids.required.into_iter().map(|d| d.digest));
                    added = true;
                }
            }
            if !added {
                break;
            }
        }
        for (digest, path) in blobs {
            if marked.contains(&digest) {
                report.kept_blobs += 1;
                continue;
            }
            // `unlink` removes a planted link itself, never its target.
            let (dir, name) = self.dir_of(&path)?;
            let size = dir.stat(name)?.map_or(0, |m| m.len());
            dir.remove(name)?;
            report.removed_blobs += 1;
            report.bytes_freed += size;
        }
        self.sweep_ingest(grace, &mut report)?;
        let sizes = self.private_dir().join("sizes");
        let dirs = [self.root(), &self.records_dir(), &sizes];
        let (temps, temp_bytes) = self.sweep_dead_temps(&dirs);
        report.removed_ingest_files += temps;
        report.bytes_freed += temp_bytes;
        report.derived = self.collect_derived()?;
        Ok(report)
    }

    /// Removes temp files of dead processes and partial downloads that no
    /// pull holds and that were last written `grace` or more ago; counts
    /// the partials it keeps.
    fn sweep_ingest(&self, grace: Duration, report: &mut GcReport) -> Result<()> {
        let ingest = self.open_dir(&self.ingest_dir())?;
        for name in ingest.names()? {
            let Some(meta) = ingest.stat(&name)? else {
                continue;
            };
            let stale = match name.strip_suffix(".partial") {
                Some(stem) => {
                    let held = !self.lock_is_free(&format!("blob-{stem}.lock"))?;
                    let age = meta
                        .modified()
                        .ok()
                        .and_then(|written| written.elapsed().ok())
                        .unwrap_or_default();
                    if !held && age >= grace {
                        true
                    } else {
                        report.kept_partials += 1;
                        report.kept_partial_bytes += meta.len();
                        false
                    }
                }
                // Temp files of atomic writes: no pull runs while we hold
                // the GC lock, so any left are from dead processes.
                None => name.starts_with(".tmp-"),
            };
            if stale {
                ingest.remove(&name)?;
                report.removed_ingest_files += 1;
                report.bytes_freed += meta.len();
            }
        }
        Ok(())
    }

    /// For each blob reachable from `index.json`, the references that
    /// reach it; and the reachable digests that are absent.
    pub(crate) fn reachability(&self) -> Result<(Users, Vec<Digest>)> {
        let index = self.read_index()?;
        let mut users = Users::new();
        let mut missing = BTreeSet::new();
        for (n, entry) in index.manifests.iter().enumerate() {
            let name = entry
                .ref_name()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("(unnamed entry {n} of index.json)"));
            let mut stack = vec![IndexEntry::descriptor(entry)];
            let mut seen = BTreeSet::new();
            while let Some(descriptor) = stack.pop() {
                if !seen.insert(descriptor.digest.clone()) {
                    continue;
                }
                users
                    .entry(descriptor.digest.clone())
                    .or_default()
                    .insert(name.clone());
                let path = self.blob_path(&descriptor.digest);
                if self.regular_file_len(&path).is_none() {
                    missing.insert(descriptor.digest.clone());
                    continue;
                }
                if is_manifest(&descriptor.media_type) {
                    let bytes = self.read_file(&path)?;
                    if let Ok(kids) = children(&descriptor.digest, &bytes) {
                        stack.extend(kids.required);
                    }
                }
            }
        }
        Ok((users, missing.into_iter().collect()))
    }

    /// Every file under `blobs/<alg>/` whose name parses as a digest.
    pub(crate) fn all_blobs(&self) -> Result<Vec<(Digest, PathBuf)>> {
        let blobs = self.open_dir(&self.root().join("blobs"))?;
        let mut out = Vec::new();
        for alg_name in blobs.names()? {
            if Algorithm::from_name(&alg_name).is_none() {
                continue;
            }
            // A link here is refused: gc would remove files elsewhere.
            let Some(dir) = blobs.subdir(&alg_name, false)? else {
                continue;
            };
            for name in dir.names()? {
                if let Ok(digest) = format!("{alg_name}:{name}").parse::<Digest>() {
                    out.push((digest, dir.child(&name)));
                }
            }
        }
        Ok(out)
    }

    fn lock_is_free(&self, name: &str) -> Result<bool> {
        Ok(self.lock_file(name)?.try_lock().is_ok())
    }
}

/// Re-hashes a file.
fn hash_file(store: &Store, path: &std::path::Path, algorithm: Algorithm) -> Result<Digest> {
    let mut file = store.open_read(path)?;
    let mut hasher = Hasher::new(algorithm);
    crate::blobs::hash_into(&mut file, &mut hasher).map_err(io("reading", path))?;
    Ok(hasher.finish())
}

/// The bytes of a small file that starts like a JSON object.
fn small_json(store: &Store, path: &std::path::Path) -> Option<Vec<u8>> {
    let len = store.regular_file_len(path)?;
    if len > MAX_REFERRER_BYTES {
        return None;
    }
    let bytes = store.read_file(path).ok()?;
    bytes.first().is_some_and(|b| *b == b'{').then_some(bytes)
}
