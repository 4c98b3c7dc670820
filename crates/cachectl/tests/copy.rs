//! `copy SRC DST` between skopeo's transports, held to skopeo itself: a
//! round trip registry -> oci-archive -> cache -> another registry keeps
//! the manifest digest; skopeo reads every archive and directory `copy`
//! writes, and `copy` reads every one skopeo writes; a mirror between
//! registries keeps the index, every platform and the referrers, and
//! mounts blobs within a registry; bad locations get clear errors.

mod support;

use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{cachectl, env, fixture, stderr, stdout};

/// A plain `docker-registry` of the test's own on a free loopback port,
/// killed when dropped: the "second registry" of a fleet.
struct Registry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = TcpListener::bind("127.0.0.1:0")
            .expect("binds")
            .local_addr()
            .expect("address")
            .to_string();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {addr}\nhealth:\n  storagedriver:\n    enabled: false\n",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("config written");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts (`cargo xtask test` installs it)");
        let registry = Registry {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&registry.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "the second registry did not come up"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs skopeo with `args`; its stdout. Fails the test when skopeo does.
fn skopeo(args: &[&str]) -> String {
    let output = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo runs (`cargo xtask test` installs it)");
    assert!(
        output.status.success(),
        "skopeo {args:?}: {}",
        stderr(&output)
    );
    stdout(&output)
}

/// `skopeo inspect` of `location` as JSON (plain HTTP for registries).
fn inspect(location: &str) -> Value {
    let mut args = vec!["inspect"];
    if location.starts_with("docker://") {
        args.push("--tls-verify=false");
    }
    args.push(location);
    serde_json::from_str(&skopeo(&args)).expect("skopeo prints JSON")
}

/// Runs `cachectl copy --json ARGS` in `home`; its JSON output.
fn copy(home: &Path, args: &[&str]) -> Value {
    let output = cachectl(home)
        .args(["copy", "--json"])
        .args(args)
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "copy {args:?}: {}",
        stderr(&output)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

/// `prefix:DIR/name` for a file or directory in `dir`.
fn at(prefix: &str, dir: &Path, name: &str) -> String {
    format!("{prefix}:{}", dir.join(name).display())
}

/// A repository name no other run of this test used.
fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_nanos();
    format!("copy-{what}-{}-{nanos}", std::process::id())
}

#[test]
fn registry_to_oci_archive_to_cache_to_a_second_registry_keeps_the_digest() {
    let (small, digest) = fixture("small");
    let work = tempfile::tempdir().expect("tempdir");
    let online = tempfile::tempdir().expect("tempdir");
    let archive = at("oci-archive", work.path(), "small.tar");
    let written = copy(online.path(), &[&format!("docker://{small}"), &archive]);
    assert_eq!(written["digest"], digest.as_str(), "{written}");
    assert_eq!(inspect(&archive)["Digest"], digest.as_str());

    // The air-gapped side: a fresh cache and its own registry.
    let second = Registry::start();
    let offline = tempfile::tempdir().expect("tempdir");
    let local = format!("{}/fleet/small:v1", second.addr);
    let stored = copy(offline.path(), &[&archive, &format!("cache:{local}")]);
    assert_eq!(stored["digest"], digest.as_str(), "{stored}");
    assert_eq!(stored["cached_as"], local.as_str(), "{stored}");
    // A bare reference names the cache too.
    let pushed = copy(offline.path(), &[&local, &format!("docker://{local}")]);
    assert_eq!(pushed["digest"], digest.as_str(), "{pushed}");
    assert_eq!(
        inspect(&format!("docker://{local}"))["Digest"],
        digest.as_str()
    );
}

#[test]
fn skopeo_reads_every_archive_and_directory_copy_writes() {
    let (layered, digest) = fixture("layered");
    let source = format!("docker://{layered}");
    let home = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let oci_archive = at("oci-archive", work.path(), "layered.tar");
    copy(home.path(), &[&source, &oci_archive]);
    assert_eq!(inspect(&oci_archive)["Digest"], digest.as_str());
    let named = format!("{}:v1", at("oci-archive", work.path(), "named.tar"));
    copy(home.path(), &[&source, &named]);
    assert_eq!(inspect(&named)["Digest"], digest.as_str());

    let dir = format!("{}:v1", at("oci", work.path(), "layout"));
    copy(home.path(), &[&source, &dir]);
    assert_eq!(inspect(&dir)["Digest"], digest.as_str());
    // Another image into the same directory keeps the first.
    let (small, small_digest) = fixture("small");
    let other = format!("{}:small", at("oci", work.path(), "layout"));
    copy(home.path(), &[&format!("docker://{small}"), &other]);
    assert_eq!(inspect(&other)["Digest"], small_digest.as_str());
    assert_eq!(inspect(&dir)["Digest"], digest.as_str());

    // A docker archive holds no manifest: skopeo sees the same layers
    // (uncompressed, so their digests are the config's diff_ids).
    let docker_archive = format!(
        "{}:app:v1",
        at("docker-archive", work.path(), "layered.tar")
    );
    copy(home.path(), &[&source, &docker_archive]);
    let config: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--config",
        &source,
    ]))
    .expect("JSON");
    let seen = inspect(&docker_archive);
    assert_eq!(seen["Layers"], config["rootfs"]["diff_ids"], "{seen}");
    let copied = work.path().join("from-docker-archive");
    skopeo(&[
        "copy",
        &docker_archive,
        &format!("oci:{}:x", copied.display()),
    ]);
}

#[test]
fn copy_reads_every_archive_and_directory_skopeo_writes() {
    let (small, digest) = fixture("small");
    let source = format!("docker://{small}");
    let work = tempfile::tempdir().expect("tempdir");
    let written = |location: &str| {
        skopeo(&["copy", "--src-tls-verify=false", &source, location]);
        location.to_owned()
    };
    let home = tempfile::tempdir().expect("tempdir");
    for (n, location) in [
        written(&at("oci-archive", work.path(), "plain.tar")),
        written(&format!(
            "{}:v1",
            at("oci-archive", work.path(), "tagged.tar")
        )),
        written(&format!("{}:v1", at("oci", work.path(), "layout"))),
    ]
    .iter()
    .enumerate()
    {
        let target = format!("cache:example.com/from-skopeo/{n}:v1");
        let stored = copy(home.path(), &[location, &target]);
        assert_eq!(stored["digest"], digest.as_str(), "{location}: {stored}");
    }

    // skopeo's docker archive: the image's own config and layers, under
    // the manifest the import writes.
    let docker_archive = written(&format!(
        "{}:fleet/small:v1",
        at("docker-archive", work.path(), "small.tar")
    ));
    let stored = copy(
        home.path(),
        &[&docker_archive, "cache:example.com/from-skopeo/docker:v1"],
    );
    let ours = cachectl(home.path())
        .args(["inspect", "--json", "example.com/from-skopeo/docker:v1"])
        .output()
        .expect("runs");
    assert!(ours.status.success(), "{}", stderr(&ours));
    let ours: Value = serde_json::from_slice(&ours.stdout).expect("JSON");
    let theirs: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &source,
    ]))
    .expect("JSON");
    assert_eq!(
        ours["images"][0]["config_descriptor"]["digest"], theirs["config"]["digest"],
        "{stored}"
    );
}

#[test]
fn a_mirror_between_registries_keeps_the_index_platforms_and_referrers() {
    let (multiarch, index_digest) = fixture("multiarch");
    let second = Registry::start();
    let home = tempfile::tempdir().expect("tempdir");
    let mirror = format!("docker://{}/mirror/multiarch:v1", second.addr);
    let copied = copy(
        home.path(),
        &["--all-platforms", &format!("docker://{multiarch}"), &mirror],
    );
    assert_eq!(copied["digest"], index_digest.as_str(), "{copied}");
    let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &mirror]);
    let index: Value = serde_json::from_str(&raw).expect("JSON");
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .expect("an index")
        .iter()
        .map(|m| {
            let p = &m["platform"];
            [&p["os"], &p["architecture"], &p["variant"]]
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    assert_eq!(
        platforms,
        ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"],
        "{raw}"
    );
    assert_eq!(
        inspect(&mirror)["Digest"],
        index_digest.as_str(),
        "the mirror's tag names the same index"
    );
    // Every platform is complete there: skopeo copies all of it.
    let all = tempfile::tempdir().expect("tempdir");
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &mirror,
        &format!("oci:{}:all", all.path().join("layout").display()),
    ]);

    // Within one registry, blobs are mounted, not uploaded again.
    let registry = env("CACHECTL_TEST_REGISTRY");
    let same = format!("docker://{registry}/{}/multiarch:v1", unique("mount"));
    let mounted = copy(
        home.path(),
        &["--all-platforms", &format!("docker://{multiarch}"), &same],
    );
    assert!(
        mounted["mounted_blobs"].as_u64() > Some(0),
        "blobs mounted across repositories: {mounted}"
    );
    assert_eq!(mounted["digest"], index_digest.as_str(), "{mounted}");

    // Referrers travel with --referrers.
    let (sbom_image, _) = fixture("with-sbom");
    let target = format!("{}/mirror/with-sbom:v1", second.addr);
    let with = copy(
        home.path(),
        &[
            "--referrers",
            &format!("docker://{sbom_image}"),
            &format!("docker://{target}"),
        ],
    );
    let sent = with["referrers"].as_array().expect("referrers").clone();
    assert_eq!(sent.len(), 1, "{with}");
    let fresh = tempfile::tempdir().expect("tempdir");
    let pulled = cachectl(fresh.path())
        .args(["pull", "--json", "--referrers", &target])
        .output()
        .expect("runs");
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    let pulled: Value = serde_json::from_slice(&pulled.stdout).expect("JSON");
    assert_eq!(
        pulled[0]["referrers"],
        Value::from(sent.clone()),
        "{pulled}"
    );

    // Through the cache: registry -> cache -> registry keeps them too.
    let cached = copy(
        home.path(),
        &[
            "--referrers",
            &format!("docker://{sbom_image}"),
            "cache:example.com/signed/app:v1",
        ],
    );
    assert_eq!(cached["referrers"], Value::from(sent.clone()), "{cached}");
    let onward = format!("{}/onward/with-sbom:v1", second.addr);
    let sent_on = copy(
        home.path(),
        &[
            "--referrers",
            "cache:example.com/signed/app:v1",
            &format!("docker://{onward}"),
        ],
    );
    assert_eq!(sent_on["referrers"], Value::from(sent.clone()), "{sent_on}");
    let again = tempfile::tempdir().expect("tempdir");
    let pulled = cachectl(again.path())
        .args(["pull", "--json", "--referrers", &onward])
        .output()
        .expect("runs");
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    let pulled: Value = serde_json::from_slice(&pulled.stdout).expect("JSON");
    assert_eq!(pulled[0]["referrers"], Value::from(sent), "{pulled}");
}

/// Runs `cachectl copy ARGS` expecting failure; exit code and stderr.
fn refused(home: &Path, args: &[&str]) -> (Option<i32>, String) {
    let output = cachectl(home)
        .arg("copy")
        .args(args)
        .output()
        .expect("runs");
    assert!(!output.status.success(), "copy {args:?} succeeded");
    assert!(output.stdout.is_empty(), "{}", stdout(&output));
    (output.status.code(), stderr(&output))
}

#[test]
fn bad_locations_and_archives_get_clear_errors() {
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();
    let (code, text) = refused(home, &["foo:bar", "x"]);
    assert_eq!(code, Some(2), "{text}");
    for said in [
        "\"foo\"",
        "docker://",
        "oci:",
        "oci-archive:",
        "docker-archive:",
        "cache:",
    ] {
        assert!(text.contains(said), "names {said}: {text}");
    }
    let (code, text) = refused(home, &["docker:example.com/a:1", "example.com/b:1"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("docker://REF"), "{text}");

    let missing: PathBuf = home.join("no-such.tar");
    let (code, text) = refused(
        home,
        &[
            &format!("oci-archive:{}", missing.display()),
            "cache:example.com/a:1",
        ],
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains(&missing.display().to_string()) && text.contains("does not exist"),
        "{text}"
    );

    // An archive of two images needs FILE:REF.
    let (small, _) = fixture("small");
    let (layered, layered_digest) = fixture("layered");
    let pulled = cachectl(home)
        .args(["pull", "-q", &small, &layered])
        .output()
        .expect("runs");
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    let two = home.join("two.tar");
    let exported = cachectl(home)
        .args(["export", "-q", &small, &layered, "-o"])
        .arg(&two)
        .output()
        .expect("runs");
    assert!(exported.status.success(), "{}", stderr(&exported));
    let archive = format!("oci-archive:{}", two.display());
    let (code, text) = refused(home, &[&archive, "cache:example.com/one:1"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("several images") && text.contains(&small) && text.contains(&layered),
        "{text}"
    );
    let (code, text) = refused(
        home,
        &[&format!("{archive}:nope"), "cache:example.com/one:1"],
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("\"nope\""), "{text}");
    let picked = copy(
        home,
        &[&format!("{archive}:{layered}"), "cache:example.com/one:1"],
    );
    assert_eq!(picked["digest"], layered_digest.as_str(), "{picked}");
}

/// The names in `dir` and below, relative to it, sorted.
fn names_under(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(at) = todo.pop() {
        for entry in std::fs::read_dir(&at).expect("a directory") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                todo.push(path.clone());
            }
            let relative = path.strip_prefix(dir).expect("below").display();
            names.push(relative.to_string());
        }
    }
    names.sort();
    names
}

#[test]
fn a_failed_copy_leaves_the_archive_and_directory_it_replaces_whole() {
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();
    let (small, _) = fixture("small");
    let (layered, layered_digest) = fixture("layered");
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("image.tar");
    let dir = work.path().join("layout");
    let archive = format!("oci-archive:{}", file.display());
    let layout = format!("oci:{}:v1", dir.display());
    copy(home, &[&format!("docker://{small}"), &archive]);
    copy(home, &[&small, &layout]);
    copy(
        home,
        &[&format!("docker://{layered}"), "cache:example.com/rot:1"],
    );
    let before = (
        std::fs::read(&file).expect("archive"),
        std::fs::read(dir.join("index.json")).expect("index.json"),
        names_under(work.path()),
    );

    // A layer of the cached image rots: both copies fail on it.
    let blobs = home.join("cache/blobs/sha256");
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(blobs.join(layered_digest.trim_start_matches("sha256:"))).expect("manifest"),
    )
    .expect("JSON");
    let layer = manifest["layers"][4]["digest"].as_str().expect("a layer");
    std::fs::write(blobs.join(layer.trim_start_matches("sha256:")), b"rot").expect("rotted");
    for target in [&archive, &layout] {
        let (code, text) = refused(home, &["example.com/rot:1", target]);
        assert_eq!(code, Some(6), "{target}: {text}");
        assert!(text.contains(layer), "{target}: names the blob: {text}");
    }
    let after = (
        std::fs::read(&file).expect("archive"),
        std::fs::read(dir.join("index.json")).expect("index.json"),
        names_under(work.path()),
    );
    assert_eq!(before.0, after.0, "the archive is the old one");
    assert_eq!(before.1, after.1, "index.json is the old one");
    let extra: Vec<&String> = after.2.iter().filter(|n| !before.2.contains(n)).collect();
    assert!(
        extra.iter().all(|name| {
            let base = name.rsplit('/').next().unwrap_or_default();
            name.starts_with("layout/blobs/sha256/")
                && base.len() == 64
                && base.chars().all(|c| c.is_ascii_hexdigit())
        }),
        "only whole blobs are left, no temp file: {extra:?}"
    );
    assert_eq!(inspect(&layout)["Digest"], fixture("small").1.as_str());
}
