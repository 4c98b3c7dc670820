//! What a command runs with: the settings file merged under the flags, the
//! store, and a registry client.

use crate::cli::Global;
use crate::error::CliError;
use crate::output::Output;
use crate::password::Creds;
use crate::progress::Progress;
use ocidist::credentials::{Chain, Credential, CredentialSource, DockerConfig, Locations};
use ociref::Platform;
use ocistore::Store;
use serde::Deserialize;
use std::collections::BTreeMap;
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
    /// The hosts directory (mirrors, containerd's `hosts.toml` layout).
    pub(crate) hosts_dir: Option<PathBuf>,
    /// Whether a pull of a cached tag falls back to the cached digest when
    /// the registry cannot be reached (default true).
    pub(crate) stale_fallback: Option<bool>,
    /// Whether TLS certificates are verified (`--tls-verify`).
    pub(crate) tls_verify: Option<bool>,
    /// Certificates for every registry, docker's layout (`--cert-dir`).
    pub(crate) cert_dir: Option<PathBuf>,
    /// The credentials file (`--authfile`). There is no `creds` key: a
    /// password does not belong in a settings file that is often shared
    /// and readable by others; `login` writes it to the credentials file,
    /// mode 0600.
    pub(crate) authfile: Option<PathBuf>,
    /// Retries of a failed request (`--retry-times`).
    pub(crate) retry_times: Option<u32>,
    /// The `mke2fs` `build` runs (`build --mke2fs`).
    pub(crate) mke2fs: Option<PathBuf>,
    /// The `debugfs` `build` runs (`build --debugfs`).
    pub(crate) debugfs: Option<PathBuf>,
    /// The `tar2sqfs` `build --fs squashfs` runs (`build --tar2sqfs`).
    pub(crate) tar2sqfs: Option<PathBuf>,
    /// The `mkfs.erofs` `build --fs erofs` runs (`build --mkfs-erofs`).
    pub(crate) mkfs_erofs: Option<PathBuf>,
}

/// A program `build` runs from a given path, and where that path was set
/// (`--mke2fs`, `mke2fs in FILE`), for errors to name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ToolPath {
    /// The program.
    pub(crate) path: PathBuf,
    /// The flag or settings key that named it.
    pub(crate) setting: String,
}

/// The programs `build` runs (their names as `rootfs` knows them), each
/// with its flag and its settings key, in that order.
pub(crate) const TOOLS: [(&str, &str, &str); 4] = [
    ("mke2fs", "--mke2fs", "mke2fs"),
    ("debugfs", "--debugfs", "debugfs"),
    ("tar2sqfs", "--tar2sqfs", "tar2sqfs"),
    ("mkfs.erofs", "--mkfs-erofs", "mkfs_erofs"),
];

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

    /// The programs the file gives paths for, by name (`mkfs.erofs` for
    /// the key `mkfs_erofs`); `path` is the file, for errors to name.
    fn tool_paths(&mut self, path: Option<&Path>) -> BTreeMap<String, ToolPath> {
        let file = path.map_or_else(String::new, |p| format!(" in {}", p.display()));
        let given = [
            self.mke2fs.take(),
            self.debugfs.take(),
            self.tar2sqfs.take(),
            self.mkfs_erofs.take(),
        ];
        TOOLS
            .iter()
            .zip(given)
            .filter_map(|((name, _, key), given)| {
                let setting = format!("{key}{file}");
                Some((
                    (*name).to_owned(),
                    ToolPath {
                        path: given?,
                        setting,
                    },
                ))
            })
            .collect()
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
    /// Whether a pull of a cached tag may fall back to the cached digest.
    pub(crate) stale_fallback: bool,
    /// The programs the settings file gives paths for (`build`'s flags
    /// win over them), by name.
    pub(crate) tool_paths: BTreeMap<String, ToolPath>,
    /// How registries are reached.
    network: Network,
    /// The clients handed out, for the mirrors they skipped.
    clients: std::sync::Mutex<Vec<ocidist::Client>>,
    /// Where notes go (not with `-q` or `--json`).
    out: Output,
}

impl Context {
    /// Resolves the settings and opens the store.
    pub(crate) fn new(global: &Global) -> Result<Context, CliError> {
        let (mut file, config_path) = load_settings(global)?;
        let network = Network::new(global, &mut file);
        let tool_paths = file.tool_paths(config_path.as_deref());
        let root = cache_root(global, file.root, config_path.as_deref())?;
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
        Ok(Context {
            store: Store::open(root)?,
            platform,
            concurrency,
            stale_fallback: file.stale_fallback.unwrap_or(true),
            tool_paths,
            network,
            clients: std::sync::Mutex::new(Vec::new()),
            out: Output {
                json: global.json,
                quiet: global.quiet,
            },
        })
    }

    /// A registry client with the user's credentials (`--creds`, then
    /// `--authfile` or the docker config and containers auth.json)
    /// reporting to `progress`.
    pub(crate) fn client(&self, progress: &Progress) -> Result<ocidist::Client, CliError> {
        let config = self.network.client_config()?;
        let credentials = self.network.credentials(&config, &self.out)?;
        let client = ocidist::Client::new(config, credentials)?;
        self.clients
            .lock()
            .expect("because no code panics while holding the lock")
            .push(client.clone());
        Ok(match progress.callback() {
            Some(callback) => client.with_progress(callback),
            None => client,
        })
    }
}

impl Context {
    /// What the command's clients spent, per host (summed over clients).
    pub(crate) fn usage(&self) -> Vec<ocidist::HostUsage> {
        let clients = self
            .clients
            .lock()
            .expect("because no code panics while holding the lock");
        let mut all: Vec<ocidist::HostUsage> = Vec::new();
        for usage in clients.iter().flat_map(ocidist::Client::usage) {
            match all.iter_mut().find(|u| u.host == usage.host) {
                Some(sum) => {
                    sum.manifest_head += usage.manifest_head;
                    sum.manifest_get += usage.manifest_get;
                    sum.blob_get += usage.blob_get;
                    sum.token += usage.token;
                    sum.other += usage.other;
                    sum.bytes += usage.bytes;
                    sum.retries += usage.retries;
                    sum.ratelimit_limit = usage.ratelimit_limit.or(sum.ratelimit_limit);
                    sum.ratelimit_remaining = usage.ratelimit_remaining.or(sum.ratelimit_remaining);
                    sum.retry_after_seconds = usage.retry_after_seconds.or(sum.retry_after_seconds);
                }
                None => all.push(usage),
            }
        }
        all
    }

    /// The mirrors the command's clients skipped, in the order they failed.
    pub(crate) fn skipped_mirrors(&self) -> Vec<ocidist::SkippedMirror> {
        self.clients
            .lock()
            .expect("because no code panics while holding the lock")
            .iter()
            .flat_map(ocidist::Client::skipped_mirrors)
            .collect()
    }
}

/// Reads the settings file (`--config`, else the default one when present);
/// also returns its path.
fn load_settings(global: &Global) -> Result<(SettingsFile, Option<PathBuf>), CliError> {
    let config_path = global.config.clone().or_else(default_settings_path);
    let file = match &config_path {
        Some(path) => SettingsFile::load(path, global.config.is_some())?,
        None => SettingsFile::default(),
    };
    Ok((file, config_path))
}

/// How commands reach registries: the flags merged over the settings file.
pub(crate) struct Network {
    insecure_registries: Vec<String>,
    /// The hosts directory, when one applies.
    hosts_dir: Option<PathBuf>,
    tls_verify: bool,
    cert_dir: Option<PathBuf>,
    /// The credentials file named by `--authfile` or the settings file.
    pub(crate) authfile: Option<PathBuf>,
    retry_times: Option<u32>,
    creds: Option<Creds>,
    /// The `--creds` credential, once its password is known.
    credential: std::sync::Mutex<Option<Credential>>,
}

impl Network {
    /// The network settings alone (for `login` and `logout`, which need no
    /// cache).
    pub(crate) fn from_global(global: &Global) -> Result<Network, CliError> {
        let (mut file, _) = load_settings(global)?;
        Ok(Network::new(global, &mut file))
    }

    fn new(global: &Global, file: &mut SettingsFile) -> Network {
        let mut insecure_registries = std::mem::take(&mut file.insecure_registries);
        insecure_registries.extend(global.insecure_registries.iter().cloned());
        Network {
            insecure_registries,
            hosts_dir: hosts_dir(global, file.hosts_dir.take()),
            tls_verify: global.tls_verify.or(file.tls_verify).unwrap_or(true),
            cert_dir: global.cert_dir.clone().or(file.cert_dir.take()),
            authfile: global.authfile.clone().or(file.authfile.take()),
            retry_times: global.retry_times.or(file.retry_times),
            creds: global.creds.clone(),
            credential: std::sync::Mutex::new(None),
        }
    }

    /// The client configuration these settings make.
    pub(crate) fn client_config(&self) -> Result<ocidist::ClientConfig, CliError> {
        let mut config = ocidist::ClientConfig::default();
        config.insecure_registries = self.insecure_registries.clone();
        config.user_agent = concat!("cachectl/", env!("CARGO_PKG_VERSION")).to_owned();
        // https_proxy, http_proxy, all_proxy and no_proxy, as curl reads them.
        config.proxy = ocidist::ProxyConfig::from_env()?;
        // Mirrors, from containerd's hosts directory; a malformed file is a
        // usage error naming the file and line.
        if let Some(dir) = &self.hosts_dir {
            config.hosts = ocidist::HostsConfig::load(dir)?;
        }
        config.tls_verify = self.tls_verify;
        config.cert_dir = self.cert_dir.clone();
        if let Some(retries) = self.retry_times {
            config.retry.max_attempts = retries.saturating_add(1);
        }
        Ok(config)
    }

    /// Where credentials come from: `--creds` (for every registry but the
    /// mirrors), then `--authfile` alone when given, else docker's config
    /// and the containers auth.json files. A default file that does not
    /// parse is skipped with a warning, as the docker CLI does (anonymous
    /// pulls and cached images do not need it); a named one is an error.
    pub(crate) fn credentials(
        &self,
        config: &ocidist::ClientConfig,
        out: &Output,
    ) -> Result<Arc<dyn CredentialSource>, CliError> {
        let mut chain = Chain::new();
        if let Some(credential) = self.creds_credential()? {
            let mirrors = config
                .hosts
                .namespaces()
                .flat_map(|(_, hosts)| hosts.mirrors.iter().map(|m| m.authority()))
                .collect();
            chain = chain.with(CommandCreds {
                credential,
                mirrors,
            });
        }
        let chain = match &self.authfile {
            Some(path) => {
                let helpers = Locations::from_env().helper_path;
                chain.with(DockerConfig::load(path)?.with_helper_path(helpers))
            }
            None => {
                let (files, broken) = ocidist::credentials::default_source_skipping_broken(
                    ocidist::credentials::StaticCredentials::new(),
                );
                for err in broken {
                    out.note(&format!(
                        "warning: {err}; carrying on without the credentials it holds"
                    ));
                }
                chain.with(files)
            }
        };
        Ok(Arc::new(chain))
    }

    /// The `--creds` credential, asking for its password the first time.
    fn creds_credential(&self) -> Result<Option<Credential>, CliError> {
        let Some(creds) = &self.creds else {
            return Ok(None);
        };
        let mut known = self
            .credential
            .lock()
            .expect("because no code panics while holding the lock");
        if known.is_none() {
            *known = Some(creds.credential()?);
        }
        Ok(known.clone())
    }
}

/// `--creds`: one credential for every registry a command reaches, except
/// the mirrors of the hosts directory (they are other parties).
#[derive(Debug)]
struct CommandCreds {
    credential: Credential,
    mirrors: std::collections::HashSet<String>,
}

impl CredentialSource for CommandCreds {
    fn credential(&self, registry: &str) -> ocidist::Result<Option<Credential>> {
        Ok((!self.mirrors.contains(registry)).then(|| self.credential.clone()))
    }
}

/// The hosts directory: `--hosts-dir`, else `CACHECTL_HOSTS_DIR`, else the
/// settings file's `hosts_dir`, else containerd's `/etc/containerd/certs.d`
/// when it exists. An empty value turns mirrors off.
fn hosts_dir(global: &Global, from_file: Option<PathBuf>) -> Option<PathBuf> {
    let chosen = global
        .hosts_dir
        .clone()
        .or_else(|| std::env::var_os("CACHECTL_HOSTS_DIR").map(PathBuf::from))
        .or(from_file);
    match chosen {
        Some(dir) if dir.as_os_str().is_empty() => None,
        Some(dir) => Some(dir),
        None => {
            let containerd = Path::new(ocidist::hosts::CONTAINERD_HOSTS_DIR);
            containerd.is_dir().then(|| containerd.to_path_buf())
        }
    }
}

/// The cache directory: `--root` (or `CACHECTL_ROOT`), else the settings
/// file's `root`, else the default. An empty value, or one naming
/// something other than a directory, is a usage error naming the setting.
fn cache_root(
    global: &Global,
    from_file: Option<PathBuf>,
    config_path: Option<&Path>,
) -> Result<PathBuf, CliError> {
    let (root, setting) = if let Some(root) = global.root.clone() {
        (root, "--root".to_owned())
    } else if let Some(root) = std::env::var_os("CACHECTL_ROOT") {
        (PathBuf::from(root), "CACHECTL_ROOT".to_owned())
    } else if let Some(root) = from_file {
        let file = config_path.map_or_else(String::new, |p| format!(" in {}", p.display()));
        (root, format!("root{file}"))
    } else {
        let root = ocistore::default_root(|name| std::env::var(name).ok()).ok_or_else(|| {
            CliError::Usage(
                "no cache directory: pass --root, or set CACHECTL_ROOT, XDG_CACHE_HOME or HOME"
                    .into(),
            )
        })?;
        (root, "the default cache directory".to_owned())
    };
    let refuse = |reason: &'static str| CliError::Root {
        setting: setting.clone(),
        value: root.clone(),
        reason,
    };
    if root.as_os_str().is_empty() {
        return Err(refuse("is empty: name the cache directory there"));
    }
    match std::fs::metadata(&root) {
        Ok(meta) if !meta.is_dir() => Err(refuse("is not a directory")),
        _ => Ok(root),
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
    fn creds_go_to_registries_and_not_to_mirrors() {
        let creds = CommandCreds {
            credential: Credential::basic("me", "pw"),
            mirrors: ["mirror.lan:5000".to_owned()].into(),
        };
        assert!(creds.credential("reg.lan:5000").expect("ok").is_some());
        assert!(creds.credential("mirror.lan:5000").expect("ok").is_none());
        assert!(!format!("{creds:?}").contains("pw"));
    }

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
        std::fs::write(
            &path,
            "tls_verify = false\ncert_dir = \"/c\"\nauthfile = \"/a.json\"\nretry_times = 0\n",
        )
        .expect("written");
        let file = SettingsFile::load(&path, true).expect("valid");
        assert_eq!(file.tls_verify, Some(false));
        assert_eq!(file.cert_dir, Some(PathBuf::from("/c")));
        assert_eq!(file.authfile, Some(PathBuf::from("/a.json")));
        assert_eq!(file.retry_times, Some(0));
        std::fs::write(
            &path,
            "mke2fs = \"/opt/e2fs/mke2fs\"\nmkfs_erofs = \"/opt/erofs/mkfs.erofs\"\n",
        )
        .expect("written");
        let mut file = SettingsFile::load(&path, true).expect("valid");
        let tools = file.tool_paths(Some(&path));
        assert_eq!(
            tools.keys().collect::<Vec<_>>(),
            ["mke2fs", "mkfs.erofs"],
            "by program name"
        );
        assert_eq!(
            tools["mkfs.erofs"],
            ToolPath {
                path: PathBuf::from("/opt/erofs/mkfs.erofs"),
                setting: format!("mkfs_erofs in {}", path.display()),
            }
        );
        // No password in the settings file.
        std::fs::write(&path, "creds = \"me:secret\"\n").expect("written");
        let err = SettingsFile::load(&path, true).expect_err("unknown key");
        assert!(!err.to_string().contains("secret"), "{err}");
        std::fs::write(&path, "rooot = 1\n").expect("written");
        let err = SettingsFile::load(&path, true).expect_err("unknown key");
        assert!(err.to_string().contains("rooot"), "{err}");
        assert!(SettingsFile::load(&dir.path().join("absent"), true).is_err());
        assert!(SettingsFile::load(&dir.path().join("absent"), false).is_ok());
    }
}
