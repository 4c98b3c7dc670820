//! The merged entry stream (`rootfs::merged_tar`) against the unpack: for
//! every fixture image, hand-built multi-layer images (whiteouts, opaque
//! directories, hardlinks across layers, replacements, duplicates within
//! a layer), GNU tar's odd and sparse forms and the hostile corpus, the
//! merged tar lists each path once, parents and hardlink targets first,
//! and extracts (with GNU tar as root, and through `rootfs::unpack` as a
//! one-layer image) to the tree `rootfs::unpack` makes: content, owners,
//! modes, mtimes, symlinks, hardlink groups, devices, xattrs. Hostile
//! layers are refused with the unpack's error.

use crate::rootfs_compare::{differences, tree};
use crate::rootfs_support::{GZIP_LAYER, Raw, gzip, hand_built_store, raw_tar, store_with_fixture};
use ociref::Reference;
use ocistore::Store;
use rootfs::{MergeOptions, UnpackOptions};
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::process::Command;

const TAR_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// The merged tar of `reference`, read from the blobs and (checked to be
/// the same bytes) from the layer tars.
fn merged(store: &Store, reference: &Reference) -> Vec<u8> {
    let mut bytes = Vec::new();
    rootfs::merged_tar(
        &store.image(reference, None).expect("stored image"),
        &mut bytes,
        &MergeOptions::default(),
    )
    .expect("merged tar");
    let mut from_tars = Vec::new();
    let mut options = MergeOptions::default();
    options.layer_tars = true;
    rootfs::merged_tar(
        &store.image(reference, None).expect("stored image"),
        &mut from_tars,
        &options,
    )
    .expect("from layer tars");
    assert!(
        bytes == from_tars,
        "{reference}: the layer tars give other bytes"
    );
    bytes
}

/// Each path once, after its parent; each hardlink after its target.
fn assert_ordered(bytes: &[u8]) -> Vec<(String, tar::EntryType)> {
    let mut seen = HashSet::new();
    let mut listing = Vec::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().expect("entries") {
        let entry = entry.expect("entry");
        let path = entry.path().expect("path").to_string_lossy().into_owned();
        let path = path.trim_end_matches('/').to_owned();
        if path == "." {
            continue;
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            assert!(seen.contains(parent), "{path} before its parent");
        }
        let kind = entry.header().entry_type();
        if kind == tar::EntryType::Link {
            let target = entry.link_name().expect("link").expect("target");
            let target = target.to_string_lossy().into_owned();
            assert!(seen.contains(&target), "{path} before its target {target}");
        }
        assert!(!path.contains(".wh."), "whiteout emitted: {path}");
        assert!(seen.insert(path.clone()), "{path} emitted twice");
        listing.push((path, kind));
    }
    listing
}

/// `bytes` extracted by GNU tar as root (owners, devices, xattrs) into
/// `dir/<name>`; `delay`: directory metadata set at the end, not when GNU
/// tar leaves the directory (the layer order does not group a directory's
/// entries; the path order of `export_tar` does).
fn gnu_extract(bytes: &[u8], dir: &Path, name: &str, delay: bool) -> std::path::PathBuf {
    let target = dir.join(name);
    std::fs::create_dir(&target).expect("dir");
    let mut child = Command::new("tar")
        .args(["-x", "-p", "--same-owner", "--numeric-owner", "--xattrs"])
        .args(delay.then_some("--delay-directory-restore"))
        .args(["--xattrs-include=*", "-f", "-", "-C"])
        .arg(&target)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tar runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("fed");
    let output = child.wait_with_output().expect("tar ends");
    assert!(
        output.status.success(),
        "GNU tar: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    target
}

/// The merged tar of `reference` extracts, by GNU tar and by the unpack
/// (as a one-layer image), to the tree `rootfs::unpack` makes.
pub(crate) fn assert_merge_equals_unpack(
    store: &Store,
    reference: &Reference,
    dir: &Path,
) -> Vec<u8> {
    let unpacked = dir.join("unpacked");
    rootfs::unpack(
        &store.image(reference, None).expect("stored image"),
        &unpacked,
        &UnpackOptions::default(),
    )
    .expect("unpack");
    let bytes = merged(store, reference);
    assert_ordered(&bytes);
    let ours = tree(&unpacked);
    let gnu = tree(&gnu_extract(&bytes, dir, "gnu", true));
    let diff = differences(&ours, &gnu);
    assert!(
        diff.is_empty(),
        "{reference}: GNU tar of the merge differs from the unpack:\n{}",
        diff.join("\n")
    );
    let mut exported = Vec::new();
    rootfs::export_tar(
        &store.image(reference, None).expect("stored image"),
        &mut exported,
    )
    .expect("export");
    let listing = assert_ordered(&exported);
    let mut sorted = listing.clone();
    sorted.sort_by(|a, b| Path::new(&a.0).cmp(Path::new(&b.0)));
    assert!(
        listing == sorted,
        "{reference}: the export is not in path order"
    );
    let gnu = tree(&gnu_extract(&exported, dir, "exported", false));
    let diff = differences(&ours, &gnu);
    assert!(
        diff.is_empty(),
        "{reference}: GNU tar of the export differs from the unpack:\n{}",
        diff.join("\n")
    );
    let (one, one_reference) = hand_built_store(&dir.join("one"), &[(bytes.clone(), TAR_LAYER)]);
    let again = dir.join("again");
    rootfs::unpack(
        &one.image(&one_reference, None).expect("stored image"),
        &again,
        &UnpackOptions::default(),
    )
    .expect("unpack of the merge");
    let diff = differences(&ours, &tree(&again));
    assert!(
        diff.is_empty(),
        "{reference}: the merge unpacked differs from the unpack:\n{}",
        diff.join("\n")
    );
    assert!(
        !ours.is_empty() || bytes.len() <= 1024,
        "{reference}: empty"
    );
    bytes
}

/// `(path, type, mode, uid, gid, mtime, size, symlink)` of each entry of a
/// tar, sorted; hardlinks and regular files both `file` (the name that
/// carries the content may differ), with the content's size.
fn entries_of(bytes: &[u8]) -> BTreeMap<String, String> {
    let mut archive = tar::Archive::new(bytes);
    let mut sizes = BTreeMap::new();
    let mut out = BTreeMap::new();
    for entry in archive.entries().expect("entries") {
        let entry = entry.expect("entry");
        let header = entry.header();
        let path = entry.path().expect("path").to_string_lossy().into_owned();
        let path = path.trim_end_matches('/').to_owned();
        if path == "." {
            continue;
        }
        let mut kind = format!("{:?}", header.entry_type());
        let size = if header.entry_type() == tar::EntryType::Link {
            let target = entry.link_name().expect("link").expect("target");
            sizes[&target.to_string_lossy().into_owned()]
        } else {
            entry.size()
        };
        if kind == "Link" {
            kind = "Regular".to_owned();
        }
        sizes.insert(path.clone(), size);
        let symlink = match header.entry_type() {
            tar::EntryType::Symlink => entry.link_name().expect("link").map(|l| l.into_owned()),
            _ => None,
        };
        out.insert(
            path,
            format!(
                "{kind} {:o} {}:{} {} {size} {symlink:?}",
                header.mode().expect("mode"),
                header.uid().expect("uid"),
                header.gid().expect("gid"),
                header.mtime().expect("mtime"),
            ),
        );
    }
    out
}

#[test]
fn merged_tar_of_every_fixture_extracts_to_the_unpacked_tree_and_lists_what_export_does() {
    for name in [
        "small",
        "layered",
        "layered-zstd",
        "layered-uncompressed",
        "multiarch",
        "with-sbom",
        "merged-usr",
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, reference) = store_with_fixture(&dir.path().join("store"), name);
        let bytes = assert_merge_equals_unpack(&store, &reference, dir.path());
        let mut exported = Vec::new();
        rootfs::export_tar(
            &store.image(&reference, None).expect("stored image"),
            &mut exported,
        )
        .expect("export");
        let (ours, theirs) = (entries_of(&bytes), entries_of(&exported));
        let only: Vec<_> = ours
            .iter()
            .filter(|(path, line)| theirs.get(*path) != Some(line))
            .chain(theirs.iter().filter(|(path, _)| !ours.contains_key(*path)))
            .collect();
        assert!(only.is_empty(), "{name}: merge and export differ: {only:?}");
        if name == "layered" {
            let listing: BTreeMap<_, _> = assert_ordered(&bytes).into_iter().collect();
            assert_eq!(listing["dev/null"], tar::EntryType::Char);
            assert!(!listing.contains_key("etc/motd"), "{listing:?}");
        }
    }
}

/// One entry of a hand-built layer: kind (`f`ile, `d`ir, `s`ymlink,
/// `h`ardlink, `c`har device `major,minor`, fifo `p`), name, content or
/// target, mode, owner (uid = gid), mtime, one `user.`/`trusted.` xattr.
#[derive(Clone, Copy)]
pub(crate) struct E {
    kind: char,
    name: &'static str,
    extra: &'static str,
    mode: u32,
    owner: u64,
    mtime: u64,
    xattr: Option<(&'static str, &'static str)>,
}

fn e(kind: char, name: &'static str, extra: &'static str) -> E {
    E {
        kind,
        name,
        extra,
        mode: if kind == 'd' { 0o755 } else { 0o644 },
        owner: 0,
        mtime: 1_700_000_000,
        xattr: None,
    }
}

impl E {
    fn meta(mut self, mode: u32, owner: u64, mtime: u64) -> E {
        (self.mode, self.owner, self.mtime) = (mode, owner, mtime);
        self
    }
    fn xattr(mut self, name: &'static str, value: &'static str) -> E {
        self.xattr = Some((name, value));
        self
    }
}

/// A gzip layer of `entries`, names written as given.
pub(crate) fn layer(entries: &[E]) -> (Vec<u8>, &'static str) {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        if let Some((name, value)) = entry.xattr {
            let key = format!("SCHILY.xattr.{name}");
            builder
                .append_pax_extensions([(key.as_str(), value.as_bytes())])
                .expect("pax");
        }
        let mut header = tar::Header::new_ustar();
        let (kind, data, link) = match entry.kind {
            'f' => (tar::EntryType::Regular, entry.extra, ""),
            'd' => (tar::EntryType::Directory, "", ""),
            's' => (tar::EntryType::Symlink, "", entry.extra),
            'h' => (tar::EntryType::Link, "", entry.extra),
            'c' => (tar::EntryType::Char, "", ""),
            'p' => (tar::EntryType::Fifo, "", ""),
            other => panic!("kind {other}"),
        };
        let old = header.as_old_mut();
        old.name[..entry.name.len()].copy_from_slice(entry.name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(kind);
        if let Some((major, minor)) = entry.extra.split_once(',').filter(|_| entry.kind == 'c') {
            header
                .set_device_major(major.parse().expect("major"))
                .expect("major");
            header
                .set_device_minor(minor.parse().expect("minor"))
                .expect("minor");
        }
        header.set_size(data.len() as u64);
        header.set_mode(entry.mode);
        header.set_uid(entry.owner);
        header.set_gid(entry.owner);
        header.set_mtime(entry.mtime);
        header.set_cksum();
        builder.append(&header, data.as_bytes()).expect("append");
    }
    (gzip(&builder.into_inner().expect("tar")), GZIP_LAYER)
}

/// A named image: its layers, base first.
pub(crate) type Case = (&'static str, Vec<Vec<E>>);

/// Images whose layers hide, replace and link across each other.
pub(crate) fn layered_cases() -> Vec<Case> {
    [hiding_cases(), replacing_cases()].concat()
}

/// Whiteouts, opaque directories, hardlinks outliving their target.
fn hiding_cases() -> Vec<Case> {
    vec![
        (
            "whiteouts and an opaque directory",
            vec![
                vec![
                    e('d', "etc/", ""),
                    e('f', "etc/a", "a"),
                    e('f', "etc/b", "b"),
                    e('d', "opt/", ""),
                    e('d', "opt/x/", ""),
                    e('f', "opt/x/y", "y"),
                    e('f', "opt/z", "z"),
                ],
                vec![
                    e('f', "etc/.wh.a", ""),
                    e('f', "opt/before", "before"),
                    e('f', "opt/.wh..wh..opq", ""),
                    e('f', "opt/after", "after"),
                    e('d', "opt/x/", "").meta(0o700, 3, 5),
                ],
            ],
        ),
        (
            "a hardlink keeps the content its target had before a later layer replaced it",
            vec![
                vec![
                    e('f', "a", "one").meta(0o640, 7, 11).xattr("user.k", "v1"),
                    e('h', "b", "a"),
                    e('h', "c", "a"),
                    e('f', "d", "dee"),
                    e('h', "e", "d"),
                ],
                vec![e('f', "a", "two"), e('f', ".wh.d", ""), e('h', "f", "b")],
                vec![e('f', "b", "three")],
            ],
        ),
        (
            "duplicates within a layer: the last wins, a link to the first keeps it",
            vec![vec![
                e('f', "a", "first"),
                e('h', "b", "a"),
                e('f', "a", "second"),
                e('f', "a", "third").meta(0o600, 0, 3),
                e('d', "d/", "").meta(0o700, 0, 1),
                e('f', "d/x", "x"),
                e('d', "d/", "").meta(0o750, 4, 2),
                e('s', "l", "a"),
                e('s', "l", "b"),
            ]],
        ),
    ]
}

/// Replacements, duplicates, metadata, special files.
fn replacing_cases() -> Vec<Case> {
    vec![
        (
            "directories replaced by files and files by directories",
            vec![
                vec![
                    e('d', "x/", ""),
                    e('f', "x/1", "1"),
                    e('f', "y", "y"),
                    e('s', "z", "x"),
                ],
                vec![
                    e('f', "x", "now a file"),
                    e('d', "y/", "").meta(0o700, 0, 9),
                    e('f', "y/2", "2"),
                    e('d', "z/", ""),
                    e('f', "z/3", "3"),
                ],
            ],
        ),
        (
            "a whiteout removes what the same layer wrote below it",
            vec![
                vec![e('d', "d/", ""), e('f', "k", "k")],
                vec![
                    e('f', "d/x", "x"),
                    e('f', ".wh.d", ""),
                    e('f', "k", "again"),
                    e('f', ".wh.k", ""),
                    e('f', ".wh.gone", ""),
                ],
            ],
        ),
        (
            "directory metadata from the top layer, missing parents made",
            vec![
                vec![
                    e('f', "deep/a/b/c", "c"),
                    e('d', "usr/", "").meta(0o755, 0, 1).xattr("user.one", "1"),
                    e('d', "./", "").meta(0o711, 0, 4).xattr("user.root", "r"),
                ],
                vec![
                    e('d', "usr/", "")
                        .meta(0o750, 5, 2)
                        .xattr("trusted.two", "2"),
                    e('d', "deep/a/", "").meta(0o700, 0, 3),
                    e('f', "empty/parent/.wh.nothing", ""),
                ],
            ],
        ),
        (
            "an opaque marker keeps what its layer wrote below, before and after it",
            vec![
                vec![
                    e('f', "o/old", "old"),
                    e('f', "o/sub/old", "old"),
                    e('f', "o/kept/deeper/old", "old"),
                ],
                vec![
                    e('f', "o/kept/deeper/new", "new"),
                    e('f', "o/before", "before"),
                    e('f', "o/.wh..wh..opq", ""),
                    e('f', "o/after", "after"),
                    e('d', "o/sub/", ""),
                    e('h', "o/link", "o/after"),
                ],
            ],
        ),
        (
            "devices, fifos, a link to a symlink, a symlink replaced",
            vec![
                vec![
                    e('c', "dev/null", "1,3").meta(0o666, 0, 1),
                    e('p', "run/fifo", "").meta(0o600, 2, 2),
                    e('s', "l", "dev/null"),
                    e('h', "hl", "l"),
                    e('c', "dev/zero", "1,5"),
                ],
                vec![e('f', "l", "now a file"), e('h', "dev/zero2", "dev/zero")],
            ],
        ),
    ]
}

#[test]
fn merged_tar_of_layers_that_hide_replace_and_link_equals_the_unpack() {
    for (name, layers) in layered_cases() {
        let dir = tempfile::tempdir().expect("tempdir");
        let encoded: Vec<_> = layers.iter().map(|l| layer(l)).collect();
        let (store, reference) = hand_built_store(&dir.path().join("store"), &encoded);
        eprintln!("case: {name}");
        let bytes = assert_merge_equals_unpack(&store, &reference, dir.path());
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut first = archive
            .entries()
            .expect("entries")
            .next()
            .expect("one")
            .expect("entry");
        let path = first.path().expect("path").into_owned();
        if path == Path::new("./") {
            // The root: the layer's mode, as the unpack gives its target,
            // and no extended attribute (the unpack sets none on it).
            let unpacked = std::fs::metadata(dir.path().join("unpacked")).expect("root");
            use std::os::unix::fs::PermissionsExt;
            let mode = first.header().mode().expect("mode");
            assert_eq!(mode, unpacked.permissions().mode() & 0o7777, "{name}");
            assert_eq!(mode, 0o711, "{name}");
            let records = first
                .pax_extensions()
                .expect("pax")
                .into_iter()
                .flatten()
                .count();
            assert_eq!(records, 0, "{name}: the root carries PAX records");
        }
    }
}

/// One GNU tar of a tree with long names and link targets, ids past the
/// octal fields, times before 1970 and past 2242, a name that is not
/// UTF-8 (when `odd_name`), a hardlink to a long name, and a sparse file,
/// in each format GNU tar writes them: `(format, tar)`.
pub(crate) fn gnu_tar_forms(dir: &Path, odd_name: bool) -> Vec<(String, Vec<u8>)> {
    use std::os::unix::ffi::OsStrExt;
    let source = dir.join("source");
    let deep = source.join(format!("{}/{}", "d".repeat(90), "e".repeat(90)));
    std::fs::create_dir_all(&deep).expect("deep dirs");
    let long_file = deep.join("f".repeat(150));
    std::fs::write(&long_file, b"long name\n").expect("long file");
    std::os::unix::fs::symlink("t".repeat(200), source.join("long-target")).expect("symlink");
    std::fs::hard_link(&long_file, source.join("hardlink-to-long")).expect("hardlink");
    if odd_name {
        let odd_name = source.join(std::ffi::OsStr::from_bytes(b"latin1-\xe9t\xe9"));
        std::fs::write(&odd_name, b"not utf-8\n").expect("odd name");
    }
    let big_ids = source.join("big-ids");
    std::fs::write(&big_ids, b"ids\n").expect("big ids");
    std::os::unix::fs::lchown(&big_ids, Some(3_000_000), Some(3_000_001)).expect("chown");
    let mut holes = vec![0u8; 3 << 20];
    holes[1 << 20..(1 << 20) + 6].copy_from_slice(b"middle");
    holes.extend_from_slice(b"end");
    std::fs::write(source.join("holes.db"), &holes).expect("holes");
    let status = Command::new("fallocate")
        .arg("--dig-holes")
        .arg(source.join("holes.db"))
        .status()
        .expect("fallocate runs");
    assert!(status.success());
    for (path, date) in [
        ("before-1970", "1901-06-01 00:00:00 UTC"),
        ("after-2242", "2300-01-01 00:00:00 UTC"),
    ] {
        std::fs::write(source.join(path), path).expect("file");
        let status = Command::new("touch")
            .args(["-h", "-d", date])
            .arg(source.join(path))
            .status()
            .expect("touch runs");
        assert!(status.success());
    }
    let mut tars = Vec::new();
    for format in [
        &["--format=gnu"][..],
        &["--format=pax", "--sparse-version=0.1"][..],
        &["--format=pax", "--sparse-version=1.0"][..],
    ] {
        let output = Command::new("tar")
            .args(["--sparse", "--numeric-owner", "-C"])
            .arg(&source)
            .args(format)
            .args(["-cf", "-", "."])
            .output()
            .expect("tar runs");
        assert!(output.status.success(), "{format:?}");
        tars.push((format.join("-"), output.stdout));
    }
    tars
}

#[test]
fn merged_tar_of_gnu_tar_odd_and_sparse_forms_equals_the_unpack() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (format, tar) in gnu_tar_forms(dir.path(), true) {
        let case = dir.path().join(&format);
        let (store, reference) = hand_built_store(&case.join("store"), &[(gzip(&tar), GZIP_LAYER)]);
        let bytes = assert_merge_equals_unpack(&store, &reference, &case);
        let listing: BTreeMap<_, _> = assert_ordered(&bytes).into_iter().collect();
        assert_eq!(listing["holes.db"], tar::EntryType::Regular, "{format:?}");
        let names = listing.keys().filter(|p| p.contains("GNUSparseFile"));
        assert_eq!(names.count(), 0, "{format:?}");
    }
}

#[test]
fn merged_tar_refuses_the_hostile_corpus_as_the_unpack_does() {
    let corpus = crate::hostile_layers::corpus();
    let mut refused = 0;
    for (number, case) in corpus.iter().enumerate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("box/outside");
        std::fs::create_dir_all(&out).expect("outside");
        std::fs::write(out.join("canary"), b"canary").expect("canary");
        let out = out.display().to_string();
        let names: Vec<Vec<(String, String, String)>> = case
            .layers
            .iter()
            .map(|layer| {
                layer
                    .iter()
                    .map(|(kind, name, extra)| {
                        let expand = |text: &str| text.replace("{out}", &out);
                        (kind.to_string(), expand(name), expand(extra))
                    })
                    .collect()
            })
            .collect();
        let layers: Vec<Vec<Raw<'_>>> = names
            .iter()
            .map(|layer| {
                layer
                    .iter()
                    .map(|(kind, name, extra)| match kind.as_str() {
                        "f" => Raw::File(name, extra.as_bytes()),
                        "d" => Raw::Dir(name),
                        "s" => Raw::Symlink(name, extra),
                        _ => Raw::Hardlink(name, extra),
                    })
                    .collect()
            })
            .collect();
        let encoded: Vec<_> = layers
            .iter()
            .map(|entries| (gzip(&raw_tar(entries)), GZIP_LAYER))
            .collect();
        let (store, reference) = hand_built_store(&dir.path().join("store"), &encoded);
        let context = format!("case {number} ({})", case.name);
        let target = dir.path().join("box/target");
        let unpacked = rootfs::unpack(
            &store.image(&reference, None).expect("stored image"),
            &target,
            &Default::default(),
        );
        let mut bytes = Vec::new();
        let merged = rootfs::merged_tar(
            &store.image(&reference, None).expect("stored image"),
            &mut bytes,
            &Default::default(),
        );
        match (unpacked, merged) {
            (Ok(_), Ok(_)) => {
                assert_ordered(&bytes);
                let gnu = tree(&gnu_extract(&bytes, dir.path(), "gnu", true));
                let diff = differences(&tree(&target), &gnu);
                assert!(diff.is_empty(), "{context}:\n{}", diff.join("\n"));
            }
            (Err(theirs), Err(ours)) => {
                refused += 1;
                if let rootfs::Error::UnsafeEntry { .. } = theirs {
                    assert_eq!(ours.to_string(), theirs.to_string(), "{context}");
                } else {
                    let message = ours.to_string();
                    assert!(message.contains("entry"), "{context}: {message}");
                }
                let written = bytes.iter().any(|&b| b != 0);
                assert!(!written, "{context}: wrote an entry before refusing");
            }
            (theirs, ours) => panic!(
                "{context}: unpack {:?}, merge {:?}",
                theirs.map(|_| ()),
                ours.map(|_| ())
            ),
        }
    }
    assert!(refused >= 20, "{refused} of {} refused", corpus.len());
}
