//! Path confinement, on tiny in-memory layers: entries with `..`,
//! absolute names, symlinked parents (within a layer, across layers, and
//! after a directory is replaced by a link), hardlinks out, whiteouts and
//! opaque markers through links, a file replacing a link, and an overlay
//! copy through a link of the lower tree. Each is refused (or lands
//! inside), and nothing outside the target changes.

use super::applier::Applier;
use super::{UnpackOptions, UnpackReport};
use crate::error::{Error, Result};
use ociref::Digest;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What a test layer entry is.
enum Item<'a> {
    File(&'a [u8], &'a [u8]),
    Dir(&'a [u8]),
    Symlink(&'a [u8], &'a [u8]),
    Hardlink(&'a [u8], &'a [u8]),
}

/// A layer of `items`, names and link names written into the header
/// as given (`tar::Header::set_path` would refuse `..` and `/`).
fn layer(items: &[Item<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        let (kind, name, link, data): (_, _, &[u8], &[u8]) = match *item {
            Item::File(name, data) => (tar::EntryType::Regular, name, b"", data),
            Item::Dir(name) => (tar::EntryType::Directory, name, b"", b""),
            Item::Symlink(name, link) => (tar::EntryType::Symlink, name, link, b""),
            Item::Hardlink(name, link) => (tar::EntryType::Link, name, link, b""),
        };
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        header.set_size(data.len() as u64);
        header.set_mtime(1_700_000_000);
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
        header.set_cksum();
        builder.append(&header, data).expect("append");
    }
    builder.into_inner().expect("tar")
}

fn digest(n: u8) -> Digest {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
        .parse()
        .expect("digest")
}

/// A target (`root`) beside a directory (`outside`) that holds the file
/// `secret`, which no layer may change, link or read.
struct Scene {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Scene {
    fn new() -> Scene {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&root).expect("root");
        std::fs::create_dir(&outside).expect("outside");
        std::fs::write(outside.join("secret"), b"canary").expect("secret");
        Scene {
            _dir: dir,
            root,
            outside,
        }
    }

    /// `outside`'s path (plus `rest`) as bytes, for absolute names.
    fn outside_bytes(&self, rest: &str) -> Vec<u8> {
        format!("{}{rest}", self.outside.display()).into_bytes()
    }

    /// Applies `layers` (rootless) into `root`, base first.
    fn apply(&self, layers: &[Vec<u8>]) -> Result<UnpackReport> {
        let options = UnpackOptions::rootless();
        let mut applier = Applier::new(&self.root, &options, true);
        apply_all(&mut applier, layers)?;
        Ok(applier.report)
    }

    /// Asserts `outside` holds `secret` only, unchanged and with one name.
    fn assert_outside_untouched(&self) {
        let names: Vec<_> = std::fs::read_dir(&self.outside)
            .expect("outside")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["secret"], "nothing new outside the target");
        let secret = self.outside.join("secret");
        assert_eq!(std::fs::read(&secret).expect("secret"), b"canary");
        let meta = std::fs::symlink_metadata(&secret).expect("secret");
        assert_eq!(meta.nlink(), 1, "no link to the secret");
    }
}

fn apply_all(applier: &mut Applier<'_>, layers: &[Vec<u8>]) -> Result<()> {
    for (index, tar) in layers.iter().enumerate() {
        let index = u8::try_from(index).expect("few layers");
        applier.apply_layer(&digest(index), std::io::Cursor::new(tar))?;
    }
    applier.finish()
}

/// Asserts `result` is an [`Error::UnsafeEntry`] naming `entry`.
fn assert_refused<T: std::fmt::Debug>(result: Result<T>, entry: &str) {
    match result {
        Err(Error::UnsafeEntry { entry: named, .. }) => assert_eq!(named, entry),
        other => panic!("{entry} not refused: {other:?}"),
    }
}

#[test]
fn entries_with_dotdot_are_refused() {
    for name in ["../outside/planted", "a/../../outside/planted"] {
        let scene = Scene::new();
        let tar = layer(&[Item::File(name.as_bytes(), b"planted")]);
        assert_refused(scene.apply(&[tar]), name);
        scene.assert_outside_untouched();
    }
}

#[test]
fn absolute_entries_are_refused() {
    let scene = Scene::new();
    let name = scene.outside_bytes("/planted");
    let tar = layer(&[Item::File(&name, b"planted")]);
    assert_refused(scene.apply(&[tar]), &String::from_utf8_lossy(&name));
    scene.assert_outside_untouched();
}

#[test]
fn symlinked_parents_are_refused_within_and_across_layers() {
    let scene = Scene::new();
    let outside = scene.outside_bytes("");
    let link = Item::Symlink(b"link", &outside);
    let tar = layer(&[link, Item::File(b"link/planted", b"planted")]);
    assert_refused(scene.apply(&[tar]), "link/planted");
    scene.assert_outside_untouched();

    let scene = Scene::new();
    let base = layer(&[Item::Symlink(b"up", b"../outside")]);
    let top = layer(&[Item::File(b"up/planted", b"planted")]);
    assert_refused(scene.apply(&[base, top]), "up/planted");
    scene.assert_outside_untouched();
}

#[test]
fn a_directory_replaced_by_a_symlink_is_no_parent() {
    let scene = Scene::new();
    let tar = layer(&[
        Item::Dir(b"d/"),
        Item::File(b"d/inside", b"inside"),
        Item::Symlink(b"d", b"../outside"),
        Item::File(b"d/planted", b"planted"),
    ]);
    assert_refused(scene.apply(&[tar]), "d/planted");
    scene.assert_outside_untouched();
}

#[test]
fn hardlinks_out_of_the_target_are_refused() {
    let scene = Scene::new();
    let tar = layer(&[Item::Hardlink(b"hl", b"../outside/secret")]);
    assert_refused(scene.apply(&[tar]), "hl");
    scene.assert_outside_untouched();

    let scene = Scene::new();
    let absolute = scene.outside_bytes("/secret");
    let tar = layer(&[Item::Hardlink(b"hl", &absolute)]);
    assert_refused(scene.apply(&[tar]), "hl");
    scene.assert_outside_untouched();

    let scene = Scene::new();
    let tar = layer(&[
        Item::Symlink(b"l", b"../outside"),
        Item::Hardlink(b"hl", b"l/secret"),
    ]);
    assert_refused(scene.apply(&[tar]), "hl");
    assert!(std::fs::symlink_metadata(scene.root.join("hl")).is_err());
    scene.assert_outside_untouched();
}

#[test]
fn whiteouts_through_symlinks_are_refused() {
    for marker in ["l/.wh.secret", "l/.wh..wh..opq"] {
        let scene = Scene::new();
        let base = layer(&[Item::Symlink(b"l", b"../outside")]);
        let top = layer(&[Item::File(marker.as_bytes(), b"")]);
        assert_refused(scene.apply(&[base, top]), marker);
        scene.assert_outside_untouched();
    }
}

#[test]
fn a_file_replacing_a_symlink_is_written_inside() {
    let scene = Scene::new();
    let tar = layer(&[
        Item::Symlink(b"f", b"../outside/secret"),
        Item::File(b"f", b"inside"),
    ]);
    scene.apply(&[tar]).expect("applied");
    let file = scene.root.join("f");
    assert!(std::fs::symlink_metadata(&file).expect("f").is_file());
    assert_eq!(std::fs::read(&file).expect("f"), b"inside");
    scene.assert_outside_untouched();
}

#[test]
fn an_overlay_copy_never_reads_through_a_link_of_the_lower_tree() {
    let scene = Scene::new();
    let options = UnpackOptions::rootless();
    let lower: &Path = &scene.root.join("lower");
    let upper = scene.root.join("upper");
    std::fs::create_dir(lower).expect("lower");
    std::fs::create_dir(&upper).expect("upper");
    let base = layer(&[Item::Symlink(b"l", b"../../outside")]);
    let mut below = Applier::new(lower, &options, true);
    apply_all(&mut below, &[base]).expect("base");
    let top = layer(&[Item::Hardlink(b"hl", b"l/secret")]);
    let mut applier = Applier::new(&upper, &options, true).overlay(lower, &below);
    assert_refused(apply_all(&mut applier, &[top]), "hl");
    assert!(std::fs::symlink_metadata(upper.join("hl")).is_err());
    scene.assert_outside_untouched();
}
