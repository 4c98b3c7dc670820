//! `export --flatten`: the cached image's file system as one tar (what
//! `crane export` gives), which GNU tar extracts to the tree `unpack`
//! makes; to stdout with `-o -`; refused in words when it cannot be done.
//! `unpack --format tar` writes the same tar, pulling the image first.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use support::{cachectl, fixture, stderr};

/// Every path under `root` with its type, mode, owner, size, link target
/// and content hash (directories' sizes and times left out: they depend
/// on how they were filled).
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            let rel = path
                .strip_prefix(root)
                .expect("inside")
                .display()
                .to_string();
            let kind = meta.file_type();
            let mut line = format!(
                "mode {:o} owner {}:{} mtime {}",
                meta.mode(),
                meta.uid(),
                meta.gid(),
                meta.mtime()
            );
            if kind.is_dir() {
                stack.push(path.clone());
                line = format!("mode {:o} owner {}:{}", meta.mode(), meta.uid(), meta.gid());
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&path).expect("link");
                line.push_str(&format!(" -> {}", target.display()));
            } else if kind.is_file() {
                let bytes = std::fs::read(&path).expect("content");
                line.push_str(&format!(
                    " size {} sha256 {}",
                    bytes.len(),
                    ociref::Digest::sha256_of(&bytes)
                ));
            } else {
                line.push_str(&format!(" rdev {}", meta.rdev()));
            }
            found.insert(rel, line);
        }
    }
    found
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid()).ok() == Some(0)
}

#[test]
fn a_flattened_export_extracts_to_the_tree_unpack_makes() {
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();
    let (reference, _) = fixture("layered");
    let pulled = cachectl(home)
        .args(["pull", "-q", &reference])
        .output()
        .expect("runs");
    assert!(pulled.status.success(), "{}", stderr(&pulled));

    let unpacked = home.join("unpacked");
    let mut unpack = cachectl(home);
    unpack
        .args(["unpack", "-q", "--offline", &reference])
        .arg(&unpacked);
    if !running_as_root() {
        unpack.arg("--rootless");
    }
    let out = unpack.output().expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));

    let flat = home.join("flat.tar");
    let out = cachectl(home)
        .args(["export", "-q", "--flatten", &reference, "-o"])
        .arg(&flat)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let extracted = home.join("extracted");
    std::fs::create_dir(&extracted).expect("dir");
    let mut tar = std::process::Command::new("tar");
    tar.arg("-xpf").arg(&flat).arg("-C").arg(&extracted);
    tar.arg("--xattrs").arg("--xattrs-include=*");
    if running_as_root() {
        tar.arg("--same-owner");
    }
    let out = tar.output().expect("GNU tar runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let (ours, theirs) = (tree(&unpacked), tree(&extracted));
    assert!(ours.len() > 5, "{ours:?}");
    if running_as_root() {
        assert_eq!(
            ours, theirs,
            "the flattened tar extracts to the unpacked tree"
        );
    } else {
        // Unprivileged, neither side could set owners: compare the rest.
        let strip = |t: &BTreeMap<String, String>| -> Vec<String> { t.keys().cloned().collect() };
        assert_eq!(strip(&ours), strip(&theirs));
    }

    // To stdout: the same bytes as the file.
    let piped = cachectl(home)
        .args(["export", "-q", "--flatten", &reference, "-o", "-"])
        .output()
        .expect("runs");
    assert!(piped.status.success(), "{}", stderr(&piped));
    assert_eq!(piped.stdout, std::fs::read(&flat).expect("flat tar"));
}

#[test]
fn a_flattened_export_is_refused_in_words_when_it_cannot_be_made() {
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();
    let (reference, _) = fixture("small");
    let (other, _) = fixture("layered");
    let run = |args: &[&str]| cachectl(home).args(args).output().expect("runs");

    let absent = run(&["export", "--flatten", &reference, "-o", "x.tar"]);
    assert_eq!(absent.status.code(), Some(3), "{}", stderr(&absent));
    assert!(stderr(&absent).contains("small"), "{}", stderr(&absent));
    assert!(!home.join("x.tar").exists(), "nothing half-written");

    let two = run(&["export", "--flatten", &reference, &other, "-o", "x.tar"]);
    assert_eq!(two.status.code(), Some(2), "{}", stderr(&two));
    assert!(stderr(&two).contains("one reference"), "{}", stderr(&two));

    let json = run(&["export", "--json", "--flatten", &reference, "-o", "-"]);
    assert_eq!(json.status.code(), Some(2), "{}", stderr(&json));
    assert!(stderr(&json).contains("--json"), "{}", stderr(&json));

    let both = run(&[
        "export",
        "--flatten",
        "--format",
        "docker",
        &reference,
        "-o",
        "x.tar",
    ]);
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
}

#[test]
fn unpack_format_tar_pulls_when_needed_and_writes_what_export_flatten_writes() {
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();
    let (reference, _) = fixture("layered");
    // Not cached yet: unpack pulls it, as for a directory.
    let piped = cachectl(home)
        .args(["unpack", "-q", "--format", "tar", &reference, "-"])
        .output()
        .expect("runs");
    assert!(piped.status.success(), "{}", stderr(&piped));
    let flat = home.join("flat.tar");
    let exported = cachectl(home)
        .args(["export", "-q", "--flatten", &reference, "-o"])
        .arg(&flat)
        .output()
        .expect("runs");
    assert!(exported.status.success(), "{}", stderr(&exported));
    let expected = std::fs::read(&flat).expect("flat tar");
    assert!(expected.len() > 10 * 512);
    assert_eq!(piped.stdout, expected, "the same tar on stdout");

    let file = home.join("unpacked.tar");
    let json = cachectl(home)
        .args([
            "unpack",
            "--json",
            "--offline",
            "--format",
            "tar",
            &reference,
        ])
        .arg(&file)
        .output()
        .expect("runs");
    assert!(json.status.success(), "{}", stderr(&json));
    assert_eq!(std::fs::read(&file).expect("written"), expected);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(json["file"], serde_json::json!(file.display().to_string()));
    assert!(json["entries"].as_u64().expect("entries") > 5, "{json}");

    let refused = cachectl(home)
        .args(["unpack", "--json", "--format", "tar", &reference, "-"])
        .output()
        .expect("runs");
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(refused.stdout.is_empty(), "nothing on stdout");
    let rootless = cachectl(home)
        .args(["unpack", "--rootless", "--format", "tar", &reference, "-"])
        .output()
        .expect("runs");
    assert_eq!(rootless.status.code(), Some(2), "{}", stderr(&rootless));
}
