//! What a killed process leaves, and how its owner is known to be gone.
//!
//! Every file or directory a build or an unpack works in is locked
//! (`flock`) by its owner for as long as it is in use; the lock goes with
//! the owner's last file descriptor, so a process killed with `SIGKILL`
//! releases it. Children (`mke2fs`, `debugfs`) never inherit it: files are
//! opened close-on-exec. Most of these names also carry the owner's
//! process ID (`…-p<pid>-<suffix>`). A leftover is *stale*, and may be
//! removed, when nobody holds its lock and either the process its name
//! names is gone or it is older than a minute (a name without a process
//! ID, or a process ID reused since). The minute covers the instant
//! between creating a file and locking it: a live owner whose process
//! exists is never swept in that instant.

use crate::error::{Error, Result, io};
use crate::options::FsType;
use ocistore::StoreDir;
use std::path::Path;

/// The `-p<pid>-` tag that names put before their last `-` field.
pub(crate) fn pid_tag() -> String {
    format!("p{}-", std::process::id())
}

/// Locks `file` (exclusively, without waiting) for as long as it stays
/// open; `path` names it in the error.
pub(crate) fn lock(file: &std::fs::File, path: &Path) -> Result<()> {
    rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(|e| io("locking", path)(e.into()))
}

/// A new `partial-p<pid>-….<fs>` image file in `cache` (created `O_EXCL`
/// through the directory's anchor, readable by every user of the store as
/// its other files are), locked while this build lives, so the next build
/// or `gc` can tell it from one a killed build left.
pub(crate) fn partial_image(cache: &StoreDir, fs: FsType) -> Result<tempfile::NamedTempFile> {
    let partial = tempfile::Builder::new()
        .prefix(&format!("partial-{}", pid_tag()))
        .suffix(&format!(".{}", fs.as_str()))
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(cache.anchor())
        .map_err(io("creating a file in", cache.path()))?;
    lock(partial.as_file(), partial.path())?;
    Ok(partial)
}

/// `err`, from making the partial image at `partial` (a path through the
/// anchor of `cache`), naming the image by its path in the store; a tool
/// that ran out of room (`No space left on device` on its stderr) becomes
/// the `ENOSPC` it met, so the full disk is told as one.
pub(crate) fn named_in_cache(err: Error, cache: &StoreDir, partial: &Path) -> Error {
    let Some(name) = partial.file_name() else {
        return err;
    };
    let named = cache.child(&name.to_string_lossy());
    match err {
        Error::ToolFailed { tool, stderr, .. } if stderr.contains("No space left on device") => {
            Error::Io {
                what: if tool == "mke2fs" {
                    "writing the image"
                } else {
                    "writing the image with debugfs"
                },
                path: named,
                source: std::io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error()),
            }
        }
        other => other.relocated(partial, &named),
    }
}

/// Whether the leftover `path` (file or directory) is stale: the store's
/// rule ([`ocistore::is_stale_leftover`]), for the leftovers rootfs sweeps
/// itself.
pub(crate) fn is_stale(path: &Path) -> bool {
    ocistore::is_stale_leftover(path)
}

/// The stale files in `dir` whose names start with `prefix` and end with
/// `suffix`, with their sizes.
pub(crate) fn stale_files(dir: &StoreDir, prefix: &str, suffix: &str) -> Vec<(String, u64)> {
    let anchor = dir.anchor();
    dir.names()
        .unwrap_or_default()
        .into_iter()
        .filter(|name| name.starts_with(prefix) && name.ends_with(suffix))
        .filter_map(|name| {
            // `stat` does not follow a link.
            let meta = dir.stat(&name).ok().flatten()?;
            meta.is_file().then_some((name, meta.len()))
        })
        .filter(|(name, _)| is_stale(&anchor.join(name)))
        .collect()
}

/// Removes the stale files of [`stale_files`]; how many and how many
/// bytes.
pub(crate) fn remove_stale_files(
    dir: &StoreDir,
    prefix: &str,
    suffix: &str,
) -> Result<(usize, u64)> {
    let mut removed = (0, 0);
    for (name, size) in stale_files(dir, prefix, suffix) {
        // Another sweeper may have been first: then nothing is counted.
        if dir.stat(&name)?.is_some() {
            dir.remove(&name)?;
            removed.0 += 1;
            removed.1 += size;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_leftover_is_kept_and_one_of_a_dead_process_swept() {
        let dir = tempfile::tempdir().expect("tempdir");
        // PID 2^22 + 1 is above the kernel's maximum: never running.
        let dead = dir.path().join("partial-p4194305-x.ext4");
        std::fs::write(&dead, b"left").expect("write");
        let live = dir.path().join("partial-p4194306-y.ext4");
        let held = std::fs::File::create(&live).expect("create");
        lock(&held, &live).expect("locked");
        let ours = dir.path().join(format!("partial-{}z.ext4", pid_tag()));
        std::fs::write(&ours, b"new").expect("write");
        assert!(is_stale(&dead));
        assert!(!is_stale(&live), "locked");
        assert!(!is_stale(&ours), "its owner runs and it is young");
        let store = ocistore::Store::open(dir.path().join("store")).expect("store");
        let held = store.open_dir(dir.path()).expect("opened");
        let removed = remove_stale_files(&held, "partial-", ".ext4").expect("swept");
        assert_eq!(removed, (1, 4));
        assert!(!dead.exists() && live.exists() && ours.exists());
    }
}
