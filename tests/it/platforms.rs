//! Several platforms of one reference side by side in the store (one
//! `index.json` entry per reference and platform, read by skopeo and
//! umoci), and pinned digests that cost no request once stored.

use crate::store::{client, fixture, read_index};
use cachectl_tests::fault_proxy::FaultProxy;
use cachectl_tests::{fixtures, registries};
use ociref::{Platform, Reference};
use ocistore::{PullOptions, Store};
use std::path::Path;

fn platform(text: &str) -> Platform {
    text.parse().expect("platform parses")
}

/// Runs `program` with `args`; panics with its stderr when it fails.
fn run(program: &str, args: &[String]) -> String {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("{program} runs (`cargo xtask test` installs it): {err}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What skopeo and umoci find under the entry `name` of the layout at
/// `root`: the architecture skopeo reports, the `/arch` file of the image
/// skopeo copies out, and the `/arch` file umoci unpacks.
fn read_by_name(root: &Path, name: &str, scratch: &Path) -> (String, String, String) {
    let image = format!("oci:{}:{name}", root.display());
    let inspected = run("skopeo", &["inspect".into(), image.clone()]);
    let inspected: serde_json::Value = serde_json::from_str(&inspected).expect("JSON");
    let architecture = inspected["Architecture"].as_str().expect("arch").to_owned();
    let copied = scratch.join("copied");
    run(
        "skopeo",
        &[
            "copy".into(),
            "--quiet".into(),
            image,
            format!("dir:{}", copied.display()),
        ],
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(copied.join("manifest.json")).expect("skopeo wrote manifest.json"),
    )
    .expect("JSON");
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .expect("a layer")
        .trim_start_matches("sha256:");
    let layer = std::fs::read(copied.join(layer)).expect("skopeo copied the layer");
    let copied_arch = arch_in_layer(&layer);
    let bundle = scratch.join("bundle");
    run(
        "umoci",
        &[
            "unpack".into(),
            "--rootless".into(),
            "--image".into(),
            format!("{}:{name}", root.display()),
            bundle.display().to_string(),
        ],
    );
    let unpacked = std::fs::read_to_string(bundle.join("rootfs/arch")).expect("umoci unpacked");
    (architecture, copied_arch, unpacked)
}

/// The content of `arch` in a gzip layer of the `multiarch` fixture.
fn arch_in_layer(gzip: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let layer = dir.path().join("layer.tar.gz");
    std::fs::write(&layer, gzip).expect("written");
    run(
        "tar",
        &[
            "-xzf".into(),
            layer.display().to_string(),
            "-C".into(),
            dir.path().display().to_string(),
        ],
    );
    std::fs::read_to_string(dir.path().join("arch")).expect("the layer holds /arch")
}

#[tokio::test]
async fn two_platforms_of_a_tag_stay_side_by_side_and_skopeo_and_umoci_read_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let store = Store::open(&root).expect("store opens");
    let reference = fixture("multiarch");
    for p in ["linux/amd64", "linux/arm64"] {
        store
            .pull(
                &client(),
                &reference,
                &PullOptions::for_platform(platform(p)),
            )
            .await
            .expect("pull succeeds");
    }
    let name = reference.to_string();
    let arm_name = format!("{name}@linux/arm64/v8");
    // Two entries, one name each, each with its platform in the descriptor.
    let index = read_index(&root);
    let entries = index["manifests"].as_array().expect("manifests");
    let named: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["annotations"][ocistore::REF_NAME_ANNOTATION]
                    .as_str()
                    .expect("named"),
                e["platform"]["architecture"].as_str().expect("platform"),
            )
        })
        .collect();
    assert_eq!(
        named,
        vec![(name.as_str(), "amd64"), (arm_name.as_str(), "arm64")]
    );
    // skopeo and umoci read each platform by its entry's name.
    for (entry, arch, file) in [
        (&name, "amd64", "linux/amd64\n"),
        (&arm_name, "arm64", "linux/arm64/v8\n"),
    ] {
        let scratch = tempfile::tempdir().expect("tempdir");
        let (inspected, copied, unpacked) = read_by_name(&root, entry, scratch.path());
        assert_eq!(inspected, arch, "skopeo inspect of {entry}");
        assert_eq!(copied, file, "skopeo copy of {entry}");
        assert_eq!(unpacked, file, "umoci unpack of {entry}");
    }
    // The store finds each by platform; list names both; gc keeps both.
    let listed = store.list().expect("lists");
    let mut platforms: Vec<String> = listed
        .iter()
        .map(|e| {
            assert_eq!(e.image_reference, name);
            e.platform.as_ref().expect("platform known").to_string()
        })
        .collect();
    platforms.sort();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);
    store.gc().expect("gc");
    assert!(store.verify().expect("verifies").is_ok());
    for (p, file) in [
        ("linux/arm64", "linux/arm64/v8\n"),
        ("linux/amd64", "linux/amd64\n"),
    ] {
        let out = dir.path().join(p.replace('/', "-"));
        rootfs::unpack(
            &store
                .image(&reference, Some(&platform(p)))
                .expect("stored image"),
            &out,
            &rootfs::UnpackOptions::default(),
        )
        .expect("unpacks after gc");
        assert_eq!(
            std::fs::read_to_string(out.join("arch")).expect("arch"),
            file
        );
    }
    // A tag names both platforms; removing one platform keeps the other
    // under the plain name.
    let other: Reference = format!("{}/copy:v1", registries().plain)
        .parse()
        .expect("reference");
    store.tag(&reference, &other).expect("tags");
    assert_eq!(store.list().expect("lists").len(), 4);
    let amd = platform("linux/amd64");
    assert!(store.remove_platform(&reference, &amd).expect("removes"));
    assert!(!store.remove_platform(&reference, &amd).expect("removes"));
    let left = store.inspect(&reference).expect("the other platform stays");
    assert_eq!(left.images.len(), 1);
    assert_eq!(left.images[0].config.architecture.as_deref(), Some("arm64"));
    let scratch = tempfile::tempdir().expect("tempdir");
    let (inspected, _, _) = read_by_name(&root, &name, scratch.path());
    assert_eq!(
        inspected, "arm64",
        "the plain name passed to the arm64 entry"
    );
    assert!(store.remove(&other).expect("removes"));
    assert_eq!(store.list().expect("lists").len(), 1);
}

#[tokio::test]
async fn a_stored_pinned_digest_is_pulled_again_without_a_request() {
    let proxy = FaultProxy::start(&registries().plain, vec![]);
    let summary = fixtures();
    let digest = summary["multiarch"]["digest"].as_str().expect("digest");
    let pinned: Reference = format!(
        "{}/{}@{digest}",
        proxy.addr(),
        summary["multiarch"]["repository"]
            .as_str()
            .expect("repository")
    )
    .parse()
    .expect("reference");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("store")).expect("store opens");
    let arm = PullOptions::for_platform(platform("linux/arm64"));
    let first = store
        .pull(&client(), &pinned, &arm)
        .await
        .expect("first pull");
    assert!(!first.up_to_date);
    let before = proxy.requests().len();
    assert!(before > 0);
    let again = store
        .pull(&client(), &pinned, &arm)
        .await
        .expect("second pull");
    assert!(again.up_to_date);
    assert_eq!(again.manifest_digest, first.manifest_digest);
    assert_eq!(
        proxy.requests()[before..]
            .iter()
            .map(|r| format!("{} {}", r.method, r.path_and_query))
            .collect::<Vec<_>>(),
        Vec::<String>::new(),
        "a stored pinned digest needs no request"
    );
    // Another platform of the same digest is not stored: that one is fetched.
    let amd = store
        .pull(
            &client(),
            &pinned,
            &PullOptions::for_platform(platform("linux/amd64")),
        )
        .await
        .expect("pull of another platform");
    assert!(!amd.up_to_date);
    assert!(proxy.requests().len() > before);
}

#[tokio::test]
async fn a_store_with_one_entry_per_reference_keeps_working() {
    // As written before platforms could coexist: one entry per reference,
    // no `platform` field in it, the platform only in the record.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let store = Store::open(&root).expect("store opens");
    let reference = fixture("multiarch");
    let amd = platform("linux/amd64");
    store
        .pull(
            &client(),
            &reference,
            &PullOptions::for_platform(amd.clone()),
        )
        .await
        .expect("pull succeeds");
    let mut index = read_index(&root);
    let entry = index["manifests"][0].as_object_mut().expect("an entry");
    assert!(entry.remove("platform").is_some());
    store
        .open_dir(&root)
        .expect("root")
        .write_atomic(
            "index.json",
            &serde_json::to_vec(&index).expect("serializes"),
        )
        .expect("written");
    // Warm for its platform, and another platform is added beside it.
    let warm = store
        .pull(
            &client(),
            &reference,
            &PullOptions::for_platform(amd.clone()),
        )
        .await
        .expect("warm pull");
    assert!(warm.up_to_date);
    store
        .pull(
            &client(),
            &reference,
            &PullOptions::for_platform(platform("linux/arm64")),
        )
        .await
        .expect("pull of another platform");
    let listed = store.list().expect("lists");
    let mut platforms: Vec<(String, String)> = listed
        .iter()
        .map(|e| {
            let p = e.platform.as_ref().expect("platform known");
            (e.reference.clone(), p.to_string())
        })
        .collect();
    platforms.sort();
    let name = reference.to_string();
    assert_eq!(
        platforms,
        vec![
            (name.clone(), "linux/amd64".to_owned()),
            (
                format!("{name}@linux/arm64/v8"),
                "linux/arm64/v8".to_owned()
            ),
        ]
    );
    let amd_image = store
        .inspect_platform(&reference, Some(&amd))
        .expect("inspects");
    assert_eq!(
        amd_image.images[0].config.architecture.as_deref(),
        Some("amd64")
    );
}
