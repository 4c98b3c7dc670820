//! Images that `cachectl build --init` makes actually boot: a merged-`/usr`
//! Debian (`debootstrap --variant=minbase bookworm`) is imported as an OCI
//! archive, built with a shell script at `/sbin/init` once as root and once
//! as `nobody` (rootless) into ext4, squashfs and (where mkfs.erofs is 1.8
//! or later) erofs, and booted under QEMU (TCG, no KVM) with the host's Debian
//! kernel and initramfs: each ext4 image read-write; one read-only image of
//! each other type (the root and rootless builds are checked to be the
//! same bytes), with the squashfs and erofs modules, which Debian's
//! initramfs lacks, appended to a copy of it. The init prints, between
//! markers on the serial console, the seconds since the kernel started,
//! the root's device, type and mode, the owner and mode of `/etc/shadow`
//! and of the setuid `/usr/bin/passwd` and the version line of `ls` (a
//! dynamic binary, as is the `dash` running the script), then powers the
//! machine off.
//!
//! The archive is built once and kept under the target directory
//! (`$CARGO_TARGET_TMPDIR/boot/`); delete it to take a fresh Debian. Needs
//! root, debootstrap and the Debian mirror (`CACHECTL_TEST_DEBIAN_MIRROR`,
//! default `http://deb.debian.org/debian`) for that first run, and
//! `qemu-system-x86_64` with `/boot/vmlinuz-*` and `/boot/initrd.img-*`
//! always; without them the test fails saying what is missing.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SUITE: &str = "bookworm";
/// The Debian mirror for debootstrap (default `http://deb.debian.org/debian`).
const ENV_MIRROR: &str = "CACHECTL_TEST_DEBIAN_MIRROR";
/// The name the archive gives the image.
const REFERENCE: &str = "cachectl.test/boot/debian:bookworm";
/// How long one boot may take, power-off included.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
const BEGIN: &str = "CACHECTL-BOOT-BEGIN";
const END: &str = "CACHECTL-BOOT-END";

/// The init: `dash` (dynamic) runs it as pid 1; it prints what the test
/// checks and powers off (sysrq `o`; a kernel panic, should that fail,
/// ends QEMU too: `panic=-1` and `-no-reboot`).
const INIT: &str = r#"#!/bin/sh
[ -e /proc/sysrq-trigger ] || mount -t proc proc /proc
echo CACHECTL-BOOT-BEGIN
echo "pid $$"
read -r up idle < /proc/uptime
echo "uptime $up"
echo "root $(grep ' / ' /proc/mounts | cut -d' ' -f1-4 | cut -d, -f1)"
stat -c 'shadow %U:%G %a' /etc/shadow
stat -c 'setuid %U:%G %a' /usr/bin/passwd
/usr/bin/ls --version | head -n 1
echo CACHECTL-BOOT-END
echo o > /proc/sysrq-trigger
sleep 30
"#;

/// One image the test builds: by whom, of which file system type.
struct Built {
    user: &'static str,
    fs: &'static str,
    path: PathBuf,
}

#[test]
fn images_built_as_root_and_rootless_boot_a_merged_usr_debian_under_qemu() {
    let started = Instant::now();
    assert!(
        is_root(),
        "the boot test needs root: debootstrap, and building as `nobody` with setpriv"
    );
    let (kernel, initrd) = kernel_and_initrd();
    let archive = debian_archive();
    eprintln!("Debian archive ready: {:?}", started.elapsed());

    let work = tempfile::tempdir().expect("tempdir");
    // `nobody` reaches its own directory through this one.
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let init = work.path().join("init.sh");
    std::fs::write(&init, INIT).expect("init");
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // The read-only roots need the squashfs and erofs modules, which
    // Debian's initramfs lacks: appended to a copy of it.
    let read_only_initrd = initrd_with_modules(&initrd, &kernel, work.path());

    let mut fs_types = vec!["ext4", "squashfs"];
    if erofs_reads_tars() {
        fs_types.push("erofs");
    } else {
        eprintln!("EROFS BOOT SKIPPED: mkfs.erofs is older than 1.8");
    }
    let mut images = Vec::new();
    for user in [None, Some("nobody")] {
        let home = work.path().join(user.unwrap_or("root"));
        std::fs::create_dir(&home).expect("home");
        if user.is_some() {
            run(Command::new("chown").arg("nobody:nogroup").arg(&home));
        }
        cachectl_as(user, &home, &["import".as_ref(), archive.as_os_str()]);
        for fs in &fs_types {
            let step = Instant::now();
            let image = home.join(format!("debian.{fs}"));
            let init_arg = format!("{}:/sbin/init", init.display());
            let args = [
                "build",
                REFERENCE,
                "--offline",
                "--fs",
                fs,
                "--init",
                &init_arg,
                "-o",
                image.to_str().expect("utf-8 path"),
            ];
            let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
            cachectl_as(user, &home, &args);
            let user = user.unwrap_or("root");
            eprintln!("import and build of {fs} as {user}: {:?}", step.elapsed());
            images.push(Built {
                user,
                fs,
                path: image,
            });
        }
    }
    // A read-only image is the same bytes built as root or not: one boot
    // of each type covers both.
    for fs in fs_types.iter().filter(|fs| **fs != "ext4") {
        let hashes: Vec<String> = images
            .iter()
            .filter(|b| b.fs == *fs)
            .map(|b| sha256_of(&b.path))
            .collect();
        assert_eq!(hashes.len(), 2, "{fs}");
        assert_eq!(
            hashes[0], hashes[1],
            "{fs} built as root and as nobody differ"
        );
    }
    images.retain(|b| b.fs == "ext4" || b.user == "nobody");
    for built in &images {
        let initrd = match built.fs {
            "ext4" => &initrd,
            _ => &read_only_initrd,
        };
        let step = Instant::now();
        let console = boot(&kernel, initrd, built);
        assert_report(built, &console);
        eprintln!(
            "boot of the {} image built as {}: {:?}",
            built.fs,
            built.user,
            step.elapsed()
        );
    }
    eprintln!("boot test total: {:?}", started.elapsed());
}

/// The init's report on `console`: pid 1, owners and modes of the shadow
/// and setuid files, a dynamic binary running, the root of the expected
/// type (read-only for squashfs and erofs); prints the boot-to-init time.
fn assert_report(built: &Built, console: &str) {
    let Built { user, fs, .. } = built;
    let report = between_markers(console)
        .unwrap_or_else(|| panic!("{fs} built as {user}: no report on the console:\n{console}"));
    let lines: Vec<&str> = report.lines().map(str::trim).collect();
    let context = format!("{fs} built as {user}; console:\n{console}");
    assert!(lines.contains(&"pid 1"), "{context}");
    assert!(lines.contains(&"shadow root:shadow 640"), "{context}");
    assert!(lines.contains(&"setuid root:root 4755"), "{context}");
    assert!(
        lines.iter().any(|l| l.starts_with("ls (GNU coreutils) ")),
        "{context}"
    );
    let root = lines
        .iter()
        .find(|l| l.starts_with("root "))
        .unwrap_or_else(|| panic!("no root line: {context}"));
    let mode = if *fs == "ext4" { "rw" } else { "ro" };
    assert!(
        root.starts_with(&format!("root /dev/vda / {fs} {mode}")),
        "{root}: {context}"
    );
    if let Some(uptime) = lines.iter().find_map(|l| l.strip_prefix("uptime ")) {
        eprintln!("{fs} built as {user}: init started {uptime} s after the kernel");
    }
}

/// Whether the host's `mkfs.erofs` builds from a tar stream (1.8 or later).
fn erofs_reads_tars() -> bool {
    let Ok(output) = Command::new("mkfs.erofs").arg("--version").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let release = text
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or("0.0")
        .to_owned();
    let mut parts = release.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    output.status.success() && (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (1, 8)
}

/// A copy of `initrd` with the kernel's squashfs and erofs modules, the
/// module index, and a `/conf/modules` that loads both appended as an
/// uncompressed cpio (the kernel reads concatenated archives, each starting
/// at a multiple of 4 bytes).
fn initrd_with_modules(initrd: &Path, kernel: &Path, work: &Path) -> PathBuf {
    let name = kernel.file_name().expect("kernel name").to_string_lossy();
    let version = name.strip_prefix("vmlinuz-").expect("vmlinuz-VERSION");
    let host = PathBuf::from(format!("/lib/modules/{version}"));
    let extra = work.join("initrd-extra");
    let modules = extra.join(format!("usr/lib/modules/{version}"));
    for module in ["kernel/fs/squashfs/squashfs.ko", "kernel/fs/erofs/erofs.ko"] {
        let target = modules.join(module);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("module dir");
        std::fs::copy(host.join(module), &target)
            .unwrap_or_else(|err| panic!("{}: {err}", host.join(module).display()));
    }
    for index in ["modules.dep", "modules.dep.bin"] {
        std::fs::copy(host.join(index), modules.join(index)).expect("module index");
    }
    std::fs::create_dir_all(extra.join("conf")).expect("conf");
    std::fs::write(extra.join("conf/modules"), "squashfs\nerofs\n").expect("conf/modules");
    run(Command::new("sh")
        .arg("-c")
        .arg("find . | LC_ALL=C sort | cpio -o -H newc --quiet > ../initrd-extra.cpio")
        .current_dir(&extra));
    let cpio = std::fs::read(work.join("initrd-extra.cpio")).expect("cpio");
    let mut bytes = std::fs::read(initrd).expect("initrd");
    bytes.resize(bytes.len().div_ceil(4) * 4, 0);
    bytes.extend_from_slice(&cpio);
    let out = work.join("initrd-read-only.img");
    std::fs::write(&out, bytes).expect("initrd copy");
    out
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// The newest `/boot/vmlinuz-*` and its `/boot/initrd.img-*`.
fn kernel_and_initrd() -> (PathBuf, PathBuf) {
    let mut versions: Vec<String> = std::fs::read_dir("/boot")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_prefix("vmlinuz-").map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    let version = versions.pop().unwrap_or_else(|| {
        panic!("no /boot/vmlinuz-*: install linux-image-amd64 (`cargo xtask test` does)")
    });
    let kernel = PathBuf::from(format!("/boot/vmlinuz-{version}"));
    let initrd = PathBuf::from(format!("/boot/initrd.img-{version}"));
    assert!(
        initrd.is_file(),
        "{} is missing: run `update-initramfs -c -k {version}`",
        initrd.display()
    );
    (kernel, initrd)
}

/// Runs a command that must succeed (its output on failure); its stdout.
fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("{command:?} cannot run: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `cachectl ARGS` with its cache and home in `home`, as `user`
/// (through setpriv) or as this process.
fn cachectl_as(user: Option<&str>, home: &Path, args: &[&std::ffi::OsStr]) {
    let binary = env!("CARGO_BIN_EXE_cachectl");
    let mut command = match user {
        Some(user) => {
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={user}"))
                .arg("--regid=nogroup")
                .arg("--clear-groups")
                .arg(binary);
            command
        }
        None => Command::new(binary),
    };
    command
        .args(["-q"])
        .args(args)
        .current_dir(home)
        .env("CACHECTL_ROOT", home.join("cache"))
        .env("HOME", home)
        .env_remove("XDG_CACHE_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("CACHECTL_CONFIG");
    run(&mut command);
}

/// The OCI archive of the Debian image, built on the first run and kept.
fn debian_archive() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("boot");
    let archive = dir.join(format!("debian-{SUITE}-minbase.oci.tar"));
    if archive.is_file() {
        return archive;
    }
    std::fs::create_dir_all(&dir).expect("cache dir");
    let work = tempfile::tempdir_in(&dir).expect("work dir");
    let root = work.path().join("root");
    let started = Instant::now();
    debootstrap(&root);
    eprintln!("debootstrap {SUITE} minbase: {:?}", started.elapsed());
    let layout = work.path().join("layout");
    write_layout(&root, &layout);
    let partial = work.path().join("archive.tar");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&partial)
        .arg("-C")
        .arg(&layout)
        .arg("."));
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::rename(&partial, &archive).expect("archive into place");
    eprintln!("Debian archive built: {:?}", started.elapsed());
    archive
}

/// `debootstrap --variant=minbase` into `root`, its downloads kept beside
/// those of the workspace's Debian rootfs test; fails naming the mirror.
fn debootstrap(root: &Path) {
    let mirror =
        std::env::var(ENV_MIRROR).unwrap_or_else(|_| "http://deb.debian.org/debian".to_owned());
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debootstrap-cache");
    std::fs::create_dir_all(&cache).expect("cache dir");
    let output = Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--cache-dir={}", cache.display()))
        .arg(SUITE)
        .arg(root)
        .arg(&mirror)
        .output()
        .unwrap_or_else(|err| {
            panic!("debootstrap cannot run ({err}): install it (`cargo xtask test` does)")
        });
    if output.status.success() {
        return;
    }
    let log = std::fs::read_to_string(root.join("debootstrap/debootstrap.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(20).collect();
    panic!(
        "debootstrap {SUITE} from {mirror} failed ({}); is the mirror reachable? \
         ({ENV_MIRROR} names another)\n{}{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}

/// The `sha256:<hex>` of a file.
fn sha256_of(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    let hex = out
        .split_whitespace()
        .next()
        .expect("sha256sum prints a hash");
    format!("sha256:{hex}")
}

/// Writes an OCI layout at `layout` whose one image, named [`REFERENCE`],
/// has the tree `root` as one uncompressed layer.
fn write_layout(root: &Path, layout: &Path) {
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("layout");
    let put = |bytes: &[u8]| -> (String, usize) {
        let file = layout.join("blob.tmp");
        std::fs::write(&file, bytes).expect("blob");
        let digest = sha256_of(&file);
        std::fs::rename(&file, blobs.join(&digest["sha256:".len()..])).expect("blob");
        (digest, bytes.len())
    };
    let mut names: Vec<String> = std::fs::read_dir(root)
        .expect("debootstrap root")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name != "debootstrap")
        .collect();
    names.sort();
    let layer = layout.join("layer.tmp");
    run(Command::new("tar")
        .args([
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "--sort=name",
            "-cf",
        ])
        .arg(&layer)
        .arg("-C")
        .arg(root)
        .args(&names));
    let layer_digest = sha256_of(&layer);
    let layer_size = std::fs::metadata(&layer).expect("layer").len();
    std::fs::rename(&layer, blobs.join(&layer_digest["sha256:".len()..])).expect("layer");
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#
    );
    let (config_digest, config_size) = put(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{layer_size}}}]}}"#
    );
    let (manifest_digest, manifest_size) = put(manifest.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{manifest_size},"annotations":{{"org.opencontainers.image.ref.name":"{REFERENCE}"}}}}]}}"#
    );
    std::fs::write(layout.join("index.json"), index).expect("index");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
}

/// Boots `image` and returns what the serial console printed; fails when
/// QEMU does not stop within [`BOOT_TIMEOUT`].
fn boot(kernel: &Path, initrd: &Path, built: &Built) -> String {
    let image = &built.path;
    let (root, drive) = match built.fs {
        "ext4" => ("root=/dev/vda rw".to_owned(), ""),
        fs => (format!("root=/dev/vda ro rootfstype={fs}"), ",readonly=on"),
    };
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", "512", "-smp", "1"])
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(format!("{root} console=ttyS0 panic=-1 loglevel=4"))
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=virtio{drive}",
            image.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!("qemu-system-x86_64 cannot run ({err}): install qemu-system-x86")
        });
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    });
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for qemu") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let console = reader.join().expect("reader");
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    match status {
        Some(status) => assert!(
            status.success(),
            "qemu failed ({status}): {stderr}\nconsole:\n{console}"
        ),
        None => panic!(
            "{} did not power off within {BOOT_TIMEOUT:?}; console:\n{console}",
            image.display()
        ),
    }
    console
}

/// The text between the two markers, when both were printed.
fn between_markers(console: &str) -> Option<&str> {
    let start = console.find(&format!("\n{BEGIN}"))? + BEGIN.len() + 1;
    let end = start + console[start..].find(END)?;
    Some(&console[start..end])
}
