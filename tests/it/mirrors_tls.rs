//! A mirror over HTTPS with a certificate from a private CA (the TLS
//! registry of `tls.rs`, holding a copy of the image): its `hosts.toml`
//! settings decide whether it is trusted. With `ca` (a path relative to
//! the file) or `skip_verify` the pull comes from the mirror; without
//! either the mirror is skipped for its certificate and the origin serves.

use crate::mirrors::pull_and_verify;
use crate::store::{noise, push_image};
use crate::tls::{HOST, TlsRegistry};
use cachectl_tests::fault_proxy::FaultProxy;
use cachectl_tests::{registries, unique};
use ocidist::credentials::StaticCredentials;
use ocidist::{Client, ClientConfig, HostsConfig};
use ociref::Reference;
use std::sync::Arc;

/// A client whose hosts directory gives `origin` the TLS mirror, with
/// `settings` added to the mirror's table (and `ca.pem` beside the file).
fn client(origin: &str, mirror: &TlsRegistry, settings: &str) -> (Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let namespace = dir.path().join(origin);
    std::fs::create_dir_all(&namespace).expect("namespace");
    std::fs::write(namespace.join("ca.pem"), mirror.ca_pem()).expect("ca.pem");
    std::fs::write(
        namespace.join("hosts.toml"),
        format!(
            "[host.\"https://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n{settings}",
            mirror.name()
        ),
    )
    .expect("hosts.toml");
    let mut config = ClientConfig::default();
    config.hosts = HostsConfig::load(dir.path()).expect("hosts directory reads");
    config.resolve.push((HOST.to_owned(), mirror.addr()));
    config.retry = ocidist::RetryPolicy::none();
    let client = Client::new(config, Arc::new(StaticCredentials::new())).expect("client");
    (client, dir)
}

#[tokio::test]
async fn an_https_mirror_is_trusted_through_its_ca_or_skip_verify_only() {
    let plain = registries().plain;
    let origin = FaultProxy::start(&plain, Vec::new());
    let mirror = TlsRegistry::start();
    let repository = unique("mirrors/tls");
    let layers = vec![noise(17, 64 * 1024)];
    let pusher =
        Client::new(ClientConfig::default(), Arc::new(StaticCredentials::new())).expect("client");
    let at_origin: Reference = format!("{plain}/{repository}:v1").parse().expect("valid");
    push_image(&pusher, &at_origin, &repository, &layers).await;
    let at_mirror: Reference = format!("{}/{repository}:v1", mirror.name())
        .parse()
        .expect("valid");
    let (mirror_pusher, _) = client("unused.example", &mirror, "  ca = \"ca.pem\"\n");
    push_image(&mirror_pusher, &at_mirror, &repository, &layers).await;
    let reference: Reference = format!("{}/{repository}:v1", origin.addr())
        .parse()
        .expect("valid");

    for settings in ["  ca = \"ca.pem\"\n", "  skip_verify = true\n"] {
        let (client, _dir) = client(&origin.addr(), &mirror, settings);
        pull_and_verify(&client, &reference).await;
        assert_eq!(client.skipped_mirrors(), Vec::new(), "{settings}");
    }
    assert_eq!(
        origin.requests().len(),
        0,
        "the trusted mirror served everything"
    );

    let (client, _dir) = client(&origin.addr(), &mirror, "");
    pull_and_verify(&client, &reference).await;
    let skipped = client.skipped_mirrors();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(
        skipped[0].reason.to_lowercase().contains("certificate"),
        "{skipped:?}"
    );
    assert!(origin.count("GET", "/blobs/") >= 2, "the origin served");
}
