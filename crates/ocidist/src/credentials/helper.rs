//! Running `docker-credential-<name> get`.

use super::file::json_reason;
use super::{Credential, Secret, server_key};
use crate::{Error, Result};
use serde::Deserialize;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// What helpers print when they have nothing for the server (docker's
/// `credentials.errCredentialsNotFound`).
const NOT_FOUND: &str = "credentials not found in native keychain";

/// How much of a helper's stderr goes into an error message.
const STDERR_LIMIT: usize = 2000;

/// Asks helper `name`, found in `search_path`, for `registry`'s credential.
///
/// The helper reads the server URL on stdin and prints
/// `{"ServerURL","Username","Secret"}`; a `<token>` username means the secret
/// is an identity token.
pub(super) fn run_helper(
    name: &str,
    registry: &str,
    search_path: &[PathBuf],
) -> Result<Option<Credential>> {
    let fail = |reason: String| Error::CredentialHelper {
        helper: name.to_owned(),
        registry: registry.to_owned(),
        reason,
    };
    if name.is_empty() || name.contains('/') {
        return Err(fail("invalid helper name".to_owned()));
    }
    let program = find_program(&format!("docker-credential-{name}"), search_path)
        .ok_or_else(|| fail("not found on PATH".to_owned()))?;
    let output = run(&program, &server_key(registry))
        .map_err(|e| fail(format!("cannot run {}: {e}", program.display())))?;
    if !output.status.success() {
        if mentions_not_found(&output) {
            return Ok(None);
        }
        return Err(fail(failure_reason(&output)));
    }
    parse_output(&output.stdout).map_err(fail)
}

/// Runs `program get` with `server_url` on stdin (no newline, as docker does).
fn run(program: &Path, server_url: &str) -> std::io::Result<Output> {
    let mut child = Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper may exit without reading its input; its exit status tells.
        match stdin.write_all(server_url.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e),
            _ => {}
        }
    }
    child.wait_with_output()
}

/// The first executable file called `file_name` in `dirs`.
fn find_program(file_name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter()
        .map(|dir| dir.join(file_name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    let Ok(metadata) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        metadata.is_file()
    }
}

fn mentions_not_found(output: &Output) -> bool {
    [&output.stdout, &output.stderr]
        .iter()
        .any(|stream| String::from_utf8_lossy(stream).contains(NOT_FOUND))
}

/// The exit status and stderr; never stdout, which may hold a secret.
fn failure_reason(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stderr = stderr.trim();
    if stderr.is_empty() {
        return format!("{} (no message on stderr)", output.status);
    }
    let shown: String = stderr.chars().take(STDERR_LIMIT).collect();
    let cut = if shown.len() < stderr.len() {
        "…"
    } else {
        ""
    };
    format!("{}: {shown}{cut}", output.status)
}

/// What a helper prints on success; unknown fields are ignored.
/// Deliberately not `Debug`: it holds the secret in clear.
#[derive(Default, Deserialize)]
#[serde(default)]
struct HelperOutput {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

fn parse_output(stdout: &[u8]) -> Result<Option<Credential>, String> {
    if stdout.trim_ascii().is_empty() {
        return Ok(None);
    }
    let output: HelperOutput =
        serde_json::from_slice(stdout).map_err(|e| format!("printed {}", json_reason(&e)))?;
    if output.username.is_empty() && output.secret.is_empty() {
        return Ok(None);
    }
    if output.username == "<token>" {
        return Ok(Some(Credential::IdentityToken(Secret(output.secret))));
    }
    Ok(Some(Credential::basic(output.username, output.secret)))
}
