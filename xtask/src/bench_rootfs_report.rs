//! The report of `cargo xtask bench unpack|build` on stdout: the table of
//! timings, the image sizes and the extras of `build`, and the ratio of
//! cachectl to its peer against the target.

use crate::bench::Summary;
use crate::bench_rootfs::{Bench, Kind, Timings};
use crate::bench_rootfs_build::Extras;
use cachectl_fixtures::bench_image::BenchShape;

/// Target of `build`: cachectl takes at most this share of the peer
/// pipeline's time.
const BUILD_TARGET: f64 = 0.2;
/// Target of `unpack`.
const UNPACK_TARGET: f64 = 0.25;

/// Prints the report of `bench` from what its rounds measured (`timings`),
/// what `build` measured after them (`extra`) and what umoci answered on
/// the zstd image; warns on stderr when the target is missed.
pub(crate) fn print(bench: &Bench, timings: &Timings, extra: Option<&Extras>, umoci_zstd: &str) {
    let (ours, theirs) = (Summary::of(&timings.ours), Summary::of(&timings.theirs));
    let (name, peer) = match bench.kind {
        Kind::Unpack => ("unpack", "umoci unpack --rootless"),
        Kind::Build => ("build", "umoci unpack --rootless + mke2fs -d"),
    };
    println!(
        "\n{}\n",
        header(
            name,
            bench.rounds,
            bench.size_mib,
            bench.shape,
            bench.layers
        )
    );
    println!("| {name} | median ms | min ms | max ms |\n|---|---:|---:|---:|");
    println!(
        "| cachectl {name} --rootless | {:.1} | {:.1} | {:.1} |",
        ours.median, ours.min, ours.max
    );
    println!(
        "| {peer} | {:.1} | {:.1} | {:.1} |",
        theirs.median, theirs.min, theirs.max
    );
    if bench.kind == Kind::Unpack {
        let zstd = Summary::of(&timings.ours_zstd);
        println!(
            "| cachectl unpack, zstd layer{} | {:.1} | {:.1} | {:.1} |",
            if bench.layers > 1 { "s" } else { "" },
            zstd.median,
            zstd.min,
            zstd.max
        );
        println!("\numoci on the zstd image: {umoci_zstd}");
    }
    print_other_builds(name, timings);
    if bench.kind == Kind::Build {
        print_image_sizes(timings);
    }
    if let Some(extra) = extra {
        print_build_extras(extra);
    }
    print_verdict(bench.kind, name, &ours, &theirs);
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

/// The rows of the other builds that were timed: as root, from a tree, and
/// of each read-only type (none of them in an unpack bench).
fn print_other_builds(name: &str, timings: &Timings) {
    if !timings.ours_root.is_empty() {
        let root = Summary::of(&timings.ours_root);
        println!(
            "| cachectl {name} (as root) | {:.1} | {:.1} | {:.1} |",
            root.median, root.min, root.max
        );
    }
    if !timings.ours_output.is_empty() {
        let output = Summary::of(&timings.ours_output);
        println!(
            "| cachectl build --rootless -o FILE (the output synced, the cached copy left to the write-back) | {:.1} | {:.1} | {:.1} |",
            output.median, output.min, output.max
        );
    }
    for (input, times) in timings.ours_mke2fs.iter().filter(|(_, t)| !t.is_empty()) {
        let input_times = Summary::of(times);
        println!(
            "| cachectl build --rootless --input {input} | {:.1} | {:.1} | {:.1} |",
            input_times.median, input_times.min, input_times.max
        );
    }
    // An unpack bench builds no read-only image.
    for kind in timings
        .read_only
        .iter()
        .filter(|kind| !kind.times.is_empty())
    {
        let times = Summary::of(&kind.times);
        println!(
            "| cachectl build --rootless --fs {} | {:.1} | {:.1} | {:.1} |",
            kind.fs, times.median, times.min, times.max
        );
    }
}

/// The sizes of the last images of a build bench, and a note when erofs
/// was not measured.
fn print_image_sizes(timings: &Timings) {
    let mut sizes = vec![format!(
        "ext4 {:.1} MiB (with its free space)",
        timings.last_build_size.unwrap_or(0) as f64 / 1048576.0
    )];
    for kind in &timings.read_only {
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
    if !timings.read_only.iter().any(|kind| kind.fs == "erofs") {
        println!("erofs: not measured (mkfs.erofs 1.8 or later is not installed)");
    }
}

/// The cache-hit row and the peak RSS of a cold build.
fn print_build_extras(extra: &Extras) {
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

/// The ratio of cachectl's median to the peer's against the target of
/// `kind`, and a warning on stderr when it is missed.
fn print_verdict(kind: Kind, name: &str, ours: &Summary, theirs: &Summary) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
