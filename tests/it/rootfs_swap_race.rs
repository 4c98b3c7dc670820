//! The race of `swap_race.rs` on the directories rootfs keeps under the
//! store (`.cachectl/ext4`, `.cachectl/layers`, `.cachectl/rootfs-tmp`,
//! `.cachectl/unpacking`): workers build (new images and the cached one),
//! keep layer tars, unpack, remove the image with `gc` and the unused
//! builds and import it again, and sweep stale work, while each directory
//! is traded for a link to a canary outside the store and back. Nothing in
//! the canary may change, every error must name a path inside the store,
//! and afterwards a build passes `e2fsck`, the layer tars match their diff
//! IDs and an unpack succeeds.

use crate::rootfs_support::{e2fsck_passes, rootless_build_options, store_with_fixture};
use crate::swap_race::{Choice, Places, SEED, Tally, canary, race};
use ociref::{Digest, Reference};
use ocistore::{ExportFormat, ImportOptions, Store};
use std::path::Path;
use std::time::{Duration, Instant};

/// The directories under the store that rootfs writes in.
const ROOTFS_DIRS: [&str; 4] = [
    ".cachectl/ext4",
    ".cachectl/layers",
    ".cachectl/rootfs-tmp",
    ".cachectl/unpacking",
];

/// One worker on the rootfs directories of the store at `root`: builds
/// (new ones, with a label of their own, and the cached one), layer tars,
/// unpacks into `targets`, removal of the image with `gc` and the unused
/// builds and its import again from `archive`, and the stale-work sweep.
fn rootfs_worker(
    n: u64,
    places: &Places,
    reference: &Reference,
    archive: &Path,
    targets: &Path,
    deadline: Instant,
) -> Tally {
    let mut choice = Choice(SEED + n);
    let mut tally = Tally::default();
    let accept = |err: &rootfs::Error| places.rootfs_error(err, &ROOTFS_DIRS);
    let build = |store: &Store, label: String| {
        let mut options = rootless_build_options();
        options.memory_scratch = false;
        options.label = label;
        rootfs::build(&store.image(reference, None)?, &options).map(drop)
    };
    for round in 0.. {
        if Instant::now() >= deadline {
            break;
        }
        let store = match Store::open(&places.root) {
            Ok(store) => store,
            Err(err) => {
                tally.count("open", Err(rootfs::Error::Store(err)), accept);
                continue;
            }
        };
        let (op, result): (&'static str, rootfs::Result<()>) = match choice.next(6) {
            0 => ("new build", build(&store, format!("w{n}-{round}"))),
            1 => ("cached build", build(&store, "rootfs".to_owned())),
            2 => (
                "layer tars",
                (|| rootfs::layer_tars(&store.image(reference, None)?).map(drop))(),
            ),
            3 => ("unpack", {
                let target = targets.join(format!("w{n}-{round}"));
                let options = rootfs::UnpackOptions::rootless();
                let result = (|| {
                    rootfs::unpack(&store.image(reference, None)?, &target, &options).map(drop)
                })();
                let _ = std::fs::remove_dir_all(&target);
                result
            }),
            4 => ("remove + gc + unused builds + import", {
                (|| {
                    store.remove(reference)?;
                    store.gc_keeping_partials(Duration::ZERO)?;
                    store.import(archive, &ImportOptions::default())?;
                    Ok(())
                })()
            }),
            _ => ("stale work + unused builds", {
                (|| {
                    rootfs::remove_stale_work(&store)?;
                    rootfs::cached_builds(&store)?;
                    store.gc()?;
                    Ok(())
                })()
            }),
        };
        tally.count(op, result, accept);
    }
    tally
}

/// Everything rootfs makes of the image at `root` is good: a build that
/// `e2fsck` passes, layer tars of their diff IDs, an unpack. The image is
/// imported from `archive` first (a worker may have stopped between its
/// removal and its import).
fn rootfs_still_works(root: &Path, reference: &Reference, archive: &Path, targets: &Path) {
    let store = Store::open(root).expect("the store opens after the race");
    store
        .import(archive, &ImportOptions::default())
        .expect("import after the race");
    let mut options = rootless_build_options();
    options.memory_scratch = false;
    let built = rootfs::build(
        &store.image(reference, None).expect("stored image"),
        &options,
    )
    .expect("build after the race");
    e2fsck_passes(&built.path);
    for tar in rootfs::layer_tars(&store.image(reference, None).expect("stored image"))
        .expect("layer tars after the race")
    {
        let bytes = std::fs::read(&tar.path).expect("tar");
        assert_eq!(
            Digest::sha256_of(&bytes),
            tar.diff_id,
            "{}",
            tar.path.display()
        );
    }
    let target = targets.join("after");
    rootfs::unpack(
        &store.image(reference, None).expect("stored image"),
        &target,
        &rootfs::UnpackOptions::rootless(),
    )
    .expect("unpack after the race");
    let report = store.verify().expect("verify runs");
    assert!(report.is_ok(), "verify after the race: {report:?}");
}

#[test]
fn rootfs_never_writes_outside_the_store_while_its_directories_are_swapped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let targets = dir.path().join("targets");
    std::fs::create_dir(&targets).expect("targets");
    let (store, reference) = store_with_fixture(&root, "small");
    let archive = dir.path().join("small.tar");
    store
        .export(
            std::slice::from_ref(&reference),
            ExportFormat::Oci,
            &archive,
        )
        .expect("exported");
    // The first build, layer tars and unpack make rootfs's directories and
    // say what names it keeps there.
    let mut options = rootless_build_options();
    options.memory_scratch = false;
    let built = rootfs::build(
        &store.image(&reference, None).expect("stored image"),
        &options,
    )
    .expect("build");
    let tars =
        rootfs::layer_tars(&store.image(&reference, None).expect("stored image")).expect("tars");
    rootfs::unpack(
        &store.image(&reference, None).expect("stored image"),
        &targets.join("first"),
        &rootfs::UnpackOptions::rootless(),
    )
    .expect("unpack");
    let name = |path: &Path| {
        path.file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned()
    };
    let mut names = vec![
        name(&built.path),
        format!("{}.owner", name(&built.path)),
        "partial-p4194305-canary.ext4".to_owned(),
    ];
    for tar in &tars {
        names.push(name(&tar.path));
        names.push(format!("{}.owner", name(&tar.path)));
    }
    let outside = canary(&names);
    let places = Places {
        root: root.clone(),
        canary: outside.target(),
        exports: dir.path().to_path_buf(),
    };
    race(&places, &ROOTFS_DIRS, &outside, 2, |n, deadline| {
        rootfs_worker(n, &places, &reference, &archive, &targets, deadline)
    });
    rootfs_still_works(&root, &reference, &archive, &targets);
}
