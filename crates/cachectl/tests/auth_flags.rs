//! `--creds`, `--authfile`, `login`'s check of the credentials and
//! `--retry-times`, against the test registries of `cargo xtask registry`
//! (htpasswd Basic, token auth with its issuer, and the anonymous one
//! behind a forwarder that answers 503 first).

mod support;

use std::path::Path;
use std::sync::atomic::Ordering;
use support::{cachectl, cached_fixture, env, failing_forwarder, fixture, stderr, stdout};

/// A docker config.json holding `user:password` for `registry`.
fn authfile(path: &Path, registry: &str, user: &str, password: &str) {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let text = serde_json::json!({"auths": {registry: {"auth": auth}}});
    std::fs::write(path, text.to_string()).expect("written");
}

/// `(registry, user, password)` of the Basic and of the token registry.
fn registries() -> [(String, String, String); 2] {
    [
        (
            env("CACHECTL_TEST_REGISTRY_BASIC"),
            env("CACHECTL_TEST_REGISTRY_BASIC_USER"),
            env("CACHECTL_TEST_REGISTRY_BASIC_PASSWORD"),
        ),
        (
            env("CACHECTL_TEST_REGISTRY_TOKEN"),
            env("CACHECTL_TEST_TOKEN_USER"),
            env("CACHECTL_TEST_TOKEN_PASSWORD"),
        ),
    ]
}

/// Asserts no secret of the run appears in its output.
fn assert_no_secret(output: &std::process::Output, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !stdout(output).contains(secret) && !stderr(output).contains(secret),
            "a secret was printed"
        );
    }
}

#[test]
fn creds_and_authfile_reach_basic_and_token_registries() {
    let home = tempfile::tempdir().expect("tempdir");
    let (source, digest) = cached_fixture(home.path());
    for (registry, user, password) in registries() {
        let target = format!("{registry}/flags/creds:v1");
        let anonymous = cachectl(home.path())
            .args(["push", &source, &target])
            .output()
            .expect("runs");
        assert_eq!(anonymous.status.code(), Some(4), "{}", stderr(&anonymous));
        let creds = format!("{user}:{password}");
        let pushed = cachectl(home.path())
            .args(["push", &source, &target, "--creds", &creds])
            .output()
            .expect("runs");
        assert!(pushed.status.success(), "{registry}: {}", stderr(&pushed));
        assert_no_secret(&pushed, &[&password]);
        // USER alone: the password comes from standard input.
        let found = cachectl(home.path())
            .args(["digest", &target, "--creds", &user])
            .write_stdin(format!("{password}\n"))
            .output()
            .expect("runs");
        assert!(found.status.success(), "{registry}: {}", stderr(&found));
        assert_eq!(stdout(&found).trim(), digest);
        let empty = cachectl(home.path())
            .args(["digest", &target, "--creds", &user])
            .write_stdin("")
            .output()
            .expect("runs");
        assert_eq!(empty.status.code(), Some(2), "{}", stderr(&empty));
        assert!(stderr(&empty).contains("--creds"), "{}", stderr(&empty));
        let wrong = cachectl(home.path())
            .args([
                "digest",
                &target,
                "--creds",
                &format!("{user}:wrong-{password}"),
            ])
            .output()
            .expect("runs");
        assert_eq!(
            wrong.status.code(),
            Some(4),
            "{registry}: {}",
            stderr(&wrong)
        );
        assert_no_secret(&wrong, &[&password]);

        // --authfile, and the settings file's authfile.
        let file = home.path().join("auth.json");
        authfile(&file, &registry, &user, &password);
        let found = cachectl(home.path())
            .arg("--authfile")
            .arg(&file)
            .args(["digest", &target])
            .output()
            .expect("runs");
        assert!(found.status.success(), "{registry}: {}", stderr(&found));
        assert_eq!(stdout(&found).trim(), digest);
        let settings = home.path().join("settings.toml");
        std::fs::write(
            &settings,
            format!("authfile = {:?}\n", file.display().to_string()),
        )
        .expect("written");
        let found = cachectl(home.path())
            .arg("--config")
            .arg(&settings)
            .args(["digest", &target])
            .output()
            .expect("runs");
        assert!(found.status.success(), "{registry}: {}", stderr(&found));
        authfile(&file, &registry, &user, "wrong");
        let refused = cachectl(home.path())
            .arg("--authfile")
            .arg(&file)
            .args(["digest", &target])
            .output()
            .expect("runs");
        assert_eq!(
            refused.status.code(),
            Some(4),
            "{registry}: {}",
            stderr(&refused)
        );
    }
}

#[test]
fn login_checks_the_password_and_stores_nothing_when_it_is_wrong() {
    let home = tempfile::tempdir().expect("tempdir");
    for (registry, user, password) in registries() {
        let file = home
            .path()
            .join(format!("auth-{}.json", registry.replace(':', "_")));
        let wrong = cachectl(home.path())
            .args([
                "login",
                &registry,
                "-u",
                &user,
                "--password-stdin",
                "--authfile",
            ])
            .arg(&file)
            .write_stdin(format!("not-{password}\n"))
            .output()
            .expect("runs");
        assert_eq!(
            wrong.status.code(),
            Some(4),
            "{registry}: {}",
            stderr(&wrong)
        );
        assert!(stderr(&wrong).contains(&registry), "{}", stderr(&wrong));
        assert_no_secret(&wrong, &[&password, &format!("not-{password}")]);
        assert!(!file.exists(), "{registry}: nothing is stored");
        // An existing file is left as it was.
        std::fs::write(&file, "{\"auths\": {}}\n").expect("written");
        let wrong = cachectl(home.path())
            .args([
                "login",
                &registry,
                "-u",
                &user,
                "--password-stdin",
                "--authfile",
            ])
            .arg(&file)
            .write_stdin("wrong\n")
            .output()
            .expect("runs");
        assert_eq!(
            wrong.status.code(),
            Some(4),
            "{registry}: {}",
            stderr(&wrong)
        );
        assert_eq!(
            std::fs::read_to_string(&file).expect("read"),
            "{\"auths\": {}}\n"
        );
        // The default file is not written either.
        assert!(!home.path().join("docker/config.json").exists());

        let right = cachectl(home.path())
            .args([
                "login",
                &registry,
                "-u",
                &user,
                "--password-stdin",
                "--authfile",
            ])
            .arg(&file)
            .write_stdin(format!("{password}\n"))
            .output()
            .expect("runs");
        assert!(right.status.success(), "{registry}: {}", stderr(&right));
        assert!(
            stdout(&right).contains(&file.display().to_string()),
            "names the file: {}",
            stdout(&right)
        );
        assert_no_secret(&right, &[&password]);
        let stored: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("JSON");
        assert!(stored["auths"][&registry]["auth"].is_string(), "{stored}");
        // What login stored is what --authfile reads.
        let listed = cachectl(home.path())
            .arg("--authfile")
            .arg(&file)
            .args(["tags", &format!("{registry}/flags/login")])
            .output()
            .expect("runs");
        assert_ne!(listed.status.code(), Some(4), "{}", stderr(&listed));
        // logout removes it from the same file.
        let logout = cachectl(home.path())
            .args(["logout", &registry, "--authfile"])
            .arg(&file)
            .output()
            .expect("runs");
        assert!(logout.status.success(), "{}", stderr(&logout));
        let stored: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("JSON");
        assert!(stored["auths"][&registry].is_null(), "{stored}");
    }
}

#[test]
fn retry_times_zero_gives_up_where_the_default_retries() {
    let (reference, digest) = fixture("small");
    let plain = env("CACHECTL_TEST_REGISTRY");
    let at = |forwarder: &str| reference.replacen(&plain, forwarder, 1);
    let home = tempfile::tempdir().expect("tempdir");

    let (forwarder, connections) = failing_forwarder(plain.clone(), 1);
    let output = cachectl(home.path())
        .args(["digest", &at(&forwarder), "--retry-times", "0"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(5), "{}", stderr(&output));
    assert!(stderr(&output).contains("503"), "{}", stderr(&output));
    assert_eq!(connections.load(Ordering::SeqCst), 1, "one attempt only");

    let settings = home.path().join("settings.toml");
    std::fs::write(&settings, "retry_times = 0\n").expect("written");
    let (forwarder, connections) = failing_forwarder(plain.clone(), 1);
    let output = cachectl(home.path())
        .arg("--config")
        .arg(&settings)
        .args(["digest", &at(&forwarder)])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(5), "{}", stderr(&output));
    assert_eq!(connections.load(Ordering::SeqCst), 1, "one attempt only");

    for flags in [&[][..], &["--retry-times", "1"][..]] {
        let (forwarder, connections) = failing_forwarder(plain.clone(), 1);
        let output = cachectl(home.path())
            .args(flags)
            .args(["digest", &at(&forwarder)])
            .output()
            .expect("runs");
        assert!(output.status.success(), "{flags:?}: {}", stderr(&output));
        assert_eq!(stdout(&output).trim(), digest);
        assert_eq!(
            connections.load(Ordering::SeqCst),
            2,
            "{flags:?}: retried once"
        );
    }
}
