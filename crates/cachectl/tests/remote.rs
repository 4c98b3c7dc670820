//! Look-ups at the registry that store nothing: `digest` agrees with
//! skopeo's digest of the same reference (and, with `--platform`, with
//! the index entry skopeo's raw manifest names), `tags` with
//! `skopeo list-tags`; neither writes to the cache.

mod support;

use serde_json::Value;
use support::{cachectl, fixture, stderr, stdout};

/// Runs skopeo with `args` against the plain-HTTP test registry and
/// parses its JSON output.
fn skopeo(args: &[&str]) -> Value {
    let output = std::process::Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo runs (`cargo xtask test` installs it)");
    assert!(
        output.status.success(),
        "skopeo {args:?}: {}",
        stderr(&output)
    );
    serde_json::from_slice(&output.stdout).expect("skopeo prints JSON")
}

fn digest_of(home: &std::path::Path, args: &[&str]) -> String {
    let out = cachectl(home).args(args).output().expect("runs");
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out).trim().to_owned()
}

#[test]
fn digest_is_skopeos_and_names_a_platform_only_when_asked() {
    let home = tempfile::tempdir().expect("tempdir");
    for name in ["small", "multiarch"] {
        let (reference, _) = fixture(name);
        let theirs = skopeo(&[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ]);
        let ours = digest_of(home.path(), &["digest", &reference]);
        assert_eq!(Value::from(ours.as_str()), theirs["Digest"], "{name}");
    }

    let (multiarch, index_digest) = fixture("multiarch");
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{multiarch}"),
    ]);
    let arm_entry = raw["manifests"]
        .as_array()
        .expect("an index")
        .iter()
        .find(|m| m["platform"]["architecture"] == "arm64")
        .expect("an arm64 entry");
    let arm = digest_of(
        home.path(),
        &["--platform", "linux/arm64", "digest", &multiarch],
    );
    assert_eq!(Value::from(arm.as_str()), arm_entry["digest"]);
    assert_ne!(arm, index_digest);

    let none = cachectl(home.path())
        .args(["--platform", "linux/s390x", "digest", &multiarch])
        .output()
        .expect("runs");
    assert_eq!(none.status.code(), Some(1), "{}", stderr(&none));
    assert!(
        stderr(&none).contains("linux/s390x"),
        "the error names the platform: {}",
        stderr(&none)
    );

    let missing = format!("{}-missing", multiarch);
    let absent = cachectl(home.path())
        .args(["digest", &missing])
        .output()
        .expect("runs");
    assert_eq!(absent.status.code(), Some(1), "{}", stderr(&absent));
    assert!(stderr(&absent).contains("-missing"), "{}", stderr(&absent));

    let cache = home.path().join("cache");
    let blobs = cache.join("blobs/sha256");
    let stored = std::fs::read_dir(&blobs).map_or(0, |dir| dir.count());
    assert_eq!(stored, 0, "digest stores nothing");
}

#[test]
fn tags_lists_what_skopeo_lists() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, _) = fixture("multiarch");
    let repository = reference.rsplit_once(':').expect("a tag").0;
    let theirs = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{repository}"),
    ]);
    let out = cachectl(home.path())
        .args(["tags", "--json", repository])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let ours: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let sorted = |value: &Value| {
        let mut tags: Vec<String> = value
            .as_array()
            .expect("tags")
            .iter()
            .map(|t| t.as_str().expect("a tag").to_owned())
            .collect();
        tags.sort();
        tags
    };
    assert_eq!(sorted(&ours["tags"]), sorted(&theirs["Tags"]));
    assert!(!sorted(&ours["tags"]).is_empty());
    assert_eq!(ours["repository"], repository);
}

/// skopeo's `inspect --raw` of `target` (`docker://…` or `oci:…`): the
/// manifest's bytes as it got them.
fn skopeo_raw(target: &str) -> Vec<u8> {
    let output = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", target])
        .output()
        .expect("skopeo runs (`cargo xtask test` installs it)");
    assert!(
        output.status.success(),
        "skopeo inspect --raw {target}: {}",
        stderr(&output)
    );
    output.stdout
}

/// `cachectl ARGS`'s stdout, as bytes, after a successful run.
fn bytes_of(home: &std::path::Path, args: &[&str]) -> Vec<u8> {
    let out = cachectl(home).args(args).output().expect("runs");
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    out.stdout
}

fn sha256(bytes: &[u8]) -> String {
    ociref::Digest::sha256_of(bytes).to_string()
}

#[test]
fn inspect_raw_prints_skopeos_bytes_from_the_registry_and_from_the_cache() {
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();
    let (small, small_digest) = fixture("small");
    let (multiarch, index_digest) = fixture("multiarch");
    for (reference, digest) in [(&small, &small_digest), (&multiarch, &index_digest)] {
        let theirs = skopeo_raw(&format!("docker://{reference}"));
        let ours = bytes_of(home, &["inspect", "--remote", "--raw", reference]);
        assert_eq!(ours, theirs, "{reference}: the registry's bytes");
        assert_eq!(&sha256(&ours), digest, "{reference}");
        // Already JSON: --json changes nothing.
        let json = bytes_of(home, &["inspect", "--remote", "--raw", "--json", reference]);
        assert_eq!(json, theirs, "{reference} with --json");
    }
    let blobs = home.join("cache/blobs/sha256");
    let stored = std::fs::read_dir(&blobs).map_or(0, |dir| dir.count());
    assert_eq!(stored, 0, "inspect --remote stores nothing");

    let index: Value =
        serde_json::from_slice(&skopeo_raw(&format!("docker://{multiarch}"))).expect("JSON");
    let arm_entry = index["manifests"]
        .as_array()
        .expect("an index")
        .iter()
        .find(|m| m["platform"]["variant"] == "v7")
        .expect("an arm/v7 entry");
    let arm = bytes_of(
        home,
        &[
            "--platform",
            "linux/arm/v7",
            "inspect",
            "--remote",
            "--raw",
            &multiarch,
        ],
    );
    assert_eq!(Value::from(sha256(&arm)), arm_entry["digest"]);

    let pulled = cachectl(home)
        .args(["pull", "-q", &small])
        .output()
        .expect("runs");
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    let all = cachectl(home)
        .args(["pull", "-q", "--all-platforms", &multiarch])
        .output()
        .expect("runs");
    assert!(all.status.success(), "{}", stderr(&all));
    let root = home.join("cache");
    for (reference, digest) in [(&small, &small_digest), (&multiarch, &index_digest)] {
        let cached = bytes_of(home, &["inspect", "--raw", reference]);
        assert_eq!(&sha256(&cached), digest, "{reference} from the cache");
        let theirs = skopeo_raw(&format!("oci:{}:{reference}", root.display()));
        assert_eq!(cached, theirs, "{reference}: skopeo's bytes of the cache");
    }
    let absent = cachectl(home)
        .args(["inspect", "--raw", "example.com/absent:1"])
        .output()
        .expect("runs");
    assert_eq!(absent.status.code(), Some(3), "{}", stderr(&absent));
    assert!(absent.stdout.is_empty());
}

#[test]
fn inspect_remote_describes_the_registrys_image_as_inspect_does_a_cached_one() {
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();
    let (multiarch, index_digest) = fixture("multiarch");
    let inspect = |args: &[&str]| -> Value {
        let out = cachectl(home).args(args).output().expect("runs");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let remote = inspect(&[
        "--platform",
        "linux/arm64",
        "inspect",
        "--remote",
        "--json",
        &multiarch,
    ]);
    assert_eq!(remote["index_digest"], index_digest.as_str(), "{remote}");
    assert_eq!(remote["top"]["digest"], index_digest.as_str(), "{remote}");
    assert_eq!(remote["platforms"].as_array().map(Vec::len), Some(3));
    assert!(remote["record"].is_null(), "{remote}");
    let image = &remote["images"][0];
    assert_eq!(image["config"]["architecture"], "arm64", "{remote}");
    assert!(image["compressed_size"].as_u64().is_some_and(|s| s > 0));
    let stored = std::fs::read_dir(home.join("cache/blobs/sha256")).map_or(0, |d| d.count());
    assert_eq!(stored, 0, "inspect --remote stores nothing");

    let pulled = cachectl(home)
        .args(["--platform", "linux/arm64", "pull", "-q", &multiarch])
        .output()
        .expect("runs");
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    let local = inspect(&["--platform", "linux/arm64", "inspect", "--json", &multiarch]);
    assert_eq!(local["images"][0]["manifest"], image["manifest"]);
    assert_eq!(local["images"][0]["config"], image["config"]);
    assert_eq!(
        local["images"][0]["compressed_size"],
        image["compressed_size"]
    );
    let layers = |value: &Value| -> Vec<Value> {
        value["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l["descriptor"].clone())
            .collect()
    };
    assert_eq!(layers(&local["images"][0]), layers(image));

    let text = cachectl(home)
        .args(["inspect", "--remote", &multiarch])
        .output()
        .expect("runs");
    assert!(text.status.success(), "{}", stderr(&text));
    assert!(stdout(&text).contains("linux/arm/v7"), "{}", stdout(&text));

    let none = cachectl(home)
        .args([
            "--platform",
            "linux/s390x",
            "inspect",
            "--remote",
            &multiarch,
        ])
        .output()
        .expect("runs");
    assert_ne!(none.status.code(), Some(0), "{}", stderr(&none));
    assert!(stderr(&none).contains("linux/s390x"), "{}", stderr(&none));
    let missing = format!("{multiarch}-missing");
    let absent = cachectl(home)
        .args(["inspect", "--remote", &missing])
        .output()
        .expect("runs");
    assert_eq!(absent.status.code(), Some(1), "{}", stderr(&absent));
    assert!(stderr(&absent).contains("-missing"), "{}", stderr(&absent));
}
