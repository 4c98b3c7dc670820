//! `cargo run --release -p rootfs --example pull_and_build -- ROOT REFERENCE`:
//! the crates used from Rust. Opens (or creates) the cache at ROOT, pulls
//! REFERENCE into it unless it is there already (credentials as docker
//! and podman keep them), builds its ext4 image (cached by digest and
//! options) and prints the image's path.

use rootfs::ocistore::ocidist::{Client, ClientConfig, credentials};
use rootfs::ocistore::{PullOptions, Store};
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root, reference] = args.as_slice() else {
        return Err("usage: pull_and_build ROOT REFERENCE".into());
    };
    let reference: rootfs::ociref::Reference = reference.parse()?;
    let store = Store::open(root)?;
    let found = credentials::default_source(credentials::StaticCredentials::new())?;
    let client = Client::new(ClientConfig::default(), Arc::new(found))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let image = runtime.block_on(store.ensure_image(
        &client,
        &reference,
        &PullOptions::default(),
        || eprintln!("pulling {reference}"),
    ))?;
    let built = rootfs::build(&image, &rootfs::BuildOptions::default())?;
    println!("{}", built.path.display());
    Ok(())
}
