//! `cachectl`: the command-line tool.
//!
//! The binary holds no logic of its own beyond parsing arguments, rendering
//! output and choosing exit codes (docs/cli.md lists the commands, their
//! `--json` shapes and the exit codes).

mod cli;
mod commands;
mod error;
mod help;
mod output;
mod password;
mod progress;
mod provenance;
mod settings;
mod units;

use clap::FromArgMatches;
use error::code;
use std::process::ExitCode;

fn main() -> ExitCode {
    let parsed = help::command()
        .try_get_matches()
        .and_then(|matches| cli::Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(err) => {
            // Help and version go to stdout with 0; usage errors to stderr.
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() {
                code::USAGE
            } else {
                code::OK
            });
        }
    };
    // `-q` is results and errors only: no log line either, whatever `-v`.
    init_logging(if cli.global.quiet {
        0
    } else {
        cli.global.verbose
    });
    match commands::run(cli) {
        Ok(()) => ExitCode::from(code::OK),
        Err(err) => {
            eprintln!("{}", err.render());
            ExitCode::from(err.exit_code())
        }
    }
}

/// Logs on stderr: none by default (what people need is in the results,
/// notes and errors; `-q` and `--json` promise a quiet stderr), `-v`
/// warnings and info, `-vv` debug. The caller passes 0 under `-q`.
fn init_logging(verbose: u8) {
    use tracing::level_filters::LevelFilter;
    let level = match verbose {
        0 => LevelFilter::OFF,
        1 => LevelFilter::INFO,
        _ => LevelFilter::DEBUG,
    };
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .init();
}
