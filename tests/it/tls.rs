//! TLS: a registry served over HTTPS with a certificate from a private CA
//! (made per run). A client given that CA for the registry reaches it; a
//! client without it refuses the connection. rustls only, no OpenSSL.

use cachectl_tests::unique;
use ocidist::credentials::StaticCredentials;
use ocidist::{BlobSource, Client, ClientConfig, Descriptor, Error};
use ociref::{Digest, Reference};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) const HOST: &str = "registry.cachectl.test";

/// A CNCF registry serving HTTPS on a free loopback port, killed on drop.
pub(crate) struct TlsRegistry {
    child: Child,
    addr: SocketAddr,
    ca_pem: String,
    basic: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl TlsRegistry {
    pub(crate) fn start() -> TlsRegistry {
        TlsRegistry::start_with(None)
    }

    /// With `Some((user, password))`, the registry requires them (htpasswd
    /// Basic auth) and [`TlsRegistry::client_with`] clients carry them.
    pub(crate) fn start_with(basic: Option<(&str, &str)>) -> TlsRegistry {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cachectl test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
        let key = rcgen::KeyPair::generate().expect("server key");
        let params = rcgen::CertificateParams::new(vec![HOST.to_owned()]).expect("server params");
        let cert = params.signed_by(&key, &ca).expect("server certificate");
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).expect("cert written");
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).expect("key written");
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {data}\n\
             http:\n  addr: {addr}\n  tls:\n    certificate: {dir}/cert.pem\n    key: {dir}/key.pem\n",
            data = dir.path().join("data").display(),
            dir = dir.path().display(),
        );
        let auth = match basic {
            None => String::new(),
            Some((user, password)) => {
                let hash = bcrypt::hash(password, 4).expect("bcrypt");
                let htpasswd = dir.path().join("htpasswd");
                std::fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("htpasswd written");
                format!(
                    "auth:\n  htpasswd:\n    realm: cachectl-tls\n    path: {}\n",
                    htpasswd.display()
                )
            }
        };
        std::fs::write(dir.path().join("config.yml"), config + &auth).expect("config written");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts (`cargo xtask test` installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "TLS registry never listened on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsRegistry {
            child,
            addr,
            ca_pem: ca.pem(),
            basic: basic.map(|(user, password)| (user.to_owned(), password.to_owned())),
            _dir: dir,
        }
    }

    /// The registry's name: a host name that resolves, through the client's
    /// `resolve` setting, to the loopback port.
    /// Where it listens on 127.0.0.1.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn name(&self) -> String {
        format!("{HOST}:{}", self.addr.port())
    }

    /// The private CA that signed the registry's certificate (PEM).
    pub(crate) fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    fn client(&self, trust_ca: bool) -> Client {
        self.client_with(trust_ca, ClientConfig::default())
    }

    /// A client of this registry built from `config` (proxies, retries).
    pub(crate) fn client_with(&self, trust_ca: bool, mut config: ClientConfig) -> Client {
        config.resolve.push((HOST.to_owned(), self.addr));
        if trust_ca {
            config
                .extra_ca_pem
                .push((self.name(), self.ca_pem.clone().into_bytes()));
        }
        let mut credentials = StaticCredentials::new();
        if let Some((user, password)) = &self.basic {
            credentials = credentials.with(
                &self.name(),
                ocidist::credentials::Credential::basic(user, password.as_str()),
            );
        }
        Client::new(config, Arc::new(credentials)).expect("client")
    }
}

impl Drop for TlsRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn an_extra_ca_is_trusted_for_its_registry_only() {
    let registry = TlsRegistry::start();
    let target: Reference = format!("{}/{}:v1", registry.name(), unique("tls/blob"))
        .parse()
        .expect("valid");
    let blob = bytes::Bytes::from_static(b"over TLS");
    let descriptor = Descriptor {
        media_type: "application/octet-stream".into(),
        digest: Digest::sha256_of(&blob),
        size: blob.len() as u64,
    };

    let trusting = registry.client(true);
    let uploaded = trusting
        .push_blob(&target, &descriptor, BlobSource::Bytes(blob.clone()))
        .await
        .expect("push over TLS with the extra CA");
    assert!(uploaded);
    let back = trusting
        .blob_bytes(&target, &descriptor, 1024)
        .await
        .expect("pull over TLS");
    assert_eq!(back, blob);

    let strict = registry.client(false);
    let err = strict
        .blob_exists(&target, &descriptor.digest)
        .await
        .expect_err("an unknown CA is refused");
    assert!(matches!(err, Error::Network { .. }), "{err:?}");
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        chain.push_str(&format!(" / {cause}"));
        source = cause.source();
    }
    assert!(
        chain.to_ascii_lowercase().contains("certificate"),
        "{chain}"
    );
}
