//! Where registry credentials come from.
//!
//! A [`CredentialSource`] answers one question: which [`Credential`], if any,
//! do we present to this registry? The sources are:
//!
//! - [`StaticCredentials`]: given explicitly by the caller (flags, tests).
//! - [`DockerConfig`]: docker's `config.json`, with its `credHelpers`,
//!   `auths` and `credsStore`.
//! - [`ContainersAuth`]: the `auth.json` files of podman, skopeo and buildah.
//!
//! [`default_source`] chains them; the first source that has a credential
//! wins, in this order of precedence:
//!
//! 1. explicit credentials;
//! 2. docker `credHelpers[registry]`, the helper named for this registry;
//! 3. docker `auths[registry]`;
//! 4. docker `credsStore`, the default helper;
//! 5. containers `auth.json` files, in order: `$REGISTRY_AUTH_FILE`,
//!    `$XDG_RUNTIME_DIR/containers/auth.json`,
//!    `${XDG_CONFIG_HOME:-~/.config}/containers/auth.json`.
//!
//! A helper that says "credentials not found" passes the question on to the
//! next step; an error (a malformed file, a failing helper) stops the lookup,
//! so that we never silently fall back to other credentials.
//!
//! # Registry names
//!
//! Sources are asked with the registry as `ociref` prints it: `host[:port]`,
//! and `docker.io` for Docker Hub. Keys in files are normalized with
//! [`normalize_registry`]: the scheme and path are stripped
//! (`https://host:5000/v1/` is `host:5000`), hosts are lowercased, and
//! `index.docker.io` and `registry-1.docker.io` are `docker.io`. Keys without
//! a scheme but with a path (`quay.io/org`) are scoped to a namespace by the
//! containers tools; lookups here are per registry, so such keys are ignored
//! rather than presented to every repository of the registry.
//!
//! Helpers are asked with the server URL docker uses: `https://index.docker.io/v1/`
//! for Docker Hub, the bare `host[:port]` otherwise.
//!
//! # Blocking and caching
//!
//! Loading files and running helpers block the calling thread; async callers
//! run lookups inside `tokio::task::spawn_blocking`. Helpers run without a
//! timeout, as in docker: a helper that hangs hangs the lookup.
//!
//! Files are parsed once, when a source is built. Helpers run again on every
//! call, because the credentials they hand out rotate (ECR tokens expire
//! after 12 hours, and long-running tools must not keep them).
//!
//! # Example
//!
//! ```
//! use ocidist::credentials::{Credential, CredentialSource, StaticCredentials};
//!
//! let explicit = StaticCredentials::new().with("ghcr.io", Credential::basic("me", "hunter2"));
//! let found = explicit.credential("ghcr.io")?;
//! assert!(matches!(found, Some(Credential::Basic { .. })));
//! assert!(!format!("{found:?}").contains("hunter2"));
//! # Ok::<(), ocidist::Error>(())
//! ```

mod file;
mod helper;
mod store;

pub use file::{ContainersAuth, DockerConfig};
pub use store::{remove, store_basic};

use crate::Result;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

/// A secret string: a password or a token.
///
/// `Debug` and `Display` print `<redacted>`; [`Secret::expose`] is the only
/// way to the value, so that every use of the secret is visible in the code.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value itself, to put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What we present to a registry (or its token service).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credential {
    /// A username and password, sent as HTTP Basic auth or in a token request.
    Basic {
        /// The username (not secret).
        username: String,
        /// The password.
        password: Secret,
    },
    /// An OAuth2 refresh token (`identitytoken`, or a helper's `<token>`
    /// username), exchanged at the token endpoint with a POST of
    /// `grant_type=refresh_token`.
    IdentityToken(Secret),
    /// A bearer token for the registry itself (`registrytoken`), sent as is.
    RegistryToken(Secret),
}

impl Credential {
    /// A [`Credential::Basic`] from a username and password.
    pub fn basic(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Self::Basic {
            username: username.into(),
            password: password.into(),
        }
    }
}

/// Something that knows credentials for registries.
///
/// Lookups may block (reading files, running helpers): see the
/// [module documentation](self).
pub trait CredentialSource: Send + Sync + fmt::Debug {
    /// The credential for `registry` (`host[:port]`, `docker.io` for Docker
    /// Hub), or `None` when this source has none.
    fn credential(&self, registry: &str) -> Result<Option<Credential>>;
}

/// Credentials given explicitly, one per registry.
#[derive(Debug, Clone, Default)]
pub struct StaticCredentials {
    by_registry: BTreeMap<String, Credential>,
}

impl StaticCredentials {
    /// No credentials.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the credential for `registry`, which is normalized
    /// with [`normalize_registry`].
    pub fn with(mut self, registry: &str, credential: Credential) -> Self {
        self.by_registry
            .insert(normalize_registry(registry), credential);
        self
    }
}

impl CredentialSource for StaticCredentials {
    fn credential(&self, registry: &str) -> Result<Option<Credential>> {
        Ok(self.by_registry.get(&normalize_registry(registry)).cloned())
    }
}

/// Sources asked in order: the first that has a credential wins, and the
/// first error stops the lookup.
#[derive(Debug, Default)]
pub struct Chain {
    sources: Vec<Box<dyn CredentialSource>>,
}

impl Chain {
    /// An empty chain, which has no credentials.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a source, asked after the ones already in the chain.
    pub fn with(mut self, source: impl CredentialSource + 'static) -> Self {
        self.sources.push(Box::new(source));
        self
    }
}

impl CredentialSource for Chain {
    fn credential(&self, registry: &str) -> Result<Option<Credential>> {
        for source in &self.sources {
            if let Some(credential) = source.credential(registry)? {
                return Ok(Some(credential));
            }
        }
        Ok(None)
    }
}

/// Where the credentials files and helpers are.
///
/// [`Locations::from_env`] reads the process environment;
/// [`Locations::from_vars`] takes any variable lookup, for tests.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Locations {
    /// docker's `config.json`: `$DOCKER_CONFIG/config.json`, else
    /// `$HOME/.docker/config.json`.
    pub docker_config: Option<PathBuf>,
    /// containers `auth.json` files, most important first.
    pub containers_auth: Vec<PathBuf>,
    /// Directories searched for `docker-credential-<name>` helpers (`$PATH`).
    pub helper_path: Vec<PathBuf>,
}

impl Locations {
    /// Locations from the process environment.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var_os(name))
    }

    /// Locations from the variables `var` returns; empty values count as unset.
    ///
    /// Reads `DOCKER_CONFIG`, `HOME`, `REGISTRY_AUTH_FILE`, `XDG_RUNTIME_DIR`,
    /// `XDG_CONFIG_HOME` and `PATH`. Without `XDG_RUNTIME_DIR`, podman's
    /// `/run/containers/$UID/auth.json` is not looked at.
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Self {
        let dir = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let home = dir("HOME");
        let docker_dir = dir("DOCKER_CONFIG").or_else(|| home.as_ref().map(|h| h.join(".docker")));
        let config_home =
            dir("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config")));
        let containers_auth = [
            dir("REGISTRY_AUTH_FILE"),
            dir("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")),
            config_home.map(|d| d.join("containers/auth.json")),
        ];
        Self {
            docker_config: docker_dir.map(|d| d.join("config.json")),
            containers_auth: containers_auth.into_iter().flatten().collect(),
            helper_path: var("PATH")
                .map(|p| std::env::split_paths(&p).collect())
                .unwrap_or_default(),
        }
    }
}

/// The usual chain, from the process environment: `explicit`, then docker's
/// config, then containers `auth.json` files (see the
/// [module documentation](self) for the precedence).
///
/// Reads and parses the files now; an absent or empty file has no
/// credentials, a malformed one is an [`Error::CredentialFile`](crate::Error::CredentialFile).
pub fn default_source(explicit: StaticCredentials) -> Result<Chain> {
    source_for(explicit, &Locations::from_env())
}

/// The chain of [`default_source`], with files and helpers found at
/// `locations`.
pub fn source_for(explicit: StaticCredentials, locations: &Locations) -> Result<Chain> {
    let docker = match &locations.docker_config {
        Some(path) => DockerConfig::load(path)?,
        None => DockerConfig::default(),
    };
    Ok(Chain::new()
        .with(explicit)
        .with(docker.with_helper_path(locations.helper_path.clone()))
        .with(ContainersAuth::load(&locations.containers_auth)?))
}

/// The chain of [`default_source`], carrying on without the files that
/// cannot be read or parsed, as the docker CLI does with a malformed
/// `config.json`: their errors ([`Error::CredentialFile`](crate::Error::CredentialFile),
/// naming the file and the line, never its content) come back beside the
/// chain, for the caller to warn about.
pub fn default_source_skipping_broken(explicit: StaticCredentials) -> (Chain, Vec<crate::Error>) {
    source_skipping_broken(explicit, &Locations::from_env())
}

/// The chain of [`default_source_skipping_broken`], with files and helpers
/// found at `locations`.
pub fn source_skipping_broken(
    explicit: StaticCredentials,
    locations: &Locations,
) -> (Chain, Vec<crate::Error>) {
    let mut broken = Vec::new();
    let docker = match &locations.docker_config {
        Some(path) => DockerConfig::load(path).unwrap_or_else(|err| {
            broken.push(err);
            DockerConfig::default()
        }),
        None => DockerConfig::default(),
    };
    let (containers, broken_auth) =
        ContainersAuth::load_skipping_broken(&locations.containers_auth);
    broken.extend(broken_auth);
    let chain = Chain::new()
        .with(explicit)
        .with(docker.with_helper_path(locations.helper_path.clone()))
        .with(containers);
    (chain, broken)
}

/// The registry a name or config key designates, as `ociref` prints it.
///
/// Strips an `http://` or `https://` scheme and any path, lowercases, and
/// maps Docker Hub's names (`index.docker.io`, `registry-1.docker.io`,
/// `https://index.docker.io/v1/`) to `docker.io`.
///
/// ```
/// use ocidist::credentials::normalize_registry;
/// assert_eq!(normalize_registry("https://index.docker.io/v1/"), "docker.io");
/// assert_eq!(normalize_registry("https://Registry.example:5000/v2/"), "registry.example:5000");
/// ```
pub fn normalize_registry(key: &str) -> String {
    let key = key.trim();
    let rest = strip_scheme(key).unwrap_or(key);
    let host = rest.split('/').next().unwrap_or(rest).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
        _ => host,
    }
}

/// How `ociref` names Docker Hub.
const DOCKER_HUB: &str = "docker.io";

/// The key docker uses for Docker Hub, in files and when asking helpers.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The server URL docker gives helpers and uses as `auths` key when it logs
/// in: Hub's legacy URL, else the bare registry.
fn server_key(registry: &str) -> String {
    let registry = normalize_registry(registry);
    if registry == DOCKER_HUB {
        return DOCKER_HUB_KEY.to_owned();
    }
    registry
}

/// Whether a config key is scoped to a namespace (`quay.io/org`), the
/// containers way, rather than naming a whole registry.
fn is_namespaced(key: &str) -> bool {
    let key = key.trim();
    strip_scheme(key).is_none()
        && key
            .split_once('/')
            .is_some_and(|(_, path)| !path.trim_matches('/').is_empty())
}

fn strip_scheme(key: &str) -> Option<&str> {
    ["https://", "http://"].into_iter().find_map(|scheme| {
        let head = key.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme)
            .then(|| &key[scheme.len()..])
    })
}
