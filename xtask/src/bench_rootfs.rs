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
//! cache key is new and it really builds. A timed `build` writes the
//! image it keeps and syncs it (no `-o`), as the peer's `mke2fs` writes
//! and syncs its one image; each `build` round also times `build -o FILE`,
//! which writes and syncs a second image. When run as root, each `build`
//! round also times cachectl without `--rootless`. After the rounds,
//! `build` times a cache hit (median of 11) and measures a cold build's
//! peak RSS (GNU `time`). Each `build` round also builds the read-only
//! types (squashfs, and erofs where `mkfs.erofs` is 1.8 or later), timed
//! and sized beside ext4. A zstd variant of the image is unpacked by
//! cachectl and offered to umoci, which (0.4) refuses zstd layers; the
//! bench reports what umoci answered.

use crate::bench_rootfs_build::{ReadOnly, build_extras, read_only_types};
use crate::bench_rootfs_report;
use crate::cmd::{self, Error};
use crate::tools;
use cachectl_fixtures::bench_image::{self, BenchImage, BenchLayer, BenchShape};
use std::path::{Path, PathBuf};
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

/// The reference the bench image is imported under.
pub(crate) const REFERENCE: &str = "bench.local/bench/unpack:v1";
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
    let bench = Bench::prepare(kind, parse(args)?)?;
    bench.import_images()?;
    // Small files: see [`Settle`]; the start above may have deleted a
    // whole earlier bench.
    let mut settle = Settle::new(bench.cleared);
    let mut timings = Timings::new(read_only_types());
    for round in 1..=bench.rounds {
        bench.run_round(round, &mut settle, &mut timings)?;
    }
    let extra = match kind {
        Kind::Build => Some(build_extras(&bench.cachectl, &bench.root, &mut settle)?),
        Kind::Unpack => None,
    };
    let umoci_zstd = bench.umoci_on_zstd()?;
    if bench.keep {
        eprintln!("xtask: kept the store {}", bench.root.display());
    } else {
        let _ = remove_tree(&bench.dir);
    }
    bench_rootfs_report::print(&bench, &timings, extra.as_ref(), &umoci_zstd);
    Ok(())
}

/// A bench ready to run: its options, the tools it runs and where it
/// writes; what every phase of a run reads.
pub(crate) struct Bench {
    pub(crate) kind: Kind,
    pub(crate) rounds: u32,
    /// The content size, the shape's default when not given.
    pub(crate) size_mib: u64,
    pub(crate) shape: BenchShape,
    pub(crate) layers: u32,
    /// Leave the store in place when done.
    pub(crate) keep: bool,
    /// Whether this process runs as root (then `build` also times cachectl
    /// without `--rootless`).
    pub(crate) as_root: bool,
    pub(crate) umoci: PathBuf,
    pub(crate) mke2fs: PathBuf,
    /// The release build of cachectl.
    pub(crate) cachectl: PathBuf,
    /// TARGET/bench-rootfs: everything the bench writes.
    pub(crate) dir: PathBuf,
    /// Whether the start deleted an earlier bench's files.
    pub(crate) cleared: bool,
    /// The store (`--root`) the images are imported into.
    pub(crate) root: PathBuf,
    /// The OCI layout of the gzip image.
    pub(crate) gzip: PathBuf,
    /// The OCI layout of the zstd image.
    pub(crate) zstd: PathBuf,
}

/// What the rounds measured.
pub(crate) struct Timings {
    /// cachectl's `unpack` or `build`.
    pub(crate) ours: Vec<Duration>,
    /// The peer's pipeline.
    pub(crate) theirs: Vec<Duration>,
    /// cachectl's `unpack` of the zstd image (`unpack` only).
    pub(crate) ours_zstd: Vec<Duration>,
    /// cachectl's `build` without `--rootless` (`build` as root only).
    pub(crate) ours_root: Vec<Duration>,
    /// cachectl's `build -o FILE` (`build` only).
    pub(crate) ours_output: Vec<Duration>,
    /// cachectl's `build --input INPUT` for each input through mke2fs
    /// (`build` only).
    pub(crate) ours_mke2fs: Vec<(&'static str, Vec<Duration>)>,
    /// The read-only builds, one entry per type this host builds (timed by
    /// `build` only).
    pub(crate) read_only: Vec<ReadOnly>,
    /// The size of the last ext4 image cachectl built, which the peer's
    /// image is given.
    pub(crate) last_build_size: Option<u64>,
}

impl Timings {
    /// No timings yet, for the read-only `types` this host builds.
    fn new(types: Vec<&'static str>) -> Self {
        Timings {
            ours: Vec::new(),
            theirs: Vec::new(),
            ours_zstd: Vec::new(),
            ours_root: Vec::new(),
            ours_output: Vec::new(),
            ours_mke2fs: vec![("tar-stream", Vec::new()), ("tree", Vec::new())],
            read_only: types
                .into_iter()
                .map(|fs| ReadOnly {
                    fs,
                    times: Vec::new(),
                    size: 0,
                })
                .collect(),
            last_build_size: None,
        }
    }
}

impl Bench {
    /// Checks the tools, builds cachectl in release mode and empties
    /// TARGET/bench-rootfs.
    fn prepare(kind: Kind, options: Options) -> Result<Bench, Error> {
        let Options {
            rounds,
            size_mib,
            shape,
            layers,
            keep,
        } = options;
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
        let as_root = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        Ok(Bench {
            kind,
            rounds,
            size_mib,
            shape,
            layers,
            keep,
            as_root,
            umoci,
            mke2fs,
            cachectl,
            cleared,
            root: dir.join("store"),
            gzip: dir.join("layout-gzip"),
            zstd: dir.join("layout-zstd"),
            dir,
        })
    }

    /// Builds the gzip and the zstd bench image as OCI layouts and imports
    /// each into the store.
    fn import_images(&self) -> Result<(), Error> {
        for (layout, layer, reference) in [
            (&self.gzip, BenchLayer::MixedGzip, REFERENCE),
            (&self.zstd, BenchLayer::MixedZstd, ZSTD_REFERENCE),
        ] {
            bench_image::build_bench_layout(
                layout,
                &BenchImage {
                    name: "unpack".to_owned(),
                    content_size: self.size_mib << 20,
                    layer,
                    shape: self.shape,
                    layers: self.layers,
                },
            )
            .map_err(|e| format!("building the bench image: {e}"))?;
            let archive = self.dir.join("image.tar");
            cmd::run(
                Command::new("tar")
                    .arg("-C")
                    .arg(layout)
                    .arg("-cf")
                    .arg(&archive)
                    .arg("."),
            )?;
            cmd::run(
                Command::new(&self.cachectl)
                    .arg("--root")
                    .arg(&self.root)
                    .args(["-q", "import", "--name", reference])
                    .arg(&archive),
            )?;
            std::fs::remove_file(&archive).map_err(|e| format!("removing the archive: {e}"))?;
        }
        Ok(())
    }

    /// Runs round `round` in a new directory: cachectl and the peer, then
    /// the extras of the round (`build`: as root, from a tree, read-only
    /// types; `unpack`: the zstd image), and reports the pair on stderr.
    fn run_round(
        &self,
        round: u32,
        settle: &mut Settle,
        timings: &mut Timings,
    ) -> Result<(), Error> {
        let work = self.dir.join(format!("round-{round}"));
        std::fs::create_dir_all(&work).map_err(|e| format!("creating {}: {e}", work.display()))?;
        // Alternating: cachectl goes first in odd rounds, the peer in even
        // ones, so neither always meets the page cache or the disk the
        // other left behind.
        let peer_first = round.is_multiple_of(2);
        let (a, b) = match self.kind {
            Kind::Unpack => self.unpack_pair(&work, peer_first, settle)?,
            Kind::Build => {
                let pair = self.build_pair(
                    round,
                    &work,
                    peer_first,
                    settle,
                    &mut timings.last_build_size,
                )?;
                self.build_round_extras(round, &work, settle, timings)?;
                pair
            }
        };
        if self.kind == Kind::Unpack {
            settle.wait()?;
            timings.ours_zstd.push(time(
                offline(&self.cachectl, &self.root, "unpack", ZSTD_REFERENCE)
                    .arg(work.join("ours-zstd")),
            )?);
        }
        eprintln!(
            "xtask: round {round}/{}: cachectl {:.0} ms, peer {:.0} ms{}",
            self.rounds,
            a.as_secs_f64() * 1e3,
            b.as_secs_f64() * 1e3,
            if peer_first { " (peer first)" } else { "" }
        );
        timings.ours.push(a);
        timings.theirs.push(b);
        Ok(())
    }

    /// Times `cachectl unpack` and `umoci unpack` into `work`, the peer
    /// first when `peer_first`; returns (cachectl, peer).
    fn unpack_pair(
        &self,
        work: &Path,
        peer_first: bool,
        settle: &mut Settle,
    ) -> Result<(Duration, Duration), Error> {
        let ours_run = |settle: &mut Settle| {
            settle.wait()?;
            time(offline(&self.cachectl, &self.root, "unpack", REFERENCE).arg(work.join("ours")))
        };
        let peer_run = |settle: &mut Settle| {
            settle.wait()?;
            time(
                Command::new(&self.umoci)
                    .args(["unpack", "--rootless", "--image"])
                    .arg(format!("{}:unpack", self.gzip.display()))
                    .arg(work.join("bundle")),
            )
        };
        Ok(if peer_first {
            let b = peer_run(settle)?;
            (ours_run(settle)?, b)
        } else {
            let a = ours_run(settle)?;
            (a, peer_run(settle)?)
        })
    }

    /// Offers the zstd image to `umoci unpack` (0.4 refuses zstd layers)
    /// and returns what it answered: `unpacked it` or the last line of its
    /// error.
    fn umoci_on_zstd(&self) -> Result<String, Error> {
        let output = Command::new(&self.umoci)
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:unpack", self.zstd.display()))
            .arg(self.dir.join("zstd-bundle"))
            .output()
            .map_err(|e| format!("running umoci: {e}"))?;
        Ok(if output.status.success() {
            "unpacked it".to_owned()
        } else {
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or("failed")
                .trim()
                .to_owned()
        })
    }
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
pub(crate) struct Settle {
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
    pub(crate) fn wait(&mut self) -> Result<(), Error> {
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
pub(crate) fn offline(cachectl: &Path, root: &Path, command: &str, reference: &str) -> Command {
    let mut run = Command::new(cachectl);
    run.arg("--root")
        .arg(root)
        .args(["-q", command, "--offline", "--rootless", reference]);
    run
}

/// Runs `command` to success and returns how long it took.
pub(crate) fn time(command: &mut Command) -> Result<Duration, Error> {
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
}
