//! The [`Client`] and the one path every request takes: authorization,
//! redirects (without leaking `Authorization`), and retries.

use crate::auth::{AuthCache, Authorizer, Scope, challenges_in};
use crate::config::ClientConfig;
use crate::credentials::CredentialSource;
use crate::error::{Error, Result};
use crate::progress::ProgressFn;
use crate::retry::{is_retryable_status, parse_retry_after};
use crate::transport::{Transport, same_origin};
use reqwest::header::{AUTHORIZATION, HeaderMap, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Response, Url};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Redirects followed for one request before giving up.
const MAX_REDIRECTS: u32 = 10;

/// A distribution-spec client. Cheap to clone; clones share connections,
/// credentials and cached tokens.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
    pub(crate) progress: Option<ProgressFn>,
}

pub(crate) struct Inner {
    pub(crate) config: ClientConfig,
    pub(crate) transport: Transport,
    pub(crate) auth: Authorizer,
    pub(crate) mirrors: crate::mirrors::MirrorState,
    pub(crate) usage: Arc<crate::accounting::Usage>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("inner", &self.inner)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .field("credentials", &self.auth.credentials)
            .finish_non_exhaustive()
    }
}

/// One request as the send loop needs it: where, for what, and how to build
/// it again for a retry.
pub(crate) struct Request<'a> {
    pub(crate) method: Method,
    pub(crate) registry: &'a str,
    pub(crate) url: Url,
    pub(crate) scope: Scope,
    /// Further scopes a token must carry (a cross-repository mount reads
    /// from another repository).
    pub(crate) extra_scopes: Vec<Scope>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Body>,
}

/// A request body that can be sent again on a retry.
#[derive(Clone)]
pub(crate) enum Body {
    /// Bytes in memory (manifests, chunks, small blobs).
    Bytes(bytes::Bytes),
    /// A byte range of a local file, streamed.
    File {
        path: std::path::PathBuf,
        offset: u64,
        len: u64,
    },
}

impl Client {
    /// A client with the given settings and credential source.
    ///
    /// ```
    /// let client = ocidist::Client::new(
    ///     ocidist::ClientConfig::default(),
    ///     std::sync::Arc::new(ocidist::credentials::StaticCredentials::default()),
    /// )?;
    /// # Ok::<(), ocidist::Error>(())
    /// ```
    pub fn new(config: ClientConfig, credentials: Arc<dyn CredentialSource>) -> Result<Self> {
        let transport = Transport::new(&config)?;
        let proxy = config.proxy.clone();
        let usage = Arc::new(crate::accounting::Usage::default());
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                transport,
                auth: Authorizer {
                    cache: Mutex::new(AuthCache::default()),
                    credentials,
                    proxy,
                    usage: Arc::clone(&usage),
                },
                mirrors: crate::mirrors::new_state(),
                usage,
            }),
            progress: None,
        })
    }

    /// The same client (sharing connections and tokens), reporting blob
    /// progress to `progress`.
    pub fn with_progress(mut self, progress: ProgressFn) -> Self {
        self.progress = Some(progress);
        self
    }

    /// What this client (and its clones) spent so far, per host, sorted by
    /// host (see [`crate::accounting`]).
    pub fn usage(&self) -> Vec<crate::HostUsage> {
        self.inner.usage.snapshot()
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// `scheme://host/v2/NAME/` for a repository.
    pub(crate) fn repo_url(&self, registry: &str, repository: &str, rest: &str) -> Result<Url> {
        let root = self.inner.transport.api_root(registry);
        let text = format!("{root}/{repository}/{rest}");
        Url::parse(&text).map_err(|_| Error::Protocol {
            registry: registry.to_owned(),
            reason: format!("cannot build a URL from {text:?}"),
        })
    }

    /// Sends `request`, answering auth challenges once, following redirects
    /// and retrying transient failures. Returns the final response whatever
    /// its status, except for 429 and 5xx after the last attempt, and auth
    /// failures, which become errors.
    pub(crate) async fn send(&self, request: &Request<'_>) -> Result<Response> {
        if let Some(body) = &request.body {
            body.check().await?;
        }
        let policy = &self.inner.config.retry;
        let http = self.inner.transport.http(request.registry);
        let mut answered_challenge = false;
        let mut renewed_after_400 = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let authorization = self.inner.auth.cached(request.registry, &request.scope);
            if authorization.is_some() {
                self.refuse_cleartext_proxy(request.registry)?;
            }
            let outcome = self
                .send_following_redirects(http, request, authorization.as_ref().map(|s| s.expose()))
                .await;
            let response = match outcome {
                Ok(response) => not_redirected(request, response)?,
                Err(source) => {
                    if attempt < policy.max_attempts && self.worth_retrying(request, &source) {
                        let delay = policy.backoff(attempt);
                        self.inner.usage.retry(request.registry);
                        tracing::warn!(registry = request.registry, attempt, ?delay, error = %source, "request failed; retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err(self.inner.transport.proxy().network_error(
                        request.registry,
                        attempt,
                        source,
                    ));
                }
            };
            let status = response.status().as_u16();
            let usage = &self.inner.usage;
            usage.headers(request.registry, response.headers());
            self.inner
                .transport
                .proxy()
                .check_407(status, response.url(), request.registry)?;
            if needs_auth(&response) {
                if answered_challenge {
                    return Err(Error::Unauthorized {
                        registry: request.registry.to_owned(),
                        reason: format!(
                            "{} {} was refused ({status}) with fresh authorization for {}",
                            request.method,
                            request.url.path(),
                            request.scope.to_token_scope()
                        ),
                    });
                }
                let challenges = challenges_in(response.headers());
                if authorization.is_some() {
                    self.inner.auth.forget(request.registry, &request.scope);
                }
                self.inner
                    .auth
                    .answer(
                        http,
                        request.registry,
                        &request.scope,
                        &request.extra_scopes,
                        &challenges,
                    )
                    .await?;
                answered_challenge = true;
                attempt -= 1; // answering a challenge is not a failed attempt
                continue;
            }
            // ECR Public answers 400, not 401, to an expired token: drop the
            // cached authorization and try once more with a fresh one.
            if status == 400 && authorization.is_some() && !renewed_after_400 {
                tracing::debug!(
                    registry = request.registry,
                    "400 with cached authorization; renewing it once"
                );
                self.inner.auth.forget(request.registry, &request.scope);
                renewed_after_400 = true;
                attempt -= 1;
                continue;
            }
            if is_retryable_status(status) {
                let retry_after = retry_after(response.headers());
                let too_long = retry_after.is_some_and(|d| d > policy.max_retry_after);
                if attempt < policy.max_attempts && !too_long {
                    let delay = retry_after.unwrap_or_else(|| policy.backoff(attempt));
                    self.inner.usage.retry(request.registry);
                    tracing::warn!(
                        registry = request.registry,
                        attempt,
                        status,
                        ?delay,
                        "registry busy; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    continue;
                }
                if status == 429 {
                    return Err(Error::RateLimited {
                        registry: request.registry.to_owned(),
                        attempts: attempt,
                        quota: quota(response.headers(), retry_after),
                    });
                }
                return Err(status_error(request, response).await);
            }
            return Ok(response);
        }
    }

    /// Whether a request that failed with `source` may be sent again: a
    /// transient failure, unless the proxy refused the tunnel or the host is
    /// a mirror that cannot be reached (the next host is there, the
    /// registry at last: it is not waited for).
    fn worth_retrying(&self, request: &Request<'_>, source: &reqwest::Error) -> bool {
        let proxy_refused = crate::proxy::is_tunnel_auth_failure(source);
        let mirror_down = source.is_connect() && self.inner.transport.is_mirror(request.registry);
        is_transient(source) && !proxy_refused && !mirror_down && !is_tls_refusal(source)
    }

    /// Fails when the registry is plain HTTP and reached through a proxy:
    /// an `Authorization` header would be forwarded in clear.
    pub(crate) fn refuse_cleartext_proxy(&self, registry: &str) -> Result<()> {
        let base = Url::parse(&self.inner.transport.base_url(registry)).ok();
        let proxy = base
            .as_ref()
            .filter(|url| url.scheme() == "http")
            .and_then(|url| self.inner.transport.proxy().proxy_for(url));
        match proxy {
            Some(proxy) => Err(Error::CleartextProxy {
                registry: registry.to_owned(),
                proxy: proxy.to_string(),
            }),
            None => Ok(()),
        }
    }

    async fn send_following_redirects(
        &self,
        http: &reqwest::Client,
        request: &Request<'_>,
        authorization: Option<&str>,
    ) -> std::result::Result<Response, reqwest::Error> {
        let origin = Url::parse(&self.inner.transport.base_url(request.registry)).ok();
        let mut url = request.url.clone();
        let mut method = request.method.clone();
        let mut body = request.body.clone();
        let mut followed = 0;
        loop {
            let mut builder = http
                .request(method.clone(), url.clone())
                .headers(request.headers.clone());
            let at_registry = origin
                .as_ref()
                .is_some_and(|origin| same_origin(&url, origin));
            if let Some(value) = authorization.filter(|_| at_registry) {
                builder = builder.header(AUTHORIZATION, value);
            }
            if at_registry {
                for (name, value) in self.inner.transport.headers(request.registry) {
                    builder = builder.header(name.as_str(), value.as_str());
                }
            }
            if let Some(body) = &body {
                builder = builder.body(body.to_reqwest().await);
            }
            if followed == 0 {
                let mirror = self.inner.transport.is_mirror(request.registry);
                self.inner
                    .usage
                    .request(request.registry, mirror, &method, url.path());
            }
            let response = builder.send().await?;
            let Some(next) = redirect_target(&response, &url) else {
                return Ok(response);
            };
            if followed == MAX_REDIRECTS {
                // Still redirected after the limit: `send` sees a 3xx with
                // a `Location` and reports too many redirects.
                return Ok(response);
            }
            followed += 1;
            if response.status() == reqwest::StatusCode::SEE_OTHER {
                method = Method::GET;
                body = None;
            }
            tracing::debug!(from = %url.host_str().unwrap_or(""), to = %next.host_str().unwrap_or(""), "following redirect");
            url = next;
        }
    }
}

impl Body {
    /// Fails when a file body cannot supply its range, before anything is
    /// sent (a short body would only be refused by the registry later).
    async fn check(&self) -> Result<()> {
        let Body::File { path, offset, len } = self else {
            return Ok(());
        };
        let io = |source| Error::Io {
            what: path.display().to_string(),
            source,
        };
        let size = tokio::fs::metadata(path).await.map_err(io)?.len();
        if size < offset + len {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "file has {size} bytes, the upload needs {} to {}",
                    offset,
                    offset + len
                ),
            )));
        }
        Ok(())
    }

    async fn to_reqwest(&self) -> reqwest::Body {
        match self {
            Body::Bytes(bytes) => reqwest::Body::from(bytes.clone()),
            Body::File { path, offset, len } => {
                use tokio::io::{AsyncReadExt, AsyncSeekExt};
                match tokio::fs::File::open(path).await {
                    Ok(mut file) => {
                        if file.seek(std::io::SeekFrom::Start(*offset)).await.is_err() {
                            return reqwest::Body::from(Vec::new());
                        }
                        let stream = tokio_util::io::ReaderStream::new(file.take(*len));
                        reqwest::Body::wrap_stream(stream)
                    }
                    // `check` saw the file before; if it vanished since, the
                    // registry sees a short body and refuses the upload.
                    Err(_) => reqwest::Body::from(Vec::new()),
                }
            }
        }
    }
}

/// `response`, unless it is still a redirect after [`MAX_REDIRECTS`]
/// (a loop): then [`Error::TooManyRedirects`], naming the URL first asked
/// for.
fn not_redirected(request: &Request<'_>, response: Response) -> Result<Response> {
    if redirect_target(&response, response.url()).is_none() {
        return Ok(response);
    }
    let mut url = request.url.clone();
    url.set_query(None);
    Err(Error::TooManyRedirects {
        method: request.method.to_string(),
        url: url.to_string(),
        limit: MAX_REDIRECTS,
    })
}

fn redirect_target(response: &Response, current: &Url) -> Option<Url> {
    if !response.status().is_redirection() || response.status() == reqwest::StatusCode::NOT_MODIFIED
    {
        return None;
    }
    let location = response.headers().get(LOCATION)?.to_str().ok()?;
    current.join(location).ok()
}

/// 401, or 403 carrying a Bearer challenge (`insufficient_scope`).
fn needs_auth(response: &Response) -> bool {
    match response.status().as_u16() {
        401 => true,
        403 => response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .any(|v| {
                v.to_str()
                    .is_ok_and(|v| v.trim_start().to_ascii_lowercase().starts_with("bearer"))
            }),
        _ => false,
    }
}

/// `Retry-After` of a response, as a delay from now.
fn retry_after(headers: &HeaderMap) -> Option<std::time::Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

/// Whether the TLS handshake failed over a certificate (ours or the
/// registry's, or one side's alert): trying again cannot fix it.
fn is_tls_refusal(err: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(error) = cause {
        if is_rustls(error) {
            return true;
        }
        cause = error.source();
    }
    false
}

/// A rustls error, itself or inside `io::Error`s (which hide their inner
/// error from `source`; hyper-rustls wraps tokio-rustls's in another).
fn is_rustls(error: &(dyn std::error::Error + 'static)) -> bool {
    if error.is::<rustls::Error>() {
        return true;
    }
    let mut io = error.downcast_ref::<std::io::Error>();
    for _ in 0..4 {
        let Some(inner) = io.and_then(std::io::Error::get_ref) else {
            return false;
        };
        if inner.is::<rustls::Error>() {
            return true;
        }
        io = inner.downcast_ref::<std::io::Error>();
    }
    false
}

fn is_transient(err: &reqwest::Error) -> bool {
    err.is_connect() || err.is_timeout() || err.is_request() || err.is_body()
}

fn quota(headers: &HeaderMap, retry_after: Option<std::time::Duration>) -> Option<String> {
    let mut parts: Vec<String> = headers
        .iter()
        .filter(|(name, _)| {
            name.as_str().starts_with("ratelimit-") || name.as_str().starts_with("x-ratelimit-")
        })
        .filter_map(|(name, value)| Some(format!("{name}: {}", value.to_str().ok()?)))
        .collect();
    if let Some(delay) = retry_after {
        parts.push(format!("retry after {} s", delay.as_secs()));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Turns an unexpected response into an error carrying the registry's own
/// message (`{"errors":[{"code","message"}]}`).
pub(crate) async fn status_error(request: &Request<'_>, response: Response) -> Error {
    let status = response.status().as_u16();
    let mut url = response.url().clone();
    url.set_query(None);
    let detail = read_error_detail(response).await;
    Error::Status {
        method: request.method.to_string(),
        url: url.to_string(),
        status,
        detail,
    }
}

/// One entry of a registry's error body (`{"errors":[{"code","message"}]}`).
#[derive(serde::Deserialize)]
pub(crate) struct ErrorEntry {
    #[serde(default)]
    pub(crate) code: String,
    #[serde(default)]
    pub(crate) message: String,
}

/// The entries of a registry's error body; none when it has no such body.
pub(crate) async fn read_error_entries(response: Response) -> Vec<ErrorEntry> {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    let Ok(bytes) = crate::body::read_capped(response, 64 * 1024).await else {
        return Vec::new();
    };
    serde_json::from_slice::<Errors>(&bytes)
        .map(|errors| errors.errors)
        .unwrap_or_default()
}

async fn read_error_detail(response: Response) -> Option<String> {
    let text: Vec<String> = read_error_entries(response)
        .await
        .into_iter()
        .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
            (false, false) => format!("{}: {}", e.code, e.message),
            (false, true) => e.code,
            _ => e.message,
        })
        .collect();
    (!text.is_empty()).then(|| text.join("; "))
}
