//! Everyday cases the fixtures' shapes miss, end to end against the real
//! test registry: output paths as people type them (bare file names in the
//! working directory), archives that lie about their content, and partial
//! downloads that a later pull resumes.

mod support;

use std::path::{Path, PathBuf};
use support::{cachectl, fixture, stderr, stdout};

fn pull(home: &Path, reference: &str) {
    let pulled = cachectl(home)
        .args(["pull", "-q", reference])
        .output()
        .expect("runs");
    assert!(pulled.status.success(), "{}", stderr(&pulled));
}

#[test]
fn outputs_named_without_a_directory_land_in_the_working_directory() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, _) = fixture("small");
    pull(home.path(), &reference);
    for (format, name) in [("oci", "image.tar"), ("docker", "docker.tar")] {
        let exported = cachectl(home.path())
            .args(["export", &reference, "-o", name, "--format", format])
            .output()
            .expect("runs");
        assert!(exported.status.success(), "{format}: {}", stderr(&exported));
        assert!(
            !stderr(&exported).contains("\"\""),
            "no message names an empty path: {}",
            stderr(&exported)
        );
        let archive = home.path().join(name);
        assert!(archive.metadata().expect("archive written").len() > 0);
        let other = tempfile::tempdir().expect("tempdir");
        let imported = cachectl(other.path())
            .arg("import")
            .arg(&archive)
            .output()
            .expect("runs");
        assert!(imported.status.success(), "{format}: {}", stderr(&imported));
    }
    let built = cachectl(home.path())
        .args(["build", &reference, "-o", "small.ext4"])
        .output()
        .expect("runs");
    assert!(built.status.success(), "{}", stderr(&built));
    assert_eq!(stdout(&built).trim(), "small.ext4");
    assert!(home.path().join("small.ext4").is_file());
    let unpacked = cachectl(home.path())
        .args(["unpack", &reference, "rootfs"])
        .output()
        .expect("runs");
    assert!(unpacked.status.success(), "{}", stderr(&unpacked));
    assert!(home.path().join("rootfs").is_dir());
    let leftovers: Vec<String> = std::fs::read_dir(home.path())
        .expect("home")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn export_and_import_round_trip_between_two_caches() {
    let first = tempfile::tempdir().expect("tempdir");
    let second = tempfile::tempdir().expect("tempdir");
    let (reference, digest) = fixture("layered-zstd");
    let pulled = cachectl(first.path())
        .args(["pull", "-q", &reference])
        .output()
        .expect("runs");
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    let archive = first.path().join("image.tar");
    for format in ["oci", "docker"] {
        let exported = cachectl(first.path())
            .args(["export", &reference, "-o"])
            .arg(&archive)
            .args(["--format", format])
            .output()
            .expect("runs");
        assert!(exported.status.success(), "{format}: {}", stderr(&exported));
        let imported = cachectl(second.path())
            .args(["import", "--json"])
            .arg(&archive)
            .output()
            .expect("runs");
        assert!(imported.status.success(), "{format}: {}", stderr(&imported));
        let report: serde_json::Value = serde_json::from_slice(&imported.stdout).expect("JSON");
        assert_eq!(
            report[0]["images"][0]["ref"], reference,
            "{format}: {report}"
        );
        if format == "oci" {
            assert_eq!(report[0]["images"][0]["digest"], digest);
        }
    }
    let verify = cachectl(second.path())
        .arg("verify")
        .output()
        .expect("runs");
    assert!(verify.status.success(), "{}", stdout(&verify));
}

/// The offset of the data of the largest `blobs/sha256/…` member of an
/// uncompressed tar, and its size.
fn largest_blob(tar: &[u8]) -> (usize, usize) {
    let mut offset = 0;
    let mut best = (0, 0);
    while offset + 512 <= tar.len() && tar[offset] != 0 {
        let header = &tar[offset..offset + 512];
        let name = String::from_utf8_lossy(&header[..100]);
        let size_field = String::from_utf8_lossy(&header[124..136]);
        let size = usize::from_str_radix(size_field.trim_matches(|c| c == '\0' || c == ' '), 8)
            .expect("octal size");
        if name.starts_with("blobs/sha256/") && size > best.1 {
            best = (offset + 512, size);
        }
        offset += 512 + size.div_ceil(512) * 512;
    }
    assert!(best.1 > 0, "the archive holds blobs");
    best
}

#[test]
fn an_archive_whose_blob_does_not_hash_to_its_name_exits_6_and_stores_nothing() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, _) = fixture("small");
    pull(home.path(), &reference);
    let archive = home.path().join("image.tar");
    let exported = cachectl(home.path())
        .args(["export", &reference, "-o"])
        .arg(&archive)
        .output()
        .expect("runs");
    assert!(exported.status.success(), "{}", stderr(&exported));
    let mut bytes = std::fs::read(&archive).expect("archive");
    let (start, size) = largest_blob(&bytes);
    bytes[start + size - 1] ^= 0xff;
    std::fs::write(&archive, &bytes).expect("rewrite");

    let other = tempfile::tempdir().expect("tempdir");
    let imported = cachectl(other.path())
        .arg("import")
        .arg(&archive)
        .output()
        .expect("runs");
    assert_eq!(imported.status.code(), Some(6), "{}", stderr(&imported));
    let message = stderr(&imported);
    assert!(
        message.contains("hashes to sha256:") && message.contains(&archive.display().to_string()),
        "names the archive and the digests: {message}"
    );
    let listed = cachectl(other.path())
        .args(["images", "--json"])
        .output()
        .expect("runs");
    let images: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    assert_eq!(images, serde_json::json!([]), "nothing was stored");
}

/// Writes `bytes` as the partial download of `digest`, last written `age`
/// ago.
fn plant_partial(home: &Path, digest: &str, bytes: &[u8], age: std::time::Duration) -> PathBuf {
    let ingest = home.join("cache/.cachectl/ingest");
    std::fs::create_dir_all(&ingest).expect("ingest dir");
    let path = ingest.join(format!("{}.partial", digest.replace(':', "-")));
    std::fs::write(&path, bytes).expect("partial written");
    let file = std::fs::File::options()
        .write(true)
        .open(&path)
        .expect("opens");
    file.set_modified(std::time::SystemTime::now() - age)
        .expect("mtime set");
    path
}

#[test]
fn gc_keeps_recent_partial_downloads_for_a_grace_period_and_du_counts_them() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, _) = fixture("small");
    pull(home.path(), &reference);
    let hour = std::time::Duration::from_secs(3600);
    let fresh_digest = format!("sha256:{}", "a".repeat(64));
    let old_digest = format!("sha256:{}", "b".repeat(64));
    let fresh = plant_partial(home.path(), &fresh_digest, &[7; 9000], hour);
    let old = plant_partial(home.path(), &old_digest, &[7; 5000], 25 * hour);

    let collected = cachectl(home.path())
        .args(["gc", "--json"])
        .output()
        .expect("runs");
    assert!(collected.status.success(), "{}", stderr(&collected));
    let report: serde_json::Value = serde_json::from_slice(&collected.stdout).expect("JSON");
    assert_eq!(report["kept_partials"], 1, "{report}");
    assert_eq!(report["kept_partial_bytes"], 9000, "{report}");
    assert_eq!(report["removed_ingest_files"], 1, "{report}");
    assert!(fresh.exists(), "a partial written an hour ago is kept");
    assert!(!old.exists(), "a partial untouched for 25 hours is removed");

    let usage = cachectl(home.path())
        .args(["du", "--json"])
        .output()
        .expect("runs");
    let usage: serde_json::Value = serde_json::from_slice(&usage.stdout).expect("JSON");
    assert_eq!(
        usage["ingest_bytes"], 9000,
        "du counts the kept partial: {usage}"
    );
    let text = cachectl(home.path()).arg("du").output().expect("runs");
    assert!(
        stdout(&text).contains("partial downloads 8.8 KiB"),
        "{}",
        stdout(&text)
    );

    let pruned = cachectl(home.path())
        .args(["prune", "--keep", "5", "--keep-partials", "2h", "--json"])
        .output()
        .expect("runs");
    assert!(pruned.status.success(), "{}", stderr(&pruned));
    assert!(fresh.exists(), "prune's gc keeps it too");
    let collected = cachectl(home.path())
        .args(["gc", "--keep-partials", "30m"])
        .output()
        .expect("runs");
    assert!(collected.status.success(), "{}", stderr(&collected));
    assert!(!fresh.exists(), "older than --keep-partials: removed");
}
