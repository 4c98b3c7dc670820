//! `cargo run --release -p rootfs --example tar_sink -- ROOT REFERENCE [ROUNDS]`:
//! times, alternating, today's `rootfs::build` (a tree, `mke2fs -d DIR`,
//! a `debugfs` pass) against `rootfs::export_tar` piped into
//! `rootfs::ext4_from_tar` (`mke2fs -d -`) for a stored image, and the two
//! stages of the tar path apart. Each build gets its own label, so nothing
//! is deleted between rounds and every round really builds.

use std::path::Path;
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
        let run_tree = |size: &mut u64| -> Result<Duration, Box<dyn std::error::Error>> {
            let mut options = rootfs::BuildOptions::default();
            options.label = format!("bench-{}-{round}", std::process::id() % 1000);
            let started = Instant::now();
            let built = rootfs::build(&store.image(&reference, None)?, &options)?;
            *size = built.size;
            Ok(started.elapsed())
        };
        let image = out.path().join(format!("tar-{round}.ext4"));
        let run_stream = |size: u64| -> Result<Duration, Box<dyn std::error::Error>> {
            let seed = rootfs::ociref::Digest::sha256_of(b"tar sink");
            let shape = rootfs::TarImage::new(size, inodes, seed);
            let started = Instant::now();
            piped(&store, &reference, &image, &shape)?;
            Ok(started.elapsed())
        };
        if round % 2 == 0 {
            tree.push(run_tree(&mut size)?);
            stream.push(run_stream(size)?);
        } else {
            let size_now = if size == 0 { 1 << 30 } else { size };
            stream.push(run_stream(size_now)?);
            tree.push(run_tree(&mut size)?);
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
        "{} entries, {} MB tar; median of {rounds}: build (tree) {:.2} s, export_tar | ext4_from_tar {:.2} s; \
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

/// `export_tar` on a thread writing into a pipe that `ext4_from_tar` reads.
fn piped(
    store: &rootfs::ocistore::Store,
    reference: &rootfs::ociref::Reference,
    image: &Path,
    shape: &rootfs::TarImage,
) -> Result<(), Box<dyn std::error::Error>> {
    let (reader, writer) = std::io::pipe()?;
    std::thread::scope(|scope| {
        let export = scope.spawn(move || {
            rootfs::export_tar(
                &store.image(reference, None)?,
                std::io::BufWriter::with_capacity(1 << 20, writer),
            )
        });
        let made = rootfs::ext4_from_tar(reader, image, shape, &rootfs::BuildOptions::default());
        let exported = export.join().map_err(|_| "export thread panicked")?;
        exported?;
        made?;
        Ok(())
    })
}

fn median(times: &mut [Duration]) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64()
}
