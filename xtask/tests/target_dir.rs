//! xtask commands find what cargo built, and write what they make, in the
//! directory cargo itself uses (`cargo metadata`'s target directory), so a
//! `CARGO_TARGET_DIR` set by the user is honoured (the ways of setting it are
//! unit-tested in `xtask/src/cmd.rs`).
//!
//! The test hands xtask this build's own target directory (a different one
//! would cost a full rebuild) and checks that xtask worked there. CI builds outside the workspace's
//! `target/` (`.ci/run` sets `CARGO_TARGET_DIR`), so an xtask that assumed
//! `target/` would fail these tests there.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The target directory this test was built in: `<target>/debug/xtask`.
fn own_target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_xtask"))
        .parent()
        .and_then(Path::parent)
        .expect("because the xtask binary lives in <target>/debug")
        .to_path_buf()
}

/// Runs the xtask binary with `args` and `(name, value)` added to a clean
/// environment (no inherited target-directory or registry settings).
fn xtask(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.args(args);
    for name in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CACHECTL_ROOT",
    ] {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("starting the xtask binary")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn demo_runs_the_cachectl_cargo_built_in_cargo_target_dir_and_writes_there() {
    let target = own_target_dir();
    let out = xtask(&["demo"], &[("CARGO_TARGET_DIR", &target)]);
    let log = stderr(&out);
    assert!(out.status.success(), "demo failed:\n{log}");
    let cache = target.join("demo").join("cache");
    assert!(
        cache.join("index.json").is_file(),
        "the demo's cache is not under CARGO_TARGET_DIR ({}):\n{log}",
        cache.display()
    );
    assert!(
        log.contains(&format!("cache at {}", cache.display())),
        "the demo does not say where its cache is:\n{log}"
    );
}
