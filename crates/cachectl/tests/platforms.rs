//! Platforms end to end against the real test registry: `--platform` on
//! `unpack` and `build` pulls what is missing, several platforms of a tag
//! are listed, verified and removed one by one, and a stored pinned digest
//! costs no request.

mod support;

use std::path::Path;
use std::sync::atomic::Ordering;
use support::{cachectl, counting_forwarder, env, fixture, stderr, stdout};

/// Runs `cachectl` with `args` in `home`; panics with its stderr when it fails.
fn ok(home: &Path, args: &[&str]) -> String {
    let output = cachectl(home).args(args).output().expect("runs");
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    stdout(&output)
}

/// `images --json`: `(ref, name, platform)` of every entry, sorted.
fn listed(home: &Path) -> Vec<(String, String, String)> {
    let json: serde_json::Value =
        serde_json::from_str(&ok(home, &["images", "--json"])).expect("JSON");
    let mut rows: Vec<_> = json
        .as_array()
        .expect("array")
        .iter()
        .map(|image| {
            let text = |key: &str| image[key].as_str().unwrap_or("-").to_owned();
            (text("ref"), text("name"), text("platform"))
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn unpack_and_build_with_a_platform_pull_the_missing_platform() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, _) = fixture("multiarch");
    ok(
        home.path(),
        &["--platform", "linux/amd64", "pull", "-q", &reference],
    );
    let rootfs = home.path().join("arm64");
    let rootfs_arg = rootfs.display().to_string();
    ok(
        home.path(),
        &[
            "--platform",
            "linux/arm64",
            "unpack",
            &reference,
            &rootfs_arg,
        ],
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("arch")).expect("/arch"),
        "linux/arm64/v8\n"
    );
    // Offline, a missing platform is a clear not-cached error (exit 3).
    let offline = cachectl(home.path())
        .args(["--platform", "linux/arm/v7", "build", "--offline"])
        .args([&reference, "-o", "arm.ext4"])
        .output()
        .expect("runs");
    assert_eq!(offline.status.code(), Some(3), "{}", stderr(&offline));
    assert!(
        stderr(&offline).contains("linux/arm/v7") && stderr(&offline).contains("not cached"),
        "{}",
        stderr(&offline)
    );
    ok(
        home.path(),
        &[
            "--platform",
            "linux/arm/v7",
            "build",
            &reference,
            "-o",
            "arm.ext4",
        ],
    );
    assert!(home.path().join("arm.ext4").is_file());
    // Every platform used stays cached: amd64 unpacks offline.
    let amd = home.path().join("amd64").display().to_string();
    ok(
        home.path(),
        &[
            "--platform",
            "linux/amd64",
            "unpack",
            "--offline",
            &reference,
            &amd,
        ],
    );
    let platforms: Vec<String> = listed(home.path()).into_iter().map(|r| r.2).collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm/v7", "linux/arm64/v8"]);
}

#[test]
fn images_lists_each_platform_and_rm_platform_removes_one() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, _) = fixture("multiarch");
    for platform in ["linux/amd64", "linux/arm64"] {
        ok(
            home.path(),
            &["--platform", platform, "pull", "-q", &reference],
        );
    }
    let arm_name = format!("{reference}@linux/arm64/v8");
    assert_eq!(
        listed(home.path()),
        vec![
            (
                reference.clone(),
                reference.clone(),
                "linux/amd64".to_owned()
            ),
            (reference.clone(), arm_name, "linux/arm64/v8".to_owned()),
        ]
    );
    let table = ok(home.path(), &["images"]);
    for platform in ["linux/amd64", "linux/arm64/v8"] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(&reference) && l.contains(platform)),
            "{table}"
        );
    }
    // One platform goes; the other keeps working, now under the plain name.
    let removed = ok(
        home.path(),
        &["--platform", "linux/amd64", "rm", &reference],
    );
    assert!(removed.contains("linux/amd64"), "{removed}");
    assert_eq!(
        listed(home.path()),
        vec![(
            reference.clone(),
            reference.clone(),
            "linux/arm64/v8".to_owned()
        )]
    );
    let absent = cachectl(home.path())
        .args(["--platform", "linux/amd64", "rm", &reference])
        .output()
        .expect("runs");
    assert_eq!(absent.status.code(), Some(3), "{}", stderr(&absent));
    ok(home.path(), &["rm", &reference]);
    assert_eq!(listed(home.path()), vec![]);
}

/// The digest of the first layer of `index.json` entry `name` in the store
/// under `home`.
fn first_layer_of(home: &Path, name: &str) -> String {
    let root = home.join("cache");
    let read_json = |path: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).expect("reads")).expect("JSON")
    };
    let index = read_json(&root.join("index.json"));
    let entry = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap_or_else(|| panic!("no entry {name} in {index}"));
    let blob = |digest: &str| root.join("blobs/sha256").join(&digest["sha256:".len()..]);
    let manifest = read_json(&blob(entry["digest"].as_str().expect("digest")));
    manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer digest")
        .to_owned()
}

#[test]
fn verify_of_a_reference_covers_every_cached_platform_of_it() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, _) = fixture("multiarch");
    let (other, _) = fixture("layered");
    for platform in ["linux/amd64", "linux/arm64"] {
        ok(
            home.path(),
            &["--platform", platform, "pull", "-q", &reference],
        );
    }
    ok(home.path(), &["pull", "-q", &other]);
    // Damage a layer only the second platform (entry REF@linux/arm64/v8) has.
    let arm_name = format!("{reference}@linux/arm64/v8");
    let layer = first_layer_of(home.path(), &arm_name);
    assert_ne!(layer, first_layer_of(home.path(), &reference));
    let path = home
        .path()
        .join("cache/blobs/sha256")
        .join(&layer["sha256:".len()..]);
    std::fs::write(&path, b"not the layer").expect("damages the layer");

    // The reference is concerned through its second platform: the blob is
    // found corrupt (and moved aside)...
    let verify = |args: &[&str]| {
        let out = cachectl(home.path())
            .args(["verify", "--json"])
            .args(args)
            .output()
            .expect("runs");
        let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
        (out.status.code(), json)
    };
    let (code, json) = verify(&[&reference]);
    assert_eq!(code, Some(6), "{json}");
    let corrupt = json["corrupt"].as_array().expect("corrupt");
    assert_eq!(corrupt.len(), 1, "{json}");
    assert_eq!(corrupt[0]["digest"], layer.as_str(), "{json}");
    assert_eq!(
        corrupt[0]["references"],
        serde_json::json!([arm_name]),
        "{json}"
    );
    // ...another image is not concerned...
    let (code, json) = verify(&[&other]);
    assert_eq!(code, Some(0), "{json}");
    // ...and the reference now lacks the blob.
    let (code, json) = verify(&[&reference]);
    assert_eq!(code, Some(6), "{json}");
    assert_eq!(json["missing"][0]["digest"], layer.as_str(), "{json}");
    assert_eq!(
        json["missing"][0]["references"],
        serde_json::json!([arm_name]),
        "{json}"
    );
}

#[test]
fn a_stored_pinned_digest_costs_no_request_to_pull_unpack_or_build() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, digest) = fixture("multiarch");
    let registry = env("CACHECTL_TEST_REGISTRY");
    let (forwarder, connections) = counting_forwarder(registry.clone());
    let repository = reference
        .strip_prefix(&format!("{registry}/"))
        .and_then(|rest| rest.rsplit_once(':'))
        .expect("REGISTRY/REPOSITORY:TAG")
        .0;
    let pinned = format!("{forwarder}/{repository}@{digest}");
    let pulled = ok(home.path(), &["pull", &pinned]);
    assert!(connections.load(Ordering::SeqCst) > 0);
    connections.store(0, Ordering::SeqCst);
    let again = ok(home.path(), &["pull", "--json", &pinned]);
    let json: serde_json::Value = serde_json::from_str(&again).expect("JSON");
    assert_eq!(json[0]["up_to_date"], true);
    assert_eq!(json[0]["digest"].as_str(), Some(pulled.trim()));
    let rootfs = home.path().join("rootfs").display().to_string();
    ok(home.path(), &["unpack", &pinned, &rootfs]);
    ok(home.path(), &["build", &pinned, "-o", "pinned.ext4"]);
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "pull, unpack and build of a stored pinned digest make no request"
    );
}
