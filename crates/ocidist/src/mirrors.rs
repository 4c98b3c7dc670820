//! Trying a registry's mirrors (from [`crate::hosts`]) before the registry.
//!
//! Each operation names the capability it needs: resolving a tag needs
//! `resolve`, fetching by digest needs `pull`. The mirrors that declare it
//! are tried in order, then the registry (or its `server`). A mirror that
//! fails (refused, timed out, 5xx after the retries, an HTML page or JSON of
//! the wrong type, bytes of another digest) is skipped by this client from
//! then on: said once with `tracing::warn!` and listed by
//! [`crate::Client::skipped_mirrors`]. A mirror that answers 404 is passed
//! over for that request only. Each request to a mirror carries only the
//! credentials configured for the mirror's own host, and `?ns=<registry>`
//! as containerd sends it.

use crate::client::Client;
use crate::error::{Error, Result};
use crate::hosts::{HostEndpoint, RegistryHosts};
use crate::transport::api_host;
use reqwest::Url;
use std::sync::Mutex;

/// What an operation asks of a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Capability {
    /// Fetch by digest.
    Pull,
    /// Turn a tag into a digest.
    Resolve,
}

impl Capability {
    fn allowed(self, endpoint: &HostEndpoint) -> bool {
        match self {
            Capability::Pull => endpoint.capabilities.pull,
            Capability::Resolve => endpoint.capabilities.resolve,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Capability::Pull => "pull",
            Capability::Resolve => "resolve",
        }
    }
}

/// Where one attempt of an operation goes.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    /// The name credentials, TLS settings and errors use: the registry for
    /// the registry itself, else the host's `host[:port]`.
    pub(crate) key: String,
    /// `scheme://host[:port][/path]/v2` (or the overridden path).
    pub(crate) api_root: String,
    /// The configured URL of a mirror; `None` for the registry or server.
    pub(crate) mirror: Option<String>,
    /// The registry, sent as `?ns=` when the host is another one.
    pub(crate) ns: Option<String>,
}

impl Endpoint {
    /// `<api_root>/<repository>/<rest>[?ns=<registry>]`.
    pub(crate) fn url(&self, repository: &str, rest: &str) -> Result<Url> {
        let text = format!("{}/{repository}/{rest}", self.api_root);
        let mut url = Url::parse(&text).map_err(|_| Error::Protocol {
            registry: self.key.clone(),
            reason: format!("cannot build a URL from {text:?}"),
        })?;
        if let Some(ns) = &self.ns {
            url.query_pairs_mut().append_pair("ns", ns);
        }
        Ok(url)
    }
}

/// A mirror this client stopped using, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct SkippedMirror {
    /// The registry it stood in for when it failed.
    pub registry: String,
    /// The mirror's URL, as configured.
    pub mirror: String,
    /// What went wrong (the error's message, never a credential).
    pub reason: String,
}

/// The mirrors skipped so far, shared by the clones of a client.
#[derive(Debug, Default)]
pub(crate) struct MirrorState {
    skipped: Mutex<Vec<SkippedMirror>>,
}

impl MirrorState {
    fn is_skipped(&self, mirror: &str) -> bool {
        self.lock().iter().any(|s| s.mirror == mirror)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SkippedMirror>> {
        self.skipped
            .lock()
            .expect("because no code panics while holding the lock")
    }
}

/// The `(key, url)` a hosts file's `server` is reached under: the registry's
/// own name when the server is the registry (so that its credentials apply),
/// else the server's host.
pub(crate) fn server_key(registry: &str, server: &HostEndpoint) -> String {
    let authority = server.authority();
    if authority == registry || authority == api_host(registry) {
        registry.to_owned()
    } else {
        authority
    }
}

impl Client {
    /// The mirrors skipped so far by this client (and its clones), in the
    /// order they failed.
    pub fn skipped_mirrors(&self) -> Vec<SkippedMirror> {
        self.inner.mirrors.lock().clone()
    }

    /// The registry itself (or its `server`) as an endpoint.
    pub(crate) fn origin_endpoint(&self, registry: &str) -> Endpoint {
        let hosts = self.inner.config.hosts.for_registry(registry);
        if let Some(server) = hosts.and_then(|h| h.server.as_ref()) {
            let key = server_key(registry, server);
            if key != registry {
                return Endpoint {
                    api_root: server.api_root(),
                    key,
                    mirror: None,
                    ns: Some(registry.to_owned()),
                };
            }
        }
        Endpoint {
            key: registry.to_owned(),
            api_root: self.inner.transport.api_root(registry),
            mirror: None,
            ns: None,
        }
    }

    /// Where to try an operation needing `capability`, in order: the
    /// mirrors that declare it and are not skipped, then the server when it
    /// declares it.
    pub(crate) fn endpoints(
        &self,
        registry: &str,
        capability: Capability,
    ) -> Result<Vec<Endpoint>> {
        let Some(hosts) = self.inner.config.hosts.for_registry(registry) else {
            return Ok(vec![self.origin_endpoint(registry)]);
        };
        let mut endpoints: Vec<Endpoint> = hosts
            .mirrors
            .iter()
            .filter(|m| capability.allowed(m))
            .filter(|m| !self.inner.mirrors.is_skipped(m.url.as_str()))
            .map(|m| {
                // A "mirror" that is the registry itself (containerd's own
                // docker.io example lists registry-1.docker.io) is reached
                // under the registry's name, with its credentials.
                let key = server_key(registry, m);
                Endpoint {
                    ns: (key != registry).then(|| registry.to_owned()),
                    api_root: m.api_root(),
                    mirror: Some(m.url.to_string()),
                    key,
                }
            })
            .collect();
        if server_allows(hosts, capability) {
            endpoints.push(self.origin_endpoint(registry));
        }
        if endpoints.is_empty() {
            return Err(Error::HostsConfig {
                path: hosts.file.clone(),
                line: None,
                reason: format!(
                    "no host left that may {} for {registry} (every mirror with that capability was skipped, and the server lacks it)",
                    capability.describe()
                ),
            });
        }
        Ok(endpoints)
    }

    /// After `err` at `endpoint`: a mirror's error is recorded (the mirror
    /// skipped unless it answered 404) and handed back to try the next
    /// host with (`Ok`); the registry's own error stands (`Err`).
    ///
    /// Callers loop over [`Client::endpoints`] themselves: a generic helper
    /// taking an async closure would make their futures not `Send`.
    pub(crate) fn next_host_after(
        &self,
        registry: &str,
        endpoint: &Endpoint,
        err: Error,
    ) -> Result<Error> {
        if endpoint.mirror.is_none() {
            return Err(err);
        }
        self.mirror_failed(registry, endpoint, &err);
        Ok(err)
    }

    /// Records that `endpoint` (a mirror) failed with `err`: skipped from
    /// now on and said once, unless it only lacked the content (404).
    pub(crate) fn mirror_failed(&self, registry: &str, endpoint: &Endpoint, err: &Error) {
        let Some(mirror) = &endpoint.mirror else {
            return;
        };
        if matches!(err, Error::NotFound { .. }) {
            tracing::debug!(registry, mirror = %mirror, error = %err, "mirror does not have it; trying the next host");
            return;
        }
        let mut skipped = self.inner.mirrors.lock();
        if skipped.iter().any(|s| &s.mirror == mirror) {
            return;
        }
        let reason = error_chain(err);
        tracing::warn!(
            registry,
            mirror = %mirror,
            error = %reason,
            "mirror failed; skipping it for the rest of this run"
        );
        skipped.push(SkippedMirror {
            registry: registry.to_owned(),
            mirror: mirror.clone(),
            reason,
        });
    }
}

fn server_allows(hosts: &RegistryHosts, capability: Capability) -> bool {
    hosts
        .server
        .as_ref()
        .map_or(capability.allowed(&hosts.server_settings), |server| {
            capability.allowed(server)
        })
}

/// An error and its causes, `: `-separated.
fn error_chain(err: &Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Builds the shared state of a client's mirrors.
pub(crate) fn new_state() -> MirrorState {
    MirrorState::default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::StaticCredentials;
    use std::path::Path;
    use std::sync::Arc;

    fn client(namespace: &str, text: &str) -> Client {
        let hosts = crate::hosts::parse_hosts_toml(Path::new("/h/hosts.toml"), text, namespace)
            .expect("valid");
        let mut config = crate::ClientConfig::default();
        config.hosts.insert(namespace, hosts);
        Client::new(config, Arc::new(StaticCredentials::new())).expect("client builds")
    }

    const TWO_MIRRORS: &str = r#"
[host."http://127.0.0.1:7001"]
  capabilities = ["pull"]
[host."http://127.0.0.1:7002/cache"]
  capabilities = ["pull", "resolve"]
"#;

    #[test]
    fn mirrors_with_the_capability_come_first_then_the_registry() {
        let client = client("reg.example", TWO_MIRRORS);
        let keys = |capability| -> Vec<String> {
            client
                .endpoints("reg.example", capability)
                .expect("endpoints")
                .into_iter()
                .map(|e| e.key)
                .collect()
        };
        assert_eq!(
            keys(Capability::Pull),
            ["127.0.0.1:7001", "127.0.0.1:7002", "reg.example"]
        );
        assert_eq!(keys(Capability::Resolve), ["127.0.0.1:7002", "reg.example"]);
        // Another registry has no mirrors.
        let other = client
            .endpoints("ghcr.io", Capability::Pull)
            .expect("endpoints");
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].api_root, "https://ghcr.io/v2");
    }

    #[test]
    fn mirror_urls_carry_the_namespace_and_their_own_path() {
        let client = client("reg.example", TWO_MIRRORS);
        let endpoints = client
            .endpoints("reg.example", Capability::Pull)
            .expect("endpoints");
        let url = endpoints[1]
            .url("team/app", "blobs/sha256:00")
            .expect("url");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:7002/cache/v2/team/app/blobs/sha256:00?ns=reg.example"
        );
        let origin = endpoints[2].url("team/app", "manifests/v1").expect("url");
        assert_eq!(
            origin.as_str(),
            "https://reg.example/v2/team/app/manifests/v1"
        );
    }

    #[test]
    fn a_failed_mirror_is_skipped_but_a_404_is_not() {
        let client = client("reg.example", TWO_MIRRORS);
        let endpoints = client
            .endpoints("reg.example", Capability::Pull)
            .expect("endpoints");
        let not_found = Error::NotFound {
            registry: "127.0.0.1:7001".into(),
            what: "blob".into(),
        };
        client
            .next_host_after("reg.example", &endpoints[0], not_found)
            .expect("a mirror's error lets the next host be tried");
        assert!(client.skipped_mirrors().is_empty());
        let refused = Error::Protocol {
            registry: "127.0.0.1:7001".into(),
            reason: "answered an HTML page".into(),
        };
        client
            .next_host_after("reg.example", &endpoints[0], refused)
            .expect("a mirror's error lets the next host be tried");
        let skipped = client.skipped_mirrors();
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].mirror, "http://127.0.0.1:7001/");
        assert!(skipped[0].reason.contains("HTML"), "{skipped:?}");
        let left = client
            .endpoints("reg.example", Capability::Pull)
            .expect("endpoints");
        assert_eq!(left.len(), 2);
        let origin_error = Error::Protocol {
            registry: "reg.example".into(),
            reason: "x".into(),
        };
        assert!(
            client
                .next_host_after("reg.example", &left[1], origin_error)
                .is_err(),
            "the registry's own error stands"
        );
    }

    #[test]
    fn a_host_that_is_the_registry_itself_keeps_the_registry_name() {
        let client = client(
            "docker.io",
            "server = \"https://docker.io\"\n[host.\"https://registry-1.docker.io\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        );
        let endpoints = client
            .endpoints("docker.io", Capability::Resolve)
            .expect("endpoints");
        assert_eq!(endpoints[0].key, "docker.io");
        assert_eq!(endpoints[0].ns, None);
        assert_eq!(endpoints[0].api_root, "https://registry-1.docker.io/v2");
    }

    #[test]
    fn a_server_elsewhere_is_reached_under_its_own_name() {
        let client = client(
            "reg.example",
            "server = \"https://backend.example:8443\"\ncapabilities = [\"pull\"]\n",
        );
        let pull = client
            .endpoints("reg.example", Capability::Pull)
            .expect("endpoints");
        assert_eq!(pull.len(), 1);
        assert_eq!(pull[0].key, "backend.example:8443");
        assert_eq!(pull[0].ns.as_deref(), Some("reg.example"));
        let err = client
            .endpoints("reg.example", Capability::Resolve)
            .expect_err("no host may resolve");
        assert!(err.to_string().contains("/h/hosts.toml"), "{err}");
        // docker.io's server is its API host, under the registry's name
        // (so that Docker Hub credentials apply).
        let hub = super::tests::client("docker.io", "server = \"https://docker.io\"\n");
        let origin = hub.origin_endpoint("docker.io");
        assert_eq!(origin.key, "docker.io");
        assert_eq!(origin.api_root, "https://registry-1.docker.io/v2");
    }
}
