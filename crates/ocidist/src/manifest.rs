//! Resolving references and fetching manifests: the four media types we
//! read, checked against each other and hashed ourselves.

use crate::auth::Scope;
use crate::body::{ReadError, read_capped};
use crate::client::{Client, Request, status_error};
use crate::error::{Error, Result};
use crate::mirrors::{Capability, Endpoint};
use bytes::Bytes;
use oci_spec::image::{ImageIndex, ImageManifest};
use ociref::{Digest, DigestVerifier, Reference};
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue};

use crate::media_types::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_SCHEMA1, OCI_INDEX, OCI_MANIFEST,
};

/// The `Accept` header for manifests. All four types are listed: Harbor and
/// GitLab refuse OCI images to clients that omit them.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// What content is and where to get it: media type, digest, size.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Descriptor {
    /// Media type of the content.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Digest of the content.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
}

impl Descriptor {
    /// Converts an `oci-spec` descriptor (from a parsed manifest).
    pub fn from_oci(descriptor: &oci_spec::image::Descriptor) -> Result<Self> {
        Ok(Descriptor {
            media_type: descriptor.media_type().to_string(),
            digest: descriptor.digest().to_string().parse()?,
            size: descriptor.size(),
        })
    }
}

/// A fetched manifest: its exact bytes (hash them, store them, never
/// re-serialize), media type, digest, and parsed form.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The bytes as the registry sent them.
    pub bytes: Bytes,
    /// The media type, from `Content-Type` and the body (which agree).
    pub media_type: String,
    /// The digest of `bytes`.
    pub digest: Digest,
    /// The parsed manifest.
    pub kind: ManifestKind,
}

impl Manifest {
    /// The descriptor of this manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.bytes.len() as u64,
        }
    }
}

/// A parsed manifest: an image, or an index of images (OCI index or Docker
/// manifest list).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ManifestKind {
    /// OCI image manifest or Docker schema 2 manifest.
    Image(Box<ImageManifest>),
    /// OCI image index or Docker manifest list.
    Index(Box<ImageIndex>),
}

/// Whether `media_type` is one of the manifest types this crate reads.
pub fn is_manifest_media_type(media_type: &str) -> bool {
    [
        OCI_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST,
        DOCKER_MANIFEST_LIST,
    ]
    .contains(&media_type)
}

/// Parses manifest bytes received with `content_type` (may be `None` or
/// generic). Checks: JSON, `schemaVersion` 2, a known media type, and that
/// the header and the body's `mediaType` agree.
pub fn parse_manifest(
    what: &str,
    bytes: &[u8],
    content_type: Option<&str>,
) -> Result<(String, ManifestKind)> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "schemaVersion")]
        schema_version: Option<i64>,
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    let invalid = |reason: String| Error::InvalidManifest {
        what: what.to_owned(),
        reason,
    };
    let probe: Probe = serde_json::from_slice(bytes).map_err(|err| {
        // A proxy's error or login page says what it is by its type.
        match content_type.map(str::trim).filter(|ct| !ct.is_empty()) {
            Some(served) if !served.contains("json") => {
                invalid(format!("served as {served}, not JSON: {err}"))
            }
            _ => invalid(format!("not valid JSON: {err}")),
        }
    })?;
    let header = content_type
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|ct| {
            !ct.is_empty()
                && ct != "application/json"
                && ct != "text/plain"
                && ct != "application/octet-stream"
        });
    if let Some(schema1) = DOCKER_SCHEMA1
        .iter()
        .find(|s| header.as_deref() == Some(**s) || probe.media_type.as_deref() == Some(**s))
    {
        return Err(Error::UnsupportedMediaType {
            what: what.to_owned(),
            media_type: (*schema1).to_owned(),
        });
    }
    match probe.schema_version {
        Some(2) => {}
        Some(1) => {
            return Err(Error::UnsupportedMediaType {
                what: what.to_owned(),
                media_type: DOCKER_SCHEMA1[0].to_owned(),
            });
        }
        other => {
            return Err(Error::UnsupportedSchemaVersion {
                what: what.to_owned(),
                version: other,
            });
        }
    }
    if let (Some(header), Some(body)) = (&header, &probe.media_type)
        && header != body
    {
        return Err(Error::MediaTypeMismatch {
            what: what.to_owned(),
            header: header.clone(),
            body: body.clone(),
        });
    }
    let media_type = match header.or(probe.media_type) {
        Some(media_type) => media_type,
        // OCI allows omitting mediaType; infer it from the shape.
        None if probe.manifests.is_some() => OCI_INDEX.to_owned(),
        None if probe.layers.is_some() => OCI_MANIFEST.to_owned(),
        None => {
            return Err(invalid(
                "no mediaType, and neither `manifests` nor `layers`".into(),
            ));
        }
    };
    let kind = match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => ManifestKind::Image(
            serde_json::from_slice(bytes)
                .map_err(|err| invalid(format!("not a valid image manifest: {err}")))?,
        ),
        OCI_INDEX | DOCKER_MANIFEST_LIST => ManifestKind::Index(
            serde_json::from_slice(bytes)
                .map_err(|err| invalid(format!("not a valid image index: {err}")))?,
        ),
        _ => {
            return Err(Error::UnsupportedMediaType {
                what: what.to_owned(),
                media_type,
            });
        }
    };
    Ok((media_type, kind))
}

impl Client {
    /// Resolves a reference to the descriptor of its manifest with one
    /// `HEAD` (Docker Hub meters `GET`s, not `HEAD`s). Falls back to a `GET`
    /// when the registry refuses `HEAD` or omits `Docker-Content-Digest`.
    /// For a reference by digest, the digest is the reference's own. A tag
    /// is resolved only at mirrors allowed to `resolve`.
    pub async fn resolve(&self, reference: &Reference) -> Result<Descriptor> {
        let registry = reference.registry();
        let mut last = None;
        for endpoint in &self.endpoints(registry, capability_for(reference))? {
            match self.resolve_at(reference, endpoint).await {
                Ok(descriptor) => return Ok(descriptor),
                Err(err) => last = Some(self.next_host_after(registry, endpoint, err)?),
            }
        }
        Err(last.expect("because endpoints() is never empty"))
    }

    async fn resolve_at(&self, reference: &Reference, endpoint: &Endpoint) -> Result<Descriptor> {
        let request = self.manifest_request(reference, endpoint, Method::HEAD)?;
        let response = self.send(&request).await?;
        let status = response.status().as_u16();
        if status == 404 {
            // A HEAD answer has no body to say whether the tag or the
            // whole repository is missing: the GET's tells.
            return Ok(self.manifest_at(reference, endpoint).await?.descriptor());
        }
        if response.status().is_success()
            && let Some(descriptor) = descriptor_from_headers(reference, response.headers())
        {
            return Ok(descriptor);
        }
        tracing::debug!(%reference, status, host = %endpoint.key, "HEAD gave no usable digest; falling back to GET");
        Ok(self.manifest_at(reference, endpoint).await?.descriptor())
    }

    /// Fetches and parses the manifest a reference points at. When the
    /// reference carries a digest, the bytes must hash to it. Manifests over
    /// [`crate::ClientConfig::max_manifest_bytes`] are refused unread.
    pub async fn manifest(&self, reference: &Reference) -> Result<Manifest> {
        let registry = reference.registry();
        let mut last = None;
        for endpoint in &self.endpoints(registry, capability_for(reference))? {
            match self.manifest_at(reference, endpoint).await {
                Ok(manifest) => return Ok(manifest),
                Err(err) => last = Some(self.next_host_after(registry, endpoint, err)?),
            }
        }
        Err(last.expect("because endpoints() is never empty"))
    }

    async fn manifest_at(&self, reference: &Reference, endpoint: &Endpoint) -> Result<Manifest> {
        let request = self.manifest_request(reference, endpoint, Method::GET)?;
        let response = self.send(&request).await?;
        if response.status().as_u16() == 404 {
            return Err(self.not_found(reference, response).await);
        }
        if !response.status().is_success() {
            return Err(status_error(&request, response).await);
        }
        let what = reference.to_string();
        let content_type = header_str(response.headers(), CONTENT_TYPE);
        let limit = self.inner.config.max_manifest_bytes;
        let bytes = read_capped(response, limit)
            .await
            .map_err(|err| match err {
                ReadError::TooLarge(size) => Error::ManifestTooLarge {
                    what: what.clone(),
                    size,
                    limit,
                },
                ReadError::Transport(source) => Error::Network {
                    registry: endpoint.key.clone(),
                    attempts: 1,
                    source,
                },
            })?;
        self.inner.usage.bytes(&endpoint.key, bytes.len() as u64);
        let digest = match reference.digest() {
            Some(expected) => {
                let mut verifier = DigestVerifier::new(expected.clone())?;
                verifier.update(&bytes);
                verifier.finish().map_err(|err| match err {
                    ociref::Error::DigestMismatch { expected, actual } => Error::DigestMismatch {
                        what: format!("manifest {what}"),
                        expected,
                        actual,
                    },
                    other => Error::Reference(other),
                })?
            }
            None => Digest::sha256_of(&bytes),
        };
        let (media_type, kind) = parse_manifest(&what, &bytes, content_type.as_deref())?;
        Ok(Manifest {
            bytes: Bytes::from(bytes),
            media_type,
            digest,
            kind,
        })
    }

    fn manifest_request<'r>(
        &self,
        reference: &Reference,
        endpoint: &'r Endpoint,
        method: Method,
    ) -> Result<Request<'r>> {
        if let Some(digest) = reference.digest()
            && !digest.is_supported()
        {
            return Err(Error::UnsupportedDigest {
                reference: reference.to_string(),
                algorithm: digest.algorithm().to_owned(),
            });
        }
        let target = match (reference.digest(), reference.tag()) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.to_owned(),
            (None, None) => "latest".to_owned(),
        };
        let url = endpoint.url(reference.repository(), &format!("manifests/{target}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        Ok(Request {
            method,
            registry: &endpoint.key,
            url,
            scope: Scope::pull(reference.repository()),
            extra_scopes: Vec::new(),
            headers,
            body: None,
        })
    }
}

/// A tag is resolved only where `resolve` is allowed; content named by its
/// digest can come from any host allowed to `pull`.
fn capability_for(reference: &Reference) -> Capability {
    if reference.digest().is_some() {
        Capability::Pull
    } else {
        Capability::Resolve
    }
}

fn descriptor_from_headers(reference: &Reference, headers: &HeaderMap) -> Option<Descriptor> {
    let media_type = header_str(headers, CONTENT_TYPE)?
        .split(';')
        .next()?
        .trim()
        .to_owned();
    if !is_manifest_media_type(&media_type) {
        return None;
    }
    let size = header_str(headers, CONTENT_LENGTH)?.parse().ok()?;
    let digest = match reference.digest() {
        Some(digest) => digest.clone(),
        None => header_str(headers, "docker-content-digest")?.parse().ok()?,
    };
    Some(Descriptor {
        media_type,
        digest,
        size,
    })
}

fn header_str(headers: &HeaderMap, name: impl reqwest::header::AsHeaderName) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_owned)
}

impl Client {
    /// The 404 of a manifest request: the repository missing altogether
    /// (the registry says `NAME_UNKNOWN`, or its tag list is not found), or
    /// the tag or digest in it.
    async fn not_found(&self, reference: &Reference, response: reqwest::Response) -> Error {
        let entries = crate::client::read_error_entries(response).await;
        let repository = format!("{}/{}", reference.registry(), reference.repository());
        let no_repository = entries.iter().any(|e| e.code == "NAME_UNKNOWN")
            || self.repository_exists(reference).await == Some(false);
        let what = match (no_repository, reference.digest(), reference.tag()) {
            (true, _, _) => format!("repository {repository} (asked for {reference})"),
            (false, Some(digest), _) => format!("manifest {digest} in {repository}"),
            (false, None, Some(tag)) => format!("tag {tag} in {repository}"),
            (false, None, None) => format!("manifest {reference}"),
        };
        Error::NotFound {
            registry: reference.registry().to_owned(),
            what,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_header_lists_the_four_manifest_types() {
        let listed: Vec<&str> = MANIFEST_ACCEPT.split(", ").collect();
        assert_eq!(
            listed,
            [
                OCI_INDEX,
                OCI_MANIFEST,
                DOCKER_MANIFEST_LIST,
                DOCKER_MANIFEST
            ]
        );
    }

    #[test]
    fn a_page_that_is_not_json_is_named_by_its_type() {
        let page = b"<!DOCTYPE html><html></html>";
        let err = parse_manifest("r", page, Some("text/html; charset=utf-8")).unwrap_err();
        assert!(err.to_string().contains("served as text/html"), "{err}");
        let err = parse_manifest("r", b"{not json", Some(OCI_MANIFEST)).unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
    }

    const IMAGE: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},
        "layers":[]}"#;

    #[test]
    fn parses_an_oci_manifest_with_matching_header() {
        let (media_type, kind) =
            parse_manifest("x", IMAGE.as_bytes(), Some(OCI_MANIFEST)).expect("valid");
        assert_eq!(media_type, OCI_MANIFEST);
        assert!(matches!(kind, ManifestKind::Image(_)));
    }

    #[test]
    fn generic_content_type_defers_to_the_body() {
        let (media_type, _) = parse_manifest(
            "x",
            IMAGE.as_bytes(),
            Some("application/json; charset=utf-8"),
        )
        .expect("valid");
        assert_eq!(media_type, OCI_MANIFEST);
    }

    #[test]
    fn each_malformation_is_a_distinct_error() {
        let err = parse_manifest("x", b"{not json", Some(OCI_MANIFEST)).expect_err("bad json");
        assert!(matches!(err, Error::InvalidManifest { .. }), "{err}");
        let wrong_version = IMAGE.replace("\"schemaVersion\":2", "\"schemaVersion\":3");
        let err =
            parse_manifest("x", wrong_version.as_bytes(), Some(OCI_MANIFEST)).expect_err("v3");
        assert!(
            matches!(
                err,
                Error::UnsupportedSchemaVersion {
                    version: Some(3),
                    ..
                }
            ),
            "{err}"
        );
        let err =
            parse_manifest("x", IMAGE.as_bytes(), Some(DOCKER_MANIFEST)).expect_err("disagree");
        assert!(matches!(err, Error::MediaTypeMismatch { .. }), "{err}");
        let schema1 = r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        let err =
            parse_manifest("x", schema1.as_bytes(), Some(DOCKER_SCHEMA1[1])).expect_err("schema1");
        assert!(matches!(err, Error::UnsupportedMediaType { .. }), "{err}");
        assert!(err.to_string().contains("manifest.v1+prettyjws"), "{err}");
        let unknown = IMAGE.replace(OCI_MANIFEST, "application/vnd.example+json");
        let err = parse_manifest("x", unknown.as_bytes(), None).expect_err("unknown");
        assert!(matches!(err, Error::UnsupportedMediaType { .. }), "{err}");
    }

    #[test]
    fn media_type_is_inferred_when_omitted() {
        let index = r#"{"schemaVersion":2,"manifests":[]}"#;
        let (media_type, kind) = parse_manifest("x", index.as_bytes(), None).expect("valid index");
        assert_eq!(media_type, OCI_INDEX);
        assert!(matches!(kind, ManifestKind::Index(_)));
    }
}
