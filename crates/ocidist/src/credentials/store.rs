//! Writing credentials into docker's `config.json` (`login` / `logout`).

use super::file::{json_reason, read_text};
use super::{Secret, is_namespaced, normalize_registry, server_key};
use crate::{Error, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

type Object = Map<String, Value>;

/// Stores `username` and `password` for `registry` in the docker config file
/// at `path`, as an `auths` entry with a base64 `auth` field, the way
/// `docker login` does without a credentials store.
///
/// Docker Hub is stored under `https://index.docker.io/v1/`, other registries
/// under their bare `host[:port]`; other keys naming the same registry are
/// removed. Everything else in the file (`credHelpers`, unknown keys) is kept,
/// though keys come out sorted. The file is replaced atomically (temporary
/// file in the same directory, fsync, rename) and has mode 0600.
///
/// A `credHelpers` entry or a `credsStore` in the same file still takes
/// precedence when looking credentials up.
pub fn store_basic(path: &Path, registry: &str, username: &str, password: &Secret) -> Result<()> {
    if username.contains(':') {
        return Err(file_error(
            path,
            "cannot store a username containing ':'".to_owned(),
        ));
    }
    let mut config = read_object(path)?;
    let auths = auths_of(path, &mut config)?;
    remove_keys(auths, registry);
    let auth = STANDARD.encode(format!("{username}:{}", password.expose()));
    let mut entry = Object::new();
    entry.insert("auth".to_owned(), Value::String(auth));
    auths.insert(server_key(registry), Value::Object(entry));
    write_object(path, &config)
}

/// Removes every `auths` entry for `registry` from the docker config file at
/// `path`, keeping everything else; says whether there was one. An absent
/// file is left absent.
pub fn remove(path: &Path, registry: &str) -> Result<bool> {
    let mut config = read_object(path)?;
    let Some(Value::Object(auths)) = config.get_mut("auths") else {
        return Ok(false);
    };
    if !remove_keys(auths, registry) {
        return Ok(false);
    }
    write_object(path, &config)?;
    Ok(true)
}

/// Removes the keys naming `registry`; says whether there were any.
fn remove_keys(auths: &mut Object, registry: &str) -> bool {
    let registry = normalize_registry(registry);
    let before = auths.len();
    auths.retain(|key, _| is_namespaced(key) || normalize_registry(key) != registry);
    auths.len() != before
}

fn auths_of<'a>(path: &Path, config: &'a mut Object) -> Result<&'a mut Object> {
    let auths = config
        .entry("auths")
        .or_insert_with(|| Value::Object(Object::new()));
    match auths {
        Value::Object(auths) => Ok(auths),
        _ => Err(file_error(path, "`auths` is not a JSON object".to_owned())),
    }
}

/// The file as a JSON object; absent or blank files are empty.
fn read_object(path: &Path) -> Result<Object> {
    let Some(text) = read_text(path)? else {
        return Ok(Object::new());
    };
    serde_json::from_str(&text).map_err(|e| file_error(path, json_reason(&e)))
}

fn write_object(path: &Path, config: &Object) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(config).expect("a JSON map always serializes");
    bytes.push(b'\n');
    write_atomically(path, &bytes)
}

/// Writes `bytes` to a temporary file next to `path` (mode 0600), fsyncs it,
/// renames it over `path` and fsyncs the directory. A symlink at `path` is
/// followed, so that its target is replaced.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let target = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let io = |what: &str, e: std::io::Error| file_error(path, format!("cannot {what}: {e}"));
    create_private_dir(&dir).map_err(|e| io("create its directory", e))?;
    let temp = temp_path(&dir, &target);
    let written = write_private(&temp, bytes).and_then(|()| fs::rename(&temp, &target));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(io("write", e));
    }
    fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("sync its directory", e))
}

fn temp_path(dir: &Path, target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    dir.join(format!(".{name}.tmp-{}-{nanos}", std::process::id()))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(bytes)?;
    file.sync_all()
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn file_error(path: &Path, reason: String) -> Error {
    Error::CredentialFile {
        path: path.to_owned(),
        reason,
    }
}
