//! Downloading blobs: streamed, hashed as they pass, never past their size,
//! resumed with `Range` when a connection drops.

use crate::auth::Scope;
use crate::client::{Client, Request, status_error};
use crate::error::{Error, Result};
use crate::manifest::Descriptor;
use crate::mirrors::{Capability, Endpoint};
use crate::progress::{Phase, Progress, Subject};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use ociref::{DigestVerifier, Reference};
use reqwest::Method;
use reqwest::header::{CONTENT_RANGE, HeaderMap, HeaderValue, RANGE};

/// A blob being downloaded. Call [`BlobStream::next_chunk`] until it returns
/// `Ok(None)`: only then have all bytes arrived and matched the digest. An
/// `Err` at any point means the bytes handed out so far must be discarded.
pub struct BlobStream {
    client: Client,
    registry: String,
    repository: String,
    descriptor: Descriptor,
    verifier: Option<DigestVerifier>,
    body: Option<BoxStream<'static, reqwest::Result<Bytes>>>,
    /// Bytes of the blob received and hashed, counting from its start.
    received: u64,
    /// Bytes still to drop from the current body: the server ignored `Range`
    /// and started again from 0.
    skip: u64,
    resumes: u32,
    done: bool,
    /// Where the current body comes from.
    endpoint: Option<Endpoint>,
    /// The last mirror that served bytes of this blob: blamed (skipped) when
    /// the whole does not verify.
    mirror_used: Option<Endpoint>,
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("registry", &self.registry)
            .field("repository", &self.repository)
            .field("descriptor", &self.descriptor)
            .field("received", &self.received)
            .field("resumes", &self.resumes)
            .finish_non_exhaustive()
    }
}

/// How the current body ended early.
enum Interruption {
    Transport(reqwest::Error),
    Stalled,
    EndedEarly,
}

impl Client {
    /// Starts downloading the blob `descriptor` of the repository of
    /// `reference`.
    pub async fn blob(&self, reference: &Reference, descriptor: &Descriptor) -> Result<BlobStream> {
        let verifier = DigestVerifier::new(descriptor.digest.clone())?;
        self.blob_from(reference, descriptor, verifier).await
    }

    /// Resumes downloading a blob of which the caller already holds the first
    /// `verifier.bytes_seen()` bytes (fed to `verifier`, e.g. from a partial
    /// file). Sends `Range`; copes with a server that answers 200 with the
    /// whole body by skipping what is already held.
    pub async fn blob_from(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        verifier: DigestVerifier,
    ) -> Result<BlobStream> {
        let offset = verifier.bytes_seen();
        if offset > descriptor.size {
            return Err(Error::SizeMismatch {
                what: format!("blob {}", descriptor.digest),
                expected: descriptor.size,
                actual: offset,
            });
        }
        let mut stream = BlobStream {
            client: self.clone(),
            registry: reference.registry().to_owned(),
            repository: reference.repository().to_owned(),
            descriptor: descriptor.clone(),
            verifier: Some(verifier),
            body: None,
            received: offset,
            skip: 0,
            resumes: 0,
            done: false,
            endpoint: None,
            mirror_used: None,
        };
        stream.report(Phase::Started);
        if offset < descriptor.size {
            stream.open().await?;
        }
        Ok(stream)
    }

    /// Downloads a blob into `writer`, returning once every byte is written
    /// and the digest verified. On error, whatever was written must be
    /// discarded.
    pub async fn blob_to_writer<W>(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        writer: &mut W,
    ) -> Result<()>
    where
        W: tokio::io::AsyncWrite + Unpin,
    {
        use tokio::io::AsyncWriteExt;
        let mut stream = self.blob(reference, descriptor).await?;
        while let Some(chunk) = stream.next_chunk().await? {
            writer.write_all(&chunk).await.map_err(|source| Error::Io {
                what: format!("blob {}", descriptor.digest),
                source,
            })?;
        }
        writer.flush().await.map_err(|source| Error::Io {
            what: format!("blob {}", descriptor.digest),
            source,
        })
    }

    /// Downloads a small blob (a config) into memory, verified. Refuses a
    /// descriptor larger than `cap` bytes without fetching it.
    pub async fn blob_bytes(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        cap: u64,
    ) -> Result<Bytes> {
        if descriptor.size > cap {
            return Err(Error::SizeMismatch {
                what: format!("blob {} (in-memory limit {cap} bytes)", descriptor.digest),
                expected: cap,
                actual: descriptor.size,
            });
        }
        // A mirror that served bad bytes is skipped from then on: the next
        // attempt goes to the next host (one more than there are mirrors).
        loop {
            match self.blob_bytes_once(reference, descriptor).await {
                Err(Error::Mirror { .. }) => continue,
                other => return other,
            }
        }
    }

    async fn blob_bytes_once(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
    ) -> Result<Bytes> {
        let mut bytes = Vec::with_capacity(descriptor.size as usize);
        let mut stream = self.blob(reference, descriptor).await?;
        while let Some(chunk) = stream.next_chunk().await? {
            bytes.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(bytes))
    }
}

impl BlobStream {
    /// The next verified-so-far chunk, or `None` once the whole blob arrived
    /// and its digest matched.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        let result = self.next_chunk_inner().await;
        result.map_err(|err| self.blame_mirror(err))
    }

    /// An error after bytes were handed out, when a mirror served some of
    /// them: the mirror is skipped from now on and the error says so
    /// ([`Error::Mirror`]), so that the caller starts again from zero.
    fn blame_mirror(&mut self, err: Error) -> Error {
        let integrity = matches!(
            err,
            Error::DigestMismatch { .. } | Error::SizeMismatch { .. }
        );
        // A 404 does not skip a mirror: starting again would ask it again.
        if matches!(err, Error::NotFound { .. }) {
            return err;
        }
        let at_mirror = self.endpoint.as_ref().filter(|e| e.mirror.is_some());
        let blamed = match (at_mirror, &self.mirror_used) {
            (Some(endpoint), _) => endpoint.clone(),
            (None, Some(used)) if integrity => used.clone(),
            _ => return err,
        };
        self.done = true;
        self.body = None;
        self.client.mirror_failed(&self.registry, &blamed, &err);
        Error::Mirror {
            mirror: blamed.key,
            registry: self.registry.clone(),
            source: Box::new(err),
        }
    }

    async fn next_chunk_inner(&mut self) -> Result<Option<Bytes>> {
        loop {
            if self.done {
                return Ok(None);
            }
            if self.received == self.descriptor.size {
                self.finish()?;
                return Ok(None);
            }
            if self.body.is_none() {
                self.open().await?;
            }
            let next = {
                let body = self
                    .body
                    .as_mut()
                    .expect("because open() just set the body");
                next_with_stall_timeout(body, self.client.inner.config.stall_timeout).await
            };
            let interruption = match next {
                Ok(Some(Ok(chunk))) => {
                    if let Some(chunk) = self.accept(chunk)? {
                        return Ok(Some(chunk));
                    }
                    continue;
                }
                Ok(Some(Err(err))) => Interruption::Transport(err),
                Ok(None) => Interruption::EndedEarly,
                Err(()) => Interruption::Stalled,
            };
            self.resume_after(interruption).await?;
        }
    }

    /// Bytes received and hashed so far, counting from the blob's start.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The blob being downloaded.
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    /// How many times the download resumed after an interruption.
    pub fn resumes(&self) -> u32 {
        self.resumes
    }

    /// Drops the bytes to skip, refuses bytes past the size, hashes the rest.
    fn accept(&mut self, mut chunk: Bytes) -> Result<Option<Bytes>> {
        let host = self.endpoint.as_ref().map_or(&self.registry, |e| &e.key);
        self.client.inner.usage.bytes(host, chunk.len() as u64);
        if self.skip > 0 {
            let drop = self.skip.min(chunk.len() as u64) as usize;
            self.skip -= drop as u64;
            chunk = chunk.slice(drop..);
        }
        if chunk.is_empty() {
            return Ok(None);
        }
        let after = self.received + chunk.len() as u64;
        if after > self.descriptor.size {
            self.body = None;
            return Err(Error::SizeMismatch {
                what: self.what(),
                expected: self.descriptor.size,
                actual: after,
            });
        }
        self.verifier
            .as_mut()
            .expect("because the verifier is only taken when done")
            .update(&chunk);
        self.received = after;
        self.report(Phase::Bytes);
        Ok(Some(chunk))
    }

    fn finish(&mut self) -> Result<()> {
        self.done = true;
        self.body = None;
        let verifier = self.verifier.take().expect("because finish runs once");
        verifier.finish().map_err(|err| match err {
            ociref::Error::DigestMismatch { expected, actual } => Error::DigestMismatch {
                what: self.what(),
                expected,
                actual,
            },
            other => Error::Reference(other),
        })?;
        self.report(Phase::Finished);
        Ok(())
    }

    async fn resume_after(&mut self, interruption: Interruption) -> Result<()> {
        self.body = None;
        if let Some(endpoint) = self.endpoint.take_if(|e| e.mirror.is_some()) {
            // A mirror that drops or stalls a body is not waited for: the
            // rest comes from the next host, from where it stopped.
            let err = match interruption {
                Interruption::Transport(source) => Error::Network {
                    registry: endpoint.key.clone(),
                    attempts: 1,
                    source,
                },
                Interruption::Stalled => Error::Stalled {
                    registry: endpoint.key.clone(),
                    what: self.what(),
                    seconds: self.client.inner.config.stall_timeout.as_secs(),
                },
                Interruption::EndedEarly => Error::SizeMismatch {
                    what: self.what(),
                    expected: self.descriptor.size,
                    actual: self.received,
                },
            };
            self.client.mirror_failed(&self.registry, &endpoint, &err);
            self.report(Phase::Resumed);
            return self.open().await;
        }
        self.resumes += 1;
        let host = self.endpoint.as_ref().map_or(&self.registry, |e| &e.key);
        self.client.inner.usage.retry(host);
        let config = &self.client.inner.config;
        if self.resumes > config.max_resumes {
            return Err(match interruption {
                Interruption::Transport(source) => Error::Network {
                    registry: self.registry.clone(),
                    attempts: self.resumes,
                    source,
                },
                Interruption::Stalled => Error::Stalled {
                    registry: self.registry.clone(),
                    what: self.what(),
                    seconds: config.stall_timeout.as_secs(),
                },
                Interruption::EndedEarly => Error::SizeMismatch {
                    what: self.what(),
                    expected: self.descriptor.size,
                    actual: self.received,
                },
            });
        }
        let reason = match &interruption {
            Interruption::Transport(err) => err.to_string(),
            Interruption::Stalled => "stalled".to_owned(),
            Interruption::EndedEarly => "body ended early".to_owned(),
        };
        tracing::warn!(
            registry = %self.registry,
            digest = %self.descriptor.digest,
            at = self.received,
            resume = self.resumes,
            %reason,
            "blob download interrupted; resuming"
        );
        tokio::time::sleep(config.retry.backoff(self.resumes)).await;
        self.report(Phase::Resumed);
        self.open().await
    }

    /// Sends the GET for the bytes from `received` on, to the first host
    /// that answers it well.
    async fn open(&mut self) -> Result<()> {
        let client = self.client.clone();
        let registry = self.registry.clone();
        let mut last = None;
        for endpoint in &client.endpoints(&registry, Capability::Pull)? {
            match self.open_at(endpoint).await {
                Ok(()) => return Ok(()),
                Err(err) => last = Some(client.next_host_after(&registry, endpoint, err)?),
            }
        }
        Err(last.expect("because endpoints() is never empty"))
    }

    async fn open_at(&mut self, endpoint: &Endpoint) -> Result<()> {
        let client = self.client.clone();
        let url = endpoint.url(
            &self.repository,
            &format!("blobs/{}", self.descriptor.digest),
        )?;
        let mut headers = HeaderMap::new();
        if self.received > 0 {
            let range = format!("bytes={}-", self.received);
            headers.insert(
                RANGE,
                HeaderValue::from_str(&range).expect("because the range is ASCII"),
            );
        }
        let request = Request {
            method: Method::GET,
            registry: &endpoint.key,
            url,
            scope: Scope::pull(&self.repository),
            extra_scopes: Vec::new(),
            headers,
            body: None,
        };
        let response = client.send(&request).await?;
        match response.status().as_u16() {
            200 => {
                // Whole body: from byte 0, whatever we asked.
                if let Some(length) = response.content_length()
                    && length != self.descriptor.size
                {
                    return Err(Error::SizeMismatch {
                        what: self.what(),
                        expected: self.descriptor.size,
                        actual: length,
                    });
                }
                self.skip = self.received;
            }
            206 => {
                let start = response
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(content_range_start);
                if start != Some(self.received) {
                    return Err(Error::Protocol {
                        registry: self.registry.clone(),
                        reason: format!(
                            "asked for {} from byte {}, got a partial answer starting at {start:?}",
                            self.what(),
                            self.received
                        ),
                    });
                }
                self.skip = 0;
            }
            404 => {
                return Err(Error::NotFound {
                    registry: self.registry.clone(),
                    what: format!("blob {} in {}", self.descriptor.digest, self.repository),
                });
            }
            _ => return Err(status_error(&request, response).await),
        }
        if endpoint.mirror.is_some() {
            refuse_a_page(&endpoint.key, &response, &self.what())?;
            self.mirror_used = Some(endpoint.clone());
        }
        self.endpoint = Some(endpoint.clone());
        self.body = Some(response.bytes_stream().boxed());
        Ok(())
    }

    fn report(&self, phase: Phase) {
        if let Some(progress) = &self.client.progress {
            progress.report(&Progress {
                subject: Subject::Blob(self.descriptor.digest.clone()),
                phase,
                done: self.received,
                total: self.descriptor.size,
            });
        }
    }

    fn what(&self) -> String {
        format!(
            "blob {} of {}/{}",
            self.descriptor.digest, self.registry, self.repository
        )
    }
}

/// The next item of a body, or `Err(())` when nothing arrives within
/// `timeout` (reqwest's read timeout covers this too; this also catches a
/// server that trickles nothing between chunks at the HTTP layer).
async fn next_with_stall_timeout(
    body: &mut BoxStream<'static, reqwest::Result<Bytes>>,
    timeout: std::time::Duration,
) -> std::result::Result<Option<reqwest::Result<Bytes>>, ()> {
    tokio::time::timeout(timeout, body.next())
        .await
        .map_err(|_| ())
}

/// A mirror answering a blob request with an HTML page (a portal, a login
/// form, an error page with status 200) is failed before any byte is used.
fn refuse_a_page(host: &str, response: &reqwest::Response, what: &str) -> Result<()> {
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("text/html") {
        return Err(Error::Protocol {
            registry: host.to_owned(),
            reason: format!("answered an HTML page ({content_type}) for {what}"),
        });
    }
    Ok(())
}

/// The first byte position of `Content-Range: bytes START-END/TOTAL`.
fn content_range_start(value: &str) -> Option<u64> {
    let range = value.trim().strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::content_range_start;

    #[test]
    fn content_ranges() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes 0-0/1"), Some(0));
        assert_eq!(content_range_start("bytes */200"), None);
        assert_eq!(content_range_start("items 1-2/3"), None);
    }
}
