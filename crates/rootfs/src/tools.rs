//! Running the e2fsprogs programs (`mke2fs`, `debugfs`) a build needs.
//!
//! A child dies with the build: it is started with the parent-death
//! signal `SIGKILL` (`prctl(PR_SET_PDEATHSIG)`), so a build killed with
//! `SIGKILL` leaves no `mke2fs` writing on as an orphan. That signal
//! fires when the *thread* that started the child ends, not only the
//! process: [`run`] waits for the child on the thread that started it
//! (`Command::output`), so that thread always outlives the child. A child
//! whose parent died between `fork` and the `prctl` sees a new parent
//! process ID and exits at once.

use crate::error::{Error, Result};
use crate::options::BuildOptions;
use std::io::Read as _;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};

/// The size asked for the pipe a fed child reads from.
const PIPE_BYTES: usize = 1 << 20;

/// The package that provides the program `name`.
pub(crate) fn package_of(name: &str) -> &'static str {
    match name {
        "tar2sqfs" | "sqfs2tar" => "squashfs-tools-ng",
        "mkfs.erofs" => "erofs-utils",
        _ => "e2fsprogs",
    }
}

/// The path `options` gives the program `name`, if any; a path that is
/// no file is [`Error::ToolPathMissing`].
pub(crate) fn given_tool(name: &'static str, options: &BuildOptions) -> Result<Option<PathBuf>> {
    match options.tool_paths.get(name) {
        Some(path) if !path.is_file() => Err(Error::ToolPathMissing {
            tool: name,
            path: path.clone(),
        }),
        given => Ok(given.cloned()),
    }
}

/// The program `name`: the path `options` gives it, else from the search
/// path of `options`.
pub(crate) fn find_tool(name: &'static str, options: &BuildOptions) -> Result<PathBuf> {
    if let Some(path) = given_tool(name, options)? {
        return Ok(path);
    }
    let search = match &options.search_path {
        Some(path) => path.clone(),
        None => {
            let mut path = std::env::var_os("PATH").unwrap_or_default();
            path.push(":/usr/sbin:/sbin");
            path
        }
    };
    std::env::split_paths(&search)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or(Error::ToolNotFound {
            tool: name,
            package: package_of(name),
        })
}

/// Why `tool` could not be started: not installed, or `source`.
fn not_started(tool: &'static str, source: std::io::Error) -> Error {
    match source.kind() {
        std::io::ErrorKind::NotFound => Error::ToolNotFound {
            tool,
            package: package_of(tool),
        },
        _ => Error::ToolFailed {
            tool,
            status: "not started".to_owned(),
            stderr: source.to_string(),
        },
    }
}

/// Runs a program; its stdout and stderr together when it succeeds, its
/// stderr in [`Error::ToolFailed`] when not.
pub(crate) fn run(command: &mut Command, tool: &'static str) -> Result<String> {
    die_with_parent(command);
    let output = command
        .output()
        .map_err(|source| not_started(tool, source))?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return Err(Error::ToolFailed {
            tool,
            status: output.status.to_string(),
            stderr,
        });
    }
    Ok(format!(
        "{}{stderr}",
        String::from_utf8_lossy(&output.stdout)
    ))
}

/// Runs `command` with `writer` feeding its standard input (both at
/// once; a 1 MiB pipe where the kernel allows it), its standard output
/// discarded; the child is waited for on this thread whatever the outcome.
/// The error of a failed child wins over the writer's (a child that fails
/// closes the pipe), and is [`Error::ToolFailed`] with its stderr.
pub(crate) fn run_fed<T>(
    command: &mut Command,
    tool: &'static str,
    writer: impl FnOnce(ChildStdin) -> Result<T>,
) -> Result<T> {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    die_with_parent(command);
    let mut child = command
        .spawn()
        .map_err(|source| not_started(tool, source))?;
    let stderr = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    });
    let stdin = child.stdin.take().expect("because stdin is piped");
    // A larger pipe: fewer switches between the writer and the child (the
    // default 64 KiB; the kernel may give less, which only costs time).
    let _ = rustix::pipe::fcntl_setpipe_size(&stdin, PIPE_BYTES);
    let fed = writer(stdin);
    if fed.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|source| Error::ToolFailed {
        tool,
        status: "not waited for".to_owned(),
        stderr: source.to_string(),
    })?;
    let stderr = stderr
        .and_then(|thread| thread.join().ok())
        .unwrap_or_default();
    if !status.success() {
        return Err(Error::ToolFailed {
            tool,
            status: status.to_string(),
            stderr,
        });
    }
    fed
}

/// Makes the child of `command` die with this thread (see the module
/// docs).
pub(crate) fn die_with_parent(command: &mut Command) {
    let parent = rustix::process::getpid();
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the child between `fork` and `exec`,
    // where only async-signal-safe calls are allowed: it makes two system
    // calls (`prctl`, `getppid`), allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            if rustix::process::getppid() != Some(parent) {
                // The parent is already gone: the signal will never come.
                return Err(rustix::io::Errno::SRCH.into());
            }
            Ok(())
        });
    }
}
