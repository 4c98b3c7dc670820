//! Errors and warnings that must say the right thing, end to end against
//! the real test registry: a digest algorithm we cannot verify, a cache
//! directory setting that is empty or names a file, `-q` against a busy
//! registry, a malformed credentials file, and the hints that say how to
//! get past a missing repository, tag or cached image.

mod support;

use std::path::Path;
use std::sync::atomic::Ordering;
use support::{cachectl, counting_forwarder, env, failing_forwarder, fixture, stderr, stdout};

/// `REGISTRY/REPOSITORY` of the fixture image `name`, with the registry
/// replaced by `registry`.
fn repository_at(registry: &str, name: &str) -> String {
    let (reference, _) = fixture(name);
    let repository = reference
        .strip_prefix(&format!("{}/", env("CACHECTL_TEST_REGISTRY")))
        .and_then(|rest| rest.rsplit_once(':'))
        .expect("REGISTRY/REPOSITORY:TAG")
        .0;
    format!("{registry}/{repository}")
}

#[test]
fn a_digest_algorithm_we_cannot_verify_is_a_usage_error_before_any_request() {
    let home = tempfile::tempdir().expect("tempdir");
    let (forwarder, connections) = counting_forwarder(env("CACHECTL_TEST_REGISTRY"));
    let repository = repository_at(&forwarder, "small");
    // md5 is well-formed and registered nowhere in OCI; foo is well-formed
    // and registered nowhere at all: both follow the digest grammar.
    for (digest, algorithm) in [
        ("md5:d41d8cd98f00b204e9800998ecf8427e", "md5"),
        ("foo:bar", "foo"),
    ] {
        let reference = format!("{repository}@{digest}");
        for command in [&["pull"][..], &["unpack", "--rootless"][..]] {
            let mut args = command.to_vec();
            args.push(&reference);
            let target = home.path().join("rootfs").display().to_string();
            if command[0] == "unpack" {
                args.push(&target);
            }
            let output = cachectl(home.path()).args(&args).output().expect("runs");
            let err = stderr(&output);
            assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains(&reference), "names the reference: {err}");
            assert!(
                err.contains(&format!("algorithm {algorithm:?}")),
                "names the algorithm: {err}"
            );
            assert!(err.contains("sha256, sha512"), "lists the accepted: {err}");
        }
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "nothing was asked of the registry"
    );
}

/// Runs `cachectl images` in `home` with `setup` applied; its exit code
/// and stderr.
fn images(home: &Path, setup: impl FnOnce(&mut assert_cmd::Command)) -> (Option<i32>, String) {
    let mut command = cachectl(home);
    command.arg("images");
    setup(&mut command);
    let output = command.output().expect("runs");
    (output.status.code(), stderr(&output))
}

#[test]
fn a_cache_directory_setting_that_is_empty_or_a_file_is_a_usage_error() {
    let home = tempfile::tempdir().expect("tempdir");
    let file = home.path().join("not-a-directory");
    std::fs::write(&file, "x").expect("written");
    let file_text = file.display().to_string();
    let settings = home.path().join("config.toml");
    let with_settings = |command: &mut assert_cmd::Command| {
        command
            .env_remove("CACHECTL_ROOT")
            .arg("--config")
            .arg(&settings);
    };

    let (code, err) = images(home.path(), |c| {
        c.arg("--root").arg(&file);
    });
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--root") && err.contains(&file_text), "{err}");
    assert!(err.contains("not a directory"), "{err}");

    let (code, err) = images(home.path(), |c| {
        c.env("CACHECTL_ROOT", &file);
    });
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("CACHECTL_ROOT") && err.contains(&file_text),
        "{err}"
    );

    let (code, err) = images(home.path(), |c| {
        c.env("CACHECTL_ROOT", "");
    });
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("CACHECTL_ROOT") && err.contains("empty"),
        "{err}"
    );

    std::fs::write(&settings, format!("root = {file_text:?}\n")).expect("written");
    let (code, err) = images(home.path(), with_settings);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("root in") && err.contains(&file_text), "{err}");

    std::fs::write(&settings, "root = \"\"\n").expect("written");
    let (code, err) = images(home.path(), with_settings);
    assert_eq!(code, Some(2), "{err}");
    let settings_text = settings.display().to_string();
    assert!(
        err.contains("root in") && err.contains(&settings_text) && err.contains("\"\""),
        "names the key, the file and the empty value: {err}"
    );
    assert!(err.contains("empty"), "{err}");
    // Nothing was made in the working directory.
    assert!(!home.path().join("oci-layout").exists());
}

/// Pulls the `small` fixture with `flags` in a fresh home through a
/// forwarder that answers the first connection 503; checks that the pull
/// succeeded after a retry and returns its stderr.
fn pull_through_a_busy_registry(flags: &[&str]) -> String {
    let (forwarder, connections) = failing_forwarder(env("CACHECTL_TEST_REGISTRY"), 1);
    let reference = format!("{}:v1", repository_at(&forwarder, "small"));
    let home = tempfile::tempdir().expect("tempdir");
    let output = cachectl(home.path())
        .args(flags)
        .args(["pull", &reference])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{flags:?}: {}", stderr(&output));
    assert!(stdout(&output).contains("sha256:"), "{flags:?}");
    assert!(
        connections.load(Ordering::SeqCst) >= 2,
        "{flags:?}: the 503 was answered and the request retried"
    );
    stderr(&output)
}

#[test]
fn quiet_and_default_output_show_no_retry_warning() {
    assert_eq!(pull_through_a_busy_registry(&["-q"]), "", "-q");
    // `-q` wins over `-v`: results and errors only, no log line.
    assert_eq!(pull_through_a_busy_registry(&["-q", "-v"]), "", "-q -v");
    // Without -v no log line either: only progress and the summary.
    let err = pull_through_a_busy_registry(&[]);
    assert!(!err.contains("retrying") && !err.contains("WARN"), "{err}");
    assert!(err.contains("fetched"), "progress lines are shown: {err}");
    // With -v the retry is logged.
    let err = pull_through_a_busy_registry(&["-v"]);
    assert!(err.contains("retrying"), "-v: {err}");
}

#[test]
fn a_malformed_credentials_file_is_skipped_with_one_warning() {
    let home = tempfile::tempdir().expect("tempdir");
    let docker = home.path().join("docker");
    std::fs::create_dir_all(&docker).expect("made");
    let config = docker.join("config.json");
    // Broken on line 4; the secret must never be echoed.
    std::fs::write(
        &config,
        "{\n  \"auths\": {\n    \"r.example\": {\"auth\": \"dXNlcjpodW50ZXIy\"}\n    oops\n}\n",
    )
    .expect("written");
    let config_text = config.display().to_string();
    let (reference, digest) = fixture("small");
    let check = |output: &std::process::Output, what: &str| {
        let err = stderr(output);
        assert!(output.status.success(), "{what}: {err}");
        assert!(stdout(output).contains(&digest), "{what}");
        assert_eq!(
            err.lines().filter(|l| l.contains("warning")).count(),
            1,
            "{what}: {err}"
        );
        let warning = err.lines().find(|l| l.contains("warning")).expect("warned");
        assert!(warning.contains(&config_text), "names the file: {warning}");
        assert!(warning.contains("line 4"), "names the line: {warning}");
        for secret in ["dXNlcjpodW50ZXIy", "hunter2", "oops", "r.example"] {
            assert!(
                !err.contains(secret),
                "{what}: the file's content leaked: {err}"
            );
        }
    };
    let cold = cachectl(home.path())
        .args(["pull", &reference])
        .output()
        .expect("runs");
    check(&cold, "cold pull");
    let warm = cachectl(home.path())
        .args(["pull", &reference])
        .output()
        .expect("runs");
    check(&warm, "warm pull");
    // `-q`: results and errors only, so no warning.
    let quiet = cachectl(home.path())
        .args(["-q", "pull", &reference])
        .output()
        .expect("runs");
    assert!(quiet.status.success());
    assert_eq!(stderr(&quiet), "");

    // A registry that wants credentials: pulled anonymously, refused (4).
    let basic = env("CACHECTL_TEST_REGISTRY_BASIC");
    let refused = cachectl(home.path())
        .args(["pull", &format!("{basic}/fixtures/small:v1")])
        .output()
        .expect("runs");
    assert_eq!(refused.status.code(), Some(4), "{}", stderr(&refused));

    // A containers auth.json that does not parse is skipped the same way.
    std::fs::remove_file(&config).expect("removed");
    let auth = home.path().join("auth.json");
    std::fs::write(&auth, "{\"auths\": [").expect("written");
    let output = cachectl(home.path())
        .env("REGISTRY_AUTH_FILE", &auth)
        .args(["pull", &reference])
        .output()
        .expect("runs");
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(
        err.contains(&auth.display().to_string()) && err.contains("line 1"),
        "{err}"
    );
}

#[test]
fn a_push_to_a_digest_that_cannot_name_the_image_is_refused_before_any_upload() {
    let home = tempfile::tempdir().expect("tempdir");
    let (small, small_digest) = fixture("small");
    let pulled = cachectl(home.path())
        .args(["pull", "-q", &small])
        .output()
        .expect("runs");
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    let (forwarder, connections) = counting_forwarder(env("CACHECTL_TEST_REGISTRY"));
    let other = format!("sha256:{}", "0".repeat(64));
    assert_ne!(other, small_digest);
    for (digest, reason) in [
        ("md5:d41d8cd98f00b204e9800998ecf8427e", "\"md5\""),
        (other.as_str(), small_digest.as_str()),
    ] {
        let destination = format!("{forwarder}/pushed/small@{digest}");
        let output = cachectl(home.path())
            .args(["push", &small, &destination])
            .output()
            .expect("runs");
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{destination}: {err}");
        assert!(err.contains(&destination), "names the destination: {err}");
        assert!(err.contains(reason), "says why: {err}");
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "nothing was sent to the registry"
    );
}

#[test]
fn a_missing_repository_a_missing_tag_and_an_uncached_image_each_say_the_fix() {
    let home = tempfile::tempdir().expect("tempdir");
    let registry = env("CACHECTL_TEST_REGISTRY");
    let (reference, _) = fixture("small");
    let repository = reference.rsplit_once(':').expect("a tag").0;
    let run = |args: &[&str]| cachectl(home.path()).args(args).output().expect("runs");

    for command in ["pull", "digest"] {
        let absent = run(&[command, &format!("{registry}/no-such/repository:1")]);
        let message = stderr(&absent);
        assert_eq!(absent.status.code(), Some(1), "{message}");
        assert!(
            message.contains(&format!("repository {registry}/no-such/repository")),
            "{command}: {message}"
        );
        assert!(
            message.contains("hint: check the repository's name"),
            "{message}"
        );
        assert!(!message.contains("tag 1"), "{message}");

        let no_tag = run(&[command, &format!("{repository}:no-such-tag")]);
        let message = stderr(&no_tag);
        assert_eq!(no_tag.status.code(), Some(1), "{message}");
        assert!(
            message.contains(&format!("tag no-such-tag in {repository} not found")),
            "{command}: {message}"
        );
        assert!(
            message.contains(&format!(
                "hint: `cachectl tags {repository}` lists its tags"
            )),
            "{message}"
        );
    }

    let offline = run(&["build", "--offline", &reference]);
    let message = stderr(&offline);
    assert_eq!(offline.status.code(), Some(3), "{message}");
    assert!(
        message.contains(&format!("hint: `cachectl pull {reference}` fetches it")),
        "{message}"
    );
}
