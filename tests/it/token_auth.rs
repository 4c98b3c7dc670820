//! The registry in `auth: token` mode and the token issuer that `cargo xtask`
//! runs for it: the challenge, tokens for the test user and for anonymous
//! clients, pushing and pulling with them, and the issuer's request log.
//!
//! Repository names carry a per-process suffix, so reruns against the same
//! `cargo xtask registry` and tests running in parallel never see each
//! other's data or log entries.

use cachectl_tests::{TestRegistries, registries};
use reqwest::blocking::{Client, Response};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use std::sync::OnceLock;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn client() -> Client {
    cachectl_tests::blocking_client()
}

/// `name` made unique to this test process.
fn unique(name: &str) -> String {
    static SUFFIX: OnceLock<String> = OnceLock::new();
    let suffix = SUFFIX.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_nanos();
        format!("{}-{nanos}", std::process::id())
    });
    format!("{name}-{suffix}")
}

fn sha256_digest(bytes: &[u8]) -> String {
    ociref::Digest::sha256_of(bytes).to_string()
}

fn header<'r>(response: &'r Response, name: &str) -> Option<&'r str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The token endpoint with `service` and one `scope` parameter per scope,
/// percent-encoded as clients send them.
fn token_url(registries: &TestRegistries, service: &str, scopes: &[&str]) -> Url {
    let mut url = Url::parse(&registries.token_realm()).expect("the realm is a URL");
    url.query_pairs_mut().append_pair("service", service);
    for scope in scopes {
        url.query_pairs_mut().append_pair("scope", scope);
    }
    url
}

/// `GET /token` on the issuer with `scopes`, as the user when `basic` is given.
fn request_token(
    registries: &TestRegistries,
    scopes: &[&str],
    basic: Option<(&str, &str)>,
) -> Response {
    let url = token_url(registries, &registries.token_service, scopes);
    let mut request = client().get(url);
    if let Some((user, password)) = basic {
        request = request.basic_auth(user, Some(password));
    }
    request
        .send()
        .unwrap_or_else(|err| panic!("token request failed: {err}"))
}

/// A token for `scopes`: the test user's, or an anonymous one.
fn token(registries: &TestRegistries, scopes: &[&str], as_user: bool) -> String {
    let basic = as_user.then_some((
        registries.token_user.as_str(),
        registries.token_password.as_str(),
    ));
    let response = request_token(registries, scopes, basic);
    assert_eq!(response.status(), StatusCode::OK, "token for {scopes:?}");
    let body: Value = serde_json::from_str(&response.text().expect("a body")).expect("JSON");
    assert_eq!(body["token"], body["access_token"]);
    assert!(body["expires_in"].as_u64().is_some_and(|n| n > 0), "{body}");
    body["token"].as_str().expect("a token string").to_owned()
}

fn user_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

/// Monolithic blob upload: `POST .../blobs/uploads/`, then `PUT ?digest=`.
fn push_blob(registries: &TestRegistries, token: &str, repo: &str, bytes: &[u8]) -> String {
    let client = client();
    let started = client
        .post(format!(
            "http://{}/v2/{repo}/blobs/uploads/",
            registries.token
        ))
        .bearer_auth(token)
        .send()
        .expect("upload start");
    assert_eq!(
        started.status(),
        StatusCode::ACCEPTED,
        "starting an upload to {repo}"
    );
    let location = header(&started, "location").expect("an upload location");
    let location = if location.starts_with('/') {
        format!("http://{}{location}", registries.token)
    } else {
        location.to_owned()
    };
    let digest = sha256_digest(bytes);
    let separator = if location.contains('?') { '&' } else { '?' };
    let finished = client
        .put(format!("{location}{separator}digest={digest}"))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .expect("upload finish");
    assert_eq!(
        finished.status(),
        StatusCode::CREATED,
        "finishing an upload to {repo}"
    );
    assert_eq!(
        header(&finished, "docker-content-digest"),
        Some(digest.as_str())
    );
    digest
}

/// Pushes a config blob, a layer blob and an OCI manifest naming them under
/// `tag`; returns the manifest bytes.
fn push_image(registries: &TestRegistries, token: &str, repo: &str, tag: &str) -> Vec<u8> {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = format!("layer of {repo}").into_bytes();
    let config_digest = push_blob(registries, token, repo, config);
    let layer_digest = push_blob(registries, token, repo, &layer);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    })
    .to_string()
    .into_bytes();
    let response = client()
        .put(format!(
            "http://{}/v2/{repo}/manifests/{tag}",
            registries.token
        ))
        .bearer_auth(token)
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .expect("manifest push");
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "pushing {repo}:{tag}"
    );
    manifest
}

fn get_manifest(registries: &TestRegistries, token: &str, repo: &str, tag: &str) -> Response {
    client()
        .get(format!(
            "http://{}/v2/{repo}/manifests/{tag}",
            registries.token
        ))
        .bearer_auth(token)
        .header("accept", OCI_MANIFEST)
        .send()
        .expect("manifest request")
}

fn issuer_log(registries: &TestRegistries) -> (String, Vec<Value>) {
    let response = client()
        .get(registries.token_issuer_log_url())
        .send()
        .expect("issuer log request");
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().expect("a body");
    let entries = serde_json::from_str::<Value>(&text)
        .expect("the log is JSON")
        .as_array()
        .expect("the log is an array")
        .clone();
    (text, entries)
}

#[test]
fn anonymous_v2_gets_a_bearer_challenge_naming_the_issuer() {
    let registries = registries();
    let response = client()
        .get(format!("http://{}/v2/", registries.token))
        .send()
        .expect("GET /v2/");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&response, "docker-distribution-api-version"),
        Some("registry/2.0")
    );
    let expected = format!(
        "Bearer realm=\"{}\",service=\"{}\"",
        registries.token_realm(),
        registries.token_service
    );
    assert_eq!(
        header(&response, "www-authenticate"),
        Some(expected.as_str())
    );
}

#[test]
fn user_token_pushes_and_pulls_a_manifest() {
    let registries = registries();
    let repo = unique("x/y");
    let token = token(&registries, &[&user_scope(&repo)], true);
    let manifest = push_image(&registries, &token, &repo, "v1");

    let response = get_manifest(&registries, &token, &repo, "v1");
    assert_eq!(response.status(), StatusCode::OK);
    let digest = sha256_digest(&manifest);
    assert_eq!(
        header(&response, "docker-content-digest"),
        Some(digest.as_str())
    );
    assert_eq!(
        response.bytes().expect("a body").as_ref(),
        manifest.as_slice()
    );

    let by_digest = get_manifest(&registries, &token, &repo, &digest);
    assert_eq!(by_digest.status(), StatusCode::OK);
}

#[test]
fn anonymous_token_pulls_public_repositories_only() {
    let registries = registries();
    let private = unique("x/private");
    let public = unique("public/p");
    let user = token(
        &registries,
        &[&user_scope(&private), &user_scope(&public)],
        true,
    );
    let private_manifest = push_image(&registries, &user, &private, "v1");
    let public_manifest = push_image(&registries, &user, &public, "v1");
    assert!(!private_manifest.is_empty());

    let anonymous = token(&registries, &[&format!("repository:{private}:pull")], false);
    let refused = get_manifest(&registries, &anonymous, &private, "v1");
    assert!(
        matches!(
            refused.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ),
        "anonymous pull of {private} answered {}",
        refused.status()
    );

    let anonymous = token(&registries, &[&format!("repository:{public}:pull")], false);
    let pulled = get_manifest(&registries, &anonymous, &public, "v1");
    assert_eq!(pulled.status(), StatusCode::OK);
    assert_eq!(
        pulled.bytes().expect("a body").as_ref(),
        public_manifest.as_slice()
    );

    // Anonymous clients never get push, not even on public repositories.
    let anonymous = token(&registries, &[&user_scope(&public)], false);
    let upload = client()
        .post(format!(
            "http://{}/v2/{public}/blobs/uploads/",
            registries.token
        ))
        .bearer_auth(&anonymous)
        .send()
        .expect("upload start");
    assert_eq!(upload.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn wrong_password_is_refused_by_the_issuer() {
    let registries = registries();
    let scope = user_scope(&unique("x/wrong-password"));
    let response = request_token(
        &registries,
        &[&scope],
        Some((&registries.token_user, "not-the-password")),
    );
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body = response.text().expect("a body");
    assert!(
        !body.contains("\"token\""),
        "a token despite a wrong password: {body}"
    );
}

#[test]
fn issuer_log_records_scopes_and_account_but_no_password() {
    let registries = registries();
    let user_scope = user_scope(&unique("x/logged"));
    let anonymous_scope = format!("repository:{}:pull", unique("public/logged"));
    let wrong_scope = format!("repository:{}:pull", unique("x/logged-wrong"));
    token(&registries, &[&user_scope], true);
    token(&registries, &[&anonymous_scope], false);
    let wrong = request_token(
        &registries,
        &[&wrong_scope],
        Some((&registries.token_user, "wrong-one")),
    );
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let (text, entries) = issuer_log(&registries);
    let entry_for = |scope: &str| {
        let matching: Vec<&Value> = entries
            .iter()
            .filter(|entry| entry["scopes_asked"] == serde_json::json!([scope]))
            .collect();
        assert_eq!(matching.len(), 1, "log entries for {scope}: {matching:?}");
        matching[0].clone()
    };

    let user = entry_for(&user_scope);
    assert_eq!(user["account"], registries.token_user.as_str());
    assert_eq!(user["credentials"], "valid");
    assert_eq!(user["service"], registries.token_service.as_str());
    assert_eq!(user["scopes_granted"], serde_json::json!([user_scope]));
    assert_eq!(user["status"], 200);

    let anonymous = entry_for(&anonymous_scope);
    assert_eq!(anonymous["account"], "anonymous");
    assert_eq!(anonymous["credentials"], "none");
    assert_eq!(
        anonymous["scopes_granted"],
        serde_json::json!([anonymous_scope])
    );

    let wrong = entry_for(&wrong_scope);
    assert_eq!(wrong["credentials"], "invalid");
    assert_eq!(wrong["status"], 401);

    assert!(
        !text.contains(&registries.token_password),
        "the log holds the password"
    );
    assert!(
        !text.contains("wrong-one"),
        "the log holds a tried password"
    );
}

#[test]
fn token_for_one_repository_is_refused_on_another_with_its_scope() {
    let registries = registries();
    let repo_a = unique("x/a");
    let repo_b = unique("x/b");
    let token_a = token(&registries, &[&user_scope(&repo_a)], true);
    push_image(&registries, &token_a, &repo_a, "v1");
    assert_eq!(
        get_manifest(&registries, &token_a, &repo_a, "v1").status(),
        StatusCode::OK
    );

    let response = get_manifest(&registries, &token_a, &repo_b, "v1");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = header(&response, "www-authenticate").expect("a challenge");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains(&format!("scope=\"repository:{repo_b}:pull\"")),
        "challenge does not name {repo_b}: {challenge}"
    );
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
}

#[test]
fn malformed_scope_and_unknown_service_get_400() {
    let registries = registries();
    let basic = Some((
        registries.token_user.as_str(),
        registries.token_password.as_str(),
    ));
    let malformed = request_token(&registries, &["repository:x/y"], basic);
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);

    let wrong_service = client()
        .get(token_url(
            &registries,
            "another-registry",
            &["repository:x/y:pull"],
        ))
        .send()
        .expect("token request");
    assert_eq!(wrong_service.status(), StatusCode::BAD_REQUEST);
}
