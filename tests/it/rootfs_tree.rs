//! The tree an ext4 image holds, read with `debugfs` (no mount, no root):
//! per path its type, mode, owner, size, link count, mtime, device
//! numbers, symlink target, extended attributes and content; and its
//! hardlink groups. For comparing images made by different paths.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// What [`image_tree`] read.
#[derive(Debug)]
pub(crate) struct ImageTree {
    /// By path (`/etc/passwd`): a line of its metadata, then its
    /// extended attributes, then its content's length and bytes.
    pub(crate) entries: BTreeMap<String, String>,
    /// The paths of every inode with more than one name, each sorted.
    pub(crate) links: Vec<Vec<String>>,
}

/// Runs `debugfs -f` with `commands` on `image`; the output of each
/// command, in order.
fn debugfs_script(image: &Path, commands: &[String]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("script");
    std::fs::write(&script, commands.join("\n") + "\n").expect("script");
    let output = Command::new("debugfs")
        .arg("-f")
        .arg(&script)
        .arg(image)
        .output()
        .expect("debugfs runs");
    assert!(output.status.success(), "debugfs failed");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    // Each command is echoed as `debugfs: COMMAND`.
    let mut outputs: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with("debugfs: ") {
            outputs.push(String::new());
        } else if let Some(last) = outputs.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    assert_eq!(outputs.len(), commands.len(), "{text}");
    outputs
}

fn quote(path: &str) -> String {
    format!("\"{}\"", path.replace('"', "\"\""))
}

/// Reads the tree of `image` (`lost+found` left out).
pub(crate) fn image_tree(image: &Path) -> ImageTree {
    // (path, inode, mode) of every entry, a directory level per run.
    let mut found: Vec<(String, u64, u32)> = vec![("/".to_owned(), 2, 0o40755)];
    let mut level = vec!["/".to_owned()];
    while !level.is_empty() {
        let commands: Vec<String> = level
            .iter()
            .map(|d| format!("ls -p {}", quote(d)))
            .collect();
        let outputs = debugfs_script(image, &commands);
        let mut next = Vec::new();
        for (dir, output) in level.iter().zip(outputs) {
            for line in output.lines() {
                // `/INO/MODE/UID/GID/NAME/SIZE/`
                let fields: Vec<&str> = line.split('/').collect();
                if fields.len() < 7 {
                    continue;
                }
                let name = fields[5];
                if name == "." || name == ".." || (dir == "/" && name == "lost+found") {
                    continue;
                }
                let ino: u64 = fields[1].parse().expect("inode");
                let mode = u32::from_str_radix(fields[2], 8).expect("mode");
                let path = format!("{}/{name}", dir.trim_end_matches('/'));
                if mode & 0o170000 == 0o040000 {
                    next.push(path.clone());
                }
                found.push((path, ino, mode));
            }
        }
        level = next;
    }
    let dumps = tempfile::tempdir().expect("tempdir");
    let mut commands = Vec::new();
    for (index, (path, _, mode)) in found.iter().enumerate() {
        commands.push(format!("stat {}", quote(path)));
        commands.push(format!("ea_list {}", quote(path)));
        let dump = if mode & 0o170000 == 0o100000 || mode & 0o170000 == 0o120000 {
            dumps.path().join(index.to_string())
        } else {
            dumps.path().join("none")
        };
        commands.push(format!("dump {} {}", quote(path), dump.display()));
    }
    let outputs = debugfs_script(image, &commands);
    let mut entries = BTreeMap::new();
    let mut by_inode: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (index, (path, ino, mode)) in found.iter().enumerate() {
        let stat = &outputs[3 * index];
        let pick = |prefix: &str| {
            stat.lines()
                .find(|l| l.trim_start().starts_with(prefix))
                .map(|l| l.trim().to_owned())
                .unwrap_or_default()
        };
        let owner = pick("User:");
        let owner: Vec<&str> = owner.split_whitespace().collect();
        let is_dir = mode & 0o170000 == 0o040000;
        let mut line = format!(
            "mode {mode:o} uid {} gid {} {} {} {} {} {}",
            owner.get(1).unwrap_or(&""),
            owner.get(3).unwrap_or(&""),
            // A directory's size depends on how its blocks were filled.
            // The link count alone: the block count depends on where
            // extended attributes went.
            if is_dir {
                String::new()
            } else {
                pick("Links:")
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            },
            pick("mtime:"),
            pick("Device major/minor"),
            pick("Fast link dest:"),
            if is_dir {
                String::new()
            } else {
                format!("size {}", owner.last().unwrap_or(&""))
            },
        );
        let mut xattrs: Vec<&str> = outputs[3 * index + 1]
            .lines()
            .filter(|l| l.starts_with("  "))
            .collect();
        xattrs.sort_unstable();
        for xattr in xattrs {
            line.push_str("\n  xattr ");
            line.push_str(xattr.trim());
        }
        let dump = dumps.path().join(index.to_string());
        // A fast symlink keeps its target in the inode (compared above):
        // `dump` reads those bytes as a block map and gives noise.
        let fast_symlink = !pick("Fast link dest:").is_empty();
        if let Ok(bytes) = std::fs::read(&dump)
            && !fast_symlink
        {
            line.push_str(&format!("\n  content {} {:?}", bytes.len(), sha(&bytes)));
        }
        if !is_dir {
            by_inode.entry(*ino).or_default().push(path.clone());
        }
        entries.insert(path.clone(), line);
    }
    let mut links: Vec<Vec<String>> = by_inode.into_values().filter(|v| v.len() > 1).collect();
    for group in &mut links {
        group.sort();
    }
    links.sort();
    ImageTree { entries, links }
}

fn sha(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What differs between two trees, a line per path.
pub(crate) fn tree_differences(a: &ImageTree, b: &ImageTree) -> Vec<String> {
    let mut out = Vec::new();
    for (path, line) in &a.entries {
        match b.entries.get(path) {
            None => out.push(format!("{path}: only in the first")),
            Some(other) if other != line => out.push(format!("{path}:\n{line}\n  vs\n{other}")),
            Some(_) => {}
        }
    }
    for path in b.entries.keys().filter(|p| !a.entries.contains_key(*p)) {
        out.push(format!("{path}: only in the second"));
    }
    if a.links != b.links {
        out.push(format!("hardlinks: {:?} vs {:?}", a.links, b.links));
    }
    out
}
