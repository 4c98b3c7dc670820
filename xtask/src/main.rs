//! `cargo xtask`: the project's automation, written in Rust so it runs
//! wherever cargo does.
//!
//! Commands:
//! - `test`: the one test command (README). Installs what is missing, checks
//!   formatting, layering and lints, starts the real registries (and the token
//!   issuer) and runs every test of the workspace against them.
//! - `tools`: installs what the tests need (the first step of `test`).
//! - `registry`: starts the test registries and the token issuer and prints
//!   their environment, for running single tests by hand.
//! - `check-layers`: fails when a crate depends on one it must not.
//! - `fixtures`: builds the deterministic test images and pushes them.
//! - `demo`: an offline walk through pull, unpack and build, with timings.
//! - `release`: release binary, completions, man page, tarball, sums, and
//!   `cargo package` of the library crates.
//! - `bench pull`: times cold and warm pulls against skopeo, counts the
//!   requests of a warm pull and measures peak RSS (`docs/benchmarks.md`).

mod bench;
mod bench_rootfs;
mod bench_rootfs_build;
mod bench_rootfs_report;
mod cmd;
mod counting_proxy;
mod demo;
mod e2fsprogs;
mod fixtures;
mod jwt;
mod layers;
mod mini_http;
mod registry;
mod release;
mod soak;
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
  tools          install the missing tools `test` needs (apt-get, as root),
                 including e2fsprogs >= 1.47.1 and libarchive13 (on Debian 12
                 from bookworm-backports)
  registry       start the test registries and token issuer, print their
                 environment variables, and keep them running until Enter is
                 pressed
  check-layers   fail when a crate depends on a crate above it or on a sibling
  fixtures       build the deterministic test images into TARGET/fixtures and,
                 with --registry (default $CACHECTL_TEST_REGISTRY), push them
  bench pull [--rounds N] [--size-mib M] [--rss-gib G]
                 time cold and warm pulls of store-pull against skopeo copy
                 from a local registry, count the requests of a warm pull and
                 measure peak RSS of a G GiB layer pull (not part of `test`)
  demo           offline demo: start a loopback registry, push the fixtures,
                 then pull, list, unpack, build with cachectl, timing each step
  bench unpack|build [--rounds N] [--size-mib M] [--shape large-files|small-files|debian-like] [--layers N] [--keep]
                 time `cachectl unpack` against `umoci unpack`, or
                 `cachectl build` against `umoci unpack` + `mke2fs -d`;
                 --shape small-files cuts the content into ~12,300 small
                 files with symlinks and hardlinks (default: 1 MiB files);
                 --layers N splits it into N gzip layers, base first, layer
                 i holding its tree under /opt/layer{i} (default: 1)
  soak [--pull-kills N] [--build-kills M] [--seed S]
                 the kill soak's long form (default 100 pulls and 50 builds
                 SIGKILLed at seeded moments; CI runs 12 and 4) and its figures
  release        build the stripped release binary with completions and man
                 page into a tarball with SHA-256 sums (TARGET/dist), then
                 `cargo package` the library crates (--no-package skips it)

TARGET is cargo's target directory (`cargo metadata`): target/ unless
CARGO_TARGET_DIR, CARGO_BUILD_TARGET_DIR or build.target-dir moves it; the
binaries xtask runs are taken from there too.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test_command::run(&args[1..]),
        Some("tools") => tools::ensure_installed(),
        Some("registry") => registry::run_interactive(),
        Some("check-layers") => layers::run(),
        Some("fixtures") => fixtures::run(&args[1..]),
        Some("release") => release::run_release(&args[1..]),
        Some("demo") => demo::run_demo(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("soak") => soak::run(&args[1..]),
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
