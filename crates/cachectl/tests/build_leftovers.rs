//! `build` killed or failing half-way, end to end with the binary: the
//! `-o` file keeps its old image (SIGKILL during the copy, a full disk),
//! a killed build's `mke2fs` dies with it, and what it left (a partial
//! image, a `/dev/shm` tree) is counted by `du` and removed by the next
//! `build` or `gc`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{cachectl, fixture, stderr};

fn pull(home: &Path, reference: &str) {
    let pulled = cachectl(home)
        .args(["pull", "-q", reference])
        .output()
        .expect("runs");
    assert!(pulled.status.success(), "{}", stderr(&pulled));
}

/// `cachectl ARGS` started in the background, with the home of `cachectl`.
fn spawn(home: &Path, args: &[&str]) -> Child {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("cachectl"));
    command
        .args(args)
        .current_dir(home)
        .env("CACHECTL_ROOT", home.join("cache"))
        .env("HOME", home)
        .env("DOCKER_CONFIG", home.join("docker"))
        .env_remove("XDG_CACHE_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("CACHECTL_CONFIG");
    for name in support::PROXY_VARIABLES {
        command.env_remove(name);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts")
}

/// Names in `dir` starting with `prefix`.
fn names_starting(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `a` and `b` hold the same bytes (`cmp`).
fn same_bytes(a: &Path, b: &Path) -> bool {
    Command::new("cmp")
        .args(["-s"])
        .arg(a)
        .arg(b)
        .status()
        .expect("cmp runs")
        .success()
}

/// `e2fsck -fn FILE` finds nothing wrong.
fn assert_fsck_clean(image: &Path) {
    let checked = Command::new("e2fsck")
        .arg("-fn")
        .arg(image)
        .output()
        .expect("e2fsck runs");
    assert!(
        checked.status.success(),
        "e2fsck {}: {}{}",
        image.display(),
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

/// (length, modification time, inode) of `path`.
fn identity(path: &Path) -> Option<(u64, std::time::SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((
        meta.len(),
        meta.modified().ok()?,
        std::os::unix::fs::MetadataExt::ino(&meta),
    ))
}

/// Waits until `child` (a build to `output`) writes: a file of a new name
/// appears beside `output` or `output` changes. False when it exited first or
/// nothing happened within a minute.
fn wait_for_output_write(child: &mut Child, output: &Path) -> bool {
    let dir = output.parent().expect("a directory");
    let before = identity(output);
    let names_before = names_starting(dir, "");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if child.try_wait().expect("waits").is_some() {
            return false;
        }
        let new_name = names_starting(dir, "")
            .iter()
            .any(|name| !names_before.contains(name));
        if new_name || identity(output) != before {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

#[test]
fn a_build_killed_while_it_writes_the_output_leaves_the_old_image_whole() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, _) = fixture("big");
    pull(home.path(), &reference);
    let output = home.path().join("vm.ext4");
    let old = home.path().join("old.ext4");
    let made = cachectl(home.path())
        .args(["build", "-q", &reference, "--label", "old", "-o"])
        .arg(&output)
        .output()
        .expect("runs");
    assert!(made.status.success(), "{}", stderr(&made));
    let copied = Command::new("cp")
        .arg("--sparse=always")
        .arg(&output)
        .arg(&old)
        .status()
        .expect("cp runs");
    assert!(copied.success());
    // The new image is in the cache: the killed builds only copy it out.
    let cached = cachectl(home.path())
        .args(["build", "-q", &reference])
        .output()
        .expect("runs");
    assert!(cached.status.success(), "{}", stderr(&cached));

    let output_arg = output.to_str().expect("UTF-8 path");
    for delay_ms in [0, 20, 60, 120] {
        let mut child = spawn(home.path(), &["build", "-q", &reference, "-o", output_arg]);
        let writing = wait_for_output_write(&mut child, &output);
        std::thread::sleep(Duration::from_millis(delay_ms));
        let running = child.try_wait().expect("waits").is_none();
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        assert!(
            writing && running,
            "the build (killed {delay_ms} ms into the copy) had not finished"
        );
        assert!(
            same_bytes(&output, &old),
            "killed {delay_ms} ms into the copy: {} is no longer the old image",
            output.display()
        );
        assert_fsck_clean(&output);
    }

    let done = cachectl(home.path())
        .args(["build", "-q", &reference, "-o", output_arg])
        .output()
        .expect("runs");
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(!same_bytes(&output, &old), "the new image replaced the old");
    assert_fsck_clean(&output);
    let temps = names_starting(home.path(), ".vm.ext4");
    assert!(temps.is_empty(), "temp files of killed builds stay: {temps:?}");
}

/// A tmpfs of `size` mounted on a new directory, unmounted when dropped.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(size: &str) -> SmallFs {
        let dir = tempfile::tempdir().expect("tempdir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "cachectl-test"])
            .arg(dir.path())
            .output()
            .expect("mount runs");
        assert!(
            mounted.status.success(),
            "mounting a tmpfs (the test needs root): {}",
            String::from_utf8_lossy(&mounted.stderr)
        );
        SmallFs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_build_onto_a_full_disk_fails_naming_the_output_and_keeps_the_old_image() {
    let home = tempfile::tempdir().expect("tempdir");
    let (small, _) = fixture("small");
    let (big, _) = fixture("big");
    pull(home.path(), &small);
    pull(home.path(), &big);
    let disk = SmallFs::mount("8m");
    let output = disk.path().join("vm.ext4");
    let made = cachectl(home.path())
        .args(["build", "-q", &small, "-o"])
        .arg(&output)
        .output()
        .expect("runs");
    assert!(made.status.success(), "{}", stderr(&made));
    let old: PathBuf = home.path().join("old.ext4");
    std::fs::copy(&output, &old).expect("kept a copy");

    // 256 MiB of data onto 8 MiB.
    let full = cachectl(home.path())
        .args(["build", "-q", &big, "-o"])
        .arg(&output)
        .output()
        .expect("runs");
    let message = stderr(&full);
    assert!(!full.status.success(), "the build cannot fit");
    assert!(
        message.contains(&output.display().to_string()) && message.contains("No space left"),
        "the error names the output and the cause: {message}"
    );
    assert!(same_bytes(&output, &old), "the old image is intact");
    assert_fsck_clean(&output);
    let names = names_starting(disk.path(), "");
    assert_eq!(names, vec!["vm.ext4".to_owned()], "no temp file stays");
}
