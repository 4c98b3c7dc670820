//! `rootfs`: unpacking fixture images, compared with `umoci raw unpack`;
//! hand-built malicious layers that must not write outside the target;
//! whiteouts; ext4 images checked with `e2fsck` and `debugfs`.

use crate::rootfs_compare::{assert_same_as_umoci, differences, tree};
use crate::rootfs_support::{
    GZIP_LAYER, Raw, debugfs, e2fsck_passes, entry_with, fixture_layout, gzip, hand_built_store,
    hand_built_store_with_diff_ids, makedev, only_target_in, put_blob, raw_tar,
    rootless_build_options, running_as_root, store_with_fixture, unpack_layers,
};
use ociref::{Digest, Reference};
use ocistore::Store;
use rootfs::{BuildOptions, Error, UnpackOptions};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// [`assert_same_as_umoci`] for fixture `name`, umoci reading `umoci_name`.
fn assert_fixture_same_as_umoci(name: &str, umoci_name: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), name);
    let (umoci_store, umoci_reference) = if umoci_name == name {
        (store.clone(), reference.clone())
    } else {
        store_with_fixture(&dir.path().join("umoci-store"), umoci_name)
    };
    assert_same_as_umoci(
        &store,
        &reference,
        &umoci_store,
        &umoci_reference,
        dir.path(),
    );
}

#[test]
fn small_equals_umoci() {
    assert_fixture_same_as_umoci("small", "small");
}

#[test]
fn layered_equals_umoci() {
    assert_fixture_same_as_umoci("layered", "layered");
}

#[test]
fn layered_uncompressed_equals_umoci() {
    assert_fixture_same_as_umoci("layered-uncompressed", "layered-uncompressed");
}

#[test]
fn layered_zstd_equals_umoci_of_the_gzip_twin() {
    // umoci 0.4 refuses zstd layers: compare with the same layers in gzip.
    assert_fixture_same_as_umoci("layered-zstd", "layered");
}

/// Adds `descriptor` (a JSON object) under `reference` to the `index.json`
/// of the layout at `root`.
fn add_index_entry(root: &Path, mut descriptor: serde_json::Value, reference: &str) {
    descriptor["annotations"] = serde_json::json!({
        "org.opencontainers.image.ref.name": reference
    });
    let path = root.join("index.json");
    let mut index: serde_json::Value = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_else(|| serde_json::json!({"schemaVersion": 2, "manifests": []}));
    index["manifests"]
        .as_array_mut()
        .expect("manifests")
        .push(descriptor);
    std::fs::write(&path, serde_json::to_vec(&index).expect("json")).expect("index written");
}

#[test]
fn docker_v2s2_equals_umoci_of_its_oci_twin() {
    // skopeo's `oci:` transport does not read Docker manifests and umoci
    // refuses them: the store gets the fixture's blobs and index entry by
    // hand, and umoci reads an OCI manifest over the same layer.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let layout = fixture_layout();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index"))
            .expect("json");
    let descriptor = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "docker-v2s2")
        .expect("docker-v2s2 in the layout")
        .clone();
    std::fs::create_dir_all(root.join("blobs/sha256")).expect("blobs");
    for blob in std::fs::read_dir(layout.join("blobs/sha256")).expect("blobs") {
        let blob = blob.expect("blob");
        std::fs::copy(
            blob.path(),
            root.join("blobs/sha256").join(blob.file_name()),
        )
        .expect("copied");
    }
    std::fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("layout");
    let digest: Digest = descriptor["digest"]
        .as_str()
        .expect("digest")
        .parse()
        .expect("digest");
    let mut manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("blobs/sha256").join(digest.encoded())).expect("manifest"),
    )
    .expect("json");
    add_index_entry(&root, descriptor, "example.com/fixtures/docker-v2s2:v1");
    manifest["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
    manifest["config"]["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
    for layer in manifest["layers"].as_array_mut().expect("layers") {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        layer["mediaType"] = GZIP_LAYER.into();
    }
    let twin = serde_json::to_vec(&manifest).expect("json");
    let twin_digest = put_blob(&root, &twin);
    add_index_entry(
        &root,
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": twin_digest.to_string(),
            "size": twin.len(),
        }),
        "example.com/fixtures/docker-v2s2-oci:v1",
    );
    let store = Store::open(&root).expect("store opens");
    let reference: Reference = "example.com/fixtures/docker-v2s2:v1"
        .parse()
        .expect("reference");
    let twin_reference: Reference = "example.com/fixtures/docker-v2s2-oci:v1"
        .parse()
        .expect("reference");
    assert_same_as_umoci(&store, &reference, &store, &twin_reference, dir.path());
}

#[test]
fn with_sbom_equals_umoci() {
    assert_fixture_same_as_umoci("with-sbom", "with-sbom");
}

#[test]
fn multiarch_host_platform_equals_umoci() {
    assert_fixture_same_as_umoci("multiarch", "multiarch");
}

#[test]
fn unpack_as_root_applies_owners_devices_and_capabilities() {
    if !running_as_root() {
        eprintln!("not root: owners and devices are checked by the rootless tests only");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "layered");
    let target = dir.path().join("rootfs");
    let report = rootfs::unpack(&store, &reference, None, &target, &UnpackOptions::default())
        .expect("unpack succeeds");
    assert!(!report.rootless);
    assert_eq!(report.not_applied.devices, 0);
    assert_eq!(report.not_applied.ownership, 0);
    let nodes = tree(&target);
    let notes = &nodes["home/user/notes.txt"];
    assert_eq!((notes.uid, notes.gid, notes.mode), (1000, 1000, 0o640));
    assert_eq!(nodes["home/user"].uid, 1000);
    let null = &nodes["dev/null"];
    assert_eq!(null.kind, "char");
    assert_eq!(null.device, Some(makedev(1, 3)));
    assert_eq!(null.mode, 0o666);
    assert_eq!(nodes["usr/bin/setuid-tool"].mode, 0o4755);
    assert_eq!(nodes["tmp"].mode, 0o1777);
    assert!(
        nodes["usr/bin/ping"]
            .xattrs
            .contains_key("security.capability"),
        "capability kept: {:?}",
        nodes["usr/bin/ping"].xattrs
    );
}

// ---- hand-built layouts -------------------------------------------------

fn assert_refused(result: rootfs::Result<rootfs::UnpackReport>, entry: &str) {
    match result {
        Err(Error::UnsafeEntry {
            entry: refused,
            layer,
            reason,
        }) => {
            assert_eq!(refused, entry, "refused for {reason}");
            assert!(layer.to_string().starts_with("sha256:"));
            let message = Error::UnsafeEntry {
                layer,
                entry: refused,
                reason,
            }
            .to_string();
            assert!(message.contains(entry), "{message}");
        }
        other => panic!("{entry} was not refused: {other:?}"),
    }
}

#[test]
fn dot_dot_entry_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (result, sandbox) = unpack_layers(dir.path(), &[vec![Raw::File("../escape", b"out")]]);
    assert_refused(result, "../escape");
    only_target_in(&sandbox);
}

#[test]
fn nested_dot_dot_entry_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (result, sandbox) = unpack_layers(
        dir.path(),
        &[vec![Raw::Dir("a/"), Raw::File("a/../../escape", b"out")]],
    );
    assert_refused(result, "a/../../escape");
    only_target_in(&sandbox);
}

#[test]
fn absolute_entry_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = dir.path().join("abs-escape");
    let name = outside.to_str().expect("utf-8").to_owned();
    let (result, sandbox) = unpack_layers(dir.path(), &[vec![Raw::File(&name, b"out")]]);
    assert_refused(result, &name);
    only_target_in(&sandbox);
    assert!(!outside.exists());
    let (result, _) = {
        let dir = tempfile::tempdir().expect("tempdir");
        unpack_layers(dir.path(), &[vec![Raw::File("/abs", b"out")]])
    };
    assert_refused(result, "/abs");
}

#[test]
fn symlink_planted_by_an_earlier_layer_is_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).expect("outside");
    let target = outside.to_str().expect("utf-8").to_owned();
    let (result, sandbox) = unpack_layers(
        dir.path(),
        &[
            vec![Raw::Symlink("link", &target)],
            vec![Raw::File("link/file", b"out")],
        ],
    );
    assert_refused(result, "link/file");
    only_target_in(&sandbox);
    assert_eq!(std::fs::read_dir(&outside).expect("outside").count(), 0);
}

#[test]
fn symlink_of_the_same_layer_is_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (result, sandbox) = unpack_layers(
        dir.path(),
        &[vec![
            Raw::Symlink("up", ".."),
            Raw::File("up/escape", b"out"),
        ]],
    );
    assert_refused(result, "up/escape");
    only_target_in(&sandbox);
}

#[test]
fn hardlink_to_outside_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (result, sandbox) = unpack_layers(
        dir.path(),
        &[vec![
            Raw::Dir("etc/"),
            Raw::Hardlink("etc/passwd-link", "../../etc/passwd"),
        ]],
    );
    assert_refused(result, "etc/passwd-link");
    only_target_in(&sandbox);
}

#[test]
fn hardlink_through_a_symlinked_parent_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (result, _) = unpack_layers(
        dir.path(),
        &[
            vec![Raw::Symlink("etc", "/etc")],
            vec![Raw::Hardlink("passwd", "etc/passwd")],
        ],
    );
    assert_refused(result, "passwd");
}

#[test]
fn whiteout_through_a_symlink_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).expect("outside");
    std::fs::write(outside.join("keep"), b"keep").expect("written");
    let target = outside.to_str().expect("utf-8").to_owned();
    let (result, _) = unpack_layers(
        dir.path(),
        &[
            vec![Raw::Symlink("link", &target)],
            vec![Raw::File("link/.wh.keep", b"")],
        ],
    );
    assert_refused(result, "link/.wh.keep");
    assert!(outside.join("keep").exists());
}

#[test]
fn whiteout_of_dot_dot_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in [".wh..", ".wh...", "a/.wh.."] {
        let (result, sandbox) = unpack_layers(
            dir.path().join(name.replace('/', "-")).as_path(),
            &[
                vec![Raw::Dir("a/"), Raw::File("a/x", b"x")],
                vec![Raw::File(name, b"")],
            ],
        );
        assert_refused(result, name);
        only_target_in(&sandbox);
    }
}

#[test]
fn opaque_directory_keeps_own_layer_entries_before_and_after_the_marker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (result, sandbox) = unpack_layers(
        dir.path(),
        &[
            vec![
                Raw::Dir("d/"),
                Raw::File("d/old", b"lower"),
                Raw::Dir("d/sub/"),
                Raw::File("d/sub/old2", b"lower"),
                Raw::Dir("e/"),
                Raw::File("e/gone", b"lower"),
                Raw::File("e/kept", b"lower"),
            ],
            vec![
                Raw::Dir("d/"),
                Raw::File("d/before", b"upper"),
                Raw::Dir("d/sub/"),
                Raw::File("d/.wh..wh..opq", b""),
                Raw::File("d/after", b"upper"),
                Raw::File("e/.wh.gone", b""),
            ],
        ],
    );
    let report = result.expect("unpack succeeds");
    assert_eq!(report.whiteouts, 2);
    let nodes = tree(&sandbox.join("target"));
    let paths: Vec<&str> = nodes.keys().map(String::as_str).collect();
    assert_eq!(paths, ["d", "d/after", "d/before", "d/sub", "e", "e/kept"]);
}

#[test]
fn whiteout_removes_a_lower_directory_and_a_file_may_replace_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (result, sandbox) = unpack_layers(
        dir.path(),
        &[
            vec![Raw::Dir("a/"), Raw::Dir("a/b/"), Raw::File("a/b/c", b"x")],
            vec![Raw::File("a/.wh.b", b""), Raw::File("x", b"1")],
            vec![Raw::File("a/b", b"now a file"), Raw::Hardlink("y", "x")],
        ],
    );
    result.expect("unpack succeeds");
    let nodes = tree(&sandbox.join("target"));
    assert_eq!(nodes["a/b"].kind, "file");
    assert_eq!(nodes["y"].hardlinks, ["x", "y"]);
}

#[test]
fn mislabelled_layer_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = raw_tar(&[Raw::File("f", b"x")]);
    let (store, reference) =
        hand_built_store(&dir.path().join("store"), &[(plain.clone(), GZIP_LAYER)]);
    let result = rootfs::unpack(
        &store,
        &reference,
        None,
        &dir.path().join("t"),
        &UnpackOptions::default(),
    );
    match result {
        Err(Error::MislabelledLayer {
            layer, detected, ..
        }) => {
            assert_eq!(layer, Digest::sha256_of(&plain));
            assert_eq!(detected, "uncompressed");
        }
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn non_empty_target_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "small");
    let target = dir.path().join("t");
    std::fs::create_dir(&target).expect("target");
    std::fs::write(target.join("x"), b"x").expect("written");
    let result = rootfs::unpack(&store, &reference, None, &target, &UnpackOptions::default());
    assert!(
        matches!(result, Err(Error::TargetNotEmpty { .. })),
        "{result:?}"
    );
}

#[test]
fn caps_on_entries_and_bytes_stop_an_unpack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "small");
    let mut options = UnpackOptions::default();
    options.max_entries = Some(3);
    let result = rootfs::unpack(&store, &reference, None, &dir.path().join("a"), &options);
    assert!(
        matches!(
            &result,
            Err(Error::LimitExceeded {
                what: "entries",
                limit: 3,
                ..
            })
        ),
        "{result:?}"
    );
    let mut options = UnpackOptions::default();
    options.max_bytes = Some(100);
    let result = rootfs::unpack(&store, &reference, None, &dir.path().join("b"), &options);
    assert!(
        matches!(
            &result,
            Err(Error::LimitExceeded {
                what: "bytes",
                limit: 100,
                ..
            })
        ),
        "{result:?}"
    );
}

// ---- ext4 ----------------------------------------------------------------

/// A name as `debugfs ls` prints it: bytes outside ASCII as `\\xNN`.
fn debugfs_name(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii() {
                char::from(b).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

#[test]
fn ext4_builds_are_reproducible_checked_and_cached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store_a, reference) = store_with_fixture(&dir.path().join("a"), "layered");
    let (store_b, _) = store_with_fixture(&dir.path().join("b"), "layered");
    let options = rootless_build_options();
    let started = Instant::now();
    let first = rootfs::build(&store_a, &reference, None, &options).expect("build a");
    eprintln!(
        "ext4 build of layered: {:?}, {} bytes",
        started.elapsed(),
        first.size
    );
    let second = rootfs::build(&store_b, &reference, None, &options).expect("build b");
    assert!(!first.cached && !second.cached);
    assert_eq!(first.layers.len(), 5);
    e2fsck_passes(&first.path);
    let a = std::fs::read(&first.path).expect("image a");
    let b = std::fs::read(&second.path).expect("image b");
    assert!(a == b, "two builds in different roots differ");
    let started = Instant::now();
    let again = rootfs::build(&store_a, &reference, None, &options).expect("cached");
    let elapsed = started.elapsed();
    eprintln!("cached ext4 build: {elapsed:?}");
    assert!(again.cached);
    assert_eq!(again.path, first.path);
    // The issue asks for under 10 ms; the bound leaves room for a loaded
    // machine.
    assert!(elapsed.as_millis() < 100, "cached build took {elapsed:?}");
}

#[test]
fn rootless_ext4_image_holds_the_owners_and_devices_of_the_layers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "layered");
    let built = rootfs::build(&store, &reference, None, &rootless_build_options()).expect("build");
    e2fsck_passes(&built.path);
    let notes = debugfs(&built.path, "stat /home/user/notes.txt");
    assert!(notes.contains("User:  1000   Group:  1000"), "{notes}");
    let passwd = debugfs(&built.path, "stat /etc/passwd");
    assert!(passwd.contains("User:     0   Group:     0"), "{passwd}");
    let null = debugfs(&built.path, "stat /dev/null");
    assert!(null.contains("Type: character special"), "{null}");
    assert!(null.contains("Mode:  0666"), "{null}");
    let setuid = debugfs(&built.path, "stat /usr/bin/setuid-tool");
    assert!(setuid.contains("Mode:  04755"), "{setuid}");
}

#[test]
fn ext4_contents_match_the_directory_unpack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "layered");
    let built = rootfs::build(&store, &reference, None, &rootless_build_options()).expect("build");
    let target = dir.path().join("rootfs");
    rootfs::unpack(
        &store,
        &reference,
        None,
        &target,
        &UnpackOptions::rootless(),
    )
    .expect("unpack");
    for (dir_path, listing) in [
        ("/", ""),
        ("/bin", "bin"),
        ("/etc", "etc"),
        ("/opt/app", "opt/app"),
    ] {
        let mut from_image: Vec<String> = debugfs(&built.path, &format!("ls -l {dir_path}"))
            .lines()
            .filter_map(|line| line.split_whitespace().last().map(str::to_owned))
            .filter(|name| name != "." && name != ".." && name != "lost+found")
            .collect();
        from_image.sort();
        let mut from_tree: Vec<String> = std::fs::read_dir(target.join(listing))
            .expect("listing")
            .map(|e| debugfs_name(e.expect("entry").file_name().as_encoded_bytes()))
            .collect();
        if dir_path == "/dev" {
            from_tree.push("null".to_owned());
        }
        from_tree.sort();
        assert_eq!(from_image, from_tree, "listing of {dir_path}");
    }
}

#[test]
fn ext4_with_init_and_label_for_small() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "small");
    let init = dir.path().join("init");
    std::fs::write(&init, b"#!/bin/sh\nexec /bin/hello\n").expect("init");
    let mut options = rootless_build_options();
    options.label = "small-root".to_owned();
    options.init = Some((init, "/sbin/init".to_owned()));
    options.output = Some(dir.path().join("out.ext4"));
    let built = rootfs::build(&store, &reference, None, &options).expect("build");
    assert_eq!(built.path, dir.path().join("out.ext4"));
    e2fsck_passes(&built.path);
    let stat = debugfs(&built.path, "stat /sbin/init");
    assert!(stat.contains("Mode:  0755"), "{stat}");
    assert!(stat.contains("User:     0   Group:     0"), "{stat}");
    let stats = debugfs(&built.path, "stats");
    assert!(
        stats.contains("Filesystem volume name:   small-root"),
        "{stats}"
    );
    assert_eq!(built.config.os.as_deref(), Some("linux"));
}

#[test]
fn missing_mke2fs_is_tool_not_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "small");
    let mut options = BuildOptions::default();
    options.search_path = Some(dir.path().join("empty").into_os_string());
    let result = rootfs::build(&store, &reference, None, &options);
    match result {
        Err(Error::ToolNotFound { tool, package }) => {
            assert_eq!((tool, package), ("mke2fs", "e2fsprogs"));
        }
        other => panic!("{other:?}"),
    }
}

// ---- flattened tar -------------------------------------------------------

#[test]
fn exported_tar_lists_parents_first_and_extracts_to_the_unpacked_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "layered");
    let mut bytes = Vec::new();
    rootfs::export_tar(&store, &reference, None, &mut bytes).expect("export");
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut seen: Vec<String> = Vec::new();
    let mut kinds = BTreeMap::new();
    let mut xattrs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let names: Vec<String> = entry
            .pax_extensions()
            .expect("PAX")
            .into_iter()
            .flatten()
            .filter_map(|e| {
                e.ok()?
                    .key()
                    .ok()?
                    .strip_prefix("SCHILY.xattr.")
                    .map(str::to_owned)
            })
            .collect();
        let path = entry
            .path()
            .expect("path")
            .to_string_lossy()
            .trim_end_matches('/')
            .to_owned();
        assert!(!path.contains(".wh."), "whiteout exported: {path}");
        if let Some((parent, _)) = path.rsplit_once('/') {
            assert!(seen.iter().any(|p| p == parent), "{path} before its parent");
        }
        let header = entry.header();
        kinds.insert(
            path.clone(),
            (header.entry_type(), header.uid().expect("uid")),
        );
        if !names.is_empty() {
            xattrs.insert(path.clone(), names);
        }
        seen.push(path);
    }
    // Extended attributes travel as PAX records, as `docker export` and GNU
    // tar `--xattrs` write them.
    assert_eq!(
        xattrs["usr/bin/ping"],
        ["security.capability"],
        "{xattrs:?}"
    );
    assert_eq!(xattrs["etc/xattr.txt"], ["user.cachectl"], "{xattrs:?}");
    assert_eq!(
        kinds["home/user/notes.txt"],
        (tar::EntryType::Regular, 1000)
    );
    assert_eq!(kinds["dev/null"].0, tar::EntryType::Char);
    assert_eq!(kinds["bin/sh"].0, tar::EntryType::Link);
    assert!(!kinds.contains_key("etc/motd"));
    if !running_as_root() {
        return;
    }
    // GNU tar (as root: owners, devices) extracts what rootfs unpacks.
    let extracted = dir.path().join("extracted");
    std::fs::create_dir(&extracted).expect("dir");
    let tar_file = dir.path().join("export.tar");
    std::fs::write(&tar_file, &bytes).expect("written");
    let output = Command::new("tar")
        .args([
            "-x",
            "-p",
            "--same-owner",
            "--xattrs",
            "--xattrs-include=*",
            "-f",
        ])
        .arg(&tar_file)
        .arg("-C")
        .arg(&extracted)
        .output()
        .expect("tar runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let unpacked = dir.path().join("unpacked");
    rootfs::unpack(
        &store,
        &reference,
        None,
        &unpacked,
        &UnpackOptions::default(),
    )
    .expect("unpack");
    let ours = tree(&unpacked);
    let theirs = tree(&extracted);
    let diff = differences(&ours, &theirs);
    assert!(diff.is_empty(), "export differs:\n{}", diff.join("\n"));
}

#[test]
fn every_error_renders_with_what_a_person_needs() {
    let layer: Digest = "sha256:2422821aed02500dd3a39dba17551184c867df6ccedcbc07128e099c8f52a25f"
        .parse()
        .expect("digest");
    let unsafe_entry = Error::UnsafeEntry {
        layer: layer.clone(),
        entry: "../escape".to_owned(),
        reason: "path has a `..` component".to_owned(),
    };
    assert_eq!(
        unsafe_entry.to_string(),
        format!("layer {layer}: entry \"../escape\" refused: path has a `..` component")
    );
    let mislabelled = Error::MislabelledLayer {
        layer: layer.clone(),
        media_type: GZIP_LAYER.to_owned(),
        detected: "zstd",
    };
    assert!(mislabelled.to_string().contains(&layer.to_string()));
    let missing = Error::ToolNotFound {
        tool: "mke2fs",
        package: "e2fsprogs",
    };
    assert_eq!(
        missing.to_string(),
        "mke2fs is not installed (install the e2fsprogs package)"
    );
    let failed = Error::ToolFailed {
        tool: "mke2fs",
        status: "exit status: 1".to_owned(),
        stderr: "mke2fs: Device size reported to be zero.".to_owned(),
    };
    assert!(
        failed
            .to_string()
            .contains("Device size reported to be zero")
    );
}

#[test]
fn a_size_too_small_is_refused_in_words_not_with_mke2fs_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "small");
    let mut options = rootless_build_options();
    // Far too small for the journal and the content: refused before any
    // layer is read (nothing under the store's work directory).
    options.size = Some(64 * 1024);
    match rootfs::build(&store, &reference, None, &options) {
        Err(err @ Error::InvalidOption { .. }) => {
            assert_eq!(err.kind(), rootfs::ErrorKind::Usage);
            assert!(
                err.to_string()
                    .contains("size 0.1 MiB is below 8.0 MiB, the least"),
                "{err}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!store.root().join(".cachectl/rootfs-tmp").exists());
}

// ---- the tar parser against GNU tar ----------------------------------------

/// `ls -l`-style permissions as GNU tar prints them (`hrwxr-xr-x` for a
/// hardlink, `s`/`S`/`t`/`T` for setuid, setgid, sticky).
fn permissions(kind: tar::EntryType, mode: u32) -> String {
    let kind = match kind {
        tar::EntryType::Directory => 'd',
        tar::EntryType::Symlink => 'l',
        tar::EntryType::Link => 'h',
        tar::EntryType::Char => 'c',
        tar::EntryType::Block => 'b',
        tar::EntryType::Fifo => 'p',
        _ => '-',
    };
    let mut out = String::from(kind);
    for (shift, special, special_char) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (mode >> shift) & 7;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        let exec = bits & 1 != 0;
        out.push(match (mode & special != 0, exec) {
            (true, true) => special_char,
            (true, false) => special_char.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    out
}

/// What the `tar` crate (the parser rootfs uses) sees in a layer, one line
/// per entry in `tar -tv --numeric-owner` terms, without the date.
fn listing_by_tar_crate(bytes: &[u8]) -> Vec<String> {
    let reader: Box<dyn std::io::Read> = match bytes {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(bytes)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Box::new(zstd::Decoder::new(bytes).expect("zstd")),
        _ => Box::new(bytes),
    };
    let mut archive = tar::Archive::new(reader);
    let mut lines = Vec::new();
    for entry in archive.entries().expect("entries") {
        let entry = entry.expect("entry");
        let header = entry.header();
        let kind = header.entry_type();
        let size = match kind {
            tar::EntryType::Char | tar::EntryType::Block => format!(
                "{},{}",
                header.device_major().expect("major").unwrap_or(0),
                header.device_minor().expect("minor").unwrap_or(0)
            ),
            _ => entry.size().to_string(),
        };
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        let name = match (kind, link) {
            (tar::EntryType::Symlink, Some(link)) => format!("{name} -> {link}"),
            (tar::EntryType::Link, Some(link)) => format!("{name} link to {link}"),
            _ => name,
        };
        lines.push(format!(
            "{} {}/{} {size} {name}",
            permissions(kind, header.mode().expect("mode")),
            header.uid().expect("uid"),
            header.gid().expect("gid"),
        ));
    }
    lines
}

/// What GNU tar lists, the date and time dropped.
fn listing_by_gnu_tar(path: &Path) -> Vec<String> {
    let output = Command::new("tar")
        .args(["--numeric-owner", "--quoting-style=literal", "-tvf"])
        .arg(path)
        .env("TZ", "UTC")
        .output()
        .expect("tar runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| {
            let mut parts = line.split_whitespace();
            let perm = parts.next().expect("permissions");
            let owner = parts.next().expect("owner");
            let size = parts.next().expect("size");
            let _date = parts.next().expect("date");
            let time = parts.next().expect("time");
            let name = &line[line.find(time).expect("time") + time.len() + 1..];
            format!("{perm} {owner} {size} {name}")
        })
        .collect()
}

#[test]
fn the_tar_parser_sees_what_gnu_tar_lists_in_every_fixture_layer() {
    let blobs = fixture_layout().join("blobs/sha256");
    let mut layers = 0;
    for blob in std::fs::read_dir(&blobs).expect("blobs") {
        let path = blob.expect("blob").path();
        let bytes = std::fs::read(&path).expect("blob");
        let is_tar = bytes.len() > 262 && &bytes[257..262] == b"ustar";
        let compressed =
            bytes.starts_with(&[0x1f, 0x8b]) || bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
        if !is_tar && !compressed {
            continue;
        }
        layers += 1;
        assert_eq!(
            listing_by_tar_crate(&bytes),
            listing_by_gnu_tar(&path),
            "layer {}",
            path.display()
        );
    }
    assert!(layers >= 15, "only {layers} layers found");
}

#[test]
fn ext4_built_as_root_holds_the_same_owners_and_devices() {
    if !running_as_root() {
        eprintln!("not root: the rootless build tests cover owners");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (root_store, reference) = store_with_fixture(&dir.path().join("a"), "layered");
    let (rootless_store, _) = store_with_fixture(&dir.path().join("b"), "layered");
    let as_root = rootfs::build(&root_store, &reference, None, &BuildOptions::default())
        .expect("build as root");
    let rootless = rootfs::build(&rootless_store, &reference, None, &rootless_build_options())
        .expect("rootless build");
    e2fsck_passes(&as_root.path);
    for path in [
        "/home/user/notes.txt",
        "/dev/null",
        "/usr/bin/setuid-tool",
        "/tmp",
        "/etc/passwd",
    ] {
        let request = format!("stat {path}");
        let owner_and_mode = |image: &Path| -> Vec<String> {
            debugfs(image, &request)
                .lines()
                .filter(|l| {
                    l.starts_with("User:") || l.starts_with("Inode:") || l.contains("Device major")
                })
                .map(|l| {
                    // Inode numbers may differ (debugfs allocates devices last).
                    l.split_once("Type:").map_or(l, |(_, rest)| rest).to_owned()
                })
                .collect()
        };
        assert_eq!(
            owner_and_mode(&as_root.path),
            owner_and_mode(&rootless.path),
            "{path}"
        );
    }
    let same =
        std::fs::read(&as_root.path).expect("a") == std::fs::read(&rootless.path).expect("b");
    eprintln!("root and rootless builds byte-identical: {same}");
}

// ---- a real-world tree ------------------------------------------------------

#[test]
fn host_system_tree_equals_umoci() {
    // No mirror for debootstrap here: the layer is the host's own /etc,
    // /usr/sbin, /usr/share/zoneinfo and /usr/share/perl, written by GNU tar
    // (its real owners, modes, symlinks); a second layer whites some out.
    let dir = tempfile::tempdir().expect("tempdir");
    let paths: Vec<&str> = ["etc", "usr/sbin", "usr/share/zoneinfo", "usr/share/perl"]
        .into_iter()
        .filter(|p| Path::new("/").join(p).exists())
        .collect();
    let output = Command::new("tar")
        .args(["-C", "/", "--numeric-owner", "-cf", "-"])
        // The parents first, as image builders write them (a parent no
        // layer declares gets mode 0755 and mtime 0 from rootfs, the time
        // of the unpack from umoci).
        .args(["--no-recursion", "usr", "usr/share", "--recursion"])
        .args(&paths)
        .output()
        .expect("tar runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let upper = raw_tar(&[
        Raw::File("usr/share/.wh.zoneinfo", b""),
        Raw::Dir("etc/"),
        Raw::File("etc/.wh..wh..opq", b""),
        Raw::File("etc/hostname", b"cachectl\n"),
    ]);
    let (store, reference) = hand_built_store(
        &dir.path().join("store"),
        &[
            (gzip(&output.stdout), GZIP_LAYER),
            (gzip(&upper), GZIP_LAYER),
        ],
    );
    assert_same_as_umoci(&store, &reference, &store, &reference, dir.path());
}

#[test]
fn sparse_files_in_every_gnu_tar_form_equal_the_original_and_umoci() {
    // GNU tar writes sparse files as type `S` (`--format=gnu`) or in PAX
    // form (0.0, 0.1 with the map in records, 1.0 with it in the data and
    // the header named `GNUSparseFile.<pid>/…`). Each is the same file.
    // (umoci 0.4 refuses type `S`, "unknown typeflag"; it reads the PAX
    // forms, and there the trees must be equal.)
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("source");
    std::fs::create_dir_all(source.join("var/lib")).expect("source");
    let original = source.join("var/lib/holes.db");
    let mut content = vec![0u8; 3 << 20];
    content[1 << 20..(1 << 20) + 6].copy_from_slice(b"middle");
    content.extend_from_slice(b"end");
    std::fs::write(&original, &content).expect("file");
    // Holes where the content is zero, so tar finds them.
    let punched = Command::new("fallocate")
        .args(["--dig-holes"])
        .arg(&original)
        .status()
        .expect("fallocate runs");
    assert!(punched.success());
    let mut layers = Vec::new();
    for format in [
        &["--format=gnu"][..],
        &["--format=pax", "--sparse-version=0.0"][..],
        &["--format=pax", "--sparse-version=0.1"][..],
        &["--format=pax", "--sparse-version=1.0"][..],
    ] {
        let output = Command::new("tar")
            .args(["--sparse", "--numeric-owner", "-C"])
            .arg(&source)
            .args(format)
            .args(["-cf", "-", "var"])
            .output()
            .expect("tar runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        layers.push((gzip(&output.stdout), GZIP_LAYER));
    }
    for (index, layer) in layers.into_iter().enumerate() {
        let case = dir.path().join(format!("case-{index}"));
        let (store, reference) = hand_built_store(&case.join("store"), &[layer]);
        if index == 0 {
            rootfs::unpack(
                &store,
                &reference,
                None,
                &case.join("ours"),
                &UnpackOptions::rootless(),
            )
            .expect("unpack");
        } else {
            assert_same_as_umoci(&store, &reference, &store, &reference, &case);
        }
        let unpacked = std::fs::read(case.join("ours/var/lib/holes.db")).expect("unpacked");
        assert!(unpacked == content, "form {index}: the content differs");
        // Holes stay holes: the PAX forms are written chunk by chunk, the
        // `S` form's zero blocks are left unwritten.
        let meta = std::fs::metadata(case.join("ours/var/lib/holes.db")).expect("meta");
        assert!(
            meta.blocks() * 512 < meta.len() / 2,
            "form {index}: not sparse"
        );
        assert!(
            !case.join("ours/var/lib/GNUSparseFile.0").exists(),
            "form {index}: the PAX header's name was used"
        );
    }
}

#[test]
fn odd_tars_unpack_as_gnu_tar_extracts_them() {
    // A corpus of what real layers carry (PEERS row 25): names and link
    // targets past 100 bytes (GNU long names, ustar prefixes, PAX paths),
    // ids past the octal fields (base-256 or PAX), times before 1970 and
    // past 2242, a name that is not UTF-8. Written by GNU tar in each
    // format; GNU tar's own extraction is the oracle.
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("source");
    let deep = source.join(format!("{}/{}", "d".repeat(90), "e".repeat(90)));
    std::fs::create_dir_all(&deep).expect("deep dirs");
    let long_file = deep.join("f".repeat(150));
    std::fs::write(&long_file, b"long name\n").expect("long file");
    std::os::unix::fs::symlink("t".repeat(200), source.join("long-target")).expect("symlink");
    std::fs::hard_link(&long_file, source.join("hardlink-to-long")).expect("hardlink");
    let odd_name = source.join(std::ffi::OsStr::from_bytes(b"latin1-\xe9t\xe9"));
    std::fs::write(&odd_name, b"not utf-8\n").expect("odd name");
    let big_ids = source.join("big-ids");
    std::fs::write(&big_ids, b"ids\n").expect("big ids");
    let old = source.join("before-1970");
    std::fs::write(&old, b"old\n").expect("old");
    let future = source.join("after-2242");
    std::fs::write(&future, b"future\n").expect("future");
    let touch = |date: &str, path: &Path| {
        let status = Command::new("touch")
            .args(["-h", "-d", date])
            .arg(path)
            .status()
            .expect("touch runs");
        assert!(status.success(), "touch {date}");
    };
    touch("1901-06-01 00:00:00 UTC", &old);
    touch("2300-01-01 00:00:00 UTC", &future);
    let as_root = running_as_root();
    if as_root {
        std::os::unix::fs::lchown(&big_ids, Some(3_000_000), Some(3_000_001)).expect("chown");
    }
    for format in ["gnu", "pax"] {
        let case = dir.path().join(format);
        let output = Command::new("tar")
            .args(["--numeric-owner", "--format", format, "-C"])
            .arg(&source)
            .args(["-cf", "-", "."])
            .output()
            .expect("tar runs");
        assert!(
            output.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let (store, reference) =
            hand_built_store(&case.join("store"), &[(gzip(&output.stdout), GZIP_LAYER)]);
        let ours_dir = case.join("ours");
        let options = if as_root {
            UnpackOptions::default()
        } else {
            UnpackOptions::rootless()
        };
        rootfs::unpack(&store, &reference, None, &ours_dir, &options).expect("unpack");
        let theirs_dir = case.join("theirs");
        std::fs::create_dir_all(&theirs_dir).expect("theirs");
        let extracted = Command::new("tar")
            .args(["--numeric-owner", "-xpf", "-", "-C"])
            .arg(&theirs_dir)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(&output.stdout)?;
                child.wait()
            })
            .expect("tar extracts");
        assert!(extracted.success(), "{format}: GNU tar could not extract");
        let (ours, theirs) = (tree(&ours_dir), tree(&theirs_dir));
        let diff = differences(&ours, &theirs);
        assert!(
            diff.is_empty(),
            "{format} differs from GNU tar:\n{}",
            diff.join("\n")
        );
        let times = |name: &str| ours[name].mtime;
        assert!(
            times("before-1970") < 0,
            "{format}: {}",
            times("before-1970")
        );
        assert!(times("after-2242") > 8_589_934_591, "{format}");
        if as_root {
            assert_eq!(
                (ours["big-ids"].uid, ours["big-ids"].gid),
                (3_000_000, 3_000_001)
            );
        }
        assert!(ours.len() >= 9, "{format}: {ours:?}");
    }
}

#[test]
fn unknown_entry_types_are_regular_files_and_multi_volume_parts_are_refused() {
    // POSIX (and GNU tar): an unknown type is extracted as a regular file;
    // a GNU dumpdir is a directory and a volume label names nothing. A
    // multi-volume continuation cannot be made into a file: refused.
    let typed = |entries: &[(u8, &str, &[u8])]| {
        let mut builder = tar::Builder::new(Vec::new());
        for (kind, name, data) in entries {
            entry_with(
                &mut builder,
                tar::EntryType::new(*kind),
                (name, ""),
                (0o644, 0, 1_700_000_000),
                data,
            );
        }
        gzip(&builder.into_inner().expect("tar"))
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let layer = typed(&[
        (b'V', "volume label", b""),
        (b'D', "dumped/", b"Yfile\0\0"),
        (b'Z', "dumped/vendor-type", b"kept as a file\n"),
    ]);
    let (store, reference) = hand_built_store(&dir.path().join("store"), &[(layer, GZIP_LAYER)]);
    let target = dir.path().join("rootfs");
    rootfs::unpack(
        &store,
        &reference,
        None,
        &target,
        &UnpackOptions::rootless(),
    )
    .expect("unpack");
    assert!(target.join("dumped").is_dir());
    assert_eq!(
        std::fs::read(target.join("dumped/vendor-type")).expect("file"),
        b"kept as a file\n"
    );
    assert!(!target.join("volume label").exists());

    let layer = typed(&[(b'M', "split-file", b"second half")]);
    let (store, reference) = hand_built_store(&dir.path().join("store-m"), &[(layer, GZIP_LAYER)]);
    match rootfs::unpack(
        &store,
        &reference,
        None,
        &dir.path().join("refused"),
        &UnpackOptions::rootless(),
    ) {
        Err(Error::UnsafeEntry { entry, reason, .. }) => {
            assert_eq!(entry, "split-file");
            assert!(reason.contains("multi-volume"), "{reason}");
        }
        other => panic!("a multi-volume part was applied: {other:?}"),
    }
    assert!(!dir.path().join("refused").exists());
}

#[test]
fn builds_of_a_removed_and_collected_image_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "small");
    let (_, layered) = store_with_fixture(&dir.path().join("store"), "layered");
    let options = rootless_build_options();
    let small = rootfs::build(&store, &reference, None, &options).expect("build small");
    let kept = rootfs::build(&store, &layered, None, &options).expect("build layered");
    assert_eq!(
        rootfs::remove_unused_builds(&store)
            .expect("nothing unused")
            .images,
        0
    );
    assert!(store.remove(&reference).expect("removed"));
    store.gc().expect("gc");
    let removed = rootfs::remove_unused_builds(&store).expect("removal");
    assert_eq!(removed.images, 1);
    assert_eq!(removed.bytes, small.size);
    assert!(!small.path.exists());
    assert!(
        !owner_file(&small.path).exists(),
        "the removed build's owner file is left"
    );
    assert!(kept.path.exists());
    assert!(owner_file(&kept.path).exists());
}

/// The file naming what keeps a cached build or layer tar.
fn owner_file(kept: &Path) -> PathBuf {
    let mut name = kept.as_os_str().to_owned();
    name.push(".owner");
    PathBuf::from(name)
}

#[test]
fn layer_tars_and_layer_images_stay_while_an_image_has_their_layer() {
    // `layered` (gzip) and `layered-zstd` share their diff IDs, so their
    // layer tars are the same files; the tars go only when both are gone.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let (store, zstd) = store_with_fixture(&root, "layered-zstd");
    let (_, gzip) = store_with_fixture(&root, "layered");
    let tars = rootfs::layer_tars(&store, &zstd, None).expect("zstd tars");
    assert!(
        rootfs::layer_tars(&store, &gzip, None)
            .expect("gzip tars")
            .iter()
            .all(|t| t.cached)
    );
    let layer_images =
        rootfs::build_layers(&store, &gzip, None, &rootless_build_options()).expect("per layer");
    let found = rootfs::cached_builds(&store).expect("counted");
    assert_eq!(
        (found.images, found.layer_tars),
        (layer_images.len(), tars.len())
    );
    let tar_bytes: u64 = tars
        .iter()
        .map(|t| std::fs::metadata(&t.path).expect("tar").len())
        .sum();
    let image_bytes: u64 = layer_images.iter().map(|l| l.size).sum();
    assert_eq!(found.bytes, tar_bytes + image_bytes);

    assert!(store.remove(&zstd).expect("removed"));
    store.gc().expect("gc");
    let removed = rootfs::remove_unused_builds(&store).expect("removal");
    assert_eq!(
        removed,
        rootfs::BuildFiles::default(),
        "the gzip image still has the layers"
    );
    assert!(tars.iter().all(|t| t.path.is_file()));

    assert!(store.remove(&gzip).expect("removed"));
    store.gc().expect("gc");
    let removed = rootfs::remove_unused_builds(&store).expect("removal");
    assert_eq!(
        (removed.images, removed.layer_tars, removed.bytes),
        (layer_images.len(), tars.len(), tar_bytes + image_bytes)
    );
    for path in tars
        .iter()
        .map(|t| &t.path)
        .chain(layer_images.iter().map(|l| &l.path))
    {
        assert!(!path.exists(), "{} is left", path.display());
        assert!(
            !owner_file(path).exists(),
            "the owner of {} is left",
            path.display()
        );
    }
    assert_eq!(
        rootfs::cached_builds(&store).expect("counted"),
        rootfs::BuildFiles::default()
    );
}

/// Builds `reference` with the `rootfs-build` binary (and `extra`
/// arguments) as `nobody` (through setpriv) when the tests run as root,
/// else as this user; checks each image with e2fsck and returns their
/// paths. `dir` holds the store.
fn build_unprivileged(
    dir: &Path,
    store: &Store,
    reference: &Reference,
    extra: &[&str],
) -> Vec<PathBuf> {
    let exe = env!("CARGO_BIN_EXE_rootfs-build");
    let mut command;
    if running_as_root() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let status = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(store.root())
            .status()
            .expect("chown runs");
        assert!(status.success());
        command = Command::new("setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups", exe]);
    } else {
        command = Command::new(exe);
    }
    let output = command
        .arg(store.root())
        .arg(reference.to_string())
        .args(extra)
        .output()
        .expect("rootfs-build runs");
    assert!(
        output.status.success(),
        "unprivileged build failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let paths: Vec<PathBuf> = String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(PathBuf::from)
        .collect();
    for path in &paths {
        e2fsck_passes(path);
    }
    paths
}

#[test]
fn unprivileged_build_reads_what_its_owner_may_not_and_keeps_the_modes() {
    // Fedora's /etc/shadow is mode 0000 and its sudo 4111: an unprivileged
    // process cannot read them, nor list a directory of mode 0000, yet
    // mke2fs must copy them in with those modes.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut layer = tar::Builder::new(Vec::new());
    for (kind, name, mode, data) in [
        (tar::EntryType::Directory, "etc", 0o755, &b""[..]),
        (
            tar::EntryType::Regular,
            "etc/shadow",
            0o000,
            &b"root:*:19000::::::\n"[..],
        ),
        (tar::EntryType::Directory, "usr", 0o755, b""),
        (tar::EntryType::Directory, "usr/bin", 0o755, b""),
        (
            tar::EntryType::Regular,
            "usr/bin/sudo",
            0o4111,
            b"\x7fELF sudo",
        ),
        (tar::EntryType::Directory, "vault", 0o000, b""),
        (tar::EntryType::Regular, "vault/key", 0o200, b"secret"),
    ] {
        entry_with(&mut layer, kind, (name, ""), (mode, 0, 1_700_000_000), data);
    }
    // A hardlink to the unreadable file: a per-layer image copies it.
    let mut upper = tar::Builder::new(Vec::new());
    entry_with(
        &mut upper,
        tar::EntryType::Link,
        ("etc/shadow-", "etc/shadow"),
        (0o000, 0, 1_700_000_000),
        b"",
    );
    let layers = [
        (gzip(&layer.into_inner().expect("tar")), GZIP_LAYER),
        (gzip(&upper.into_inner().expect("tar")), GZIP_LAYER),
    ];
    let (store, reference) = hand_built_store(&dir.path().join("store"), &layers);
    let path = build_unprivileged(dir.path(), &store, &reference, &[]).remove(0);
    // The same bytes as root's rootless build, which read the tree as is.
    let (root_store, _) = hand_built_store(&dir.path().join("root"), &layers);
    let as_root =
        rootfs::build(&root_store, &reference, None, &rootless_build_options()).expect("build");
    let same = std::fs::read(&path).expect("a") == std::fs::read(&as_root.path).expect("b");
    assert!(same, "unprivileged and rootless-as-root builds differ");
    for (name, mode) in [
        ("/etc/shadow", "Mode:  0000"),
        ("/usr/bin/sudo", "Mode:  04111"),
        ("/vault", "Mode:  0000"),
        ("/vault/key", "Mode:  0200"),
    ] {
        let stat = debugfs(&path, &format!("stat {name}"));
        assert!(stat.contains(mode), "{name}: {stat}");
    }
    let shadow = debugfs(&path, "cat /etc/shadow");
    assert!(shadow.contains("root:*:19000"), "{shadow}");
    let key = debugfs(&path, "cat /vault/key");
    assert!(key.contains("secret"), "{key}");
    let per_layer = build_unprivileged(dir.path(), &store, &reference, &["--per-layer"]);
    assert_eq!(per_layer.len(), 2);
    let copy = debugfs(&per_layer[1], "stat /etc/shadow-");
    assert!(copy.contains("Mode:  0000"), "{copy}");
    let copied = debugfs(&per_layer[1], "cat /etc/shadow-");
    assert!(copied.contains("root:*:19000"), "{copied}");
}

#[test]
fn unprivileged_build_equals_the_rootless_build_of_root() {
    // Run by `nobody` (through setpriv) when the tests run as root: owners,
    // device nodes and `security.capability` must still be right inside
    // the image, and the bytes equal a rootless build made by root.
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "layered");
    let path = build_unprivileged(dir.path(), &store, &reference, &[]).remove(0);
    let notes = debugfs(&path, "stat /home/user/notes.txt");
    assert!(notes.contains("User:  1000   Group:  1000"), "{notes}");
    let null = debugfs(&path, "stat /dev/null");
    assert!(null.contains("Type: character special"), "{null}");
    let ping = debugfs(&path, "ea_list /usr/bin/ping");
    assert!(ping.contains("security.capability (20)"), "{ping}");
    let (rootless_store, _) = store_with_fixture(&dir.path().join("rootless"), "layered");
    let rootless =
        rootfs::build(&rootless_store, &reference, None, &rootless_build_options()).expect("build");
    let same = std::fs::read(&path).expect("a") == std::fs::read(&rootless.path).expect("b");
    assert!(same, "unprivileged and rootless-as-root builds differ");
}

// ---- per-layer tars ---------------------------------------------------------

#[test]
fn layer_tars_are_kept_by_diff_id_and_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "layered-zstd");
    let tars = rootfs::layer_tars(&store, &reference, None).expect("layer tars");
    assert_eq!(tars.len(), 5);
    for tar in &tars {
        assert!(!tar.cached);
        let bytes = std::fs::read(&tar.path).expect("tar");
        assert_eq!(Digest::sha256_of(&bytes), tar.diff_id);
        assert!(tar.path.starts_with(store.root().join(".cachectl/layers")));
    }
    let again = rootfs::layer_tars(&store, &reference, None).expect("again");
    assert!(again.iter().all(|t| t.cached));
    // The gzip twin has the same diff IDs: its tars are the same files.
    let (_, gzip) = store_with_fixture(&dir.path().join("store"), "layered");
    let shared = rootfs::layer_tars(&store, &gzip, None).expect("gzip layers");
    assert!(shared.iter().all(|t| t.cached));
}

#[test]
fn a_layer_that_is_not_its_diff_id_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let layer = gzip(&raw_tar(&[Raw::File("f", b"x")]));
    let wrong = Digest::sha256_of(b"something else");
    let (store, reference) = hand_built_store_with_diff_ids(
        &root,
        &[(layer.clone(), GZIP_LAYER)],
        std::slice::from_ref(&wrong),
    );
    match rootfs::layer_tars(&store, &reference, None) {
        Err(Error::DiffIdMismatch {
            layer: refused,
            expected,
            ..
        }) => {
            assert_eq!(refused, Digest::sha256_of(&layer));
            assert_eq!(expected, wrong.to_string());
        }
        other => panic!("{other:?}"),
    }
    let partials = std::fs::read_dir(root.join(".cachectl/layers"))
        .expect("dir")
        .count();
    assert_eq!(partials, 0, "a partial file was left behind");
}

// ---- per-layer ext4 images ----------------------------------------------------

#[test]
fn layer_images_hold_overlayfs_whiteouts_and_copies_of_lower_hardlinks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "layered");
    let options = rootless_build_options();
    let layers = rootfs::build_layers(&store, &reference, None, &options).expect("layer images");
    assert_eq!(layers.len(), 5);
    for layer in &layers {
        assert!(!layer.cached);
        e2fsck_passes(&layer.path);
    }
    // Layer 2: whiteouts as character devices 0:0, a hardlink to a file of
    // layer 1 as a copy, a hardlink within the layer kept.
    let links = &layers[1].path;
    for whiteout in ["/etc/motd", "/var/cache/old"] {
        let stat = debugfs(links, &format!("stat {whiteout}"));
        assert!(
            stat.contains("Type: character special"),
            "{whiteout}: {stat}"
        );
        assert!(
            stat.contains("Device major/minor number: 00:00"),
            "{whiteout}: {stat}"
        );
    }
    let copy = debugfs(links, "stat /bin/tool-hardlink");
    assert!(copy.contains("Type: regular"), "{copy}");
    assert!(copy.contains("Size: 305"), "{copy}");
    let busybox = debugfs(links, "stat /bin/sh");
    assert!(busybox.contains("Links: 2"), "{busybox}");
    // Layer 3: the opaque directory.
    let opaque = debugfs(&layers[2].path, "ea_list /opt/app");
    assert!(
        opaque.contains("trusted.overlay.opaque (1) = \"y\""),
        "{opaque}"
    );
    let listing = debugfs(&layers[2].path, "ls /opt/app");
    assert!(listing.contains("before-opq.txt") && listing.contains("after-opq.txt"));
    assert!(!listing.contains(".wh."), "{listing}");
    // Layer 4 alone: the device and owners of its own entries.
    let null = debugfs(&layers[3].path, "stat /dev/null");
    assert!(null.contains("Device major/minor number: 01:03"), "{null}");
    let again = rootfs::build_layers(&store, &reference, None, &options).expect("again");
    assert!(again.iter().all(|l| l.cached));
    assert_eq!(
        again.iter().map(|l| &l.path).collect::<Vec<_>>(),
        layers.iter().map(|l| &l.path).collect::<Vec<_>>()
    );
}

#[test]
fn hardlinks_to_a_symlink_unpack_and_build_as_one_inode() {
    // tar2ext4 once refused hardlinks to symlinks, which real images have
    // (PEERS row 21); `mke2fs -d` once split hardlinks into separate inodes.
    let dir = tempfile::tempdir().expect("tempdir");
    let lower = raw_tar(&[
        Raw::Dir("bin"),
        Raw::File("bin/busybox", b"#!/bin/sh\necho busybox\n"),
        Raw::Symlink("bin/sh", "busybox"),
    ]);
    let upper = raw_tar(&[
        Raw::Dir("usr"),
        Raw::Dir("usr/bin"),
        // Hardlinks to a symlink: of a lower layer and of this layer.
        Raw::Hardlink("usr/bin/sh", "bin/sh"),
        Raw::Symlink("usr/bin/env", "../../bin/busybox"),
        Raw::Hardlink("usr/bin/env2", "usr/bin/env"),
    ]);
    let (store, reference) = hand_built_store(
        &dir.path().join("store"),
        &[(gzip(&lower), GZIP_LAYER), (gzip(&upper), GZIP_LAYER)],
    );
    assert_same_as_umoci(&store, &reference, &store, &reference, dir.path());

    let built = rootfs::build(&store, &reference, None, &rootless_build_options()).expect("build");
    e2fsck_passes(&built.path);
    for (a, b, target) in [
        ("/bin/sh", "/usr/bin/sh", "busybox"),
        ("/usr/bin/env", "/usr/bin/env2", "../../bin/busybox"),
    ] {
        let (first, second) = (
            debugfs(&built.path, &format!("stat {a}")),
            debugfs(&built.path, &format!("stat {b}")),
        );
        let inode = |text: &str| {
            text.split_whitespace()
                .nth(1)
                .map(str::to_owned)
                .expect("an inode number")
        };
        assert_eq!(inode(&first), inode(&second), "{a} and {b} share an inode");
        assert!(first.contains("Type: symlink"), "{first}");
        assert!(first.contains("Links: 2"), "{first}");
        assert!(
            first.contains(&format!("Fast link dest: \"{target}\"")),
            "{first}"
        );
    }
}

#[test]
fn many_small_files_fit_a_computed_size_with_no_headroom() {
    // `mke2fs -d` fails with "Could not allocate block" when a size is
    // computed from file bytes alone and the image holds many small files
    // (PEERS row 22). The computed size must hold them with no headroom.
    let dir = tempfile::tempdir().expect("tempdir");
    let names: Vec<(String, Vec<u8>)> = (0..4000u32)
        .map(|i| {
            let size = (i * 37 % 9000) as usize;
            (
                format!("d{}/f{i}", i % 40),
                vec![b'a' + (i % 26) as u8; size],
            )
        })
        .collect();
    let dirs: Vec<String> = (0..40).map(|d| format!("d{d}")).collect();
    let mut entries: Vec<Raw<'_>> = dirs.iter().map(|d| Raw::Dir(d)).collect();
    entries.extend(names.iter().map(|(name, data)| Raw::File(name, data)));
    let (store, reference) = hand_built_store(
        &dir.path().join("store"),
        &[(gzip(&raw_tar(&entries)), GZIP_LAYER)],
    );
    let mut options = rootless_build_options();
    options.headroom = 0;
    let built = rootfs::build(&store, &reference, None, &options).expect("fits");
    e2fsck_passes(&built.path);
    let listing = debugfs(&built.path, "ls -l /d39");
    assert_eq!(listing.matches(" f").count(), 100, "{listing}");
}

#[test]
fn files_with_large_extended_attributes_fit_a_computed_size_with_no_headroom() {
    // An attribute too large for the inode takes a block of its own (one
    // per file when the values differ): a size computed from file data
    // alone is too small for them (PEERS row 22).
    let dir = tempfile::tempdir().expect("tempdir");
    let mut layer = tar::Builder::new(Vec::new());
    entry_with(
        &mut layer,
        tar::EntryType::Directory,
        ("etc", ""),
        (0o755, 0, 1_700_000_000),
        b"",
    );
    for i in 0..3000u32 {
        let value = format!("{i:0>1000}");
        layer
            .append_pax_extensions([("SCHILY.xattr.user.label", value.as_bytes())])
            .expect("pax");
        entry_with(
            &mut layer,
            tar::EntryType::Regular,
            (&format!("etc/f{i}"), ""),
            (0o644, 0, 1_700_000_000),
            b"x",
        );
    }
    let (store, reference) = hand_built_store(
        &dir.path().join("store"),
        &[(gzip(&layer.into_inner().expect("tar")), GZIP_LAYER)],
    );
    let mut options = rootless_build_options();
    options.headroom = 0;
    let built = rootfs::build(&store, &reference, None, &options).expect("fits");
    e2fsck_passes(&built.path);
    let attributes = debugfs(&built.path, "ea_list /etc/f2999");
    assert!(attributes.contains("user.label (1000)"), "{attributes}");
}

#[test]
fn a_layer_image_copy_of_a_lower_hardlink_keeps_the_files_metadata() {
    // The copy a per-layer image holds for a hardlink to a lower file is
    // that file: its mode, owner, mtime and extended attributes, not the
    // link header's.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lower = tar::Builder::new(Vec::new());
    entry_with(
        &mut lower,
        tar::EntryType::Directory,
        ("usr/bin", ""),
        (0o755, 0, 1_600_000_000),
        b"",
    );
    lower
        .append_pax_extensions([("SCHILY.xattr.user.cachectl", &b"the lower file"[..])])
        .expect("pax");
    entry_with(
        &mut lower,
        tar::EntryType::Regular,
        ("usr/bin/chfn", ""),
        (0o4755, 0, 1_600_000_000),
        b"#!/bin/sh\necho chfn\n",
    );
    let mut upper = tar::Builder::new(Vec::new());
    entry_with(
        &mut upper,
        tar::EntryType::Link,
        ("usr/bin/chfn-again", "usr/bin/chfn"),
        (0o777, 1000, 1_700_000_000),
        b"",
    );
    let (store, reference) = hand_built_store(
        &dir.path().join("store"),
        &[
            (gzip(&lower.into_inner().expect("tar")), GZIP_LAYER),
            (gzip(&upper.into_inner().expect("tar")), GZIP_LAYER),
        ],
    );
    let layers = rootfs::build_layers(&store, &reference, None, &rootless_build_options())
        .expect("layer images");
    let copy = debugfs(&layers[1].path, "stat /usr/bin/chfn-again");
    assert!(copy.contains("Mode:  04755"), "{copy}");
    assert!(copy.contains("User:     0   Group:     0"), "{copy}");
    let attributes = debugfs(&layers[1].path, "ea_list /usr/bin/chfn-again");
    assert!(
        attributes.contains("user.cachectl (14) = \"the lower file\""),
        "the copy lost the file's extended attribute: {attributes}"
    );
    let unpacked = dir.path().join("unpacked");
    rootfs::unpack(
        &store,
        &reference,
        None,
        &unpacked,
        &UnpackOptions::rootless(),
    )
    .expect("unpack");
    let mtime = std::fs::metadata(unpacked.join("usr/bin/chfn-again"))
        .expect("unpacked")
        .modified()
        .expect("mtime");
    assert_eq!(
        mtime,
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000),
        "the flattened tree keeps the file's mtime too"
    );
    let mtime_line = debugfs(&layers[1].path, "stat /usr/bin/chfn-again");
    let expected = debugfs(&layers[0].path, "stat /usr/bin/chfn");
    let line = |text: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with("mtime:"))
            .map(str::to_owned)
            .expect("an mtime line")
    };
    assert_eq!(line(&mtime_line), line(&expected));
}

#[test]
fn pax_owner_and_time_records_override_the_header() {
    // Go's archive/tar and GNU tar write ids above 2,097,151 and times the
    // octal fields cannot hold as PAX records; the header holds 0.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut layer = tar::Builder::new(Vec::new());
    entry_with(
        &mut layer,
        tar::EntryType::Directory,
        ("srv", ""),
        (0o755, 0, 1_600_000_000),
        b"",
    );
    layer
        .append_pax_extensions([
            ("uid", b"3000000".as_slice()),
            ("gid", b"3000001".as_slice()),
            ("mtime", b"1800000000.25".as_slice()),
        ])
        .expect("PAX records");
    entry_with(
        &mut layer,
        tar::EntryType::Regular,
        ("srv/data", ""),
        (0o640, 0, 0),
        b"owned by a large id\n",
    );
    let (store, reference) = hand_built_store(
        &dir.path().join("store"),
        &[(gzip(&layer.into_inner().expect("tar")), GZIP_LAYER)],
    );
    assert_same_as_umoci(&store, &reference, &store, &reference, dir.path());
    let unpacked = dir.path().join("pax");
    rootfs::unpack(
        &store,
        &reference,
        None,
        &unpacked,
        &UnpackOptions::rootless(),
    )
    .expect("unpack");
    let data = std::fs::metadata(unpacked.join("srv/data")).expect("unpacked");
    assert_eq!(
        data.modified().expect("mtime"),
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000)
    );
    let built = rootfs::build(&store, &reference, None, &rootless_build_options()).expect("build");
    let stat = debugfs(&built.path, "stat /srv/data");
    assert!(stat.contains("User: 3000000   Group: 3000001"), "{stat}");
}

#[test]
fn a_failed_unpack_leaves_an_empty_target_empty_and_a_good_one_fills_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "layered");
    let sandbox = dir.path().join("box");
    let target = sandbox.join("rootfs");
    std::fs::create_dir_all(&target).expect("empty target");
    let mut capped = UnpackOptions::rootless();
    capped.max_entries = Some(20);
    let failed = rootfs::unpack(&store, &reference, None, &target, &capped);
    assert!(
        matches!(failed, Err(Error::LimitExceeded { .. })),
        "{failed:?}"
    );
    let left: Vec<_> = std::fs::read_dir(&sandbox)
        .expect("box")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, ["rootfs"], "no staging directory is left");
    assert_eq!(
        std::fs::read_dir(&target).expect("target").count(),
        0,
        "the target is still empty"
    );
    let report = rootfs::unpack(
        &store,
        &reference,
        None,
        &target,
        &UnpackOptions::rootless(),
    )
    .expect("unpack into the empty target");
    assert!(report.entries > 20);
    assert!(target.join("etc").is_dir());
    let mode =
        std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(&target).expect("target")) & 0o777;
    assert_eq!(
        mode, 0o755,
        "the root of the tree is 0755 unless a layer says otherwise"
    );
}

#[test]
fn work_directories_of_killed_processes_are_swept_and_live_ones_kept() {
    // A build killed with SIGKILL leaves its tree under the store, or in
    // /dev/shm (memory, until reboot): gc must reclaim them, never one a
    // live process holds.
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = store_with_fixture(&dir.path().join("store"), "small");
    let work = store.root().join(".cachectl/rootfs-tmp");
    let killed = work.join("build-killed");
    left_by_a_killed_process(&killed);
    let young = work.join("build-young");
    std::fs::create_dir_all(&young).expect("young");
    let live = work.join("build-live");
    old_dir(&live);
    let in_memory = Path::new("/dev/shm").join(format!("cachectl-test-{}", std::process::id()));
    let shm = std::fs::create_dir(&in_memory).is_ok();
    if shm {
        make_old(&in_memory);
    }
    // Another process holds the lock a live WorkDir holds.
    let mut holder = hold_lock(&live);

    let removed = rootfs::remove_stale_work(&store).expect("sweep");
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(!killed.exists(), "the killed build's tree is gone");
    assert!(young.exists(), "a directory younger than a minute is kept");
    assert!(live.exists(), "a locked directory is kept");
    if shm {
        assert!(!in_memory.exists(), "the in-memory tree is gone");
    }
    assert!(removed > usize::from(shm), "{removed}");
}

/// A work tree at `dir` as a killed process leaves it: a read-only
/// directory holding a file, two hours old, locked by no one.
fn left_by_a_killed_process(dir: &Path) {
    std::fs::create_dir_all(dir.join("tree/ro")).expect("killed tree");
    std::fs::write(dir.join("tree/ro/file"), b"left behind").expect("file");
    std::fs::set_permissions(
        dir.join("tree/ro"),
        std::os::unix::fs::PermissionsExt::from_mode(0o555),
    )
    .expect("read-only dir");
    make_old(dir);
}

/// Another process holding `flock` on the directory `dir` (as a live
/// unpack or build does) until killed.
fn hold_lock(dir: &Path) -> std::process::Child {
    let mut holder = Command::new("flock")
        .arg("-n")
        .arg(dir)
        .args(["-c", "echo locked; sleep 30"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("flock runs");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().expect("stdout")),
        &mut line,
    )
    .expect("flock says it holds the lock");
    assert_eq!(line.trim(), "locked");
    holder
}

/// An empty directory at `path`, two hours old.
fn old_dir(path: &Path) {
    std::fs::create_dir_all(path).expect("directory");
    make_old(path);
}

/// Sets the mtime of `path` two hours back.
fn make_old(path: &Path) {
    let touched = Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(path)
        .status()
        .expect("touch runs");
    assert!(touched.success());
}

#[test]
fn a_killed_unpacks_staging_directory_is_swept_by_the_next_unpack_into_that_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "small");
    let sandbox = dir.path().join("box");
    let killed = sandbox.join(".rootfs.unpack-killed");
    left_by_a_killed_process(&killed);
    // Another unpack into the same target, still running (locked), and
    // one into another target: neither is touched.
    let live = sandbox.join(".rootfs.unpack-live");
    old_dir(&live);
    let other = sandbox.join(".other.unpack-killed");
    old_dir(&other);
    let mut holder = hold_lock(&live);

    let unpacked = rootfs::unpack(
        &store,
        &reference,
        None,
        &sandbox.join("rootfs"),
        &UnpackOptions::rootless(),
    );
    let _ = holder.kill();
    let _ = holder.wait();
    unpacked.expect("unpack");
    assert!(!killed.exists(), "the killed unpack's staging dir is left");
    assert!(live.exists(), "a live unpack's staging dir was removed");
    assert!(other.exists(), "another target's staging dir was removed");
    assert!(sandbox.join("rootfs").is_dir());
    let notes = store.root().join(".cachectl/unpacking");
    let left = std::fs::read_dir(&notes).map_or(0, Iterator::count);
    assert_eq!(left, 0, "a finished unpack left its note in the store");
}

#[test]
fn gc_sweeps_the_staging_directories_of_killed_unpacks_wherever_they_are() {
    // A killed unpack leaves its staging dir beside a target the next
    // unpack may never name again: its note in the store lets gc find it.
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = store_with_fixture(&dir.path().join("store"), "small");
    let elsewhere = dir.path().join("vm-images");
    let killed = elsewhere.join(".guest.unpack-killed");
    left_by_a_killed_process(&killed);
    let live = elsewhere.join(".other.unpack-live");
    old_dir(&live);
    // A note naming a directory that is no staging directory: never removed.
    let precious = elsewhere.join("precious");
    old_dir(&precious);
    let notes = store.root().join(".cachectl/unpacking");
    std::fs::create_dir_all(&notes).expect("notes");
    for (name, path) in [("a", &killed), ("b", &live), ("c", &precious)] {
        std::fs::write(notes.join(name), path.as_os_str().as_encoded_bytes()).expect("note");
        make_old(&notes.join(name));
    }
    let mut holder = hold_lock(&live);
    let removed = rootfs::remove_stale_work(&store).expect("sweep");
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(!killed.exists(), "the killed unpack's staging dir is left");
    assert!(!notes.join("a").exists(), "its note is left");
    assert!(
        live.exists() && notes.join("b").exists(),
        "a live unpack was swept"
    );
    assert!(
        precious.exists(),
        "a directory that is no staging dir was removed"
    );
    assert!(!notes.join("c").exists(), "the stray note is left");
    assert!(removed >= 1, "{removed}");
}

#[test]
fn a_failed_unpack_names_paths_under_its_target_and_leaves_nothing() {
    // A name longer than NAME_MAX (255): the kernel refuses to create it,
    // in the staging directory; the error names it under the target.
    let long = "n".repeat(300);
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(1);
    builder
        .append_data(&mut header, &long, &b"x"[..])
        .expect("long name");
    let layer = gzip(&builder.into_inner().expect("tar"));
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = hand_built_store(&dir.path().join("store"), &[(layer, GZIP_LAYER)]);
    let sandbox = dir.path().join("box");
    std::fs::create_dir_all(&sandbox).expect("box");
    let target = sandbox.join("target");
    match rootfs::unpack(
        &store,
        &reference,
        None,
        &target,
        &UnpackOptions::rootless(),
    ) {
        Err(err @ Error::Entry { .. }) => {
            let message = err.to_string();
            let Error::Entry { path, entry, .. } = err else {
                unreachable!()
            };
            assert_eq!(path, target.join(&long), "{message}");
            assert_eq!(entry, long);
            assert!(!message.contains(".unpack-"), "{message}");
        }
        other => panic!("the long name was not refused: {other:?}"),
    }
    only_target_in(&sandbox);
}
