//! `cargo xtask bench pull`: how fast and how lean a pull into the store is,
//! next to `skopeo copy`, against a local anonymous registry.
//!
//! What it does, in order:
//! 1. builds `store-pull` (tests/bin) in release mode;
//! 2. starts only the anonymous `docker-registry`, its data in
//!    `target/bench/registry`;
//! 3. builds a deterministic single-layer gzip image of `--size-mib` MiB of
//!    mixed random and text files ([`cachectl_fixtures::bench_image`]) and
//!    pushes it as `ADDR/bench/pull:v1`;
//! 4. for each of `--rounds` rounds times a cold pull by `store-pull` into an
//!    empty store, a cold `skopeo copy` into an empty OCI layout, then both
//!    again onto what they wrote (warm);
//! 5. counts the requests of one warm `store-pull` through a small counting
//!    proxy ([`CountingProxy`]);
//! 6. with `--rss-gib G` (not 0) pushes a single-layer image whose layer is
//!    G GiB (uncompressed tar of random bytes), pulls it once and reads
//!    `store-pull`'s peak RSS (`VmHWM`);
//! 7. prints medians, min and max, the cachectl/skopeo ratios, and warns
//!    (never fails) when a target is missed.
//!
//! Everything it writes lives under `target/bench/` (emptied at start; the
//! large files are deleted when done); the registry is stopped on every
//! exit path by its guard. Not part of `cargo xtask test`. The figures and
//! how to read them: `docs/benchmarks.md`.

use crate::cmd::{self, Error};
use crate::counting_proxy::CountingProxy;
use crate::registry::AnonymousRegistry;
use crate::tools;
use cachectl_fixtures::bench_image::{self, BenchImage, BenchLayer, BenchShape};
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: cargo xtask bench pull [--rounds N] [--size-mib M] [--rss-gib G]
       cargo xtask bench unpack|build [--rounds N] [--size-mib M] [--shape large-files|small-files]";

/// Repository prefix of the bench images: `ADDR/bench/<name>:v1`.
const REPO_PREFIX: &str = "bench";
/// The name of the timed image.
const PULL_IMAGE: &str = "pull";
/// The name of the large image of the RSS measurement.
const RSS_IMAGE: &str = "rss";
/// The image name skopeo writes into its OCI layouts (`oci:DIR:bench`).
const SKOPEO_REF_NAME: &str = "bench";

/// Target: a cold pull takes at most this share of skopeo's time.
const COLD_RATIO_TARGET: f64 = 0.5;
/// Target: a warm pull takes at most this many milliseconds.
const WARM_MS_TARGET: f64 = 20.0;
/// Target: a warm pull makes this many requests.
const WARM_REQUESTS_TARGET: usize = 1;
/// Target: the peak RSS of a pull of a large layer, in KiB (64 MiB).
const RSS_TARGET_KIB: u64 = 64 * 1024;

/// Entry point of `cargo xtask bench`.
pub(crate) fn run(args: &[String]) -> Result<(), Error> {
    match args.first().map(String::as_str) {
        Some("pull") => run_pull(&parse_options(&args[1..])?),
        Some("unpack") => crate::bench_rootfs::run(crate::bench_rootfs::Kind::Unpack, &args[1..]),
        Some("build") => crate::bench_rootfs::run(crate::bench_rootfs::Kind::Build, &args[1..]),
        Some(other) => Err(format!("unknown benchmark `{other}`; {USAGE}")),
        None => Err(USAGE.to_owned()),
    }
}

/// The options of `bench pull`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Options {
    rounds: usize,
    size_mib: u64,
    rss_gib: u64,
}

impl Default for Options {
    /// 5 rounds of 100 MiB, and a 1 GiB layer for the RSS measurement.
    fn default() -> Self {
        Options {
            rounds: 5,
            size_mib: 100,
            rss_gib: 1,
        }
    }
}

/// Parses the arguments of `bench pull`; defaults: 5 rounds, 100 MiB, 1 GiB
/// for the RSS measurement.
fn parse_options(args: &[String]) -> Result<Options, Error> {
    let mut options = Options::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<u64, Error> {
            let text = args
                .next()
                .ok_or_else(|| format!("{name} needs a value; {USAGE}"))?;
            text.parse()
                .map_err(|_| format!("{name} takes a whole number, not `{text}`; {USAGE}"))
        };
        match arg.as_str() {
            "--rounds" => {
                options.rounds = usize::try_from(value("--rounds")?)
                    .map_err(|_| "--rounds is too large".to_owned())?;
            }
            "--size-mib" => options.size_mib = value("--size-mib")?,
            "--rss-gib" => options.rss_gib = value("--rss-gib")?,
            other => return Err(format!("unexpected argument `{other}`; {USAGE}")),
        }
    }
    if options.rounds == 0 || options.size_mib == 0 {
        return Err(format!(
            "--rounds and --size-mib must be at least 1; {USAGE}"
        ));
    }
    Ok(options)
}

/// What `store-pull` reports with `STORE_PULL_REPORT=1`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PullReport {
    fetched_blobs: u64,
    up_to_date: bool,
    peak_rss_kib: Option<u64>,
}

/// Parses the last line of `store-pull`'s stdout.
fn parse_report(stdout: &str) -> Result<PullReport, Error> {
    let line = stdout
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .ok_or("store-pull printed no report")?;
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("store-pull report {line:?}: {e}"))?;
    let fetched_blobs = value["fetched_blobs"]
        .as_u64()
        .ok_or_else(|| format!("store-pull report {line:?} has no fetched_blobs"))?;
    let up_to_date = value["up_to_date"]
        .as_bool()
        .ok_or_else(|| format!("store-pull report {line:?} has no up_to_date"))?;
    Ok(PullReport {
        fetched_blobs,
        up_to_date,
        peak_rss_kib: value["peak_rss_kib"].as_u64(),
    })
}

/// Median, minimum and maximum of some timings, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Summary {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Summary {
    /// Summarizes `samples` (at least one).
    pub(crate) fn of(samples: &[Duration]) -> Summary {
        let millis: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        Summary {
            median: median(&millis),
            min: millis.iter().copied().fold(f64::INFINITY, f64::min),
            max: millis.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

/// The median of `values`: the middle one, or the mean of the two middle
/// ones for an even count; NaN for none.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The timings of all rounds.
#[derive(Default)]
struct Rounds {
    cold_cachectl: Vec<Duration>,
    cold_skopeo: Vec<Duration>,
    warm_cachectl: Vec<Duration>,
    warm_skopeo: Vec<Duration>,
    cold_rss_kib: Vec<u64>,
}

/// Runs `bench pull` with `options`: the steps listed at the top of this
/// module.
fn run_pull(options: &Options) -> Result<(), Error> {
    let skopeo =
        tools::find("skopeo").ok_or("skopeo is not installed (Debian package `skopeo`)")?;
    let bench = cmd::target_dir()?.join("bench");
    if bench.exists() {
        fs::remove_dir_all(&bench).map_err(|e| format!("removing {}: {e}", bench.display()))?;
    }
    create_dir(&bench)?;
    let store_pull = build_store_pull()?;

    // Dropped (stopped, its data removed) on every return below.
    let registry = AnonymousRegistry::start(&bench.join("registry"))?;
    let addr = registry.addr().to_string();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    let client = ocidist::Client::new(
        ocidist::ClientConfig::default(),
        Arc::new(ocidist::credentials::StaticCredentials::new()),
    )
    .map_err(|e| format!("building the registry client: {e}"))?;
    let push = |image: &BenchImage| -> Result<u64, Error> {
        build_and_push(&runtime, &client, &bench.join("image"), image, &addr)
    };

    let layer_size = push(&pull_image(
        PULL_IMAGE,
        options.size_mib << 20,
        BenchLayer::MixedGzip,
    ))?;
    let content = options.size_mib << 20;
    eprintln!(
        "xtask: bench image: {} MiB of file content, gzip layer {:.1} MiB (ratio {:.2})",
        options.size_mib,
        mib(layer_size),
        layer_size as f64 / content as f64
    );

    let reference = format!(
        "{addr}/{REPO_PREFIX}/{PULL_IMAGE}:{}",
        cachectl_fixtures::TAG
    );
    let mut rounds = Rounds::default();
    let mut warnings = Vec::new();
    for round in 1..=options.rounds {
        let dir = bench.join(format!("round-{round}"));
        let store = dir.join("store");
        let oci = dir.join("oci");
        let (cold, report) = time_store_pull(&store_pull, &store, &reference)?;
        if report.fetched_blobs == 0 || report.up_to_date {
            warnings.push(format!(
                "round {round}: the cold pull fetched nothing ({report:?})"
            ));
        }
        let cold_skopeo = time_skopeo(&skopeo, &reference, &oci)?;
        let (warm, warm_report) = time_store_pull(&store_pull, &store, &reference)?;
        if warm_report.fetched_blobs != 0 || !warm_report.up_to_date {
            warnings.push(format!(
                "round {round}: the warm pull was not a no-op ({warm_report:?})"
            ));
        }
        let warm_skopeo = time_skopeo(&skopeo, &reference, &oci)?;
        eprintln!(
            "xtask: round {round}/{}: cold cachectl {:.0} ms, skopeo {:.0} ms; warm cachectl {:.1} ms, skopeo {:.1} ms",
            options.rounds,
            millis(cold),
            millis(cold_skopeo),
            millis(warm),
            millis(warm_skopeo)
        );
        rounds.cold_cachectl.push(cold);
        rounds.cold_skopeo.push(cold_skopeo);
        rounds.warm_cachectl.push(warm);
        rounds.warm_skopeo.push(warm_skopeo);
        rounds.cold_rss_kib.extend(report.peak_rss_kib);
        remove_dir(&dir)?;
    }

    let requests = count_warm_requests(
        &store_pull,
        &skopeo,
        &bench.join("requests"),
        registry.addr(),
    )?;

    let rss = if options.rss_gib == 0 {
        None
    } else {
        let size = push(&pull_image(
            RSS_IMAGE,
            options.rss_gib << 30,
            BenchLayer::RandomUncompressed,
        ))?;
        let store = bench.join("rss-store");
        let reference = format!(
            "{addr}/{REPO_PREFIX}/{RSS_IMAGE}:{}",
            cachectl_fixtures::TAG
        );
        let (elapsed, report) = time_store_pull(&store_pull, &store, &reference)?;
        remove_dir(&store)?;
        Some((size, elapsed, report))
    };

    drop(registry);
    print_results(
        options,
        layer_size,
        &rounds,
        &requests,
        rss.as_ref(),
        &mut warnings,
    );
    for warning in &warnings {
        eprintln!("xtask: warning: {warning}");
    }
    Ok(())
}

/// Builds `store-pull` in release mode and returns its path.
fn build_store_pull() -> Result<PathBuf, Error> {
    cmd::run(cmd::cargo().args([
        "build",
        "--release",
        "--locked",
        "-p",
        "cachectl-tests",
        "--bin",
        "store-pull",
    ]))?;
    cmd::built_binary("release", "store-pull")
}

/// A single-layer image of 1 MiB files (one file for
/// [`BenchLayer::RandomUncompressed`]) for `bench pull`.
fn pull_image(name: &str, content_size: u64, layer: BenchLayer) -> BenchImage {
    BenchImage {
        name: name.to_owned(),
        content_size,
        layer,
        shape: BenchShape::LargeFiles,
        layers: 1,
    }
}

/// Builds `image` into the layout `dir`, pushes it as
/// `registry/bench/<name>:v1`, removes the layout and returns the size of
/// its layer blob.
fn build_and_push(
    runtime: &tokio::runtime::Runtime,
    client: &ocidist::Client,
    dir: &Path,
    image: &BenchImage,
    registry: &str,
) -> Result<u64, Error> {
    let started = Instant::now();
    let fixture = bench_image::build_bench_layout(dir, image)
        .map_err(|e| format!("building bench image {}: {e}", image.name))?;
    let built = started.elapsed();
    let manifest_path = cachectl_fixtures::blob_path(dir, &fixture.manifest.digest);
    let manifest: serde_json::Value = fs::read(&manifest_path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
        .map_err(|e| format!("reading {}: {e}", manifest_path.display()))?;
    let layer_size = manifest["layers"][0]["size"]
        .as_u64()
        .ok_or_else(|| format!("{} names no layer size", manifest_path.display()))?;
    let started = Instant::now();
    runtime
        .block_on(cachectl_fixtures::push_layout(
            dir,
            std::slice::from_ref(&fixture),
            client,
            registry,
            REPO_PREFIX,
        ))
        .map_err(|e| format!("pushing bench image {} to {registry}: {e}", image.name))?;
    eprintln!(
        "xtask: built {} ({}) in {:.1} s, pushed it in {:.1} s",
        fixture.reference(registry, REPO_PREFIX),
        fixture.manifest.digest,
        built.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    remove_dir(dir)?;
    Ok(layer_size)
}

/// Runs `store-pull ROOT REFERENCE` with the report on; its wall-clock time
/// and report.
fn time_store_pull(
    store_pull: &Path,
    root: &Path,
    reference: &str,
) -> Result<(Duration, PullReport), Error> {
    let mut command = Command::new(store_pull);
    command
        .arg(root)
        .arg(reference)
        .env("STORE_PULL_REPORT", "1");
    let started = Instant::now();
    let stdout = cmd::output(&mut command)?;
    let elapsed = started.elapsed();
    Ok((elapsed, parse_report(&stdout)?))
}

/// Runs `skopeo copy` of `reference` into the OCI layout `dir`; its
/// wall-clock time.
fn time_skopeo(skopeo: &Path, reference: &str, dir: &Path) -> Result<Duration, Error> {
    let started = Instant::now();
    cmd::output(&mut skopeo_copy(skopeo, reference, dir))?;
    Ok(started.elapsed())
}

/// `skopeo copy` of `reference` into the OCI layout `dir`, not yet run.
fn skopeo_copy(skopeo: &Path, reference: &str, dir: &Path) -> Command {
    let mut command = Command::new(skopeo);
    command
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:{SKOPEO_REF_NAME}", dir.display()));
    command
}

/// The requests of the warm pulls, seen through a [`CountingProxy`].
struct Requests {
    cachectl: Vec<String>,
    skopeo: Vec<String>,
}

/// Pulls the bench image once through a counting proxy (cold, with
/// `store-pull` and skopeo), then again (warm), and returns the request
/// lines of the warm pulls.
fn count_warm_requests(
    store_pull: &Path,
    skopeo: &Path,
    dir: &Path,
    registry: SocketAddr,
) -> Result<Requests, Error> {
    let proxy = CountingProxy::start(registry)?;
    let reference = format!(
        "{}/{REPO_PREFIX}/{PULL_IMAGE}:{}",
        proxy.addr(),
        cachectl_fixtures::TAG
    );
    let store = dir.join("store");
    let oci = dir.join("oci");
    time_store_pull(store_pull, &store, &reference)?;
    time_skopeo(skopeo, &reference, &oci)?;
    proxy.take_requests();
    let (_, report) = time_store_pull(store_pull, &store, &reference)?;
    if report.fetched_blobs != 0 {
        return Err(format!(
            "the warm pull through the proxy fetched blobs: {report:?}"
        ));
    }
    let cachectl = proxy.take_requests();
    time_skopeo(skopeo, &reference, &oci)?;
    let skopeo = proxy.take_requests();
    drop(proxy);
    remove_dir(dir)?;
    Ok(Requests { cachectl, skopeo })
}

/// Prints the table of timings, the ratios and request counts against
/// their targets and the RSS figures; adds a warning for every missed target.
fn print_results(
    options: &Options,
    layer_size: u64,
    rounds: &Rounds,
    requests: &Requests,
    rss: Option<&(u64, Duration, PullReport)>,
    warnings: &mut Vec<String>,
) {
    let cold = Summary::of(&rounds.cold_cachectl);
    let cold_skopeo = Summary::of(&rounds.cold_skopeo);
    let warm = Summary::of(&rounds.warm_cachectl);
    let warm_skopeo = Summary::of(&rounds.warm_skopeo);
    let cold_ratio = cold.median / cold_skopeo.median;
    let warm_ratio = warm.median / warm_skopeo.median;

    println!();
    println!(
        "bench pull: {} rounds, {} MiB of content, gzip layer {:.1} MiB",
        options.rounds,
        options.size_mib,
        mib(layer_size)
    );
    println!();
    println!("| pull | median ms | min ms | max ms |");
    println!("|---|---:|---:|---:|");
    for (name, summary) in [
        ("cold cachectl (store-pull)", cold),
        ("cold skopeo copy", cold_skopeo),
        ("warm cachectl (store-pull)", warm),
        ("warm skopeo copy", warm_skopeo),
    ] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            summary.median, summary.min, summary.max
        );
    }
    println!();
    println!(
        "cold cachectl/skopeo: {cold_ratio:.2} (target <= {COLD_RATIO_TARGET}) {}",
        verdict(cold_ratio <= COLD_RATIO_TARGET)
    );
    println!(
        "warm cachectl/skopeo: {warm_ratio:.3}; warm cachectl median {:.1} ms (target <= {WARM_MS_TARGET} ms) {}",
        warm.median,
        verdict(warm.median <= WARM_MS_TARGET)
    );
    println!(
        "warm cachectl requests: {} (target {WARM_REQUESTS_TARGET}) {}: {}",
        requests.cachectl.len(),
        verdict(requests.cachectl.len() == WARM_REQUESTS_TARGET),
        requests.cachectl.join(", ")
    );
    println!(
        "warm skopeo requests: {}: {}",
        requests.skopeo.len(),
        requests.skopeo.join(", ")
    );
    if let Some(peak) = rounds.cold_rss_kib.iter().max() {
        println!(
            "peak RSS of the cold cachectl pulls: {:.1} MiB",
            *peak as f64 / 1024.0
        );
    }
    if cold_ratio > COLD_RATIO_TARGET {
        warnings.push(format!(
            "cold pull target missed: cachectl/skopeo {cold_ratio:.2} > {COLD_RATIO_TARGET}"
        ));
    }
    if warm.median > WARM_MS_TARGET {
        warnings.push(format!(
            "warm pull target missed: median {:.1} ms > {WARM_MS_TARGET} ms",
            warm.median
        ));
    }
    if requests.cachectl.len() != WARM_REQUESTS_TARGET {
        warnings.push(format!(
            "warm pull made {} requests, not {WARM_REQUESTS_TARGET}",
            requests.cachectl.len()
        ));
    }
    match rss {
        None => println!("peak RSS of a large pull: skipped (--rss-gib 0)"),
        Some((size, elapsed, report)) => {
            let peak = report.peak_rss_kib.unwrap_or(u64::MAX);
            let met = peak < RSS_TARGET_KIB;
            println!(
                "peak RSS pulling a {:.0} MiB uncompressed layer: {} (target < {} MiB) {} ({:.1} s)",
                mib(*size),
                report
                    .peak_rss_kib
                    .map_or("unknown".to_owned(), |kib| format!(
                        "{:.1} MiB",
                        kib as f64 / 1024.0
                    )),
                RSS_TARGET_KIB / 1024,
                verdict(met),
                elapsed.as_secs_f64()
            );
            if !met {
                warnings.push(format!(
                    "RSS target missed: peak {} KiB >= {RSS_TARGET_KIB} KiB",
                    report
                        .peak_rss_kib
                        .map_or("unknown".to_owned(), |kib| kib.to_string())
                ));
            }
        }
    }
}

/// `met` or `MISSED`.
fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// `duration` in milliseconds.
fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// `bytes` in MiB.
fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

/// Creates `dir` and its parents.
fn create_dir(dir: &Path) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))
}

/// Removes the tree `dir`.
fn remove_dir(dir: &Path) -> Result<(), Error> {
    fs::remove_dir_all(dir).map_err(|e| format!("removing {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[7.0]), 7.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn summary_has_median_min_and_max_in_milliseconds() {
        let samples = [
            Duration::from_millis(30),
            Duration::from_millis(10),
            Duration::from_millis(20),
        ];
        assert_eq!(
            Summary::of(&samples),
            Summary {
                median: 20.0,
                min: 10.0,
                max: 30.0
            }
        );
    }

    #[test]
    fn options_default_and_parse() {
        assert_eq!(parse_options(&[]), Ok(Options::default()));
        let args: Vec<String> = ["--rounds", "3", "--size-mib", "10", "--rss-gib", "0"]
            .map(str::to_owned)
            .to_vec();
        assert_eq!(
            parse_options(&args),
            Ok(Options {
                rounds: 3,
                size_mib: 10,
                rss_gib: 0
            })
        );
        assert!(parse_options(&["--rounds".to_owned(), "0".to_owned()]).is_err());
        assert!(parse_options(&["--rounds".to_owned(), "x".to_owned()]).is_err());
        assert!(parse_options(&["--rounds".to_owned()]).is_err());
        assert!(parse_options(&["--fast".to_owned()]).is_err());
    }

    #[test]
    fn report_is_read_from_the_last_line() {
        let stdout = "noise\n{\"fetched_blobs\":3,\"up_to_date\":false,\"peak_rss_kib\":20480}\n";
        assert_eq!(
            parse_report(stdout),
            Ok(PullReport {
                fetched_blobs: 3,
                up_to_date: false,
                peak_rss_kib: Some(20480)
            })
        );
        let unknown_rss = "{\"fetched_blobs\":0,\"up_to_date\":true,\"peak_rss_kib\":null}";
        assert_eq!(parse_report(unknown_rss).map(|r| r.peak_rss_kib), Ok(None));
        assert!(parse_report("").is_err());
        assert!(parse_report("{\"up_to_date\":true}").is_err());
    }
}
