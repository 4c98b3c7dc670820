//! Placing a host file at an absolute path of an unpacked image tree, the
//! path resolved as the guest will resolve it, never outside the tree.
//!
//! On a merged-`/usr` system `/sbin` is a symlink to `usr/sbin`: the guest
//! reads `/sbin/init` as `/usr/sbin/init`, so that is where the file must
//! go. Parent directories are walked one component at a time below the
//! tree; a symlink among them is followed with its target read as the
//! guest would (absolute targets from the image root, `..` stopping at the
//! root), at most [`MAX_LINKS`] times. The final component is never
//! followed: whatever is there (a file, a symlink such as
//! `/sbin/init -> /lib/systemd/systemd`) is replaced, and a directory is
//! refused.

use crate::error::{Error, Result, io};
use crate::unpack::{Recorded, clean_path};
use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::fs::{File, FileTimes, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

/// Symlinks followed while resolving one path, as Linux allows
/// (`MAXSYMLINKS`); one more is reported as a loop.
pub(crate) const MAX_LINKS: usize = 40;

/// Mode of the directories created on the way and of the placed file.
const MODE: u32 = 0o755;

/// Copies `source` into the tree `root` at the absolute guest path `target`
/// with mode 0755, recorded as owner 0:0 in `records` (as are the
/// directories created on the way). Returns the path written, relative to
/// `root`. The file and the created directories get mtime 0; the directory
/// that receives the file keeps its mtime.
pub(crate) fn place_file(
    root: &Path,
    source: &Path,
    target: &str,
    records: &mut BTreeMap<PathBuf, Recorded>,
) -> Result<PathBuf> {
    let rel = resolve(root, target, records)?;
    let abs = root.join(&rel);
    let parent = abs.parent().expect("a placed path has a parent").to_owned();
    let parent_mtime = mtime_of(&parent)?;
    match std::fs::symlink_metadata(&abs) {
        Ok(meta) if meta.is_dir() => {
            return Err(refused(target, format!("{} is a directory", rel.display())));
        }
        Ok(_) => std::fs::remove_file(&abs).map_err(io("removing", &abs))?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(io("inspecting", &abs)(err)),
    }
    let mut input = File::open(source).map_err(io("reading", source))?;
    let mut output = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&abs)
        .map_err(io("creating", &abs))?;
    std::io::copy(&mut input, &mut output).map_err(io("copying into", &abs))?;
    output
        .set_permissions(Permissions::from_mode(MODE))
        .map_err(io("setting mode of", &abs))?;
    drop(output);
    set_mtime(&abs, SystemTime::UNIX_EPOCH)?;
    set_mtime(&parent, parent_mtime)?;
    records.insert(rel.clone(), root_owned());
    Ok(rel)
}

/// Checks the syntax of the guest path `target` (absolute, not `/`, no
/// `..` component) and returns it relative to the image root, cleaned.
pub(crate) fn check_image_path(target: &str) -> Result<PathBuf> {
    let Some(given) = target.strip_prefix('/') else {
        return Err(refused(target, "the path is not absolute".to_owned()));
    };
    let given = clean_path(given.as_bytes()).map_err(|reason| refused(target, reason))?;
    if given.file_name().is_none() {
        return Err(refused(target, "the path is the root".to_owned()));
    }
    Ok(given)
}

/// What a path of a guest tree is, as [`resolve_in`] needs to know.
pub(crate) enum Found {
    Dir,
    /// A symlink, with its target.
    Symlink(PathBuf),
    /// Anything else (a file, a device).
    Other,
    Missing,
}

/// A tree a guest path is resolved in: an unpacked directory, or the
/// merge's index of one.
pub(crate) trait GuestTree {
    /// What `rel` (relative to the image root) is; its parents are
    /// directories.
    fn look(&mut self, rel: &Path) -> Result<Found>;
    /// Creates the directory `rel` (0755, owner 0:0, mtime 0) in the
    /// existing directory above it.
    fn make_dir(&mut self, rel: &Path) -> Result<()>;
}

/// The path, relative to `root`, that the guest path `target` names: its
/// parents resolved (symlinks followed inside `root`, missing directories
/// created with mode 0755 and recorded as 0:0 in `records`), its last
/// component kept as given, whatever it is.
pub(crate) fn resolve(
    root: &Path,
    target: &str,
    records: &mut BTreeMap<PathBuf, Recorded>,
) -> Result<PathBuf> {
    let mut host = HostTree {
        root,
        records,
        created: Vec::new(),
        kept: Vec::new(),
    };
    let rel = resolve_in(&mut host, target)?;
    // Children before parents: creating one changed its parent's mtime.
    for dir in host.created.iter().rev() {
        set_mtime(&root.join(dir), SystemTime::UNIX_EPOCH)?;
    }
    for (dir, mtime) in host.kept {
        set_mtime(&dir, mtime)?;
    }
    Ok(rel)
}

/// [`resolve`] in any [`GuestTree`].
pub(crate) fn resolve_in(tree: &mut dyn GuestTree, target: &str) -> Result<PathBuf> {
    let given = check_image_path(target)?;
    let name = given
        .file_name()
        .map(ToOwned::to_owned)
        .expect("checked: not the root");
    let mut pending: VecDeque<OsString> = given
        .parent()
        .into_iter()
        .flat_map(Path::components)
        .map(|c| c.as_os_str().to_owned())
        .collect();
    let mut current = PathBuf::new();
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        match Path::new(&part).components().next() {
            Some(Component::Normal(_)) => {}
            Some(Component::ParentDir) => {
                // `..` at the root is the root, as in the guest.
                current.pop();
                continue;
            }
            _ => continue,
        }
        let next = current.join(&part);
        match tree.look(&next)? {
            Found::Dir => current = next,
            Found::Symlink(link) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(refused(
                        target,
                        format!(
                            "more than {MAX_LINKS} symlinks followed at {} (a loop?)",
                            next.display()
                        ),
                    ));
                }
                if link.as_os_str().is_empty() {
                    return Err(refused(
                        target,
                        format!("{} is an empty symlink", next.display()),
                    ));
                }
                // The link's components come next; an absolute one starts
                // again from the image root.
                if link.has_root() {
                    current = PathBuf::new();
                }
                for component in link.components().rev() {
                    pending.push_front(component.as_os_str().to_owned());
                }
            }
            Found::Other => {
                return Err(refused(
                    target,
                    format!("{} is not a directory in the image", next.display()),
                ));
            }
            Found::Missing => {
                tree.make_dir(&next)?;
                current = next;
            }
        }
    }
    Ok(current.join(name))
}

/// An unpacked tree on the host. Directories created, and the existing
/// ones they were created in with their mtimes, are noted: the tree must
/// not depend on when it was built.
struct HostTree<'a> {
    root: &'a Path,
    records: &'a mut BTreeMap<PathBuf, Recorded>,
    created: Vec<PathBuf>,
    kept: Vec<(PathBuf, SystemTime)>,
}

impl GuestTree for HostTree<'_> {
    fn look(&mut self, rel: &Path) -> Result<Found> {
        let abs = self.root.join(rel);
        match std::fs::symlink_metadata(&abs) {
            Ok(meta) if meta.is_dir() => Ok(Found::Dir),
            Ok(meta) if meta.file_type().is_symlink() => Ok(Found::Symlink(
                std::fs::read_link(&abs).map_err(io("reading", &abs))?,
            )),
            Ok(_) => Ok(Found::Other),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Found::Missing),
            Err(err) => Err(io("inspecting", &abs)(err)),
        }
    }

    fn make_dir(&mut self, rel: &Path) -> Result<()> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        if !self.created.iter().any(|dir| dir == parent) {
            let parent = self.root.join(parent);
            let mtime = mtime_of(&parent)?;
            self.kept.push((parent, mtime));
        }
        let abs = self.root.join(rel);
        std::fs::create_dir(&abs).map_err(io("creating", &abs))?;
        std::fs::set_permissions(&abs, Permissions::from_mode(MODE))
            .map_err(io("setting mode of", &abs))?;
        self.records.insert(rel.to_path_buf(), root_owned());
        self.created.push(rel.to_path_buf());
        Ok(())
    }
}

fn mtime_of(path: &Path) -> Result<SystemTime> {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .map_err(io("reading", path))
}

/// Sets the access and modification times of `path` to `time`.
fn set_mtime(path: &Path, time: SystemTime) -> Result<()> {
    File::open(path)
        .and_then(|file| file.set_times(FileTimes::new().set_accessed(time).set_modified(time)))
        .map_err(io("setting times of", path))
}

pub(crate) fn refused(target: &str, reason: String) -> Error {
    Error::PlacePath {
        path: target.to_owned(),
        reason,
    }
}

/// Owner 0:0, mode 0755: what is placed and what is created for it.
fn root_owned() -> Recorded {
    Recorded {
        uid: 0,
        gid: 0,
        mode: MODE,
        device: None,
        mtime: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, symlink};

    /// A tree shaped like a merged-`/usr` Debian, in a temporary directory.
    fn merged_usr() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for sub in ["usr/bin", "usr/sbin", "usr/lib/systemd", "etc"] {
            std::fs::create_dir_all(root.join(sub)).expect("dirs");
        }
        for (link, to) in [("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib")] {
            symlink(to, root.join(link)).expect("symlink");
        }
        std::fs::write(root.join("usr/lib/systemd/systemd"), "systemd").expect("file");
        symlink("/lib/systemd/systemd", root.join("usr/sbin/init")).expect("symlink");
        dir
    }

    fn resolved(root: &Path, target: &str) -> Result<PathBuf> {
        resolve(root, target, &mut BTreeMap::new())
    }

    fn reason(result: Result<PathBuf>) -> String {
        match result {
            Err(Error::PlacePath { reason, .. }) => reason,
            other => panic!("expected PlacePath, got {other:?}"),
        }
    }

    #[test]
    fn relative_parent_link_is_followed() {
        let tree = merged_usr();
        let rel = resolved(tree.path(), "/sbin/init").expect("resolves");
        assert_eq!(rel, Path::new("usr/sbin/init"));
    }

    #[test]
    fn absolute_parent_link_is_read_from_the_image_root() {
        let tree = merged_usr();
        symlink("/usr/lib/systemd", tree.path().join("etc/sd")).expect("symlink");
        let rel = resolved(tree.path(), "/etc/sd/x").expect("resolves");
        assert_eq!(rel, Path::new("usr/lib/systemd/x"));
    }

    #[test]
    fn links_pointing_outside_the_root_stay_inside() {
        let tree = merged_usr();
        let root = tree.path();
        // Absolute to a host directory, and `..` far beyond the root.
        symlink("/tmp", root.join("etc/host-tmp")).expect("symlink");
        symlink("../../../../../../usr/bin", root.join("etc/up")).expect("symlink");
        let mut records = BTreeMap::new();
        let rel = resolve(root, "/etc/host-tmp/x", &mut records).expect("resolves");
        assert_eq!(rel, Path::new("tmp/x"));
        assert!(root.join("tmp").is_dir(), "created inside the tree");
        assert_eq!(
            resolved(root, "/etc/up/x").expect("resolves"),
            Path::new("usr/bin/x")
        );
    }

    #[test]
    fn dot_dot_in_the_given_path_is_refused() {
        let tree = merged_usr();
        assert!(reason(resolved(tree.path(), "/../etc/x")).contains(".."));
        assert!(reason(resolved(tree.path(), "/")).contains("root"));
        assert!(reason(resolved(tree.path(), "sbin/init")).contains("absolute"));
    }

    #[test]
    fn link_loops_are_refused_after_the_limit() {
        let tree = merged_usr();
        let root = tree.path();
        symlink("b", root.join("a")).expect("symlink");
        symlink("/a", root.join("b")).expect("symlink");
        let text = reason(resolved(root, "/a/init"));
        assert!(text.contains("more than 40 symlinks"), "{text}");
        // A chain of exactly 40 links resolves.
        for i in 0..39 {
            symlink(format!("c{}", i + 1), root.join(format!("c{i}"))).expect("symlink");
        }
        symlink("usr/bin", root.join("c39")).expect("symlink");
        assert_eq!(
            resolved(root, "/c0/x").expect("40 links"),
            Path::new("usr/bin/x")
        );
        std::fs::remove_file(root.join("c39")).expect("rm");
        symlink("c40", root.join("c39")).expect("symlink");
        symlink("usr/bin", root.join("c40")).expect("symlink");
        assert!(reason(resolved(root, "/c0/x")).contains("more than 40"));
    }

    #[test]
    fn missing_parents_are_created_and_recorded_as_root_owned() {
        let tree = merged_usr();
        let root = tree.path();
        // A dangling parent link: its target is created, inside.
        symlink("/opt/tools", root.join("tools")).expect("symlink");
        let layer_time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        set_mtime(root, layer_time).expect("mtime");
        let mut records = BTreeMap::new();
        let rel = resolve(root, "/tools/new/init", &mut records).expect("resolves");
        // The directory `opt` was created in keeps its mtime.
        assert_eq!(mtime_of(root).expect("mtime"), layer_time);
        assert_eq!(rel, Path::new("opt/tools/new/init"));
        let created: Vec<&PathBuf> = records.keys().collect();
        assert_eq!(created, ["opt", "opt/tools", "opt/tools/new"]);
        for (path, recorded) in &records {
            assert_eq!((recorded.uid, recorded.gid, recorded.mode), (0, 0, 0o755));
            let meta = std::fs::symlink_metadata(root.join(path)).expect("created");
            assert!(meta.is_dir());
            assert_eq!(meta.mode() & 0o7777, 0o755);
            assert_eq!(meta.mtime(), 0);
        }
    }

    #[test]
    fn a_file_as_parent_is_refused() {
        let tree = merged_usr();
        let text = reason(resolved(tree.path(), "/lib/systemd/systemd/x"));
        assert!(
            text.contains("usr/lib/systemd/systemd is not a directory"),
            "{text}"
        );
    }

    #[test]
    fn final_symlink_is_replaced_not_written_through() {
        let tree = merged_usr();
        let root = tree.path();
        let source = tempfile::NamedTempFile::new().expect("source");
        std::fs::write(source.path(), "#!/bin/sh\necho hi\n").expect("write");
        let mut records = BTreeMap::new();
        let rel = place_file(root, source.path(), "/sbin/init", &mut records).expect("placed");
        assert_eq!(rel, Path::new("usr/sbin/init"));
        let placed = root.join("usr/sbin/init");
        let meta = std::fs::symlink_metadata(&placed).expect("placed");
        assert!(meta.is_file());
        assert_eq!(meta.mode() & 0o7777, 0o755);
        assert_eq!(meta.mtime(), 0);
        assert_eq!(
            std::fs::read_to_string(&placed).expect("read"),
            "#!/bin/sh\necho hi\n"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("usr/lib/systemd/systemd")).expect("read"),
            "systemd"
        );
        assert!(
            std::fs::symlink_metadata(root.join("sbin"))
                .expect("sbin")
                .file_type()
                .is_symlink()
        );
        assert!(records.contains_key(Path::new("usr/sbin/init")));
    }

    #[test]
    fn a_directory_at_the_final_path_is_refused() {
        let tree = merged_usr();
        let root = tree.path();
        std::fs::create_dir(root.join("usr/sbin/dir")).expect("dir");
        let source = tempfile::NamedTempFile::new().expect("source");
        let result = place_file(root, source.path(), "/sbin/dir", &mut BTreeMap::new());
        let text = reason(result);
        assert!(text.contains("usr/sbin/dir is a directory"), "{text}");
        assert!(root.join("usr/sbin/dir").is_dir(), "left as it was");
    }
}
