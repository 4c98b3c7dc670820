//! The kill soak: pulls SIGKILLed at seeded random moments, all into one
//! store, as a fleet host that keeps being killed sees it. After every kill
//! the store passes `verify`, the next pull completes, every blob re-hashes,
//! and each partial download the kill left is resumed with a `Range`
//! request from where it stopped, never fetched again from byte 0.
//!
//! CI runs the short form below; `cargo xtask soak` runs the long one
//! (`CACHECTL_SOAK_PULL_KILLS`, `CACHECTL_SOAK_SEED`) and prints the
//! figures the test writes to `CACHECTL_SOAK_REPORT`.

use crate::store::{assert_blobs_rehash, client, noise, push_image, ref_names, via};
use cachectl_tests::fault_proxy::{Fault, FaultProxy, Rule};
use cachectl_tests::{registries, unique};
use ociref::Reference;
use ocistore::{PullOptions, Store};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Bytes in each layer of the soak image.
const LAYER_LEN: usize = 700_000;

/// Kills in the short form CI runs.
const SHORT_PULL_KILLS: u64 = 12;

/// The soak's settings, from the environment.
struct Settings {
    seed: u64,
    pull_kills: u64,
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

/// What the pull soak saw, for the report.
#[derive(Default)]
struct PullFigures {
    kills: u64,
    killed_mid_pull: u64,
    partials_left: u64,
    partials_resumed: u64,
    bytes_kept: u64,
}

#[test]
fn pulls_killed_at_seeded_moments_leave_a_verifiable_store_that_resumes() {
    let settings = Settings::from_env();
    let registries = registries();
    let layers = [noise(31, 700_000), noise(32, 700_000), noise(33, 700_000)];
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
        // Each partial with bytes in it was resumed from its end; one that
        // holds the whole layer is committed with no request at all.
        let requests = proxy.requests();
        for (hex, size) in left.iter().filter(|(_, size)| **size > 0) {
            figures.partials_left += 1;
            let gets: Vec<_> = requests[requests_before..]
                .iter()
                .filter(|r| r.method == "GET" && r.path_and_query.ends_with(hex.as_str()))
                .collect();
            let resumed = if *size == LAYER_LEN as u64 {
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
        // The next round starts cold again: the image and its blobs go.
        assert!(store.remove(&reference).expect("removes"), "{context}");
        store.gc().expect("gc");
    }
    report(&settings, &figures);
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

/// Prints the figures and writes them as JSON to `CACHECTL_SOAK_REPORT`.
fn report(settings: &Settings, figures: &PullFigures) {
    let json = serde_json::json!({
        "seed": settings.seed,
        "pull_kills": figures.kills,
        "killed_mid_pull": figures.killed_mid_pull,
        "verify_failures": 0,
        "partials_left": figures.partials_left,
        "partials_resumed": figures.partials_resumed,
        "bytes_kept_by_resuming": figures.bytes_kept,
    });
    eprintln!("soak: pulls: {json}");
    if let Ok(path) = std::env::var("CACHECTL_SOAK_REPORT") {
        std::fs::write(&path, json.to_string()).expect("writes the soak report");
    }
}
