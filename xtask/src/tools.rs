//! The external programs the tests use, and installing the missing ones.
//!
//! On a fresh Debian machine `cargo xtask test` installs them with apt-get
//! when it runs as root; otherwise it prints the exact command and fails.

use crate::cmd::{self, Error};
use std::path::PathBuf;
use std::process::Command;

/// `(program, Debian package that provides it)`.
const REQUIRED: &[(&str, &str)] = &[
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    ("mke2fs", "e2fsprogs"),
    ("e2fsck", "e2fsprogs"),
    ("debugfs", "e2fsprogs"),
    ("zstd", "zstd"),
    ("gzip", "gzip"),
    ("tar", "tar"),
    // The Debian rootfs equivalence test (tests/it/rootfs_debian.rs) builds
    // its base layer with `debootstrap --variant=minbase` when it can.
    ("debootstrap", "debootstrap"),
    // The terminal tests (crates/cachectl/tests/terminal.rs) run the binary
    // in a real terminal and read the screen back.
    ("tmux", "tmux"),
    // The proxy tests (tests/it/proxy.rs, crates/cachectl/tests/proxy.rs)
    // pull through a real forwarding proxy.
    ("squid", "squid"),
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

/// Makes sure every required program and the rustfmt/clippy components exist.
pub(crate) fn ensure_installed() -> Result<(), Error> {
    ensure_rust_components()?;
    let mut packages: Vec<&str> = REQUIRED
        .iter()
        .filter(|(program, _)| find(program).is_none())
        .map(|(_, package)| *package)
        .collect();
    packages.dedup();
    if packages.is_empty() {
        eprintln!(
            "xtask: tools present: docker-registry, skopeo, umoci, e2fsprogs, zstd, debootstrap, tmux, squid"
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
    let still_missing: Vec<&str> = REQUIRED
        .iter()
        .filter(|(program, _)| find(program).is_none())
        .map(|(program, _)| *program)
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
