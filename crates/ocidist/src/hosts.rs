//! Mirrors and per-host settings, read from containerd's hosts directory.
//!
//! The layout is containerd's, so a fleet's existing configuration works
//! unchanged: `<dir>/<namespace>/hosts.toml`, where the namespace is the
//! registry as references name it (`docker.io`, `ghcr.io`,
//! `reg.internal:5000`; containerd's `reg.internal_5000_` spelling is read
//! too), and `<dir>/_default/hosts.toml` applies to every registry that has
//! no directory of its own. A directory without `hosts.toml` is docker's
//! certificate layout (`ca.crt`, `client.cert` and `client.key`), read as
//! containerd reads it ([`load_cert_dir`]).
//!
//! ```toml
//! server = "https://registry-1.docker.io"   # where the registry itself is
//!
//! [host."http://mirror.internal:5000"]      # tried first, in file order
//!   capabilities = ["pull", "resolve"]      # default: pull, resolve, push
//!   skip_verify = false
//!   ca = "mirror-ca.pem"                     # relative to this file
//!   client = [["client.crt", "client.key"]]
//!   [host."http://mirror.internal:5000".header]
//!     x-fleet = "rack-7"
//!
//! [host."https://p2p.local/v2/cache"]
//!   capabilities = ["pull"]                 # never asked to resolve a tag
//!   override_path = true                    # the path is the API root
//! ```
//!
//! A tag is resolved only at hosts with `resolve`; manifests and blobs by
//! digest come from hosts with `pull`; the `server` (by default the registry
//! itself) is tried last. Pushes and listings go to the server only. Keys
//! this crate does not use (`dial_timeout`, `proxy`, and anything unknown)
//! are ignored with a warning naming the file and line; a file that is not
//! valid TOML, or a known key with a value of the wrong type, is an
//! [`crate::Error::HostsConfig`] naming the file and line.

use crate::error::{Error, Result};
use reqwest::Url;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The directory containerd reads, used when nothing else is configured and
/// it exists.
pub const CONTAINERD_HOSTS_DIR: &str = "/etc/containerd/certs.d";

/// The namespace that applies to registries without a directory of their own.
pub const DEFAULT_NAMESPACE: &str = "_default";

/// What a host may be asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Fetch manifests and blobs by digest.
    pub pull: bool,
    /// Turn a tag into a digest (a trusted operation).
    pub resolve: bool,
    /// Receive pushes (only the server is ever pushed to).
    pub push: bool,
}

impl Capabilities {
    /// All three, containerd's default.
    pub const ALL: Capabilities = Capabilities {
        pull: true,
        resolve: true,
        push: true,
    };
}

/// One host of a namespace: a mirror (`[host."URL"]`) or the server.
/// `Debug` shows header names, never their values (they may carry a
/// token).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostEndpoint {
    /// The URL as configured (`https://` assumed when it names no scheme).
    pub url: Url,
    /// What it may be asked.
    pub capabilities: Capabilities,
    /// Extra trusted CA files (PEM).
    pub ca: Vec<PathBuf>,
    /// Client certificates: (certificate, key) files, the key `None` when
    /// the certificate file holds it too.
    pub client: Vec<(PathBuf, Option<PathBuf>)>,
    /// Accept any certificate (tests and other ways of trusting the host).
    pub skip_verify: bool,
    /// The URL's path is the API root (no `/v2` appended).
    pub override_path: bool,
    /// Headers sent with every request to this host.
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for HostEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HostEndpoint")
            .field("url", &self.url.as_str())
            .field("capabilities", &self.capabilities)
            .field("ca", &self.ca)
            .field("client", &self.client)
            .field("skip_verify", &self.skip_verify)
            .field("override_path", &self.override_path)
            .field("header_names", &header_names)
            .finish()
    }
}

impl HostEndpoint {
    /// An endpoint at `url` with containerd's defaults.
    pub fn new(url: Url) -> Self {
        HostEndpoint {
            url,
            capabilities: Capabilities::ALL,
            ca: Vec::new(),
            client: Vec::new(),
            skip_verify: false,
            override_path: false,
            headers: Vec::new(),
        }
    }

    /// `host[:port]` of the URL: the name credentials and TLS settings for
    /// this endpoint are looked up by.
    pub fn authority(&self) -> String {
        authority(&self.url)
    }

    /// The root of the distribution API on this host, without a trailing
    /// slash: the URL's path followed by `/v2`, or the path itself with
    /// `override_path`.
    pub fn api_root(&self) -> String {
        let mut root = format!("{}://{}", self.url.scheme(), self.authority());
        let path = self.url.path().trim_end_matches('/');
        root.push_str(path);
        if !self.override_path && !path.ends_with("/v2") {
            root.push_str("/v2");
        }
        root
    }
}

/// `host[:port]` of a URL (IPv6 hosts in brackets).
pub(crate) fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// The settings of one namespace: one `hosts.toml`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryHosts {
    /// The file they were read from (the directory, for docker's
    /// certificate layout).
    pub file: PathBuf,
    /// The `server` (with the top-level keys), when the file names one;
    /// otherwise the registry itself is the server.
    pub server: Option<HostEndpoint>,
    /// Settings for the registry itself when the file names no `server`:
    /// the top-level `ca`, `client`, `skip_verify` and `header`, or the
    /// certificates of docker's layout; its capabilities are always all
    /// three (as in containerd).
    pub server_settings: HostEndpoint,
    /// The `[host."…"]` tables, in file order.
    pub mirrors: Vec<HostEndpoint>,
}

/// A hosts directory, read whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostsConfig {
    /// The directory read (`None` when empty).
    pub dir: Option<PathBuf>,
    namespaces: BTreeMap<String, RegistryHosts>,
}

impl HostsConfig {
    /// No mirrors at all.
    pub fn none() -> Self {
        HostsConfig::default()
    }

    /// Reads every `<dir>/<namespace>/hosts.toml`. A namespace directory
    /// without one (or with an empty one) is docker's certificate layout,
    /// read as [`load_cert_dir`] does; a `hosts.toml` with content is read
    /// alone, certificate files beside it are not (as containerd does).
    /// Fails on the first file that cannot be read or parsed.
    pub fn load(dir: &Path) -> Result<Self> {
        let io = |source: std::io::Error| Error::HostsConfig {
            path: dir.to_path_buf(),
            line: None,
            reason: source.to_string(),
        };
        let mut namespaces = BTreeMap::new();
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .collect::<std::io::Result<_>>()
            .map_err(io)?;
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let namespace_dir = entry.path();
            if !namespace_dir.is_dir() {
                continue;
            }
            let namespace = namespace_from_dir(&name);
            let file = namespace_dir.join("hosts.toml");
            let hosts = match std::fs::read_to_string(&file) {
                Ok(text) if !text.is_empty() => Some(parse_hosts_toml(&file, &text, &namespace)?),
                Ok(_) => load_cert_dir(&namespace_dir, &namespace)?,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    load_cert_dir(&namespace_dir, &namespace)?
                }
                Err(err) => {
                    return Err(Error::HostsConfig {
                        path: file,
                        line: None,
                        reason: err.to_string(),
                    });
                }
            };
            let Some(hosts) = hosts else {
                tracing::debug!(dir = %namespace_dir.display(), "not a registry name; directory ignored");
                continue;
            };
            namespaces.insert(namespace, hosts);
        }
        Ok(HostsConfig {
            dir: Some(dir.to_path_buf()),
            namespaces,
        })
    }

    /// Adds (or replaces) the settings of one namespace; for callers that
    /// build the configuration in code.
    pub fn insert(&mut self, namespace: &str, hosts: RegistryHosts) {
        self.namespaces.insert(namespace.to_owned(), hosts);
    }

    /// The settings that apply to `registry` (`host[:port]` as references
    /// name it): its own namespace, else `_default`, else none.
    pub fn for_registry(&self, registry: &str) -> Option<&RegistryHosts> {
        self.namespaces
            .get(registry)
            .or_else(|| self.namespaces.get(DEFAULT_NAMESPACE))
    }

    /// The settings of `registry` itself (its CAs, client certificates,
    /// `skip_verify`, headers) when the namespace that applies to it (its
    /// own, else `_default`) names no `server`; `None` when no namespace
    /// applies or it names a `server` (the settings are the server's then).
    pub fn registry_settings(&self, registry: &str) -> Option<&HostEndpoint> {
        self.for_registry(registry)
            .filter(|hosts| hosts.server.is_none())
            .map(|hosts| &hosts.server_settings)
    }

    /// Every namespace read, by name.
    pub fn namespaces(&self) -> impl Iterator<Item = (&str, &RegistryHosts)> {
        self.namespaces.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether no namespace is configured.
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
    }
}

/// Reads a namespace directory in docker's certificate layout, as
/// containerd does when it has no `hosts.toml`: every `*.crt` file is a
/// trusted CA, every `X.cert` a client certificate whose key is `X.key`
/// when that exists (else the `.cert` file holds the key too); other files
/// and subdirectories are not read. They configure the registry itself
/// (there are no mirrors). `None` when `namespace` is not a registry name
/// (no reference can name it, so nothing would ever use it).
pub fn load_cert_dir(dir: &Path, namespace: &str) -> Result<Option<RegistryHosts>> {
    let io = |path: &Path, err: std::io::Error| Error::HostsConfig {
        path: path.to_path_buf(),
        line: None,
        reason: err.to_string(),
    };
    let source = Source {
        path: dir,
        text: "",
    };
    let Ok(url) = registry_url(&source, namespace) else {
        return Ok(None);
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|err| io(dir, err))? {
        let entry = entry.map_err(|err| io(dir, err))?;
        let is_dir = entry
            .file_type()
            .map_err(|err| io(&entry.path(), err))?
            .is_dir();
        if let (false, Some(name)) = (is_dir, entry.file_name().to_str()) {
            names.push(name.to_owned());
        }
    }
    names.sort();
    let mut server = HostEndpoint::new(url);
    for name in names {
        if name.ends_with(".crt") {
            server.ca.push(dir.join(&name));
        } else if let Some(stem) = name.strip_suffix(".cert") {
            let key = dir.join(format!("{stem}.key"));
            let key = match std::fs::metadata(&key) {
                Ok(_) => Some(key),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
                Err(err) => return Err(io(&key, err)),
            };
            server.client.push((dir.join(&name), key));
        }
    }
    Ok(Some(RegistryHosts {
        file: dir.to_path_buf(),
        server: None,
        server_settings: server,
        mirrors: Vec::new(),
    }))
}

/// The registry a namespace names, as a URL (`_default` names none: a
/// placeholder stands for whichever registry it applies to).
fn registry_url(source: &Source<'_>, namespace: &str) -> Result<Url> {
    if namespace == DEFAULT_NAMESPACE {
        Ok(Url::parse("https://default.invalid").expect("because the URL is valid"))
    } else {
        parse_host_url(source, namespace, 0..0)
    }
}

/// containerd spells `host:port` as `host_port_` too (Windows cannot have
/// `:` in a name); both name the same namespace.
fn namespace_from_dir(name: &str) -> String {
    if let Some(stem) = name.strip_suffix('_')
        && let Some((host, port)) = stem.rsplit_once('_')
        && !host.is_empty()
        && port.parse::<u16>().is_ok()
    {
        return format!("{host}:{port}");
    }
    name.to_owned()
}

/// Where in a file: the path and the text, for line numbers.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn error(&self, span: std::ops::Range<usize>, reason: String) -> Error {
        Error::HostsConfig {
            path: self.path.to_path_buf(),
            line: Some(self.line(span.start)),
            reason,
        }
    }

    fn warn_ignored(&self, key: &Spanned<std::borrow::Cow<'_, str>>, why: &str) {
        tracing::warn!(
            file = %self.path.display(),
            line = self.line(key.span().start),
            key = %key.get_ref(),
            "{why}; ignored"
        );
    }

    fn path_of(&self, value: &str) -> PathBuf {
        let path = Path::new(value);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.path
                .parent()
                .map_or_else(|| path.to_path_buf(), |dir| dir.join(path))
        }
    }
}

/// Parses one `hosts.toml` (its `path` is used for messages and to resolve
/// relative certificate paths). `namespace` is the registry it configures.
pub fn parse_hosts_toml(path: &Path, text: &str, namespace: &str) -> Result<RegistryHosts> {
    let source = Source { path, text };
    let table = DeTable::parse(text).map_err(|err| {
        let at = err.span().unwrap_or(0..0);
        source.error(at, err.message().to_owned())
    })?;
    let table = table.into_inner();
    let mut server_url = None;
    let mut mirrors = Vec::new();
    let mut top = HostEndpoint::new(registry_url(&source, namespace)?);
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    for (key, value) in entries {
        match key.get_ref().as_ref() {
            "server" => {
                let text = expect_str(&source, value, "server")?;
                server_url = Some(parse_host_url(&source, text, value.span())?);
            }
            "host" => {
                let DeValue::Table(hosts) = value.get_ref() else {
                    return Err(source.error(value.span(), "`host` must be a table".into()));
                };
                let mut hosts: Vec<_> = hosts.iter().collect();
                hosts.sort_by_key(|(key, _)| key.span().start);
                for (url, settings) in hosts {
                    let url_value = parse_host_url(&source, url.get_ref(), url.span())?;
                    let mut endpoint = HostEndpoint::new(url_value);
                    let DeValue::Table(settings) = settings.get_ref() else {
                        return Err(source.error(
                            settings.span(),
                            format!("host {:?} must be a table", url.get_ref()),
                        ));
                    };
                    for (key, value) in settings {
                        if key.get_ref() == "host" {
                            source.warn_ignored(key, "nested hosts are not supported");
                        } else {
                            apply_setting(&source, &mut endpoint, key, value)?;
                        }
                    }
                    mirrors.push(endpoint);
                }
            }
            _ => apply_setting(&source, &mut top, key, value)?,
        }
    }
    let server = match server_url {
        Some(url) => Some(HostEndpoint { url, ..top.clone() }),
        None => {
            registry_itself(&source, &mut top);
            None
        }
    };
    Ok(RegistryHosts {
        file: path.to_path_buf(),
        server,
        server_settings: top,
        mirrors,
    })
}

/// Without a `server`, the top-level keys configure the registry itself,
/// as in containerd: its `ca`, `client`, `skip_verify` and `header` apply,
/// but it is always asked everything at its own `/v2` root, so top-level
/// `capabilities` and `override_path` are ignored (with a warning).
fn registry_itself(source: &Source<'_>, top: &mut HostEndpoint) {
    if top.capabilities != Capabilities::ALL || top.override_path {
        tracing::warn!(
            file = %source.path.display(),
            "top-level capabilities and override_path apply only to a `server`; without one the registry itself is asked everything at /v2 (as containerd does); ignored"
        );
    }
    top.capabilities = Capabilities::ALL;
    top.override_path = false;
}

/// Applies one key of a host table (or the top level) to `endpoint`.
fn apply_setting(
    source: &Source<'_>,
    endpoint: &mut HostEndpoint,
    key: &Spanned<std::borrow::Cow<'_, str>>,
    value: &Spanned<DeValue<'_>>,
) -> Result<()> {
    let name = key.get_ref().as_ref();
    match name {
        "capabilities" => {
            let mut capabilities = Capabilities {
                pull: false,
                resolve: false,
                push: false,
            };
            for item in expect_strings(source, value, name)? {
                match item {
                    "pull" => capabilities.pull = true,
                    "resolve" => capabilities.resolve = true,
                    "push" => capabilities.push = true,
                    other => {
                        return Err(source.error(
                            value.span(),
                            format!("unknown capability {other:?} (expected pull, resolve, push)"),
                        ));
                    }
                }
            }
            endpoint.capabilities = capabilities;
        }
        "ca" => {
            endpoint.ca = expect_strings(source, value, name)?
                .into_iter()
                .map(|p| source.path_of(p))
                .collect();
        }
        "client" => endpoint.client = client_pairs(source, value)?,
        "skip_verify" => endpoint.skip_verify = expect_bool(source, value, name)?,
        "override_path" => endpoint.override_path = expect_bool(source, value, name)?,
        "header" => {
            let DeValue::Table(headers) = value.get_ref() else {
                return Err(source.error(value.span(), "`header` must be a table".into()));
            };
            let mut headers: Vec<_> = headers.iter().collect();
            headers.sort_by_key(|(key, _)| key.span().start);
            for (header, values) in headers {
                let header_name = header.get_ref().to_string();
                if reqwest::header::HeaderName::from_bytes(header_name.as_bytes()).is_err() {
                    return Err(source.error(
                        header.span(),
                        format!("{header_name:?} is not a valid header name"),
                    ));
                }
                for text in expect_strings(source, values, &header_name)? {
                    if reqwest::header::HeaderValue::from_str(text).is_err() {
                        return Err(source.error(
                            values.span(),
                            format!("header {header_name}: not a valid header value"),
                        ));
                    }
                    endpoint
                        .headers
                        .push((header_name.clone(), text.to_owned()));
                }
            }
        }
        "dial_timeout" | "proxy" => source.warn_ignored(key, "setting not supported by cachectl"),
        _ => source.warn_ignored(key, "unknown setting"),
    }
    Ok(())
}

/// `client = "both.pem"`, `["a.pem", "b.pem"]` or `[["cert", "key"], …]`.
fn client_pairs(
    source: &Source<'_>,
    value: &Spanned<DeValue<'_>>,
) -> Result<Vec<(PathBuf, Option<PathBuf>)>> {
    let one = |value: &Spanned<DeValue<'_>>| -> Result<(PathBuf, Option<PathBuf>)> {
        match value.get_ref() {
            DeValue::String(cert) => Ok((source.path_of(cert), None)),
            DeValue::Array(pair) if (1..=2).contains(&pair.len()) => {
                let cert = expect_str(source, &pair[0], "client")?;
                let key = match pair.get(1) {
                    Some(key) => Some(expect_str(source, key, "client")?),
                    None => None,
                };
                Ok((
                    source.path_of(cert),
                    key.filter(|k| !k.is_empty()).map(|k| source.path_of(k)),
                ))
            }
            _ => Err(source.error(
                value.span(),
                "`client` entries are a path or a [certificate, key] pair".into(),
            )),
        }
    };
    match value.get_ref() {
        DeValue::Array(items) => items.iter().map(one).collect(),
        _ => Ok(vec![one(value)?]),
    }
}

fn expect_str<'v>(
    source: &Source<'_>,
    value: &'v Spanned<DeValue<'_>>,
    name: &str,
) -> Result<&'v str> {
    match value.get_ref() {
        DeValue::String(text) => Ok(text.as_ref()),
        _ => Err(source.error(value.span(), format!("`{name}` must be a string"))),
    }
}

fn expect_bool(source: &Source<'_>, value: &Spanned<DeValue<'_>>, name: &str) -> Result<bool> {
    match value.get_ref() {
        DeValue::Boolean(b) => Ok(*b),
        _ => Err(source.error(value.span(), format!("`{name}` must be true or false"))),
    }
}

/// A string or an array of strings.
fn expect_strings<'v>(
    source: &Source<'_>,
    value: &'v Spanned<DeValue<'_>>,
    name: &str,
) -> Result<Vec<&'v str>> {
    match value.get_ref() {
        DeValue::String(text) => Ok(vec![text.as_ref()]),
        DeValue::Array(items) => items
            .iter()
            .map(|item| expect_str(source, item, name))
            .collect(),
        _ => Err(source.error(
            value.span(),
            format!("`{name}` must be a string or an array of strings"),
        )),
    }
}

/// A host URL: `https://` assumed without a scheme; only http and https;
/// no query or fragment.
fn parse_host_url(source: &Source<'_>, text: &str, span: std::ops::Range<usize>) -> Result<Url> {
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        format!("https://{text}")
    };
    let url = Url::parse(&with_scheme)
        .map_err(|err| source.error(span.clone(), format!("host {text:?}: {err}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(source.error(
            span,
            format!("host {text:?}: only http and https are supported"),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) || url.query().is_some() || url.fragment().is_some()
    {
        return Err(source.error(
            span,
            format!("host {text:?}: a host URL has a host and no query or fragment"),
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests;
