//! Hand-built layers whose entries would write outside the target (`..`,
//! absolute names, symlinks planted by an earlier or the same layer,
//! hardlinks and whiteouts through them) are refused naming the entry and
//! the layer, and nothing appears beside the target.

use crate::rootfs_support::{Raw, only_target_in, unpack_layers};
use rootfs::Error;

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
