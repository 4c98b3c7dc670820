//! `ocistore` export of image archives, without a registry: OCI and docker
//! exports read back by skopeo and imported again, an export of a missing
//! or corrupt image writing nothing, and a blob missing from both archive
//! and store named in the error.

use crate::archives::{
    Fixtures, append, full, ingest_files, reference, run, skopeo_json, snapshot, strings, write,
};
use ociref::Digest;
use ocistore::{Error, ExportFormat, ImportOptions, Store};
use std::collections::BTreeMap;
use std::path::Path;

/// A store holding `names` (fixture name, full reference), imported from
/// an OCI archive.
fn filled(fixtures: &Fixtures, dir: &Path, names: &[(&str, &str)]) -> Store {
    let entries: Vec<(&str, Option<&str>)> = names.iter().map(|(n, r)| (*n, Some(*r))).collect();
    let tar = fixtures.oci_archive(&entries, |_, _| {});
    let store = Store::open(dir.join("store")).expect("store");
    store
        .import(&write(dir, "fill.tar", &tar), &ImportOptions::default())
        .expect("imports");
    store
}

#[test]
fn an_oci_export_is_read_by_skopeo_and_imports_again() {
    let fixtures = Fixtures::build();
    let work = tempfile::tempdir().expect("tempdir");
    let small = "127.0.0.1:5000/fixtures/small:v1";
    let layered = full("layered-zstd");
    let store = filled(
        &fixtures,
        work.path(),
        &[("small", small), ("layered-zstd", &layered)],
    );
    let out = work.path().join("out").join("images.tar");
    std::fs::create_dir_all(out.parent().expect("parent")).expect("out dir");
    let references = [reference(small), reference(&layered)];
    let report = store
        .export(&references, ExportFormat::Oci, &out)
        .expect("exports");
    assert_eq!(
        report.bytes_written,
        std::fs::metadata(&out).expect("written").len()
    );
    assert!(report.blobs_written >= 6, "{report:?}");
    assert_eq!(
        std::fs::read_dir(out.parent().expect("parent"))
            .expect("out dir")
            .count(),
        1,
        "no temp file is left next to the archive"
    );
    for (name, text) in [("small", small), ("layered-zstd", layered.as_str())] {
        // skopeo splits at the first `:` after the path: the rest, colons
        // and all, is the ref name.
        let source = format!("oci-archive:{}:{text}", out.display());
        let inspected = skopeo_json(&["inspect", &source]);
        assert_eq!(
            inspected["Digest"],
            fixtures.get(name).manifest.digest.to_string(),
            "{name}: {inspected}"
        );
        let copy = work.path().join(format!("copy-{name}"));
        run(
            "skopeo",
            &["copy", &source, &format!("dir:{}", copy.display())],
        );
        assert!(copy.join("manifest.json").is_file());
    }
    let fresh = Store::open(work.path().join("fresh")).expect("store");
    let imported = fresh
        .import(&out, &ImportOptions::default())
        .expect("the export imports");
    let digests: BTreeMap<String, Digest> = imported
        .images
        .iter()
        .map(|i| (i.reference.clone(), i.manifest_digest.clone()))
        .collect();
    assert_eq!(digests[small], fixtures.get("small").manifest.digest);
    assert_eq!(
        digests[&layered],
        fixtures.get("layered-zstd").manifest.digest
    );
    assert!(fresh.verify().expect("verify").is_ok());
}

#[test]
fn a_docker_export_is_read_by_skopeo_with_layers_decompressed() {
    let fixtures = Fixtures::build();
    let work = tempfile::tempdir().expect("tempdir");
    let names = [
        ("small", full("small")),
        ("layered-zstd", full("layered-zstd")),
        ("layered-uncompressed", full("layered-uncompressed")),
    ];
    let pairs: Vec<(&str, &str)> = names.iter().map(|(n, r)| (*n, r.as_str())).collect();
    let store = filled(&fixtures, work.path(), &pairs);
    for (name, text) in &names {
        let out = work.path().join(format!("{name}-docker.tar"));
        store
            .export(&[reference(text)], ExportFormat::Docker, &out)
            .unwrap_or_else(|err| panic!("{name}: exports: {err}"));
        let dir = work.path().join(format!("{name}-oci"));
        run(
            "skopeo",
            &[
                "copy",
                &format!("docker-archive:{}", out.display()),
                &format!("oci:{}:x", dir.display()),
            ],
        );
        let target = format!("oci:{}:x", dir.display());
        let raw = skopeo_json(&["inspect", "--raw", &target]);
        let fixture = fixtures.get(name);
        let (config, _) = fixtures.image(&fixture.manifest.digest);
        assert_eq!(raw["config"]["digest"], config.to_string(), "{name}: {raw}");
        let diff_ids = fixtures.diff_ids(&fixture.manifest.digest);
        // skopeo may compress layers for an `oci:` destination: look at
        // the archive itself for the decompressed layers.
        assert_eq!(docker_layers(&out), diff_ids, "{name}: layers decompressed");
        let inspected = skopeo_json(&["inspect", "--config", &target]);
        assert_eq!(strings(&inspected["rootfs"]["diff_ids"]), diff_ids);
        // The docker archive imports back, under its RepoTag.
        let fresh = Store::open(work.path().join(format!("fresh-{name}"))).expect("store");
        let imported = fresh
            .import(&out, &ImportOptions::default())
            .expect("imports");
        assert_eq!(imported.images[0].reference, *text);
        assert!(fresh.verify().expect("verify").is_ok());
    }
}

/// The `Layers` of the one item of the docker archive `path`, each checked
/// to be an entry hashing to its name (`<hex>/layer.tar`); as digests.
fn docker_layers(path: &Path) -> Vec<String> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).expect("archive"));
    let mut files = BTreeMap::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).expect("reads");
        files.insert(name, bytes);
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&files["manifest.json"]).expect("manifest.json parses");
    strings(&manifest[0]["Layers"])
        .iter()
        .map(|layer| {
            let hex = layer.strip_suffix("/layer.tar").expect("<hex>/layer.tar");
            let digest = Digest::sha256_of(&files[layer]);
            assert_eq!(digest.encoded(), hex, "{layer} hashes to its name");
            digest.to_string()
        })
        .collect()
}

#[test]
fn an_export_of_a_missing_or_corrupt_image_writes_nothing() {
    let fixtures = Fixtures::build();
    let work = tempfile::tempdir().expect("tempdir");
    let small = full("small");
    let store = filled(&fixtures, work.path(), &[("small", &small)]);
    let out_dir = work.path().join("out");
    std::fs::create_dir_all(&out_dir).expect("out dir");
    let out = out_dir.join("images.tar");

    let missing = reference("example.com/fixtures/absent:v1");
    for format in [ExportFormat::Oci, ExportFormat::Docker] {
        let err = store
            .export(&[reference(&small), missing.clone()], format, &out)
            .expect_err("an absent image is refused");
        assert!(
            matches!(&err, Error::ImageNotCached { reference } if *reference == missing.to_string()),
            "{err:?}"
        );
        assert!(!out.exists());
    }

    let (_, layers) = fixtures.image(&fixtures.get("small").manifest.digest);
    let path = store.blob_path(&layers[0]);
    let mut bytes = std::fs::read(&path).expect("layer stored");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).expect("layer damaged");
    for format in [ExportFormat::Oci, ExportFormat::Docker] {
        let err = store
            .export(&[reference(&small)], format, &out)
            .expect_err("a corrupt blob is never exported");
        assert!(
            matches!(&err, Error::Corrupt { digest, .. } if *digest == layers[0]),
            "{format:?}: {err:?}"
        );
        assert!(!out.exists(), "{format:?}");
        assert_eq!(
            std::fs::read_dir(&out_dir).expect("out dir").count(),
            0,
            "{format:?}: no temp file left"
        );
        assert!(
            ingest_files(&store).is_empty(),
            "{:?}",
            ingest_files(&store)
        );
    }
}

/// `tar` without the entry `name`.
fn without(tar: &[u8], name: &str) -> Vec<u8> {
    let mut out = tar::Builder::new(Vec::new());
    for entry in tar::Archive::new(tar).entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").to_string_lossy().into_owned();
        if path == name {
            continue;
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).expect("reads");
        append(&mut out, &path, &bytes);
    }
    out.into_inner().expect("in memory")
}

#[test]
fn a_blob_missing_from_archive_and_store_fails_naming_it() {
    let fixtures = Fixtures::build();
    let work = tempfile::tempdir().expect("tempdir");
    let store = Store::open(work.path().join("store")).expect("store");
    let small = fixtures.get("small");
    let (config, _) = fixtures.image(&small.manifest.digest);
    let name = full("small");
    let tar = fixtures.oci_archive(&[("small", Some(&name))], |_, _| {});
    let partial = without(&tar, &format!("blobs/sha256/{}", config.encoded()));
    let archive = write(work.path(), "partial.tar", &partial);
    let before = snapshot(&store);
    let err = store
        .import(&archive, &ImportOptions::default())
        .expect_err("a missing config is refused");
    assert!(
        matches!(&err, Error::ArchiveMissingBlob { digest, reference, .. }
            if *digest == config && *reference == name),
        "{err:?}"
    );
    assert!(err.to_string().contains(config.as_str()), "{err}");
    assert_eq!(snapshot(&store), before);
    assert!(store.list().expect("list").is_empty());
    assert!(ingest_files(&store).is_empty());

    // Once the store holds the config, the same archive is complete.
    store
        .import(
            &write(work.path(), "full.tar", &tar),
            &ImportOptions::default(),
        )
        .expect("imports");
    store.remove(&reference(&name)).expect("removes");
    let report = store
        .import(&archive, &ImportOptions::default())
        .expect("the store completes the archive");
    assert_eq!(report.images[0].manifest_digest, small.manifest.digest);
    assert!(store.verify().expect("verify").is_ok());
}
