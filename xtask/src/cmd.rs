//! Running external commands with the command line echoed, so a CI log shows
//! exactly what ran.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The error type of xtask: a message for a person.
pub(crate) type Error = String;

/// Runs `command` to completion, inheriting stdio; fails unless it exits 0.
pub(crate) fn run(command: &mut Command) -> Result<(), Error> {
    let shown = describe(command);
    eprintln!("xtask: $ {shown}");
    let status = command
        .status()
        .map_err(|err| format!("could not start `{shown}`: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({status})"))
    }
}

/// Runs `command` with captured output and returns its stdout; fails unless
/// it exits 0, quoting its stderr.
pub(crate) fn output(command: &mut Command) -> Result<String, Error> {
    let shown = describe(command);
    let out = command
        .output()
        .map_err(|err| format!("could not start `{shown}`: {err}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|_| format!("`{shown}` printed non-UTF-8 output"))
}

/// The `cargo` that runs this xtask, so the same toolchain builds everything.
///
/// It runs without the variables cargo sets for the crate it runs
/// (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, ...: xtask's own, when started by
/// `cargo xtask`; a test's, when a test starts xtask). Build scripts such as
/// ring's declare `rerun-if-env-changed` on those names, so passing them on
/// would make every xtask build rerun them and rebuild what depends on them,
/// and the user's next plain `cargo build` rebuild it all again.
pub(crate) fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace_root());
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(is_set_by_cargo_for_a_crate) {
            command.env_remove(name);
        }
    }
    command
}

/// Whether `name` is one of the variables cargo sets for the crate it builds,
/// runs or tests, as opposed to settings of cargo itself (`CARGO`,
/// `CARGO_HOME`, `CARGO_TARGET_DIR`, `CARGO_BUILD_*`, `CARGO_TERM_*`, ...).
fn is_set_by_cargo_for_a_crate(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "OUT_DIR",
    ];
    EXACT.contains(&name) || name.starts_with("CARGO_PKG_") || name.starts_with("CARGO_BIN_EXE_")
}

/// The workspace root: the parent of this crate's directory.
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("because xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Where cargo puts what it builds: `target_directory` of `cargo metadata`,
/// which follows `CARGO_TARGET_DIR`, `CARGO_BUILD_TARGET_DIR` and
/// `build.target-dir` in `.cargo/config.toml` exactly as `cargo build` does.
/// Asked once per run.
pub(crate) fn target_dir() -> Result<PathBuf, Error> {
    static TARGET_DIR: OnceLock<PathBuf> = OnceLock::new();
    if let Some(dir) = TARGET_DIR.get() {
        return Ok(dir.clone());
    }
    let dir = target_dir_of(&mut cargo())?;
    Ok(TARGET_DIR.get_or_init(|| dir).clone())
}

/// Runs `cargo metadata` through `cargo` (a `cargo` command with whatever
/// environment and working directory the caller set) and returns its
/// `target_directory`.
pub(crate) fn target_dir_of(cargo: &mut Command) -> Result<PathBuf, Error> {
    let text = output(cargo.args(["metadata", "--format-version", "1", "--no-deps"]))?;
    let metadata: serde_json::Value = serde_json::from_str(&text)
        .map_err(|err| format!("`cargo metadata` printed something that is not JSON: {err}"))?;
    match metadata
        .get("target_directory")
        .and_then(|dir| dir.as_str())
    {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => Err("`cargo metadata` printed no target_directory".into()),
    }
}

/// The path of binary `name` that cargo built for `profile` (`debug` or
/// `release`) in the target directory; fails, naming the path, when it is not
/// there.
pub(crate) fn built_binary(profile: &str, name: &str) -> Result<PathBuf, Error> {
    let path = target_dir()?.join(profile).join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "cargo built {name} but {} does not exist",
            path.display()
        ))
    }
}

fn describe(command: &Command) -> String {
    let mut shown = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        shown.push(' ');
        shown.push_str(&arg.to_string_lossy());
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target_dir_with(configure: impl FnOnce(&mut Command)) -> PathBuf {
        let mut command = cargo();
        command
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET_DIR");
        configure(&mut command);
        target_dir_of(&mut command).expect("cargo metadata answers")
    }

    #[test]
    fn cargo_is_run_without_the_variables_of_the_crate_that_runs_it() {
        for name in [
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_MANIFEST_DIR",
            "CARGO_BIN_EXE_xtask",
            "OUT_DIR",
        ] {
            assert!(is_set_by_cargo_for_a_crate(name), "{name}");
        }
        for name in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET_DIR",
            "CARGO_TERM_COLOR",
        ] {
            assert!(!is_set_by_cargo_for_a_crate(name), "{name}");
        }
        // A test runs with CARGO_PKG_NAME set (to this package's name).
        assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
        let command = cargo();
        let removed: Vec<_> = command
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        assert!(
            removed.contains(&"CARGO_PKG_NAME".to_string()),
            "{removed:?}"
        );
        assert!(
            removed.contains(&"CARGO_MANIFEST_DIR".to_string()),
            "{removed:?}"
        );
    }

    #[test]
    fn the_target_dir_is_the_workspace_target_unless_cargo_is_told_otherwise() {
        assert_eq!(target_dir_with(|_| ()), workspace_root().join("target"));
    }

    #[test]
    fn the_target_dir_follows_each_way_cargo_is_told_where_to_build() {
        let elsewhere = std::env::temp_dir().join("xtask-target-dir-test");
        assert_eq!(
            target_dir_with(|c| {
                c.env("CARGO_TARGET_DIR", &elsewhere);
            }),
            elsewhere
        );
        assert_eq!(
            target_dir_with(|c| {
                c.env("CARGO_BUILD_TARGET_DIR", &elsewhere);
            }),
            elsewhere
        );
        // Relative to the directory cargo runs in: the workspace root.
        assert_eq!(
            target_dir_with(|c| {
                c.env("CARGO_TARGET_DIR", "build/out");
            }),
            workspace_root().join("build/out")
        );
        let config = format!("build.target-dir={:?}", elsewhere.display().to_string());
        assert_eq!(
            target_dir_with(|c| {
                c.args(["--config", &config]);
            }),
            elsewhere
        );
    }
}
