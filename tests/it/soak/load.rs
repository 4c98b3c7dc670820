//! The mixed load: processes running `pull`, `build`, `unpack`, `verify`,
//! `export`, `inspect` and `rm` + `gc` at random on one store root for a
//! while, as many users of one cache do. Every failure but one is
//! unexpected: a reader finding its image not cached (exit 3) because a
//! concurrent `rm` removed it first. A reader that has resolved its image
//! holds a lease, so `gc` never removes what it reads.
//!
//! CI runs `SHORT_LOAD_PROCS` processes for `SHORT_LOAD_SECS` seconds;
//! `cargo xtask soak` runs `CACHECTL_SOAK_LOAD_PROCS` ×
//! `CACHECTL_SOAK_LOAD_SECS` and prints the figures written to
//! `CACHECTL_SOAK_REPORT.load.json`.

use super::{Moments, report};
use crate::store::fixture;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Processes at once in the short form CI runs.
const SHORT_LOAD_PROCS: u64 = 4;

/// Seconds the short form runs.
const SHORT_LOAD_SECS: u64 = 10;

/// The operations, each as likely as the others.
const OPS: [&str; 8] = [
    "pull", "build", "unpack", "verify", "export", "inspect", "rm-gc", "pull",
];

/// A whole number from the environment, else `default`.
fn number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a whole number")),
        Err(_) => default,
    }
}

/// What one operation ended as.
#[derive(Debug, PartialEq)]
enum Outcome {
    Done,
    /// Not cached (exit 3) because a concurrent `rm` removed it.
    NotCached,
    /// Anything else: the exit status and what it printed.
    Unexpected(String),
}

/// Counts per operation.
#[derive(Default, Debug)]
struct Tally {
    runs: u64,
    done: u64,
    not_cached: u64,
    unexpected: u64,
}

/// Runs `op` on `reference` in the store at `root` as its own process.
fn run(root: &Path, work: &Path, op: &str, reference: &str) -> Outcome {
    let mut command = match op {
        "pull" => Command::new(env!("CARGO_BIN_EXE_store-pull")),
        _ => Command::new(env!("CARGO_BIN_EXE_store-load")),
    };
    command.arg(root);
    if op != "pull" {
        command.arg(op);
    }
    command.arg(reference);
    match op {
        "unpack" => command.arg(work.join("tree")),
        "export" => command.arg(work.join("out.tar")),
        _ => &mut command,
    };
    let output = command.output().expect("the operation runs");
    let _ = std::fs::remove_dir_all(work.join("tree"));
    let _ = std::fs::remove_file(work.join("out.tar"));
    let reader = !matches!(op, "pull" | "rm-gc");
    match output.status.code() {
        Some(0) => Outcome::Done,
        Some(3) if reader => Outcome::NotCached,
        code => Outcome::Unexpected(format!(
            "{op} {reference}: exit {code:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

#[test]
fn mixed_load_on_one_root_has_no_unexpected_failures() {
    let procs = number("CACHECTL_SOAK_LOAD_PROCS", SHORT_LOAD_PROCS);
    let secs = number("CACHECTL_SOAK_LOAD_SECS", SHORT_LOAD_SECS);
    let seed = number("CACHECTL_SOAK_SEED", 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let references: Vec<String> = ["small", "layered"]
        .iter()
        .map(|name| fixture(name).to_string())
        .collect();
    for reference in &references {
        let warm = run(&root, dir.path(), "pull", reference);
        assert_eq!(warm, Outcome::Done, "{reference}");
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let workers: Vec<_> = (0..procs)
        .map(|worker| {
            let (root, references) = (root.clone(), references.clone());
            let work = dir.path().join(format!("worker-{worker}"));
            std::fs::create_dir(&work).expect("work dir");
            std::thread::spawn(move || {
                let mut moments = Moments(seed.wrapping_mul(1000) + worker);
                let mut seen = Vec::new();
                while Instant::now() < deadline {
                    let op = OPS[moments.next_below(OPS.len() as u64) as usize];
                    let reference = &references[moments.next_below(2) as usize];
                    seen.push((op, run(&root, &work, op, reference)));
                }
                seen
            })
        })
        .collect();
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut unexpected = Vec::new();
    for worker in workers {
        for (op, outcome) in worker.join().expect("the worker does not panic") {
            let tally = tallies.entry(op).or_default();
            tally.runs += 1;
            match outcome {
                Outcome::Done => tally.done += 1,
                Outcome::NotCached => tally.not_cached += 1,
                Outcome::Unexpected(what) => {
                    tally.unexpected += 1;
                    unexpected.push(what);
                }
            }
        }
    }
    // Afterwards the store is whole.
    let last = run(&root, dir.path(), "verify", &references[0]);
    let figures: serde_json::Map<String, serde_json::Value> = tallies
        .iter()
        .map(|(op, t)| {
            let value = serde_json::json!({
                "runs": t.runs, "done": t.done,
                "not_cached": t.not_cached, "unexpected": t.unexpected,
            });
            ((*op).to_owned(), value)
        })
        .collect();
    report(
        "load",
        serde_json::json!({
            "processes": procs,
            "seconds": secs,
            "seed": seed,
            "unexpected_failures": unexpected.len(),
            "final_verify_ok": last == Outcome::Done,
            "operations": figures,
        }),
    );
    assert_eq!(
        unexpected,
        Vec::<String>::new(),
        "unexpected failures under load: {tallies:?}"
    );
    assert_eq!(last, Outcome::Done, "the store verifies after the load");
    let readers_done: u64 = ["build", "unpack", "verify", "export"]
        .iter()
        .filter_map(|op| tallies.get(op))
        .map(|t| t.done)
        .sum();
    assert!(readers_done > 0, "no reader ran to the end: {tallies:?}");
}
