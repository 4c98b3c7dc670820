//! The harness itself: both registries that `cargo xtask test` starts are
//! real distribution registries, reachable over HTTP, in the right mode.

use cachectl_tests::registries;
use reqwest::StatusCode;
use reqwest::blocking::Response;

fn get_v2(addr: &str, basic: Option<(&str, &str)>) -> Response {
    let client = cachectl_tests::blocking_client();
    let mut request = client.get(format!("http://{addr}/v2/"));
    if let Some((user, password)) = basic {
        request = request.basic_auth(user, Some(password));
    }
    request
        .send()
        .unwrap_or_else(|err| panic!("GET http://{addr}/v2/ failed: {err}"))
}

fn api_version(response: &Response) -> Option<&str> {
    response
        .headers()
        .get("docker-distribution-api-version")
        .and_then(|v| v.to_str().ok())
}

#[test]
fn anonymous_registry_answers_v2_with_200() {
    let registries = registries();
    let response = get_v2(&registries.plain, None);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(api_version(&response), Some("registry/2.0"));
}

#[test]
fn basic_auth_registry_challenges_with_basic() {
    let registries = registries();
    let response = get_v2(&registries.basic, None);
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response
        .headers()
        .get("www-authenticate")
        .expect("a 401 carries a WWW-Authenticate challenge")
        .to_str()
        .expect("the challenge is ASCII");
    assert!(
        challenge.starts_with("Basic "),
        "expected a Basic challenge, got {challenge:?}"
    );
    assert!(
        challenge.contains("realm="),
        "challenge without realm: {challenge:?}"
    );
}

#[test]
fn basic_auth_registry_accepts_its_credentials_and_refuses_others() {
    let registries = registries();
    let ok = get_v2(
        &registries.basic,
        Some((&registries.basic_user, &registries.basic_password)),
    );
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(api_version(&ok), Some("registry/2.0"));

    let wrong = get_v2(
        &registries.basic,
        Some((&registries.basic_user, "not-the-password")),
    );
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn the_two_registries_are_distinct_servers() {
    let registries = registries();
    assert_ne!(registries.plain, registries.basic);
    for addr in [&registries.plain, &registries.basic] {
        assert!(addr.starts_with("127.0.0.1:"), "not on loopback: {addr}");
    }
}
