//! Running external commands with the command line echoed, so a CI log shows
//! exactly what ran.

use std::path::{Path, PathBuf};
use std::process::Command;

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
pub(crate) fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace_root());
    command
}

/// The workspace root: the parent of this crate's directory.
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("because xtask lives one level below the workspace root")
        .to_path_buf()
}

fn describe(command: &Command) -> String {
    let mut shown = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        shown.push(' ');
        shown.push_str(&arg.to_string_lossy());
    }
    shown
}
