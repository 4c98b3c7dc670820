//! `cargo xtask fixtures`: builds the deterministic test images
//! (`cachectl-fixtures`) into an OCI layout under `target/fixtures/` and,
//! given a registry, pushes them there with `ocidist` and writes a summary
//! that tests read (`CACHECTL_TEST_FIXTURES`).

use crate::cmd::{self, Error};
use cachectl_fixtures::BuildOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Environment variable naming the JSON summary of the pushed fixtures.
pub(crate) const ENV_FIXTURES: &str = "CACHECTL_TEST_FIXTURES";
/// Repository prefix of the pushed fixtures: `<registry>/fixtures/<name>:v1`.
pub(crate) const REPO_PREFIX: &str = "fixtures";

const USAGE: &str = "usage: cargo xtask fixtures [--registry HOST:PORT] [--out DIR] [--no-big]";

/// Entry point of `cargo xtask fixtures`.
pub(crate) fn run(args: &[String]) -> Result<(), Error> {
    let mut registry = std::env::var("CACHECTL_TEST_REGISTRY").ok();
    let mut out = cmd::target_dir()?.join("fixtures");
    let mut include_big = true;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--registry" => registry = Some(args.next().ok_or(USAGE)?.clone()),
            "--out" => out = PathBuf::from(args.next().ok_or(USAGE)?),
            "--no-big" => include_big = false,
            other => return Err(format!("unexpected argument `{other}`; {USAGE}")),
        }
    }
    let summary = build_and_push(&out, registry.as_deref(), include_big)?;
    match summary {
        Some(path) => println!("{ENV_FIXTURES}={}", path.display()),
        None => {
            eprintln!("xtask: no registry given (--registry or CACHECTL_TEST_REGISTRY): built only")
        }
    }
    Ok(())
}

/// Builds the layout into `out/layout` and, when `registry` is given, pushes
/// it and returns the path of the summary JSON.
pub(crate) fn build_and_push(
    out: &Path,
    registry: Option<&str>,
    include_big: bool,
) -> Result<Option<PathBuf>, Error> {
    let layout = out.join("layout");
    if layout.exists() {
        std::fs::remove_dir_all(&layout)
            .map_err(|e| format!("removing {}: {e}", layout.display()))?;
    }
    let started = Instant::now();
    let fixtures = cachectl_fixtures::build_layout(&layout, &BuildOptions { include_big })
        .map_err(|e| format!("building fixtures: {e}"))?;
    eprintln!(
        "xtask: built {} fixtures into {} in {:.1} s",
        fixtures.len(),
        layout.display(),
        started.elapsed().as_secs_f64()
    );
    let Some(registry) = registry else {
        return Ok(None);
    };
    let started = Instant::now();
    let client = ocidist::Client::new(
        ocidist::ClientConfig::default(),
        Arc::new(ocidist::credentials::StaticCredentials::new()),
    )
    .map_err(|e| format!("building the registry client: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    runtime
        .block_on(cachectl_fixtures::push_layout(
            &layout,
            &fixtures,
            &client,
            registry,
            REPO_PREFIX,
        ))
        .map_err(|e| format!("pushing fixtures to {registry}: {e}"))?;
    let summary = out.join("fixtures.json");
    cachectl_fixtures::write_manifest_json(&fixtures, registry, REPO_PREFIX, &summary)
        .map_err(|e| format!("writing {}: {e}", summary.display()))?;
    eprintln!(
        "xtask: pushed fixtures to {registry}/{REPO_PREFIX}/ in {:.1} s; summary {}",
        started.elapsed().as_secs_f64(),
        summary.display()
    );
    Ok(Some(summary))
}
