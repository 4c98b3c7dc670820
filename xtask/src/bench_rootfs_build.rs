//! The parts of `cargo xtask bench build` that `bench unpack` has not: the
//! pair of `cachectl build` and `umoci unpack` + `mke2fs -d` in each round,
//! the other builds of each round (as root, with `-o`, through mke2fs from
//! the merged tar and from an unpacked tree, of the read-only types), and
//! after the rounds the cache hits and the peak RSS of a cold build.

use crate::bench::Summary;
use crate::bench_rootfs::{Bench, REFERENCE, Settle, Timings, offline, time};
use crate::cmd::{self, Error};
use crate::tools;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Cache hits timed by `bench build`.
const HIT_RUNS: usize = 11;

impl Bench {
    /// Times `cachectl build` (the image it keeps, no `-o`: one synced
    /// image, as the peer's `mke2fs` syncs its one) and `umoci unpack` +
    /// `mke2fs -d` into `work`; the peer goes first when `peer_first` and
    /// an earlier round told the size of the image (`last_build_size`,
    /// updated when cachectl goes first). Returns (cachectl, peer).
    pub(crate) fn build_pair(
        &self,
        round: u32,
        work: &Path,
        peer_first: bool,
        settle: &mut Settle,
        last_build_size: &mut Option<u64>,
    ) -> Result<(Duration, Duration), Error> {
        // A new label makes a new cache key: every round builds, and
        // nothing is deleted.
        let label = format!("r{round}");
        let ours_run = |settle: &mut Settle| {
            settle.wait()?;
            time_built(
                offline(&self.cachectl, &self.root, "build", REFERENCE).args(["--label", &label]),
            )
        };
        // The peer's image gets the size of ours, so cachectl runs first
        // when no earlier round told the size.
        let peer_run = |settle: &mut Settle, size: u64| {
            settle.wait()?;
            let started = Instant::now();
            cmd::output(
                Command::new(&self.umoci)
                    .args(["unpack", "--rootless", "--image"])
                    .arg(format!("{}:unpack", self.gzip.display()))
                    .arg(work.join("bundle")),
            )?;
            cmd::output(
                Command::new(&self.mke2fs)
                    .args(["-q", "-F", "-t", "ext4", "-d"])
                    .arg(work.join("bundle/rootfs"))
                    .arg(work.join("theirs.ext4"))
                    .arg(format!("{}k", size / 1024)),
            )?;
            Ok::<_, Error>(started.elapsed())
        };
        Ok(if peer_first && let Some(size) = *last_build_size {
            let b = peer_run(settle, size)?;
            (ours_run(settle)?.0, b)
        } else {
            let (a, built) = ours_run(settle)?;
            *last_build_size = Some(built);
            (a, peer_run(settle, built)?)
        })
    }

    /// The other builds of a `build` round, each timed: cachectl without
    /// `--rootless` (as root only), through mke2fs from the merged tar
    /// stream and from an unpacked tree, and of each read-only type.
    pub(crate) fn build_round_extras(
        &self,
        round: u32,
        work: &Path,
        settle: &mut Settle,
        timings: &mut Timings,
    ) -> Result<(), Error> {
        if self.as_root {
            settle.wait()?;
            timings.ours_root.push(time(
                Command::new(&self.cachectl)
                    .arg("--root")
                    .arg(&self.root)
                    .args(["-q", "build", "--offline", "--label"])
                    .arg(format!("root-{round}"))
                    .arg(REFERENCE),
            )?);
        }
        // With `-o`: a second image, written beside the kept one and
        // synced; the kept one is left to the kernel's write-back.
        settle.wait()?;
        timings.ours_output.push(time(
            offline(&self.cachectl, &self.root, "build", REFERENCE)
                .args(["--label", &format!("output-{round}"), "-o"])
                .arg(work.join("ours.ext4")),
        )?);
        // The inputs through mke2fs, for comparison: the merged tar
        // stream and an unpacked tree.
        for (input, times) in &mut timings.ours_mke2fs {
            settle.wait()?;
            times.push(time(
                offline(&self.cachectl, &self.root, "build", REFERENCE)
                    .args(["--input", input, "--label"])
                    .arg(format!("{input}-{round}")),
            )?);
        }
        for kind in &mut timings.read_only {
            settle.wait()?;
            read_only_round(&self.cachectl, &self.root, work, round, kind)?;
        }
        Ok(())
    }
}

/// The builds of one read-only type, timed in each round.
pub(crate) struct ReadOnly {
    pub(crate) fs: &'static str,
    pub(crate) times: Vec<Duration>,
    /// The size of the last image.
    pub(crate) size: u64,
}

/// The read-only types this host builds: squashfs, and erofs where
/// `mkfs.erofs` (on `PATH`) is 1.8 or later.
pub(crate) fn read_only_types() -> Vec<&'static str> {
    let mut types = vec!["squashfs"];
    let erofs = tools::find("mkfs.erofs").and_then(|path| {
        let output = Command::new(path).arg("--version").output().ok()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let release = text
            .split_whitespace()
            .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?
            .to_owned();
        let mut parts = release.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        Some((parts.next()?, parts.next()?))
    });
    if erofs.is_some_and(|release| release >= (1, 8)) {
        types.push("erofs");
    }
    types
}

/// One build of `kind.fs` in `round`: a new init file per round makes a new
/// cache key (a read-only image has no label), so it really builds.
fn read_only_round(
    cachectl: &Path,
    root: &Path,
    work: &Path,
    round: u32,
    kind: &mut ReadOnly,
) -> Result<(), Error> {
    let init = work.join(format!("init-{}", kind.fs));
    std::fs::write(&init, format!("#!/bin/sh\n# round {round}\n"))
        .map_err(|e| format!("writing {}: {e}", init.display()))?;
    let (took, size) = time_built(
        offline(cachectl, root, "build", REFERENCE)
            .args(["--fs", kind.fs, "--init"])
            .arg(&init),
    )?;
    kind.times.push(took);
    kind.size = size;
    Ok(())
}

/// Runs the `build` of `command` with `--json` to success: how long it
/// took and the size of the image it reported.
fn time_built(command: &mut Command) -> Result<(Duration, u64), Error> {
    let started = Instant::now();
    let stdout = cmd::output(command.arg("--json"))?;
    let took = started.elapsed();
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .map_err(|e| format!("cachectl build --json printed no JSON ({e}): {stdout}"))?;
    let size = report["size"]
        .as_u64()
        .ok_or_else(|| format!("cachectl build --json reported no size: {stdout}"))?;
    Ok((took, size))
}

/// What `bench build` measures after its rounds.
pub(crate) struct Extras {
    /// The cache hits, one time each.
    pub(crate) hits: Vec<Duration>,
    /// Their summary.
    pub(crate) hit: Summary,
    /// The peak RSS of a cold build; `None` without GNU `time`.
    pub(crate) peak_rss_kib: Option<u64>,
}

/// Times [`HIT_RUNS`] cache hits (the image of round 1, no `-o`) and
/// measures the peak RSS of one more cold build with GNU `time` (the
/// largest of cachectl and the children it waited for).
pub(crate) fn build_extras(
    cachectl: &Path,
    root: &Path,
    settle: &mut Settle,
) -> Result<Extras, Error> {
    let mut hits = Vec::new();
    // As before every timed build: the write-back of the last one does
    // not delay the hits' own small writes.
    settle.wait()?;
    for _ in 0..HIT_RUNS {
        hits.push(time(
            offline(cachectl, root, "build", REFERENCE).args(["--label", "r1"]),
        )?);
    }
    let gnu_time = Path::new("/usr/bin/time");
    let peak_rss_kib = if gnu_time.exists() {
        settle.wait()?;
        let report = root.with_extension("rss");
        cmd::output(
            Command::new(gnu_time)
                .args(["-f", "%M", "-o"])
                .arg(&report)
                .arg(cachectl)
                .arg("--root")
                .arg(root)
                .args(["-q", "build", "--offline", "--rootless", "--label", "rss"])
                .arg(REFERENCE),
        )?;
        let text = std::fs::read_to_string(&report)
            .map_err(|e| format!("reading {}: {e}", report.display()))?;
        Some(
            text.trim()
                .parse()
                .map_err(|_| format!("GNU time wrote {text:?}, not a size in KiB"))?,
        )
    } else {
        None
    };
    Ok(Extras {
        hit: Summary::of(&hits),
        hits,
        peak_rss_kib,
    })
}
