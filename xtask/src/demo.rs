//! `cargo xtask demo`: the whole job, offline, in one command. Starts a
//! loopback registry, pushes the fixture images to it, then runs the
//! `cachectl` binary as a user would (pull, images, unpack, build, a warm
//! pull and a cached build), printing each command, what it printed and
//! how long it took.

use crate::cmd::{Error, built_binary, cargo, run, target_dir};
use crate::registry::AnonymousRegistry;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// Runs the demo.
pub(crate) fn run_demo(args: &[String]) -> Result<(), Error> {
    if !args.is_empty() {
        return Err("usage: cargo xtask demo".into());
    }
    crate::tools::ensure_installed()?;
    let dir = target_dir()?.join("demo");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("clearing {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    run(cargo().args(["build", "--locked", "-p", "cachectl"]))?;
    let binary = built_binary("debug", "cachectl")?;

    let registry = AnonymousRegistry::start(&dir.join("registry"))?;
    let addr = registry.addr().to_string();
    crate::fixtures::build_and_push(&dir.join("fixtures"), Some(&addr), false)?;
    let image = format!("{addr}/fixtures/layered:v1");
    let root = dir.join("cache");
    let unpacked = dir.join("rootfs");

    let mut steps: Vec<(String, f64)> = Vec::new();
    let mut step = |args: &[&str]| -> Result<(), Error> {
        let shown = format!("cachectl {}", args.join(" "));
        eprintln!("\n$ {shown}");
        let started = Instant::now();
        let status = Command::new(&binary)
            .args(args)
            .env("CACHECTL_ROOT", &root)
            .status()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let seconds = started.elapsed().as_secs_f64();
        if !status.success() {
            return Err(format!("`{shown}` failed ({status})"));
        }
        steps.push((shown, seconds));
        Ok(())
    };
    step(&["pull", &image])?;
    step(&["images"])?;
    step(&["unpack", &image, &path_arg(&unpacked)])?;
    step(&["build", &image])?;
    step(&["pull", &image])?;
    step(&["build", &image])?;
    step(&["du"])?;
    drop(registry);

    eprintln!("\nwhat happened (cache at {}):", root.display());
    for (shown, seconds) in &steps {
        eprintln!("  {:>8.1} ms  {shown}", seconds * 1000.0);
    }
    eprintln!(
        "the second pull made one request and fetched nothing; the second build came from the cache"
    );
    Ok(())
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}
