//! `build` killed or failing half-way, end to end with the binary: the
//! `-o` file keeps its old image (SIGKILL during the copy, a full disk),
//! a killed build's `mke2fs` (or a squashfs build's `tar2sqfs`) dies with
//! it, and what it left (a partial image, a `/dev/shm` tree or layer
//! copies) is counted by `du` and removed by the next `build` or `gc`.

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
    support::cachectl_process(home)
        .args(args)
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
    // Cache hits copy the image out.
    for delay_ms in [0, 15, 40, 80] {
        let args = ["build", "-q", &reference, "-o", output_arg];
        kill_while_writing(home.path(), &args, delay_ms, (&output, &old));
    }
    // Cold builds (a new label each) write the output along with the
    // image from their start.
    for (n, delay_ms) in [0, 50, 200].into_iter().enumerate() {
        let label = format!("cold{n}");
        let args = [
            "build", "-q", &reference, "--label", &label, "-o", output_arg,
        ];
        kill_while_writing(home.path(), &args, delay_ms, (&output, &old));
    }

    let done = cachectl(home.path())
        .args(["build", "-q", &reference, "-o", output_arg])
        .output()
        .expect("runs");
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(!same_bytes(&output, &old), "the new image replaced the old");
    assert_fsck_clean(&output);
    let temps = names_starting(home.path(), ".vm.ext4");
    assert!(
        temps.is_empty(),
        "temp files of killed builds stay: {temps:?}"
    );
}

/// Runs cachectl with `args` (a build to `output`), kills it `delay_ms`
/// after it starts writing beside `output`, and asserts that it was still
/// running then and that `output` is still the image `old` holds, whole.
fn kill_while_writing(home: &Path, args: &[&str], delay_ms: u64, (output, old): (&Path, &Path)) {
    let mut child = spawn(home, args);
    let writing = wait_for_output_write(&mut child, output);
    std::thread::sleep(Duration::from_millis(delay_ms));
    let running = child.try_wait().expect("waits").is_none();
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    assert!(
        writing && running,
        "{args:?} (killed {delay_ms} ms into writing) had not finished"
    );
    assert!(
        same_bytes(output, old),
        "{args:?} killed {delay_ms} ms into writing: {} is no longer the old image",
        output.display()
    );
    assert_fsck_clean(output);
}

/// A tmpfs of `size` mounted on a new directory, unmounted when dropped.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(size: &str) -> SmallFs {
        let dir = tempfile::tempdir().expect("tempdir");
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "cachectl-test",
            ])
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

/// `(pid, parent pid, state)` of every process, from `/proc/*/stat`,
/// whose command is `comm`.
fn processes_named(comm: &str) -> Vec<(u32, u32, char)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] != comm {
            continue;
        }
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = rest.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if let Ok(pid) = stat[..open].trim().parse() {
            found.push((pid, ppid, state));
        }
    }
    found
}

/// Whether process `pid` runs (exists and is not a zombie).
fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let close = stat.rfind(')')?;
            stat[close + 1..]
                .split_whitespace()
                .next()
                .map(str::to_owned)
        })
        .is_some_and(|state| state != "Z" && state != "X")
}

/// What a build killed while its `mke2fs` ran left of its unpacked tree:
/// its `/dev/shm/cachectl-build-p<pid>-*` directory, or its work
/// directory under the cache.
fn kill_a_build_during_mke2fs(home: &Path, reference: &str, label: &str) -> Vec<PathBuf> {
    let args = [reference, "--label", label, "--input", "tree"];
    kill_a_build_during(home, &args, "mke2fs")
}

/// [`kill_a_build_during_mke2fs`] for `build ARGS`, killed while `tool`
/// (its process name) writes the partial image.
fn kill_a_build_during(home: &Path, args: &[&str], tool: &str) -> Vec<PathBuf> {
    let shm = Path::new("/dev/shm");
    let mut child = spawn(home, &[&["build", "-q"], args].concat());
    // Its own tree only: other builds may run beside it.
    let own = format!("cachectl-build-p{}-", child.id());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mke2fs = loop {
        let id = child.id();
        // The one that writes the image (not a probe).
        let writing = |pid: u32| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|line| line.windows(8).any(|w| w == b"partial-"))
        };
        if let Some(&(pid, _, _)) = processes_named(tool)
            .iter()
            .find(|(pid, ppid, _)| *ppid == id && writing(*pid))
        {
            break pid;
        }
        assert!(
            child.try_wait().expect("waits").is_none(),
            "the build ended before {tool} was seen"
        );
        assert!(Instant::now() < deadline, "no {tool} within two minutes");
        std::thread::sleep(Duration::from_millis(2));
    };
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let killed_at = Instant::now();
    // mke2fs needs most of a second for this image: one that outlives
    // its parent by half a second was left running.
    while is_running(mke2fs) && killed_at.elapsed() < Duration::from_millis(500) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !is_running(mke2fs),
        "{tool} (pid {mke2fs}) outlived the killed build by {:?}",
        killed_at.elapsed()
    );
    let work = home.join("cache/.cachectl/rootfs-tmp");
    let trees: Vec<PathBuf> = names_starting(shm, &own)
        .into_iter()
        .map(|name| shm.join(name))
        .chain(names_starting(&work, "").iter().map(|name| work.join(name)))
        .collect();
    assert!(!trees.is_empty(), "the killed build left its tree");
    trees
}

#[test]
fn a_killed_build_takes_mke2fs_along_and_its_leftovers_are_counted_then_swept() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, _) = fixture("big");
    pull(home.path(), &reference);
    let ext4 = home.path().join("cache/.cachectl/ext4");

    // Swept by gc, at once (the owner is gone: no minute to wait).
    let trees = kill_a_build_during_mke2fs(home.path(), &reference, "one");
    assert_counted_by_du_then_swept_by_gc(home.path(), &ext4, &trees);

    // Swept by the next build.
    let trees = kill_a_build_during_mke2fs(home.path(), &reference, "two");
    assert_eq!(names_starting(&ext4, "partial-").len(), 1);
    let built = cachectl(home.path())
        .args(["build", "-q", &reference])
        .output()
        .expect("runs");
    assert!(built.status.success(), "{}", stderr(&built));
    assert!(
        names_starting(&ext4, "partial-").is_empty(),
        "the next build removed the partial image"
    );
    for tree in &trees {
        assert!(!tree.exists(), "the build removed {}", tree.display());
    }
}

#[test]
fn a_killed_squashfs_build_takes_tar2sqfs_along_and_its_partial_is_counted_then_swept() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, _) = fixture("big");
    pull(home.path(), &reference);
    let squashfs = home.path().join("cache/.cachectl/squashfs");
    let args = [
        reference.as_str(),
        "--fs",
        "squashfs",
        "--compressor",
        "gzip,9",
    ];
    let trees = kill_a_build_during(home.path(), &args, "tar2sqfs");
    let partials = names_starting(&squashfs, "partial-");
    assert!(
        partials.iter().all(|name| name.ends_with(".squashfs")),
        "{partials:?}"
    );
    assert_counted_by_du_then_swept_by_gc(home.path(), &squashfs, &trees);
}

/// The one partial image a killed build left in `images` (a derived
/// directory of the cache) is counted by `du`, its bytes too, and `gc`
/// removes it and the build's `trees` at once (their owner is gone).
fn assert_counted_by_du_then_swept_by_gc(home: &Path, images: &Path, trees: &[PathBuf]) {
    let partials = names_starting(images, "partial-");
    assert_eq!(partials.len(), 1, "the killed build left its partial image");
    let usage = cachectl(home)
        .args(["du", "--json"])
        .output()
        .expect("runs");
    let usage: serde_json::Value = serde_json::from_slice(&usage.stdout).expect("JSON");
    assert_eq!(usage["builds"]["partial_images"], 1, "{usage}");
    let size = std::fs::metadata(images.join(&partials[0]))
        .expect("partial")
        .len();
    assert_eq!(
        usage["builds"]["partial_bytes"], size,
        "du counts its bytes: {usage}"
    );
    let collected = cachectl(home)
        .args(["gc", "--json"])
        .output()
        .expect("runs");
    assert!(collected.status.success(), "{}", stderr(&collected));
    assert!(
        names_starting(images, "partial-").is_empty(),
        "gc removed the partial image"
    );
    for tree in trees {
        assert!(!tree.exists(), "gc removed {}", tree.display());
    }
}
