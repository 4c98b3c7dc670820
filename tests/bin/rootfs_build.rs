//! `rootfs-build ROOT REFERENCE`: builds the ext4 image of a stored image
//! with `rootfs::build` and prints its path. The unprivileged-build test
//! runs it as another user.
//!
//! `rootfs-build ROOT REFERENCE --unpack DIR`: unpacks the image into DIR
//! instead and prints the time it took (for measuring by hand).
//!
//! `rootfs-build ROOT REFERENCE --per-layer`: builds one image per layer
//! with `rootfs::build_layers` and prints their paths, a line each.
//!
//! `rootfs-build TAR IMAGE --from-tar`: makes IMAGE from the tar file TAR
//! with `rootfs::ext4_from_tar` (32 MiB, 256 inodes, UUID from the
//! SHA-256 of `ext4 from tar`); the tar-stream tests run it as another
//! user.
//!
//! `rootfs-build ROOT REFERENCE --input INPUT`: builds from that input
//! (`writer`, `tar-stream` or `tree`).
//!
//! `rootfs-build ROOT REFERENCE --label LABEL`: builds with that file system
//! label (a build of its own in the cache: the kill soak uses a new label
//! for each build it kills).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [root, reference] => build(root, reference, &rootfs::BuildOptions::default()),
        [root, reference, flag, dir] if flag == "--unpack" => unpack(root, reference, dir),
        [root, reference, flag] if flag == "--per-layer" => build_layers(root, reference),
        [tar, image, flag] if flag == "--from-tar" => from_tar(tar, image),
        [root, reference, flag, input] if flag == "--input" => {
            let mut options = rootfs::BuildOptions::default();
            options.input = Some(match input.as_str() {
                "tree" => rootfs::Ext4Input::Tree,
                "tar-stream" => rootfs::Ext4Input::TarStream,
                _ => rootfs::Ext4Input::Writer,
            });
            build(root, reference, &options)
        }
        [root, reference, flag, label] if flag == "--label" => {
            let mut options = rootfs::BuildOptions::default();
            options.label = label.clone();
            build(root, reference, &options)
        }
        _ => {
            eprintln!(
                "usage: rootfs-build ROOT REFERENCE [--unpack DIR | --per-layer | --input INPUT | --label LABEL]\n       rootfs-build TAR IMAGE --from-tar"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(path) => {
            println!("{path}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("rootfs-build: {err}");
            let mut source = std::error::Error::source(&*err);
            while let Some(cause) = source {
                eprintln!("caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

fn build(
    root: &str,
    reference: &str,
    options: &rootfs::BuildOptions,
) -> Result<String, Box<dyn std::error::Error>> {
    let reference: ociref::Reference = reference.parse()?;
    let store = ocistore::Store::open(root)?;
    let built = rootfs::build(
        &store.image(&reference, None).expect("stored image"),
        options,
    )?;
    Ok(built.path.display().to_string())
}

fn from_tar(tar: &str, image: &str) -> Result<String, Box<dyn std::error::Error>> {
    let shape = rootfs::TarImage::new(32 << 20, 256, ociref::Digest::sha256_of(b"ext4 from tar"));
    let reader = std::io::BufReader::new(std::fs::File::open(tar)?);
    let options = rootfs::BuildOptions::default();
    rootfs::ext4_from_tar(reader, std::path::Path::new(image), &shape, &options)?;
    Ok(image.to_owned())
}

fn build_layers(root: &str, reference: &str) -> Result<String, Box<dyn std::error::Error>> {
    let reference: ociref::Reference = reference.parse()?;
    let store = ocistore::Store::open(root)?;
    let layers = rootfs::build_layers(
        &store.image(&reference, None).expect("stored image"),
        &rootfs::BuildOptions::default(),
    )?;
    let paths: Vec<String> = layers
        .iter()
        .map(|l| l.path.display().to_string())
        .collect();
    Ok(paths.join("\n"))
}

fn unpack(root: &str, reference: &str, dir: &str) -> Result<String, Box<dyn std::error::Error>> {
    let reference: ociref::Reference = reference.parse()?;
    let store = ocistore::Store::open(root)?;
    let started = std::time::Instant::now();
    let report = rootfs::unpack(
        &store.image(&reference, None).expect("stored image"),
        std::path::Path::new(dir),
        &rootfs::UnpackOptions::default(),
    )?;
    Ok(format!(
        "{} entries, {} bytes in {:?}",
        report.entries,
        report.bytes,
        started.elapsed()
    ))
}
