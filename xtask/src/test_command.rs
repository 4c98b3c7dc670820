//! `cargo xtask test`: the README's one test command and what CI runs.
//!
//! Steps, all run even when an earlier one fails so one CI run reports
//! everything: install missing tools; `cargo fmt --check`; the layering
//! check; `cargo clippy --workspace --all-targets -D warnings`; start the
//! registries; `cargo test --workspace` with their addresses in the
//! environment; stop the registries (also when tests fail or panic).
//!
//! Arguments after `--` go to `cargo test` (e.g. a test name filter).

use crate::cmd::{self, Error};
use crate::registry::TestRegistries;
use crate::{fixtures, layers, tools};
use std::time::Instant;

/// Entry point of `cargo xtask test`.
pub(crate) fn run(args: &[String]) -> Result<(), Error> {
    let test_args: &[String] = match args.split_first() {
        None => &[],
        Some((first, rest)) if first == "--" => rest,
        Some((first, _)) => {
            return Err(format!(
                "unexpected argument `{first}`; usage: cargo xtask test [-- <cargo test args>]"
            ));
        }
    };
    let started = Instant::now();
    tools::ensure_installed()?;

    let mut outcomes: Vec<(&str, Result<(), Error>, f64)> = Vec::new();
    let mut step = |name: &'static str, f: &mut dyn FnMut() -> Result<(), Error>| {
        let t = Instant::now();
        eprintln!("xtask: == {name}");
        let result = f();
        outcomes.push((name, result, t.elapsed().as_secs_f64()));
    };

    step("fmt", &mut || {
        cmd::run(cmd::cargo().args(["fmt", "--all", "--", "--check"]))
    });
    step("check-layers", &mut layers::run);
    step("clippy", &mut || {
        cmd::run(cmd::cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]))
    });
    step("test", &mut || {
        let registries = TestRegistries::start()?;
        let plain = registries.plain_addr();
        let out = cmd::target_dir()?.join("fixtures");
        let summary = fixtures::build_and_push(&out, Some(&plain), true)?
            .ok_or("fixtures were built but not pushed")?;
        let mut command = cmd::cargo();
        command.env(fixtures::ENV_FIXTURES, &summary);
        command
            .args(["test", "--workspace", "--locked", "--no-fail-fast"])
            .args(test_args);
        for (name, value) in registries.env() {
            command.env(name, value);
        }
        cmd::run(&mut command)
        // `registries` drops here: the registries are killed by PID and the
        // token issuer thread stops.
    });

    eprintln!("xtask: summary");
    let mut failed = Vec::new();
    for (name, result, secs) in &outcomes {
        match result {
            Ok(()) => eprintln!("xtask:   {name:<13} ok      {secs:6.1} s"),
            Err(err) => {
                eprintln!("xtask:   {name:<13} FAILED  {secs:6.1} s  {err}");
                failed.push(*name);
            }
        }
    }
    eprintln!("xtask: total {:.1} s", started.elapsed().as_secs_f64());
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed steps: {}", failed.join(", ")))
    }
}
