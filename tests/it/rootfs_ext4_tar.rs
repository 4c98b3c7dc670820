//! ext4 images from a tar stream (`rootfs::ext4_from_tar`, `mke2fs -d -`)
//! and the detection of what `mke2fs` reads (`rootfs::detect_mke2fs`):
//! every entry kind and every xattr namespace of a tar reaches the image,
//! builds are byte-identical (also run as another user), the image of an
//! exported tar holds the tree `rootfs::build` makes, and a cache hit
//! starts no `mke2fs`.

use crate::rootfs_support::{
    debugfs, e2fsck_passes, rootless_build_options, running_as_root, store_with_fixture,
};
use crate::rootfs_tree::{image_tree, tree_differences};
use ociref::Digest;
use rootfs::{BuildOptions, Ext4Input, TarImage};
use std::fs::Permissions;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A tar with every entry kind and xattrs of every namespace, in both pax
/// forms libarchive reads.
fn every_kind_tar() -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut put = |path: &str,
                   kind: tar::EntryType,
                   (mode, uid, gid): (u32, u64, u64),
                   data: &[u8],
                   pax: &[(&str, &[u8])]| {
        if !pax.is_empty() {
            tar.append_pax_extensions(pax.iter().copied()).expect("pax");
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_mtime(1_600_000_000);
        header.set_size(data.len() as u64);
        match kind {
            tar::EntryType::Link | tar::EntryType::Symlink => {
                let target = std::str::from_utf8(data).expect("utf-8");
                header.set_size(0);
                tar.append_link(&mut header, path, target).expect("link");
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                let (major, minor) = if kind == tar::EntryType::Char {
                    (1, 3)
                } else {
                    (8, 0)
                };
                header.set_device_major(major).expect("major");
                header.set_device_minor(minor).expect("minor");
                header.set_size(0);
                tar.append_data(&mut header, path, std::io::empty())
                    .expect("device");
            }
            _ => tar.append_data(&mut header, path, data).expect("entry"),
        }
    };
    use tar::EntryType::{Block, Char, Directory, Fifo, Link, Regular, Symlink};
    let big = vec![0xa5u8; 3000];
    let capability: &[u8] = &[
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    for dir in ["etc/", "usr/", "usr/bin/", "dev/", "run/", "data/"] {
        put(dir, Directory, (0o755, 0, 0), b"", &[]);
    }
    put("etc/owned", Regular, (0o640, 1000, 2000), b"owned\n", &[]);
    put(
        "usr/bin/su",
        Regular,
        (0o4755, 0, 0),
        b"#!/bin/true\n",
        &[("SCHILY.xattr.security.capability", capability)],
    );
    put("dev/null", Char, (0o666, 0, 0), b"", &[]);
    put("dev/sda", Block, (0o660, 0, 6), b"", &[]);
    put("run/fifo", Fifo, (0o600, 0, 0), b"", &[]);
    put("data/a", Regular, (0o644, 7, 7), b"shared\n", &[]);
    put("data/b", Link, (0o644, 7, 7), b"data/a", &[]);
    put("data/link", Symlink, (0o777, 0, 0), b"a", &[]);
    put(
        "data/all",
        Regular,
        (0o600, 0, 0),
        b"xattrs\n",
        &[
            ("SCHILY.xattr.user.one", b"\x00\xff\"\\ q"),
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            (
                "SCHILY.xattr.security.selinux",
                b"system_u:object_r:etc_t:s0\x00",
            ),
            ("SCHILY.xattr.user.a \"b\"", b"spaced"),
            ("SCHILY.xattr.user.big", &big),
        ],
    );
    // bsdtar's form: name percent-encoded, value base64.
    put(
        "data/bsd",
        Regular,
        (0o644, 0, 0),
        b"bsd\n",
        &[("LIBARCHIVE.xattr.user.lib%20x", b"bGlidmFs")],
    );
    put(
        "data/dir/",
        Directory,
        (0o750, 3, 3),
        b"",
        &[("SCHILY.xattr.user.dir", b"dirval")],
    );
    tar.into_inner().expect("tar")
}

fn shape() -> TarImage {
    TarImage::new(32 << 20, 256, Digest::sha256_of(b"ext4 from tar"))
}

pub(crate) fn skip_without_tar_input(store_root: &Path) -> bool {
    let store = ocistore::Store::open(store_root).expect("store");
    let info = rootfs::detect_mke2fs(&store, &BuildOptions::default()).expect("mke2fs");
    if info.input != Ext4Input::TarStream {
        // `cargo xtask test` installs e2fsprogs >= 1.47.1: only a hand run
        // on an old host lands here.
        eprintln!("mke2fs {:?} cannot read tars: skipped", info.release);
        return true;
    }
    false
}

#[test]
fn ext4_from_tar_holds_every_entry_kind_and_xattr_namespace() {
    let dir = tempfile::tempdir().expect("tempdir");
    if skip_without_tar_input(&dir.path().join("store")) {
        return;
    }
    let image = dir.path().join("kinds.ext4");
    let report = rootfs::ext4_from_tar(
        &every_kind_tar()[..],
        &image,
        &shape(),
        &BuildOptions::default(),
    )
    .expect("ext4 from tar");
    assert_eq!(report.entries, 17);
    // All but security.capability, which mke2fs keeps itself.
    assert_eq!(report.xattrs_set, 7);
    e2fsck_passes(&image);
    let stat = |path: &str| debugfs(&image, &format!("stat \"{path}\""));
    let owned = stat("/etc/owned");
    assert!(owned.contains("User:  1000   Group:  2000"), "{owned}");
    assert!(owned.contains("Mode:  0640"), "{owned}");
    let su = stat("/usr/bin/su");
    assert!(su.contains("Mode:  04755"), "{su}");
    assert!(su.contains("security.capability (20)"), "{su}");
    let null = stat("/dev/null");
    assert!(null.contains("Type: character special"), "{null}");
    assert!(null.contains("Device major/minor number: 01:03"), "{null}");
    let sda = stat("/dev/sda");
    assert!(sda.contains("Type: block special"), "{sda}");
    assert!(sda.contains("Group:     6"), "{sda}");
    assert!(stat("/run/fifo").contains("Type: FIFO"));
    let (a, b) = (stat("/data/a"), stat("/data/b"));
    assert!(a.contains("Links: 2"), "{a}");
    let inode = |text: &str| text.split_whitespace().nth(1).map(str::to_owned);
    assert_eq!(inode(&a), inode(&b), "a hardlink is one inode");
    assert!(stat("/data/link").contains("Fast link dest: \"a\""));
    let all = debugfs(&image, "ea_list /data/all");
    for expected in [
        // debugfs shows a value with unprintable bytes in hex.
        "user.one (6) = 00 ff 22 5c 20 71",
        "trusted.overlay.opaque (1) = \"y\"",
        "security.selinux (27) = \"system_u:object_r:etc_t:s0\\000\"",
        // ... and a quote in a name escaped.
        "user.a \\\"b\\\" (6) = \"spaced\"",
        "user.big (3000)",
    ] {
        assert!(all.contains(expected), "{expected} missing from {all}");
    }
    assert!(debugfs(&image, "ea_list /data/bsd").contains("user.lib x (6) = \"libval\""));
    let dir_stat = stat("/data/dir");
    assert!(dir_stat.contains("user.dir (6) = \"dirval\""), "{dir_stat}");
    assert!(dir_stat.contains("User:     3"), "{dir_stat}");
    assert_eq!(debugfs(&image, "cat /data/b"), "shared\n");
}

#[test]
fn ext4_from_tar_is_byte_reproducible_as_root_or_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    if skip_without_tar_input(&dir.path().join("store")) {
        return;
    }
    let tar = every_kind_tar();
    let build = |name: &str| {
        let image = dir.path().join(name);
        rootfs::ext4_from_tar(&tar[..], &image, &shape(), &BuildOptions::default()).expect("build");
        std::fs::read(&image).expect("image")
    };
    let first = build("a.ext4");
    let second = build("b.ext4");
    assert!(first == second, "two builds of one tar differ");
    // The same from another process: as user 65534 when root.
    let out = dir.path().join("other");
    std::fs::create_dir(&out).expect("out");
    let tar_file = out.join("input.tar");
    std::fs::write(&tar_file, &tar).expect("tar");
    let exe = env!("CARGO_BIN_EXE_rootfs-build");
    let mut command = if running_as_root() {
        std::fs::set_permissions(dir.path(), Permissions::from_mode(0o755)).expect("chmod");
        let status = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(&out)
            .status()
            .expect("chown runs");
        assert!(status.success());
        let mut command = Command::new("setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups", exe]);
        command
    } else {
        Command::new(exe)
    };
    let image = out.join("image.ext4");
    let output = command
        .arg(&tar_file)
        .arg(&image)
        .arg("--from-tar")
        .output()
        .expect("rootfs-build runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let other = std::fs::read(&image).expect("image");
    assert!(first == other, "the build of another user differs");
}

/// Builds `reference` with `rootfs::build` and, from `export_tar`, with
/// `ext4_from_tar` (image under `dir`); asserts both images hold the same
/// tree and returns how long each took (the second: export, then mke2fs).
pub(crate) fn assert_tar_image_holds_the_build(
    store: &ocistore::Store,
    reference: &ociref::Reference,
    dir: &Path,
) -> (Duration, Duration, Duration) {
    let stored = store.image(reference, None).expect("stored image");
    let mut tree_options = rootless_build_options();
    tree_options.input = Some(rootfs::Ext4Input::Tree);
    let started = Instant::now();
    let built = rootfs::build(&stored, &tree_options).expect("build from a tree");
    let build = started.elapsed();
    assert_eq!(built.input, rootfs::Ext4Input::Tree);
    // The build's own tar path, asked for and by default, holds that tree.
    let mut stream_options = rootless_build_options();
    stream_options.input = Some(rootfs::Ext4Input::TarStream);
    let streamed = rootfs::build(&stored, &stream_options).expect("build from the stream");
    assert_eq!(streamed.input, rootfs::Ext4Input::TarStream);
    assert_ne!(
        streamed.path, built.path,
        "each input has its own cache key"
    );
    // The writer is the default, with a key of its own.
    let by_default = rootfs::build(&stored, &rootless_build_options()).expect("build");
    assert_eq!(
        (by_default.input, by_default.cached),
        (rootfs::Ext4Input::Writer, false),
    );
    assert_ne!(by_default.path, streamed.path);
    let tree = image_tree(&built.path);
    for (made, path) in [("streamed", &streamed.path), ("written", &by_default.path)] {
        e2fsck_passes(path);
        let differences = tree_differences(&tree, &image_tree(path));
        assert!(
            differences.is_empty(),
            "{reference}: the {made} build departs from the tree: {differences:#?}"
        );
    }
    drop(stored);
    let started = Instant::now();
    let mut tar = Vec::new();
    let report = rootfs::export_tar(
        &store.image(reference, None).expect("stored image"),
        &mut tar,
    )
    .expect("export");
    let export = started.elapsed();
    let image = dir.join("from-tar.ext4");
    let inodes = report.entries * 5 / 4 + 256;
    let shape = TarImage::new(built.size, inodes, built.manifest_digest.clone());
    let started = Instant::now();
    rootfs::ext4_from_tar(&tar[..], &image, &shape, &BuildOptions::default()).expect("from tar");
    let from_tar = started.elapsed();
    e2fsck_passes(&image);
    let tree_of_build = image_tree(&built.path);
    let tree_of_tar = image_tree(&image);
    assert!(tree_of_build.entries.len() > 3, "{tree_of_build:?}");
    let differences = tree_differences(&tree_of_build, &tree_of_tar);
    assert!(differences.is_empty(), "{reference}: {differences:#?}");
    std::fs::remove_file(&image).expect("image removed");
    (build, export, from_tar)
}

#[test]
fn ext4_of_an_exported_tar_holds_the_tree_build_makes() {
    let dir = tempfile::tempdir().expect("tempdir");
    if skip_without_tar_input(&dir.path().join("probe")) {
        return;
    }
    for name in ["layered", "small", "merged-usr"] {
        let (store, reference) = store_with_fixture(&dir.path().join(name), name);
        assert_tar_image_holds_the_build(&store, &reference, dir.path());
    }
}

#[test]
fn a_cache_hit_starts_no_mke2fs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, reference) = store_with_fixture(&dir.path().join("store"), "small");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let log = dir.path().join("mke2fs.log");
    let wrapper = bin.join("mke2fs");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\nexec /usr/sbin/mke2fs \"$@\"\n",
            log.display()
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(&wrapper, Permissions::from_mode(0o755)).expect("chmod");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let runs = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let build = |input: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_rootfs-build"))
            .env("PATH", &path)
            .arg(dir.path().join("store"))
            .arg(reference.to_string())
            .args(["--input", input])
            .output()
            .expect("rootfs-build runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    // The writer, the default, runs no mke2fs at all.
    build("writer");
    assert_eq!(runs(), 0, "the writer ran mke2fs");
    build("tar-stream");
    // `-V`, the tar probe (when new enough) and the build itself.
    let first = runs();
    assert!((2..=3).contains(&first), "{first} runs of mke2fs");
    build("tar-stream");
    assert_eq!(runs(), first, "the cache hit ran mke2fs");
    // A new binary (here: the wrapper rewritten) is probed again.
    let text = std::fs::read_to_string(&wrapper).expect("wrapper");
    std::fs::write(&wrapper, format!("{text}# changed\n")).expect("rewrite");
    build("tar-stream");
    assert!(runs() > first, "a changed mke2fs was not probed again");
}

#[test]
fn a_stream_larger_than_its_image_fails_with_mke2fs_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    if skip_without_tar_input(&dir.path().join("store")) {
        return;
    }
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_size(16 << 20);
    tar.append_data(&mut header, "big", std::io::repeat(7).take(16 << 20))
        .expect("entry");
    let tar = tar.into_inner().expect("tar");
    let shape = TarImage::new(8 << 20, 64, Digest::sha256_of(b"too small"));
    let image = dir.path().join("small.ext4");
    match rootfs::ext4_from_tar(&tar[..], &image, &shape, &BuildOptions::default()) {
        Err(rootfs::Error::ToolFailed { tool, stderr, .. }) => {
            assert_eq!(tool, "mke2fs");
            assert!(stderr.contains("big"), "{stderr}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn detection_says_tree_for_an_mke2fs_older_than_1_47_1_and_keeps_the_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ocistore::Store::open(dir.path().join("store")).expect("store");
    // The real mke2fs, saying it is 1.47.0 (the tar probe is then skipped).
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    let wrapper = bin.join("mke2fs");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\nif [ \"$1\" = -V ]; then\n  echo 'mke2fs 1.47.0 (5-Feb-2023)' >&2\n  exit 0\nfi\n\
         exec /usr/sbin/mke2fs \"$@\"\n",
    )
    .expect("wrapper");
    std::fs::set_permissions(&wrapper, Permissions::from_mode(0o755)).expect("chmod");
    let mut options = BuildOptions::default();
    options.search_path = Some(bin.clone().into_os_string());
    let first = rootfs::detect_mke2fs(&store, &options).expect("detect");
    assert_eq!(first.input, Ext4Input::Tree);
    assert_eq!(first.release, Some((1, 47, 0)));
    assert!(first.probed);
    assert_eq!(first.input.as_str(), "tree");
    let again = rootfs::detect_mke2fs(&store, &options).expect("detect");
    assert!(!again.probed, "asked again");
    assert_eq!(again.version, first.version);
    let record = std::fs::read_to_string(dir.path().join("store/.cachectl/ext4/.mke2fs-probe"))
        .expect("record");
    assert!(record.contains("\ninput tree\nmke2fs 1.47.0"), "{record}");
    assert!(record.contains(&wrapper.display().to_string()), "{record}");
}
