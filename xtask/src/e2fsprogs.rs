//! e2fsprogs new enough to read a tar (`mke2fs -d FILE.tar`, `-d -`).
//!
//! e2fsprogs 1.47.1 and later read a tarball through libarchive, loaded
//! with `dlopen` (`libarchive.so.13`, Debian package `libarchive13`). The
//! tests build ext4 both from a tree and from a tar, so `cargo xtask test`
//! wants both. Debian 12 ships 1.47.0; bookworm-backports has 1.47.2: on
//! Debian 12 the backports source is added (a deb822 file under
//! `/etc/apt/sources.list.d/`, only when no source names
//! `bookworm-backports` yet) and both packages are installed from it.

use crate::cmd::{self, Error};
use crate::tools;
use std::path::Path;
use std::process::Command;

/// The first release whose `mke2fs -d` reads a tar.
pub(crate) const TAR_INPUT_SINCE: (u32, u32, u32) = (1, 47, 1);

/// The libarchive soname e2fsprogs loads.
const LIBARCHIVE: &str = "libarchive.so.13";

/// The source file written on Debian 12 when no source has backports.
const BACKPORTS_FILE: &str = "/etc/apt/sources.list.d/bookworm-backports.sources";

const BACKPORTS_SOURCE: &str = "Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

/// `(major, minor, patch)` from `mke2fs -V` output (`mke2fs 1.47.0
/// (5-Feb-2023)`).
pub(crate) fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let word = text
        .lines()
        .find_map(|line| line.strip_prefix("mke2fs "))?
        .split_whitespace()
        .next()?;
    // Pre-releases read `1.47.1-rc1`; a missing patch is 0.
    let mut parts = word
        .split(|c: char| !c.is_ascii_digit())
        .map(|part| part.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next()??;
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// The installed `mke2fs`'s version, if it runs.
fn installed_version() -> Option<(u32, u32, u32)> {
    let mke2fs = tools::find("mke2fs")?;
    let out = Command::new(mke2fs).arg("-V").output().ok()?;
    // It prints its version on stderr.
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    parse_version(&text)
}

/// Whether `libarchive.so.13` is in one of the library directories.
fn libarchive_present() -> bool {
    let mut dirs: Vec<std::path::PathBuf> = ["/usr/lib", "/lib", "/usr/local/lib", "/usr/lib64"]
        .iter()
        .map(Into::into)
        .collect();
    // Debian's multiarch directories (`/usr/lib/x86_64-linux-gnu`, ...).
    for base in ["/usr/lib", "/lib"] {
        if let Ok(entries) = std::fs::read_dir(base) {
            dirs.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with("-linux-gnu"))
                    .map(|e| e.path()),
            );
        }
    }
    dirs.iter().any(|dir| dir.join(LIBARCHIVE).exists())
}

/// Whether this is Debian 12 (bookworm), from `/etc/os-release`.
fn is_bookworm(os_release: &str) -> bool {
    let field = |name: &str| {
        os_release.lines().find_map(|line| {
            let value = line.strip_prefix(name)?.strip_prefix('=')?;
            Some(value.trim_matches('"').to_owned())
        })
    };
    field("ID").as_deref() == Some("debian") && field("VERSION_ID").as_deref() == Some("12")
}

/// Whether some apt source already names `bookworm-backports`.
fn backports_configured() -> bool {
    let mut files = vec![Path::new("/etc/apt/sources.list").to_path_buf()];
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        files.extend(entries.flatten().map(|e| e.path()).filter(|p| {
            p.extension()
                .is_some_and(|ext| ext == "list" || ext == "sources")
        }));
    }
    files.iter().any(|file| {
        std::fs::read_to_string(file).is_ok_and(|text| {
            text.lines()
                .filter(|line| !line.trim_start().starts_with('#'))
                .any(|line| line.contains("bookworm-backports"))
        })
    })
}

/// Makes sure `mke2fs -d` reads tars: e2fsprogs >= 1.47.1 and libarchive.
pub(crate) fn ensure_tar_input(root: bool) -> Result<(), Error> {
    let version = installed_version();
    let new_enough = version.is_some_and(|v| v >= TAR_INPUT_SINCE);
    if new_enough && libarchive_present() {
        return Ok(());
    }
    let shown = version.map_or("none".to_owned(), |(a, b, c)| format!("{a}.{b}.{c}"));
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let (prepare, install) = if new_enough {
        // Only libarchive is missing: from the release's own archive.
        (None, "apt-get install -y libarchive13".to_owned())
    } else if is_bookworm(&os_release) {
        let prepare = (!backports_configured()).then_some(BACKPORTS_FILE);
        let install = "apt-get install -y -t bookworm-backports e2fsprogs libarchive13";
        (prepare, install.to_owned())
    } else {
        return Err(format!(
            "mke2fs {shown} cannot read a tar (it needs e2fsprogs >= 1.47.1 and \
             {LIBARCHIVE}); install them from your distribution"
        ));
    };
    if !root {
        let add = prepare.map_or(String::new(), |file| {
            format!(
                "printf '{}' > {file} && ",
                BACKPORTS_SOURCE.replace('\n', "\\n")
            )
        });
        return Err(format!(
            "mke2fs {shown} cannot read a tar (needs e2fsprogs >= 1.47.1 and libarchive13). \
             Install them with:\n    sudo sh -c \"{add}apt-get update && {install}\""
        ));
    }
    eprintln!("xtask: mke2fs {shown} cannot read a tar: installing e2fsprogs >= 1.47.1");
    if let Some(file) = prepare {
        eprintln!("xtask: adding {file}");
        std::fs::write(file, BACKPORTS_SOURCE).map_err(|e| format!("writing {file}: {e}"))?;
    }
    cmd::run(Command::new("apt-get").args(["update", "-q"]))?;
    cmd::run(
        Command::new("sh")
            .arg("-c")
            .arg(format!("{install} -q --no-install-recommends"))
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    match installed_version() {
        Some(v) if v >= TAR_INPUT_SINCE && libarchive_present() => Ok(()),
        other => Err(format!(
            "after installing, mke2fs is {other:?} and {LIBARCHIVE} present: {}",
            libarchive_present()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_mke2fs_output() {
        assert_eq!(
            parse_version("mke2fs 1.47.0 (5-Feb-2023)\n\tUsing EXT2FS Library version 1.47.0\n"),
            Some((1, 47, 0))
        );
        assert_eq!(
            parse_version("mke2fs 1.47.2 (1-Jan-2025)"),
            Some((1, 47, 2))
        );
        assert_eq!(parse_version("mke2fs 1.48-WIP (x)"), Some((1, 48, 0)));
        assert_eq!(parse_version("something else"), None);
        assert!(parse_version("mke2fs 1.47.0 (x)") < Some(TAR_INPUT_SINCE));
        assert!(parse_version("mke2fs 1.47.2 (x)") >= Some(TAR_INPUT_SINCE));
    }

    #[test]
    fn bookworm_is_told_from_os_release() {
        assert!(is_bookworm("ID=debian\nVERSION_ID=\"12\"\n"));
        assert!(!is_bookworm("ID=debian\nVERSION_ID=\"13\"\n"));
        assert!(!is_bookworm("ID=ubuntu\nVERSION_ID=\"12\"\n"));
    }
}
