//! `cargo xtask`: the project's automation, written in Rust so it runs
//! wherever cargo does.
//!
//! Commands:
//! - `test`: the one test command (README). Installs what is missing, checks
//!   formatting, layering and lints, starts the real registries (and the token
//!   issuer) and runs every test of the workspace against them.
//! - `registry`: starts the test registries and the token issuer and prints
//!   their environment, for running single tests by hand.
//! - `check-layers`: fails when a crate depends on one it must not.
//! - `fixtures`: builds the deterministic test images and pushes them.
//! - `bench unpack|build`: times rootfs against umoci (and umoci + mke2fs)
//!   on the same ~100 MB gzip image, alternating rounds.

mod bench;
mod cmd;
mod fixtures;
mod jwt;
mod layers;
mod mini_http;
mod registry;
mod test_command;
mod token_issuer;
mod token_policy;
mod token_scope;
mod tools;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test           install missing tools, run fmt, clippy, check-layers, start the
                 test registries and run `cargo test --workspace` against them
  registry       start the test registries and token issuer, print their
                 environment variables, and keep them running until Enter is
                 pressed
  check-layers   fail when a crate depends on a crate above it or on a sibling
  fixtures       build the deterministic test images into target/fixtures and,
                 with --registry (default $CACHECTL_TEST_REGISTRY), push them
  bench          `bench unpack|build [--rounds N]`: rootfs against umoci (and
                 umoci + mke2fs -d) on a ~100 MB gzip image, alternating";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test_command::run(&args[1..]),
        Some("registry") => registry::run_interactive(),
        Some("check-layers") => layers::run(),
        Some("fixtures") => fixtures::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("xtask: unknown command `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
        None => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err}");
            ExitCode::FAILURE
        }
    }
}
