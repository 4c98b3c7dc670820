//! The OCI image layout on disk: `oci-layout`, `index.json`, `blobs/`, and
//! the private `.cachectl/` directory; atomic writes and file locks.

use crate::dir_handle::Access;
use crate::error::{Error, Result, io};
use crate::safe::DIR_MODE;
use ociref::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The annotation naming a reference in `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// The only `imageLayoutVersion` this crate reads and writes.
pub const LAYOUT_VERSION: &str = "1.0.0";
/// Entries a directory may hold while another process initializes it.
const LAYOUT_ENTRIES: [&str; 4] = ["oci-layout", "index.json", "blobs", ".cachectl"];

/// A store: an OCI image layout at a root directory, shared safely by any
/// number of handles and processes. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
    /// Set when a last-used time or a remembered size was not written
    /// because the store is read-only (shared by clones of the handle).
    skipped_records: Arc<AtomicBool>,
    /// The blobs a pull of this handle (or a clone) is fetching for a
    /// reader that follows it (see `pull_follow`).
    pub(crate) following: crate::pull_follow::Following,
}

/// The store root used when none is given: `$CACHECTL_ROOT`, else
/// `$XDG_CACHE_HOME/cachectl`, else `$HOME/.cache/cachectl`; `None` when
/// none of these is set. `env` looks a variable up (pass
/// `|name| std::env::var(name).ok()`); empty values count as unset.
///
/// ```
/// let env = |name: &str| (name == "HOME").then(|| "/home/me".to_owned());
/// assert_eq!(ocistore::default_root(env), Some("/home/me/.cache/cachectl".into()));
/// ```
pub fn default_root(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let get = |name: &str| env(name).filter(|value| !value.is_empty());
    if let Some(root) = get("CACHECTL_ROOT") {
        return Some(PathBuf::from(root));
    }
    if let Some(cache) = get("XDG_CACHE_HOME") {
        return Some(Path::new(&cache).join("cachectl"));
    }
    get("HOME").map(|home| Path::new(&home).join(".cache").join("cachectl"))
}

impl Store {
    /// Opens the layout at `root`, creating it (and its parents) when the
    /// directory is missing or empty, and removes the temp files that
    /// processes killed mid-write left in the root. Refuses a non-empty
    /// directory that is not an OCI image layout, and an unknown
    /// `imageLayoutVersion`. A layout this process cannot write opens too (a
    /// read-only mount, or one owned by another user): what only reads
    /// works, what must write fails with [`Error::ReadOnly`]. Blocking (a
    /// few small file operations).
    pub fn open(root: impl AsRef<Path>) -> Result<Store> {
        let root = root.as_ref().to_path_buf();
        let store = Store {
            root,
            skipped_records: Arc::new(AtomicBool::new(false)),
            following: Default::default(),
        };
        if !store.layout_file().exists() {
            store.refuse_foreign_dir()?;
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&store.root)
            .map_err(io("creating", &store.root))?;
        let blobs = store.root.join("blobs").join("sha256");
        for dir in [
            store.locks_dir(),
            store.ingest_dir(),
            store.records_dir(),
            blobs,
        ] {
            match store.open_dir(&dir) {
                // A read-only layout without it: nothing can be in it.
                Err(Error::ReadOnly { .. }) if store.index_path().exists() => {}
                other => {
                    other?;
                }
            }
        }
        if store.layout_file().exists() && store.index_path().exists() {
            store.check_layout_version()?;
            store.sweep_dead_temps(&[store.root()]);
            return Ok(store);
        }
        // First use (or a layout without index.json): initialize under the
        // index lock, so concurrent openers never overwrite each other.
        let _lock = store.lock_index()?;
        if !store.index_path().exists() {
            let empty = IndexFile::default();
            store.write_index(&empty)?;
        }
        if store.layout_file().exists() {
            store.check_layout_version()?;
        } else {
            let bytes = format!(r#"{{"imageLayoutVersion":"{LAYOUT_VERSION}"}}"#);
            store.write_atomic(&store.layout_file(), bytes.as_bytes())?;
        }
        Ok(store)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `digest` lives (whether or not it is present).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.encoded())
    }

    pub(crate) fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    fn layout_file(&self) -> PathBuf {
        self.root.join("oci-layout")
    }

    pub(crate) fn private_dir(&self) -> PathBuf {
        self.root.join(".cachectl")
    }

    pub(crate) fn locks_dir(&self) -> PathBuf {
        self.private_dir().join("locks")
    }

    pub(crate) fn ingest_dir(&self) -> PathBuf {
        self.private_dir().join("ingest")
    }

    pub(crate) fn records_dir(&self) -> PathBuf {
        self.private_dir().join("records")
    }

    pub(crate) fn quarantine_dir(&self) -> PathBuf {
        self.private_dir().join("quarantine")
    }

    fn refuse_foreign_dir(&self) -> Result<()> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotADirectory => {
                return Err(Error::NotALayout {
                    path: self.root.clone(),
                    reason: "not a directory".into(),
                });
            }
            Err(source) => {
                return Err(Error::Io {
                    what: "reading",
                    path: self.root.clone(),
                    source,
                });
            }
        };
        for entry in entries {
            let entry = entry.map_err(io("reading", &self.root))?;
            let name = entry.file_name();
            let initializing = name.to_string_lossy().starts_with(".tmp-");
            if !initializing && !LAYOUT_ENTRIES.iter().any(|known| name == *known) {
                return Err(Error::NotALayout {
                    path: self.root.clone(),
                    reason: format!(
                        "the directory is not empty (it holds {:?}) and has no oci-layout file",
                        name
                    ),
                });
            }
        }
        Ok(())
    }

    fn check_layout_version(&self) -> Result<()> {
        #[derive(Deserialize)]
        struct LayoutFile {
            #[serde(rename = "imageLayoutVersion")]
            version: String,
        }
        let path = self.layout_file();
        let bytes = self.read_file(&path)?;
        let layout: LayoutFile =
            serde_json::from_slice(&bytes).map_err(|err| Error::NotALayout {
                path: path.clone(),
                reason: format!("oci-layout is not valid: {err}"),
            })?;
        if layout.version != LAYOUT_VERSION {
            return Err(Error::NotALayout {
                path,
                reason: format!(
                    "unknown imageLayoutVersion {:?} (this version reads {LAYOUT_VERSION:?})",
                    layout.version
                ),
            });
        }
        Ok(())
    }

    /// Takes the exclusive lock on `.cachectl/locks/<name>` (blocking).
    pub(crate) fn lock(&self, name: &str) -> Result<File> {
        let file = self.lock_file(name)?;
        let path = self.locks_dir().join(name);
        file.lock().map_err(io("locking", &path))?;
        Ok(file)
    }

    /// Takes a shared lock on `.cachectl/locks/<name>` (blocking). An
    /// existing lock file is opened read-only (`flock` needs no more), so a
    /// read-only store can be locked. `None` when the file is missing and
    /// the store is read-only: nobody can be writing to it, so there is
    /// nothing to wait for.
    pub(crate) fn lock_shared(&self, name: &str) -> Result<Option<File>> {
        let file = match self.open_dir(&self.locks_dir()) {
            Ok(dir) => match dir.open_read_single(name) {
                Err(err) if crate::safe::is_not_found(&err) => self.lock_file(name),
                opened => opened,
            },
            Err(err) => Err(err),
        };
        let file = match file {
            Ok(file) => file,
            Err(Error::ReadOnly { .. }) => return Ok(None),
            Err(err) => return Err(err),
        };
        let path = self.locks_dir().join(name);
        file.lock_shared().map_err(io("locking", &path))?;
        Ok(Some(file))
    }

    /// Whether an operation of this handle (or a clone) left a last-used
    /// time or a remembered layer size unwritten because the store is
    /// read-only ([`Error::ReadOnly`]); the operation itself succeeded.
    pub fn skipped_records(&self) -> bool {
        self.skipped_records.load(Ordering::Relaxed)
    }

    /// `written`, except that [`Error::ReadOnly`] counts as done (and is
    /// remembered for [`Store::skipped_records`]): for the store's own
    /// bookkeeping (last-used times, sizes), which a read-only store does
    /// without.
    pub(crate) fn unless_read_only(&self, written: Result<()>) -> Result<()> {
        match written {
            Err(Error::ReadOnly { .. }) => {
                self.skipped_records.store(true, Ordering::Relaxed);
                Ok(())
            }
            other => other,
        }
    }

    /// Fails with [`Error::ReadOnly`] naming `dir` (a directory under the
    /// root, or its nearest existing parent when it is missing) when this
    /// process cannot create files there: a read-only mount, or a directory
    /// it may not write. For callers about to do costly work whose result
    /// must be kept in the store (an ext4 build). Blocking.
    pub fn check_writable(&self, dir: &Path) -> Result<()> {
        use rustix::fs::{Access, AtFlags, CWD, accessat};
        let mut dir = dir;
        while !dir.exists()
            && dir != self.root
            && let Some(parent) = dir.parent()
        {
            dir = parent;
        }
        accessat(CWD, dir, Access::WRITE_OK, AtFlags::EACCESS)
            .map_err(|errno| crate::error::write_error("checking", dir, dir, errno.into()))
    }

    /// Opens (creating) the lock file `.cachectl/locks/<name>`, unlocked;
    /// never through a link, never a FIFO or a hard link.
    pub(crate) fn lock_file(&self, name: &str) -> Result<File> {
        self.open_dir(&self.locks_dir())?
            .open_file(name, Access::CreateOrOpen)
    }

    fn lock_index(&self) -> Result<File> {
        self.lock("index.lock")
    }

    /// Reads `index.json`. Never needs a lock: writers replace it by rename.
    pub(crate) fn read_index(&self) -> Result<IndexFile> {
        let path = self.index_path();
        let bytes = self.read_file(&path)?;
        serde_json::from_slice(&bytes).map_err(|source| Error::InvalidJson { path, source })
    }

    fn write_index(&self, index: &IndexFile) -> Result<()> {
        let bytes = serde_json::to_vec(index).expect("because an index always serializes");
        self.write_atomic(&self.index_path(), &bytes)
    }

    /// Read-modify-write of `index.json` under the exclusive index lock,
    /// held only for the duration of `change`. Blocking.
    pub(crate) fn update_index<T>(&self, change: impl FnOnce(&mut IndexFile) -> T) -> Result<T> {
        let _lock = self.lock_index()?;
        let mut index = self.read_index()?;
        let out = change(&mut index);
        self.write_index(&index)?;
        Ok(out)
    }
}

/// `index.json`: an OCI image index. Fields this crate does not know are
/// kept as they were.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct IndexFile {
    #[serde(rename = "schemaVersion")]
    pub(crate) schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub(crate) media_type: Option<String>,
    #[serde(default)]
    pub(crate) manifests: Vec<IndexEntry>,
    #[serde(flatten)]
    pub(crate) extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for IndexFile {
    fn default() -> Self {
        IndexFile {
            schema_version: 2,
            media_type: Some(ocidist::OCI_INDEX.to_owned()),
            manifests: Vec::new(),
            extra: serde_json::Map::new(),
        }
    }
}

impl IndexFile {
    /// The entry named `name`, if any.
    pub(crate) fn find(&self, name: &str) -> Option<&IndexEntry> {
        self.manifests.iter().find(|e| e.ref_name() == Some(name))
    }

    /// Replaces the entry named `name` (or appends one).
    pub(crate) fn put(&mut self, name: &str, mut entry: IndexEntry) {
        entry
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(REF_NAME_ANNOTATION.to_owned(), name.to_owned());
        match self
            .manifests
            .iter_mut()
            .find(|e| e.ref_name() == Some(name))
        {
            Some(slot) => *slot = entry,
            None => self.manifests.push(entry),
        }
    }

    /// Removes the entry named `name`; whether there was one.
    pub(crate) fn remove(&mut self, name: &str) -> bool {
        let before = self.manifests.len();
        self.manifests.retain(|e| e.ref_name() != Some(name));
        before != self.manifests.len()
    }
}

/// A descriptor in `index.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct IndexEntry {
    #[serde(rename = "mediaType")]
    pub(crate) media_type: String,
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub(crate) extra: serde_json::Map<String, serde_json::Value>,
}

impl IndexEntry {
    pub(crate) fn new(descriptor: &ocidist::Descriptor) -> IndexEntry {
        IndexEntry {
            media_type: descriptor.media_type.clone(),
            digest: descriptor.digest.clone(),
            size: descriptor.size,
            annotations: None,
            extra: serde_json::Map::new(),
        }
    }

    pub(crate) fn ref_name(&self) -> Option<&str> {
        self.annotations
            .as_ref()?
            .get(REF_NAME_ANNOTATION)
            .map(String::as_str)
    }

    pub(crate) fn descriptor(&self) -> ocidist::Descriptor {
        ocidist::Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
        }
    }
}

/// The directory `path` is in: `.` for a bare file name (whose parent,
/// to `Path::parent`, is the empty path) and for `/`.
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn default_root_prefers_cachectl_root_then_xdg_then_home() {
        let all = [
            ("CACHECTL_ROOT", "/r"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(default_root(env(&all)), Some(PathBuf::from("/r")));
        assert_eq!(
            default_root(env(&all[1..])),
            Some(PathBuf::from("/x/cachectl"))
        );
        assert_eq!(
            default_root(env(&[("CACHECTL_ROOT", ""), ("HOME", "/h")])),
            Some(PathBuf::from("/h/.cache/cachectl"))
        );
        assert_eq!(default_root(env(&[])), None);
    }

    #[test]
    fn open_creates_a_layout_and_reopens_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("a").join("b");
        let store = Store::open(&root).expect("created");
        assert_eq!(
            std::fs::read_to_string(root.join("oci-layout")).expect("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#
        );
        let index = store.read_index().expect("index");
        assert_eq!(index.schema_version, 2);
        assert!(index.manifests.is_empty());
        for dir in [
            "blobs/sha256",
            ".cachectl/locks",
            ".cachectl/ingest",
            ".cachectl/records",
        ] {
            assert!(root.join(dir).is_dir(), "{dir}");
        }
        Store::open(&root).expect("reopened");
    }

    #[test]
    fn concurrent_opens_of_one_empty_root_all_succeed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("shared");
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let root = root.clone();
                std::thread::spawn(move || Store::open(&root).map(|_| ()))
            })
            .collect();
        for thread in threads {
            thread.join().expect("no panic").expect("opens");
        }
        Store::open(&root)
            .expect("opens")
            .read_index()
            .expect("valid index");
    }

    #[test]
    fn unknown_entries_and_fields_of_index_json_survive_an_update() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("created");
        let digest = Digest::sha256_of(b"x");
        let foreign = serde_json::json!({
            "schemaVersion": 2,
            "annotations": {"made.by": "another tool"},
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest.to_string(),
                "size": 1,
                "platform": {"os": "linux", "architecture": "amd64"}
            }]
        });
        store
            .write_atomic(
                &store.index_path(),
                &serde_json::to_vec(&foreign).expect("serializes"),
            )
            .expect("written");
        store
            .update_index(|index| {
                let entry = index.manifests[0].clone();
                index.put("example.com/a:1", entry);
            })
            .expect("updated");
        let text = std::fs::read_to_string(store.index_path()).expect("read");
        let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(value["annotations"]["made.by"], "another tool");
        assert_eq!(value["manifests"][0]["platform"]["os"], "linux");
        assert_eq!(
            value["manifests"][1]["annotations"][REF_NAME_ANNOTATION],
            "example.com/a:1"
        );
    }

    #[test]
    fn the_directory_of_a_bare_file_name_is_the_working_directory() {
        assert_eq!(parent_dir(Path::new("archive.tar")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/")), Path::new("."));
        assert_eq!(parent_dir(Path::new("out/a.tar")), Path::new("out"));
        assert_eq!(parent_dir(Path::new("/a.tar")), Path::new("/"));
    }
}
