//! What a command runs with: the settings file merged under the flags, the
//! store, and a registry client.

use crate::cli::Global;
use crate::error::CliError;
use crate::progress::Progress;
use ociref::Platform;
use ocistore::Store;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The settings file (`--config`, else `$XDG_CONFIG_HOME/cachectl/config.toml`
/// when present). Flags and environment variables win over it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsFile {
    /// The cache directory.
    pub(crate) root: Option<PathBuf>,
    /// The default platform.
    pub(crate) platform: Option<String>,
    /// Blobs transferred at once.
    pub(crate) concurrency: Option<usize>,
    /// Registries reached over plain HTTP.
    #[serde(default)]
    pub(crate) insecure_registries: Vec<String>,
}

impl SettingsFile {
    /// Reads `path`; `required` says whether its absence is an error (it is
    /// when the user named the file).
    pub(crate) fn load(path: &Path, required: bool) -> Result<SettingsFile, CliError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if !required && err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(SettingsFile::default());
            }
            Err(err) => {
                return Err(CliError::Settings {
                    path: path.to_path_buf(),
                    reason: err.to_string(),
                });
            }
        };
        toml::from_str(&text).map_err(|err| CliError::Settings {
            path: path.to_path_buf(),
            reason: err.message().to_owned(),
        })
    }
}

/// Everything a command needs, resolved once.
pub(crate) struct Context {
    /// The cache.
    pub(crate) store: Store,
    /// The platform to pick (flag, else settings file, else the host's).
    pub(crate) platform: Option<Platform>,
    /// Blobs transferred at once.
    pub(crate) concurrency: usize,
    insecure_registries: Vec<String>,
}

impl Context {
    /// Resolves the settings and opens the store.
    pub(crate) fn new(global: &Global) -> Result<Context, CliError> {
        let file = match &global.config {
            Some(path) => SettingsFile::load(path, true)?,
            None => match default_settings_path() {
                Some(path) => SettingsFile::load(&path, false)?,
                None => SettingsFile::default(),
            },
        };
        let root = global
            .root
            .clone()
            .or(file.root)
            .or_else(|| ocistore::default_root(|name| std::env::var(name).ok()))
            .ok_or_else(|| {
                CliError::Usage(
                    "no cache directory: pass --root, or set CACHECTL_ROOT, XDG_CACHE_HOME or HOME"
                        .into(),
                )
            })?;
        let platform = match global.platform.clone().or(file.platform) {
            Some(text) => Some(text.parse::<Platform>().map_err(|source| CliError::Parse {
                what: "platform",
                input: text,
                source,
            })?),
            None => None,
        };
        let concurrency = global.concurrency.or(file.concurrency).unwrap_or(4);
        if concurrency == 0 {
            return Err(CliError::Usage("--concurrency must be at least 1".into()));
        }
        let mut insecure_registries = file.insecure_registries;
        insecure_registries.extend(global.insecure_registries.iter().cloned());
        Ok(Context {
            store: Store::open(root)?,
            platform,
            concurrency,
            insecure_registries,
        })
    }

    /// A registry client with the user's credentials (docker config,
    /// containers auth.json) reporting to `progress`.
    pub(crate) fn client(&self, progress: &Progress) -> Result<ocidist::Client, CliError> {
        let mut config = ocidist::ClientConfig::default();
        config.insecure_registries = self.insecure_registries.clone();
        config.user_agent = concat!("cachectl/", env!("CARGO_PKG_VERSION")).to_owned();
        // https_proxy, http_proxy, all_proxy and no_proxy, as curl reads them.
        config.proxy = ocidist::ProxyConfig::from_env()?;
        let credentials =
            ocidist::credentials::default_source(ocidist::credentials::StaticCredentials::new())?;
        let client = ocidist::Client::new(config, Arc::new(credentials))?;
        Ok(match progress.callback() {
            Some(callback) => client.with_progress(callback),
            None => client,
        })
    }
}

fn default_settings_path() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let config_home = var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|home| Path::new(&home).join(".config")))?;
    Some(config_home.join("cachectl").join("config.toml"))
}

/// Parses a reference given on the command line.
pub(crate) fn parse_reference(text: &str) -> Result<ociref::Reference, CliError> {
    text.parse().map_err(|source| CliError::Parse {
        what: "reference",
        input: text.to_owned(),
        source,
    })
}

/// Parses every reference of a command line, failing on the first bad one.
pub(crate) fn parse_references(texts: &[String]) -> Result<Vec<ociref::Reference>, CliError> {
    texts.iter().map(|text| parse_reference(text)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_file_is_read_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "root = \"/var/cache/c\"\nconcurrency = 8\ninsecure_registries = [\"reg:5000\"]\n",
        )
        .expect("written");
        let file = SettingsFile::load(&path, true).expect("valid");
        assert_eq!(file.root, Some(PathBuf::from("/var/cache/c")));
        assert_eq!(file.concurrency, Some(8));
        assert_eq!(file.insecure_registries, ["reg:5000"]);
        std::fs::write(&path, "rooot = 1\n").expect("written");
        let err = SettingsFile::load(&path, true).expect_err("unknown key");
        assert!(err.to_string().contains("rooot"), "{err}");
        assert!(SettingsFile::load(&dir.path().join("absent"), true).is_err());
        assert!(SettingsFile::load(&dir.path().join("absent"), false).is_ok());
    }
}
