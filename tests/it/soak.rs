//! The kill soak: pulls and builds SIGKILLed at seeded random moments, all
//! into one store, as a fleet host that keeps being killed sees it.
//!
//! - Pulls: after every kill the store passes `verify`, the next pull
//!   completes, every blob re-hashes, and each partial download the kill
//!   left is resumed with a `Range` request from where it stopped, never
//!   fetched again from byte 0. At the end, after a `gc`, no temp file,
//!   partial or blob is left.
//! - Builds: no child (`mke2fs`, `debugfs`) outlives a killed build, the
//!   store passes `verify`, and the next build succeeds (an image `e2fsck`
//!   passes) and leaves no partial image, unpacked tree or `/dev/shm` tree
//!   of any killed build behind.
//! - Mixed load ([`load`]): many processes pulling, building, unpacking,
//!   verifying, exporting and removing + collecting on one root see no
//!   failure but "not cached" after a concurrent `rm`.
//!
//! CI runs the short forms below; `cargo xtask soak` runs the long ones
//! (`CACHECTL_SOAK_PULL_KILLS`, `CACHECTL_SOAK_BUILD_KILLS`,
//! `CACHECTL_SOAK_SEED`) and prints the figures each test writes to
//! `CACHECTL_SOAK_REPORT.pulls.json` and `….builds.json`.

mod load;

use crate::store::{assert_blobs_rehash, client, noise, push_image, ref_names, via};
use cachectl_tests::fault_proxy::{Fault, FaultProxy, Rule};
use cachectl_tests::{registries, unique};
use ociref::Reference;
use ocistore::{PullOptions, Store};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bytes in each layer of the soak image.
const LAYER_LEN: usize = 700_000;

/// Pull kills in the short form CI runs.
const SHORT_PULL_KILLS: u64 = 12;

/// Build kills in the short form CI runs.
const SHORT_BUILD_KILLS: u64 = 4;

/// The soak's settings, from the environment.
struct Settings {
    seed: u64,
    pull_kills: u64,
    build_kills: u64,
}

impl Settings {
    fn from_env() -> Settings {
        let number = |name: &str, default: u64| match std::env::var(name) {
            Ok(text) => text
                .parse()
                .unwrap_or_else(|_| panic!("{name}={text:?} is not a whole number")),
            Err(_) => default,
        };
        Settings {
            seed: number("CACHECTL_SOAK_SEED", 1),
            pull_kills: number("CACHECTL_SOAK_PULL_KILLS", SHORT_PULL_KILLS),
            build_kills: number("CACHECTL_SOAK_BUILD_KILLS", SHORT_BUILD_KILLS),
        }
    }
}

/// splitmix64: the kill moments, the same for the same seed.
struct Moments(u64);

impl Moments {
    fn next_below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % bound
    }
}

/// `(layer digest hex, bytes)` of each partial download under `root`.
fn partials(root: &Path) -> BTreeMap<String, u64> {
    let Ok(entries) = std::fs::read_dir(root.join(".cachectl/ingest")) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let hex = name.strip_prefix("sha256-")?.strip_suffix(".partial")?;
            let size = entry.metadata().ok()?.len();
            Some((hex.to_owned(), size))
        })
        .collect()
}

/// `(digest hex, size)` of the config and layers of the one image in the
/// store at `root`.
fn blob_sizes(root: &Path) -> BTreeMap<String, u64> {
    let index = crate::store::read_index(root);
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .expect("one stored image");
    let blob = |digest: &str| root.join("blobs/sha256").join(&digest["sha256:".len()..]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(digest)).expect("manifest")).expect("JSON");
    let layers = manifest["layers"].as_array().expect("layers");
    std::iter::once(&manifest["config"])
        .chain(layers)
        .map(|d| {
            let digest = d["digest"].as_str().expect("digest");
            let size = d["size"].as_u64().expect("size");
            (digest["sha256:".len()..].to_owned(), size)
        })
        .collect()
}

/// What the pull soak saw, for the report.
#[derive(Default)]
struct PullFigures {
    kills: u64,
    killed_mid_pull: u64,
    partials_left: u64,
    partials_resumed: u64,
    bytes_kept: u64,
}

/// Each partial in `left` (by a kill) with bytes in it was resumed from its
/// end by the pull whose requests `proxy` saw after `requests_before`; one
/// that holds the whole layer is committed with no request at all.
fn assert_partials_resumed(
    context: &str,
    root: &Path,
    proxy: &FaultProxy,
    requests_before: usize,
    left: &BTreeMap<String, u64>,
    figures: &mut PullFigures,
) {
    let requests = proxy.requests();
    let sizes = blob_sizes(root);
    for (hex, size) in left.iter().filter(|(_, size)| **size > 0) {
        figures.partials_left += 1;
        let gets: Vec<_> = requests[requests_before..]
            .iter()
            .filter(|r| r.method == "GET" && r.path_and_query.ends_with(hex.as_str()))
            .collect();
        let resumed = if Some(size) == sizes.get(hex) {
            gets.is_empty()
        } else {
            let from_end = format!("bytes={size}-");
            gets.iter().any(|r| r.range.as_deref() == Some(&from_end))
        };
        assert!(
            resumed,
            "{context}: the partial of {hex} ({size} bytes) was not resumed from its end: {:?}",
            gets.iter().map(|r| &r.range).collect::<Vec<_>>()
        );
        figures.partials_resumed += 1;
        figures.bytes_kept += size;
    }
}

/// Nothing leaks: no temp file of a killed pull outlives a gc, and no
/// blob, partial or image stays once the last image is gone.
fn assert_nothing_leaks(root: &Path) {
    let store = Store::open(root).expect("the store opens");
    store.gc().expect("gc");
    let temps = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.starts_with(".tmp-"))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(temps(root), Vec::<String>::new(), "temp files stay");
    assert_eq!(
        temps(&root.join(".cachectl/records")),
        Vec::<String>::new(),
        "temp records stay"
    );
    assert!(partials(root).is_empty(), "partials stay");
    let blobs = std::fs::read_dir(root.join("blobs/sha256"))
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(blobs, 0, "blobs of removed images stay");
}

#[test]
fn pulls_killed_at_seeded_moments_leave_a_verifiable_store_that_resumes() {
    let settings = Settings::from_env();
    let registries = registries();
    let layers = [
        noise(31, LAYER_LEN),
        noise(32, LAYER_LEN),
        noise(33, LAYER_LEN),
    ];
    let target: Reference = format!("{}/{}:v1", registries.plain, unique("soak/pull"))
        .parse()
        .expect("valid");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(push_image(&client(), &target, "soak", &layers));
    // About 0.7 s per layer at this rate (they download concurrently), so
    // the kills, drawn over a second, land all along the pull.
    let proxy = FaultProxy::start(
        &registries.plain,
        vec![
            Rule::new(Fault::Throttle {
                bytes_per_sec: 1_000_000,
            })
            .path_contains("/blobs/"),
        ],
    );
    let reference = via(&proxy.addr(), &target);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let mut moments = Moments(settings.seed);
    let mut figures = PullFigures::default();
    for round in 0..settings.pull_kills {
        let delay = Duration::from_millis(moments.next_below(1_000));
        // The puller is its own process (`store-pull`), so SIGKILL hits a
        // real, separate process, as in the field.
        let mut child = Command::new(env!("CARGO_BIN_EXE_store-pull"))
            .arg(&root)
            .arg(reference.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the puller starts");
        std::thread::sleep(delay);
        child.kill().expect("SIGKILL sent");
        child.wait().expect("the puller is reaped");
        figures.kills += 1;
        if !root.join("index.json").exists() {
            continue; // killed before the store existed
        }
        let context = format!("round {round}, killed after {delay:?}");
        let store = Store::open(&root).expect("the store opens after a kill");
        let report = store.verify().expect("verify runs");
        assert!(report.is_ok(), "{context}: {report:?}");
        let left = partials(&root);
        if ref_names(&root).is_empty() {
            figures.killed_mid_pull += 1;
        }
        let requests_before = proxy.requests().len();
        runtime
            .block_on(store.pull(&client(), &reference, &PullOptions::default()))
            .unwrap_or_else(|err| panic!("{context}: the next pull fails: {err}"));
        assert!(store.verify().expect("verify runs").is_ok(), "{context}");
        assert_eq!(assert_blobs_rehash(&root), 5, "{context}");
        assert!(partials(&root).is_empty(), "{context}: partials remain");
        assert_partials_resumed(
            &context,
            &root,
            &proxy,
            requests_before,
            &left,
            &mut figures,
        );
        // The next round starts cold again: the image and its blobs go.
        assert!(store.remove(&reference).expect("removes"), "{context}");
        store.gc().expect("gc");
    }
    assert_nothing_leaks(&root);
    report(
        "pulls",
        serde_json::json!({
            "seed": settings.seed,
            "pull_kills": figures.kills,
            "killed_mid_pull": figures.killed_mid_pull,
            "verify_failures": 0,
            "partials_left": figures.partials_left,
            "partials_resumed": figures.partials_resumed,
            "bytes_kept_by_resuming": figures.bytes_kept,
        }),
    );
    let half = settings.pull_kills / 2;
    assert!(
        figures.killed_mid_pull >= half,
        "only {} of {} kills landed during a pull",
        figures.killed_mid_pull,
        settings.pull_kills
    );
    assert!(
        figures.partials_left > 0,
        "no kill left a partial download to resume"
    );
}

/// Prints `figures` and writes them as JSON to
/// `$CACHECTL_SOAK_REPORT.<what>.json` when that variable is set.
fn report(what: &str, figures: serde_json::Value) {
    eprintln!("soak: {what}: {figures}");
    if let Ok(path) = std::env::var("CACHECTL_SOAK_REPORT") {
        let path = format!("{path}.{what}.json");
        std::fs::write(&path, figures.to_string()).expect("writes the soak report");
    }
}

/// Pids of the running children of `parent`, from `/proc/*/stat`.
fn children_of(parent: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().unwrap_or("?");
        let ppid: u32 = rest.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == parent
            && state != "Z"
            && state != "X"
            && let Ok(pid) = stat[..open].trim().parse()
        {
            found.push((pid, stat[open + 1..close].to_owned()));
        }
    }
    found
}

/// Whether process `pid` runs (exists and is not a zombie).
fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let close = stat.rfind(')')?;
            stat[close + 1..]
                .split_whitespace()
                .next()
                .map(str::to_owned)
        })
        .is_some_and(|state| state != "Z" && state != "X")
}

/// Names in `dir` starting with `prefix` (none when `dir` is absent).
fn names_starting(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `rootfs-build ROOT REFERENCE --label LABEL` to the end.
fn build(root: &Path, reference: &str, label: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rootfs-build"))
        .arg(root)
        .arg(reference)
        .args(["--label", label])
        .output()
        .expect("the builder runs")
}

#[test]
fn builds_killed_at_seeded_moments_leave_no_process_or_file_behind() {
    let settings = Settings::from_env();
    let reference = crate::store::fixture("big");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let store = Store::open(&root).expect("store");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime
        .block_on(store.pull(&client(), &reference, &PullOptions::default()))
        .expect("pulls the image");
    let reference = reference.to_string();
    // One build to the end sets the window the kills are drawn from.
    let started = Instant::now();
    let first = build(&root, &reference, "soak-first");
    assert!(first.status.success(), "{first:?}");
    let window = started.elapsed().as_millis() as u64 + 1;
    let mut moments = Moments(settings.seed ^ 0xB01D);
    let mut killed_pids = Vec::new();
    let mut children_killed = 0;
    for round in 0..settings.build_kills {
        let delay = Duration::from_millis(moments.next_below(window));
        let mut child = Command::new(env!("CARGO_BIN_EXE_rootfs-build"))
            .arg(&root)
            .arg(&reference)
            .args(["--label", &format!("soak-{round}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the builder starts");
        std::thread::sleep(delay);
        let children = children_of(child.id());
        child.kill().expect("SIGKILL sent");
        child.wait().expect("the builder is reaped");
        killed_pids.push(child.id());
        let context = format!("build {round}, killed after {delay:?}");
        let killed_at = Instant::now();
        for (pid, name) in &children {
            while is_running(*pid) && killed_at.elapsed() < Duration::from_secs(1) {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(
                !is_running(*pid),
                "{context}: its child {name} (pid {pid}) outlived it by a second"
            );
            children_killed += 1;
        }
        let report = store.verify().expect("verify runs");
        assert!(report.is_ok(), "{context}: {report:?}");
    }
    // The next build sweeps what the killed ones left.
    let last = build(&root, &reference, "soak-last");
    assert!(last.status.success(), "{last:?}");
    let image = String::from_utf8_lossy(&last.stdout).trim().to_owned();
    let fsck = Command::new("e2fsck")
        .args(["-fn", &image])
        .output()
        .expect("e2fsck runs");
    assert!(fsck.status.success(), "{fsck:?}");
    let ext4 = root.join(".cachectl/ext4");
    assert_eq!(
        names_starting(&ext4, "partial-"),
        Vec::<String>::new(),
        "partial images stay"
    );
    // Work directories are named after their purpose (`build-…`); the
    // work area's `.work` marker stays.
    assert_eq!(
        names_starting(&root.join(".cachectl/rootfs-tmp"), "")
            .into_iter()
            .filter(|name| name != ".work")
            .collect::<Vec<_>>(),
        Vec::<String>::new(),
        "unpacked trees stay"
    );
    for pid in &killed_pids {
        let own = format!("cachectl-build-p{pid}-");
        assert_eq!(
            names_starting(Path::new("/dev/shm"), &own),
            Vec::<String>::new(),
            "the /dev/shm tree of killed build {pid} stays"
        );
    }
    report(
        "builds",
        serde_json::json!({
            "seed": settings.seed,
            "build_kills": settings.build_kills,
            "window_ms": window,
            "children_seen_at_kill": children_killed,
            "children_outliving_a_kill": 0,
            "verify_failures": 0,
            "leftovers_after_next_build": 0,
        }),
    );
}
