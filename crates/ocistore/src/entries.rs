//! One `index.json` entry per (reference, platform): naming, finding and
//! storing the entries of a reference.
//!
//! The first platform stored for a reference takes the plain name
//! (`127.0.0.1:5000/app:v1`); each further platform's entry is named
//! `REF@os/arch[/variant]` (`127.0.0.1:5000/app:v1@linux/arm64/v8`). Every
//! entry the store writes also carries its platform in the descriptor's
//! `platform` field. skopeo and umoci read any entry by its name
//! (`oci:ROOT:NAME`, `--image ROOT:NAME`), so each platform stays readable
//! by them; two entries sharing one name would not be (skopeo and umoci
//! refuse or pick one). Records are keyed by the entry name, so a store
//! written before keeps working: its one entry per reference is the plain
//! one.

use crate::error::Result;
use crate::layout::{IndexEntry, IndexFile, Store};
use ociref::Platform;

/// The `platform` field of a descriptor.
const PLATFORM_FIELD: &str = "platform";

/// The name of the entry holding `platform` of `reference` when the plain
/// name is taken by another platform.
pub(crate) fn platform_entry_name(reference: &str, platform: &Platform) -> String {
    format!("{reference}@{platform}")
}

/// Splits an entry name into the reference and, for a further platform's
/// entry (`REF@linux/arm64/v8`), the platform. A digest (`@sha256:…`)
/// always holds a `:`, a platform never does, so the two never mix up.
///
/// ```
/// let (reference, platform) = ocistore::split_entry_name("example.com/a:1@linux/arm64");
/// assert_eq!(reference, "example.com/a:1");
/// assert_eq!(platform.map(|p| p.to_string()).as_deref(), Some("linux/arm64/v8"));
/// let pinned = "example.com/a@sha256:0000000000000000000000000000000000000000000000000000000000000000";
/// assert_eq!(ocistore::split_entry_name(pinned), (pinned, None));
/// ```
pub fn split_entry_name(name: &str) -> (&str, Option<Platform>) {
    if let Some((reference, suffix)) = name.rsplit_once('@')
        && !suffix.contains(':')
        && let Ok(platform) = suffix.parse::<Platform>()
    {
        return (reference, Some(platform));
    }
    (name, None)
}

impl IndexEntry {
    /// The platform the descriptor's `platform` field names, when valid.
    pub(crate) fn declared_platform(&self) -> Option<Platform> {
        let value = self.extra.get(PLATFORM_FIELD)?;
        let os = value.get("os")?.as_str()?;
        let architecture = value.get("architecture")?.as_str()?;
        let variant = value.get("variant").and_then(|v| v.as_str());
        Platform::new(os, architecture, variant).ok()
    }

    /// Sets the descriptor's `platform` field.
    pub(crate) fn set_platform(&mut self, platform: &Platform) {
        let mut value = serde_json::json!({
            "os": platform.os(),
            "architecture": platform.architecture(),
        });
        if let Some(variant) = platform.variant() {
            value["variant"] = variant.into();
        }
        self.extra.insert(PLATFORM_FIELD.to_owned(), value);
    }
}

impl IndexFile {
    /// The entries of `reference`: the plain one first, then the further
    /// platforms' in index order.
    pub(crate) fn entries_of(&self, reference: &str) -> Vec<&IndexEntry> {
        let mut entries: Vec<&IndexEntry> = self
            .manifests
            .iter()
            .filter(|e| {
                e.ref_name()
                    .is_some_and(|name| split_entry_name(name).0 == reference)
            })
            .collect();
        entries.sort_by_key(|e| e.ref_name() != Some(reference));
        entries
    }
}

impl Store {
    /// The platform of an entry: its descriptor's `platform` field, else
    /// its record's, else its name's suffix. `None` for an index holding
    /// every platform and for entries other tools wrote without one.
    pub(crate) fn entry_platform(&self, entry: &IndexEntry) -> Result<Option<Platform>> {
        if let Some(platform) = entry.declared_platform() {
            return Ok(Some(platform));
        }
        let Some(name) = entry.ref_name() else {
            return Ok(None);
        };
        if let Some(platform) = self.record(name)?.and_then(|r| r.platform) {
            return Ok(Some(platform));
        }
        Ok(split_entry_name(name).1)
    }

    /// The entry of `reference` for `platform`: the best match among the
    /// entries whose platform is known, else one whose platform is not (an
    /// index holding every platform, or an entry another tool wrote; the
    /// caller looks inside). `None` for `platform` means the only entry,
    /// else the host's, else the plain one. `None` when the reference has
    /// no entry, or none for an explicit `platform`.
    pub(crate) fn select_entry(
        &self,
        index: &IndexFile,
        reference: &str,
        platform: Option<&Platform>,
    ) -> Result<Option<IndexEntry>> {
        let entries = index.entries_of(reference);
        if platform.is_none() && entries.len() <= 1 {
            return Ok(entries.first().map(|e| (*e).clone()));
        }
        let host = Platform::host();
        let wanted = platform.unwrap_or(&host);
        let mut best: Option<(u32, &IndexEntry)> = None;
        let mut unknown = None;
        for entry in &entries {
            match self.entry_platform(entry)? {
                Some(p) => {
                    if let Some(rank) = wanted.rank(&p)
                        && best.is_none_or(|(r, _)| rank < r)
                    {
                        best = Some((rank, entry));
                    }
                }
                None => {
                    unknown.get_or_insert(*entry);
                }
            }
        }
        let fallback = || match platform {
            Some(_) => None,
            None => entries.first().copied(),
        };
        Ok(best.map(|(_, e)| e).or(unknown).or_else(fallback).cloned())
    }

    /// The name under which an image of `reference` for `platform` is
    /// stored in `index`: the entry already holding that platform, else
    /// the plain name when free (or held by an entry of unknown platform,
    /// which it replaces), else `REF@platform`.
    pub(crate) fn name_for(
        &self,
        index: &IndexFile,
        reference: &str,
        platform: Option<&Platform>,
    ) -> Result<String> {
        let Some(platform) = platform else {
            return Ok(reference.to_owned());
        };
        let mut plain_free = true;
        for entry in index.entries_of(reference) {
            let name = entry.ref_name().unwrap_or(reference);
            let held = self.entry_platform(entry)?;
            if held.as_ref() == Some(platform) {
                return Ok(name.to_owned());
            }
            if name == reference && held.is_some() {
                plain_free = false;
            }
        }
        Ok(if plain_free {
            reference.to_owned()
        } else {
            platform_entry_name(reference, platform)
        })
    }

    /// The names of every entry of `reference` (the plain one first).
    pub(crate) fn entry_names(&self, reference: &str) -> Result<Vec<String>> {
        Ok(self
            .read_index()?
            .entries_of(reference)
            .iter()
            .filter_map(|e| e.ref_name().map(str::to_owned))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_split_into_reference_and_platform() {
        let arm: Platform = "linux/arm64".parse().expect("platform");
        let name = platform_entry_name("example.com/a:1", &arm);
        assert_eq!(name, "example.com/a:1@linux/arm64/v8");
        assert_eq!(split_entry_name(&name), ("example.com/a:1", Some(arm)));
        assert_eq!(
            split_entry_name("example.com/a:1"),
            ("example.com/a:1", None)
        );
        let both = format!("example.com/a@sha256:{}@linux/amd64", "0".repeat(64));
        let (reference, platform) = split_entry_name(&both);
        assert!(reference.ends_with(&"0".repeat(64)));
        assert_eq!(
            platform.map(|p| p.to_string()).as_deref(),
            Some("linux/amd64")
        );
    }

    #[test]
    fn the_descriptor_platform_field_round_trips() {
        let mut entry = IndexEntry::new(&ocidist::Descriptor {
            media_type: ocidist::OCI_MANIFEST.into(),
            digest: ociref::Digest::sha256_of(b"x"),
            size: 1,
        });
        assert_eq!(entry.declared_platform(), None);
        let arm: Platform = "linux/arm/v7".parse().expect("platform");
        entry.set_platform(&arm);
        assert_eq!(entry.declared_platform(), Some(arm));
        let json = serde_json::to_value(&entry).expect("serializes");
        assert_eq!(json["platform"]["variant"], "v7");
    }
}
