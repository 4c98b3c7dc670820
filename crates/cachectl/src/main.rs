//! `cachectl`: the command-line tool.
//!
//! The binary holds no logic of its own beyond parsing arguments, rendering
//! output and choosing exit codes. Its commands land as the library crates
//! they expose do (issue "`cachectl`: the command line people will live in").

use std::process::ExitCode;

/// Exit code for a usage error, as documented for every command.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version" | "-V") => {
            println!("cachectl {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("cachectl: no commands are available yet; only --version is implemented");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
