//! Copying an image between transports, named as skopeo names them:
//! `docker://REF` (a registry), `oci:DIR[:REF]` (an OCI image layout
//! directory), `oci-archive:FILE[:REF]`, `docker-archive:FILE[:REF]`, and
//! the store itself (`cache:REF`, or a bare reference).
//!
//! A copy always goes through the store: the source is brought in (a
//! pull, an import of one image, or nothing for the store), then written
//! out (a push, an export, a layout directory, or a tag in the store). No
//! manifest is rewritten on the way, so digests are kept: the destination
//! names the very manifest (or index) the source did. The one exception is
//! a docker archive, which holds no manifest: an image read from one gets
//! the OCI manifest [`Store::import`] writes for it, and one written to one
//! loses its manifest (what `docker save` archives are).
//!
//! The image stays in the store afterwards: under the source's reference
//! when pulled from a registry (and the destination's too for
//! `cache:REF`), under the destination's reference when imported for a
//! `cache:` or `docker://` destination, else under the archive's own full
//! name for it; `rm` and `gc` remove it like any other.

use crate::error::{Error, Result};
use crate::export::ExportFormat;
use crate::import::ImportOptions;
use crate::layout::Store;
use crate::pull::PullOptions;
use ocidist::{Client, ProgressFn};
use ociref::{Digest, Platform, Reference};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The transports [`Location`] reads, as an error lists them.
pub const TRANSPORTS: &str = "docker://REF, oci:DIR[:REF], oci-archive:FILE[:REF], \
    docker-archive:FILE[:REF], cache:REF (or a bare REF such as \
    registry.example/app:v1)";

/// Where an image is copied from or to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// `docker://REF`: a registry.
    Registry(Reference),
    /// `oci:DIR[:REF]`: an OCI image layout directory, the image named
    /// `REF` in its `index.json` (`org.opencontainers.image.ref.name`).
    OciDir {
        /// The directory.
        path: PathBuf,
        /// The image's name in it.
        name: Option<String>,
    },
    /// `oci-archive:FILE[:REF]`: a tar of an OCI image layout.
    OciArchive {
        /// The file.
        path: PathBuf,
        /// The image's name in it.
        name: Option<String>,
    },
    /// `docker-archive:FILE[:REF]`: a `docker save` archive, the image
    /// named `REF` in its `RepoTags`.
    DockerArchive {
        /// The file.
        path: PathBuf,
        /// The image's name in it.
        name: Option<String>,
    },
    /// `cache:REF` or a bare `REF`: this store.
    Cache(Reference),
}

impl FromStr for Location {
    type Err = Error;

    /// Parses skopeo's notation. A bare reference names the store; one
    /// whose text before the first `:` looks like a transport name
    /// (`alpine:3.20`, `foo:bar`) is refused as an unknown transport, the
    /// error listing the known ones: write `cache:alpine:3.20`.
    fn from_str(input: &str) -> Result<Location> {
        let bad = |reason: String| Error::Location {
            input: input.to_owned(),
            reason,
        };
        let reference = |text: &str| {
            text.parse::<Reference>()
                .map_err(|err| bad(format!("{text:?} is not a reference: {err}")))
        };
        let Some((transport, rest)) = input.split_once(':') else {
            return reference(input).map(Location::Cache);
        };
        let path_and_name = |rest: &str| {
            let (path, name) = match rest.split_once(':') {
                Some((path, name)) => (path, (!name.is_empty()).then(|| name.to_owned())),
                None => (rest, None),
            };
            if path.is_empty() {
                return Err(bad(format!(
                    "{transport}: needs a path ({transport}:PATH[:REF])"
                )));
            }
            Ok((PathBuf::from(path), name))
        };
        match transport {
            "docker" => match rest.strip_prefix("//") {
                Some(text) => reference(text).map(Location::Registry),
                None => Err(bad("a registry is written docker://REF".into())),
            },
            "oci" => path_and_name(rest).map(|(path, name)| Location::OciDir { path, name }),
            "oci-archive" => {
                path_and_name(rest).map(|(path, name)| Location::OciArchive { path, name })
            }
            "docker-archive" => {
                path_and_name(rest).map(|(path, name)| Location::DockerArchive { path, name })
            }
            "cache" => reference(rest).map(Location::Cache),
            other if looks_like_transport(other) && !starts_with_port(rest) => Err(bad(format!(
                "unknown transport {other:?} (known: {TRANSPORTS}); a cached image with a tag \
                 is written cache:{input}"
            ))),
            _ => reference(input).map(Location::Cache),
        }
    }
}

/// Whether `text` could be a transport name (`docker`, `oci-archive`):
/// lowercase letters, digits and `-`, and no `.` or `/` as a registry or
/// repository path has.
fn looks_like_transport(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Whether `rest` (after `host:`) starts with a port and a repository,
/// as `localhost:5000/app` does.
fn starts_with_port(rest: &str) -> bool {
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    digits > 0 && rest[digits..].starts_with('/')
}

/// `kind:PATH[:NAME]`.
fn with_name(
    f: &mut fmt::Formatter<'_>,
    kind: &str,
    path: &std::path::Path,
    name: Option<&String>,
) -> fmt::Result {
    write!(f, "{kind}:{}", path.display())?;
    match name {
        Some(name) => write!(f, ":{name}"),
        None => Ok(()),
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Registry(reference) => write!(f, "docker://{reference}"),
            Location::OciDir { path, name } => with_name(f, "oci", path, name.as_ref()),
            Location::OciArchive { path, name } => with_name(f, "oci-archive", path, name.as_ref()),
            Location::DockerArchive { path, name } => {
                with_name(f, "docker-archive", path, name.as_ref())
            }
            Location::Cache(reference) => write!(f, "cache:{reference}"),
        }
    }
}

/// How to copy.
#[derive(Clone)]
#[non_exhaustive]
pub struct CopyOptions {
    /// The platform to pick from an index; `None` means the host's.
    pub platform: Option<Platform>,
    /// Copy every platform of an index from a registry (the index is
    /// kept, so its digest is too); not into a docker archive.
    pub all_platforms: bool,
    /// Copy the referrers (signatures, SBOMs) of the image too: from a
    /// registry (stored in the store as [`PullOptions::referrers`] does)
    /// or from the store's record, to a registry. Archives and directories
    /// get none.
    pub referrers: bool,
    /// How many blobs transfer at once (at least 1).
    pub concurrency: usize,
    /// Told how far an archive or directory source has been read.
    pub progress: Option<ProgressFn>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            platform: None,
            all_platforms: false,
            referrers: false,
            concurrency: PullOptions::default().concurrency,
            progress: None,
        }
    }
}

impl fmt::Debug for CopyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CopyOptions")
            .field("platform", &self.platform)
            .field("all_platforms", &self.all_platforms)
            .field("referrers", &self.referrers)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// What [`Store::copy`] did.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct CopyOutcome {
    /// The source, as skopeo writes it.
    pub source: String,
    /// The destination, as skopeo writes it.
    pub destination: String,
    /// The store entry the image went through (full reference).
    pub cached_as: String,
    /// The digest the destination names: the image manifest, or the index
    /// when every platform was copied.
    pub digest: Digest,
    /// Blobs fetched from a registry or read from an archive into the
    /// store (0 when the store held them).
    pub blobs_in: usize,
    /// Blobs the destination received (uploaded, mounted or written).
    pub blobs_out: usize,
    /// Blobs mounted from another repository of the destination registry.
    pub mounted_blobs: usize,
    /// Blobs the destination already had.
    pub existing_blobs: usize,
    /// Referrers copied with the image.
    pub referrers: Vec<Digest>,
}

impl Store {
    /// Copies the image at `source` to `destination` (see the
    /// [module docs](crate::copy)).
    pub async fn copy(
        &self,
        client: &Client,
        source: &Location,
        destination: &Location,
        options: &CopyOptions,
    ) -> Result<CopyOutcome> {
        if options.all_platforms && matches!(destination, Location::DockerArchive { .. }) {
            return Err(Error::Location {
                input: destination.to_string(),
                reason: "a docker archive holds one platform: copy without all platforms".into(),
            });
        }
        let mut outcome = CopyOutcome {
            source: source.to_string(),
            destination: destination.to_string(),
            cached_as: String::new(),
            digest: Digest::sha256_of(b""),
            blobs_in: 0,
            blobs_out: 0,
            mounted_blobs: 0,
            existing_blobs: 0,
            referrers: Vec::new(),
        };
        let cached = self
            .copy_in(client, source, destination, options, &mut outcome)
            .await?;
        outcome.cached_as = cached.to_string();
        outcome.digest = self.entry_digest(&cached).await?;
        self.copy_out(client, &cached, destination, options, &mut outcome)
            .await?;
        Ok(outcome)
    }

    /// Brings the source into the store; the reference it is stored as.
    async fn copy_in(
        &self,
        client: &Client,
        source: &Location,
        destination: &Location,
        options: &CopyOptions,
        outcome: &mut CopyOutcome,
    ) -> Result<Reference> {
        let (path, name) = match source {
            Location::Cache(reference) => {
                if options.referrers {
                    let (store, name) = (self.clone(), reference.to_string());
                    let record = tokio::task::spawn_blocking(move || store.record(&name)).await??;
                    outcome.referrers = record.map(|r| r.referrers).unwrap_or_default();
                }
                return Ok(reference.clone());
            }
            Location::Registry(reference) => {
                let mut pull = PullOptions::default().with_concurrency(options.concurrency);
                pull.platform = options.platform.clone();
                pull.all_platforms = options.all_platforms;
                pull.referrers = options.referrers;
                let pulled = self.pull(client, reference, &pull).await?;
                outcome.blobs_in = pulled.fetched_blobs;
                outcome.referrers = pulled.referrers;
                return Ok(reference.clone());
            }
            Location::OciDir { path, name }
            | Location::OciArchive { path, name }
            | Location::DockerArchive { path, name } => (path, name),
        };
        let mut import = ImportOptions::default().with_one(name.clone());
        import.platform = options.platform.clone();
        import.progress = options.progress.clone();
        if let Location::Cache(target) | Location::Registry(target) = destination {
            import.name = Some(target.clone());
        }
        let wants_dir = matches!(source, Location::OciDir { .. });
        let reason = if !path.exists() {
            Some(format!("{} does not exist", path.display()))
        } else if path.is_dir() && !wants_dir {
            Some(format!(
                "{} is a directory: read it as oci:DIR",
                path.display()
            ))
        } else if !path.is_dir() && wants_dir {
            Some(format!(
                "{} is not a directory: read an archive as oci-archive:FILE or \
                 docker-archive:FILE",
                path.display()
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(Error::Location {
                input: source.to_string(),
                reason,
            });
        }
        let (store, path) = (self.clone(), path.clone());
        let report = tokio::task::spawn_blocking(move || store.import(&path, &import)).await??;
        outcome.blobs_in = report.blobs_written;
        let image = report
            .images
            .first()
            .expect("because an import of one image stores one");
        Ok(image.reference.parse()?)
    }

    /// Writes the stored image `cached` to `destination`.
    async fn copy_out(
        &self,
        client: &Client,
        cached: &Reference,
        destination: &Location,
        options: &CopyOptions,
        outcome: &mut CopyOutcome,
    ) -> Result<()> {
        let (format, path, name) = match destination {
            Location::Cache(target) => {
                if target != cached {
                    let (store, from, to) = (self.clone(), cached.clone(), target.clone());
                    tokio::task::spawn_blocking(move || store.tag(&from, &to)).await??;
                }
                return Ok(());
            }
            Location::Registry(target) => {
                let pushed = self
                    .push(client, cached, target, options.concurrency)
                    .await?;
                outcome.digest = pushed.digest;
                outcome.blobs_out = pushed.uploaded_blobs + pushed.mounted_blobs;
                outcome.mounted_blobs = pushed.mounted_blobs;
                outcome.existing_blobs = pushed.existing_blobs;
                if !outcome.referrers.is_empty() {
                    let referrers = outcome.referrers.clone();
                    self.push_referrers(client, cached, target, &referrers)
                        .await?;
                }
                return Ok(());
            }
            Location::OciDir { path, name } => (None, path, name),
            Location::OciArchive { path, name } => (Some(ExportFormat::Oci), path, name),
            Location::DockerArchive { path, name } => (Some(ExportFormat::Docker), path, name),
        };
        let (store, cached, path, name) =
            (self.clone(), cached.clone(), path.clone(), name.clone());
        let report = tokio::task::spawn_blocking(move || match format {
            Some(format) => store.export_named(&[(cached, name)], format, &path),
            None => {
                let name = name.unwrap_or_else(|| cached.to_string());
                store.export_dir(&cached, &name, &path)
            }
        })
        .await??;
        outcome.blobs_out = report.blobs_written;
        Ok(())
    }

    /// The digest the store entry of `reference` names (for the host's
    /// platform when it holds several).
    async fn entry_digest(&self, reference: &Reference) -> Result<Digest> {
        let (store, name) = (self.clone(), reference.to_string());
        tokio::task::spawn_blocking(move || {
            let index = store.read_index()?;
            match store.select_entry(&index, &name, None)? {
                Some(entry) => Ok(entry.digest),
                None => Err(Error::ImageNotCached { reference: name }),
            }
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Location {
        text.parse().unwrap_or_else(|err| panic!("{text}: {err}"))
    }

    #[test]
    fn skopeos_names_parse_and_print_back() {
        for text in [
            "docker://127.0.0.1:5000/app:v1",
            "oci:/tmp/layout",
            "oci:/tmp/layout:v1",
            "oci-archive:app.tar",
            "oci-archive:app.tar:127.0.0.1:5000/app:v1",
            "docker-archive:/tmp/app.tar:app:v1",
            "cache:docker.io/library/alpine:3.20",
        ] {
            assert_eq!(parsed(text).to_string(), text);
        }
        assert_eq!(
            parsed("oci-archive:app.tar:127.0.0.1:5000/app:v1"),
            Location::OciArchive {
                path: "app.tar".into(),
                name: Some("127.0.0.1:5000/app:v1".into()),
            }
        );
        assert_eq!(
            parsed("oci:dir:"),
            Location::OciDir {
                path: "dir".into(),
                name: None,
            }
        );
    }

    #[test]
    fn bare_references_name_the_cache() {
        for (text, full) in [
            ("127.0.0.1:5000/app:v1", "127.0.0.1:5000/app:v1"),
            ("localhost:5000/app", "localhost:5000/app:latest"),
            ("library/alpine:3.20", "docker.io/library/alpine:3.20"),
            ("alpine", "docker.io/library/alpine:latest"),
            ("cache:alpine:3.20", "docker.io/library/alpine:3.20"),
        ] {
            assert_eq!(parsed(text), Location::Cache(full.parse().expect("ref")));
        }
    }

    #[test]
    fn unknown_transports_are_named_with_the_known_ones() {
        for text in [
            "foo:bar",
            "alpine:3.20",
            "dir:/tmp/x",
            "containers-storage:x",
        ] {
            let err = text.parse::<Location>().expect_err(text).to_string();
            let transport = text.split(':').next().expect("a prefix");
            assert!(
                err.contains(&format!("unknown transport {transport:?}")),
                "{err}"
            );
            assert!(err.contains(TRANSPORTS), "{err}");
            assert_eq!(
                text.parse::<Location>().expect_err(text).kind(),
                ociref::ErrorKind::Usage
            );
        }
        for (text, said) in [
            ("docker:alpine", "docker://REF"),
            ("oci-archive:", "needs a path"),
            ("docker://Bad/Name", "is not a reference"),
        ] {
            let err = text.parse::<Location>().expect_err(text).to_string();
            assert!(err.contains(said), "{text}: {err}");
        }
    }
}
