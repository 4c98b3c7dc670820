//! The one error type of `ocidist`.

use ociref::{Digest, ErrorKind};
use std::path::PathBuf;

/// Everything that can go wrong talking to a registry.
///
/// Messages start lowercase, name the registry, repository, digest or file
/// involved, and never contain a credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A reference, digest or platform could not be parsed.
    #[error(transparent)]
    Reference(#[from] ociref::Error),

    /// The registry has no such manifest, tag, repository or blob.
    #[error("{what} not found on {registry}")]
    NotFound {
        /// Registry host.
        registry: String,
        /// What was asked for, e.g. `manifest docker.io/library/alpine:3.20`.
        what: String,
    },

    /// The registry refused the credentials, or asked for credentials that we
    /// do not have.
    #[error("authentication to {registry} failed: {reason}")]
    Unauthorized {
        /// Registry host (or token realm host).
        registry: String,
        /// What happened, without any secret.
        reason: String,
    },

    /// The registry (or its token service) keeps answering 429.
    #[error("rate limited by {registry} after {attempts} attempt(s){}", quota.as_deref().map(|q| format!(" (quota: {q})")).unwrap_or_default())]
    RateLimited {
        /// Host that answered 429.
        registry: String,
        /// Attempts made.
        attempts: u32,
        /// `RateLimit-*` headers, when the registry sent them.
        quota: Option<String>,
    },

    /// The registry answered with an unexpected HTTP status.
    #[error("{method} {url} answered {status}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Status {
        /// HTTP method.
        method: String,
        /// The URL (never carries credentials).
        url: String,
        /// HTTP status code.
        status: u16,
        /// The registry's error message (`errors[].message`), if any.
        detail: Option<String>,
    },

    /// A reference pinned by a digest whose algorithm we cannot compute
    /// (`md5:…`, or a well-formed but unregistered `foo:bar`): its content
    /// could not be verified, so nothing is asked of the registry.
    #[error(
        "cannot fetch {reference}: digest algorithm {algorithm:?} is not supported (supported: {})",
        supported_algorithms()
    )]
    UnsupportedDigest {
        /// The reference, as given.
        reference: String,
        /// The algorithm it names.
        algorithm: String,
    },

    /// A redirect chain longer than the limit (a loop, most likely).
    #[error("{method} {url}: too many redirects (more than {limit})")]
    TooManyRedirects {
        /// HTTP method.
        method: String,
        /// The URL first asked for, without its query.
        url: String,
        /// Redirects followed before giving up.
        limit: u32,
    },

    /// The connection failed, reset or timed out, after all retries.
    #[error("network error talking to {registry} after {attempts} attempt(s)")]
    Network {
        /// Registry host.
        registry: String,
        /// Attempts made.
        attempts: u32,
        /// The last transport error.
        #[source]
        source: reqwest::Error,
    },

    /// The connection through a proxy failed (the proxy is down, refused
    /// the tunnel, or could not reach the registry), after all retries.
    #[error(
        "network error talking to {registry} through proxy {proxy} after {attempts} attempt(s)"
    )]
    ProxyNetwork {
        /// Registry host.
        registry: String,
        /// The proxy, as `host:port` (never its credentials).
        proxy: String,
        /// Attempts made.
        attempts: u32,
        /// The last transport error.
        #[source]
        source: reqwest::Error,
    },

    /// The proxy answered 407: it wants credentials, or refused ours.
    #[error(
        "proxy {proxy} refused to forward the request to {registry} (407 proxy authentication required): {reason}"
    )]
    ProxyAuth {
        /// The proxy, as `host:port`.
        proxy: String,
        /// Registry host the request was for.
        registry: String,
        /// What happened, never the password.
        reason: String,
    },

    /// A proxy setting is malformed or uses a scheme we do not support.
    #[error("proxy setting {setting}: {reason}")]
    ProxySetting {
        /// The environment variable (or `the https proxy` when given
        /// explicitly).
        setting: String,
        /// What is wrong; the value itself is never repeated.
        reason: String,
    },

    /// Credentials or a token for a plain-HTTP registry (or token service)
    /// would be forwarded in clear through a proxy: refused, nothing sent.
    #[error(
        "refusing to send credentials for {registry} through proxy {proxy}: {registry} is plain HTTP, so the proxy would read them; list it in no_proxy or use HTTPS"
    )]
    CleartextProxy {
        /// The plain-HTTP registry or token service host.
        registry: String,
        /// The proxy, as `host:port`.
        proxy: String,
    },

    /// A body stopped arriving for longer than the stall timeout.
    #[error("{what} from {registry} stalled: no data for {seconds} s")]
    Stalled {
        /// Registry host.
        registry: String,
        /// What was being read.
        what: String,
        /// The stall timeout.
        seconds: u64,
    },

    /// Content did not hash to the digest it was fetched by.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was fetched.
        what: String,
        /// The digest asked for.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },

    /// A body was longer or shorter than its descriptor says.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// What was fetched.
        what: String,
        /// Size from the descriptor.
        expected: u64,
        /// Bytes received (for "too long", at least this many).
        actual: u64,
    },

    /// A manifest is bigger than the limit (4 MiB); it was not read whole.
    #[error("manifest {what} is too large: {size} bytes (limit {limit})")]
    ManifestTooLarge {
        /// Which manifest.
        what: String,
        /// Its size, as announced or as read so far.
        size: u64,
        /// The limit.
        limit: u64,
    },

    /// A manifest media type that we do not handle (schema 1, unknown types).
    #[error("unsupported manifest media type {media_type:?} for {what}")]
    UnsupportedMediaType {
        /// Which manifest.
        what: String,
        /// The media type received.
        media_type: String,
    },

    /// A manifest whose `schemaVersion` is not 2.
    #[error("manifest {what} has schemaVersion {}, expected 2", version.map(|v| v.to_string()).unwrap_or_else(|| "missing".into()))]
    UnsupportedSchemaVersion {
        /// Which manifest.
        what: String,
        /// The version found, if any.
        version: Option<i64>,
    },

    /// The `Content-Type` header and the manifest's own `mediaType` differ.
    #[error("manifest {what} was served as {header:?} but says it is {body:?}")]
    MediaTypeMismatch {
        /// Which manifest.
        what: String,
        /// The `Content-Type` header.
        header: String,
        /// The body's `mediaType`.
        body: String,
    },

    /// A manifest that is not valid JSON or not a valid manifest.
    #[error("invalid manifest {what}: {reason}")]
    InvalidManifest {
        /// Which manifest.
        what: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A response that breaks the distribution protocol (bad header, bad
    /// `Location`, bad token response).
    #[error("protocol error from {registry}: {reason}")]
    Protocol {
        /// Registry host.
        registry: String,
        /// What was wrong.
        reason: String,
    },

    /// A credentials file could not be read or parsed.
    #[error("credentials file {}: {reason}", path.display())]
    CredentialFile {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the secret itself).
        reason: String,
    },

    /// A `docker-credential-<name>` helper failed.
    #[error("credential helper docker-credential-{helper} failed for {registry}: {reason}")]
    CredentialHelper {
        /// Helper name, without the `docker-credential-` prefix.
        helper: String,
        /// Registry asked for.
        registry: String,
        /// What happened (its stderr, never its stdout).
        reason: String,
    },

    /// TLS configuration could not be built (bad extra CA file, no roots).
    #[error("TLS setup for {registry}: {reason}")]
    Tls {
        /// Registry host, or `*` for the default configuration.
        registry: String,
        /// What is wrong.
        reason: String,
    },

    /// A hosts directory (`hosts.toml`, containerd's format) could not be
    /// read, or a file in it is malformed.
    #[error("hosts configuration {}{}: {reason}", path.display(), line.map(|l| format!(", line {l}")).unwrap_or_default())]
    HostsConfig {
        /// The file (or directory) at fault.
        path: PathBuf,
        /// The line, when the fault is inside a file.
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },

    /// A mirror failed after part of a blob had been handed out (bytes of
    /// another digest, a body cut short): the mirror is skipped from now on
    /// by this client, so fetching the blob again from its first byte uses
    /// the next mirror or the registry. Discard what was received.
    #[error("mirror {mirror} for {registry} failed")]
    Mirror {
        /// The mirror, `host[:port]`.
        mirror: String,
        /// The registry it stands in for.
        registry: String,
        /// What went wrong at the mirror.
        #[source]
        source: Box<Error>,
    },

    /// Reading local content to push failed.
    #[error("reading {what} to push")]
    Io {
        /// What was being read.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// What kind of failure this is. A registry that has no such image is
    /// [`ErrorKind::Other`]: only the local cache answers "not cached".
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Reference(err) => err.kind(),
            Error::Unauthorized { .. }
            | Error::CredentialHelper { .. }
            | Error::ProxyAuth { .. } => ErrorKind::Auth,
            Error::RateLimited { .. }
            | Error::Network { .. }
            | Error::ProxyNetwork { .. }
            | Error::Stalled { .. }
            | Error::Tls { .. } => ErrorKind::Network,
            Error::Status { status, .. } if *status >= 500 => ErrorKind::Network,
            Error::DigestMismatch { .. } | Error::SizeMismatch { .. } => ErrorKind::Integrity,
            Error::CredentialFile { .. }
            | Error::ProxySetting { .. }
            | Error::CleartextProxy { .. }
            | Error::HostsConfig { .. }
            | Error::UnsupportedDigest { .. } => ErrorKind::Usage,
            Error::Mirror { source, .. } => source.kind(),
            Error::NotFound { .. }
            | Error::Status { .. }
            | Error::TooManyRedirects { .. }
            | Error::ManifestTooLarge { .. }
            | Error::UnsupportedMediaType { .. }
            | Error::UnsupportedSchemaVersion { .. }
            | Error::MediaTypeMismatch { .. }
            | Error::InvalidManifest { .. }
            | Error::Protocol { .. }
            | Error::Io { .. } => ErrorKind::Other,
        }
    }
}

/// The digest algorithms we can verify, as a list for messages:
/// `sha256, sha512`.
fn supported_algorithms() -> String {
    ociref::Algorithm::ALL
        .iter()
        .map(|algorithm| algorithm.name())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real `reqwest::Error`: a connection to a port nothing listens on.
    async fn refused() -> reqwest::Error {
        let transport = crate::transport::Transport::new(&crate::ClientConfig::default())
            .expect("the default client builds");
        transport
            .http("127.0.0.1:9")
            .get("http://127.0.0.1:9/v2/")
            .send()
            .await
            .expect_err("nothing listens on port 9")
    }

    #[tokio::test]
    async fn every_variant_has_its_kind() {
        let digest = Digest::sha256_of(b"");
        let text = || "x".to_owned();
        let status = |status| Error::Status {
            method: "GET".into(),
            url: "http://r/v2/".into(),
            status,
            detail: None,
        };
        let cases = [
            (
                Error::Reference("A:b".parse::<ociref::Reference>().unwrap_err()),
                ErrorKind::Usage,
            ),
            (
                Error::NotFound {
                    registry: text(),
                    what: text(),
                },
                ErrorKind::Other,
            ),
            (
                Error::Unauthorized {
                    registry: text(),
                    reason: text(),
                },
                ErrorKind::Auth,
            ),
            (
                Error::RateLimited {
                    registry: text(),
                    attempts: 3,
                    quota: None,
                },
                ErrorKind::Network,
            ),
            (status(503), ErrorKind::Network),
            (
                Error::UnsupportedDigest {
                    reference: text(),
                    algorithm: "md5".into(),
                },
                ErrorKind::Usage,
            ),
            (
                Error::TooManyRedirects {
                    method: "GET".into(),
                    url: text(),
                    limit: 10,
                },
                ErrorKind::Other,
            ),
            (status(400), ErrorKind::Other),
            (
                Error::Network {
                    registry: text(),
                    attempts: 3,
                    source: refused().await,
                },
                ErrorKind::Network,
            ),
            (
                Error::ProxyNetwork {
                    registry: text(),
                    proxy: text(),
                    attempts: 3,
                    source: refused().await,
                },
                ErrorKind::Network,
            ),
            (
                Error::ProxyAuth {
                    proxy: text(),
                    registry: text(),
                    reason: text(),
                },
                ErrorKind::Auth,
            ),
            (
                Error::ProxySetting {
                    setting: text(),
                    reason: text(),
                },
                ErrorKind::Usage,
            ),
            (
                Error::CleartextProxy {
                    registry: text(),
                    proxy: text(),
                },
                ErrorKind::Usage,
            ),
            (
                Error::Stalled {
                    registry: text(),
                    what: text(),
                    seconds: 30,
                },
                ErrorKind::Network,
            ),
            (
                Error::DigestMismatch {
                    what: text(),
                    expected: digest.clone(),
                    actual: digest,
                },
                ErrorKind::Integrity,
            ),
            (
                Error::SizeMismatch {
                    what: text(),
                    expected: 1,
                    actual: 2,
                },
                ErrorKind::Integrity,
            ),
            (
                Error::ManifestTooLarge {
                    what: text(),
                    size: 9,
                    limit: 1,
                },
                ErrorKind::Other,
            ),
            (
                Error::UnsupportedMediaType {
                    what: text(),
                    media_type: text(),
                },
                ErrorKind::Other,
            ),
            (
                Error::UnsupportedSchemaVersion {
                    what: text(),
                    version: None,
                },
                ErrorKind::Other,
            ),
            (
                Error::MediaTypeMismatch {
                    what: text(),
                    header: text(),
                    body: text(),
                },
                ErrorKind::Other,
            ),
            (
                Error::InvalidManifest {
                    what: text(),
                    reason: text(),
                },
                ErrorKind::Other,
            ),
            (
                Error::Protocol {
                    registry: text(),
                    reason: text(),
                },
                ErrorKind::Other,
            ),
            (
                Error::CredentialFile {
                    path: "/c.json".into(),
                    reason: text(),
                },
                ErrorKind::Usage,
            ),
            (
                Error::CredentialHelper {
                    helper: text(),
                    registry: text(),
                    reason: text(),
                },
                ErrorKind::Auth,
            ),
            (
                Error::Tls {
                    registry: text(),
                    reason: text(),
                },
                ErrorKind::Network,
            ),
            (
                Error::Io {
                    what: text(),
                    source: std::io::Error::other("boom"),
                },
                ErrorKind::Other,
            ),
            (
                Error::HostsConfig {
                    path: "/h/hosts.toml".into(),
                    line: Some(3),
                    reason: text(),
                },
                ErrorKind::Usage,
            ),
            (
                Error::Mirror {
                    mirror: text(),
                    registry: text(),
                    source: Box::new(Error::DigestMismatch {
                        what: text(),
                        expected: Digest::sha256_of(b""),
                        actual: Digest::sha256_of(b"x"),
                    }),
                },
                ErrorKind::Integrity,
            ),
        ];
        for (err, kind) in cases {
            assert_eq!(err.kind(), kind, "{err}");
        }
    }
}
