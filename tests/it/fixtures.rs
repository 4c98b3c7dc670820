//! The fixture images `cargo xtask test` built and pushed: each resolves in
//! the registry to the digest the build produced, with the media types,
//! platforms and referrers it was built with.

use cachectl_tests::fixtures;
use ocidist::credentials::StaticCredentials;
use ocidist::{Client, ClientConfig, ManifestKind};
use ociref::{Digest, Platform, Reference};
use serde_json::Value;
use std::sync::Arc;

fn client() -> Client {
    Client::new(ClientConfig::default(), Arc::new(StaticCredentials::new())).expect("client")
}

fn reference(entry: &Value) -> Reference {
    entry["reference"]
        .as_str()
        .expect("reference")
        .parse()
        .expect("valid reference")
}

fn digest(value: &Value) -> Digest {
    value
        .as_str()
        .expect("digest string")
        .parse()
        .expect("valid digest")
}

#[tokio::test]
async fn every_pushed_fixture_resolves_to_its_built_digest() {
    let summary = fixtures();
    let entries = summary.as_object().expect("an object keyed by name");
    for name in [
        "small",
        "layered",
        "layered-zstd",
        "layered-uncompressed",
        "docker-v2s2",
        "multiarch",
        "big",
        "with-sbom",
    ] {
        assert!(
            entries.contains_key(name),
            "fixture {name} missing from the summary"
        );
    }
    let client = client();
    for (name, entry) in entries {
        let resolved = client
            .resolve(&reference(entry))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(resolved.digest, digest(&entry["digest"]), "{name}");
        assert_eq!(
            resolved.media_type,
            entry["mediaType"].as_str().expect("media type"),
            "{name}"
        );
        assert_eq!(Some(resolved.size), entry["size"].as_u64(), "{name}");
    }
    assert_eq!(
        entries["docker-v2s2"]["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
}

#[tokio::test]
async fn the_multiarch_index_serves_each_platform() {
    let summary = fixtures();
    let entry = &summary["multiarch"];
    let client = client();
    let index = client.manifest(&reference(entry)).await.expect("index");
    let ManifestKind::Index(index) = index.kind else {
        panic!("multiarch is not an index");
    };
    let platforms: Vec<&Value> = entry["platforms"]
        .as_array()
        .expect("platforms")
        .iter()
        .collect();
    assert_eq!(platforms.len(), 3);
    for wanted in ["linux/amd64", "linux/arm64", "linux/arm/v7"] {
        let wanted: Platform = wanted.parse().expect("valid");
        let candidates: Vec<(String, String, Option<String>, String)> = index
            .manifests()
            .iter()
            .filter_map(|m| {
                let p = m.platform().as_ref()?;
                Some((
                    p.os().to_string(),
                    p.architecture().to_string(),
                    p.variant().clone(),
                    m.digest().to_string(),
                ))
            })
            .collect();
        let chosen = wanted
            .best_match(&candidates, |(os, arch, variant, _)| {
                Some((os, arch, variant.as_deref()))
            })
            .unwrap_or_else(|| panic!("no manifest for {wanted}"));
        let expected = platforms
            .iter()
            .find(|p| {
                p["platform"]
                    .as_str()
                    .and_then(|s| s.parse::<Platform>().ok())
                    .as_ref()
                    == Some(&wanted)
            })
            .expect("summary lists the platform");
        assert_eq!(
            chosen.3,
            expected["manifest"]["digest"].as_str().expect("digest")
        );
    }
}

#[tokio::test]
async fn the_big_fixture_has_a_layer_of_at_least_256_mib() {
    let summary = fixtures();
    let target = reference(&summary["big"]);
    let client = client();
    let manifest = client.manifest(&target).await.expect("manifest");
    let ManifestKind::Image(image) = manifest.kind else {
        panic!("big is not an image");
    };
    let layer = &image.layers()[0];
    assert!(layer.size() >= 256 << 20, "layer is {} bytes", layer.size());
    let size = client
        .blob_exists(
            &target,
            &layer.digest().to_string().parse().expect("digest"),
        )
        .await
        .expect("HEAD");
    assert_eq!(size, Some(layer.size()));
}

#[tokio::test]
async fn the_sbom_is_found_as_a_referrer() {
    let summary = fixtures();
    let entry = &summary["with-sbom"];
    let referrers = entry["referrers"].as_array().expect("referrers");
    assert_eq!(referrers.len(), 1);
    let found = client()
        .referrers(
            &reference(entry),
            &digest(&entry["digest"]),
            Some("application/spdx+json"),
        )
        .await
        .expect("referrers");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].digest, digest(&referrers[0]["manifest"]["digest"]));
}
