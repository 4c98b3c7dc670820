//! Publishing what the cache holds, checked against the registry with
//! skopeo: `push --arch-tags` (a tag per platform, naming that platform's
//! manifest).

mod support;

use serde_json::Value;
use std::path::Path;
use support::{cachectl, env, fixture, stderr};

/// skopeo's `inspect --raw` of `target`, parsed.
fn skopeo_raw(target: &str) -> (Vec<u8>, Value) {
    let output = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", target])
        .output()
        .expect("skopeo runs (`cargo xtask test` installs it)");
    assert!(
        output.status.success(),
        "skopeo inspect --raw {target}: {}",
        stderr(&output)
    );
    let value = serde_json::from_slice(&output.stdout).expect("JSON");
    (output.stdout, value)
}

/// Runs `cachectl ARGS`, expects success, returns stdout parsed as JSON.
fn json(home: &Path, args: &[&str]) -> Value {
    let out = cachectl(home).args(args).output().expect("runs");
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// Runs `cachectl ARGS`, expects it to fail with `code`, returns stderr.
fn fails(home: &Path, code: i32, args: &[&str]) -> String {
    let out = cachectl(home).args(args).output().expect("runs");
    assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
    stderr(&out)
}

fn sha256(bytes: &[u8]) -> String {
    ociref::Digest::sha256_of(bytes).to_string()
}

/// `(os/arch[/variant], digest)` of each entry of an index.
fn entries(index: &Value) -> Vec<(String, String)> {
    index["manifests"]
        .as_array()
        .expect("an index")
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut platform = format!(
                "{}/{}",
                p["os"].as_str().expect("os"),
                p["architecture"].as_str().expect("architecture")
            );
            if let Some(variant) = p["variant"].as_str() {
                platform = format!("{platform}/{variant}");
            }
            (platform, m["digest"].as_str().expect("digest").to_owned())
        })
        .collect()
}

#[test]
fn push_arch_tags_tags_each_platforms_manifest() {
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();
    let (multiarch, index_digest) = fixture("multiarch");
    json(
        home,
        &["pull", "--json", "--all-platforms", multiarch.as_str()],
    );
    let repository = format!("{}/archtags/app", env("CACHECTL_TEST_REGISTRY"));
    let destination = format!("{repository}:1.0");
    let pushed = json(
        home,
        &["push", "--json", "--arch-tags", &multiarch, &destination],
    );
    assert_eq!(pushed["digest"], index_digest.as_str(), "{pushed}");

    let (_, index) = skopeo_raw(&format!("docker://{multiarch}"));
    let expected: Vec<(String, String)> = entries(&index)
        .into_iter()
        .map(|(platform, digest)| {
            let suffix = match platform.as_str() {
                "linux/amd64" => "amd64",
                "linux/arm64/v8" => "arm64",
                "linux/arm/v7" => "arm-v7",
                other => panic!("unexpected platform {other}"),
            };
            (format!("1.0-{suffix}"), digest)
        })
        .collect();
    let listed = json(home, &["tags", "--json", &repository]);
    let mut tags: Vec<&str> = listed["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| t.as_str().expect("a tag"))
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, ["1.0", "1.0-amd64", "1.0-arm-v7", "1.0-arm64"]);
    for (tag, digest) in &expected {
        let (raw, _) = skopeo_raw(&format!("docker://{repository}:{tag}"));
        assert_eq!(&sha256(&raw), digest, "{tag} names its platform's manifest");
        let reported = pushed["arch_tags"]
            .as_array()
            .expect("arch_tags")
            .iter()
            .find(|t| t["reference"] == format!("{repository}:{tag}").as_str())
            .unwrap_or_else(|| panic!("{tag} in {pushed}"));
        assert_eq!(reported["digest"], digest.as_str());
    }

    let pinned = format!("{repository}@{index_digest}");
    let refused = fails(home, 2, &["push", "--arch-tags", &multiarch, &pinned]);
    assert!(refused.contains("--arch-tags needs"), "{refused}");
}
