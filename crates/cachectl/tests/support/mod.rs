//! What every end-to-end test of the binary needs: the test registry's
//! environment, the fixtures summary, and `cachectl` run in a private home.
#![allow(dead_code)]

pub(crate) mod shapes;

use assert_cmd::Command;
use std::path::Path;

/// The value of an environment variable `cargo xtask test` sets.
pub(crate) fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with `cargo xtask test` (README)")
    })
}

/// `(reference, digest)` of the fixture image `name`.
pub(crate) fn fixture(name: &str) -> (String, String) {
    let text = std::fs::read_to_string(env("CACHECTL_TEST_FIXTURES")).expect("fixtures summary");
    let summary: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    (
        summary[name]["reference"]
            .as_str()
            .expect("reference")
            .to_owned(),
        summary[name]["digest"].as_str().expect("digest").to_owned(),
    )
}

/// `cachectl` with its cache, config and credentials under `home`.
pub(crate) fn cachectl(home: &Path) -> Command {
    let mut command = Command::cargo_bin("cachectl").expect("the binary is built");
    // Relative paths in generated arguments (`--root du`) land in `home`,
    // never in the source tree.
    command
        .current_dir(home)
        .env("CACHECTL_ROOT", home.join("cache"))
        .env("HOME", home)
        .env("DOCKER_CONFIG", home.join("docker"))
        .env_remove("XDG_CACHE_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("CACHECTL_CONFIG");
    for name in PROXY_VARIABLES {
        command.env_remove(name);
    }
    command
}

/// The proxy variables `cachectl` reads: removed for every test run, so a
/// proxy set in the developer's environment never sits between the tests
/// and their loopback registries (proxy tests set their own).
pub(crate) const PROXY_VARIABLES: &[&str] = &[
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// Standard output, as text.
pub(crate) fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Standard error, as text.
pub(crate) fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
