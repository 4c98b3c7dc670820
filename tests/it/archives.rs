//! `ocistore` import and export of image archives, without a registry: the
//! fixture images are built locally into an OCI layout, archived (by the
//! `tar` crate, GNU tar or skopeo), imported, exported, and read back by
//! skopeo.

use cachectl_fixtures::{BuildOptions, Fixture, build_layout};
use ociref::{Digest, Platform, Reference};
use ocistore::{Error, ImportOptions, Store};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The fixture layout, built in a temp dir.
pub(crate) struct Fixtures {
    dir: tempfile::TempDir,
    all: Vec<Fixture>,
}

impl Fixtures {
    pub(crate) fn build() -> Fixtures {
        let dir = tempfile::tempdir().expect("tempdir");
        let all = build_layout(&dir.path().join("layout"), &BuildOptions::default())
            .expect("fixtures build");
        Fixtures { dir, all }
    }

    fn layout(&self) -> PathBuf {
        self.dir.path().join("layout")
    }

    pub(crate) fn get(&self, name: &str) -> &Fixture {
        self.all
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("fixture {name} is built"))
    }

    fn blob(&self, digest: &Digest) -> Vec<u8> {
        std::fs::read(cachectl_fixtures::blob_path(&self.layout(), digest)).expect("fixture blob")
    }

    fn json(&self, digest: &Digest) -> serde_json::Value {
        serde_json::from_slice(&self.blob(digest)).expect("fixture JSON")
    }

    /// The config and layer digests of the image manifest `manifest`.
    pub(crate) fn image(&self, manifest: &Digest) -> (Digest, Vec<Digest>) {
        let json = self.json(manifest);
        let digest = |v: &serde_json::Value| -> Digest {
            v["digest"]
                .as_str()
                .expect("digest")
                .parse()
                .expect("digest parses")
        };
        let layers = json["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(digest)
            .collect();
        (digest(&json["config"]), layers)
    }

    pub(crate) fn diff_ids(&self, manifest: &Digest) -> Vec<String> {
        let (config, _) = self.image(manifest);
        strings(&self.json(&config)["rootfs"]["diff_ids"])
    }

    /// Every blob `top` reaches, `top` first.
    fn reachable(&self, top: &Digest) -> Vec<Digest> {
        let mut out = vec![top.clone()];
        let mut i = 0;
        while i < out.len() {
            let bytes = self.blob(&out[i]);
            if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                let mut kids = vec![json["config"].clone()];
                for key in ["layers", "manifests"] {
                    kids.extend(json[key].as_array().cloned().unwrap_or_default());
                }
                for kid in kids {
                    if let Some(d) = kid["digest"].as_str() {
                        let d: Digest = d.parse().expect("digest parses");
                        if !out.contains(&d) {
                            out.push(d);
                        }
                    }
                }
            }
            i += 1;
        }
        out
    }

    /// An OCI archive (tar crate) holding the fixtures `entries` (fixture
    /// name, ref.name annotation or none) and only the blobs they reach;
    /// `tamper` may change a blob's bytes.
    pub(crate) fn oci_archive(
        &self,
        entries: &[(&str, Option<&str>)],
        tamper: impl Fn(&Digest, &mut Vec<u8>),
    ) -> Vec<u8> {
        let mut manifests = Vec::new();
        let mut blobs: Vec<Digest> = Vec::new();
        for (name, ref_name) in entries {
            let fixture = self.get(name);
            let mut entry = serde_json::json!({
                "mediaType": fixture.manifest.media_type,
                "digest": fixture.manifest.digest.to_string(),
                "size": fixture.manifest.size,
            });
            if let Some(ref_name) = ref_name {
                entry["annotations"] =
                    serde_json::json!({ "org.opencontainers.image.ref.name": ref_name });
            }
            manifests.push(entry);
            for digest in self.reachable(&fixture.manifest.digest) {
                if !blobs.contains(&digest) {
                    blobs.push(digest);
                }
            }
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        });
        let mut builder = tar::Builder::new(Vec::new());
        append(
            &mut builder,
            "oci-layout",
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        );
        for digest in &blobs {
            let mut bytes = self.blob(digest);
            tamper(digest, &mut bytes);
            append(
                &mut builder,
                &format!("blobs/sha256/{}", digest.encoded()),
                &bytes,
            );
        }
        append(
            &mut builder,
            "index.json",
            &serde_json::to_vec(&index).expect("serializes"),
        );
        builder.into_inner().expect("in memory")
    }
}

pub(crate) fn append(builder: &mut tar::Builder<Vec<u8>>, name: &str, bytes: &[u8]) {
    let mut header = tar::Header::new_ustar();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, name, bytes)
        .expect("in memory");
}

pub(crate) fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{value} is an array"))
        .iter()
        .map(|v| v.as_str().expect("string").to_owned())
        .collect()
}

pub(crate) fn full(name: &str) -> String {
    format!("example.com/fixtures/{name}:v1")
}

pub(crate) fn reference(text: &str) -> Reference {
    text.parse().expect("reference parses")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    // Two members: the decoder must read both.
    let (a, b) = bytes.split_at(bytes.len() / 2);
    let mut out = Vec::new();
    for part in [a, b] {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(part).expect("in memory");
        out.extend(enc.finish().expect("in memory"));
    }
    out
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    // Two frames: the decoder must read both.
    let (a, b) = bytes.split_at(bytes.len() / 3);
    let mut out = zstd::encode_all(a, 3).expect("in memory");
    out.extend(zstd::encode_all(b, 3).expect("in memory"));
    out
}

pub(crate) fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("archive written");
    path
}

pub(crate) fn run(program: &str, args: &[&str]) -> std::process::Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("{program} runs: {err}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub(crate) fn skopeo_json(args: &[&str]) -> serde_json::Value {
    let output = run("skopeo", args);
    serde_json::from_slice(&output.stdout).expect("skopeo prints JSON")
}

/// `index.json` and every record, byte for byte.
pub(crate) fn snapshot(store: &Store) -> (Vec<u8>, BTreeMap<String, Vec<u8>>) {
    let index = std::fs::read(store.root().join("index.json")).expect("index.json");
    let records = std::fs::read_dir(store.root().join(".cachectl/records"))
        .expect("records dir")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("record"),
            )
        })
        .collect();
    (index, records)
}

pub(crate) fn ingest_files(store: &Store) -> Vec<String> {
    std::fs::read_dir(store.root().join(".cachectl/ingest"))
        .expect("ingest dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

fn single_platform(fixtures: &Fixtures) -> Vec<&Fixture> {
    fixtures
        .all
        .iter()
        .filter(|f| f.platforms.is_empty())
        .collect()
}

#[test]
fn oci_archive_imports_plain_gzip_and_zstd() {
    let fixtures = Fixtures::build();
    let singles = single_platform(&fixtures);
    let named: Vec<(String, String)> = singles
        .iter()
        .map(|f| (f.name.clone(), full(&f.name)))
        .collect();
    let entries: Vec<(&str, Option<&str>)> = named
        .iter()
        .map(|(n, r)| (n.as_str(), Some(r.as_str())))
        .collect();
    let tar = fixtures.oci_archive(&entries, |_, _| {});
    let work = tempfile::tempdir().expect("tempdir");
    for (kind, bytes) in [
        ("plain", tar.clone()),
        ("gzip", gzip(&tar)),
        ("zstd", zstd(&tar)),
    ] {
        let store = Store::open(work.path().join(kind)).expect("store");
        // The name says nothing: compression is told by content.
        let archive = write(work.path(), &format!("{kind}.archive"), &bytes);
        let report = store
            .import(&archive, &ImportOptions::default())
            .unwrap_or_else(|err| panic!("{kind} archive imports: {err}"));
        assert_eq!(report.images.len(), singles.len(), "{kind}: {report:?}");
        assert!(
            report.blobs_written > 0 && report.bytes_written > 0,
            "{kind}"
        );
        let listed = store.list().expect("list");
        for fixture in &singles {
            let name = full(&fixture.name);
            let entry = listed
                .iter()
                .find(|e| e.reference == name)
                .unwrap_or_else(|| panic!("{kind}: {name} listed in {listed:?}"));
            assert_eq!(entry.digest, fixture.manifest.digest, "{kind}: {name}");
            let record = entry.record.as_ref().expect("a record");
            assert_eq!(record.source, name);
            assert_eq!(record.index_digest, None);
            assert!(record.platform.is_some(), "{kind}: {name} has a platform");
        }
        let verified = store.verify().expect("verify runs");
        assert!(verified.is_ok(), "{kind}: {verified:?}");
        // Progress follows the one pass over the file, to its end, then
        // says the file is finished.
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&events);
        let progress = ocistore::ProgressFn::new(move |event: &ocistore::Progress| {
            sink.lock().expect("lock").push(event.clone());
        });
        let again = store
            .import(&archive, &ImportOptions::default().with_progress(progress))
            .expect("imports again");
        let events = events.lock().expect("lock");
        let (last, reads) = events.split_last().expect("events");
        let seen: Vec<(u64, u64)> = reads.iter().map(|e| (e.done, e.total)).collect();
        let size = bytes.len() as u64;
        assert!(
            seen.windows(2).all(|w| w[0].0 < w[1].0),
            "{kind}: increasing"
        );
        assert_eq!(seen.last(), Some(&(size, size)), "{kind}: read to the end");
        let subject = ocistore::Subject::File(archive.clone());
        assert!(
            reads
                .iter()
                .all(|e| e.phase == ocistore::Phase::Bytes && e.subject == subject),
            "{kind}: {reads:?}"
        );
        assert_eq!(
            (&last.subject, last.phase, last.done, last.total),
            (&subject, ocistore::Phase::Finished, size, size),
            "{kind}"
        );
        assert_eq!(again.blobs_written, 0, "{kind}: {again:?}");
        assert_eq!(again.bytes_written, 0, "{kind}");
        assert!(again.blobs_reused > 0, "{kind}");
        assert!(
            ingest_files(&store).is_empty(),
            "{kind}: {:?}",
            ingest_files(&store)
        );
    }
}

#[test]
fn a_bare_ref_name_needs_options_name() {
    let fixtures = Fixtures::build();
    // The layout's own index.json names images by bare names (`small`);
    // keep only `small` and archive the directory with GNU tar (`./` names).
    let layout = fixtures.layout();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index"))
            .expect("index parses");
    let small: Vec<serde_json::Value> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "small")
        .cloned()
        .collect();
    assert_eq!(small.len(), 1, "{index}");
    let mut index = index.clone();
    index["manifests"] = serde_json::Value::Array(small);
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("serializes"),
    )
    .expect("index written");
    let work = tempfile::tempdir().expect("tempdir");
    let archive = work.path().join("small.tar");
    let archive_text = archive.to_str().expect("utf-8 path");
    let layout_text = layout.to_str().expect("utf-8 path");
    run("tar", &["-C", layout_text, "-cf", archive_text, "."]);

    let store = Store::open(work.path().join("store")).expect("store");
    let before = snapshot(&store);
    let err = store
        .import(&archive, &ImportOptions::default())
        .expect_err("a bare name cannot be imported without a name");
    assert!(matches!(err, Error::ArchiveUnnamed { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("\"small\"") && message.contains(archive_text),
        "{message}"
    );
    assert_eq!(snapshot(&store), before);

    let name = reference("127.0.0.1:5000/fixtures/small:v1");
    let report = store
        .import(&archive, &ImportOptions::default().with_name(name.clone()))
        .expect("imports with a name");
    assert_eq!(report.images.len(), 1);
    assert_eq!(report.images[0].reference, name.to_string());
    assert_eq!(
        report.images[0].manifest_digest.to_string(),
        cachectl_fixtures::SMALL_MANIFEST_DIGEST
    );
    assert!(store.verify().expect("verify").is_ok());
}

#[test]
fn a_multiarch_index_imports_the_asked_platform() {
    let fixtures = Fixtures::build();
    let multiarch = fixtures.get("multiarch");
    let arm64 = multiarch
        .platforms
        .iter()
        .find(|p| p.platform.starts_with("linux/arm64"))
        .expect("multiarch has linux/arm64");
    let name = full("multiarch");
    let tar = fixtures.oci_archive(&[("multiarch", Some(&name))], |_, _| {});
    let work = tempfile::tempdir().expect("tempdir");
    let archive = write(work.path(), "multiarch.tar", &tar);
    let store = Store::open(work.path().join("store")).expect("store");
    let platform: Platform = "linux/arm64".parse().expect("platform");
    let report = store
        .import(&archive, &ImportOptions::default().with_platform(platform))
        .expect("imports");
    assert_eq!(report.images[0].manifest_digest, arm64.manifest.digest);
    let record = store.record(&name).expect("reads").expect("a record");
    assert_eq!(record.manifest_digest, arm64.manifest.digest);
    assert_eq!(
        record.index_digest.as_ref(),
        Some(&multiarch.manifest.digest)
    );
    let recorded = record.platform.expect("a platform");
    assert_eq!(recorded.architecture(), "arm64");
    let listed = store.list().expect("list");
    assert_eq!(listed[0].digest, arm64.manifest.digest);
    assert!(store.verify().expect("verify").is_ok());
}

#[test]
fn a_corrupt_layer_fails_naming_it_and_changes_nothing() {
    let fixtures = Fixtures::build();
    let work = tempfile::tempdir().expect("tempdir");
    let store = Store::open(work.path().join("store")).expect("store");
    // Something stored already, so that "unchanged" means something.
    let first = full("layered-uncompressed");
    let tar = fixtures.oci_archive(&[("layered-uncompressed", Some(&first))], |_, _| {});
    store
        .import(
            &write(work.path(), "first.tar", &tar),
            &ImportOptions::default(),
        )
        .expect("imports");
    let before = snapshot(&store);

    let small = fixtures.get("small");
    let (_, layers) = fixtures.image(&small.manifest.digest);
    let layer = layers[0].clone();
    let name = full("small");
    let tar = fixtures.oci_archive(&[("small", Some(&name))], |digest, bytes| {
        if *digest == layer {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x01;
        }
    });
    for (kind, bytes) in [("plain", tar.clone()), ("gzip", gzip(&tar))] {
        let archive = write(work.path(), &format!("corrupt-{kind}.tar"), &bytes);
        let err = store
            .import(&archive, &ImportOptions::default())
            .expect_err("a corrupt layer is refused");
        match &err {
            Error::ArchiveDigestMismatch {
                entry, expected, ..
            } => {
                assert_eq!(*expected, layer, "{kind}");
                assert_eq!(*entry, format!("blobs/sha256/{}", layer.encoded()));
            }
            other => panic!("{kind}: unexpected {other:?}"),
        }
        assert!(err.to_string().contains(layer.as_str()), "{err}");
        assert_eq!(snapshot(&store), before, "{kind}");
        assert!(
            ingest_files(&store).is_empty(),
            "{kind}: {:?}",
            ingest_files(&store)
        );
        assert!(store.has_blob(&layer).is_none(), "{kind}");
    }
    assert!(store.verify().expect("verify").is_ok());
}

#[test]
fn a_truncated_archive_fails_and_loses_nothing() {
    let fixtures = Fixtures::build();
    let work = tempfile::tempdir().expect("tempdir");
    let store = Store::open(work.path().join("store")).expect("store");
    let first = full("small");
    let tar = fixtures.oci_archive(&[("small", Some(&first))], |_, _| {});
    store
        .import(
            &write(work.path(), "first.tar", &tar),
            &ImportOptions::default(),
        )
        .expect("imports");
    let before = snapshot(&store);
    let listed = store.list().expect("list").len();

    let name = full("layered");
    let tar = fixtures.oci_archive(&[("layered", Some(&name))], |_, _| {});
    let compressed = zstd(&tar);
    // Right before the header of `index.json` (the last entry): a tar
    // reader sees a clean end of the archive.
    let index_header = tar::Archive::new(&tar[..])
        .entries()
        .expect("entries")
        .map(|e| e.expect("entry"))
        .find(|e| e.path().expect("path").to_str() == Some("index.json"))
        .expect("index.json is archived")
        .raw_header_position();
    let index_header = usize::try_from(index_header).expect("small");
    for (kind, bytes) in [
        ("plain, cut inside an entry", &tar[..tar.len() / 2 + 100]),
        ("plain, cut between entries", &tar[..index_header]),
        ("zstd", &compressed[..compressed.len() / 2]),
    ] {
        let archive = write(work.path(), "truncated.tar", bytes);
        let err = store
            .import(&archive, &ImportOptions::default())
            .expect_err("a truncated archive is refused");
        let message = format!("{err}: {:?}", std::error::Error::source(&err)).to_lowercase();
        assert!(
            ["truncated", "neither", "eof", "incomplete"]
                .iter()
                .any(|word| message.contains(word)),
            "{kind}: {message}"
        );
        assert_eq!(snapshot(&store), before, "{kind}");
        assert!(
            ingest_files(&store).is_empty(),
            "{kind}: {:?}",
            ingest_files(&store)
        );
        assert_eq!(store.list().expect("list").len(), listed);
        assert!(store.record(&name).expect("reads").is_none());
    }
    assert!(store.verify().expect("verify").is_ok());
}

#[test]
fn a_docker_archive_by_skopeo_imports_under_its_repo_tag() {
    let fixtures = Fixtures::build();
    let work = tempfile::tempdir().expect("tempdir");
    let store = Store::open(work.path().join("store")).expect("store");
    let layout = fixtures.layout();
    for name in ["small", "layered"] {
        let archive = work.path().join(format!("{name}-docker.tar"));
        let _ = std::fs::remove_file(&archive);
        run(
            "skopeo",
            &[
                "copy",
                &format!("oci:{}:{name}", layout.display()),
                &format!("docker-archive:{}:example.com/{name}:v1", archive.display()),
            ],
        );
        let report = store
            .import(&archive, &ImportOptions::default())
            .unwrap_or_else(|err| panic!("{name}: imports: {err}"));
        assert_eq!(report.images.len(), 1);
        let wanted = format!("example.com/{name}:v1");
        assert_eq!(report.images[0].reference, wanted);
        let manifest: serde_json::Value = serde_json::from_slice(
            &store
                .read_blob(&report.images[0].manifest_digest)
                .expect("manifest stored"),
        )
        .expect("manifest parses");
        let config: Digest = manifest["config"]["digest"]
            .as_str()
            .expect("config")
            .parse()
            .expect("digest");
        let config: serde_json::Value =
            serde_json::from_slice(&store.read_blob(&config).expect("config stored"))
                .expect("config parses");
        let fixture = fixtures.get(name);
        let diff_ids = fixtures.diff_ids(&fixture.manifest.digest);
        assert_eq!(strings(&config["rootfs"]["diff_ids"]), diff_ids, "{name}");
        // skopeo wrote the layers uncompressed: each is its diff_id.
        let layers: Vec<String> = manifest["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| {
                assert_eq!(l["mediaType"], "application/vnd.oci.image.layer.v1.tar");
                l["digest"].as_str().expect("digest").to_owned()
            })
            .collect();
        assert_eq!(layers, diff_ids, "{name}");
        let record = store.record(&wanted).expect("reads").expect("a record");
        assert_eq!(record.platform.expect("platform").os(), "linux");
        assert!(store.verify().expect("verify").is_ok());
        let again = store
            .import(&archive, &ImportOptions::default())
            .expect("imports again");
        assert_eq!(again.blobs_written, 0, "{again:?}");
        assert_eq!(
            again.images[0].manifest_digest,
            report.images[0].manifest_digest
        );
    }
    assert!(ingest_files(&store).is_empty());
}

#[test]
fn an_oci_archive_by_skopeo_imports_under_the_given_name() {
    let fixtures = Fixtures::build();
    let work = tempfile::tempdir().expect("tempdir");
    let archive = work.path().join("small-oci.tar");
    run(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:small", fixtures.layout().display()),
            // skopeo names the entry with the bare tag `v1`.
            &format!("oci-archive:{}:v1", archive.display()),
        ],
    );
    let store = Store::open(work.path().join("store")).expect("store");
    let err = store
        .import(&archive, &ImportOptions::default())
        .expect_err("a bare tag is no name");
    assert!(err.to_string().contains("\"v1\""), "{err}");
    let name = reference("localhost:5000/imported/small:v1");
    let report = store
        .import(&archive, &ImportOptions::default().with_name(name.clone()))
        .expect("imports with a name");
    assert_eq!(report.images[0].reference, name.to_string());
    assert_eq!(
        report.images[0].manifest_digest,
        fixtures.get("small").manifest.digest
    );
    assert!(store.verify().expect("verify").is_ok());
}
