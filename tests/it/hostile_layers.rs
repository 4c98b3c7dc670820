//! The hostile-layer corpus: layers built to write, link, delete or create
//! outside the unpack target, by every route a tar offers (`..`, absolute
//! names, symlinked parents within and across layers, absolute and chained
//! links, loops, hardlinks, whiteouts through links, entries replacing
//! links). Each case is unpacked beside a canary directory; whatever the
//! unpack answers, nothing outside the target may change: the canary keeps
//! its bytes and mtime, the directory holds nothing new, and nothing
//! appears beside the target. A refused case names the entry it refused.

use crate::rootfs_support::{Raw, unpack_layers};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// `(kind, bytes, mtime)` of every entry under `dir`, by path.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (String, Vec<u8>, SystemTime)> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).expect("readable").flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            let mtime = meta.modified().expect("mtime");
            let (kind, bytes) = if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).expect("link");
                (
                    "symlink".to_owned(),
                    target.into_os_string().into_encoded_bytes(),
                )
            } else if meta.is_dir() {
                stack.push(path.clone());
                ("dir".to_owned(), Vec::new())
            } else {
                ("file".to_owned(), std::fs::read(&path).expect("readable"))
            };
            found.insert(path, (kind, bytes, mtime));
        }
    }
    found
}

/// One case: a name and its layers, each a list of entries. `{out}` in a
/// name or link target stands for the canary directory's absolute path.
pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) layers: Vec<Vec<(&'static str, &'static str, &'static str)>>,
}

fn case(name: &'static str, layers: &[&[(&'static str, &'static str, &'static str)]]) -> Case {
    Case {
        name,
        layers: layers.iter().map(|l| l.to_vec()).collect(),
    }
}

/// The corpus. Entries are `(kind, name, link target or file content)`
/// with kind `f`ile, `d`irectory, `s`ymlink or `h`ardlink.
pub(crate) fn corpus() -> Vec<Case> {
    [
        dot_dot_cases(),
        symlinked_parent_cases(),
        replacement_cases(),
        link_and_whiteout_cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Entries whose names climb out with `..` or are absolute.
fn dot_dot_cases() -> Vec<Case> {
    vec![
        case("dot-dot file", &[&[("f", "../outside/canary", "pwned")]]),
        case(
            "nested dot-dot file",
            &[&[("d", "a/", ""), ("f", "a/../../outside/canary", "pwned")]],
        ),
        case(
            "deep dot-dot file",
            &[&[("f", "a/b/../../../outside/new", "pwned")]],
        ),
        case(
            "dot slash dot-dot",
            &[&[("f", "./../outside/new", "pwned")]],
        ),
        case("absolute file", &[&[("f", "{out}/new", "pwned")]]),
        case("dot-dot directory", &[&[("d", "../outside/newdir/", "")]]),
        case("dot-dot symlink", &[&[("s", "../outside/newlink", "x")]]),
        case(
            "dot-dot hardlink",
            &[&[("f", "file", "x"), ("h", "../outside/newhard", "file")]],
        ),
        case("entry named dot-dot", &[&[("f", "..", "pwned")]]),
    ]
}

/// Entries written through a symlink (relative, absolute, chained, looping)
/// that points out of the root.
fn symlinked_parent_cases() -> Vec<Case> {
    vec![
        case(
            "relative symlinked parent",
            &[&[("s", "link", "../outside"), ("f", "link/new", "pwned")]],
        ),
        case(
            "symlinked parent from a lower layer",
            &[
                &[("s", "link", "../outside")],
                &[("f", "link/new", "pwned")],
            ],
        ),
        case(
            "absolute symlinked parent",
            &[&[("s", "link", "{out}"), ("f", "link/new", "pwned")]],
        ),
        case(
            "symlink to root, then up",
            &[&[("s", "root", "/"), ("f", "root/../outside/new", "pwned")]],
        ),
        case(
            "absolute link with dot-dot",
            &[&[("s", "link", "/../outside"), ("f", "link/new", "inside")]],
        ),
        case(
            "chained symlinks",
            &[&[
                ("s", "a", "b"),
                ("s", "b", "../outside"),
                ("f", "a/new", "pwned"),
            ]],
        ),
        case(
            "symlink through a directory and up",
            &[&[
                ("d", "b/", ""),
                ("s", "a", "b/../../outside"),
                ("f", "a/new", "pwned"),
            ]],
        ),
        case(
            "symlink loop",
            &[&[("s", "a", "a"), ("f", "a/new", "pwned")]],
        ),
        case(
            "symlink created through a symlinked parent",
            &[&[("s", "link", "../outside"), ("s", "link/evil", "x")]],
        ),
        case(
            "directory created through a symlinked parent",
            &[&[("s", "link", "../outside"), ("d", "link/newdir/", "")]],
        ),
    ]
}

/// Files, directories and symlinks replacing what a symlink or a lower
/// layer put at the same path.
fn replacement_cases() -> Vec<Case> {
    vec![
        case(
            "file replacing a symlink to an outside file",
            &[&[("s", "l", "../outside/canary"), ("f", "l", "pwned")]],
        ),
        case(
            "file replacing an absolute symlink",
            &[&[("s", "l", "{out}/canary"), ("f", "l", "pwned")]],
        ),
        case(
            "file replacing a lower layer's symlink",
            &[&[("s", "l", "../outside/canary")], &[("f", "l", "pwned")]],
        ),
        case(
            "directory over a lower layer's symlink",
            &[
                &[("s", "d", "../outside")],
                &[("d", "d/", ""), ("f", "d/new", "inside")],
            ],
        ),
        case(
            "symlink over a lower layer's directory",
            &[
                &[("d", "d/", "")],
                &[("s", "d", "../outside")],
                &[("f", "d/new", "pwned")],
            ],
        ),
    ]
}

/// Hardlinks to outside files and whiteouts that reach outside.
fn link_and_whiteout_cases() -> Vec<Case> {
    vec![
        case(
            "hardlink to an outside file",
            &[&[("h", "h", "../outside/canary")]],
        ),
        case(
            "hardlink to an absolute outside file",
            &[&[("h", "h", "{out}/canary")]],
        ),
        case(
            "hardlink through a symlinked parent",
            &[&[("s", "l", "../outside"), ("h", "h", "l/canary")]],
        ),
        case(
            "hardlink to a symlink to outside, then written",
            &[&[
                ("s", "l", "../outside/canary"),
                ("h", "h", "l"),
                ("f", "h", "pwned"),
            ]],
        ),
        case(
            "whiteout through a symlinked parent",
            &[&[("s", "d", "../outside")], &[("f", "d/.wh.canary", "")]],
        ),
        case(
            "opaque whiteout through a symlinked parent",
            &[&[("s", "d", "../outside")], &[("f", "d/.wh..wh..opq", "")]],
        ),
        case(
            "whiteout of dot-dot",
            &[&[("d", "a/", "")], &[("f", "a/.wh...", "")]],
        ),
        case(
            "whiteout with dot-dot in its name",
            &[&[("f", "../outside/.wh.canary", "")]],
        ),
    ]
}

/// `text` with `{out}` replaced by `out`.
fn expand(text: &str, out: &str) -> String {
    text.replace("{out}", out)
}

#[test]
fn no_layer_of_the_hostile_corpus_changes_anything_outside_the_target() {
    let corpus = corpus();
    assert!(
        corpus.len() >= 30,
        "the corpus holds {} cases",
        corpus.len()
    );
    let mut refused = 0;
    for (number, case) in corpus.iter().enumerate() {
        let dir = tempfile::tempdir().expect("tempdir");
        // `unpack_layers` unpacks into `<dir>/box/target`; the canary sits
        // beside it in `<dir>/box/outside`.
        let sandbox = dir.path().join("box");
        let outside = sandbox.join("outside");
        std::fs::create_dir_all(&outside).expect("canary dir");
        std::fs::write(outside.join("canary"), b"canary").expect("canary");
        let out = outside.display().to_string();
        let names: Vec<Vec<(String, String, String)>> = case
            .layers
            .iter()
            .map(|layer| {
                layer
                    .iter()
                    .map(|(kind, name, extra)| {
                        (kind.to_string(), expand(name, &out), expand(extra, &out))
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
                        "h" => Raw::Hardlink(name, extra),
                        other => panic!("unknown kind {other}"),
                    })
                    .collect()
            })
            .collect();
        let before = snapshot(&outside);
        let (result, sandbox_back) = unpack_layers(dir.path(), &layers);
        assert_eq!(sandbox_back, sandbox);
        let context = format!("case {number} ({})", case.name);
        assert_eq!(snapshot(&outside), before, "{context}: the outside changed");
        let beside: Vec<String> = std::fs::read_dir(&sandbox)
            .expect("sandbox")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name != "outside" && name != "target")
            .collect();
        assert!(
            beside.is_empty(),
            "{context}: created beside the target: {beside:?}"
        );
        if let Err(err) = result {
            refused += 1;
            let message = err.to_string();
            assert!(
                message.contains("entry") || message.contains("layer"),
                "{context}: the refusal names no entry or layer: {message}"
            );
        }
    }
    eprintln!(
        "hostile layers: {} cases, {refused} refused, 0 changed anything outside the target",
        corpus.len()
    );
}
