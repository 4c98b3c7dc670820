//! A flattened tar stream of an image's final file system, as
//! `docker export` gives.

use crate::error::{Error, Result, io};
use crate::scratch::{WorkDir, make_readable};
use crate::stored_image::select_image;
use crate::unpack::{Recorded, UnpackOptions, UnpackReport, apply_image};
use ociref::{Platform, Reference};
use ocistore::Store;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Writes the final file system of the stored image `reference` (for
/// `platform`) to `writer` as one tar stream: whiteouts resolved, parents
/// before children, names sorted, hardlinks as link entries to the first
/// path of their inode; owners, modes and device nodes as the layers give
/// them (also when running unprivileged); extended attributes of files
/// and directories as `SCHILY.xattr.*` PAX records. The layers are unpacked (rootless) into a private directory
/// under the store first. Blocking.
pub fn export_tar(
    store: &Store,
    reference: &Reference,
    platform: Option<&Platform>,
    writer: impl Write,
) -> Result<UnpackReport> {
    // Held until the layers are read: `gc` keeps them.
    let (_lease, image) = select_image(store, reference, platform)?;
    let work = WorkDir::new(store, "export-")?;
    let tree = work.path().join("tree");
    std::fs::create_dir(&tree).map_err(io("creating", &tree))?;
    let report = apply_image(store, &image, &tree, &UnpackOptions::rootless())?;
    make_readable(&tree)?;
    let mut builder = tar::Builder::new(writer);
    let mut exporter = Exporter {
        tree: &tree,
        records: &report.records,
        pending_xattrs: &report.pending_xattrs,
        links: HashMap::new(),
        builder: &mut builder,
    };
    exporter.dir(Path::new(""))?;
    builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|source| write_error(&tree, source))?;
    Ok(report)
}

struct Exporter<'a, W: Write> {
    tree: &'a Path,
    records: &'a std::collections::BTreeMap<PathBuf, Recorded>,
    /// Extended attributes the host refused, still owed to the tar.
    pending_xattrs: &'a std::collections::BTreeMap<PathBuf, Vec<(String, Vec<u8>)>>,
    /// First path of every inode seen with more than one link.
    links: HashMap<u64, PathBuf>,
    builder: &'a mut tar::Builder<W>,
}

impl<W: Write> Exporter<'_, W> {
    /// Writes the children of directory `rel`, each directory before what
    /// it holds.
    fn dir(&mut self, rel: &Path) -> Result<()> {
        let abs = self.tree.join(rel);
        let mut names: Vec<_> = std::fs::read_dir(&abs)
            .map_err(io("reading", &abs))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .map_err(io("reading", &abs))?;
        // Devices a rootless unpack could not create come from the records.
        for (path, recorded) in self.records.range(rel.to_path_buf()..) {
            if !path.starts_with(rel) {
                break;
            }
            if recorded.device.is_some()
                && path.parent() == Some(rel)
                && let Some(name) = path.file_name()
                && !names.iter().any(|n| n == name)
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        for name in names {
            let child = rel.join(&name);
            let child_abs = abs.join(&name);
            let meta = match std::fs::symlink_metadata(&child_abs) {
                Ok(meta) => meta,
                Err(_) => {
                    if let Some(recorded) = self.records.get(&child).copied() {
                        self.device(&child, &recorded)?;
                    }
                    continue;
                }
            };
            let mut header = self.header(&child, &meta);
            let file_type = meta.file_type();
            if file_type.is_dir() || file_type.is_file() {
                self.xattrs(&child, &child_abs)?;
            }
            let result = if file_type.is_dir() {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                self.builder.append_data(
                    &mut header,
                    format!("{}/", child.display()),
                    std::io::empty(),
                )
            } else if file_type.is_symlink() {
                let target = std::fs::read_link(&child_abs).map_err(io("reading", &child_abs))?;
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                self.builder.append_link(&mut header, &child, target)
            } else if meta.nlink() > 1 && self.links.contains_key(&meta.ino()) {
                let first = self.links[&meta.ino()].clone();
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                self.builder.append_link(&mut header, &child, first)
            } else if file_type.is_file() {
                if meta.nlink() > 1 {
                    self.links.insert(meta.ino(), child.clone());
                }
                let file = std::fs::File::open(&child_abs).map_err(io("reading", &child_abs))?;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(meta.len());
                self.builder.append_data(&mut header, &child, file)
            } else if file_type.is_fifo() {
                header.set_entry_type(tar::EntryType::Fifo);
                header.set_size(0);
                self.builder
                    .append_data(&mut header, &child, std::io::empty())
            } else if file_type.is_char_device() || file_type.is_block_device() {
                match self.records.get(&child) {
                    Some(recorded) => {
                        let recorded = *recorded;
                        self.device(&child, &recorded)?;
                        Ok(())
                    }
                    None => Ok(()),
                }
            } else {
                Ok(())
            };
            result.map_err(|source| write_error(&child_abs, source))?;
            if file_type.is_dir() {
                self.dir(&child)?;
            }
        }
        Ok(())
    }

    /// A header with the owner and mode the layers gave `rel`, the mtime
    /// of the tree.
    /// Writes the extended attributes of `rel` (those on the host file and
    /// those the host refused) as `SCHILY.xattr.*` PAX records for the
    /// entry that follows, as GNU tar `--xattrs` and Docker write them.
    fn xattrs(&mut self, rel: &Path, abs: &Path) -> Result<()> {
        let mut found: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
        // A file system without extended attributes has none to give.
        if let Ok(names) = xattr::list(abs) {
            for name in names {
                let name = name.to_string_lossy().into_owned();
                if let Ok(Some(value)) = xattr::get(abs, &name) {
                    found.insert(name, value);
                }
            }
        }
        for (name, value) in self.pending_xattrs.get(rel).into_iter().flatten() {
            found.insert(name.clone(), value.clone());
        }
        if found.is_empty() {
            return Ok(());
        }
        let records: Vec<(String, Vec<u8>)> = found
            .into_iter()
            .map(|(name, value)| (format!("SCHILY.xattr.{name}"), value))
            .collect();
        self.builder
            .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(|source| write_error(abs, source))
    }

    fn header(&self, rel: &Path, meta: &std::fs::Metadata) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        let (uid, gid, mode) = match self.records.get(rel) {
            Some(r) => (r.uid, r.gid, r.mode),
            None => (0, 0, meta.mode() & 0o7777),
        };
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_mode(mode);
        header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        header
    }

    fn device(&mut self, rel: &Path, recorded: &Recorded) -> Result<()> {
        let Some((tag, major, minor)) = recorded.device else {
            return Ok(());
        };
        let mut header = tar::Header::new_gnu();
        header.set_uid(recorded.uid);
        header.set_gid(recorded.gid);
        header.set_mode(recorded.mode);
        header.set_mtime(u64::try_from(recorded.mtime).unwrap_or(0));
        header.set_entry_type(if tag == b'c' {
            tar::EntryType::Char
        } else {
            tar::EntryType::Block
        });
        header.set_size(0);
        let _ = header.set_device_major(major);
        let _ = header.set_device_minor(minor);
        self.builder
            .append_data(&mut header, rel, std::io::empty())
            .map_err(|source| write_error(rel, source))
    }
}

fn write_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        what: "writing the tar entry of",
        path: path.to_path_buf(),
        source,
    }
}
