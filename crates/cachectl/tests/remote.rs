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
