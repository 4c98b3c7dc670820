//! The external programs the tests use, and installing the missing ones.
//!
//! On a fresh Debian machine `cargo xtask test` installs them with apt-get
//! when it runs as root; otherwise it prints the exact command and fails.

use crate::cmd::{self, Error};
use std::path::PathBuf;
use std::process::Command;

/// What shows that a package is installed.
#[derive(Clone, Copy)]
enum Probe {
    /// A program on `$PATH` or in the sbin directories.
    Program(&'static str),
    /// A file in `dir` whose name starts with `prefix` (a kernel image,
    /// which is no program).
    File {
        dir: &'static str,
        prefix: &'static str,
    },
}

impl Probe {
    fn present(self) -> bool {
        match self {
            Probe::Program(program) => find(program).is_some(),
            Probe::File { dir, prefix } => std::fs::read_dir(dir)
                .map(|entries| {
                    entries.flatten().any(|entry| {
                        entry.file_name().to_string_lossy().starts_with(prefix)
                            && entry.path().is_file()
                    })
                })
                .unwrap_or(false),
        }
    }

    fn describe(self) -> String {
        match self {
            Probe::Program(program) => program.to_owned(),
            Probe::File { dir, prefix } => format!("{dir}/{prefix}*"),
        }
    }
}

/// `(what must be present, Debian package that provides it)`.
const REQUIRED: &[(Probe, &str)] = &[
    (Probe::Program("docker-registry"), "docker-registry"),
    (Probe::Program("skopeo"), "skopeo"),
    (Probe::Program("umoci"), "umoci"),
    (Probe::Program("mke2fs"), "e2fsprogs"),
    (Probe::Program("e2fsck"), "e2fsprogs"),
    (Probe::Program("debugfs"), "e2fsprogs"),
    (Probe::Program("zstd"), "zstd"),
    (Probe::Program("gzip"), "gzip"),
    (Probe::Program("tar"), "tar"),
    // The Debian rootfs equivalence test (tests/it/rootfs_debian.rs) and
    // the boot test (crates/cachectl/tests/boot.rs) build a Debian tree
    // with `debootstrap --variant=minbase`.
    (Probe::Program("debootstrap"), "debootstrap"),
    // The terminal tests (crates/cachectl/tests/terminal.rs) run the binary
    // in a real terminal and read the screen back.
    (Probe::Program("tmux"), "tmux"),
    // The boot test boots built images under QEMU (TCG) with Debian's
    // kernel and initramfs.
    (Probe::Program("qemu-system-x86_64"), "qemu-system-x86"),
    (
        Probe::File {
            dir: "/boot",
            prefix: "vmlinuz-",
        },
        "linux-image-amd64",
    ),
    // The proxy tests (tests/it/proxy.rs, crates/cachectl/tests/proxy.rs)
    // pull through a real forwarding proxy.
    (Probe::Program("squid"), "squid"),
    // `cargo xtask bench build` reads a cold build's peak RSS from GNU time.
    (Probe::Program("time"), "time"),
    // Read-only images: `build --fs squashfs` runs tar2sqfs; the tests
    // read images back with rdsquashfs and sqfs2tar.
    (Probe::Program("tar2sqfs"), "squashfs-tools-ng"),
    (Probe::Program("rdsquashfs"), "squashfs-tools-ng"),
    // `build --fs erofs` runs mkfs.erofs (reading tars from 1.7; Debian 12
    // has 1.5, which the tests check is refused by name).
    (Probe::Program("mkfs.erofs"), "erofs-utils"),
    // The boot test appends the squashfs and erofs modules to a copy of the
    // initramfs as a cpio archive.
    (Probe::Program("cpio"), "cpio"),
    // `build -o` on a file system that shares extents: the test makes an
    // XFS file system with reflinks in a file and mounts it.
    (Probe::Program("mkfs.xfs"), "xfsprogs"),
];

/// Directories searched besides `$PATH`: e2fsprogs lives in /usr/sbin, which
/// is not on an unprivileged user's PATH everywhere.
const EXTRA_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/local/sbin"];

/// Finds `program` on `$PATH` or in the sbin directories.
pub(crate) fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Makes sure every required program and the rustfmt/clippy components
/// exist, and that `mke2fs -d` reads tars (see `e2fsprogs`).
pub(crate) fn ensure_installed() -> Result<(), Error> {
    ensure_rust_components()?;
    ensure_packages()?;
    crate::e2fsprogs::ensure_tar_input(is_root())
}

fn ensure_packages() -> Result<(), Error> {
    let mut packages: Vec<&str> = REQUIRED
        .iter()
        .filter(|(probe, _)| !probe.present())
        .map(|(_, package)| *package)
        .collect();
    packages.dedup();
    if packages.is_empty() {
        eprintln!(
            "xtask: tools present: docker-registry, skopeo, umoci, e2fsprogs, zstd, debootstrap, \
             tmux, qemu-system-x86, linux-image-amd64, squid, time, squashfs-tools-ng, erofs-utils, cpio, \
             xfsprogs"
        );
        return Ok(());
    }
    let install = format!(
        "apt-get update && apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    );
    if !is_root() {
        return Err(format!(
            "missing Debian packages: {}. Install them with:\n    sudo sh -c '{install}'",
            packages.join(", ")
        ));
    }
    eprintln!("xtask: installing missing packages: {}", packages.join(" "));
    cmd::run(Command::new("apt-get").arg("update").arg("-q"))?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    let still_missing: Vec<String> = REQUIRED
        .iter()
        .filter(|(probe, _)| !probe.present())
        .map(|(probe, _)| probe.describe())
        .collect();
    if still_missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "still missing after apt-get install: {}",
            still_missing.join(", ")
        ))
    }
}

fn ensure_rust_components() -> Result<(), Error> {
    let has = |sub: &str| {
        cmd::cargo()
            .args([sub, "--version"])
            .output()
            .map(|out| out.status.success())
            .unwrap_or(false)
    };
    let missing: Vec<&str> = [("fmt", "rustfmt"), ("clippy", "clippy")]
        .into_iter()
        .filter(|(sub, _)| !has(sub))
        .map(|(_, component)| component)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    cmd::run(
        Command::new("rustup")
            .args(["component", "add"])
            .args(&missing),
    )
}

fn is_root() -> bool {
    // The effective uid, from /proc; avoids a libc dependency for one call.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_probe_wants_a_file_with_the_prefix() {
        let dir = std::env::temp_dir().join(format!("xtask-probe-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("vmlinuz-dir")).expect("dir");
        let leaked: &'static str = Box::leak(dir.to_string_lossy().into_owned().into_boxed_str());
        let probe = Probe::File {
            dir: leaked,
            prefix: "vmlinuz-",
        };
        // A directory with the prefix is no kernel.
        assert!(!probe.present());
        std::fs::write(dir.join("vmlinuz-6.1.0-test"), b"kernel").expect("file");
        assert!(probe.present());
        assert_eq!(probe.describe(), format!("{leaked}/vmlinuz-*"));
        assert!(
            !Probe::File {
                dir: "/nonexistent-dir",
                prefix: "x"
            }
            .present()
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
