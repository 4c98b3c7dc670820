//! Credentials never reach logs, errors or `Debug` output: a full push and
//! pull through Basic and token auth with every `tracing` event captured at
//! TRACE level, including reqwest's and hyper's, and then searched.

use bytes::Bytes;
use cachectl_tests::{registries, unique};
use ocidist::credentials::{Credential, StaticCredentials};
use ocidist::{BlobSource, Client, ClientConfig, Descriptor};
use ociref::{Digest, Reference};
use std::sync::{Arc, Mutex};

/// A `tracing` writer that appends to a shared buffer.
#[derive(Clone, Default)]
pub(crate) struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    /// Captures every `tracing` event of this thread, TRACE level
    /// included, until the guard is dropped.
    pub(crate) fn trace_this_thread() -> (Capture, tracing::subscriber::DefaultGuard) {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer({
                let capture = capture.clone();
                move || capture.clone()
            })
            .with_ansi(false)
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        (capture, guard)
    }

    /// Everything captured so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("capture lock")).into_owned()
    }
}

fn client_for(registry: &str, user: &str, password: &str) -> Client {
    let credentials =
        StaticCredentials::default().with(registry, Credential::basic(user, password));
    Client::new(ClientConfig::default(), Arc::new(credentials)).expect("client builds")
}

async fn push_and_pull(client: &Client, target: &Reference) -> Result<(), ocidist::Error> {
    let layer = Bytes::from_static(b"secret-free layer bytes");
    let config = Bytes::from_static(br#"{"architecture":"amd64","os":"linux"}"#);
    let describe = |media_type: &str, bytes: &Bytes| Descriptor {
        media_type: media_type.into(),
        digest: Digest::sha256_of(bytes),
        size: bytes.len() as u64,
    };
    let layer_d = describe("application/vnd.oci.image.layer.v1.tar", &layer);
    let config_d = describe("application/vnd.oci.image.config.v1+json", &config);
    client
        .push_blob(target, &layer_d, BlobSource::Bytes(layer.clone()))
        .await?;
    client
        .push_blob(target, &config_d, BlobSource::Bytes(config.clone()))
        .await?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": ocidist::OCI_MANIFEST,
        "config": {"mediaType": config_d.media_type, "digest": config_d.digest.to_string(), "size": config_d.size},
        "layers": [{"mediaType": layer_d.media_type, "digest": layer_d.digest.to_string(), "size": layer_d.size}],
    });
    let manifest = Bytes::from(serde_json::to_vec(&manifest).expect("json"));
    client
        .push_manifest(target, manifest, ocidist::OCI_MANIFEST)
        .await?;
    client.resolve(target).await?;
    client.manifest(target).await?;
    client.blob_bytes(target, &layer_d, 1024).await?;
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn no_secret_in_trace_logs_errors_or_debug() {
    let registries = registries();
    let (capture, _guard) = Capture::trace_this_thread();

    let basic = client_for(
        &registries.basic,
        &registries.basic_user,
        &registries.basic_password,
    );
    let target = format!("{}/{}:v1", registries.basic, unique("secrets/basic"));
    push_and_pull(&basic, &target.parse().expect("valid"))
        .await
        .expect("basic flow");

    let token = client_for(
        &registries.token,
        &registries.token_user,
        &registries.token_password,
    );
    let target = format!("{}/{}:v1", registries.token, unique("secrets/token"));
    push_and_pull(&token, &target.parse().expect("valid"))
        .await
        .expect("token flow");

    let wrong_password = "wrong-but-still-secret-7f3a";
    let refused = client_for(&registries.basic, &registries.basic_user, wrong_password);
    let target: Reference = format!("{}/{}:v1", registries.basic, unique("secrets/refused"))
        .parse()
        .expect("valid");
    let err = push_and_pull(&refused, &target)
        .await
        .expect_err("wrong password is refused");
    let refused_token = client_for(&registries.token, &registries.token_user, wrong_password);
    let target: Reference = format!("{}/{}:v1", registries.token, unique("secrets/refused"))
        .parse()
        .expect("valid");
    let token_err = push_and_pull(&refused_token, &target)
        .await
        .expect_err("wrong password is refused");

    let logs = capture.text();
    assert!(logs.contains("TRACE"), "trace-level events were captured");
    let rendered = format!(
        "{logs}\n{err}\n{err:?}\n{token_err}\n{token_err:?}\n{basic:?}\n{token:?}\n{refused:?}"
    );
    for secret in [
        registries.basic_password.as_str(),
        registries.token_password.as_str(),
        wrong_password,
    ] {
        assert!(
            !rendered.contains(secret),
            "a password leaked into logs, errors or Debug output"
        );
    }
    // No Authorization value either: neither Basic credentials nor a JWT.
    assert!(
        !rendered.contains("Basic Y2FjaGVjdGw"),
        "Basic credentials leaked"
    );
    assert!(!rendered.contains("Bearer ey"), "a bearer token leaked");
    assert!(
        !rendered.to_ascii_lowercase().contains("authorization: "),
        "an Authorization header was logged"
    );
}
