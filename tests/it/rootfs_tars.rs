//! Tars read and written, with GNU tar as the oracle: the tar parser lists
//! every fixture layer as `tar -tv` does; sparse files in every GNU form,
//! long names, large ids, old and far times, odd entry types and PAX
//! records unpack as GNU tar extracts them; the flattened export extracts
//! to the unpacked tree.

use crate::rootfs_compare::{assert_same_as_umoci, differences, tree};
use crate::rootfs_support::{
    GZIP_LAYER, debugfs, entry_with, fixture_layout, gzip, hand_built_store,
    rootless_build_options, running_as_root, store_with_fixture,
};
use rootfs::{Error, UnpackOptions};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

#[test]
fn exported_tar_lists_parents_first_and_extracts_to_the_unpacked_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = store_with_fixture(&dir.path().join("store"), "layered");
    let mut bytes = Vec::new();
    rootfs::export_tar(
        &store.image(&reference, None).expect("stored image"),
        &mut bytes,
    )
    .expect("export");
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
        &store.image(&reference, None).expect("stored image"),
        &unpacked,
        &UnpackOptions::default(),
    )
    .expect("unpack");
    let ours = tree(&unpacked);
    let theirs = tree(&extracted);
    let diff = differences(&ours, &theirs);
    assert!(diff.is_empty(), "export differs:\n{}", diff.join("\n"));
}

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
                &store.image(&reference, None).expect("stored image"),
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
        rootfs::unpack(
            &store.image(&reference, None).expect("stored image"),
            &ours_dir,
            &options,
        )
        .expect("unpack");
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
        &store.image(&reference, None).expect("stored image"),
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
        &store.image(&reference, None).expect("stored image"),
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
        &store.image(&reference, None).expect("stored image"),
        &unpacked,
        &UnpackOptions::rootless(),
    )
    .expect("unpack");
    let data = std::fs::metadata(unpacked.join("srv/data")).expect("unpacked");
    assert_eq!(
        data.modified().expect("mtime"),
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000)
    );
    let built = rootfs::build(
        &store.image(&reference, None).expect("stored image"),
        &rootless_build_options(),
    )
    .expect("build");
    let stat = debugfs(&built.path, "stat /srv/data");
    assert!(stat.contains("User: 3000000   Group: 3000001"), "{stat}");
}
