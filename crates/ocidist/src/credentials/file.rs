//! docker `config.json` and containers `auth.json`: reading and lookups.

use super::helper::run_helper;
use super::{Credential, CredentialSource, Secret, is_namespaced, normalize_registry};
use crate::{Error, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// docker's `config.json`: `credHelpers`, `auths` and `credsStore`, asked in
/// that order (see the [module documentation](super)).
///
/// The file is parsed once, by [`DockerConfig::load`]; helpers run on every
/// lookup.
#[derive(Debug, Clone, Default)]
pub struct DockerConfig {
    path: Option<PathBuf>,
    auths: Auths,
    cred_helpers: BTreeMap<String, String>,
    creds_store: Option<String>,
    helper_path: Vec<PathBuf>,
}

impl DockerConfig {
    /// Reads the config file at `path`; an absent or empty file has no
    /// credentials. Helpers are looked for on `$PATH` (see
    /// [`DockerConfig::with_helper_path`]).
    pub fn load(path: &Path) -> Result<Self> {
        let contents = read_config(path)?;
        let helpers = |map: BTreeMap<String, String>| {
            map.into_iter()
                .filter(|(key, helper)| !is_namespaced(key) && !helper.is_empty())
                .map(|(key, helper)| (normalize_registry(&key), helper))
                .collect()
        };
        Ok(Self {
            path: Some(path.to_owned()),
            auths: Auths::from_entries(path, contents.auths)?,
            cred_helpers: helpers(contents.cred_helpers),
            creds_store: contents.creds_store.filter(|s| !s.is_empty()),
            helper_path: super::Locations::from_env().helper_path,
        })
    }

    /// Reads the config file the environment points to (`$DOCKER_CONFIG`,
    /// else `~/.docker`); with neither variable set, there are no credentials.
    pub fn from_env() -> Result<Self> {
        let locations = super::Locations::from_env();
        match &locations.docker_config {
            Some(path) => Self::load(path),
            None => Ok(Self::default()),
        }
    }

    /// Looks for `docker-credential-<name>` helpers in `dirs` (in order)
    /// instead of `$PATH`.
    pub fn with_helper_path(mut self, dirs: Vec<PathBuf>) -> Self {
        self.helper_path = dirs;
        self
    }

    /// The file this configuration was read from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn ask_helper(&self, helper: Option<&String>, registry: &str) -> Result<Option<Credential>> {
        match helper {
            Some(helper) => run_helper(helper, registry, &self.helper_path),
            None => Ok(None),
        }
    }
}

impl CredentialSource for DockerConfig {
    fn credential(&self, registry: &str) -> Result<Option<Credential>> {
        let registry = normalize_registry(registry);
        if let Some(found) = self.ask_helper(self.cred_helpers.get(&registry), &registry)? {
            return Ok(Some(found));
        }
        if let Some(found) = self.auths.get(&registry) {
            return Ok(Some(found.clone()));
        }
        self.ask_helper(self.creds_store.as_ref(), &registry)
    }
}

/// The `auths` of containers `auth.json` files, asked in order.
///
/// Their `credHelpers` are not consulted.
#[derive(Debug, Clone, Default)]
pub struct ContainersAuth {
    files: Vec<Auths>,
}

impl ContainersAuth {
    /// Reads the files at `paths`, most important first; absent or empty
    /// files have no credentials.
    pub fn load(paths: &[PathBuf]) -> Result<Self> {
        let files = paths
            .iter()
            .map(|path| Auths::from_entries(path, read_config(path)?.auths))
            .collect::<Result<_>>()?;
        Ok(Self { files })
    }

    /// Reads the files at `paths` as [`ContainersAuth::load`] does, but
    /// skips those that cannot be read or parsed: their errors come back
    /// beside the credentials of the others, for the caller to report.
    pub fn load_skipping_broken(paths: &[PathBuf]) -> (Self, Vec<Error>) {
        let mut files = Vec::new();
        let mut broken = Vec::new();
        for path in paths {
            match read_config(path).and_then(|config| Auths::from_entries(path, config.auths)) {
                Ok(auths) => files.push(auths),
                Err(err) => broken.push(err),
            }
        }
        (Self { files }, broken)
    }

    /// Reads the files the environment points to (see
    /// [`Locations::from_vars`](super::Locations::from_vars)).
    pub fn from_env() -> Result<Self> {
        Self::load(&super::Locations::from_env().containers_auth)
    }
}

impl CredentialSource for ContainersAuth {
    fn credential(&self, registry: &str) -> Result<Option<Credential>> {
        let registry = normalize_registry(registry);
        Ok(self
            .files
            .iter()
            .find_map(|auths| auths.get(&registry))
            .cloned())
    }
}

/// The usable `auths` entries of one file, by normalized registry, in key order.
#[derive(Debug, Clone, Default)]
struct Auths(Vec<(String, Credential)>);

impl Auths {
    fn from_entries(path: &Path, entries: BTreeMap<String, AuthEntry>) -> Result<Self> {
        let mut found = Vec::new();
        for (key, entry) in entries {
            if is_namespaced(&key) {
                continue;
            }
            let credential = entry
                .into_credential()
                .map_err(|reason| Error::CredentialFile {
                    path: path.to_owned(),
                    reason: format!("auths entry {key:?}: {reason}"),
                })?;
            if let Some(credential) = credential {
                found.push((normalize_registry(&key), credential));
            }
        }
        Ok(Self(found))
    }

    fn get(&self, registry: &str) -> Option<&Credential> {
        self.0
            .iter()
            .find(|(key, _)| key == registry)
            .map(|(_, c)| c)
    }
}

/// The parts of either file format we read; unknown fields are ignored.
#[derive(Default, Deserialize)]
#[serde(default)]
struct ConfigFile {
    auths: BTreeMap<String, AuthEntry>,
    #[serde(rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(rename = "credsStore")]
    creds_store: Option<String>,
}

/// One `auths` entry. Deliberately not `Debug`: it holds secrets in clear.
#[derive(Default, Deserialize)]
#[serde(default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
    registrytoken: Option<String>,
}

impl AuthEntry {
    /// The entry's credential: `registrytoken`, else `identitytoken`, else
    /// `auth`, else `username`/`password`. The error never contains a secret.
    fn into_credential(self) -> Result<Option<Credential>, String> {
        let nonempty = |value: Option<String>| value.filter(|v| !v.is_empty());
        if let Some(token) = nonempty(self.registrytoken) {
            return Ok(Some(Credential::RegistryToken(Secret(token))));
        }
        if let Some(token) = nonempty(self.identitytoken) {
            return Ok(Some(Credential::IdentityToken(Secret(token))));
        }
        if let Some(auth) = nonempty(self.auth) {
            return decode_auth(&auth).map(Some);
        }
        Ok(nonempty(self.username).map(|username| Credential::Basic {
            username,
            password: Secret(self.password.unwrap_or_default()),
        }))
    }
}

/// Decodes an `auth` field: base64 of `username:password`.
fn decode_auth(auth: &str) -> Result<Credential, String> {
    let bytes = STANDARD
        .decode(auth.trim())
        .map_err(|_| "`auth` is not valid base64".to_owned())?;
    let text =
        String::from_utf8(bytes).map_err(|_| "`auth` does not decode to UTF-8".to_owned())?;
    let (username, password) = text
        .split_once(':')
        .ok_or_else(|| "`auth` does not decode to username:password".to_owned())?;
    Ok(Credential::basic(username, password.trim_end_matches('\0')))
}

/// Reads and parses a config file; absent or blank files are empty.
fn read_config(path: &Path) -> Result<ConfigFile> {
    let Some(text) = read_text(path)? else {
        return Ok(ConfigFile::default());
    };
    serde_json::from_str(&text).map_err(|e| Error::CredentialFile {
        path: path.to_owned(),
        reason: json_reason(&e),
    })
}

/// The file's text, or `None` when it is absent or blank.
pub(super) fn read_text(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(None),
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::CredentialFile {
            path: path.to_owned(),
            reason: format!("cannot read: {e}"),
        }),
    }
}

/// Describes a JSON error by position only: serde's messages may quote the
/// offending value, which may be a secret.
pub(super) fn json_reason(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => "not valid JSON",
        Category::Data => "unexpected value",
    };
    format!("{what} at line {}, column {}", e.line(), e.column())
}
