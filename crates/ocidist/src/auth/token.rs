//! Getting and caching the `Authorization` header for a registry request.

use super::{Challenge, Scope};
use crate::credentials::{Credential, CredentialSource, Secret};
use crate::error::{Error, Result};
use crate::retry::parse_retry_after;
use base64::Engine;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Tokens live this long when the token service does not say (the spec's
/// default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Largest token response read (JWTs with certificate chains run to a few KiB).
const MAX_TOKEN_RESPONSE: u64 = 1024 * 1024;
/// Tokens are renewed this long before they expire.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);

/// Authorization known per registry: the scheme it asked for and the tokens
/// fetched, keyed by scope string.
#[derive(Debug, Default)]
pub(crate) struct AuthCache {
    registries: HashMap<String, RegistryAuth>,
}

#[derive(Debug, Default)]
struct RegistryAuth {
    /// The registry asked for Basic: send credentials on every request.
    basic: Option<Secret>,
    /// Bearer tokens by token-scope string.
    tokens: HashMap<String, CachedToken>,
}

#[derive(Debug)]
struct CachedToken {
    header: Secret,
    expires: Instant,
}

/// Fetches credentials and tokens. Shared by all requests of a client.
#[derive(Debug)]
pub(crate) struct Authorizer {
    pub(crate) cache: Mutex<AuthCache>,
    pub(crate) credentials: Arc<dyn CredentialSource>,
    /// The client's proxies: credentials never go to a plain-HTTP token
    /// service through one.
    pub(crate) proxy: crate::proxy::ProxyConfig,
    /// Where token requests are counted.
    pub(crate) usage: Arc<crate::accounting::Usage>,
}

impl Authorizer {
    /// The cached `Authorization` value for a request, if any: Basic when the
    /// registry asked for it, else a live token covering `scope`.
    pub(crate) fn cached(&self, registry: &str, scope: &Scope) -> Option<Secret> {
        let cache = self
            .cache
            .lock()
            .expect("because no code panics while holding the lock");
        let auth = cache.registries.get(registry)?;
        if let Some(basic) = &auth.basic {
            return Some(basic.clone());
        }
        let now = Instant::now();
        let mut wanted = vec![scope.to_token_scope()];
        if !scope.push {
            wanted.push(Scope::push(&scope.repository).to_token_scope());
        }
        wanted.iter().find_map(|key| {
            auth.tokens
                .get(key)
                .filter(|token| token.expires > now)
                .map(|token| token.header.clone())
        })
    }

    /// Forgets the token for `scope` (after a registry refused it).
    pub(crate) fn forget(&self, registry: &str, scope: &Scope) {
        self.with_registry(registry, |auth| {
            auth.tokens.remove(&scope.to_token_scope());
            auth.basic = None;
        });
    }

    /// Runs `f` on the cached state of `registry`, under the cache lock.
    fn with_registry<T>(&self, registry: &str, f: impl FnOnce(&mut RegistryAuth) -> T) -> T {
        let mut cache = self
            .cache
            .lock()
            .expect("because no code panics while holding the lock");
        f(cache.registries.entry(registry.to_owned()).or_default())
    }

    /// Answers a challenge: returns the `Authorization` value to retry with,
    /// and caches it.
    pub(crate) async fn answer(
        &self,
        http: &reqwest::Client,
        registry: &str,
        scope: &Scope,
        extra_scopes: &[Scope],
        challenges: &[Challenge],
    ) -> Result<Secret> {
        let credential = self.credential(registry).await?;
        if let Some(Challenge::Bearer {
            realm,
            service,
            scope: asked,
            ..
        }) = challenges
            .iter()
            .find(|c| matches!(c, Challenge::Bearer { .. }))
        {
            let mut scopes = vec![scope.to_token_scope()];
            scopes.extend(extra_scopes.iter().map(Scope::to_token_scope));
            if let Some(asked) = asked {
                for s in asked.split_whitespace() {
                    if !scopes.iter().any(|have| have == s) {
                        scopes.push(s.to_owned());
                    }
                }
            }
            let header = self
                .fetch_token(
                    http,
                    registry,
                    realm,
                    service.as_deref(),
                    &scopes,
                    credential.as_ref(),
                )
                .await?;
            return Ok(header);
        }
        if challenges
            .iter()
            .any(|c| matches!(c, Challenge::Basic { .. }))
        {
            let Some(Credential::Basic { username, password }) = credential else {
                return Err(Error::Unauthorized {
                    registry: registry.to_owned(),
                    reason: "the registry asks for a user name and password (Basic), and none is configured for it".into(),
                });
            };
            let header = basic_header(&username, password.expose());
            self.with_registry(registry, |auth| auth.basic = Some(header.clone()));
            return Ok(header);
        }
        let schemes: Vec<String> = challenges
            .iter()
            .map(|c| match c {
                Challenge::Other { scheme } => scheme.clone(),
                Challenge::Bearer { .. } => "Bearer".into(),
                Challenge::Basic { .. } => "Basic".into(),
            })
            .collect();
        Err(Error::Unauthorized {
            registry: registry.to_owned(),
            reason: if schemes.is_empty() {
                "access denied, and the registry sent no authentication challenge".into()
            } else {
                format!(
                    "unsupported authentication scheme(s): {}",
                    schemes.join(", ")
                )
            },
        })
    }

    /// The `Authorization` value that answers `challenges` with exactly
    /// `credential` (for checking it: no fallback to anonymous, nothing
    /// cached): Basic, or a token for no repository from the Bearer realm.
    pub(crate) async fn login_header(
        &self,
        http: &reqwest::Client,
        registry: &str,
        challenges: &[Challenge],
        credential: &Credential,
    ) -> Result<Secret> {
        let bearer = challenges.iter().find_map(|c| match c {
            Challenge::Bearer { realm, service, .. } => Some((realm, service)),
            _ => None,
        });
        if let Some((realm, service)) = bearer {
            let realm_url = reqwest::Url::parse(realm).map_err(|_| Error::Protocol {
                registry: registry.to_owned(),
                reason: format!("token realm {realm:?} is not a URL"),
            })?;
            let host = realm_url.host_str().unwrap_or(registry).to_owned();
            if realm_url.scheme() != "https" && !crate::transport::is_loopback(&host) {
                return Err(Error::Unauthorized {
                    registry: host,
                    reason: "the token service is plain HTTP: credentials are not sent there"
                        .into(),
                });
            }
            if realm_url.scheme() == "http"
                && let Some(proxy) = self.proxy.proxy_for(&realm_url)
            {
                return Err(Error::CleartextProxy {
                    registry: host,
                    proxy: proxy.to_string(),
                });
            }
            let response = self
                .token_request(
                    http,
                    registry,
                    &realm_url,
                    service.as_deref(),
                    &[],
                    Some(credential),
                )
                .await
                .map_err(|err| match err {
                    Error::Unauthorized { .. } => Error::Unauthorized {
                        registry: registry.to_owned(),
                        reason: format!(
                            "its token service {}://{host}{} refused the user name and password",
                            realm_url.scheme(),
                            realm_url
                                .port()
                                .map(|p| format!(":{p}"))
                                .unwrap_or_default()
                        ),
                    },
                    other => other,
                })?;
            let token = response
                .token
                .or(response.access_token)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| Error::Protocol {
                    registry: host,
                    reason: format!("token service {realm} answered without a token"),
                })?;
            return Ok(Secret::new(format!("Bearer {token}")));
        }
        match credential {
            Credential::Basic { username, password }
                if challenges
                    .iter()
                    .any(|c| matches!(c, Challenge::Basic { .. })) =>
            {
                Ok(basic_header(username, password.expose()))
            }
            _ => Err(Error::Unauthorized {
                registry: registry.to_owned(),
                reason: "the registry answered 401 without a Basic or Bearer challenge".into(),
            }),
        }
    }

    async fn credential(&self, registry: &str) -> Result<Option<Credential>> {
        let source = Arc::clone(&self.credentials);
        let registry = registry.to_owned();
        // Credential helpers are programs: run them off the async threads.
        tokio::task::spawn_blocking(move || source.credential(&registry))
            .await
            .unwrap_or(Ok(None))
    }

    async fn fetch_token(
        &self,
        http: &reqwest::Client,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        credential: Option<&Credential>,
    ) -> Result<Secret> {
        let realm_url = reqwest::Url::parse(realm).map_err(|_| Error::Protocol {
            registry: registry.to_owned(),
            reason: format!("token realm {realm:?} is not a URL"),
        })?;
        if let Some(Credential::RegistryToken(token)) = credential {
            return Ok(self.store(
                registry,
                &scopes[0],
                format!("Bearer {}", token.expose()),
                None,
            ));
        }
        // Secrets travel only over TLS, or to a loopback token service.
        let may_send_secrets = realm_url.scheme() == "https"
            || realm_url
                .host_str()
                .is_some_and(crate::transport::is_loopback);
        let credential = credential.filter(|_| may_send_secrets);
        if credential.is_some()
            && realm_url.scheme() == "http"
            && let Some(proxy) = self.proxy.proxy_for(&realm_url)
        {
            return Err(Error::CleartextProxy {
                registry: realm_url.host_str().unwrap_or(registry).to_owned(),
                proxy: proxy.to_string(),
            });
        }
        let first = self
            .token_request(http, registry, &realm_url, service, scopes, credential)
            .await;
        let response = match (first, credential) {
            // Stale stored credentials must not break public pulls: retry
            // anonymously once.
            (Err(Error::Unauthorized { .. }), Some(_)) => {
                tracing::debug!(
                    registry,
                    "token service refused stored credentials; retrying anonymously"
                );
                self.token_request(http, registry, &realm_url, service, scopes, None)
                    .await
                    .map_err(|err| match err {
                        Error::Unauthorized { registry, .. } => Error::Unauthorized {
                            registry,
                            reason: "the token service refused the configured credentials".into(),
                        },
                        other => other,
                    })?
            }
            (result, _) => result?,
        };
        let token = response
            .token
            .or(response.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Protocol {
                registry: registry.to_owned(),
                reason: format!("token service {realm} answered without a token"),
            })?;
        let lifetime = response.expires_in.map(Duration::from_secs);
        Ok(self.store(registry, &scopes[0], format!("Bearer {token}"), lifetime))
    }

    async fn token_request(
        &self,
        http: &reqwest::Client,
        registry: &str,
        realm: &reqwest::Url,
        service: Option<&str>,
        scopes: &[String],
        credential: Option<&Credential>,
    ) -> Result<TokenResponse> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = service {
            query.push(("service", service));
        }
        for scope in scopes {
            query.push(("scope", scope));
        }
        let mut url = realm.clone();
        url.query_pairs_mut().extend_pairs(&query);
        let request = match credential {
            Some(Credential::IdentityToken(refresh)) => {
                let mut form = query.clone();
                form.push(("grant_type", "refresh_token"));
                form.push(("refresh_token", refresh.expose()));
                form.push(("client_id", "cachectl"));
                http.post(realm.clone()).form_urlencoded(&form)
            }
            Some(Credential::Basic { username, password }) => {
                url.query_pairs_mut().append_pair("account", username);
                http.get(url).header(
                    reqwest::header::AUTHORIZATION,
                    basic_header(username, password.expose()).expose(),
                )
            }
            _ => http.get(url),
        };
        let realm_host = realm.host_str().unwrap_or(registry).to_owned();
        self.usage.token(registry);
        let response = request
            .send()
            .await
            .map_err(|source| self.proxy.network_error(&realm_host, 1, source))?;
        let status = response.status().as_u16();
        self.proxy.check_407(status, realm, &realm_host)?;
        match status {
            200..=299 => {
                let bytes = crate::body::read_capped(response, MAX_TOKEN_RESPONSE)
                    .await
                    .map_err(|_| Error::Protocol {
                        registry: realm_host.clone(),
                        reason: "could not read the token response".into(),
                    })?;
                serde_json::from_slice::<TokenResponse>(&bytes).map_err(|err| Error::Protocol {
                    registry: realm_host,
                    reason: format!("token response is not valid JSON: {err}"),
                })
            }
            401 | 403 => Err(Error::Unauthorized {
                registry: realm_host,
                reason: format!(
                    "the token service answered {status} for {}",
                    if credential.is_some() {
                        "the configured credentials"
                    } else {
                        "an anonymous request"
                    }
                ),
            }),
            429 => Err(Error::RateLimited {
                registry: realm_host,
                attempts: 1,
                quota: response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()))
                    .map(|d| format!("retry after {} s", d.as_secs())),
            }),
            _ => Err(Error::Status {
                method: "GET".into(),
                url: strip_query(realm),
                status,
                detail: Some("from the token service".into()),
            }),
        }
    }

    fn store(
        &self,
        registry: &str,
        scope: &str,
        header: String,
        lifetime: Option<Duration>,
    ) -> Secret {
        let header = Secret::new(header);
        let lifetime = lifetime.unwrap_or(DEFAULT_TOKEN_LIFETIME);
        let expires = Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN.min(lifetime / 2));
        self.with_registry(registry, |auth| {
            let token = CachedToken {
                header: header.clone(),
                expires,
            };
            auth.tokens.insert(scope.to_owned(), token);
        });
        header
    }
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

fn basic_header(username: &str, password: &str) -> Secret {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    Secret::new(format!("Basic {encoded}"))
}

fn strip_query(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.to_string()
}

/// Extension to send `application/x-www-form-urlencoded` without reqwest's
/// `form` feature.
trait FormUrlencoded {
    fn form_urlencoded(self, pairs: &[(&str, &str)]) -> Self;
}

impl FormUrlencoded for reqwest::RequestBuilder {
    fn form_urlencoded(self, pairs: &[(&str, &str)]) -> Self {
        let mut url = reqwest::Url::parse("http://x/").expect("because the literal is a valid URL");
        url.query_pairs_mut().extend_pairs(pairs);
        let body = url.query().unwrap_or_default().to_owned();
        self.header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
    }
}
