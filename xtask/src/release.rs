//! `cargo xtask release`: the release binary, stripped, with shell
//! completions and a man page, in a tarball with SHA-256 sums; then
//! `cargo package` for every library crate, in dependency order.
//!
//! Output in `target/dist/`:
//!
//! ```text
//! cachectl-<version>-<arch>-linux/
//!   cachectl                   stripped release binary
//!   cachectl.1                 man page
//!   completions/cachectl.bash, _cachectl (zsh), cachectl.fish
//!   README.md, LICENSE files when present
//! cachectl-<version>-<arch>-linux.tar.gz
//! SHA256SUMS                   `sha256sum -c` format, for the tarball and the binary
//! ```

use crate::cmd::{Error, built_binary, cargo, output, run, target_dir, workspace_root};
use std::path::Path;
use std::process::Command;

/// Library crates, each after the crates it depends on (the layering
/// `check-layers` enforces).
const LIBRARIES: [&str; 4] = ["ociref", "ocidist", "ocistore", "rootfs"];

/// Runs the release steps; `--no-package` skips `cargo package`.
pub(crate) fn run_release(args: &[String]) -> Result<(), Error> {
    let package = match args {
        [] => true,
        [flag] if flag == "--no-package" => false,
        _ => return Err("usage: cargo xtask release [--no-package]".into()),
    };
    let root = workspace_root();
    run(cargo().args(["build", "--release", "--locked", "-p", "cachectl"]))?;
    let version = env!("CARGO_PKG_VERSION");
    let name = format!("cachectl-{version}-{}-linux", std::env::consts::ARCH);
    let dist = target_dir()?.join("dist");
    let stage = dist.join(&name);
    if dist.exists() {
        std::fs::remove_dir_all(&dist).map_err(|e| format!("clearing {}: {e}", dist.display()))?;
    }
    std::fs::create_dir_all(stage.join("completions"))
        .map_err(|e| format!("creating {}: {e}", stage.display()))?;
    let binary = stage.join("cachectl");
    copy(&built_binary("release", "cachectl")?, &binary)?;
    run(Command::new("strip").arg(&binary))?;
    for (what, file) in [
        ("bash", "completions/cachectl.bash"),
        ("zsh", "completions/_cachectl"),
        ("fish", "completions/cachectl.fish"),
        ("man", "cachectl.1"),
    ] {
        let text = output(Command::new(&binary).args(["generate", what]))?;
        if text.trim().is_empty() {
            return Err(format!("`cachectl generate {what}` printed nothing"));
        }
        write(&stage.join(file), text.as_bytes())?;
    }
    for extra in ["README.md", "LICENSE-APACHE", "LICENSE-MIT"] {
        if root.join(extra).exists() {
            copy(&root.join(extra), &stage.join(extra))?;
        }
    }
    let version_line = output(Command::new(&binary).arg("--version"))?;
    if !version_line.contains(version) {
        return Err(format!("the binary says {version_line:?}, not {version}"));
    }
    let tarball = format!("{name}.tar.gz");
    run(Command::new("tar")
        .current_dir(&dist)
        .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
        .args(["-czf", &tarball, &name]))?;
    let sums = output(
        Command::new("sha256sum")
            .current_dir(&dist)
            .arg(&tarball)
            .arg(format!("{name}/cachectl")),
    )?;
    write(&dist.join("SHA256SUMS"), sums.as_bytes())?;
    run(Command::new("sha256sum")
        .current_dir(&dist)
        .args(["--check", "--quiet", "SHA256SUMS"]))?;
    eprintln!("xtask: wrote {}", dist.join(&tarball).display());
    if package {
        // One invocation packages them in order and verifies each against
        // the ones before it (cargo overlays unpublished workspace crates).
        let mut command = cargo();
        command.args(["package", "--locked", "--allow-dirty"]);
        for library in LIBRARIES {
            command.args(["-p", library]);
        }
        run(&mut command)?;
    }
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<(), Error> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    std::fs::write(path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))
}
