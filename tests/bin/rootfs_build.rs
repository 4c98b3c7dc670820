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
        [root, reference, flag, label] if flag == "--label" => {
            let mut options = rootfs::BuildOptions::default();
            options.label = label.clone();
            build(root, reference, &options)
        }
        _ => {
            eprintln!(
                "usage: rootfs-build ROOT REFERENCE [--unpack DIR | --per-layer | --label LABEL]"
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
