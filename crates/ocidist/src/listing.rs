//! Listing: tags (with `Link` pagination) and referrers (with the
//! `sha256-<hex>` tag fallback for registries without the referrers API).

use crate::auth::Scope;
use crate::body::read_capped;
use crate::client::{Client, Request, status_error};
use crate::error::{Error, Result};
use crate::manifest::{Descriptor, ManifestKind};
use crate::media_types::OCI_INDEX;
use ociref::{Digest, Reference};
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue, LINK};
use reqwest::{Method, Url};

/// Pages followed at most when listing, against a registry that loops.
const MAX_PAGES: usize = 10_000;
/// Largest listing page read.
const MAX_PAGE_BYTES: u64 = 16 * 1024 * 1024;

impl Client {
    /// Every tag of the repository of `reference`, following `Link` pages.
    pub async fn tags(&self, reference: &Reference) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let page = format!("tags/list?n={}", self.inner.config.list_page_size.max(1));
        let mut url = self.repo_url(reference.registry(), reference.repository(), &page)?;
        let mut tags = Vec::new();
        for _ in 0..MAX_PAGES {
            let request = list_request(reference, url.clone());
            let response = self.send(&request).await?;
            if response.status().as_u16() == 404 {
                return Err(Error::NotFound {
                    registry: reference.registry().to_owned(),
                    what: format!("repository {}", reference.repository()),
                });
            }
            if !response.status().is_success() {
                return Err(status_error(&request, response).await);
            }
            let next = next_link(response.headers(), &url);
            let page: Page = read_json(reference, &url, response).await?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(next) => url = next,
                None => return Ok(tags),
            }
        }
        Err(Error::Protocol {
            registry: reference.registry().to_owned(),
            reason: format!(
                "tag list of {} has more than {MAX_PAGES} pages",
                reference.repository()
            ),
        })
    }

    /// Whether the repository of `reference` exists, asked with one page
    /// of its tags: `None` when the registry does not say (it refuses the
    /// listing, or cannot be reached).
    pub(crate) async fn repository_exists(&self, reference: &Reference) -> Option<bool> {
        let url = self
            .repo_url(
                reference.registry(),
                reference.repository(),
                "tags/list?n=1",
            )
            .ok()?;
        let response = self.send(&list_request(reference, url)).await.ok()?;
        match response.status().as_u16() {
            404 => Some(false),
            200..=299 => Some(true),
            _ => None,
        }
    }

    /// The manifests that refer to `subject` (signatures, SBOMs), optionally
    /// only those of `artifact_type`. Uses the referrers API, and the
    /// `sha256-<hex>` tag schema where the registry lacks it (404).
    pub async fn referrers(
        &self,
        reference: &Reference,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let mut url = self.repo_url(
            reference.registry(),
            reference.repository(),
            &format!("referrers/{subject}"),
        )?;
        if let Some(artifact_type) = artifact_type {
            url.query_pairs_mut()
                .append_pair("artifactType", artifact_type);
        }
        let mut found = Vec::new();
        for _ in 0..MAX_PAGES {
            let mut request = list_request(reference, url.clone());
            request
                .headers
                .insert(ACCEPT, HeaderValue::from_static(OCI_INDEX));
            let response = self.send(&request).await?;
            let status = response.status().as_u16();
            if status == 404 && found.is_empty() {
                return self
                    .referrers_by_tag(reference, subject, artifact_type)
                    .await;
            }
            if !response.status().is_success() {
                return Err(status_error(&request, response).await);
            }
            let next = next_link(response.headers(), &url);
            let index: oci_spec::image::ImageIndex = read_json(reference, &url, response).await?;
            for manifest in index.manifests() {
                found.push((
                    Descriptor::from_oci(manifest)?,
                    manifest.artifact_type().as_ref().map(|t| t.to_string()),
                ));
            }
            match next {
                Some(next) => url = next,
                None => break,
            }
        }
        // Filtered again here: registries may ignore `artifactType`.
        Ok(filter(found, artifact_type))
    }

    async fn referrers_by_tag(
        &self,
        reference: &Reference,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let tag = format!("{}-{}", subject.algorithm(), subject.hex());
        let tagged = reference.with_tag(&tag)?;
        let manifest = match self.manifest(&tagged).await {
            Ok(manifest) => manifest,
            Err(Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let ManifestKind::Index(index) = manifest.kind else {
            return Err(Error::Protocol {
                registry: reference.registry().to_owned(),
                reason: format!("referrers tag {tag} is not an index"),
            });
        };
        let mut found = Vec::new();
        for manifest in index.manifests() {
            found.push((
                Descriptor::from_oci(manifest)?,
                manifest.artifact_type().as_ref().map(|t| t.to_string()),
            ));
        }
        Ok(filter(found, artifact_type))
    }
}

fn filter(
    found: Vec<(Descriptor, Option<String>)>,
    artifact_type: Option<&str>,
) -> Vec<Descriptor> {
    found
        .into_iter()
        .filter(|(_, kind)| artifact_type.is_none_or(|wanted| kind.as_deref() == Some(wanted)))
        .map(|(descriptor, _)| descriptor)
        .collect()
}

fn list_request(reference: &Reference, url: Url) -> Request<'_> {
    Request {
        method: Method::GET,
        registry: reference.registry(),
        url,
        scope: Scope::pull(reference.repository()),
        extra_scopes: Vec::new(),
        headers: HeaderMap::new(),
        body: None,
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(
    reference: &Reference,
    url: &Url,
    response: reqwest::Response,
) -> Result<T> {
    let protocol = |reason: String| Error::Protocol {
        registry: reference.registry().to_owned(),
        reason,
    };
    let bytes = read_capped(response, MAX_PAGE_BYTES)
        .await
        .map_err(|_| protocol(format!("could not read {}", url.path())))?;
    serde_json::from_slice(&bytes)
        .map_err(|err| protocol(format!("{} is not valid JSON: {err}", url.path())))
}

/// The `rel="next"` target of a `Link` header, resolved against `current`.
fn next_link(headers: &HeaderMap, current: &Url) -> Option<Url> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|value| {
            value.split(',').find_map(|link| {
                let (target, params) = link.split_once(';')?;
                let is_next = params.split(';').any(|p| {
                    p.trim()
                        .replace(' ', "")
                        .eq_ignore_ascii_case("rel=\"next\"")
                        || p.trim().eq_ignore_ascii_case("rel=next")
                });
                let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
                is_next.then(|| current.join(target).ok()).flatten()
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        let current = Url::parse("http://127.0.0.1:5000/v2/a/tags/list?n=2").expect("url");
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            HeaderValue::from_static(r#"</v2/a/tags/list?last=b&n=2>; rel="next""#),
        );
        assert_eq!(
            next_link(&headers, &current).map(|u| u.to_string()),
            Some("http://127.0.0.1:5000/v2/a/tags/list?last=b&n=2".into())
        );
        headers.insert(
            LINK,
            HeaderValue::from_static(r#"<https://x/prev>; rel="prev""#),
        );
        assert_eq!(next_link(&headers, &current), None);
        assert_eq!(next_link(&HeaderMap::new(), &current), None);
    }
}
