//! `rootfs::build` with an init on a merged-`/usr` image (the `merged-usr`
//! fixture, pulled from the test registry): `/sbin` is a symlink to
//! `usr/sbin` and `/sbin/init` a symlink to `/lib/systemd/systemd`, as on
//! Debian 12. The init must land in `/usr/sbin/init`, replacing the
//! symlink, with `/sbin` and systemd left as they were; checked in the
//! image with `debugfs` and `e2fsck`, as root and rootless, from a tree
//! and from the merged tar stream, which must give the same tree.

use crate::rootfs_ext4_tar::skip_without_tar_input;
use crate::rootfs_support::{debugfs, e2fsck_passes, rootless_build_options, running_as_root};
use crate::rootfs_tree::{image_tree, tree_differences};
use crate::store::{client, fixture};
use ocistore::{PullOptions, Store};
use rootfs::{BuildOptions, Error, Ext4Input};
use std::path::Path;

const INIT: &str = "#!/bin/sh\necho init from the host\n";

/// A store under `root` holding `merged-usr`, pulled from the registry.
fn pulled_merged_usr(root: &Path) -> (Store, ociref::Reference) {
    let reference = fixture("merged-usr");
    let store = Store::open(root).expect("store opens");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime
        .block_on(store.pull(&client(), &reference, &PullOptions::default()))
        .expect("pull succeeds");
    (store, reference)
}

/// The inputs a build can read on this host.
fn inputs(probe: &Path) -> Vec<Ext4Input> {
    match skip_without_tar_input(probe) {
        true => vec![Ext4Input::Tree],
        false => vec![Ext4Input::Tree, Ext4Input::TarStream],
    }
}

/// Builds `merged-usr` with the init at `/sbin/init` from each input and
/// checks the images, which must hold the same tree.
fn assert_init_lands_under_usr(options: BuildOptions) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = pulled_merged_usr(&dir.path().join("store"));
    let init = dir.path().join("init");
    std::fs::write(&init, INIT).expect("init");
    let mut trees = Vec::new();
    for input in inputs(&dir.path().join("probe")) {
        let mut options = options.clone();
        options.init = Some((init.clone(), "/sbin/init".to_owned()));
        options.output = Some(dir.path().join(format!("out-{input:?}.ext4")));
        options.input = Some(input);
        let built = rootfs::build(
            &store.image(&reference, None).expect("stored image"),
            &options,
        )
        .expect("build");
        assert_eq!(built.input, input);
        assert_init_in(&built.path);
        trees.push(image_tree(&built.path));
    }
    if let [tree, stream] = &trees[..] {
        let differences = tree_differences(tree, stream);
        assert!(differences.is_empty(), "{differences:#?}");
    }
}

/// The init of [`assert_init_lands_under_usr`] is in `image`, as it must.
fn assert_init_in(image: &Path) {
    e2fsck_passes(image);

    let placed = debugfs(image, "stat /usr/sbin/init");
    assert!(placed.contains("Type: regular"), "{placed}");
    assert!(placed.contains("Mode:  0755"), "{placed}");
    assert!(placed.contains("User:     0   Group:     0"), "{placed}");
    assert_eq!(debugfs(image, "cat /usr/sbin/init"), INIT);
    // The guest's path reaches it through the /sbin symlink.
    assert_eq!(debugfs(image, "cat /sbin/init"), INIT);

    let sbin = debugfs(image, "stat /sbin");
    assert!(sbin.contains("Type: symlink"), "/sbin replaced: {sbin}");
    assert!(sbin.contains("Fast link dest: \"usr/sbin\""), "{sbin}");
    let systemd = debugfs(image, "cat /usr/lib/systemd/systemd");
    assert!(
        systemd.starts_with("#!/bin/sh\n# systemd: a cachectl fixture\n"),
        "systemd was written through: {systemd:?}"
    );
    let systemd = debugfs(image, "stat /usr/lib/systemd/systemd");
    assert!(systemd.contains("Mode:  0755"), "{systemd}");
}

#[test]
fn init_at_sbin_init_of_a_merged_usr_image_lands_in_usr_sbin_rootless() {
    assert_init_lands_under_usr(rootless_build_options());
}

#[test]
fn init_at_sbin_init_of_a_merged_usr_image_lands_in_usr_sbin_as_root() {
    if !running_as_root() {
        eprintln!("not root: the rootless test covers the placement");
        return;
    }
    let options = BuildOptions::default();
    assert!(!options.unpack.rootless);
    assert_init_lands_under_usr(options);
}

#[test]
fn init_at_a_directory_or_below_a_file_is_refused_naming_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reference) = pulled_merged_usr(&dir.path().join("store"));
    let init = dir.path().join("init");
    std::fs::write(&init, INIT).expect("init");
    let cases = [
        ("/lib/systemd", "usr/lib/systemd is a directory"),
        ("/bin/hello/init", "usr/bin/hello is not a directory"),
    ];
    let inputs = inputs(&dir.path().join("probe"));
    for ((target, reason), input) in cases
        .iter()
        .flat_map(|c| inputs.iter().map(move |i| (c, i)))
    {
        let mut options = rootless_build_options();
        options.input = Some(*input);
        options.init = Some((init.clone(), (*target).to_owned()));
        match rootfs::build(
            &store.image(&reference, None).expect("stored image"),
            &options,
        ) {
            Err(err @ Error::PlacePath { .. }) => {
                let text = err.to_string();
                assert!(text.contains(target), "{text}");
                assert!(text.contains(reason), "{text}");
                assert_eq!(err.kind(), rootfs::ErrorKind::Usage);
            }
            other => panic!("{target} ({input:?}): expected PlacePath, got {other:?}"),
        }
    }
}

#[test]
fn an_init_below_missing_directories_gives_the_same_tree_from_either_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = inputs(&dir.path().join("probe"));
    if inputs.len() < 2 {
        eprintln!("mke2fs cannot read tars here: the tree path alone is tested");
        return;
    }
    let (store, reference) = pulled_merged_usr(&dir.path().join("store"));
    let init = dir.path().join("init");
    std::fs::write(&init, INIT).expect("init");
    let mut trees = Vec::new();
    for input in inputs {
        let mut options = rootless_build_options();
        options.input = Some(input);
        // Through the absolute /sbin/init symlink's parents: /sbin is
        // usr/sbin; `tools/new` does not exist anywhere.
        options.init = Some((init.clone(), "/sbin/../tools/new/init".to_owned()));
        match rootfs::build(&store.image(&reference, None).expect("image"), &options) {
            Err(Error::PlacePath { .. }) => {}
            other => panic!("`..` in the path must be refused ({input:?}): {other:?}"),
        }
        options.init = Some((init.clone(), "/sbin/tools/new/init".to_owned()));
        let built =
            rootfs::build(&store.image(&reference, None).expect("image"), &options).expect("build");
        e2fsck_passes(&built.path);
        assert_eq!(debugfs(&built.path, "cat /usr/sbin/tools/new/init"), INIT);
        let made = debugfs(&built.path, "stat /usr/sbin/tools");
        assert!(made.contains("Mode:  0755"), "{made}");
        assert!(made.contains("User:     0   Group:     0"), "{made}");
        trees.push(image_tree(&built.path));
    }
    let differences = tree_differences(&trees[0], &trees[1]);
    assert!(differences.is_empty(), "{differences:#?}");
}
