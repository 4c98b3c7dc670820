//! How a [`crate::Client`] behaves: timeouts, retries, TLS, limits.

use crate::hosts::HostsConfig;
use crate::proxy::ProxyConfig;
use crate::retry::RetryPolicy;
use std::time::Duration;

/// The largest manifest we read (4 MiB, the limit most registries enforce).
pub const DEFAULT_MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// Settings of a [`crate::Client`]. `ClientConfig::default()` suits most
/// uses; every field can be changed before building the client.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Retries for connection errors, resets, 5xx, 408 and 429.
    pub retry: RetryPolicy,
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Time a response may go without sending any byte before it is
    /// abandoned (a stalled body), then resumed or failed.
    pub stall_timeout: Duration,
    /// Registries (`host[:port]`, as `ociref` prints them) reached over plain
    /// HTTP. Loopback registries (`localhost`, `127.0.0.0/8`, `[::1]`) use
    /// plain HTTP without being listed, as docker does.
    pub insecure_registries: Vec<String>,
    /// Extra trusted CA certificates (PEM) per registry, added to the
    /// system's roots for that registry only.
    pub extra_ca_pem: Vec<(String, Vec<u8>)>,
    /// Fixed addresses for host names, as `curl --resolve` gives them: for
    /// registries that DNS does not know (tests, split-horizon setups).
    pub resolve: Vec<(String, std::net::SocketAddr)>,
    /// Forwarding proxies per URL scheme and the hosts that bypass them
    /// (see [`crate::proxy`]). The default is no proxy; use
    /// [`ProxyConfig::from_env`] to honour `https_proxy`, `no_proxy` and the
    /// rest as curl does.
    pub proxy: ProxyConfig,
    /// `User-Agent` header.
    pub user_agent: String,
    /// Manifests larger than this are refused without being read whole.
    pub max_manifest_bytes: u64,
    /// Blobs up to this size are pushed in one request; larger ones in
    /// chunks of [`ClientConfig::push_chunk_bytes`].
    pub monolithic_push_limit: u64,
    /// Size of each chunk of a chunked upload.
    pub push_chunk_bytes: u64,
    /// Entries asked for per page when listing tags (`n=`); pages are
    /// followed through `Link` headers.
    pub list_page_size: u32,
    /// How many times one blob download may be resumed after its connection
    /// dropped (also caps restarts from a server that ignores `Range`).
    pub max_resumes: u32,
    /// Mirrors and per-host settings, containerd's hosts directory
    /// ([`HostsConfig::load`]); none by default.
    pub hosts: HostsConfig,
    /// Whether server certificates are verified (default true). `false`
    /// accepts any certificate from every registry, mirror and token
    /// service, as `skopeo --tls-verify=false` does (it does not switch
    /// to plain HTTP: see [`ClientConfig::insecure_registries`]).
    pub tls_verify: bool,
    /// A certificate directory in docker's layout (`*.crt` trusted CAs,
    /// `X.cert` a client certificate with its key `X.key`), applied to
    /// every host the client reaches, as `skopeo --cert-dir` does: its CAs
    /// are added to the roots, its client certificate is presented unless
    /// a host's own settings (hosts directory) name one.
    pub cert_dir: Option<std::path::PathBuf>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(15),
            stall_timeout: Duration::from_secs(30),
            insecure_registries: Vec::new(),
            extra_ca_pem: Vec::new(),
            resolve: Vec::new(),
            proxy: ProxyConfig::none(),
            user_agent: concat!("cachectl-ocidist/", env!("CARGO_PKG_VERSION")).to_owned(),
            max_manifest_bytes: DEFAULT_MAX_MANIFEST_BYTES,
            monolithic_push_limit: 16 * 1024 * 1024,
            push_chunk_bytes: 16 * 1024 * 1024,
            list_page_size: 1000,
            max_resumes: 8,
            hosts: HostsConfig::none(),
            tls_verify: true,
            cert_dir: None,
        }
    }
}
