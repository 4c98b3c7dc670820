//! Support for the workspace integration tests: where the real parts are.
//!
//! `cargo xtask test` starts the CNCF distribution registry and passes its
//! addresses through environment variables. A test that needs a registry
//! fails, and says how to run it, when they are missing: it never skips.

/// Address (`127.0.0.1:PORT`) of the anonymous test registry.
pub const ENV_PLAIN: &str = "CACHECTL_TEST_REGISTRY";
/// Address of the test registry that requires htpasswd Basic auth.
pub const ENV_BASIC: &str = "CACHECTL_TEST_REGISTRY_BASIC";
/// User name accepted by the Basic-auth registry.
pub const ENV_BASIC_USER: &str = "CACHECTL_TEST_REGISTRY_BASIC_USER";
/// Password accepted by the Basic-auth registry.
pub const ENV_BASIC_PASSWORD: &str = "CACHECTL_TEST_REGISTRY_BASIC_PASSWORD";

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
}

impl std::fmt::Debug for TestRegistries {
    /// Never prints the password, like every credential in this project.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRegistries")
            .field("plain", &self.plain)
            .field("basic", &self.basic)
            .field("basic_user", &self.basic_user)
            .field("basic_password", &"<redacted>")
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
