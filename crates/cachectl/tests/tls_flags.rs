//! `--cert-dir` and `--tls-verify` (and their settings-file keys) against
//! the CNCF registry served over HTTPS on loopback, with certificates made
//! per run: one registry that requires a client certificate from a private
//! CA (`http.tls.clientcas`), one with a self-signed certificate. A
//! loopback registry is plain HTTP unless a hosts directory names its
//! `https://` server, which is what the tests do.

mod support;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{cachectl, cached_fixture, fixture, stderr, stdout};

/// A CNCF registry serving HTTPS on a free loopback port, killed on drop.
struct HttpsRegistry {
    child: Child,
    /// `127.0.0.1:PORT`.
    name: String,
    /// A hosts directory that says the registry speaks HTTPS.
    hosts_dir: PathBuf,
}

impl HttpsRegistry {
    /// Serves `cert_pem`/`key_pem`; with `client_ca`, requires a client
    /// certificate that CA signed.
    fn start(dir: &Path, cert_pem: &str, key_pem: &str, client_ca: Option<&str>) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let name = format!("127.0.0.1:{port}");
        std::fs::write(dir.join("server.pem"), cert_pem).expect("written");
        std::fs::write(dir.join("server.key"), key_pem).expect("written");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {data}\n\
             http:\n  addr: {name}\n  tls:\n    certificate: {dir}/server.pem\n    key: {dir}/server.key\n",
            data = dir.join("data").display(),
            dir = dir.display(),
        );
        if let Some(ca) = client_ca {
            std::fs::write(dir.join("client-ca.pem"), ca).expect("written");
            config.push_str(&format!(
                "    clientcas:\n      - {}/client-ca.pem\n",
                dir.display()
            ));
        }
        std::fs::write(dir.join("config.yml"), config).expect("written");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts (`cargo xtask test` installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&name).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry never listened on {name}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let hosts_dir = dir.join("hosts");
        std::fs::create_dir_all(hosts_dir.join(&name)).expect("namespace");
        std::fs::write(
            hosts_dir.join(&name).join("hosts.toml"),
            format!("server = \"https://{name}\"\n"),
        )
        .expect("hosts.toml");
        HttpsRegistry {
            child,
            name,
            hosts_dir,
        }
    }
}

impl Drop for HttpsRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private CA: its certificate (PEM) and issuer.
fn certificate_authority() -> (String, rcgen::CertifiedIssuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().expect("CA key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cachectl test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(params, key).expect("CA certificate");
    (ca.pem(), ca)
}

/// `cachectl` for `home` with the registry's hosts directory.
fn at(home: &Path, registry: &HttpsRegistry) -> assert_cmd::Command {
    let mut command = cachectl(home);
    command.arg("--hosts-dir").arg(&registry.hosts_dir);
    command
}

/// What the error says when the registry's certificate is not trusted.
const UNTRUSTED: &str = "hint: the registry's TLS certificate is not trusted here";
/// What the error says when the registry refused the client certificate.
const NO_CLIENT_CERT: &str =
    "hint: the registry refused the TLS handshake over the client certificate";

/// Asserts that `output` failed reaching the registry, with an error that
/// names it and says which certificate was the trouble (`hint`).
fn assert_tls_refused(output: &std::process::Output, registry: &str, hint: &str, what: &str) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(5), "{what}: {text}");
    assert!(text.contains(registry), "{what}: {text}");
    assert!(text.contains(hint), "{what}: {text}");
}

#[test]
fn cert_dir_reaches_a_registry_that_requires_a_client_certificate() {
    let home = tempfile::tempdir().expect("tempdir");
    let (ca_pem, ca) = certificate_authority();
    let server_key = rcgen::KeyPair::generate().expect("key");
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("params")
        .signed_by(&server_key, &ca)
        .expect("server certificate");
    let client_key = rcgen::KeyPair::generate().expect("key");
    let mut client_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    client_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cachectl test client");
    let client = client_params
        .signed_by(&client_key, &ca)
        .expect("client certificate");
    let registry_dir = home.path().join("registry");
    std::fs::create_dir_all(&registry_dir).expect("dir");
    let registry = HttpsRegistry::start(
        &registry_dir,
        &server.pem(),
        &server_key.serialize_pem(),
        Some(&ca_pem),
    );
    // docker's certs.d layout; the CA file may have any `.crt` name.
    let certs = home.path().join("certs");
    std::fs::create_dir_all(&certs).expect("dir");
    std::fs::write(certs.join("private-ca.crt"), &ca_pem).expect("written");
    let ca_only = home.path().join("ca-only");
    std::fs::create_dir_all(&ca_only).expect("dir");
    std::fs::write(ca_only.join("ca.crt"), &ca_pem).expect("written");
    std::fs::write(certs.join("client.cert"), client.pem()).expect("written");
    std::fs::write(certs.join("client.key"), client_key.serialize_pem()).expect("written");

    let (source, digest) = cached_fixture(home.path());
    let target = format!("{}/tls/client-cert:v1", registry.name);
    let pushed = at(home.path(), &registry)
        .arg("--cert-dir")
        .arg(&certs)
        .args(["push", &source, &target])
        .output()
        .expect("runs");
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    let found = at(home.path(), &registry)
        .arg("--cert-dir")
        .arg(&certs)
        .args(["digest", &target])
        .output()
        .expect("runs");
    assert!(found.status.success(), "{}", stderr(&found));
    assert_eq!(stdout(&found).trim(), digest);

    // The settings file's cert_dir does the same.
    let settings = home.path().join("settings.toml");
    std::fs::write(
        &settings,
        format!("cert_dir = {:?}\n", certs.display().to_string()),
    )
    .expect("written");
    let found = at(home.path(), &registry)
        .arg("--config")
        .arg(&settings)
        .args(["digest", &target])
        .output()
        .expect("runs");
    assert!(found.status.success(), "{}", stderr(&found));
    assert_eq!(stdout(&found).trim(), digest);

    // Without the directory the private CA is unknown: refused at once (a
    // certificate error is not retried, a retry cannot fix it).
    let refused = at(home.path(), &registry)
        .args(["digest", &target])
        .output()
        .expect("runs");
    assert_tls_refused(&refused, &registry.name, UNTRUSTED, "no --cert-dir");
    assert!(
        stderr(&refused).contains("after 1 attempt(s)"),
        "{}",
        stderr(&refused)
    );
    // With the CA but no client certificate the registry refuses the
    // handshake with an alert. (TLS 1.3: the alert comes after the
    // client's side of the handshake, and a request may first meet the
    // closed connection as `canceled`, which is retried: so the default
    // retries here.)
    let refused = at(home.path(), &registry)
        .arg("--cert-dir")
        .arg(&ca_only)
        .args(["digest", &target])
        .output()
        .expect("runs");
    assert_tls_refused(
        &refused,
        &registry.name,
        NO_CLIENT_CERT,
        "no client certificate",
    );
}

#[test]
fn tls_verify_false_reaches_a_self_signed_registry() {
    let home = tempfile::tempdir().expect("tempdir");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("self-signed certificate");
    let registry_dir = home.path().join("registry");
    std::fs::create_dir_all(&registry_dir).expect("dir");
    let registry = HttpsRegistry::start(&registry_dir, &cert.pem(), &key.serialize_pem(), None);
    let (source, digest) = cached_fixture(home.path());
    let target = format!("{}/tls/self-signed:v1", registry.name);

    let refused = at(home.path(), &registry)
        .args(["--retry-times", "0", "push", &source, &target])
        .output()
        .expect("runs");
    assert_tls_refused(&refused, &registry.name, UNTRUSTED, "verified");
    let refused = at(home.path(), &registry)
        .args(["--tls-verify=true", "--retry-times", "0", "digest", &target])
        .output()
        .expect("runs");
    assert_tls_refused(&refused, &registry.name, UNTRUSTED, "--tls-verify=true");

    // skopeo's spelling, before or after the command.
    let pushed = at(home.path(), &registry)
        .args(["--tls-verify=false", "push", &source, &target])
        .output()
        .expect("runs");
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    let found = at(home.path(), &registry)
        .args(["digest", &target, "--tls-verify=false"])
        .output()
        .expect("runs");
    assert!(found.status.success(), "{}", stderr(&found));
    assert_eq!(stdout(&found).trim(), digest);

    // The settings file's tls_verify, and the flag winning over it.
    let settings = home.path().join("settings.toml");
    std::fs::write(&settings, "tls_verify = false\n").expect("written");
    let found = at(home.path(), &registry)
        .arg("--config")
        .arg(&settings)
        .args(["digest", &target])
        .output()
        .expect("runs");
    assert!(found.status.success(), "{}", stderr(&found));
    assert_eq!(stdout(&found).trim(), digest);
    let refused = at(home.path(), &registry)
        .arg("--config")
        .arg(&settings)
        .args(["--tls-verify", "--retry-times", "0", "digest", &target])
        .output()
        .expect("runs");
    assert_tls_refused(&refused, &registry.name, UNTRUSTED, "flag over settings");
}

#[test]
fn a_missing_cert_dir_is_named() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, _) = fixture("small");
    let missing = home.path().join("no-such-certs");
    let output = cachectl(home.path())
        .arg("--cert-dir")
        .arg(&missing)
        .args(["digest", &reference])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains(&missing.display().to_string()), "{text}");
}
