//! Leases: a reader holds what it reads, so a concurrent `rm` + `gc` (here
//! in another process, the `store-load` test binary) never deletes the
//! blobs under an unpack, a build, a verify or an export; `gc` drops the
//! leases of gone processes and the temp files of killed writers.

use crate::store::{client, fixture};
use ociref::ErrorKind;
use ocistore::{PullOptions, Store};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The names in `dir` (none when it is absent).
fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn blobs(root: &Path) -> BTreeSet<String> {
    names(&root.join("blobs/sha256"))
}

/// `store-load ROOT OP REFERENCE`, which must succeed.
fn store_load(root: &Path, op: &str, reference: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_store-load"))
        .arg(root)
        .arg(op)
        .arg(reference)
        .output()
        .expect("store-load runs");
    assert!(
        output.status.success(),
        "{op}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `store-pull ROOT REFERENCE`, which must succeed.
fn store_pull(root: &Path, reference: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_store-pull"))
        .arg(root)
        .arg(reference)
        .output()
        .expect("store-pull runs");
    assert!(
        output.status.success(),
        "pull: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn pulled(name: &str) -> (tempfile::TempDir, Store, ociref::Reference) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store opens");
    let reference = fixture(name);
    store
        .pull(&client(), &reference, &PullOptions::default())
        .await
        .expect("pull");
    (dir, store, reference)
}

#[tokio::test]
async fn a_leased_image_keeps_its_blobs_through_rm_and_gc_in_another_process() {
    let (dir, store, reference) = pulled("layered").await;
    let root = dir.path();
    let before = blobs(root);
    assert!(before.len() >= 3, "{before:?}");
    let lease = store.lease(&reference).expect("leased");
    let digest: ociref::Digest = cachectl_tests::fixtures()["layered"]["digest"]
        .as_str()
        .expect("digest in summary")
        .parse()
        .expect("digest parses");
    assert!(lease.holds(&digest));
    assert_eq!(names(&root.join(".cachectl/leases")).len(), 1);
    store_load(root, "rm-gc", &reference.to_string());
    assert!(store.list().expect("list").is_empty(), "the tag is gone");
    assert_eq!(blobs(root), before, "gc removed leased blobs");
    drop(lease);
    assert!(names(&root.join(".cachectl/leases")).is_empty());
    store.gc().expect("gc");
    assert!(blobs(root).is_empty(), "released blobs stay");
    let err = store.lease(&reference).expect_err("nothing to lease");
    assert_eq!(err.kind(), ErrorKind::NotCached, "{err}");
}

#[tokio::test]
async fn gc_drops_the_lease_of_a_gone_process_and_what_only_it_held() {
    let (dir, store, reference) = pulled("small").await;
    let root = dir.path();
    // What a killed reader leaves: its lease file, unlocked.
    let lease = store.lease(&reference).expect("leased");
    let leases = root.join(".cachectl/leases");
    let name = names(&leases).pop_first().expect("one lease");
    let text = std::fs::read(leases.join(&name)).expect("lease file");
    drop(lease);
    std::fs::write(leases.join("1-0-0.json"), text).expect("planted");
    assert!(store.remove(&reference).expect("removes"));
    store.gc().expect("gc");
    assert!(names(&leases).is_empty(), "the dead lease stays");
    assert!(blobs(root).is_empty(), "a dead lease kept blobs");
}

/// Runs `read` on the stored `layered` image; its `progress` callback runs
/// `rm` + `gc` in another process as the first layer is read.
fn read_while_collected<T, E: std::fmt::Display>(
    read: impl FnOnce(&Store, &ociref::Reference, rootfs::UnpackOptions) -> Result<T, E>,
    store: &Store,
    reference: &ociref::Reference,
) -> T {
    let (root, name) = (store.root().to_path_buf(), reference.to_string());
    let once = std::sync::Arc::new(Once::new());
    let mut options = rootfs::UnpackOptions::rootless();
    options.progress = Some(rootfs::ProgressFn::new(move |_| {
        once.call_once(|| store_load(&root, "rm-gc", &name));
    }));
    let out = read(store, reference, options).unwrap_or_else(|err| panic!("read: {err}"));
    assert!(store.list().expect("list").is_empty(), "rm ran mid-read");
    out
}

#[tokio::test]
async fn unpack_completes_while_rm_and_gc_run_mid_read() {
    let (dir, store, reference) = pulled("layered").await;
    let target = dir.path().join("tree");
    let report = read_while_collected(
        |store, reference, options| {
            rootfs::unpack(
                &store.image(reference, None).expect("stored image"),
                &target,
                &options,
            )
        },
        &store,
        &reference,
    );
    assert!(report.layers.len() >= 2, "{:?}", report.layers);
    store.gc().expect("gc");
    assert!(blobs(dir.path()).is_empty(), "released blobs stay");
}

#[tokio::test]
async fn build_completes_while_rm_and_gc_run_mid_read() {
    let (_dir, store, reference) = pulled("layered").await;
    let built = read_while_collected(
        |store, reference, unpack| {
            let mut options = rootfs::BuildOptions::default();
            options.unpack = unpack;
            rootfs::build(
                &store.image(reference, None).expect("stored image"),
                &options,
            )
        },
        &store,
        &reference,
    );
    assert!(built.path.is_file(), "{}", built.path.display());
    assert!(!built.cached);
}

#[tokio::test]
async fn verify_and_export_never_fail_while_rm_pull_and_gc_loop() {
    let (dir, store, reference) = pulled("big").await;
    let root = dir.path().to_path_buf();
    let name = reference.to_string();
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let churn = {
        let (root, done) = (root.clone(), done.clone());
        std::thread::spawn(move || {
            let mut rounds = 0;
            while !done.load(Ordering::Relaxed) {
                store_load(&root, "rm-gc", &name);
                store_pull(&root, &name);
                // Stored for a while, for the exports to find.
                std::thread::sleep(Duration::from_millis(300));
                rounds += 1;
            }
            rounds
        })
    };
    // Eight seconds, and on a loaded machine on until an export and a
    // verify found the image stored (30 s at most).
    let started = Instant::now();
    let (mut verified, mut exported, mut failures) = (0, 0, Vec::new());
    let out = root.join("out.tar");
    while started.elapsed() < Duration::from_secs(8)
        || ((verified == 0 || exported == 0) && started.elapsed() < Duration::from_secs(30))
    {
        match store.verify() {
            Ok(report) if report.is_ok() => verified += 1,
            Ok(report) => failures.push(format!("verify: {report:?}")),
            Err(err) => failures.push(format!("verify: {err}")),
        }
        match store.export(
            std::slice::from_ref(&reference),
            ocistore::ExportFormat::Oci,
            &out,
        ) {
            Ok(_) => exported += 1,
            Err(err) if err.kind() == ErrorKind::NotCached => {}
            Err(err) => failures.push(format!("export: {err}")),
        }
        // A gap for `gc`, which waits while they hold `gc.lock` shared.
        std::thread::sleep(Duration::from_millis(20));
    }
    done.store(true, Ordering::Relaxed);
    let rounds = churn.join().expect("churn does not panic");
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "{verified} verified, {rounds} rounds"
    );
    assert!(
        verified > 0 && exported > 0 && rounds > 1,
        "{verified} {exported} {rounds}"
    );
}

#[tokio::test]
async fn gc_and_open_remove_temp_files_of_dead_processes_only() {
    let (dir, store, _) = pulled("small").await;
    let root = dir.path();
    let mut child = Command::new("true").spawn().expect("spawns");
    let dead = child.id();
    child.wait().expect("reaped");
    let live = std::process::id();
    let dead_root = [
        format!(".tmp-{dead}-0-index.json"),
        format!(".tmp-{dead}-1-oci-layout"),
    ];
    let live_root = format!(".tmp-{live}-999999-index.json");
    for name in dead_root.iter().chain([&live_root]) {
        std::fs::write(root.join(name), b"{").expect("temp written");
    }
    Store::open(root).expect("reopens");
    let left = names(root);
    assert!(left.contains(&live_root), "{left:?}");
    assert!(dead_root.iter().all(|n| !left.contains(n)), "{left:?}");
    let records = root.join(".cachectl/records");
    let dead_record = format!(".tmp-{dead}-2-abc.json");
    std::fs::write(root.join(&dead_root[0]), b"{").expect("temp written");
    std::fs::write(records.join(&dead_record), b"{").expect("temp written");
    let report = store.gc().expect("gc");
    assert!(report.removed_ingest_files >= 2, "{report:?}");
    assert!(!names(&records).contains(&dead_record));
    assert!(!names(root).contains(&dead_root[0]));
    assert!(names(root).contains(&live_root));
}

/// Unmounts the tmpfs at `dir` when dropped.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The files under `dir` this process holds open for writing.
fn written_files_under(dir: &Path) -> Vec<PathBuf> {
    let fds = std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd");
    let writable = |fd: &str| {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
        let flags = info.lines().find_map(|line| line.strip_prefix("flags:"));
        flags
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            .is_some_and(|f| f & 0o3 != 0)
    };
    fds.flatten()
        .filter(|fd| writable(&fd.file_name().to_string_lossy()))
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter(|target| target.starts_with(dir))
        .collect()
}

/// Remounts `dir` read-only. A file system refuses that while any process
/// holds one of its files open for writing; a child that another test forks
/// holds copies of this process's files until it execs, so a refusal as
/// busy is tried again for a while.
fn remount_read_only(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let output = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(dir)
            .output()
            .expect("mount runs");
        if output.status.success() {
            return;
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("busy") && Instant::now() < deadline,
            "remounting {} read-only: {stderr}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_store_on_a_read_only_file_system_is_leased_and_inspected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = Mount(dir.path().join("mnt"));
    std::fs::create_dir(&mount.0).expect("mount point");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&mount.0)
        .status()
        .expect("mount runs");
    assert!(mounted.success(), "this test needs root (mount)");
    let root = mount.0.join("store");
    let store = Store::open(&root).expect("store opens");
    let reference = fixture("small");
    store
        .pull(&client(), &reference, &PullOptions::default())
        .await
        .expect("pull");
    let written = written_files_under(&mount.0);
    assert!(
        written.is_empty(),
        "pull left files open for writing: {written:?}"
    );
    remount_read_only(&mount.0);
    let lease = store.lease(&reference).expect("leased read-only");
    assert!(!lease.roots().is_empty());
    let inspection = store.inspect(&reference).expect("inspected read-only");
    assert_eq!(inspection.images.len(), 1);
    assert!(names(&root.join(".cachectl/leases")).is_empty());
}
