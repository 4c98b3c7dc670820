//! `cargo xtask soak [--pull-kills N] [--build-kills M] [--seed S]
//! [--load-procs P] [--load-secs T]`: the long form of the soak tests
//! (`tests/it/soak.rs`) that CI runs short. Starts the test registries,
//! pushes the fixtures, runs the kill soaks and the mixed load with the
//! counts given (default 100 pulls and 50 builds killed, seed 1; 8
//! processes for 60 s of mixed load) and prints the figures they report,
//! for docs/reliability.md.

use crate::cmd::{self, Error};
use crate::fixtures;
use crate::registry::TestRegistries;

const USAGE: &str = "usage: cargo xtask soak [--pull-kills N] [--build-kills M] [--seed S] \
                     [--load-procs P] [--load-secs T]";

/// Entry point of `cargo xtask soak`.
pub(crate) fn run(args: &[String]) -> Result<(), Error> {
    let mut pull_kills = "100".to_owned();
    let mut build_kills = "50".to_owned();
    let mut seed = "1".to_owned();
    let mut load_procs = "8".to_owned();
    let mut load_secs = "60".to_owned();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(USAGE)?;
        if value.parse::<u64>().is_err() {
            return Err(format!(
                "{arg} takes a whole number, not `{value}`; {USAGE}"
            ));
        }
        match arg.as_str() {
            "--pull-kills" => pull_kills = value.clone(),
            "--build-kills" => build_kills = value.clone(),
            "--seed" => seed = value.clone(),
            "--load-procs" => load_procs = value.clone(),
            "--load-secs" => load_secs = value.clone(),
            other => return Err(format!("unexpected argument `{other}`; {USAGE}")),
        }
    }
    crate::tools::ensure_installed()?;
    let registries = TestRegistries::start()?;
    // Its own fixtures directory: a `cargo xtask registry` running beside
    // it keeps serving the summary it wrote.
    let dir = cmd::target_dir()?.join("soak");
    let summary =
        fixtures::build_and_push(&dir.join("fixtures"), Some(&registries.plain_addr()), true)?
            .ok_or("fixtures were built but not pushed")?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let report = dir.join("report");
    let mut command = cmd::cargo();
    command
        .args(["test", "--locked", "-p", "cachectl-tests", "--test", "it"])
        .args(["soak::", "--", "--nocapture", "--test-threads", "1"])
        .env(fixtures::ENV_FIXTURES, &summary)
        .env("CACHECTL_SOAK_PULL_KILLS", &pull_kills)
        .env("CACHECTL_SOAK_BUILD_KILLS", &build_kills)
        .env("CACHECTL_SOAK_SEED", &seed)
        .env("CACHECTL_SOAK_LOAD_PROCS", &load_procs)
        .env("CACHECTL_SOAK_LOAD_SECS", &load_secs)
        .env("CACHECTL_SOAK_REPORT", &report);
    for (name, value) in registries.env() {
        command.env(name, value);
    }
    let started = std::time::Instant::now();
    cmd::run(&mut command)?;
    eprintln!("xtask: soak took {:.0} s", started.elapsed().as_secs_f64());
    for what in ["pulls", "builds", "load"] {
        let path = format!("{}.{what}.json", report.display());
        let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
        println!("{what}: {text}");
    }
    Ok(())
}
