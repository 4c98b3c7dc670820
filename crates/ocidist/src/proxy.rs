//! Forwarding proxies, chosen per request URL the way curl chooses them.
//!
//! A [`ProxyConfig`] says which HTTP proxy (if any) carries requests to
//! `http://` and to `https://` URLs, and which hosts bypass it
//! ([`NoProxy`]). It is built from the environment
//! ([`ProxyConfig::from_env`]) or given explicitly
//! ([`ProxyConfig::with_https_proxy`], …) and handed to the client in
//! [`crate::ClientConfig::proxy`]. The default is no proxy at all: a library
//! never reads the environment behind its caller's back; the `cachectl`
//! command line reads it.
//!
//! # Environment variables
//!
//! For each URL scheme the first of these variables that is *set* decides
//! (set to an empty string, it means "no proxy"), as curl does:
//!
//! | URL | variables, in order |
//! |---|---|
//! | `https://` | `https_proxy`, `HTTPS_PROXY`, `all_proxy`, `ALL_PROXY` |
//! | `http://` | `http_proxy`, `all_proxy`, `ALL_PROXY` |
//!
//! Upper-case `HTTP_PROXY` is ignored, as curl ignores it: a CGI program
//! receives a request's `Proxy:` header as `HTTP_PROXY`, so a client reading
//! it would let whoever sends the request pick the proxy ("httpoxy").
//! The bypass list is `no_proxy`, else `NO_PROXY` (the lower-case one wins
//! when both are set).
//!
//! # Proxy URLs
//!
//! `http://host:port`, or `host:port` (http is assumed), optionally with
//! `user:password@` before the host (percent-encoded; decoded before use).
//! The port defaults to 1080, as in curl. The credentials are sent to the
//! proxy only, as `Proxy-Authorization: Basic …`; they never appear in an
//! error, a log line or `Debug` output. `https://` proxies (TLS to the
//! proxy itself) and `socks4`/`socks5` proxies are not supported: such a
//! setting is an error naming the variable, never silently ignored.
//!
//! # The bypass list
//!
//! Entries are separated by commas and/or spaces and compared without
//! regard to case:
//! - `*` bypasses the proxy for every host;
//! - a host name matches itself and its subdomains: `example.com` and
//!   `.example.com` both match `example.com` and `reg.example.com`, not
//!   `badexample.com`;
//! - an IP address (`10.1.2.3`, `::1`, `[::1]`) matches that address;
//! - a CIDR block (`10.0.0.0/8`, `fd00::/8`) matches addresses in it (hosts
//!   are compared as written in the URL; names are never resolved for this);
//! - any of these followed by `:port` (`reg.internal:5000`,
//!   `127.0.0.1:5000`, `[::1]:5000`) matches only that port.
//!
//! There is no automatic bypass for `localhost` or loopback addresses: with
//! a proxy set, `127.0.0.1:5000` goes through it unless `no_proxy` lists it
//! (curl behaves the same way for loopback addresses).
//!
//! # Credentials and plain-HTTP registries
//!
//! Requests to `https://` registries go through a `CONNECT` tunnel: the
//! proxy sees the host and port, never the requests or their
//! `Authorization`. A request to a plain-HTTP registry through a proxy is
//! sent to the proxy in clear, so the client refuses to attach registry
//! credentials or tokens (even anonymous ones) to it
//! ([`crate::Error::CleartextProxy`]); requests to plain-HTTP registries
//! without auth go through the proxy.

mod no_proxy;

pub use no_proxy::NoProxy;

use crate::credentials::Secret;
use crate::error::{Error, Result};
use reqwest::Url;
use std::fmt;

/// The port of a proxy URL that names none (curl's default).
pub const DEFAULT_PROXY_PORT: u16 = 1080;

/// Which proxy carries requests to `http://` and `https://` URLs, and which
/// hosts bypass it. `ProxyConfig::default()` is no proxy.
///
/// ```
/// let proxies = ocidist::ProxyConfig::none()
///     .with_https_proxy("http://proxy.corp:3128")?
///     .with_no_proxy("reg.internal, 10.0.0.0/8");
/// let url = reqwest::Url::parse("https://ghcr.io/v2/").expect("valid URL");
/// assert_eq!(proxies.proxy_for(&url).map(|p| p.to_string()).as_deref(), Some("proxy.corp:3128"));
/// let internal = reqwest::Url::parse("https://reg.internal/v2/").expect("valid URL");
/// assert!(proxies.proxy_for(&internal).is_none());
/// # Ok::<(), ocidist::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct ProxyConfig {
    http: Option<ProxyServer>,
    https: Option<ProxyServer>,
    no_proxy: NoProxy,
}

/// One HTTP proxy: where it listens and the credentials it wants, if any.
/// `Display` prints `host:port`; `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyServer {
    host: String,
    port: u16,
    credentials: Option<(String, Secret)>,
    setting: String,
}

impl ProxyConfig {
    /// No proxy: every request goes straight to its host.
    pub fn none() -> Self {
        ProxyConfig::default()
    }

    /// The proxies the process environment names (see the module docs).
    /// Fails with [`Error::ProxySetting`] naming the variable when one is
    /// malformed or uses an unsupported scheme.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`ProxyConfig::from_env`], reading variables through `lookup`
    /// (for callers that keep their own environment).
    ///
    /// ```
    /// let vars = [("https_proxy", "proxy:3128"), ("NO_PROXY", ".internal")];
    /// let proxies = ocidist::ProxyConfig::from_lookup(|name| {
    ///     vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    /// })?;
    /// let url = reqwest::Url::parse("https://a.internal/v2/").expect("valid URL");
    /// assert!(proxies.proxy_for(&url).is_none());
    /// # Ok::<(), ocidist::Error>(())
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let first = |names: &[&'static str]| -> Option<(&'static str, String)> {
            names
                .iter()
                .find_map(|name| lookup(name).map(|value| (*name, value)))
        };
        let server = |names: &[&'static str]| match first(names) {
            Some((name, value)) if !value.trim().is_empty() => {
                ProxyServer::parse(&value, name).map(Some)
            }
            _ => Ok(None),
        };
        Ok(ProxyConfig {
            https: server(&["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"])?,
            http: server(&["http_proxy", "all_proxy", "ALL_PROXY"])?,
            no_proxy: first(&["no_proxy", "NO_PROXY"])
                .map(|(_, value)| NoProxy::parse(&value))
                .unwrap_or_default(),
        })
    }

    /// The same configuration with `url` as the proxy for `http://` URLs.
    pub fn with_http_proxy(mut self, url: &str) -> Result<Self> {
        self.http = Some(ProxyServer::parse(url, "the http proxy")?);
        Ok(self)
    }

    /// The same configuration with `url` as the proxy for `https://` URLs.
    pub fn with_https_proxy(mut self, url: &str) -> Result<Self> {
        self.https = Some(ProxyServer::parse(url, "the https proxy")?);
        Ok(self)
    }

    /// The same configuration with `list` (in `no_proxy` syntax) as the
    /// bypass list.
    pub fn with_no_proxy(mut self, list: &str) -> Self {
        self.no_proxy = NoProxy::parse(list);
        self
    }

    /// The proxy a request to `url` goes through, or `None` for a direct
    /// connection.
    pub fn proxy_for(&self, url: &Url) -> Option<&ProxyServer> {
        let server = match url.scheme() {
            "http" => self.http.as_ref(),
            "https" => self.https.as_ref(),
            _ => None,
        }?;
        let host = url.host_str()?;
        let port = url.port_or_known_default()?;
        (!self.no_proxy.matches(host, port)).then_some(server)
    }

    /// Whether no proxy is configured for any scheme.
    pub fn is_none(&self) -> bool {
        self.http.is_none() && self.https.is_none()
    }

    /// The reqwest proxies for this configuration (one per scheme).
    pub(crate) fn to_reqwest(&self) -> Vec<reqwest::Proxy> {
        [("http", &self.http), ("https", &self.https)]
            .into_iter()
            .filter_map(|(scheme, server)| {
                let server = server.as_ref()?;
                let target = Url::parse(&format!("http://{}", server.address()))
                    .expect("because host and port were parsed from a URL");
                let config = self.clone();
                let proxy = reqwest::Proxy::custom(move |url| {
                    (url.scheme() == scheme && config.proxy_for(url).is_some())
                        .then(|| target.clone())
                });
                Some(match &server.credentials {
                    Some((user, password)) => proxy.basic_auth(user, password.expose()),
                    None => proxy,
                })
            })
            .collect()
    }

    /// [`Error::ProxyAuth`] when a forwarded request to `url` (for
    /// `registry`) was answered 407 by its proxy.
    pub(crate) fn check_407(&self, status: u16, url: &Url, registry: &str) -> Result<()> {
        match self.proxy_for(url) {
            Some(proxy) if status == 407 => Err(proxy.auth_error(registry)),
            _ => Ok(()),
        }
    }

    /// The error for a failed request to `registry`: [`Error::ProxyAuth`]
    /// when the proxy asked for credentials while opening a tunnel,
    /// [`Error::ProxyNetwork`] when the request went through a proxy,
    /// [`Error::Network`] otherwise.
    pub(crate) fn network_error(
        &self,
        registry: &str,
        attempts: u32,
        source: reqwest::Error,
    ) -> Error {
        let Some(proxy) = source.url().and_then(|url| self.proxy_for(url)) else {
            return Error::Network {
                registry: registry.to_owned(),
                attempts,
                source,
            };
        };
        if is_tunnel_auth_failure(&source) {
            return proxy.auth_error(registry);
        }
        Error::ProxyNetwork {
            registry: registry.to_owned(),
            proxy: proxy.to_string(),
            attempts,
            source,
        }
    }
}

/// Whether a transport error is the proxy answering 407 to `CONNECT`.
/// hyper-util's tunnel reports it as its private `TunnelError` variant
/// `ProxyAuthRequired`, displayed "tunnel error: proxy authorization
/// required"; the squid tests in `tests/it/proxy.rs` pin this.
pub(crate) fn is_tunnel_auth_failure(err: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(err) = source {
        if err.to_string().ends_with("proxy authorization required")
            || format!("{err:?}") == "ProxyAuthRequired"
        {
            return true;
        }
        source = err.source();
    }
    false
}

impl ProxyServer {
    /// Parses a proxy URL; `setting` names where it came from (a variable
    /// name) for errors, which never repeat the value.
    fn parse(value: &str, setting: &str) -> Result<Self> {
        let fail = |reason: String| Error::ProxySetting {
            setting: setting.to_owned(),
            reason,
        };
        let value = value.trim();
        let text = match value.split_once("://") {
            Some((scheme, _)) => {
                let scheme = scheme.to_ascii_lowercase();
                if scheme != "http" {
                    let shown = if scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
                        format!("{scheme}://")
                    } else {
                        "this".to_owned()
                    };
                    return Err(fail(format!(
                        "{shown} proxy scheme is not supported: give an http:// proxy (TLS to the proxy and SOCKS are not supported)"
                    )));
                }
                value.to_owned()
            }
            None => format!("http://{value}"),
        };
        let malformed = || {
            fail("not a valid proxy URL: expected http://[user:password@]host[:port]".to_owned())
        };
        let url = Url::parse(&text).map_err(|_| malformed())?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(malformed)?;
        let user = percent_decode(url.username()).ok_or_else(|| {
            fail("the proxy user name is not UTF-8 once percent-decoded".to_owned())
        })?;
        let password = match url.password() {
            Some(text) => Some(percent_decode(text).ok_or_else(|| {
                fail("the proxy password is not UTF-8 once percent-decoded".to_owned())
            })?),
            None => None,
        };
        let credentials = (!user.is_empty() || password.is_some())
            .then(|| (user, Secret::new(password.unwrap_or_default())));
        Ok(ProxyServer {
            host: host.to_owned(),
            port: url.port().unwrap_or(DEFAULT_PROXY_PORT),
            credentials,
            setting: setting.to_owned(),
        })
    }

    /// The proxy's host name or address (IPv6 in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The user name sent to the proxy, if credentials are configured.
    pub fn username(&self) -> Option<&str> {
        self.credentials.as_ref().map(|(user, _)| user.as_str())
    }

    /// Where this proxy was configured: an environment variable's name, or
    /// `the http proxy` / `the https proxy` when given explicitly.
    pub fn setting(&self) -> &str {
        &self.setting
    }

    /// The error for a 407 from this proxy on the way to `registry`.
    pub(crate) fn auth_error(&self, registry: &str) -> Error {
        Error::ProxyAuth {
            proxy: self.to_string(),
            registry: registry.to_owned(),
            reason: match self.username() {
                Some(user) => format!(
                    "it refused the credentials of user {user:?} (from {})",
                    self.setting
                ),
                None => format!(
                    "it requires credentials and {} gives none (http://user:password@host:port)",
                    self.setting
                ),
            },
        }
    }
}

impl fmt::Display for ProxyServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl fmt::Debug for ProxyServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyServer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username())
            .field("password", &self.credentials.as_ref().map(|_| "<redacted>"))
            .field("setting", &self.setting)
            .finish()
    }
}

/// Decodes `%XX` escapes; `None` when the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Result<ProxyConfig> {
        ProxyConfig::from_lookup(|name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    fn via(config: &ProxyConfig, url: &str) -> Option<String> {
        let url = Url::parse(url).expect("valid URL");
        config.proxy_for(&url).map(ProxyServer::address)
    }

    #[test]
    fn variables_are_read_in_curls_order() {
        let config = vars(&[
            ("https_proxy", "lower:1"),
            ("HTTPS_PROXY", "upper:2"),
            ("all_proxy", "all:3"),
        ])
        .expect("valid");
        assert_eq!(via(&config, "https://r.io/").as_deref(), Some("lower:1"));
        // http_proxy is unset: all_proxy serves http URLs.
        assert_eq!(via(&config, "http://r.io/").as_deref(), Some("all:3"));
        let config =
            vars(&[("HTTPS_PROXY", "upper:2"), ("ALL_PROXY", "upperall:4")]).expect("valid");
        assert_eq!(via(&config, "https://r.io/").as_deref(), Some("upper:2"));
        assert_eq!(via(&config, "http://r.io/").as_deref(), Some("upperall:4"));
        // Upper-case HTTP_PROXY is never read (httpoxy).
        let config = vars(&[("HTTP_PROXY", "evil:1")]).expect("valid");
        assert!(config.is_none(), "{config:?}");
        let config = vars(&[("http_proxy", "p:8080")]).expect("valid");
        assert_eq!(via(&config, "http://r.io/").as_deref(), Some("p:8080"));
        assert_eq!(via(&config, "https://r.io/"), None);
        // Set but empty: no proxy, and the later variables are not read.
        let config = vars(&[("https_proxy", ""), ("HTTPS_PROXY", "upper:2")]).expect("valid");
        assert_eq!(via(&config, "https://r.io/"), None);
    }

    #[test]
    fn lower_case_no_proxy_wins() {
        let config = vars(&[
            ("https_proxy", "p:1"),
            ("no_proxy", "a.io"),
            ("NO_PROXY", "b.io"),
        ])
        .expect("valid");
        assert_eq!(via(&config, "https://a.io/"), None);
        assert!(via(&config, "https://b.io/").is_some());
        let config = vars(&[("https_proxy", "p:1"), ("NO_PROXY", "b.io")]).expect("valid");
        assert_eq!(via(&config, "https://b.io/"), None);
    }

    #[test]
    fn proxy_urls_and_their_credentials() {
        let config = ProxyConfig::none()
            .with_https_proxy("HTTP://us%40er:p%3Ass%20w@Proxy.Corp:3128/")
            .expect("valid");
        let server = config.https.as_ref().expect("set");
        assert_eq!(server.address(), "proxy.corp:3128");
        assert_eq!(
            server.credentials,
            Some(("us@er".to_owned(), Secret::new("p:ss w".to_owned())))
        );
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("p:ss") && !debug.contains("p%3Ass"),
            "{debug}"
        );
        let bare = ProxyConfig::none().with_http_proxy("proxy").expect("valid");
        assert_eq!(bare.http.expect("set").address(), "proxy:1080");
        let v6 = ProxyConfig::none()
            .with_http_proxy("[::1]:3128")
            .expect("valid");
        assert_eq!(v6.http.expect("set").address(), "[::1]:3128");
    }

    #[test]
    fn bad_proxy_settings_name_the_variable_and_never_the_password() {
        for (value, says) in [
            ("socks5://u:hunter2@p:1080", "socks5://"),
            ("https://u:hunter2@p:443", "https://"),
            ("http://u:hunter2@:80", "not a valid proxy URL"),
            ("u:hunter2@p:notaport", "not a valid proxy URL"),
            ("http://u:%ff%fehunter2@p:1", "not UTF-8"),
        ] {
            let err = vars(&[("https_proxy", value)]).expect_err(value);
            let text = err.to_string();
            assert!(matches!(err, Error::ProxySetting { .. }), "{text}");
            assert!(
                text.contains("https_proxy") && text.contains(says),
                "{text}"
            );
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn no_proxy_applies_to_urls_with_their_default_ports() {
        let config = ProxyConfig::none()
            .with_https_proxy("p:3128")
            .expect("valid")
            .with_http_proxy("p:3128")
            .expect("valid")
            .with_no_proxy("a.io:443, b.io:80");
        assert_eq!(via(&config, "https://a.io/v2/"), None);
        assert!(via(&config, "https://a.io:5000/v2/").is_some());
        assert_eq!(via(&config, "http://b.io/v2/"), None);
        assert!(via(&config, "https://b.io/v2/").is_some());
    }
}
