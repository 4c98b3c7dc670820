//! `cargo run --release -p rootfs --example tar_sink -- ROOT REFERENCE [ROUNDS]`:
//! times, alternating, `rootfs::build` from a tree (`mke2fs -d DIR`, a
//! `debugfs` pass) against `rootfs::build` from the merged tar stream
//! (`mke2fs -d -`) for a stored image, and the two stages of the tar path
//! apart (`export_tar` to memory, `ext4_from_tar` from it). Each build
//! gets its own label, so nothing is deleted between rounds and every
//! round really builds.

use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root, reference, rest @ ..] = args.as_slice() else {
        return Err("usage: tar_sink ROOT REFERENCE [ROUNDS]".into());
    };
    let rounds: u32 = rest.first().map_or(Ok(5), |r| r.parse())?;
    let store = rootfs::ocistore::Store::open(root)?;
    let reference: rootfs::ociref::Reference = reference.parse()?;
    let out = tempfile::tempdir_in(root)?;
    // Untimed: the entry count sizes the stream's image, as a caller that
    // knows the image would.
    let mut tar = Vec::new();
    let report = rootfs::export_tar(&store.image(&reference, None)?, &mut tar)?;
    let inodes = report.entries * 5 / 4 + 256;
    let mut tree = Vec::new();
    let mut stream = Vec::new();
    let mut size = 0;
    for round in 0..rounds {
        let run =
            |input: rootfs::Ext4Input| -> Result<(Duration, u64), Box<dyn std::error::Error>> {
                let mut options = rootfs::BuildOptions::default();
                options.input = Some(input);
                options.label = format!("bench-{}-{round}", std::process::id() % 1000);
                let started = Instant::now();
                let built = rootfs::build(&store.image(&reference, None)?, &options)?;
                Ok((started.elapsed(), built.size))
            };
        let (first, second) = if round % 2 == 0 {
            (rootfs::Ext4Input::Tree, rootfs::Ext4Input::TarStream)
        } else {
            (rootfs::Ext4Input::TarStream, rootfs::Ext4Input::Tree)
        };
        for input in [first, second] {
            let (took, built_size) = run(input)?;
            match input {
                rootfs::Ext4Input::Tree => {
                    tree.push(took);
                    size = built_size;
                }
                _ => stream.push(took),
            }
        }
    }
    // The stages apart: export to memory, then mke2fs from memory.
    let started = Instant::now();
    let mut tar = Vec::new();
    rootfs::export_tar(&store.image(&reference, None)?, &mut tar)?;
    let export = started.elapsed();
    let started = Instant::now();
    let shape = rootfs::TarImage::new(size, inodes, rootfs::ociref::Digest::sha256_of(b"tar sink"));
    rootfs::ext4_from_tar(
        &tar[..],
        &out.path().join("stage.ext4"),
        &shape,
        &rootfs::BuildOptions::default(),
    )?;
    let mke2fs = started.elapsed();
    println!(
        "{} entries, {} MB tar; median of {rounds}: build from a tree {:.2} s, from the tar stream {:.2} s; \
         stages: export_tar {:.2} s, ext4_from_tar from memory {:.2} s",
        report.entries,
        tar.len() / 1_000_000,
        median(&mut tree),
        median(&mut stream),
        export.as_secs_f64(),
        mke2fs.as_secs_f64()
    );
    Ok(())
}

fn median(times: &mut [Duration]) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64()
}
