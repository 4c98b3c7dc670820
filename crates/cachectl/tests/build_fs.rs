//! `build --fs` and `--compressor` (the file system said in `--json` and
//! the note, the compressor refused for ext4, `--input` refused for the
//! read-only ones), and the programs `build` runs given by path
//! (`--mke2fs`, the settings key `mke2fs`, the flag winning; a path that
//! is not a file refused before anything is pulled).

mod support;

use std::path::{Path, PathBuf};
use support::{cachectl, cached_images, fixture, stderr};

#[test]
fn wrong_combinations_are_usage_errors_naming_the_flag_before_any_pull() {
    let (reference, _) = fixture("small");
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--compressor", "zstd,3"],
            &["--compressor zstd,3", "squashfs", "erofs"],
        ),
        (
            &["--fs", "ext4", "--per-layer", "--compressor", "lz4"],
            &["--compressor lz4"],
        ),
        (
            &["--fs", "squashfs", "--input", "tree"],
            &["--input applies to ext4"],
        ),
        (
            &["--fs", "erofs", "--input", "tar-stream"],
            &["--input applies to ext4"],
        ),
        (&["--fs", "btrfs"], &["squashfs", "erofs", "ext4"]),
        (
            &["--fs", "squashfs", "--headroom", "1GiB"],
            &["--headroom applies to ext4"],
        ),
        (
            &["--fs", "squashfs", "--label", "x"],
            &["squashfs has no label"],
        ),
        (&["--provenance"], &["--output"]),
        (&["--per-layer", "--provenance"], &["--provenance"]),
        (
            &["--mke2fs", "/nonexistent/mke2fs"],
            &["--mke2fs", "/nonexistent/mke2fs", "the mke2fs to run"],
        ),
        (
            &["--debugfs", "/nonexistent/debugfs"],
            &["--debugfs", "/nonexistent/debugfs", "the debugfs to run"],
        ),
        (
            &["--fs", "squashfs", "--tar2sqfs", "/nonexistent/t2s"],
            &["--tar2sqfs", "/nonexistent/t2s", "the tar2sqfs to run"],
        ),
        (
            &["--fs", "erofs", "--mkfs-erofs", "/"],
            &["--mkfs-erofs", "the mkfs.erofs to run", "not a file"],
        ),
    ];
    for (options, words) in cases {
        let home = tempfile::tempdir().expect("tempdir");
        let built = cachectl(home.path())
            .arg("build")
            .arg(&reference)
            .args(*options)
            .output()
            .expect("runs");
        let message = stderr(&built);
        assert_eq!(built.status.code(), Some(2), "{options:?}: {message}");
        for word in *words {
            assert!(message.contains(word), "{options:?}: {word}: {message}");
        }
        assert_eq!(
            cached_images(home.path()),
            serde_json::json!([]),
            "{options:?}: refused before the image was pulled"
        );
    }
}

#[test]
fn the_file_system_is_said_in_json_and_in_the_note() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, _) = fixture("small");
    let build = |options: &[&str]| {
        let built = cachectl(home.path())
            .args(["build", &reference, "--rootless", "--json"])
            .args(options)
            .output()
            .expect("runs");
        assert!(built.status.success(), "{options:?}: {}", stderr(&built));
        serde_json::from_slice::<serde_json::Value>(&built.stdout).expect("JSON")
    };
    let ext4 = build(&[]);
    assert_eq!(ext4["fs"], "ext4", "{ext4}");
    assert!(ext4["input"].is_string(), "{ext4}");
    let named = build(&["--fs", "ext4"]);
    assert_eq!(named["fs"], "ext4", "{named}");
    let squashfs = build(&["--fs", "squashfs", "--compressor", "lz4"]);
    assert_eq!(squashfs["fs"], "squashfs", "{squashfs}");
    assert_eq!(squashfs["input"], serde_json::Value::Null, "{squashfs}");
    let layers = build(&["--per-layer", "--fs", "squashfs"]);
    let entries = layers.as_array().expect("one entry per layer");
    assert!(!entries.is_empty(), "{layers}");
    for entry in entries {
        assert_eq!(entry["fs"], "squashfs", "{layers}");
        let path = entry["path"].as_str().expect("path");
        assert!(path.ends_with(".squashfs"), "{layers}");
    }
    // erofs: built where mkfs.erofs is 1.8 or later, else refused naming
    // the release needed (Debian 12 has 1.5).
    let erofs = cachectl(home.path())
        .args(["build", &reference, "--rootless", "--json", "--fs", "erofs"])
        .output()
        .expect("runs");
    if erofs.status.success() {
        let erofs: serde_json::Value = serde_json::from_slice(&erofs.stdout).expect("JSON");
        assert_eq!(erofs["fs"], "erofs", "{erofs}");
    } else {
        let message = stderr(&erofs);
        assert!(
            message.contains("mkfs.erofs") && message.contains("erofs-utils 1.8 or later"),
            "{message}"
        );
    }
    let noted = cachectl(home.path())
        .args(["build", &reference, "--rootless", "--fs", "squashfs"])
        .output()
        .expect("runs");
    let note = stderr(&noted);
    assert!(noted.status.success(), "{note}");
    let normalized = ext4["ref"].as_str().expect("ref");
    assert!(
        note.contains(&format!("squashfs image of {normalized} (")),
        "{note}"
    );
    assert!(!note.contains("ext4"), "{note}");
    let noted = cachectl(home.path())
        .args(["build", &reference, "--rootless"])
        .output()
        .expect("runs");
    let note = stderr(&noted);
    assert!(
        note.contains(&format!("cached ext4 image of {normalized} (")),
        "{note}"
    );
}

/// A `mke2fs` that writes a line (`NAME ARGS…`) to `log` each time it
/// runs, then runs the host's: a new binary, so it is probed once.
fn logging_mke2fs(dir: &Path, name: &str, log: &Path) -> PathBuf {
    let real = ["/usr/sbin/mke2fs", "/sbin/mke2fs"]
        .into_iter()
        .find(|path| Path::new(path).is_file())
        .expect("e2fsprogs is installed");
    logging_wrapper(dir, name, log, real)
}

/// A script `dir/name` that appends `name ARGS` to `log` and runs `real`.
fn logging_wrapper(dir: &Path, name: &str, log: &Path, real: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join(name);
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"{name} $*\" >> '{}'\nexec {real} \"$@\"\n",
            log.display()
        ),
    )
    .expect("written");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("mode");
    script
}

/// The lines of `log` (none when it was never written).
fn runs(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Whether `line` is a run of `name` that made an image (labelled: `-L`),
/// not one of the probes (`-V`, a one-entry tar read).
fn is_build(line: &str, name: &str) -> bool {
    line.starts_with(&format!("{name} ")) && line.contains(" -L ")
}

/// Whether `lines` hold a run of `name` that made an image.
fn built_with(lines: &[String], name: &str) -> bool {
    lines.iter().any(|line| is_build(line, name))
}

#[test]
fn a_given_mke2fs_is_the_one_that_runs() {
    let home = tempfile::tempdir().expect("tempdir");
    let tools = tempfile::tempdir().expect("tempdir");
    let log = tools.path().join("runs.log");
    let wrapper = logging_mke2fs(tools.path(), "flagged", &log);
    let (reference, _) = fixture("small");
    let built = cachectl(home.path())
        .args([
            "build",
            &reference,
            "--rootless",
            "--json",
            "--input",
            "tree",
        ])
        .arg("--mke2fs")
        .arg(&wrapper)
        .output()
        .expect("runs");
    assert!(built.status.success(), "{}", stderr(&built));
    let lines = runs(&log);
    assert!(built_with(&lines, "flagged"), "{lines:?}");
    assert!(
        lines.iter().any(|line| line == "flagged -V"),
        "a new binary is probed: {lines:?}"
    );
    let json: serde_json::Value = serde_json::from_slice(&built.stdout).expect("JSON");
    assert!(
        Path::new(json["path"].as_str().expect("path")).is_file(),
        "{json}"
    );
    // Probed once: a build of another image with the same binary asks
    // the record under the store, not the binary.
    let (other, _) = fixture("layered");
    let again = cachectl(home.path())
        .args(["build", &other, "--rootless", "--input", "tree", "--mke2fs"])
        .arg(&wrapper)
        .output()
        .expect("runs");
    assert!(again.status.success(), "{}", stderr(&again));
    let lines = runs(&log);
    let probes = lines.iter().filter(|line| *line == "flagged -V").count();
    assert_eq!(probes, 1, "{lines:?}");
    assert_eq!(
        lines.iter().filter(|l| is_build(l, "flagged")).count(),
        2,
        "{lines:?}"
    );
}

#[test]
fn the_settings_key_names_the_program_and_the_flag_wins_over_it() {
    let (reference, _) = fixture("small");
    let tools = tempfile::tempdir().expect("tempdir");
    let keyed_log = tools.path().join("keyed.log");
    let flagged_log = tools.path().join("flagged.log");
    let keyed = logging_mke2fs(tools.path(), "keyed", &keyed_log);
    let flagged = logging_mke2fs(tools.path(), "flagged", &flagged_log);
    let config = tools.path().join("config.toml");
    std::fs::write(
        &config,
        format!("mke2fs = {:?}\n", keyed.display().to_string()),
    )
    .expect("written");
    // A build through mke2fs in a new home, with `--config` and `extra`.
    let build_with_config = |extra: &[&std::ffi::OsStr]| {
        let home = tempfile::tempdir().expect("tempdir");
        cachectl(home.path())
            .args(["build", &reference, "--rootless", "--input", "tree"])
            .arg("--config")
            .arg(&config)
            .args(extra)
            .output()
            .expect("runs")
    };
    let built = build_with_config(&[]);
    assert!(built.status.success(), "{}", stderr(&built));
    assert!(
        built_with(&runs(&keyed_log), "keyed"),
        "{:?}",
        runs(&keyed_log)
    );
    std::fs::remove_file(&keyed_log).expect("removed");
    let built = build_with_config(&["--mke2fs".as_ref(), flagged.as_os_str()]);
    assert!(built.status.success(), "{}", stderr(&built));
    assert!(
        built_with(&runs(&flagged_log), "flagged"),
        "{:?}",
        runs(&flagged_log)
    );
    assert_eq!(runs(&keyed_log), Vec::<String>::new(), "the flag won");
    // A key naming no file is refused, naming the key and the file.
    std::fs::write(&config, "mke2fs = \"/nonexistent/mke2fs\"\n").expect("written");
    let home = tempfile::tempdir().expect("tempdir");
    let refused = cachectl(home.path())
        .args(["build", &reference, "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    let message = stderr(&refused);
    assert_eq!(refused.status.code(), Some(2), "{message}");
    let key = format!("mke2fs in {}", config.display());
    assert!(message.contains(&key), "{message}");
    assert!(message.contains("/nonexistent/mke2fs"), "{message}");
    assert_eq!(cached_images(home.path()), serde_json::json!([]));
    // A stale key of a program this build does not run stops nothing.
    std::fs::write(&config, "tar2sqfs = \"/nonexistent/tar2sqfs\"\n").expect("written");
    let built = build_with_config(&[]);
    assert!(built.status.success(), "{}", stderr(&built));
}

/// `du --json`'s count of cached image builds.
fn builds_counted(home: &Path) -> u64 {
    let du = cachectl(home)
        .args(["du", "--json"])
        .output()
        .expect("runs");
    assert!(du.status.success(), "{}", stderr(&du));
    let du: serde_json::Value = serde_json::from_slice(&du.stdout).expect("JSON");
    du["builds"]["images"].as_u64().expect("a count")
}

#[test]
fn read_only_builds_are_counted_by_du_and_removed_by_gc_and_prune_like_ext4_ones() {
    let home = tempfile::tempdir().expect("tempdir");
    let (small, _) = fixture("small");
    let (layered, _) = fixture("layered");
    let build = |options: &[&str]| {
        let built = cachectl(home.path())
            .args(["build", "--rootless", "--json"])
            .args(options)
            .output()
            .expect("runs");
        assert!(built.status.success(), "{options:?}: {}", stderr(&built));
        serde_json::from_slice::<serde_json::Value>(&built.stdout).expect("JSON")
    };
    let small_squashfs = build(&[&small, "--fs", "squashfs"]);
    let small_ext4 = build(&[&small]);
    let layered_squashfs = build(&[&layered, "--fs", "squashfs"]);
    let lowers = build(&[&layered, "--fs", "squashfs", "--per-layer"]);
    let lowers = lowers.as_array().expect("one entry per layer").len() as u64;
    assert_eq!(builds_counted(home.path()), 3 + lowers);
    let exists =
        |built: &serde_json::Value| Path::new(built["path"].as_str().expect("path")).exists();
    let removed = cachectl(home.path())
        .args(["rm", &small])
        .output()
        .expect("runs");
    assert!(removed.status.success(), "{}", stderr(&removed));
    let gc = cachectl(home.path())
        .args(["gc", "--json"])
        .output()
        .expect("runs");
    assert!(gc.status.success(), "{}", stderr(&gc));
    let gc: serde_json::Value = serde_json::from_slice(&gc.stdout).expect("JSON");
    assert_eq!(
        gc["removed_builds"], 2,
        "the squashfs and the ext4 build: {gc}"
    );
    assert!(!exists(&small_squashfs) && !exists(&small_ext4));
    assert!(
        exists(&layered_squashfs),
        "the image still cached keeps its build"
    );
    assert_eq!(builds_counted(home.path()), 1 + lowers);
    let pruned = cachectl(home.path())
        .args(["prune", "--keep", "0", "--json"])
        .output()
        .expect("runs");
    assert!(pruned.status.success(), "{}", stderr(&pruned));
    let pruned: serde_json::Value = serde_json::from_slice(&pruned.stdout).expect("JSON");
    assert!(!exists(&layered_squashfs), "{pruned}");
    assert_eq!(builds_counted(home.path()), 0, "{pruned}");
}

#[test]
fn a_read_only_cache_hit_starts_no_tool_and_its_version_is_learned_once() {
    let (reference, _) = fixture("small");
    let tools = tempfile::tempdir().expect("tempdir");
    let log = tools.path().join("tar2sqfs.log");
    let real = ["/usr/bin/tar2sqfs", "/bin/tar2sqfs"]
        .into_iter()
        .find(|path| Path::new(path).is_file())
        .expect("squashfs-tools-ng is installed");
    let wrapper = logging_wrapper(tools.path(), "t2s", &log, real);
    let home = tempfile::tempdir().expect("tempdir");
    let build = |label: &str| {
        let built = cachectl(home.path())
            .args([
                "build",
                &reference,
                "--rootless",
                "--fs",
                "squashfs",
                "--tar2sqfs",
            ])
            .arg(&wrapper)
            .args(["--compressor", label])
            .output()
            .expect("runs");
        assert!(built.status.success(), "{}", stderr(&built));
    };
    build("lz4");
    let first = runs(&log);
    let versions = first.iter().filter(|l| l.ends_with("--version")).count();
    assert_eq!(versions, 1, "{first:?}");
    assert_eq!(first.len(), 2, "the version, then the build: {first:?}");
    build("lz4");
    assert_eq!(
        runs(&log),
        first,
        "a cache hit in a new process runs nothing"
    );
    build("zstd,3");
    let third = runs(&log);
    assert_eq!(
        third.len(),
        3,
        "a new key builds, the version is known: {third:?}"
    );
}
