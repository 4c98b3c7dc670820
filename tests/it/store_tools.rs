//! `ocistore` roots read and written by other tools: `open` refusing a
//! foreign directory, skopeo and umoci reading a pulled image, and an image
//! skopeo wrote into the root listed, verified and unpacked.

use crate::store::{client, find_on_path, fixture};
use cachectl_tests::registries;
use ocistore::{Error, PullOptions, Store};

#[test]
fn open_refuses_a_foreign_directory_and_an_unknown_layout_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), b"mine").expect("written");
    match Store::open(dir.path()) {
        Err(Error::NotALayout { path, .. }) => assert_eq!(path, dir.path()),
        other => panic!("expected NotALayout, got {other:?}"),
    }
    assert!(
        !dir.path().join(".cachectl").exists(),
        "nothing written into a foreign dir"
    );

    let layout = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        layout.path().join("oci-layout"),
        br#"{"imageLayoutVersion":"2.0.0"}"#,
    )
    .expect("written");
    std::fs::write(
        layout.path().join("index.json"),
        br#"{"schemaVersion":2,"manifests":[]}"#,
    )
    .expect("written");
    let err = Store::open(layout.path()).expect_err("unknown version refused");
    assert!(err.to_string().contains("2.0.0"), "{err}");
}

#[tokio::test]
async fn skopeo_inspects_a_pulled_image_by_its_ref_name() {
    let skopeo =
        find_on_path("skopeo").expect("skopeo is on PATH (`cargo xtask test` installs it)");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let reference = fixture("small");
    let outcome = store
        .pull(&client(), &reference, &PullOptions::default())
        .await
        .expect("pull succeeds");
    // skopeo splits `oci:PATH:REF` at the first `:` after the path; the rest
    // is the `org.opencontainers.image.ref.name` annotation, verbatim.
    let output = std::process::Command::new(skopeo)
        .arg("inspect")
        .arg(format!("oci:{}:{}", dir.path().display(), reference))
        .output()
        .expect("skopeo runs");
    assert!(
        output.status.success(),
        "skopeo failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let inspected: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(inspected["Digest"], outcome.manifest_digest.to_string());
}

#[tokio::test]
async fn umoci_unpacks_and_skopeo_copies_a_pulled_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let store = Store::open(&root).expect("store opens");
    let reference = fixture("small");
    store
        .pull(&client(), &reference, &PullOptions::default())
        .await
        .expect("pull succeeds");
    // umoci 0.4 takes `--image ROOT:REF` and, like skopeo, splits at the
    // first `:`: the full reference works as the tag.
    let bundle = dir.path().join("bundle");
    let output = std::process::Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:{reference}", root.display()))
        .arg(&bundle)
        .output()
        .expect("umoci runs (`cargo xtask test` installs it)");
    assert!(
        output.status.success(),
        "umoci unpack failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(bundle.join("rootfs/bin/hello").is_file());
    // skopeo copies it out to a `dir:` target.
    let copied = dir.path().join("copied");
    let output = std::process::Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:{reference}", root.display()))
        .arg(format!("dir:{}", copied.display()))
        .output()
        .expect("skopeo runs");
    assert!(
        output.status.success(),
        "skopeo copy failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(copied.join("manifest.json").is_file());
}

#[tokio::test]
async fn an_image_skopeo_wrote_into_the_root_is_listed_verified_and_unpacked() {
    let registries = registries();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let reference = fixture("layered");
    let source = format!(
        "docker://{}/{}:{}",
        registries.plain,
        reference.repository(),
        reference.tag().expect("tagged")
    );
    let output = std::process::Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(&source)
        .arg(format!("oci:{}:{reference}", dir.path().display()))
        .output()
        .expect("skopeo runs (`cargo xtask test` installs it)");
    assert!(
        output.status.success(),
        "skopeo copy failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: Vec<String> = store
        .list()
        .expect("list")
        .iter()
        .map(|entry| entry.reference.to_string())
        .collect();
    assert!(listed.contains(&reference.to_string()), "{listed:?}");
    let report = store.verify().expect("verify runs");
    assert!(report.is_ok(), "{report:?}");
    // Inspected from what skopeo wrote alone (no record).
    let inspection = store.inspect(&reference).expect("inspects");
    assert!(inspection.record.is_none());
    assert_eq!(inspection.images.len(), 1);
    assert_eq!(inspection.images[0].config.os.as_deref(), Some("linux"));
    assert!(inspection.images[0].layers.iter().all(|l| l.present));
    // Unpacked from what skopeo wrote, the same tree umoci unpacks.
    let work = tempfile::tempdir().expect("tempdir");
    crate::rootfs_compare::assert_same_as_umoci(
        &store,
        &reference,
        &store,
        &reference,
        work.path(),
    );
    // A pull of the same reference now finds it in place: one HEAD.
    let outcome = store
        .pull(&client(), &reference, &PullOptions::default())
        .await
        .expect("pull");
    assert!(outcome.up_to_date, "{outcome:?}");
}
