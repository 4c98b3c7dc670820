//! A read-only cache, end to end against the real test registry: a store
//! seeded by root (two images pulled, one built) is used by a user who
//! cannot write it (`nobody`, through `setpriv`) and through a read-only
//! bind mount. What only reads works, with one note that last-used times
//! were not recorded; what must write fails with exit 2 naming the
//! directory; and no file of the store changes. Needs root (`setpriv`,
//! `mount`), as `cargo xtask test` runs in CI.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::{PROXY_VARIABLES, cachectl, fixture, stderr, stdout};

/// The note a command prints once when it skipped last-used times.
const NOTE: &str = "is read-only here: last-used times";

/// How the tests reach the seeded store without being able to write it.
enum Access {
    /// The store's own path, the command run as `nobody`.
    Nobody,
    /// A read-only bind mount of the store, the command run as root.
    Mount,
}

/// Everything a read-only run needs: the home holding the seeded store, the
/// root the commands use, and a directory they may write their outputs in.
struct ReadOnly {
    home: PathBuf,
    root: PathBuf,
    out: PathBuf,
    access: Access,
}

impl ReadOnly {
    /// Runs `cachectl args` against the read-only store.
    fn run(&self, args: &[&str]) -> Output {
        let binary = assert_cmd::cargo::cargo_bin("cachectl");
        let mut command = match &self.access {
            Access::Nobody => {
                let mut command = Command::new("setpriv");
                command
                    .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
                    .arg(binary);
                command
            }
            Access::Mount => Command::new(binary),
        };
        command
            .args(args)
            .current_dir(&self.out)
            .env("CACHECTL_ROOT", &self.root)
            .env("HOME", &self.home)
            .env("DOCKER_CONFIG", self.home.join("docker"))
            .env_remove("XDG_CACHE_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("CACHECTL_CONFIG");
        for name in PROXY_VARIABLES {
            command.env_remove(name);
        }
        command.output().expect("cachectl runs")
    }

    /// Runs `args`, asserts success and one note at most (`notes` of them)
    /// on stderr, and returns stdout.
    fn ok(&self, args: &[&str], notes: usize) -> String {
        let output = self.run(args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        assert_eq!(
            stderr(&output).matches(NOTE).count(),
            notes,
            "{args:?}: {}",
            stderr(&output)
        );
        stdout(&output)
    }

    /// Runs `args`, asserts it fails with exit 2 naming a directory of the
    /// store it cannot write.
    fn refused(&self, args: &[&str]) {
        let output = self.run(args);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {text}");
        let named = format!("cannot write to {}", self.root.display());
        assert!(
            text.contains(&named) && text.contains("read-only"),
            "{args:?}: {text}"
        );
    }
}

/// A read-only bind mount of `source`, unmounted when dropped.
struct RoMount {
    dir: tempfile::TempDir,
}

impl RoMount {
    fn new(source: &Path) -> RoMount {
        let dir = tempfile::tempdir().expect("tempdir");
        for args in [
            vec!["--bind".into(), source.to_owned(), dir.path().to_owned()],
            vec!["-o".into(), "remount,bind,ro".into(), dir.path().to_owned()],
        ] {
            let mounted = Command::new("mount").args(&args).output().expect("mount");
            assert!(
                mounted.status.success(),
                "mount {args:?} (the test needs root): {}",
                String::from_utf8_lossy(&mounted.stderr)
            );
        }
        RoMount { dir }
    }
}

impl Drop for RoMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Every path under `root` with its kind, size and mtime (nanoseconds).
fn listing(root: &Path) -> BTreeMap<PathBuf, (u32, u64, i64, i64)> {
    let mut found = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            if meta.is_dir() {
                stack.push(path.clone());
            }
            let relative = path.strip_prefix(root).expect("under root").to_owned();
            let stamp = (meta.mode(), meta.len(), meta.mtime(), meta.mtime_nsec());
            found.insert(relative, stamp);
        }
    }
    found
}

/// A home whose cache holds `small` (built, whole image) and `layered`,
/// seeded by root; the home and an output directory others may use.
fn seed() -> (tempfile::TempDir, PathBuf) {
    let home = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).expect("mode");
    let (small, _) = fixture("small");
    let (layered, _) = fixture("layered");
    for args in [
        vec!["pull", "-q", &small, &layered],
        vec!["build", "-q", &small],
    ] {
        let output = cachectl(home.path()).args(&args).output().expect("runs");
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    }
    let out = home.path().join("out");
    std::fs::create_dir(&out).expect("out");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).expect("mode");
    (home, out)
}

/// Runs every reading command (they work, with the note where a last-used
/// time was skipped) and every writing one (exit 2 naming the directory).
fn reads_work_and_writes_are_refused(store: &ReadOnly) {
    let (small, small_digest) = fixture("small");
    let (layered, _) = fixture("layered");
    let images: serde_json::Value =
        serde_json::from_str(&store.ok(&["images", "--json"], 0)).expect("JSON");
    assert_eq!(images.as_array().map(Vec::len), Some(2), "{images}");
    // `layered`'s layer sizes were never counted: inspect counts them and
    // cannot keep them.
    assert!(store.ok(&["inspect", &layered], 1).contains("unpacked"));
    store.ok(&["inspect", "--json", &layered], 0);
    store.ok(&["inspect", "-q", &layered], 0);
    assert!(store.ok(&["verify"], 0).contains("ok"));
    let offline = store.ok(&["pull", "--offline", &small], 1);
    assert_eq!(offline.trim(), small_digest);
    // Warm: the registry's HEAD says the tag still points at the digest.
    assert_eq!(store.ok(&["pull", &small], 1).trim(), small_digest);
    store.ok(&["pull", "-q", &small], 0);
    store.ok(&["pull", "--json", &small], 0);
    store.ok(&["unpack", &small, "rootfs"], 1);
    let hello = std::fs::read(store.out.join("rootfs/bin/hello")).expect("/bin/hello");
    assert!(hello.starts_with(b"#!"), "{hello:?}");
    let cached = store.ok(&["build", &small], 1);
    store.ok(&["build", &small, "-o", "small.ext4"], 1);
    let copy = std::fs::read(store.out.join("small.ext4")).expect("copied out");
    let built = std::fs::read(
        store.home.join("cache").join(
            Path::new(cached.trim())
                .strip_prefix(&store.root)
                .expect("under the root"),
        ),
    )
    .expect("the cached build");
    assert!(copy == built, "the copy has the cached build's bytes");
    store.ok(&["export", &small, "-o", "small.tar"], 0);
    assert!(store.out.join("small.tar").is_file());
    let du: serde_json::Value =
        serde_json::from_str(&store.ok(&["du", "--json"], 0)).expect("JSON");
    assert_eq!(du["builds"]["images"], 1, "{du}");
    let (cold, _) = fixture("docker-v2s2");
    store.refused(&["pull", &cold]);
    store.refused(&["rm", &small]);
    store.refused(&["gc"]);
    store.refused(&["tag", &small, "example.com/readonly/copy:v1"]);
    store.refused(&["prune", "--keep", "0"]);
    // A push only reads the cache: it works, and the pushed manifest is
    // the cached one.
    let host = small.split('/').next().expect("a registry");
    let name = match store.access {
        Access::Nobody => "nobody",
        Access::Mount => "mount",
    };
    let pushed = format!("{host}/readonly/{name}-{}:v1", std::process::id());
    let output = store.run(&["push", &small, &pushed]);
    assert!(output.status.success(), "push: {}", stderr(&output));
    assert!(
        stdout(&output).contains(&small_digest),
        "{}",
        stdout(&output)
    );
    store.refused(&["import", "small.tar"]);
    store.refused(&["build", &layered, "-o", "layered.ext4"]);
    assert!(!store.out.join("layered.ext4").exists());
}

#[test]
fn a_store_nobody_may_write_serves_reads_and_refuses_writes_naming_the_directory() {
    let (home, out) = seed();
    let cache = home.path().join("cache");
    let before = listing(&cache);
    let store = ReadOnly {
        home: home.path().to_owned(),
        root: cache.clone(),
        out,
        access: Access::Nobody,
    };
    reads_work_and_writes_are_refused(&store);
    assert_eq!(listing(&cache), before, "no file of the store changed");
}

#[test]
fn a_read_only_mount_serves_reads_and_refuses_writes_naming_the_directory() {
    let (home, out) = seed();
    let cache = home.path().join("cache");
    // No lock file to open: a read-only store goes without the lock.
    std::fs::remove_file(cache.join(".cachectl/locks/gc.lock")).expect("gc.lock");
    let before = listing(&cache);
    let mount = RoMount::new(&cache);
    let store = ReadOnly {
        home: home.path().to_owned(),
        root: mount.dir.path().to_owned(),
        out,
        access: Access::Mount,
    };
    reads_work_and_writes_are_refused(&store);
    drop(mount);
    assert_eq!(listing(&cache), before, "no file of the store changed");
}

#[test]
fn verify_of_a_read_only_store_reports_a_corrupt_blob_where_it_is() {
    let (home, out) = seed();
    let cache = home.path().join("cache");
    let (small, _) = fixture("small");
    let inspected = cachectl(home.path())
        .args(["inspect", "--json", &small])
        .output()
        .expect("runs");
    let inspected: serde_json::Value = serde_json::from_slice(&inspected.stdout).expect("JSON");
    let layer = inspected["images"][0]["layers"][0]["descriptor"]["digest"]
        .as_str()
        .expect("a layer")
        .to_owned();
    let blob = cache.join("blobs/sha256").join(&layer["sha256:".len()..]);
    let mut bytes = std::fs::read(&blob).expect("layer blob");
    bytes.iter_mut().for_each(|byte| *byte = !*byte);
    std::fs::write(&blob, &bytes).expect("corrupted, same size");
    let before = listing(&cache);
    let mount = RoMount::new(&cache);
    let store = ReadOnly {
        home: home.path().to_owned(),
        root: mount.dir.path().to_owned(),
        out,
        access: Access::Mount,
    };
    let text = store.run(&["verify"]);
    assert_eq!(text.status.code(), Some(6), "{}", stderr(&text));
    let line = format!("corrupt {layer} (left in place: the cache is read-only), breaks {small}");
    assert!(stdout(&text).contains(&line), "{}", stdout(&text));
    let json = store.run(&["verify", "--json"]);
    assert_eq!(json.status.code(), Some(6), "{}", stderr(&json));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(report["corrupt"][0]["digest"], layer.as_str(), "{report}");
    assert!(report["corrupt"][0]["quarantined_to"].is_null(), "{report}");
    // Nothing can replace it there: still broken.
    let repair = store.run(&["verify", "--repair"]);
    assert_eq!(repair.status.code(), Some(6), "{}", stderr(&repair));
    assert!(stdout(&repair).contains(&line), "{}", stdout(&repair));
    drop(mount);
    assert_eq!(listing(&cache), before, "no file of the store changed");
}
