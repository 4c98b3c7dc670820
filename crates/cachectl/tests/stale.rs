//! A registry that went down: `pull` of a cached tag uses the cached digest
//! and says it is stale (exit 0), unless `--no-stale` or the settings file
//! turn that off, and `build` and `unpack` of it work; a tag that is not
//! cached fails with the network exit code. The registry is the real test registry behind a forwarder that is
//! switched off.

mod support;

use std::sync::atomic::Ordering;
use support::{cachectl, fixture, stderr, stdout, switchable_forwarder};

#[test]
fn a_cached_tag_is_served_stale_when_the_registry_is_down() {
    let home = tempfile::tempdir().expect("tempdir");
    let (fixture_reference, digest) = fixture("small");
    let (registry, path) = fixture_reference
        .split_once('/')
        .expect("registry/repository:tag");
    let (addr, up) = switchable_forwarder(registry.to_owned());
    let reference = format!("{addr}/{path}");
    let first = cachectl(home.path())
        .args(["pull", "-q", &reference])
        .output()
        .expect("runs");
    assert!(first.status.success(), "{}", stderr(&first));
    // A warm pull a while later confirms the tag: the stale answer's age
    // counts from it, not from when the image was stored.
    std::thread::sleep(std::time::Duration::from_millis(2200));
    let warm_started = std::time::Instant::now();
    let warm = cachectl(home.path())
        .args(["pull", "-q", &reference])
        .output()
        .expect("runs");
    assert!(warm.status.success(), "{}", stderr(&warm));

    up.store(false, Ordering::SeqCst);
    let stale = cachectl(home.path())
        .args(["pull", "--json", &reference])
        .output()
        .expect("runs");
    assert!(stale.status.success(), "{}", stderr(&stale));
    let json: serde_json::Value = serde_json::from_str(&stdout(&stale)).expect("JSON");
    assert_eq!(json[0]["stale"], true, "{json}");
    assert_eq!(json[0]["digest"], digest.as_str(), "{json}");
    // The stale pull's retries take a few seconds of their own; the image
    // was stored 2.2 s before the warm pull began.
    let age = json[0]["cached_age_seconds"].as_u64().expect("an age");
    let since_warm = warm_started.elapsed().as_secs();
    assert!(
        age <= since_warm + 1,
        "counted from the warm pull ({since_warm} s ago): {json}"
    );

    let noted = cachectl(home.path())
        .args(["pull", &reference])
        .output()
        .expect("runs");
    assert!(noted.status.success(), "{}", stderr(&noted));
    assert!(
        stderr(&noted).contains("the registry could not be reached"),
        "{}",
        stderr(&noted)
    );
    assert!(stderr(&noted).contains(&addr), "{}", stderr(&noted));

    // A cached tag builds and unpacks with the registry down: neither asks
    // it anything.
    let built = cachectl(home.path())
        .args(["build", "-q", "--rootless", &reference])
        .output()
        .expect("runs");
    assert!(built.status.success(), "build: {}", stderr(&built));
    let target = home.path().join("rootfs");
    let unpacked = cachectl(home.path())
        .args(["unpack", "-q", "--rootless", &reference])
        .arg(&target)
        .output()
        .expect("runs");
    assert!(unpacked.status.success(), "unpack: {}", stderr(&unpacked));

    let strict = cachectl(home.path())
        .args(["pull", "--no-stale", &reference])
        .output()
        .expect("runs");
    assert_eq!(strict.status.code(), Some(5), "{}", stderr(&strict));
    let settings = home.path().join("config.toml");
    std::fs::write(&settings, "stale_fallback = false\n").expect("settings");
    let strict = cachectl(home.path())
        .args(["pull", &reference, "--config"])
        .arg(&settings)
        .output()
        .expect("runs");
    assert_eq!(strict.status.code(), Some(5), "{}", stderr(&strict));

    // A tag that was never cached has nothing to fall back to.
    let (other, _) = fixture("multiarch");
    let other_path = other.split_once('/').expect("registry/path").1;
    let missing = cachectl(home.path())
        .args(["pull", &format!("{addr}/{other_path}")])
        .output()
        .expect("runs");
    assert_eq!(missing.status.code(), Some(5), "{}", stderr(&missing));
}

#[test]
fn a_cached_tag_never_falls_back_when_the_registry_answers_404_or_refuses_credentials() {
    let home = tempfile::tempdir().expect("tempdir");
    let (small, _) = fixture("small");
    let pulled = cachectl(home.path())
        .args(["pull", "-q", &small])
        .output()
        .expect("runs");
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    let (registry, path) = small.split_once('/').expect("registry/repository:tag");
    let repository = path.rsplit_once(':').expect("repository:tag").0;
    // Cached under names the registries answer 404 and 401 for.
    let missing = format!("{registry}/{repository}:never-pushed");
    let locked = format!("{}/{path}", support::env("CACHECTL_TEST_REGISTRY_BASIC"));
    for (name, code) in [(&missing, 1), (&locked, 4)] {
        let tagged = cachectl(home.path())
            .args(["tag", &small, name])
            .output()
            .expect("runs");
        assert!(tagged.status.success(), "{}", stderr(&tagged));
        let output = cachectl(home.path())
            .args(["pull", "--json", name])
            .output()
            .expect("runs");
        assert_eq!(
            output.status.code(),
            Some(code),
            "{name}: {}",
            stderr(&output)
        );
        assert!(
            !stderr(&output).contains("could not be reached"),
            "{name}: {}",
            stderr(&output)
        );
    }
}
