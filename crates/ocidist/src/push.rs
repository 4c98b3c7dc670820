//! Pushing: blob existence checks, monolithic and chunked uploads,
//! cross-repository mounts, manifests.

use crate::auth::Scope;
use crate::client::{Body, Client, Request, status_error};
use crate::error::{Error, Result};
use crate::manifest::Descriptor;
use crate::progress::{Phase, Progress, Subject};
use bytes::Bytes;
use ociref::{Digest, Reference};
use reqwest::header::{
    CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION,
};
use reqwest::{Method, Response, Url};
use std::path::Path;

/// Where the bytes of a blob to push come from.
#[derive(Clone, Debug)]
pub enum BlobSource<'a> {
    /// Bytes in memory.
    Bytes(Bytes),
    /// A file holding exactly the blob (streamed, never read whole).
    File(&'a Path),
}

impl Client {
    /// The size of blob `digest` in the repository of `reference`, or `None`
    /// when the registry does not have it there.
    pub async fn blob_exists(&self, reference: &Reference, digest: &Digest) -> Result<Option<u64>> {
        let request = self.push_request(
            reference,
            Method::HEAD,
            &format!("blobs/{digest}"),
            Scope::pull(reference.repository()),
        )?;
        let response = self.send(&request).await?;
        match response.status().as_u16() {
            // reqwest reports a HEAD body as empty: read the header itself.
            200 => Ok(Some(
                response
                    .headers()
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )),
            404 => Ok(None),
            _ => Err(status_error(&request, response).await),
        }
    }

    /// Pushes a blob unless the repository already has it: one request for
    /// small blobs, `POST` + `PATCH`… + `PUT` chunks for large ones.
    /// Returns `true` when bytes were uploaded.
    pub async fn push_blob(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        source: BlobSource<'_>,
    ) -> Result<bool> {
        if self.blob_exists(reference, &descriptor.digest).await? == Some(descriptor.size) {
            self.report(descriptor, Phase::Skipped, descriptor.size);
            return Ok(false);
        }
        let location = self
            .start_upload(reference, &[])
            .await?
            .ok_or_else(|| Error::Protocol {
                registry: reference.registry().to_owned(),
                reason: "upload start answered 201 without a mount request".into(),
            })?;
        self.report(descriptor, Phase::Started, 0);
        let body_at = |offset: u64, len: u64| match &source {
            BlobSource::Bytes(bytes) => {
                Body::Bytes(bytes.slice(offset as usize..(offset + len) as usize))
            }
            BlobSource::File(path) => Body::File {
                path: path.to_path_buf(),
                offset,
                len,
            },
        };
        let config = &self.inner.config;
        let location = if descriptor.size <= config.monolithic_push_limit {
            location
        } else {
            let mut location = location;
            let mut offset = 0;
            while offset < descriptor.size {
                let len = config.push_chunk_bytes.min(descriptor.size - offset);
                location = self
                    .patch_chunk(reference, &location, offset, len, body_at(offset, len))
                    .await?;
                offset += len;
                self.report(descriptor, Phase::Bytes, offset);
            }
            location
        };
        let (final_body, final_len) = if descriptor.size <= config.monolithic_push_limit {
            (Some(body_at(0, descriptor.size)), descriptor.size)
        } else {
            (None, 0)
        };
        let mut url = location;
        url.query_pairs_mut()
            .append_pair("digest", &descriptor.digest.to_string());
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        headers.insert(CONTENT_LENGTH, HeaderValue::from(final_len));
        let request = Request {
            method: Method::PUT,
            registry: reference.registry(),
            url,
            scope: Scope::push(reference.repository()),
            extra_scopes: Vec::new(),
            headers,
            body: final_body.or(Some(Body::Bytes(Bytes::new()))),
        };
        let response = self.send(&request).await?;
        if response.status().as_u16() != 201 {
            return Err(status_error(&request, response).await);
        }
        self.report(descriptor, Phase::Finished, descriptor.size);
        Ok(true)
    }

    /// Asks the registry to mount blob `digest` from repository `from` (same
    /// registry) into the repository of `reference`. Returns `true` when it
    /// did; `false` when it declined (the caller then uploads).
    pub async fn mount_blob(
        &self,
        reference: &Reference,
        from: &str,
        digest: &Digest,
    ) -> Result<bool> {
        let mounted = self
            .start_upload(reference, &[("mount", &digest.to_string()), ("from", from)])
            .await?;
        Ok(mounted.is_none())
    }

    /// Pushes a manifest under the tag or digest of `reference` and returns
    /// its digest (of the exact bytes given).
    pub async fn push_manifest(
        &self,
        reference: &Reference,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<Digest> {
        let digest = Digest::sha256_of(&bytes);
        if let Some(wanted) = reference.digest()
            && wanted != &digest
        {
            return Err(Error::DigestMismatch {
                what: format!("manifest to push as {reference}"),
                expected: wanted.clone(),
                actual: digest,
            });
        }
        let target = match (reference.tag(), reference.digest()) {
            (Some(tag), _) => tag.to_owned(),
            (None, Some(digest)) => digest.to_string(),
            (None, None) => "latest".to_owned(),
        };
        let mut request = self.push_request(
            reference,
            Method::PUT,
            &format!("manifests/{target}"),
            Scope::push(reference.repository()),
        )?;
        request.headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(media_type).map_err(|_| Error::Protocol {
                registry: reference.registry().to_owned(),
                reason: format!("media type {media_type:?} is not a valid header value"),
            })?,
        );
        request.body = Some(Body::Bytes(bytes));
        let response = self.send(&request).await?;
        if response.status().as_u16() != 201 {
            return Err(status_error(&request, response).await);
        }
        Ok(digest)
    }

    /// `POST /blobs/uploads/`: the upload location, or `None` when a mount
    /// succeeded (201).
    async fn start_upload(
        &self,
        reference: &Reference,
        query: &[(&str, &str)],
    ) -> Result<Option<Url>> {
        let mut request = self.push_request(
            reference,
            Method::POST,
            "blobs/uploads/",
            Scope::push(reference.repository()),
        )?;
        if let Some((_, from)) = query.iter().find(|(k, _)| *k == "from") {
            request.extra_scopes.push(Scope::pull(from));
        }
        request.url.query_pairs_mut().extend_pairs(query);
        request.headers.insert(CONTENT_LENGTH, HeaderValue::from(0));
        let response = self.send(&request).await?;
        match response.status().as_u16() {
            201 if !query.is_empty() => Ok(None),
            202 => Ok(Some(location_of(&request, &response)?)),
            _ => Err(status_error(&request, response).await),
        }
    }

    async fn patch_chunk(
        &self,
        reference: &Reference,
        location: &Url,
        offset: u64,
        len: u64,
        body: Body,
    ) -> Result<Url> {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        let range = format!("{offset}-{}", offset + len - 1);
        headers.insert(
            CONTENT_RANGE,
            HeaderValue::from_str(&range).expect("because the range is ASCII"),
        );
        let request = Request {
            method: Method::PATCH,
            registry: reference.registry(),
            url: location.clone(),
            scope: Scope::push(reference.repository()),
            extra_scopes: Vec::new(),
            headers,
            body: Some(body),
        };
        let response = self.send(&request).await?;
        if response.status().as_u16() != 202 {
            return Err(status_error(&request, response).await);
        }
        location_of(&request, &response)
    }

    fn push_request<'r>(
        &self,
        reference: &'r Reference,
        method: Method,
        rest: &str,
        scope: Scope,
    ) -> Result<Request<'r>> {
        Ok(Request {
            method,
            registry: reference.registry(),
            url: self.repo_url(reference.registry(), reference.repository(), rest)?,
            scope,
            extra_scopes: Vec::new(),
            headers: HeaderMap::new(),
            body: None,
        })
    }

    fn report(&self, descriptor: &Descriptor, phase: Phase, done: u64) {
        if let Some(progress) = &self.progress {
            progress.report(&Progress {
                subject: Subject::Blob(descriptor.digest.clone()),
                phase,
                done,
                total: descriptor.size,
            });
        }
    }
}

/// The `Location` of an upload answer, resolved against the request URL
/// (registries send absolute or relative locations).
fn location_of(request: &Request<'_>, response: &Response) -> Result<Url> {
    let value = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Protocol {
            registry: request.registry.to_owned(),
            reason: format!(
                "{} {} answered without a Location",
                request.method,
                request.url.path()
            ),
        })?;
    let url = request.url.join(value).map_err(|_| Error::Protocol {
        registry: request.registry.to_owned(),
        reason: format!("upload Location {value:?} is not a URL"),
    })?;
    // A Location on another host is followed, but without Authorization:
    // `Client::send` only attaches it to the registry's own origin.
    Ok(url)
}
