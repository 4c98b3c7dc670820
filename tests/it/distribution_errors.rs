//! `ocidist` errors that must name the right failure: a redirect loop
//! (through the fault-injecting proxy) and a digest whose algorithm we
//! cannot verify (refused before any request).

use cachectl_tests::fault_proxy::{Fault, FaultProxy, Rule};
use cachectl_tests::registries;
use ocidist::credentials::StaticCredentials;
use ocidist::{Client, ClientConfig, Error};
use ociref::Reference;
use std::sync::Arc;

fn client() -> Client {
    Client::new(ClientConfig::default(), Arc::new(StaticCredentials::new())).expect("client builds")
}

#[tokio::test]
async fn a_redirect_loop_is_reported_as_too_many_redirects() {
    let path = "/v2/loop/image/manifests/v1";
    let proxy = FaultProxy::start(
        &registries().plain,
        vec![Rule::new(Fault::status(302, &[("Location", path)])).path_contains(path)],
    );
    let reference: Reference = format!("{}/loop/image:v1", proxy.addr())
        .parse()
        .expect("valid");
    let err = client()
        .manifest(&reference)
        .await
        .expect_err("the loop never ends in a manifest");
    let text = err.to_string();
    assert!(
        matches!(err, Error::TooManyRedirects { limit: 10, .. }),
        "{text}"
    );
    assert!(text.contains("too many redirects"), "{text}");
    assert!(
        text.contains(&format!("{}{path}", proxy.url())),
        "names the URL: {text}"
    );
    assert!(text.contains("10"), "names the limit: {text}");
    assert_eq!(err.kind(), ociref::ErrorKind::Other);
    assert_eq!(
        proxy.count("GET", path),
        11,
        "the request and ten redirects, no more"
    );
}

#[tokio::test]
async fn a_digest_algorithm_we_cannot_verify_is_refused_before_any_request() {
    let proxy = FaultProxy::start(&registries().plain, Vec::new());
    for digest in ["md5:d41d8cd98f00b204e9800998ecf8427e", "foo:bar"] {
        let reference: Reference = format!("{}/any/image@{digest}", proxy.addr())
            .parse()
            .expect("the OCI grammar allows it");
        let client = client();
        for result in [
            client.resolve(&reference).await.map(drop),
            client.manifest(&reference).await.map(drop),
        ] {
            let err = result.expect_err("refused");
            let algorithm = digest.split_once(':').expect("colon").0;
            assert!(
                matches!(&err, Error::UnsupportedDigest { algorithm: a, .. } if a == algorithm),
                "{err}"
            );
            assert_eq!(err.kind(), ociref::ErrorKind::Usage);
            assert!(err.to_string().contains(&reference.to_string()), "{err}");
        }
    }
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());
}
