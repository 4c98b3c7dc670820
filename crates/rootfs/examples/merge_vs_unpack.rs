//! `cargo run --release -p rootfs --example merge_vs_unpack -- ROOT REFERENCE [ROUNDS]`:
//! what a directory would cost as a sink of the merged stream. Times,
//! alternating who goes first, `rootfs::unpack` (rootless, each layer
//! applied in turn) into a new directory on `/dev/shm` against
//! `rootfs::merged_tar` (index pass, then emit pass, both decompressing
//! the blobs) into nothing, and the index pass alone (`merge_entries`
//! into a sink that stops at the first entry). Nothing is deleted until
//! all rounds are done.

use rootfs::{EntrySink, MergeOptions, MergedEntry};
use std::time::{Duration, Instant};

/// Stops the merge at its first entry: what is left is the index pass.
struct StopAtFirst;

impl EntrySink for StopAtFirst {
    fn entry(&mut self, _: &MergedEntry<'_>, _: &mut dyn std::io::Read) -> std::io::Result<()> {
        Err(std::io::Error::other("the index pass is done"))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root, reference, rest @ ..] = args.as_slice() else {
        return Err("usage: merge_vs_unpack ROOT REFERENCE [ROUNDS]".into());
    };
    let rounds: u32 = rest.first().map_or(Ok(5), |r| r.parse())?;
    let store = rootfs::ocistore::Store::open(root)?;
    let reference: rootfs::ociref::Reference = reference.parse()?;
    let image = store.image(&reference, None)?;
    let scratch = tempfile::tempdir_in("/dev/shm")?;
    let (mut unpacks, mut merges, mut indexes) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let unpack = |at: u32| -> Result<Duration, Box<dyn std::error::Error>> {
            let started = Instant::now();
            let target = scratch.path().join(format!("tree-{at}"));
            rootfs::unpack(&image, &target, &rootfs::UnpackOptions::rootless())?;
            Ok(started.elapsed())
        };
        let merge = || -> Result<Duration, Box<dyn std::error::Error>> {
            let started = Instant::now();
            rootfs::merged_tar(&image, std::io::sink(), &MergeOptions::default())?;
            Ok(started.elapsed())
        };
        if round % 2 == 0 {
            unpacks.push(unpack(round)?);
            merges.push(merge()?);
        } else {
            merges.push(merge()?);
            unpacks.push(unpack(round)?);
        }
        let started = Instant::now();
        let stopped = rootfs::merge_entries(&image, &mut StopAtFirst, &MergeOptions::default());
        if stopped.is_ok() {
            return Err(
                format!("the index pass did not stop at the first entry: {stopped:?}").into(),
            );
        }
        indexes.push(started.elapsed());
    }
    println!(
        "median of {rounds}: unpack to /dev/shm {:.3} s, merged tar to nothing {:.3} s, index pass alone {:.3} s",
        median(&mut unpacks),
        median(&mut merges),
        median(&mut indexes)
    );
    Ok(())
}

fn median(times: &mut [Duration]) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64()
}
