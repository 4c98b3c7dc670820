//! A store directory swapped for a link while the store works: a swapper
//! thread trades each directory the store writes in for a
//! symbolic link to a canary directory outside the store and back, again
//! and again, with `renameat2(RENAME_EXCHANGE)` (the link sits at the
//! directory's name for tens of microseconds each time), while workers
//! loop over the operations that write there. The canary holds files with
//! the names the store writes (`index.json`, lock, record, size, cached
//! image and layer tar names). Afterwards nothing in the canary changed
//! (no new entry, same bytes, same mtimes), every error a worker saw names
//! a path inside the store (a planted link, a file gone for a moment),
//! never one in the canary, and the store still pulls, builds and
//! verifies. A store that checks a directory and then uses it by path
//! writes, renames or removes files in the canary instead.
//! `rootfs_swap_race.rs` runs the same race on rootfs's directories.

use crate::plants::{Outside, Snapshot};
use crate::store::{client, noise, push_image};
use cachectl_tests::{error_chain, registries, unique};
use ociref::{Digest, Reference};
use ocistore::{ExportFormat, ImportOptions, PullOptions, Store};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long the workers run while the directories are swapped.
const RACE_FOR: Duration = Duration::from_secs(6);

/// How long a link sits at a directory's name per swap.
const SWAPPED_FOR: Duration = Duration::from_micros(20);

/// Workers running store operations at once.
const WORKERS: u64 = 3;

/// Seed of the workers' choice of operations (each adds its number).
pub(crate) const SEED: u64 = 0x5eed_0f5a_4a9e;

/// Fewer swaps than this and the test proves nothing.
const MIN_SWAPS: u64 = 2_000;

/// Rounds of [`RACE_FOR`] at most, while the swaps are fewer than
/// [`MIN_SWAPS`].
const MAX_ROUNDS: u32 = 4;

/// The directories of the store that ocistore writes in, children
/// before their parents.
const STORE_DIRS: [&str; 9] = [
    ".cachectl/records",
    ".cachectl/locks",
    ".cachectl/leases",
    ".cachectl/ingest",
    ".cachectl/sizes",
    ".cachectl/quarantine",
    "blobs/sha256",
    "blobs",
    ".cachectl",
];

/// Trades `a` and `b` atomically (both must exist).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(std::io::Error::from)
}

/// The thread that swaps directories for links until stopped.
struct Swapper {
    stop: Arc<AtomicBool>,
    /// Swaps done so far.
    swaps: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<(u64, Vec<String>)>>,
    pairs: Vec<(PathBuf, PathBuf)>,
}

/// A test that fails before [`Swapper::stop`] (a worker panicked) stops
/// the thread all the same.
impl Drop for Swapper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Swapper {
    /// Puts a link to `target` beside each of `dirs` (as `D.swap`) and
    /// starts trading each directory with its link and back, in turn.
    fn start(root: &Path, dirs: &[&str], target: &Path) -> Swapper {
        let pairs: Vec<(PathBuf, PathBuf)> = dirs
            .iter()
            .map(|dir| (root.join(dir), root.join(format!("{dir}.swap"))))
            .collect();
        for (dir, link) in &pairs {
            std::fs::create_dir_all(dir).expect("store directory");
            std::os::unix::fs::symlink(target, link).expect("link beside it");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, count, pairs) = (stop.clone(), swaps.clone(), pairs.clone());
            std::thread::spawn(move || swap_until(&stop, &count, &pairs))
        };
        Swapper {
            stop,
            swaps,
            thread: Some(thread),
            pairs,
        }
    }

    /// Stops the swapping, puts every directory back at its name, removes
    /// the links; returns the number of swaps and what went wrong.
    fn stop(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("stopped once");
        let (swaps, mut troubles) = thread.join().expect("the swapper does not panic");
        for (dir, link) in &self.pairs {
            let is_link = |path: &Path| {
                std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink())
            };
            if is_link(dir) && !is_link(link) {
                troubles.push(format!("{} was left swapped", dir.display()));
                exchange(link, dir).expect("swapped back");
            }
            if is_link(link) {
                std::fs::remove_file(link).expect("link removed");
            }
            let meta = std::fs::symlink_metadata(dir).expect("the directory is back");
            assert!(meta.is_dir(), "{} is not a directory", dir.display());
        }
        (swaps, troubles)
    }
}

fn swap_until(
    stop: &AtomicBool,
    count: &AtomicU64,
    pairs: &[(PathBuf, PathBuf)],
) -> (u64, Vec<String>) {
    let (mut swaps, mut troubles) = (0, Vec::new());
    while !stop.load(Ordering::Relaxed) {
        for (dir, link) in pairs {
            if let Err(err) = exchange(link, dir) {
                troubles.push(format!("swapping {}: {err}", dir.display()));
                continue;
            }
            let until = Instant::now() + SWAPPED_FOR;
            while Instant::now() < until {
                std::thread::yield_now();
            }
            if let Err(err) = exchange(link, dir) {
                troubles.push(format!("swapping {} back: {err}", dir.display()));
                return (swaps, troubles);
            }
            swaps += 1;
            count.store(swaps, Ordering::Relaxed);
            std::thread::yield_now();
        }
    }
    (swaps, troubles)
}

/// What the workers saw: successes per operation, acceptable errors per
/// kind, and everything that must not happen.
#[derive(Default)]
pub(crate) struct Tally {
    ok: BTreeMap<&'static str, u64>,
    errors: BTreeMap<String, u64>,
    bad: Vec<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        for (op, n) in other.ok {
            *self.ok.entry(op).or_default() += n;
        }
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        self.bad.extend(other.bad);
    }

    /// Counts the outcome of `op`: an error must be one `accept` names.
    pub(crate) fn count<E: std::error::Error>(
        &mut self,
        op: &'static str,
        result: Result<(), E>,
        accept: impl Fn(&E) -> Option<String>,
    ) {
        match result {
            Ok(()) => *self.ok.entry(op).or_default() += 1,
            Err(err) => match accept(&err) {
                Some(kind) => *self.errors.entry(format!("{op}: {kind}")).or_default() += 1,
                None => self.bad.push(format!("{op}: {}", error_chain(&err))),
            },
        }
    }

    /// Counts an outcome of `op` that is not an error but shows the swap.
    fn note(&mut self, op: &'static str, kind: &str) {
        *self.errors.entry(format!("{op}: {kind}")).or_default() += 1;
    }

    fn report(&self, swaps: u64) -> String {
        let mut text = format!("{swaps} swaps\nsucceeded:\n");
        for (op, n) in &self.ok {
            text.push_str(&format!("  {n:6} {op}\n"));
        }
        text.push_str("failed, as a swapped directory makes them:\n");
        for (kind, n) in &self.errors {
            text.push_str(&format!("  {n:6} {kind}\n"));
        }
        if !self.bad.is_empty() {
            text.push_str("what must not happen:\n");
            for bad in &self.bad {
                text.push_str(&format!("  {bad}\n"));
            }
        }
        text
    }
}

/// Where the store and the canary are, to judge an error's paths.
#[derive(Clone)]
pub(crate) struct Places {
    pub(crate) root: PathBuf,
    pub(crate) canary: PathBuf,
    /// Where the workers export to (outside both).
    pub(crate) exports: PathBuf,
}

impl Places {
    /// `path` relative to the store root, its last component (a temp or
    /// digest name) left out unless it is one of `dirs`, when inside.
    fn inside(&self, path: &Path, dirs: &[&str]) -> Option<String> {
        let relative = path.strip_prefix(&self.root).ok()?;
        let text = relative.to_string_lossy();
        if dirs.contains(&text.as_ref()) {
            return Some(text.into_owned());
        }
        let parent = relative.parent().unwrap_or(Path::new(""));
        Some(format!("{}/…", parent.display()))
    }

    /// The kind of `err` when it is what a swapped store directory makes
    /// ocistore return: a planted link, an I/O error or a missing blob at a
    /// path inside the store, an image another worker removed. Never
    /// anything that names the canary.
    fn store_error(&self, err: &ocistore::Error, dirs: &[&str]) -> Option<String> {
        if error_chain(err).contains(self.canary.to_string_lossy().as_ref()) {
            return None;
        }
        match err {
            ocistore::Error::Planted { path, found } => {
                Some(format!("planted ({found}) at {}", self.inside(path, dirs)?))
            }
            ocistore::Error::Io { what, path, source } => Some(format!(
                "{what} {}: {:?}",
                self.inside(path, dirs)?,
                source.kind()
            )),
            ocistore::Error::BlobMissing { path, .. } => {
                Some(format!("blob missing at {}", self.inside(path, dirs)?))
            }
            // Whether the store holds a blob is one `lstat` by path: a
            // blob whose directory is a link for the moment is absent.
            ocistore::Error::ArchiveMissingBlob { archive, .. }
                if archive.starts_with(&self.exports) =>
            {
                Some(
                    "a blob neither in the archive nor in the store (its directory a link)"
                        .to_owned(),
                )
            }
            ocistore::Error::ImageNotCached { .. } => {
                Some("not cached (another worker removed it)".to_owned())
            }
            _ => None,
        }
    }

    /// [`Places::store_error`] for rootfs, plus its own planted files and
    /// I/O errors inside the store.
    pub(crate) fn rootfs_error(&self, err: &rootfs::Error, dirs: &[&str]) -> Option<String> {
        if error_chain(err).contains(self.canary.to_string_lossy().as_ref()) {
            return None;
        }
        match err {
            rootfs::Error::Store(err) => self.store_error(err, dirs),
            rootfs::Error::Planted { path, found } => {
                Some(format!("planted ({found}) at {}", self.inside(path, dirs)?))
            }
            rootfs::Error::Io { what, path, source } => Some(format!(
                "{what} {}: {:?}",
                self.inside(path, dirs)?,
                source.kind()
            )),
            _ => None,
        }
    }
}

/// A small xorshift generator: the workers' choices, reproducible.
pub(crate) struct Choice(pub(crate) u64);

impl Choice {
    pub(crate) fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// The canary directory outside the store, with files named as the store
/// names its own in the directories that are swapped for links to it.
pub(crate) fn canary(names: &[String]) -> Outside {
    let outside = Outside::new();
    for name in names {
        std::fs::write(outside.target().join(name), format!("canary {name}\n")).expect("canary");
    }
    outside
}

/// The image the ocistore workers pull: four layers (several writes per
/// pull) and a config.
struct Image {
    reference: Reference,
    layers: Vec<(Digest, u64)>,
}

async fn image() -> Image {
    let reference: Reference = format!("{}/{}:v1", registries().plain, unique("race/store"))
        .parse()
        .expect("valid");
    let layers: Vec<_> = (0..4).map(|i| noise(4_000 + i, 40_000)).collect();
    push_image(&client(), &reference, "race-store", &layers).await;
    let layers = layers
        .iter()
        .map(|layer| (Digest::sha256_of(layer), layer.len() as u64))
        .collect();
    Image { reference, layers }
}

/// Removes the remembered uncompressed size of `digest` as the store
/// would, through directories opened without following a link (nothing
/// when one is swapped for a link at the moment).
fn forget_size(root: &Path, digest: &Digest) {
    use rustix::fs::{AtFlags, Mode, OFlags, open, openat, unlinkat};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let open_dirs = || {
        let root = open(root, flags, Mode::empty())?;
        let private = openat(&root, ".cachectl", flags, Mode::empty())?;
        openat(&private, "sizes", flags, Mode::empty())
    };
    if let Ok(sizes) = open_dirs() {
        let _ = unlinkat(
            &sizes,
            format!("sha256-{}", digest.encoded()),
            AtFlags::empty(),
        );
    }
}

/// One worker on the store at `root`: until `deadline`, operations picked
/// by `choice`, each counted in the tally.
fn store_worker(n: u64, places: &Places, image: &Image, deadline: Instant) -> Tally {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = client();
    let pull = |store: &Store| {
        runtime
            .block_on(store.pull(&client, &image.reference, &PullOptions::default()))
            .map(drop)
    };
    let reference = &image.reference;
    let own_tag: Reference = format!("{}-w{n}", reference).parse().expect("tag");
    let archive = places.exports.join(format!("w{n}.tar"));
    let mut choice = Choice(SEED + n);
    let mut tally = Tally::default();
    let accept = |err: &ocistore::Error| places.store_error(err, &STORE_DIRS);
    while Instant::now() < deadline {
        let store = match Store::open(&places.root) {
            Ok(store) => store,
            Err(err) => {
                tally.count("open", Err(err), accept);
                continue;
            }
        };
        let (op, result): (&'static str, ocistore::Result<()>) = match choice.next(8) {
            0 => ("pull", pull(&store)),
            1 => ("remove + gc + cold pull", {
                (|| {
                    store.remove(reference)?;
                    store.gc_keeping_partials(Duration::ZERO)?;
                    pull(&store)
                })()
            }),
            2 => ("tag + remove tag", {
                (|| {
                    store.tag(reference, &own_tag)?;
                    store.remove(&own_tag).map(drop)
                })()
            }),
            3 => ("verify", {
                store.verify().map(|report| {
                    // A blob whose directory is a link for the moment is
                    // missing to verify (which writes nothing then); one
                    // called corrupt would be moved aside.
                    if !report.corrupt.is_empty() {
                        tally.bad.push(format!("verify found {report:?}"));
                    } else if !report.missing.is_empty() {
                        tally.note("verify", "reported blobs missing (their directory a link)");
                    }
                })
            }),
            4 => ("lease + read blobs", {
                (|| {
                    let _lease = store.lease(reference)?;
                    for (digest, _) in &image.layers {
                        let bytes = store.read_blob(digest)?;
                        if Digest::sha256_of(&bytes) != *digest {
                            tally
                                .bad
                                .push(format!("read_blob({digest}) read other bytes"));
                        }
                    }
                    Ok(())
                })()
            }),
            5 => ("remember, forget + count sizes", {
                (|| {
                    for (digest, size) in &image.layers {
                        store.remember_uncompressed_size(digest, *size)?;
                        // Counted again from the blob, and remembered.
                        forget_size(&places.root, digest);
                        let read = store.uncompressed_size(digest)?;
                        if read != *size {
                            tally
                                .bad
                                .push(format!("size of {digest}: {read}, not {size}"));
                        }
                    }
                    Ok(())
                })()
            }),
            6 => ("export + import", {
                (|| {
                    store.export(std::slice::from_ref(reference), ExportFormat::Oci, &archive)?;
                    store.import(&archive, &ImportOptions::default()).map(drop)
                })()
            }),
            _ => ("inspect", store.inspect(reference).map(drop)),
        };
        tally.count(op, result, accept);
    }
    tally
}

/// What differs between two snapshots of the canary, one line an entry:
/// `new`, `gone` or `changed` (bytes, kind, mode or mtime) and its path.
fn changes(before: &Snapshot, after: &Snapshot) -> String {
    let mut lines = Vec::new();
    for (path, entry) in after {
        match before.get(path) {
            None => lines.push(format!("  new     {}", path.display())),
            Some(old) if old != entry => lines.push(format!("  changed {}", path.display())),
            Some(_) => {}
        }
    }
    for path in before.keys().filter(|path| !after.contains_key(*path)) {
        lines.push(format!("  gone    {}", path.display()));
    }
    lines.join("\n")
}

/// Runs `workers` threads of `work` for [`RACE_FOR`] (more rounds when the
/// swapper has not swapped [`MIN_SWAPS`] times) while the
/// swapper trades `dirs` for links to the canary; checks the canary and
/// the errors, returns the report.
pub(crate) fn race(
    places: &Places,
    dirs: &[&str],
    outside: &Outside,
    workers: u64,
    work: impl Fn(u64, Instant) -> Tally + Sync,
) -> String {
    let before = outside.snapshot();
    let swapper = Swapper::start(&places.root, dirs, &places.canary);
    let mut tally = Tally::default();
    // On a loaded machine the swapper gets less time: the workers go on,
    // a round at a time, until it has swapped enough (or four rounds).
    for _ in 0..MAX_ROUNDS {
        let deadline = Instant::now() + RACE_FOR;
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|n| {
                    let work = &work;
                    scope.spawn(move || work(n, deadline))
                })
                .collect();
            for handle in handles {
                tally.merge(handle.join().expect("a worker panicked"));
            }
        });
        if swapper.swaps.load(Ordering::Relaxed) >= MIN_SWAPS {
            break;
        }
    }
    let (swaps, troubles) = swapper.stop();
    let report = tally.report(swaps);
    eprintln!("{report}");
    let changed = changes(&before, &outside.snapshot());
    assert!(
        changed.is_empty(),
        "outside the store, while its directories were swapped:\n{changed}\n{report}"
    );
    assert_eq!(tally.bad, Vec::<String>::new(), "{report}");
    assert_eq!(troubles, Vec::<String>::new(), "{report}");
    assert!(swaps >= MIN_SWAPS, "only {swaps} swaps\n{report}");
    let done: u64 = tally.ok.values().sum();
    assert!(done > 0, "no operation succeeded during the race\n{report}");
    report
}

#[tokio::test(flavor = "multi_thread")]
async fn store_never_writes_outside_while_its_directories_are_swapped() {
    let image = image().await;
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("store");
        let exports = dir.path().join("exports");
        std::fs::create_dir(&exports).expect("exports");
        let store = Store::open(&root).expect("store opens");
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let pull = |store: &Store| {
            runtime
                .block_on(store.pull(&client(), &image.reference, &PullOptions::default()))
                .expect("pull")
        };
        pull(&store);
        let (layer, size) = &image.layers[0];
        store
            .remember_uncompressed_size(layer, *size)
            .expect("size kept");
        let record = Digest::sha256_of(image.reference.to_string().as_bytes());
        let outside = canary(&[
            "index.json".to_owned(),
            "oci-layout".to_owned(),
            "index.lock".to_owned(),
            "gc.lock".to_owned(),
            format!("blob-sha256-{}.lock", layer.encoded()),
            format!("{}.json", record.encoded()),
            format!("sha256-{}", layer.encoded()),
            format!("sha256-{}.partial", layer.encoded()),
            layer.encoded().to_owned(),
        ]);
        let places = Places {
            root: root.clone(),
            canary: outside.target(),
            exports,
        };
        race(&places, &STORE_DIRS, &outside, WORKERS, |n, deadline| {
            store_worker(n, &places, &image, deadline)
        });
        let store = Store::open(&root).expect("the store opens after the race");
        pull(&store);
        let report = store.verify().expect("verify runs");
        assert!(report.is_ok(), "verify after the race: {report:?}");
    })
    .await
    .expect("no panic");
}
