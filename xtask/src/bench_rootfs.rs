//! `cargo xtask bench unpack` and `cargo xtask bench build`: turning a
//! stored image into a directory (`cachectl unpack` next to `umoci unpack`)
//! or into an ext4 image (`cachectl build` next to `umoci unpack` followed
//! by `mke2fs -d`), on the same ~100 MiB gzip image, alternating, with no
//! registry involved (the image is imported from an OCI layout).
//!
//! `--shape large-files` (the default) cuts the content into 1 MiB files;
//! `--shape small-files` into ~12,300 files of a few bytes to 1 MiB with
//! symlinks and hardlinks, like a real root file system
//! ([`BenchShape::SmallFiles`]); `--shape debian-like` into a tree shaped
//! like Debian's (200 MiB of content by default, see
//! `cachectl_fixtures::debian_like`). `--layers N` splits the content into
//! N layers, base first, each upper layer `i` holding a tree of the same
//! shape under `/opt/layer{i}` ([`BenchImage::layers`]).
//!
//! Both tools run rootless (`--rootless`), so neither changes owners on the
//! host and the comparison is the same whoever runs it. Nothing is deleted
//! between rounds (on an ext4 without a journal, inodes freed in the last
//! ~35 s slow down whoever creates files next): each round writes into a
//! new directory, and each `build` round uses a new `--label`, so its
//! cache key is new and it really builds. When run as root, each `build`
//! round also times cachectl without `--rootless`. After the rounds,
//! `build` times a cache hit (median of 11) and measures a cold build's
//! peak RSS (GNU `time`). Each `build` round also builds the read-only
//! types (squashfs, and erofs where `mkfs.erofs` is 1.8 or later), timed
//! and sized beside ext4. A zstd variant of the image is unpacked by
//! cachectl and offered to umoci, which (0.4) refuses zstd layers; the
//! bench reports what umoci answered.

use crate::bench::Summary;
use crate::cmd::{self, Error};
use crate::tools;
use cachectl_fixtures::bench_image::{self, BenchImage, BenchLayer, BenchShape};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// What is timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Image to directory.
    Unpack,
    /// Image to ext4 file.
    Build,
}

/// Target of `build`: cachectl takes at most this share of the peer
/// pipeline's time.
const BUILD_TARGET: f64 = 0.2;
/// Target of `unpack`.
const UNPACK_TARGET: f64 = 0.25;
/// Cache hits timed by `bench build`.
const HIT_RUNS: usize = 11;
/// The reference the bench image is imported under.
const REFERENCE: &str = "bench.local/bench/unpack:v1";
/// The zstd variant's reference.
const ZSTD_REFERENCE: &str = "bench.local/bench/unpack-zstd:v1";

/// The options of `bench unpack|build`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Options {
    rounds: u32,
    /// `None`: 100, or 200 for the Debian-like shape.
    size_mib: Option<u64>,
    shape: BenchShape,
    /// Layers of the image (see [`BenchImage::layers`]).
    layers: u32,
    /// Keep the store (and its images) for measuring by hand.
    keep: bool,
}

/// The usage line of `bench unpack|build`.
const USAGE: &str = "usage: cargo xtask bench unpack|build [--rounds N] [--size-mib M] \
[--shape large-files|small-files|debian-like] [--layers N] [--keep]";

/// Runs `bench unpack` or `bench build` with `args` (`--rounds N`,
/// `--size-mib M`, `--shape large-files|small-files|debian-like`,
/// `--layers N` to split the content into N layers, base first, layer i
/// under `/opt/layer{i}` (default 1), `--keep` to leave the store in
/// TARGET/bench-rootfs/store).
pub(crate) fn run(kind: Kind, args: &[String]) -> Result<(), Error> {
    let Options {
        rounds,
        size_mib,
        shape,
        layers,
        keep,
    } = parse(args)?;
    let size_mib = size_mib.unwrap_or(if shape == BenchShape::DebianLike {
        200
    } else {
        100
    });
    tools::ensure_installed()?;
    let umoci = tools::find("umoci").ok_or("umoci is not installed")?;
    let mke2fs = tools::find("mke2fs").ok_or("mke2fs is not installed")?;
    cmd::run(cmd::cargo().args(["build", "--release", "--locked", "-p", "cachectl"]))?;
    let cachectl = crate::cmd::built_binary("release", "cachectl")?;
    let dir = crate::cmd::target_dir()?.join("bench-rootfs");
    let cleared = dir.exists();
    if cleared {
        remove_tree(&dir)?;
    }
    let root = dir.join("store");
    let gzip = dir.join("layout-gzip");
    let zstd = dir.join("layout-zstd");
    for (layout, layer, reference) in [
        (&gzip, BenchLayer::MixedGzip, REFERENCE),
        (&zstd, BenchLayer::MixedZstd, ZSTD_REFERENCE),
    ] {
        bench_image::build_bench_layout(
            layout,
            &BenchImage {
                name: "unpack".to_owned(),
                content_size: size_mib << 20,
                layer,
                shape,
                layers,
            },
        )
        .map_err(|e| format!("building the bench image: {e}"))?;
        let archive = dir.join("image.tar");
        cmd::run(
            Command::new("tar")
                .arg("-C")
                .arg(layout)
                .arg("-cf")
                .arg(&archive)
                .arg("."),
        )?;
        cmd::run(
            Command::new(&cachectl)
                .arg("--root")
                .arg(&root)
                .args(["-q", "import", "--name", reference])
                .arg(&archive),
        )?;
        std::fs::remove_file(&archive).map_err(|e| format!("removing the archive: {e}"))?;
    }

    // Small files: see [`Settle`]; the start above may have deleted a
    // whole earlier bench.
    let mut settle = Settle::new(cleared);
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut ours_zstd = Vec::new();
    let mut last_build_size = None;
    let as_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    let mut ours_root = Vec::new();
    let mut ours_tree = Vec::new();
    let read_only_types = read_only_types();
    let mut read_only: Vec<ReadOnly> = read_only_types
        .iter()
        .map(|fs| ReadOnly {
            fs,
            times: Vec::new(),
            size: 0,
        })
        .collect();
    for round in 1..=rounds {
        let work = dir.join(format!("round-{round}"));
        std::fs::create_dir_all(&work).map_err(|e| format!("creating {}: {e}", work.display()))?;
        // Alternating: cachectl goes first in odd rounds, the peer in even
        // ones, so neither always meets the page cache or the disk the
        // other left behind.
        let peer_first = round % 2 == 0;
        let (a, b) = match kind {
            Kind::Unpack => {
                let ours_run = |settle: &mut Settle| {
                    settle.wait()?;
                    time(offline(&cachectl, &root, "unpack", REFERENCE).arg(work.join("ours")))
                };
                let peer_run = |settle: &mut Settle| {
                    settle.wait()?;
                    time(
                        Command::new(&umoci)
                            .args(["unpack", "--rootless", "--image"])
                            .arg(format!("{}:unpack", gzip.display()))
                            .arg(work.join("bundle")),
                    )
                };
                if peer_first {
                    let b = peer_run(&mut settle)?;
                    (ours_run(&mut settle)?, b)
                } else {
                    let a = ours_run(&mut settle)?;
                    (a, peer_run(&mut settle)?)
                }
            }
            Kind::Build => {
                // A new label makes a new cache key: every round builds,
                // and nothing is deleted.
                let label = format!("r{round}");
                let output = work.join("ours.ext4");
                let ours_run = |settle: &mut Settle| {
                    settle.wait()?;
                    time(
                        offline(&cachectl, &root, "build", REFERENCE)
                            .args(["--label", &label, "-o"])
                            .arg(&output),
                    )
                };
                // The peer's image gets the size of ours, so cachectl runs
                // first when no earlier round told the size.
                let peer_run = |settle: &mut Settle, size: u64| {
                    settle.wait()?;
                    let started = Instant::now();
                    cmd::output(
                        Command::new(&umoci)
                            .args(["unpack", "--rootless", "--image"])
                            .arg(format!("{}:unpack", gzip.display()))
                            .arg(work.join("bundle")),
                    )?;
                    cmd::output(
                        Command::new(&mke2fs)
                            .args(["-q", "-F", "-t", "ext4", "-d"])
                            .arg(work.join("bundle/rootfs"))
                            .arg(work.join("theirs.ext4"))
                            .arg(format!("{}k", size / 1024)),
                    )?;
                    Ok::<_, Error>(started.elapsed())
                };
                let size_of = |path: &Path| {
                    std::fs::metadata(path)
                        .map(|m| m.len())
                        .map_err(|e| format!("reading {}: {e}", path.display()))
                };
                let pair = if peer_first && let Some(size) = last_build_size {
                    let b = peer_run(&mut settle, size)?;
                    (ours_run(&mut settle)?, b)
                } else {
                    let a = ours_run(&mut settle)?;
                    let built = size_of(&output)?;
                    last_build_size = Some(built);
                    (a, peer_run(&mut settle, built)?)
                };
                if as_root {
                    settle.wait()?;
                    ours_root.push(time(
                        Command::new(&cachectl)
                            .arg("--root")
                            .arg(&root)
                            .args(["-q", "build", "--offline", "--label"])
                            .arg(format!("root-{round}"))
                            .arg("-o")
                            .arg(work.join("ours-root.ext4"))
                            .arg(REFERENCE),
                    )?);
                }
                // The other input, for comparison: an unpacked tree.
                settle.wait()?;
                ours_tree.push(time(
                    offline(&cachectl, &root, "build", REFERENCE)
                        .args(["--input", "tree", "--label"])
                        .arg(format!("tree-{round}"))
                        .arg("-o")
                        .arg(work.join("ours-tree.ext4")),
                )?);
                for kind in &mut read_only {
                    settle.wait()?;
                    read_only_round(&cachectl, &root, &work, round, kind)?;
                }
                pair
            }
        };
        if kind == Kind::Unpack {
            settle.wait()?;
            ours_zstd.push(time(
                offline(&cachectl, &root, "unpack", ZSTD_REFERENCE).arg(work.join("ours-zstd")),
            )?);
        }
        eprintln!(
            "xtask: round {round}/{rounds}: cachectl {:.0} ms, peer {:.0} ms{}",
            a.as_secs_f64() * 1e3,
            b.as_secs_f64() * 1e3,
            if peer_first { " (peer first)" } else { "" }
        );
        ours.push(a);
        theirs.push(b);
    }
    let extra = match kind {
        Kind::Build => Some(build_extras(&cachectl, &root, &mut settle)?),
        Kind::Unpack => None,
    };
    let umoci_zstd = Command::new(&umoci)
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:unpack", zstd.display()))
        .arg(dir.join("zstd-bundle"))
        .output()
        .map_err(|e| format!("running umoci: {e}"))?;
    let umoci_zstd = if umoci_zstd.status.success() {
        "unpacked it".to_owned()
    } else {
        String::from_utf8_lossy(&umoci_zstd.stderr)
            .lines()
            .last()
            .unwrap_or("failed")
            .trim()
            .to_owned()
    };
    if keep {
        eprintln!("xtask: kept the store {}", root.display());
    } else {
        let _ = remove_tree(&dir);
    }
    let (ours, theirs) = (Summary::of(&ours), Summary::of(&theirs));
    let (name, peer) = match kind {
        Kind::Unpack => ("unpack", "umoci unpack --rootless"),
        Kind::Build => ("build", "umoci unpack --rootless + mke2fs -d"),
    };
    println!("\n{}\n", header(name, rounds, size_mib, shape, layers));
    println!("| {name} | median ms | min ms | max ms |\n|---|---:|---:|---:|");
    println!(
        "| cachectl {name} --rootless | {:.1} | {:.1} | {:.1} |",
        ours.median, ours.min, ours.max
    );
    println!(
        "| {peer} | {:.1} | {:.1} | {:.1} |",
        theirs.median, theirs.min, theirs.max
    );
    if kind == Kind::Unpack {
        let zstd = Summary::of(&ours_zstd);
        println!(
            "| cachectl unpack, zstd layer{} | {:.1} | {:.1} | {:.1} |",
            if layers > 1 { "s" } else { "" },
            zstd.median,
            zstd.min,
            zstd.max
        );
        println!("\numoci on the zstd image: {umoci_zstd}");
    }
    if !ours_root.is_empty() {
        let root = Summary::of(&ours_root);
        println!(
            "| cachectl {name} (as root) | {:.1} | {:.1} | {:.1} |",
            root.median, root.min, root.max
        );
    }
    if !ours_tree.is_empty() {
        let tree = Summary::of(&ours_tree);
        println!(
            "| cachectl build --rootless --input tree | {:.1} | {:.1} | {:.1} |",
            tree.median, tree.min, tree.max
        );
    }
    // An unpack bench builds no read-only image.
    for kind in read_only.iter().filter(|kind| !kind.times.is_empty()) {
        let times = Summary::of(&kind.times);
        println!(
            "| cachectl build --rootless --fs {} | {:.1} | {:.1} | {:.1} |",
            kind.fs, times.median, times.min, times.max
        );
    }
    if kind == Kind::Build {
        let mut sizes = vec![format!(
            "ext4 {:.1} MiB (with its free space)",
            last_build_size.unwrap_or(0) as f64 / 1048576.0
        )];
        for kind in &read_only {
            sizes.push(format!(
                "{} {:.1} MiB",
                kind.fs,
                kind.size as f64 / 1048576.0
            ));
        }
        println!(
            "
image sizes: {}",
            sizes.join(", ")
        );
        if !read_only_types.contains(&"erofs") {
            println!("erofs: not measured (mkfs.erofs 1.8 or later is not installed)");
        }
    }
    if let Some(extra) = extra {
        println!(
            "| cachectl build, cache hit ({} runs) | {:.1} | {:.1} | {:.1} |",
            extra.hits.len(),
            extra.hit.median,
            extra.hit.min,
            extra.hit.max
        );
        match extra.peak_rss_kib {
            Some(kib) => println!("\npeak RSS of a cold build: {:.1} MiB", kib as f64 / 1024.0),
            None => println!("\npeak RSS of a cold build: not measured (no /usr/bin/time)"),
        }
    }
    let target = match kind {
        Kind::Unpack => UNPACK_TARGET,
        Kind::Build => BUILD_TARGET,
    };
    let ratio = ours.median / theirs.median;
    let met = ratio <= target;
    println!(
        "\ncachectl/peer: {ratio:.2} (target <= {target}) {}",
        if met { "met" } else { "MISSED" }
    );
    if !met {
        eprintln!("xtask: warning: {name} target missed: cachectl/peer {ratio:.2} > {target}");
    }
    Ok(())
}

/// The first line of the results, e.g. `bench unpack: 5 rounds, 100 MiB of
/// content in 1 MiB files, one gzip layer`.
fn header(name: &str, rounds: u32, size_mib: u64, shape: BenchShape, layers: u32) -> String {
    let files = match shape {
        BenchShape::SmallFiles => "small files",
        BenchShape::DebianLike => "a Debian-like tree",
        _ => "1 MiB files",
    };
    let layers = match layers {
        1 => "one gzip layer".to_owned(),
        n => format!("{n} gzip layers"),
    };
    format!("bench {name}: {rounds} rounds, {size_mib} MiB of content in {files}, {layers}")
}

/// The builds of one read-only type, timed in each round.
struct ReadOnly {
    fs: &'static str,
    times: Vec<Duration>,
    /// The size of the last image.
    size: u64,
}

/// The read-only types this host builds: squashfs, and erofs where
/// `mkfs.erofs` (on `PATH`) is 1.8 or later.
fn read_only_types() -> Vec<&'static str> {
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
    let output = work.join(format!("ours.{}", kind.fs));
    kind.times.push(time(
        offline(cachectl, root, "build", REFERENCE)
            .args(["--fs", kind.fs, "--init"])
            .arg(&init)
            .arg("-o")
            .arg(&output),
    )?);
    kind.size = std::fs::metadata(&output)
        .map_err(|e| format!("reading {}: {e}", output.display()))?
        .len();
    Ok(())
}

/// What `bench build` measures after its rounds.
struct Extras {
    hits: Vec<Duration>,
    hit: Summary,
    peak_rss_kib: Option<u64>,
}

/// Times [`HIT_RUNS`] cache hits (the image of round 1, no `-o`) and
/// measures the peak RSS of one more cold build with GNU `time` (the
/// largest of cachectl and the children it waited for).
fn build_extras(cachectl: &Path, root: &Path, settle: &mut Settle) -> Result<Extras, Error> {
    let mut hits = Vec::new();
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

/// Parses `args`; defaults: 5 rounds, large files (the size is chosen
/// by shape), one layer.
fn parse(args: &[String]) -> Result<Options, Error> {
    let mut options = Options {
        rounds: 5,
        size_mib: None,
        shape: BenchShape::LargeFiles,
        layers: 1,
        keep: false,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        if flag == "--keep" {
            options.keep = true;
            continue;
        }
        let value = args.next().ok_or(USAGE)?;
        match flag.as_str() {
            "--rounds" => options.rounds = value.parse().map_err(|_| USAGE)?,
            "--size-mib" => options.size_mib = Some(value.parse().map_err(|_| USAGE)?),
            "--shape" => options.shape = parse_shape(value).ok_or(USAGE)?,
            "--layers" => options.layers = value.parse().map_err(|_| USAGE)?,
            _ => return Err(USAGE.into()),
        }
    }
    if options.rounds == 0 || options.size_mib == Some(0) || options.layers == 0 {
        return Err(USAGE.into());
    }
    Ok(options)
}

/// The shape named `value` on the command line.
fn parse_shape(value: &str) -> Option<BenchShape> {
    match value {
        "large-files" => Some(BenchShape::LargeFiles),
        "small-files" => Some(BenchShape::SmallFiles),
        "debian-like" => Some(BenchShape::DebianLike),
        _ => None,
    }
}

/// How long ext4 keeps a deleted inode from being reused, plus margin. On
/// an ext4 without a journal (this VM's root file system is one), the inode
/// allocator reads and skips every inode deleted in the last 30 s
/// (`recently_deleted()` in `fs/ext4/ialloc.c`, 35 s while its block is
/// dirty), so right after a tree of 13,000 files is deleted each new inode
/// costs hundreds of microseconds of kernel time, whichever tool creates it.
const RECENTLY_DELETED: Duration = Duration::from_secs(36);

/// What runs before each timed run: `sync` (so that no run pays for the
/// write-back of the ones before it) and, once, a wait until
/// [`RECENTLY_DELETED`] has passed since the bench deleted an earlier
/// bench's files at start.
struct Settle {
    deleted_at: Option<Instant>,
}

impl Settle {
    /// `deleted`: the bench deleted files just now (an earlier bench's).
    fn new(deleted: bool) -> Self {
        Settle {
            deleted_at: deleted.then(Instant::now),
        }
    }

    /// Syncs and waits out the window, once.
    fn wait(&mut self) -> Result<(), Error> {
        cmd::run(&mut Command::new("sync"))?;
        if let Some(deleted_at) = self.deleted_at.take() {
            let left = RECENTLY_DELETED.saturating_sub(deleted_at.elapsed());
            if !left.is_zero() {
                eprintln!(
                    "xtask: waiting {:.0} s for ext4 to stop skipping recently deleted inodes",
                    left.as_secs_f64()
                );
                std::thread::sleep(left);
            }
        }
        Ok(())
    }
}

/// `cachectl --root ROOT -q COMMAND --offline --rootless REFERENCE`, for
/// the caller to add the target.
fn offline(cachectl: &Path, root: &Path, command: &str, reference: &str) -> Command {
    let mut run = Command::new(cachectl);
    run.arg("--root")
        .arg(root)
        .args(["-q", command, "--offline", "--rootless", reference]);
    run
}

/// Runs `command` to success and returns how long it took.
fn time(command: &mut Command) -> Result<Duration, Error> {
    let started = Instant::now();
    cmd::output(command)?;
    Ok(started.elapsed())
}

/// Removes a tree even where a rootless unpack left directories without
/// write permission.
fn remove_tree(dir: &Path) -> Result<(), Error> {
    if !dir.exists() {
        return Ok(());
    }
    let _ = Command::new("chmod")
        .arg("-R")
        .arg("u+rwx")
        .arg(dir)
        .status();
    std::fs::remove_dir_all(dir).map_err(|e| format!("removing {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_refuse_nonsense() {
        let args = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let options = |rounds, size_mib, shape| Options {
            rounds,
            size_mib,
            shape,
            layers: 1,
            keep: false,
        };
        assert_eq!(
            parse(&args(&[])),
            Ok(options(5, None, BenchShape::LargeFiles))
        );
        assert_eq!(
            parse(&args(&["--rounds", "3", "--size-mib", "10"])),
            Ok(options(3, Some(10), BenchShape::LargeFiles))
        );
        assert_eq!(
            parse(&args(&["--shape", "small-files"])),
            Ok(options(5, None, BenchShape::SmallFiles))
        );
        assert_eq!(
            parse(&args(&["--shape", "debian-like"])),
            Ok(options(5, None, BenchShape::DebianLike))
        );
        assert_eq!(
            parse(&args(&["--keep", "--rounds", "2"])),
            Ok(Options {
                keep: true,
                ..options(2, None, BenchShape::LargeFiles)
            })
        );
        assert_eq!(
            parse(&args(&["--layers", "4", "--shape", "small-files"])),
            Ok(Options {
                layers: 4,
                ..options(5, None, BenchShape::SmallFiles)
            })
        );
        assert!(parse(&args(&["--layers", "0"])).is_err());
        assert!(parse(&args(&["--layers", "two"])).is_err());
        assert!(parse(&args(&["--layers", "-1"])).is_err());
        assert!(parse(&args(&["--layers"])).is_err());
        assert!(parse(&args(&["--shape", "tiny"])).is_err());
        assert!(parse(&args(&["--rounds"])).is_err());
        assert!(parse(&args(&["--rounds", "0"])).is_err());
        assert!(parse(&args(&["--fast", "1"])).is_err());
    }

    #[test]
    fn header_names_the_layers() {
        assert_eq!(
            header("unpack", 5, 100, BenchShape::LargeFiles, 1),
            "bench unpack: 5 rounds, 100 MiB of content in 1 MiB files, one gzip layer"
        );
        assert_eq!(
            header("build", 1, 20, BenchShape::SmallFiles, 4),
            "bench build: 1 rounds, 20 MiB of content in small files, 4 gzip layers"
        );
    }
}
