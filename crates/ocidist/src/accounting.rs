//! What a client spent, per host: requests by kind, bytes received,
//! retries, and the rate limits registries announce.
//!
//! Every request the client sends is counted once, at the host it was
//! addressed to (a redirect's further hops are not counted again): manifest
//! `HEAD`s and `GET`s, blob `GET`s, token requests (counted at the registry
//! that asked for the token), and the rest (uploads, listings). `bytes`
//! counts manifest and blob bodies received. `retries` counts requests sent
//! again after a failure, and blob downloads resumed. The
//! `RateLimit-Limit` and `RateLimit-Remaining` headers (Docker Hub sends
//! `100;w=21600`) are kept as their last values, with `Retry-After` in
//! seconds; when the remaining count falls under 10 % of the limit, a
//! warning is logged once per host. [`crate::Client::usage`] reads it all.

use reqwest::Method;
use reqwest::header::HeaderMap;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// What one client spent against one host.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct HostUsage {
    /// The host (`host[:port]`, or the registry's name as references give it).
    pub host: String,
    /// Whether the host is one of the configured mirrors.
    pub mirror: bool,
    /// Manifest `HEAD`s (resolving tags, checking what is cached).
    pub manifest_head: u64,
    /// Manifest `GET`s (Docker Hub's pull limit counts these).
    pub manifest_get: u64,
    /// Blob `GET`s.
    pub blob_get: u64,
    /// Token requests made for this registry.
    pub token: u64,
    /// Other requests (uploads, listings).
    pub other: u64,
    /// Manifest and blob bytes received.
    pub bytes: u64,
    /// Requests sent again, and blob downloads resumed.
    pub retries: u64,
    /// `RateLimit-Limit`, as last seen.
    pub ratelimit_limit: Option<u64>,
    /// `RateLimit-Remaining`, as last seen.
    pub ratelimit_remaining: Option<u64>,
    /// `Retry-After`, in seconds, as last seen.
    pub retry_after_seconds: Option<u64>,
}

impl HostUsage {
    /// Every request counted.
    pub fn requests(&self) -> u64 {
        self.manifest_head + self.manifest_get + self.blob_get + self.token + self.other
    }
}

/// The counts of a client and its clones.
#[derive(Debug, Default)]
pub(crate) struct Usage {
    hosts: Mutex<BTreeMap<String, HostUsage>>,
}

impl Usage {
    fn with<T>(&self, host: &str, f: impl FnOnce(&mut HostUsage) -> T) -> T {
        let mut hosts = self
            .hosts
            .lock()
            .expect("because no code panics while holding the lock");
        let usage = hosts.entry(host.to_owned()).or_insert_with(|| HostUsage {
            host: host.to_owned(),
            ..HostUsage::default()
        });
        f(usage)
    }

    /// One request sent to `host`.
    pub(crate) fn request(&self, host: &str, mirror: bool, method: &Method, path: &str) {
        self.with(host, |usage| {
            usage.mirror |= mirror;
            let counter = if path.contains("/manifests/") && method == Method::HEAD {
                &mut usage.manifest_head
            } else if path.contains("/manifests/") && method == Method::GET {
                &mut usage.manifest_get
            } else if path.contains("/blobs/")
                && !path.contains("/blobs/uploads")
                && method == Method::GET
            {
                &mut usage.blob_get
            } else {
                &mut usage.other
            };
            *counter += 1;
        });
    }

    /// A token requested for `registry`.
    pub(crate) fn token(&self, registry: &str) {
        self.with(registry, |usage| usage.token += 1);
    }

    /// A request to `host` sent again, or a download resumed.
    pub(crate) fn retry(&self, host: &str) {
        self.with(host, |usage| usage.retries += 1);
    }

    /// Body bytes received from `host`.
    pub(crate) fn bytes(&self, host: &str, count: u64) {
        self.with(host, |usage| usage.bytes += count);
    }

    /// Keeps the rate-limit headers of a response from `host`; warns once
    /// when less than 10 % of the limit is left.
    pub(crate) fn headers(&self, host: &str, headers: &HeaderMap) {
        let number = |name: &str| {
            let value = headers.get(name)?.to_str().ok()?;
            value.split(';').next()?.trim().parse::<u64>().ok()
        };
        let limit = number("ratelimit-limit");
        let remaining = number("ratelimit-remaining");
        let retry_after = number("retry-after");
        if limit.is_none() && remaining.is_none() && retry_after.is_none() {
            return;
        }
        self.with(host, |usage| {
            let was_low = is_low(usage.ratelimit_limit, usage.ratelimit_remaining);
            usage.ratelimit_limit = limit.or(usage.ratelimit_limit);
            usage.ratelimit_remaining = remaining.or(usage.ratelimit_remaining);
            usage.retry_after_seconds = retry_after.or(usage.retry_after_seconds);
            if !was_low && is_low(usage.ratelimit_limit, usage.ratelimit_remaining) {
                tracing::warn!(
                    host,
                    limit = usage.ratelimit_limit,
                    remaining = usage.ratelimit_remaining,
                    "less than 10% of the registry's rate limit is left"
                );
            }
        });
    }

    /// Everything counted, by host.
    pub(crate) fn snapshot(&self) -> Vec<HostUsage> {
        self.hosts
            .lock()
            .expect("because no code panics while holding the lock")
            .values()
            .cloned()
            .collect()
    }
}

/// Whether `remaining` is under 10 % of `limit`.
pub fn is_low(limit: Option<u64>, remaining: Option<u64>) -> bool {
    match (limit, remaining) {
        (Some(limit), Some(remaining)) if limit > 0 => remaining * 10 < limit,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn requests_are_counted_by_kind() {
        let usage = Usage::default();
        let p = "/v2/a/b";
        usage.request("r", false, &Method::HEAD, &format!("{p}/manifests/v1"));
        usage.request("r", false, &Method::GET, &format!("{p}/manifests/sha256:0"));
        usage.request("r", false, &Method::GET, &format!("{p}/blobs/sha256:0"));
        usage.request("r", false, &Method::POST, &format!("{p}/blobs/uploads/"));
        usage.request("r", false, &Method::GET, &format!("{p}/blobs/uploads/x"));
        usage.request("m", true, &Method::GET, &format!("{p}/blobs/sha256:0"));
        usage.token("r");
        usage.retry("r");
        usage.bytes("r", 10);
        let all = usage.snapshot();
        assert_eq!(all.len(), 2);
        let r = &all[1];
        assert_eq!(
            (
                r.manifest_head,
                r.manifest_get,
                r.blob_get,
                r.other,
                r.token
            ),
            (1, 1, 1, 2, 1)
        );
        assert_eq!((r.retries, r.bytes, r.requests()), (1, 10, 6));
        assert!(all[0].mirror && !r.mirror);
    }

    #[test]
    fn docker_hub_rate_limit_headers_are_read() {
        let usage = Usage::default();
        let mut headers = HeaderMap::new();
        headers.insert("ratelimit-limit", HeaderValue::from_static("100;w=21600"));
        headers.insert(
            "ratelimit-remaining",
            HeaderValue::from_static("76;w=21600"),
        );
        usage.headers("docker.io", &headers);
        headers.insert("ratelimit-remaining", HeaderValue::from_static("9;w=21600"));
        headers.insert("retry-after", HeaderValue::from_static("30"));
        usage.headers("docker.io", &headers);
        let hub = &usage.snapshot()[0];
        assert_eq!(hub.ratelimit_limit, Some(100));
        assert_eq!(hub.ratelimit_remaining, Some(9));
        assert_eq!(hub.retry_after_seconds, Some(30));
        assert!(is_low(hub.ratelimit_limit, hub.ratelimit_remaining));
        assert!(!is_low(Some(100), Some(10)));
        assert!(!is_low(None, Some(0)));
    }
}
