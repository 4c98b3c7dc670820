//! Support for the workspace integration tests: where the real parts are.
//!
//! `cargo xtask test` starts the CNCF distribution registries (anonymous,
//! Basic auth, token auth with its issuer) and passes their addresses through
//! environment variables. A test that needs a registry
//! fails, and says how to run it, when they are missing: it never skips.

pub mod fault_proxy;
pub mod pull_through;
pub mod squid;

/// Address (`127.0.0.1:PORT`) of the anonymous test registry.
pub const ENV_PLAIN: &str = "CACHECTL_TEST_REGISTRY";
/// Address of the test registry that requires htpasswd Basic auth.
pub const ENV_BASIC: &str = "CACHECTL_TEST_REGISTRY_BASIC";
/// User name accepted by the Basic-auth registry.
pub const ENV_BASIC_USER: &str = "CACHECTL_TEST_REGISTRY_BASIC_USER";
/// Password accepted by the Basic-auth registry.
pub const ENV_BASIC_PASSWORD: &str = "CACHECTL_TEST_REGISTRY_BASIC_PASSWORD";
/// Address of the test registry in `auth: token` mode.
pub const ENV_TOKEN: &str = "CACHECTL_TEST_REGISTRY_TOKEN";
/// Address of the token issuer that registry trusts (`/token`, `/log`).
pub const ENV_TOKEN_ISSUER: &str = "CACHECTL_TEST_TOKEN_ISSUER";
/// User name the token issuer accepts (Basic auth on the token request).
pub const ENV_TOKEN_USER: &str = "CACHECTL_TEST_TOKEN_USER";
/// Password the token issuer accepts.
pub const ENV_TOKEN_PASSWORD: &str = "CACHECTL_TEST_TOKEN_PASSWORD";
/// Service name the token registry announces and the issuer requires.
pub const ENV_TOKEN_SERVICE: &str = "CACHECTL_TEST_TOKEN_SERVICE";

/// The test registries started by `cargo xtask test` (or `cargo xtask registry`).
#[derive(Clone)]
pub struct TestRegistries {
    /// `host:port` of the anonymous registry.
    pub plain: String,
    /// `host:port` of the Basic-auth registry.
    pub basic: String,
    /// User name for the Basic-auth registry.
    pub basic_user: String,
    /// Password for the Basic-auth registry.
    pub basic_password: String,
    /// `host:port` of the registry in `auth: token` mode.
    pub token: String,
    /// `host:port` of its token issuer (`GET /token`, `GET /log`).
    pub token_issuer: String,
    /// User name the token issuer accepts.
    pub token_user: String,
    /// Password the token issuer accepts.
    pub token_password: String,
    /// Service name of the token registry (`service=` on token requests).
    pub token_service: String,
}

impl TestRegistries {
    /// The token endpoint, as the token registry's challenge names it.
    pub fn token_realm(&self) -> String {
        format!("http://{}/token", self.token_issuer)
    }

    /// The issuer's record of token requests, a JSON array.
    pub fn token_issuer_log_url(&self) -> String {
        format!("http://{}/log", self.token_issuer)
    }
}

impl std::fmt::Debug for TestRegistries {
    /// Never prints the password, like every credential in this project.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRegistries")
            .field("plain", &self.plain)
            .field("basic", &self.basic)
            .field("basic_user", &self.basic_user)
            .field("basic_password", &"<redacted>")
            .field("token", &self.token)
            .field("token_issuer", &self.token_issuer)
            .field("token_user", &self.token_user)
            .field("token_password", &"<redacted>")
            .field("token_service", &self.token_service)
            .finish()
    }
}

/// Reads the registries from the environment.
///
/// # Panics
/// When a variable is missing: these tests need the real registry, so they
/// fail with the command that provides it rather than pass vacuously.
pub fn registries() -> TestRegistries {
    TestRegistries {
        plain: required(ENV_PLAIN),
        basic: required(ENV_BASIC),
        basic_user: required(ENV_BASIC_USER),
        basic_password: required(ENV_BASIC_PASSWORD),
        token: required(ENV_TOKEN),
        token_issuer: required(ENV_TOKEN_ISSUER),
        token_user: required(ENV_TOKEN_USER),
        token_password: required(ENV_TOKEN_PASSWORD),
        token_service: required(ENV_TOKEN_SERVICE),
    }
}

fn required(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{name} is not set: integration tests need the real registry. Run them with \
             `cargo xtask test`, or start one with `cargo xtask registry` and export what it prints"
        ),
    }
}

/// The message of `err` and each of its causes, one per line, as the CLI
/// prints them (`  caused by: …`): what tests search for a path or a reason
/// that only a cause names.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    text
}

/// `name` made unique to this test process, so that tests running in
/// parallel, and reruns against one long-lived registry, never share a
/// repository.
pub fn unique(name: &str) -> String {
    static SUFFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let suffix = SUFFIX.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        format!("{}-{nanos}", std::process::id())
    });
    format!("{name}-{suffix}")
}

/// A blocking HTTP client for talking to the test registries directly.
///
/// The workspace builds reqwest with `rustls-no-provider` (ocidist picks the
/// ring provider itself), so a bare `reqwest::blocking::Client` would have no
/// crypto provider: this one installs ring as the process default first.
pub fn blocking_client() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .expect("a plain-HTTP client builds")
}

/// Names the JSON summary of the fixtures `cargo xtask test` pushed.
pub const ENV_FIXTURES: &str = "CACHECTL_TEST_FIXTURES";

/// The summary of the pushed fixture images (`cargo xtask fixtures`): an
/// object keyed by fixture name with `reference`, `digest`, `mediaType`,
/// `size`, `platforms` and `referrers`.
///
/// # Panics
/// When the variable is missing or the file unreadable: such tests fail.
pub fn fixtures() -> serde_json::Value {
    let path = required(ENV_FIXTURES);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {path}: {err}"));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{path} is not JSON: {err}"))
}
