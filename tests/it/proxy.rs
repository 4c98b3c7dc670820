//! Proxies: `ocidist` through a real forwarding proxy (Debian's squid,
//! started per test with its own configuration and access log), checking
//! from squid's log what the proxy saw: which requests, which headers.

use crate::secrets::Capture;
use crate::tls::{HOST, TlsRegistry};
use cachectl_tests::squid::{Logged, Squid};
use cachectl_tests::{registries, unique};
use ocidist::credentials::{Credential, Secret, StaticCredentials};
use ocidist::{BlobSource, Client, ClientConfig, Descriptor, Error, ErrorKind, ProxyConfig};
use ociref::{Digest, Reference};
use std::sync::Arc;

/// A made-up name squid resolves (through its hosts file) to 127.0.0.1.
const PLAIN_NAME: &str = "reg.cachectl.test";

fn client(proxy: ProxyConfig, credentials: StaticCredentials) -> Client {
    let mut config = ClientConfig::default();
    config.proxy = proxy;
    config.retry = ocidist::RetryPolicy::none();
    Client::new(config, Arc::new(credentials)).expect("client builds")
}

fn http_proxy(squid: &Squid) -> ProxyConfig {
    ProxyConfig::none()
        .with_http_proxy(&format!("http://{}", squid.addr()))
        .expect("valid proxy")
}

/// Pushes a unique blob to the anonymous registry (directly) and returns
/// a reference to its repository and its descriptor.
async fn pushed_blob(registry: &str, name: &str) -> (Reference, Descriptor, bytes::Bytes) {
    let reference: Reference = format!("{registry}/{}:v1", unique(name))
        .parse()
        .expect("valid reference");
    let blob = bytes::Bytes::from(format!("proxied blob {}", unique(name)));
    let descriptor = Descriptor {
        media_type: "application/octet-stream".into(),
        digest: Digest::sha256_of(&blob),
        size: blob.len() as u64,
    };
    client(ProxyConfig::none(), StaticCredentials::new())
        .push_blob(&reference, &descriptor, BlobSource::Bytes(blob.clone()))
        .await
        .expect("direct push");
    (reference, descriptor, blob)
}

#[tokio::test]
async fn a_plain_http_pull_goes_through_squid() {
    let squid = Squid::start(&[]);
    let plain = registries().plain;
    let (reference, descriptor, blob) = pushed_blob(&plain, "proxy/through").await;

    let proxied = client(http_proxy(&squid), StaticCredentials::new());
    let back = proxied
        .blob_bytes(&reference, &descriptor, 1024)
        .await
        .expect("pull through squid");
    assert_eq!(back, blob);
    let url = format!(
        "http://{plain}/v2/{}/blobs/{}",
        reference.repository(),
        descriptor.digest
    );
    let log = squid.wait_for(|line| line.url == url);
    let line = log.iter().find(|line| line.url == url).expect("logged");
    assert_eq!((line.method.as_str(), line.status), ("GET", 200), "{log:?}");
}

#[tokio::test]
async fn no_proxy_entries_bypass_squid() {
    let squid = Squid::start(&[(PLAIN_NAME, "127.0.0.1")]);
    let plain = registries().plain;
    let port = plain.rsplit(':').next().expect("host:port").to_owned();
    let (reference, descriptor, blob) = pushed_blob(&plain, "proxy/bypass").await;
    let named: Reference = format!("{PLAIN_NAME}:{port}/{}:v1", reference.repository())
        .parse()
        .expect("valid reference");
    // Each entry form, and the reference it must let through directly.
    let cases = [
        ("127.0.0.1".to_owned(), &reference),
        ("127.0.0.0/8".to_owned(), &reference),
        (format!("127.0.0.1:{port}"), &reference),
        ("cachectl.test".to_owned(), &named),
        (format!(".CACHECTL.test:{port}"), &named),
        ("*".to_owned(), &reference),
    ];
    for (entry, target) in cases {
        let mut config = ClientConfig::default();
        config.proxy = http_proxy(&squid).with_no_proxy(&format!("other.example, {entry}"));
        config
            .insecure_registries
            .push(target.registry().to_owned());
        config.resolve.push((
            PLAIN_NAME.to_owned(),
            plain.parse().expect("socket address"),
        ));
        let direct = Client::new(config, Arc::new(StaticCredentials::new())).expect("client");
        let back = direct
            .blob_bytes(target, &descriptor, 1024)
            .await
            .unwrap_or_else(|err| panic!("{entry}: {}", cachectl_tests::error_chain(&err)));
        assert_eq!(back, blob, "{entry}");
    }
    // An entry for another port does not bypass: this request is the
    // marker that squid's log is up to date, and the only line in it.
    let marker = client(
        http_proxy(&squid).with_no_proxy("127.0.0.1:1, [::1]"),
        StaticCredentials::new(),
    );
    marker
        .blob_bytes(&reference, &descriptor, 1024)
        .await
        .expect("pull through squid");
    let log = squid.wait_for(|line| line.status == 200);
    assert_eq!(log.len(), 1, "only the marker reached squid: {log:?}");
}

#[tokio::test]
async fn registry_credentials_are_never_forwarded_in_clear_through_the_proxy() {
    let squid = Squid::start(&[]);
    let registries = registries();
    let secret_words = [
        registries.basic_password.clone(),
        registries.token_password.clone(),
    ];
    for (registry, user, password) in [
        (
            &registries.basic,
            &registries.basic_user,
            &registries.basic_password,
        ),
        (
            &registries.token,
            &registries.token_user,
            &registries.token_password,
        ),
    ] {
        let credentials = StaticCredentials::default().with(
            registry,
            Credential::Basic {
                username: user.clone(),
                password: Secret::new(password.clone()),
            },
        );
        let proxied = client(http_proxy(&squid), credentials);
        let reference: Reference = format!("{registry}/{}:v1", unique("proxy/secret"))
            .parse()
            .expect("valid reference");
        let err = proxied
            .resolve(&reference)
            .await
            .expect_err("credentials are not sent in clear through a proxy");
        assert!(matches!(err, Error::CleartextProxy { .. }), "{err:?}");
        assert_eq!(err.kind(), ErrorKind::Usage);
        let text = cachectl_tests::error_chain(&err);
        assert!(text.contains(&squid.addr().to_string()), "{text}");
        assert!(!text.contains(password.as_str()), "{text}");
    }
    // Without credentials, an anonymous token is fetched (through squid,
    // nothing secret in that request) but not sent to the registry either.
    let anonymous = client(http_proxy(&squid), StaticCredentials::new());
    let public: Reference = format!("{}/public/{}:v1", registries.token, unique("proxy"))
        .parse()
        .expect("valid reference");
    let err = anonymous
        .resolve(&public)
        .await
        .expect_err("no token is sent in clear through a proxy");
    assert!(matches!(err, Error::CleartextProxy { .. }), "{err:?}");
    // Squid saw the first requests to the registries (answered 401) and
    // the anonymous token request, never an `Authorization`.
    let issuer = format!("http://{}/token", registries.token_issuer);
    let log = squid.wait_for(|line| line.url.starts_with(&issuer));
    for registry in [&registries.basic, &registries.token] {
        assert!(
            log.iter().any(|l| l.url.contains(registry.as_str())),
            "{log:?}"
        );
    }
    for line in &log {
        assert_eq!(line.authorization, "-", "{log:?}");
        let expected = if line.url.starts_with(&issuer) {
            200
        } else {
            401
        };
        assert_eq!(line.status, expected, "{log:?}");
    }
    let text = squid.log_text();
    assert!(!text.contains("Bearer"), "{text}");
    for word in &secret_words {
        assert!(!text.contains(word.as_str()), "{text}");
    }
}

/// The HTTPS registry's blob, pushed directly.
async fn pushed_tls_blob(registry: &TlsRegistry) -> (Reference, Descriptor) {
    let reference: Reference = format!("{}/{}:v1", registry.name(), unique("proxy/tls"))
        .parse()
        .expect("valid");
    let blob = bytes::Bytes::from(format!("tunnelled {}", unique("blob")));
    let descriptor = Descriptor {
        media_type: "application/octet-stream".into(),
        digest: Digest::sha256_of(&blob),
        size: blob.len() as u64,
    };
    registry
        .client_with(true, ClientConfig::default())
        .push_blob(&reference, &descriptor, BlobSource::Bytes(blob))
        .await
        .expect("direct push over TLS");
    (reference, descriptor)
}

fn https_client(registry: &TlsRegistry, proxy_url: &str) -> Client {
    let mut config = ClientConfig::default();
    config.proxy = ProxyConfig::none()
        .with_https_proxy(proxy_url)
        .expect("valid proxy");
    config.retry = ocidist::RetryPolicy::none();
    registry.client_with(true, config)
}

// Multi-threaded: `wait_for` blocks its thread while the closed client's
// connection tasks run on another, so squid sees the tunnel close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_pull_tunnels_through_squid_with_the_proxy_credentials() {
    let registry = TlsRegistry::start();
    let squid = Squid::start_with_auth(&[(HOST, "127.0.0.1")], "proxyuser", "pr0xy:p@ss");
    let (reference, descriptor) = pushed_tls_blob(&registry).await;
    let addr = squid.addr();

    // Percent-encoded in the URL, decoded before it is sent.
    let tunnelled = https_client(
        &registry,
        &format!("http://proxyuser:pr0xy%3Ap%40ss@{addr}"),
    );
    tunnelled
        .blob_bytes(&reference, &descriptor, 1024)
        .await
        .unwrap_or_else(|err| {
            panic!(
                "pull through the tunnel: {}",
                cachectl_tests::error_chain(&err)
            )
        });
    drop(tunnelled); // squid logs a tunnel when it closes
    let log = squid.wait_for(|line| line.status == 200);
    let expected = format!("Basic {}", base64_of("proxyuser:pr0xy:p@ss"));
    for line in &log {
        // The proxy sees CONNECT host:port and its own credentials only.
        assert_eq!(line.method, "CONNECT", "{log:?}");
        assert_eq!(line.url, registry.name(), "{log:?}");
        assert_eq!(line.authorization, "-", "{log:?}");
        assert_eq!(line.proxy_authorization, expected, "{log:?}");
        assert_eq!(line.user, "proxyuser", "{log:?}");
    }

    for (url, says) in [
        (
            format!("http://proxyuser:wrong-secret@{addr}"),
            "refused the credentials",
        ),
        (format!("http://{addr}"), "requires credentials"),
    ] {
        let err = https_client(&registry, &url)
            .blob_bytes(&reference, &descriptor, 1024)
            .await
            .expect_err("the proxy refuses");
        assert!(matches!(err, Error::ProxyAuth { .. }), "{err:?}");
        assert_eq!(err.kind(), ErrorKind::Auth);
        let text = cachectl_tests::error_chain(&err);
        assert!(
            text.contains(&addr.to_string()) && text.contains(says),
            "{text}"
        );
        assert!(!text.contains("wrong-secret"), "{text}");
        assert!(!format!("{err:?}").contains("wrong-secret"), "{err:?}");
    }
    let log = squid.wait_for(|line| line.status == 407);
    assert!(log.iter().any(|l: &Logged| l.status == 407), "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_https_registry_is_reached_through_the_tunnel_only() {
    let password = "registry-secret-3b8e";
    let registry = TlsRegistry::start_with(Some(("reguser", password)));
    let squid = Squid::start(&[(HOST, "127.0.0.1")]);
    let (reference, descriptor) = pushed_tls_blob(&registry).await;

    // The registry does require the credentials.
    let mut anonymous = ClientConfig::default();
    anonymous.resolve.push((HOST.to_owned(), registry.addr()));
    anonymous.retry = ocidist::RetryPolicy::none();
    let err = Client::new(anonymous, Arc::new(StaticCredentials::new()))
        .expect("client")
        .blob_bytes(&reference, &descriptor, 1024)
        .await
        .expect_err("no credentials, no blob");
    assert!(
        matches!(err, Error::Unauthorized { .. } | Error::Network { .. }),
        "{err:?}"
    );

    let tunnelled = https_client(&registry, &format!("http://{}", squid.addr()));
    tunnelled
        .blob_bytes(&reference, &descriptor, 1024)
        .await
        .unwrap_or_else(|err| {
            panic!(
                "authenticated pull through the tunnel: {}",
                cachectl_tests::error_chain(&err)
            )
        });
    drop(tunnelled); // squid logs a tunnel when it closes
    let log = squid.wait_for(|line| line.method == "CONNECT" && line.status == 200);
    for line in &log {
        assert_eq!(
            (
                line.method.as_str(),
                line.url.as_str(),
                line.authorization.as_str()
            ),
            ("CONNECT", registry.name().as_str(), "-"),
            "{log:?}"
        );
    }
    let text = squid.log_text();
    assert!(!text.contains(password), "{text}");
    assert!(
        !text.contains(&base64_of(&format!("reguser:{password}"))),
        "{text}"
    );
}

#[tokio::test]
async fn a_proxy_that_is_down_is_a_network_error_naming_it() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let plain = registries().plain;
    let (reference, descriptor, _) = pushed_blob(&plain, "proxy/down").await;
    let proxied = client(
        ProxyConfig::none()
            .with_http_proxy(&format!("http://user:hunter2@{dead}"))
            .expect("valid"),
        StaticCredentials::new(),
    );
    let err = proxied
        .blob_bytes(&reference, &descriptor, 1024)
        .await
        .expect_err("nothing listens there");
    assert!(matches!(err, Error::ProxyNetwork { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Network);
    let text = cachectl_tests::error_chain(&err);
    assert!(
        text.contains(&dead.to_string()) && text.contains(&plain),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}

fn base64_of(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Pulls through squid with the right proxy password (forwarded and
/// tunnelled) and with a wrong one (both refused); returns the errors and
/// the clients' `Debug`, rendered.
async fn pulls_with_proxy_passwords(
    registry: &TlsRegistry,
    squid: &Squid,
    right: &str,
    wrong: &str,
) -> String {
    let addr = squid.addr();
    let (reference, descriptor, _) = pushed_blob(&registries().plain, "proxy/secrets").await;
    let (tls_reference, tls_descriptor) = pushed_tls_blob(registry).await;
    let url = format!("http://proxyuser:{right}@{addr}");
    let forwarded = client(
        ProxyConfig::none().with_http_proxy(&url).expect("valid"),
        StaticCredentials::new(),
    );
    forwarded
        .blob_bytes(&reference, &descriptor, 1024)
        .await
        .expect("forwarded through squid");
    let tunnelled = https_client(registry, &url);
    tunnelled
        .blob_bytes(&tls_reference, &tls_descriptor, 1024)
        .await
        .expect("tunnelled through squid");
    let wrong_url = format!("http://proxyuser:{wrong}@{addr}");
    let refused = client(
        ProxyConfig::none()
            .with_http_proxy(&wrong_url)
            .expect("valid"),
        StaticCredentials::new(),
    );
    let forward_err = refused
        .blob_bytes(&reference, &descriptor, 1024)
        .await
        .expect_err("wrong password");
    assert!(
        matches!(forward_err, Error::ProxyAuth { .. }),
        "{forward_err:?}"
    );
    let tunnel_err = https_client(registry, &wrong_url)
        .blob_bytes(&tls_reference, &tls_descriptor, 1024)
        .await
        .expect_err("wrong password");
    assert!(
        matches!(tunnel_err, Error::ProxyAuth { .. }),
        "{tunnel_err:?}"
    );
    format!(
        "{}\n{forward_err:?}\n{}\n{tunnel_err:?}\n{forwarded:?}\n{tunnelled:?}\n{refused:?}",
        cachectl_tests::error_chain(&forward_err),
        cachectl_tests::error_chain(&tunnel_err),
    )
}

#[tokio::test(flavor = "current_thread")]
async fn proxy_credentials_never_reach_logs_errors_or_debug() {
    let (capture, _guard) = Capture::trace_this_thread();
    let registry = TlsRegistry::start();
    let right = "proxy-secret-91c2";
    let wrong = "wrong-proxy-secret-5d7e";
    let squid = Squid::start_with_auth(&[(HOST, "127.0.0.1")], "proxyuser", right);
    let logs = || capture.text();
    let mut rendered = String::new();
    // The global level filter is shared with the other tests of this
    // binary, which run on other threads without a subscriber; a rebuild
    // racing with ours can leave it off for a while: run again then.
    for _ in 0..3 {
        tracing::callsite::rebuild_interest_cache();
        rendered.push_str(&pulls_with_proxy_passwords(&registry, &squid, right, wrong).await);
        if logs().contains("TRACE") {
            break;
        }
    }
    let logs = logs();
    assert!(logs.contains("TRACE"), "no trace-level event was captured");
    let rendered = format!("{logs}\n{rendered}");
    for secret in [
        right.to_owned(),
        wrong.to_owned(),
        base64_of(&format!("proxyuser:{right}")),
        base64_of(&format!("proxyuser:{wrong}")),
    ] {
        assert!(
            !rendered.contains(&secret),
            "a proxy secret leaked: {secret}"
        );
    }
}
