//! HTTP clients (rustls only) and where each registry is reached.

use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::hosts::HostEndpoint;
use crate::proxy::ProxyConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::sync::Arc;

/// The reqwest clients of one [`crate::Client`]: a default one with the
/// system's roots, and one per registry that has extra CAs.
#[derive(Debug)]
pub(crate) struct Transport {
    default: reqwest::Client,
    per_registry: HashMap<String, reqwest::Client>,
    insecure: Vec<String>,
    proxy: ProxyConfig,
    /// Hosts configured in a hosts directory (mirrors, servers), by the
    /// name requests use for them: where they are and their headers.
    hosts: HashMap<String, HostEndpoint>,
    /// The names of the mirrors among them.
    mirrors: std::collections::HashSet<String>,
    /// What `_default/hosts.toml` without a `server` (or a `_default`
    /// certificate directory) says of every registry without a directory
    /// of its own: a client with its trust settings, and its headers.
    fallback: Option<(reqwest::Client, Vec<(String, String)>)>,
}

impl Transport {
    pub(crate) fn new(config: &ClientConfig) -> Result<Self> {
        let global = global_settings(config)?;
        let label = match &config.cert_dir {
            Some(dir) => format!("every registry (certificate directory {})", dir.display()),
            None => "*".to_owned(),
        };
        let default = build(config, tls_config(&global), &label)?;
        let hosts = configured_hosts(config);
        let mut settings: HashMap<String, TlsSettings> = HashMap::new();
        for (registry, pem) in &config.extra_ca_pem {
            let certs = parse_ca(registry, pem)?;
            settings
                .entry(registry.clone())
                .or_default()
                .extra
                .extend(certs);
        }
        for (key, endpoint) in &hosts {
            trust_settings(settings.entry(key.clone()).or_default(), key, endpoint)?;
        }
        let fallback = match config
            .hosts
            .registry_settings(crate::hosts::DEFAULT_NAMESPACE)
        {
            Some(endpoint) => {
                let mut tls = TlsSettings::default();
                trust_settings(&mut tls, crate::hosts::DEFAULT_NAMESPACE, endpoint)?;
                tls.add_global(&global);
                let client = build(config, tls_config(&tls), crate::hosts::DEFAULT_NAMESPACE)?;
                Some((client, endpoint.headers.clone()))
            }
            None => None,
        };
        let mut per_registry = HashMap::new();
        for (registry, tls) in &mut settings {
            tls.add_global(&global);
            per_registry.insert(registry.clone(), build(config, tls_config(tls), registry)?);
        }
        Ok(Transport {
            default,
            per_registry,
            insecure: config.insecure_registries.clone(),
            proxy: config.proxy.clone(),
            mirrors: config
                .hosts
                .namespaces()
                .flat_map(|(_, hosts)| hosts.mirrors.iter().map(HostEndpoint::authority))
                .collect(),
            hosts,
            fallback,
        })
    }

    /// The client to use for `registry`.
    pub(crate) fn http(&self, registry: &str) -> &reqwest::Client {
        match (self.per_registry.get(registry), &self.fallback) {
            (Some(client), _) => client,
            (None, Some((client, _))) if !self.hosts.contains_key(registry) => client,
            _ => &self.default,
        }
    }

    /// The proxies requests go through.
    pub(crate) fn proxy(&self) -> &ProxyConfig {
        &self.proxy
    }

    /// `scheme://host[:port]` of the registry's API endpoint.
    pub(crate) fn base_url(&self, registry: &str) -> String {
        if let Some(endpoint) = self.hosts.get(registry) {
            return format!("{}://{}", endpoint.url.scheme(), endpoint.authority());
        }
        default_base_url(registry, &self.insecure)
    }

    /// The root of the distribution API for `registry`: `base_url/v2`, or
    /// the configured host's own root.
    pub(crate) fn api_root(&self, registry: &str) -> String {
        match self.hosts.get(registry) {
            Some(endpoint) => endpoint.api_root(),
            None => format!("{}/v2", self.base_url(registry)),
        }
    }

    /// Whether `host` is configured as a mirror.
    pub(crate) fn is_mirror(&self, host: &str) -> bool {
        self.mirrors.contains(host)
    }

    /// Headers configured for `registry` (`header` in hosts.toml).
    pub(crate) fn headers(&self, registry: &str) -> &[(String, String)] {
        match (self.hosts.get(registry), &self.fallback) {
            (Some(endpoint), _) => &endpoint.headers,
            (None, Some((_, headers))) => headers,
            (None, None) => &[],
        }
    }
}

/// `http://` for loopback and listed registries, else `https://`, followed
/// by the API host.
fn default_base_url(registry: &str, insecure: &[String]) -> String {
    let scheme = if is_loopback(registry) || insecure.iter().any(|r| r == registry) {
        "http"
    } else {
        "https"
    };
    format!("{scheme}://{}", api_host(registry))
}

/// The hosts of every namespace of the hosts directory, by the name
/// requests use for them (see [`crate::mirrors::server_key`]). The first
/// configuration of a host wins.
fn configured_hosts(config: &ClientConfig) -> HashMap<String, HostEndpoint> {
    let mut hosts: HashMap<String, HostEndpoint> = HashMap::new();
    let mut add = |key: String, endpoint: HostEndpoint| {
        if let Some(first) = hosts.get(&key) {
            if first != &endpoint {
                tracing::warn!(host = %key, "host configured twice in the hosts directory; the first configuration is used");
            }
            return;
        }
        hosts.insert(key, endpoint);
    };
    for (namespace, registry_hosts) in config.hosts.namespaces() {
        for mirror in &registry_hosts.mirrors {
            add(mirror.authority(), mirror.clone());
        }
        let own = namespace != crate::hosts::DEFAULT_NAMESPACE;
        match &registry_hosts.server {
            Some(server) => {
                let key = crate::mirrors::server_key(namespace, server);
                let mut server = server.clone();
                if key == namespace {
                    // `server = "https://docker.io"` means Docker Hub's API host.
                    let _ = server.url.set_host(Some(api_host(namespace)));
                }
                add(key, server);
            }
            None if own => {
                let base = default_base_url(namespace, &config.insecure_registries);
                if let Ok(url) = reqwest::Url::parse(&base) {
                    let mut settings = registry_hosts.server_settings.clone();
                    settings.url = url;
                    add(namespace.to_owned(), settings);
                }
            }
            None => {}
        }
    }
    hosts
}

/// Adds the trust settings of the hosts-directory `endpoint` (named `key`
/// in errors) to `tls`: its CA files, `skip_verify` and client certificate.
fn trust_settings(tls: &mut TlsSettings, key: &str, endpoint: &HostEndpoint) -> Result<()> {
    tls.skip_verify = endpoint.skip_verify;
    for path in &endpoint.ca {
        let pem = std::fs::read(path).map_err(|err| Error::Tls {
            registry: key.to_owned(),
            reason: format!("reading CA file {}: {err}", path.display()),
        })?;
        tls.extra.extend(parse_ca(key, &pem)?);
    }
    if let Some((cert, key_file)) = endpoint.client.first() {
        tls.client = Some(client_identity(key, cert, key_file.as_deref())?);
    }
    Ok(())
}

/// Trust settings of one host.
#[derive(Default)]
struct TlsSettings {
    extra: Vec<CertificateDer<'static>>,
    skip_verify: bool,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

impl TlsSettings {
    /// Adds the settings of the whole client (`tls_verify`, `cert_dir`):
    /// verification off when either says so, the CAs of both, and the
    /// client certificate of the host's own settings, else the global one.
    fn add_global(&mut self, global: &TlsSettings) {
        self.skip_verify |= global.skip_verify;
        self.extra.extend(global.extra.iter().cloned());
        if self.client.is_none() {
            self.client = global
                .client
                .as_ref()
                .map(|(chain, key)| (chain.clone(), key.clone_key()));
        }
    }
}

/// The trust settings every host gets: `tls_verify` and the certificates
/// of `cert_dir` (docker's layout, read as [`crate::hosts::load_cert_dir`]
/// reads a namespace directory).
fn global_settings(config: &ClientConfig) -> Result<TlsSettings> {
    let mut tls = TlsSettings::default();
    if let Some(dir) = &config.cert_dir {
        if !dir.is_dir() {
            return Err(Error::Tls {
                registry: "*".into(),
                reason: format!("certificate directory {} is not a directory", dir.display()),
            });
        }
        let hosts = crate::hosts::load_cert_dir(dir, crate::hosts::DEFAULT_NAMESPACE)?;
        if let Some(hosts) = hosts {
            let label = format!("every registry (certificate directory {})", dir.display());
            trust_settings(&mut tls, &label, &hosts.server_settings)?;
        }
    }
    tls.skip_verify = !config.tls_verify;
    Ok(tls)
}

/// The certificates of a PEM CA bundle; an error when it holds none.
fn parse_ca(registry: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| Error::Tls {
            registry: registry.to_owned(),
            reason: format!("extra CA is not valid PEM: {err}"),
        })?;
    if certs.is_empty() {
        return Err(Error::Tls {
            registry: registry.to_owned(),
            reason: "extra CA PEM holds no certificate".into(),
        });
    }
    let mut check = rustls::RootCertStore::empty();
    for cert in &certs {
        check.add(cert.clone()).map_err(|err| Error::Tls {
            registry: registry.to_owned(),
            reason: format!("extra CA refused: {err}"),
        })?;
    }
    Ok(certs)
}

/// A client certificate chain and its key, from `cert` (which may hold
/// the key too) and `key`.
fn client_identity(
    registry: &str,
    cert: &std::path::Path,
    key: Option<&std::path::Path>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let tls = |reason: String| Error::Tls {
        registry: registry.to_owned(),
        reason,
    };
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|err| tls(format!("reading {}: {err}", path.display())))
    };
    let cert_pem = read(cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| tls(format!("client certificate {}: {err}", cert.display())))?;
    let key_path = key.unwrap_or(cert);
    let key_pem = read(key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|err| tls(format!("client key {}: {err}", key_path.display())))?;
    if chain.is_empty() {
        return Err(tls(format!(
            "client certificate {} holds no certificate",
            cert.display()
        )));
    }
    Ok((chain, key))
}

/// Docker Hub's API lives on another host than its name.
pub(crate) fn api_host(registry: &str) -> &str {
    if registry == "docker.io" {
        "registry-1.docker.io"
    } else {
        registry
    }
}

/// `localhost`, `127.0.0.0/8` and `[::1]`, with or without a port.
pub(crate) fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        registry.split(':').next().unwrap_or_default()
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

/// Whether two URLs share scheme, host and port: `Authorization` is only
/// ever sent back to the origin it was meant for.
pub(crate) fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The system's trusted roots plus `extra`.
fn roots_with(extra: &[CertificateDer<'static>]) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    // Unreadable individual certificates are skipped, as browsers do; an
    // empty store only matters for HTTPS registries, where the handshake
    // then fails with a clear error.
    let _ = roots.add_parsable_certificates(found.certs);
    roots.add_parsable_certificates(extra.iter().cloned());
    roots
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_config(settings: &TlsSettings) -> Result<rustls::ClientConfig, rustls::Error> {
    let verifier = Arc::new(RegistryCertVerifier {
        skip_verify: settings.skip_verify,
        extra: settings.extra.clone(),
        provider: provider(),
        verifier: std::sync::OnceLock::new(),
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match &settings.client {
        Some((chain, key)) => builder.with_client_auth_cert(chain.clone(), key.clone_key()),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The standard WebPKI verification, with the system's roots loaded on the
/// first TLS handshake rather than when the client is built: reading the
/// ~150 certificate files costs a few milliseconds that a pull from a
/// plain-HTTP (loopback) registry, or a warm pull, should not pay. With
/// `skip_verify = true` any certificate is accepted (signatures are still
/// checked, so the peer holds the key of the certificate it shows).
#[derive(Debug)]
struct RegistryCertVerifier {
    skip_verify: bool,
    extra: Vec<CertificateDer<'static>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    verifier: std::sync::OnceLock<
        std::result::Result<Arc<rustls::client::WebPkiServerVerifier>, rustls::Error>,
    >,
}

impl RegistryCertVerifier {
    fn get(
        &self,
    ) -> std::result::Result<&Arc<rustls::client::WebPkiServerVerifier>, rustls::Error> {
        self.verifier
            .get_or_init(|| {
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots_with(&self.extra)),
                    Arc::clone(&self.provider),
                )
                .build()
                .map_err(|err| rustls::Error::General(format!("no trusted roots: {err}")))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl rustls::client::danger::ServerCertVerifier for RegistryCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if self.skip_verify {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        }
        self.get()?
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn build(
    config: &ClientConfig,
    tls: Result<rustls::ClientConfig, rustls::Error>,
    registry: &str,
) -> Result<reqwest::Client> {
    let tls = tls.map_err(|err| Error::Tls {
        registry: registry.to_owned(),
        reason: err.to_string(),
    })?;
    let mut builder = reqwest::Client::builder();
    for (host, addr) in &config.resolve {
        builder = builder.resolve(host, *addr);
    }
    // Only the configured proxies: reqwest would otherwise read the
    // environment itself, with rules other than curl's.
    builder = builder.no_proxy();
    for proxy in config.proxy.to_reqwest() {
        builder = builder.proxy(proxy);
    }
    builder
        .tls_backend_preconfigured(tls)
        .user_agent(config.user_agent.clone())
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.stall_timeout)
        // Redirects are followed by hand, so that Authorization never
        // reaches another host.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|err| Error::Tls {
            registry: registry.to_owned(),
            reason: format!("building the HTTP client: {err}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        for yes in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "docker.io",
            "10.0.0.1:5000",
            "[2001:db8::1]:5000",
            "localhost.example.com",
            "ghcr.io",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }

    #[test]
    fn base_urls() {
        let mut config = ClientConfig::default();
        config.insecure_registries.push("reg.internal:5000".into());
        let transport = Transport::new(&config).expect("transport builds");
        assert_eq!(
            transport.base_url("docker.io"),
            "https://registry-1.docker.io"
        );
        assert_eq!(transport.base_url("ghcr.io"), "https://ghcr.io");
        assert_eq!(
            transport.base_url("127.0.0.1:5000"),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            transport.base_url("reg.internal:5000"),
            "http://reg.internal:5000"
        );
    }

    #[test]
    fn origins() {
        let url = |s: &str| reqwest::Url::parse(s).expect("valid url");
        assert!(same_origin(
            &url("https://a.io/v2/x"),
            &url("https://a.io:443/v2/y")
        ));
        assert!(!same_origin(
            &url("https://a.io/v2/x"),
            &url("https://b.io/v2/x")
        ));
        assert!(!same_origin(
            &url("http://127.0.0.1:5000/"),
            &url("http://127.0.0.1:5001/")
        ));
        assert!(!same_origin(&url("https://a.io/"), &url("http://a.io/")));
    }

    #[test]
    fn hosts_settings_reach_the_transport() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("hosts.toml");
        let text = "server = \"http://reg.internal:5000\"\n\
            [host.\"http://mirror.internal:8080/cache\"]\n  skip_verify = true\n\
            [host.\"https://tls.internal\"]\n  ca = \"missing.pem\"\n";
        let hosts =
            crate::hosts::parse_hosts_toml(&file, text, "reg.internal:5000").expect("valid");
        let mut config = ClientConfig::default();
        config.hosts.insert("reg.internal:5000", hosts.clone());
        let err = Transport::new(&config).expect_err("the CA file is missing");
        let text = err.to_string();
        assert!(text.contains("tls.internal"), "{text}");
        assert!(text.contains("missing.pem"), "{text}");
        let mut hosts = hosts;
        hosts.mirrors.pop();
        let mut config = ClientConfig::default();
        config.hosts.insert("reg.internal:5000", hosts);
        let transport = Transport::new(&config).expect("builds");
        // The server names the registry's own scheme; the mirror keeps its
        // scheme and path.
        assert_eq!(
            transport.base_url("reg.internal:5000"),
            "http://reg.internal:5000"
        );
        assert_eq!(
            transport.api_root("mirror.internal:8080"),
            "http://mirror.internal:8080/cache/v2"
        );
        assert!(transport.is_mirror("mirror.internal:8080"));
        assert!(!transport.is_mirror("reg.internal:5000"));
    }

    #[test]
    fn default_settings_without_a_server_reach_registries_without_their_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("hosts.toml");
        let text = "ca = \"missing.pem\"\n";
        let hosts = crate::hosts::parse_hosts_toml(&file, text, crate::hosts::DEFAULT_NAMESPACE)
            .expect("valid");
        let mut config = ClientConfig::default();
        config.hosts.insert(crate::hosts::DEFAULT_NAMESPACE, hosts);
        let err = Transport::new(&config).expect_err("the default CA file is missing");
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let text = "skip_verify = true\n[header]\n  x-fleet = \"a\"\n";
        let hosts = crate::hosts::parse_hosts_toml(&file, text, crate::hosts::DEFAULT_NAMESPACE)
            .expect("valid");
        let mut config = ClientConfig::default();
        config.hosts.insert(crate::hosts::DEFAULT_NAMESPACE, hosts);
        let transport = Transport::new(&config).expect("builds");
        assert_eq!(
            transport.headers("any.example"),
            [("x-fleet".to_owned(), "a".to_owned())]
        );
        assert!(transport.fallback.is_some());
    }

    #[test]
    fn cert_dir_is_read_for_every_registry_and_named_when_wrong() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = ClientConfig {
            cert_dir: Some(dir.path().join("absent")),
            ..ClientConfig::default()
        };
        let err = Transport::new(&config).expect_err("no such directory");
        assert!(err.to_string().contains("absent"), "{err}");
        std::fs::write(dir.path().join("ca.crt"), "not pem").expect("written");
        config.cert_dir = Some(dir.path().to_path_buf());
        let err = Transport::new(&config).expect_err("the CA holds no certificate");
        assert!(err.to_string().contains("certificate directory"), "{err}");
        std::fs::remove_file(dir.path().join("ca.crt")).expect("removed");
        std::fs::write(dir.path().join("client.cert"), "not pem").expect("written");
        let err = Transport::new(&config).expect_err("the client certificate is junk");
        assert!(err.to_string().contains("client.cert"), "{err}");
        std::fs::remove_file(dir.path().join("client.cert")).expect("removed");
        config.tls_verify = false;
        let transport = Transport::new(&config).expect("an empty directory is fine");
        assert_eq!(transport.base_url("ghcr.io"), "https://ghcr.io");
    }

    #[test]
    fn bad_extra_ca_is_a_tls_error_naming_the_registry() {
        let mut config = ClientConfig::default();
        config
            .extra_ca_pem
            .push(("reg.example".into(), b"not pem".to_vec()));
        let err = Transport::new(&config).expect_err("no certificate in it");
        assert!(err.to_string().contains("reg.example"), "{err}");
    }
}
