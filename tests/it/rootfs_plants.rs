//! Files rootfs did not create, planted at every path it keeps under the
//! store: symbolic links (to a canary file and to a directory outside the
//! store), hard links to the canary, and FIFOs, at the cached ext4 image
//! (before the first build and over a good one), its owner file, a layer
//! tar and its owner file, a partial image of a dead build, the work and
//! note directories, and names on `/dev/shm`. For each plant the rootfs
//! operation that writes there runs (build, build `-o`, layer tars,
//! unpack, the stale sweep and cache counts); afterwards nothing outside
//! the store has changed (bytes, kind, mtime, no new entry), and the
//! operation either succeeded with a good result (a regular image that
//! `e2fsck -fn` passes, tars matching their diff IDs) or failed naming the
//! planted path.

use crate::plants::{DIR_PLANTS, FILE_PLANTS, HANG, Outside, Plant, plant, snapshot};
use crate::rootfs_support::{
    e2fsck_passes, rootless_build_options, running_as_root, store_with_fixture,
};
use ociref::Digest;
use ocistore::Store;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The fixture every case builds.
const FIXTURE: &str = "small";

/// An operation on the store at a root; it checks its own result.
type Op = Box<dyn FnOnce(&Path) -> rootfs::Result<()> + Send>;

/// Runs `op` in a thread of its own, so that an operation stuck on a FIFO
/// fails the test instead of hanging it.
fn run(op: Op, root: &Path) -> rootfs::Result<()> {
    let (send, receive) = std::sync::mpsc::channel();
    let root = root.to_path_buf();
    std::thread::spawn(move || {
        let _ = send.send(op(&root));
    });
    match receive.recv_timeout(HANG) {
        Ok(result) => result,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the operation hung for {HANG:?} (stuck on a FIFO?)")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            panic!("the operation's checks failed (see the panic above)")
        }
    }
}

/// Plants `kind` at `root/relative` in a store `prepare` made, runs `op`,
/// and checks that nothing outside changed and that the operation either
/// succeeded (its own checks passed) or failed naming the plant.
fn check(prepare: &dyn Fn(&Path), relative: &str, kind: Plant, op: Op) {
    let outside = Outside::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    prepare(&root);
    let at = root.join(relative);
    plant(kind, &at, &outside);
    let before = outside.snapshot();
    let result = run(op, &root);
    let after = outside.snapshot();
    let case = format!("{kind:?} at {relative}");
    assert_eq!(after, before, "{case}: something outside the store changed");
    if let Err(err) = result {
        let text = cachectl_tests::error_chain(&err);
        assert!(
            text.contains(&at.display().to_string()),
            "{case}: the error does not name the planted path: {text}"
        );
    }
}

fn fresh(root: &Path) {
    store_with_fixture(root, FIXTURE);
}

fn built(root: &Path) {
    fresh(root);
    run(build(None), root).expect("first build");
}

/// Checks that `image` is a regular file with one name that e2fsck passes.
fn good_image(image: &Path) {
    let meta = std::fs::symlink_metadata(image).expect("the image is there");
    assert!(
        meta.is_file() && meta.nlink() == 1,
        "{}: not a regular file with one name: {meta:?}",
        image.display()
    );
    e2fsck_passes(image);
}

/// A build of the fixture (rootless, its tree under the store), copied to
/// `output` when given; the image (and the copy) must be good.
fn build(output: Option<PathBuf>) -> Op {
    Box::new(move |root| {
        let store = Store::open(root)?;
        let reference = fixture_reference();
        let mut options = rootless_build_options();
        options.memory_scratch = false;
        options.output = output.clone();
        let built = rootfs::build(
            &store.image(&reference, None).expect("stored image"),
            &options,
        )?;
        good_image(&built.path);
        if let Some(output) = &output {
            assert_eq!(&built.path, output);
            let cached = Path::new(root).join(cached_image());
            good_image(&cached);
            assert_eq!(
                std::fs::read(output).expect("copy"),
                std::fs::read(&cached).expect("cached"),
                "the copy is the cached image"
            );
        }
        Ok(())
    })
}

/// The layer tars of the fixture, each a regular file of its diff ID.
fn layer_tars() -> Op {
    Box::new(|root| {
        let store = Store::open(root)?;
        for tar in rootfs::layer_tars(
            &store
                .image(&fixture_reference(), None)
                .expect("stored image"),
        )? {
            let meta = std::fs::symlink_metadata(&tar.path).expect("tar there");
            assert!(meta.is_file() && meta.nlink() == 1, "{meta:?}");
            let bytes = std::fs::read(&tar.path).expect("tar");
            assert_eq!(Digest::sha256_of(&bytes), tar.diff_id);
        }
        Ok(())
    })
}

/// An unpack into a fresh target outside both the store and the canaries.
fn unpack() -> Op {
    Box::new(|root| {
        let store = Store::open(root)?;
        let targets = tempfile::tempdir().expect("tempdir");
        let target = targets.path().join("rootfs");
        let options = rootfs::UnpackOptions::rootless();
        rootfs::unpack(
            &store
                .image(&fixture_reference(), None)
                .expect("stored image"),
            &target,
            &options,
        )?;
        assert!(target.join("etc").is_dir(), "unpacked");
        Ok(())
    })
}

/// The sweep of killed work, then the cache counts and the store's `gc`
/// (which removes unused builds): `cachectl gc` and `du`.
fn sweep() -> Op {
    Box::new(|root| {
        let store = Store::open(root)?;
        rootfs::remove_stale_work(&store)?;
        rootfs::cached_builds(&store)?;
        store.gc()?;
        Ok(())
    })
}

fn fixture_reference() -> ociref::Reference {
    format!("example.com/fixtures/{FIXTURE}:v1")
        .parse()
        .expect("reference")
}

/// Where a build of the fixture is cached, relative to the store's root,
/// and the relative paths of its first layer tar and of its first layer's
/// image (the same in every store: the key depends on the manifest, the options and mke2fs only).
fn cache_paths() -> &'static (String, String, String) {
    static PATHS: OnceLock<(String, String, String)> = OnceLock::new();
    PATHS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("store");
        let (store, reference) = store_with_fixture(&root, FIXTURE);
        let mut options = rootless_build_options();
        options.memory_scratch = false;
        let built = rootfs::build(
            &store.image(&reference, None).expect("stored image"),
            &options,
        )
        .expect("build");
        let tars = rootfs::layer_tars(&store.image(&reference, None).expect("stored image"))
            .expect("tars");
        let layers = rootfs::build_layers(
            &store.image(&reference, None).expect("stored image"),
            &options,
        )
        .expect("layers");
        let relative = |path: &Path| {
            path.strip_prefix(&root)
                .expect("under the root")
                .to_string_lossy()
                .into_owned()
        };
        (
            relative(&built.path),
            relative(&tars[0].path),
            relative(&layers[0].path),
        )
    })
}

fn cached_image() -> String {
    cache_paths().0.clone()
}

fn layer_tar() -> String {
    cache_paths().1.clone()
}

fn layer_image() -> String {
    cache_paths().2.clone()
}

/// The per-layer images of the fixture, each good.
fn build_layers() -> Op {
    Box::new(|root| {
        let store = Store::open(root)?;
        let options = rootless_build_options();
        for layer in rootfs::build_layers(
            &store
                .image(&fixture_reference(), None)
                .expect("stored image"),
            &options,
        )? {
            good_image(&layer.path);
        }
        Ok(())
    })
}

fn owner_of(kept: &str) -> String {
    format!("{kept}.owner")
}

#[test]
fn a_planted_cached_image_is_rebuilt_never_followed() {
    let image = cached_image();
    for kind in FILE_PLANTS {
        check(&fresh, &image, kind, build(None));
        check(&built, &image, kind, build(None));
        let outputs = tempfile::tempdir().expect("tempdir");
        let output = outputs.path().join("vm.ext4");
        check(&built, &image, kind, build(Some(output)));
        check(&fresh, &layer_image(), kind, build_layers());
        check(&built_layers, &layer_image(), kind, build_layers());
    }
}

#[test]
fn planted_owner_files_and_layer_tars_are_never_followed() {
    let image = cached_image();
    let tar = layer_tar();
    for kind in FILE_PLANTS {
        check(&fresh, &owner_of(&image), kind, build(None));
        check(&built, &owner_of(&image), kind, build(None));
        check(&built, &owner_of(&image), kind, sweep());
        check(&fresh, &tar, kind, layer_tars());
        check(&fresh, &owner_of(&tar), kind, layer_tars());
        check(&built_with_tars, &tar, kind, layer_tars());
        check(&built_with_tars, &tar, kind, sweep());
        // A dead build's partial image: the sweep removes the name only.
        let partial = ".cachectl/ext4/partial-p4194305-planted.ext4";
        check(&built, partial, kind, sweep());
    }
}

fn built_layers(root: &Path) {
    fresh(root);
    run(build_layers(), root).expect("first layer build");
}

fn built_with_tars(root: &Path) {
    built(root);
    run(layer_tars(), root).expect("tars");
}

#[test]
fn planted_rootfs_directories_are_refused_naming_them() {
    let dirs = [
        ".cachectl/ext4",
        ".cachectl/layers",
        ".cachectl/rootfs-tmp",
        ".cachectl/unpacking",
    ];
    for relative in dirs {
        for kind in DIR_PLANTS {
            check(&fresh, relative, kind, build(None));
            check(&fresh, relative, kind, layer_tars());
            check(&fresh, relative, kind, unpack());
            check(&built, relative, kind, sweep());
        }
    }
}

/// Names another user put on `/dev/shm` where builds make their trees (a
/// dead process's name, so the sweep looks at them): a link to a
/// directory outside and, when the test runs as root, a directory of
/// nobody's with a directory of mode 0755 in it. A build that may use
/// `/dev/shm` leaves both as they were (its own tree gets a new name).
#[test]
fn names_planted_on_dev_shm_are_left_alone() {
    let shm = Path::new("/dev/shm");
    assert!(
        shm.is_dir(),
        "/dev/shm is a tmpfs on every machine the tests run on"
    );
    let outside = Outside::new();
    let tag: String = cachectl_tests::unique("plant")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let planted_dir = shm.join(format!("cachectl-build-p4194305-{tag}d"));
    let planted_link = shm.join(format!("cachectl-build-p4194305-{tag}l"));
    std::os::unix::fs::symlink(outside.target(), &planted_link).expect("link");
    let root_user = running_as_root();
    if root_user {
        // Another user's (nobody's), as a hostile local user leaves it.
        let sub = planted_dir.join("sub");
        std::fs::create_dir_all(&sub).expect("planted dir");
        std::fs::write(sub.join("file"), b"theirs\n").expect("file");
        for dir in [&planted_dir, &sub] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("mode");
        }
        for path in [&planted_dir, &sub, &sub.join("file")] {
            std::os::unix::fs::lchown(path, Some(65534), Some(65534)).expect("chown");
        }
    }
    let planted = || {
        let mut all = outside.snapshot();
        if root_user {
            all.extend(snapshot(&planted_dir));
            let meta = std::fs::symlink_metadata(&planted_dir).expect("planted dir");
            all.insert(
                planted_dir.clone(),
                (
                    "dir".to_owned(),
                    None,
                    meta.mode(),
                    meta.modified().expect("mtime"),
                ),
            );
        }
        let link = std::fs::symlink_metadata(&planted_link).expect("planted link");
        all.insert(
            planted_link.clone(),
            (
                format!("{:?}", link.file_type()),
                None,
                link.mode(),
                link.modified().expect("mtime"),
            ),
        );
        all
    };
    let before = planted();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    fresh(&root);
    let in_memory: Op = Box::new(|root| {
        let store = Store::open(root)?;
        let built = rootfs::build(
            &store
                .image(&fixture_reference(), None)
                .expect("stored image"),
            &rootless_build_options(),
        )?;
        good_image(&built.path);
        Ok(())
    });
    let result = run(in_memory, &root);
    let after = std::panic::catch_unwind(planted);
    let _ = std::fs::remove_file(&planted_link);
    let _ = std::fs::remove_dir_all(&planted_dir);
    result.expect("the build succeeds");
    assert_eq!(
        after.expect("the planted names are still there"),
        before,
        "a name planted on /dev/shm changed"
    );
}
