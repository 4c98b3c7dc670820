//! Checking credentials before they are stored, as `docker login` does.

use crate::auth::challenges_in;
use crate::client::Client;
use crate::credentials::{Credential, Secret};
use crate::error::{Error, Result};
use reqwest::header::AUTHORIZATION;
use reqwest::{Response, Url};

impl Client {
    /// Checks that `registry` accepts `credential`, as `docker login` does:
    /// `GET /v2/`; when the registry answers 401, the same request again
    /// with the credential (as Basic, or as a token fetched with it from the
    /// Bearer challenge's realm, for no repository).
    ///
    /// `Ok(true)`: the registry accepted the credential. `Ok(false)`: it
    /// asks for none (anonymous access), so nothing could be checked. A
    /// refusal is an [`Error::Unauthorized`] (no secret in it). The
    /// credential goes to the registry and its token realm only: redirects
    /// are not followed.
    pub async fn check_credential(&self, registry: &str, credential: &Credential) -> Result<bool> {
        let root = self.inner.transport.api_root(registry);
        let url = Url::parse(&format!("{root}/")).map_err(|_| Error::Protocol {
            registry: registry.to_owned(),
            reason: format!("cannot build a URL from {root:?}"),
        })?;
        let first = self.ping(registry, &url, None).await?;
        match first.status().as_u16() {
            200..=299 => return Ok(false),
            401 => {}
            status => return Err(unexpected(&url, status)),
        }
        let challenges = challenges_in(first.headers());
        self.refuse_cleartext_proxy(registry)?;
        let http = self.inner.transport.http(registry);
        let header = self
            .inner
            .auth
            .login_header(http, registry, &challenges, credential)
            .await?;
        let second = self.ping(registry, &url, Some(&header)).await?;
        match second.status().as_u16() {
            200..=299 => Ok(true),
            401 | 403 => Err(Error::Unauthorized {
                registry: registry.to_owned(),
                reason: "the registry refused the user name and password".into(),
            }),
            status => Err(unexpected(&url, status)),
        }
    }

    /// One `GET /v2/`, with the configured headers and `authorization`.
    async fn ping(
        &self,
        registry: &str,
        url: &Url,
        authorization: Option<&Secret>,
    ) -> Result<Response> {
        let http = self.inner.transport.http(registry);
        let mut builder = http.get(url.clone());
        for (name, value) in self.inner.transport.headers(registry) {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(value) = authorization {
            builder = builder.header(AUTHORIZATION, value.expose());
        }
        let mirror = self.inner.transport.is_mirror(registry);
        self.inner
            .usage
            .request(registry, mirror, &reqwest::Method::GET, url.path());
        builder.send().await.map_err(|source| {
            self.inner
                .transport
                .proxy()
                .network_error(registry, 1, source)
        })
    }
}

fn unexpected(url: &Url, status: u16) -> Error {
    Error::Status {
        method: "GET".into(),
        url: url.to_string(),
        status,
        detail: Some("checking the credentials".into()),
    }
}
