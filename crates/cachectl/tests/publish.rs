//! Publishing what the cache holds, checked against the registry with
//! skopeo: `push --arch-tags` (a tag per platform, naming that platform's
//! manifest), `index create` (a multi-platform index of cached images,
//! pushed), and `referrers` (the SBOM a `pull --referrers` stored).

mod support;

use serde_json::Value;
use std::path::Path;
use support::{cachectl, env, fixture, stderr, stdout};

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

#[test]
fn index_create_assembles_cached_images_into_a_pushed_index() {
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();
    let (multiarch, _) = fixture("multiarch");
    let (_, fixture_index) = skopeo_raw(&format!("docker://{multiarch}"));
    let platforms = entries(&fixture_index);
    let repository = multiarch.rsplit_once(':').expect("a tag").0;
    // Each platform's image, cached on its own (pulled by digest).
    let sources: Vec<String> = platforms
        .iter()
        .map(|(_, digest)| format!("{repository}@{digest}"))
        .collect();
    let mut pull = vec!["pull", "-q"];
    pull.extend(sources.iter().map(String::as_str));
    let pulled = cachectl(home).args(&pull).output().expect("runs");
    assert!(pulled.status.success(), "{}", stderr(&pulled));

    let name = format!("{}/assembled/app:2", env("CACHECTL_TEST_REGISTRY"));
    let mut create = vec!["index", "create", "--json", "--push", name.as_str()];
    create.extend(sources.iter().map(String::as_str));
    let created = json(home, &create);
    let (raw, pushed) = skopeo_raw(&format!("docker://{name}"));
    assert_eq!(
        created["index"]["digest"],
        sha256(&raw).as_str(),
        "{created}"
    );
    assert_eq!(
        pushed["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(
        entries(&pushed),
        platforms,
        "each image with its config's platform"
    );
    assert_eq!(created["push"]["digest"], created["index"]["digest"]);
    let inspected = json(home, &["inspect", "--json", &name]);
    assert_eq!(inspected["platforms"].as_array().map(Vec::len), Some(3));

    let text = cachectl(home)
        .args(["index", "create", "example.com/local:1", &sources[0]])
        .output()
        .expect("runs");
    assert!(text.status.success(), "{}", stderr(&text));
    assert!(stdout(&text).contains("linux/amd64"), "{}", stdout(&text));

    let twice = fails(
        home,
        2,
        &[
            "index",
            "create",
            "example.com/dup:1",
            &sources[1],
            &sources[1],
        ],
    );
    assert!(
        twice.contains("linux/arm64") && twice.contains("one image per platform"),
        "{twice}"
    );
    let of_index = fails(home, 2, &["index", "create", "example.com/nested:1", &name]);
    assert!(of_index.contains("multi-platform index"), "{of_index}");
    let absent = fails(
        home,
        3,
        &["index", "create", "example.com/x:1", "example.com/absent:1"],
    );
    assert!(absent.contains("example.com/absent:1"), "{absent}");
    let images = json(home, &["images", "--json"]);
    let names: Vec<&str> = images
        .as_array()
        .expect("images")
        .iter()
        .filter_map(|i| i["ref"].as_str())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("dup") || n.contains("nested")),
        "a refused index stores nothing: {names:?}"
    );
}

#[test]
fn referrers_lists_and_prints_the_stored_sbom() {
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();
    let (reference, digest) = fixture("with-sbom");
    let repository = reference.rsplit_once(':').expect("a tag").0;
    json(home, &["pull", "--json", "--referrers", reference.as_str()]);

    // The registry's own list: the referrers tag schema's index.
    let tag = digest.replace(':', "-");
    let (_, theirs) = skopeo_raw(&format!("docker://{repository}:{tag}"));
    let sbom = &theirs["manifests"][0];
    let listed = json(home, &["referrers", "--json", &reference]);
    let ours = listed["referrers"].as_array().expect("referrers");
    assert_eq!(ours.len(), 1, "{listed}");
    assert_eq!(ours[0]["digest"], sbom["digest"], "{listed}");
    assert_eq!(ours[0]["size"], sbom["size"]);
    assert_eq!(ours[0]["artifact_type"], "application/spdx+json");
    assert_eq!(ours[0]["subject"], digest.as_str());

    let sbom_digest = sbom["digest"].as_str().expect("digest");
    let out = cachectl(home)
        .args(["referrers", "--raw", sbom_digest, &reference])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sha256(&out.stdout), sbom_digest);
    let (registry_bytes, _) = skopeo_raw(&format!("docker://{repository}@{sbom_digest}"));
    assert_eq!(out.stdout, registry_bytes);

    let other = format!("sha256:{}", "0".repeat(64));
    let refused = fails(home, 3, &["referrers", "--raw", &other, &reference]);
    assert!(refused.contains(&other), "{refused}");
    fails(
        home,
        2,
        &["referrers", "--raw", "sha256:nothex", &reference],
    );
    let absent = fails(home, 3, &["referrers", "example.com/absent:1"]);
    assert!(absent.contains("example.com/absent:1"), "{absent}");

    let (small, _) = fixture("small");
    json(home, &["pull", "--json", small.as_str()]);
    let none = json(home, &["referrers", "--json", &small]);
    assert_eq!(none["referrers"], serde_json::json!([]));
}
