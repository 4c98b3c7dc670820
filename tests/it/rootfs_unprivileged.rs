//! Builds by an unprivileged user (the `rootfs-build` binary run as
//! `nobody` when the tests run as root): files its owner may not read keep
//! their modes, and the image equals root's rootless build.

use crate::rootfs_support::{
    GZIP_LAYER, debugfs, e2fsck_passes, entry_with, gzip, hand_built_store, rootless_build_options,
    running_as_root, store_with_fixture,
};
use ociref::Reference;
use ocistore::Store;
use std::path::{Path, PathBuf};
use std::process::Command;

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
    let as_root = rootfs::build(
        &root_store.image(&reference, None).expect("stored image"),
        &rootless_build_options(),
    )
    .expect("build");
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
    let rootless = rootfs::build(
        &rootless_store
            .image(&reference, None)
            .expect("stored image"),
        &rootless_build_options(),
    )
    .expect("build");
    let same = std::fs::read(&path).expect("a") == std::fs::read(&rootless.path).expect("b");
    assert!(same, "unprivileged and rootless-as-root builds differ");
}
