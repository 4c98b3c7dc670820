//! One function per command: parse what the library needs from the
//! arguments, call it, render the result. No logic of their own.

mod archives;
mod auth;
mod copy;
mod images;
mod index;
mod maintain;
mod referrers;
mod remote;
mod rootfs;

use crate::cli::{Cli, Command, Generated, IndexCommand};
use crate::error::CliError;
use crate::output::Output;
use crate::progress::Progress;
use crate::settings::Context;

/// Runs the parsed command line.
pub(crate) fn run(mut cli: Cli) -> Result<(), CliError> {
    // `--platform` after the command wins over one before it.
    if let Some(platform) = cli.command.platform() {
        cli.global.platform = Some(platform.clone());
    }
    if cli.command.all_platforms() && cli.global.platform.is_some() {
        return Err(CliError::Usage(
            "--all-platforms takes every platform: it cannot go with --platform".into(),
        ));
    }
    let out = Output {
        json: cli.global.json,
        quiet: cli.global.quiet,
    };
    let progress = Progress::new(cli.global.quiet || cli.global.json);
    // Commands that need no store.
    match &cli.command {
        Command::Login(args) => return auth::login(args, &cli.global, out),
        Command::Logout { registry } => return auth::logout(registry, &cli.global, out),
        Command::Generate { what } => return generate(*what),
        _ => {}
    }
    let context = Context::new(&cli.global)?;
    if let Some(kind) = context.store.remote_file_system() {
        out.note(&format!(
            "warning: the cache {} is on {kind}: every blob, fsync and lock is a round trip \
             there and locks may not hold between hosts; a local disk is faster (--root, \
             CACHECTL_ROOT)",
            context.store.root().display()
        ));
    }
    let result = match cli.command {
        Command::Pull(args) => images::pull(&context, &args, &progress, out),
        Command::Images => images::list(&context, out),
        Command::Inspect {
            reference,
            remote,
            raw,
            ..
        } => {
            // Only the flag picks a platform's manifest for a remote `--raw`:
            // by default, the bytes skopeo prints (the index's).
            let flag = cli.global.platform.as_ref().and(context.platform.as_ref());
            let how = remote::Inspect { remote, raw, flag };
            remote::inspect(&context, &reference, how, &progress, out)
        }
        Command::Digest { reference, .. } => {
            // Only the flag picks a platform: by default, the digest skopeo
            // and crane print (the index's, for a multi-platform tag).
            let platform = cli.global.platform.as_ref().and(context.platform.as_ref());
            remote::digest(&context, &reference, platform, &progress, out)
        }
        Command::Tags { repository } => remote::tags(&context, &repository, &progress, out),
        Command::Referrers { reference, raw } => {
            referrers::list(&context, &reference, raw.as_deref(), out)
        }
        Command::Tag { source, target } => images::tag(&context, &source, &target, out),
        Command::Rm { references, .. } => {
            // Only the flag narrows `rm`, never a settings file's platform.
            let platform = cli.global.platform.as_ref().and(context.platform.as_ref());
            images::remove(&context, &references, platform, out)
        }
        Command::Push {
            source,
            destination,
            arch_tags,
        } => images::push(&context, (&source, &destination), arch_tags, &progress, out),
        Command::Prune(args) => maintain::prune(&context, &args, out),
        Command::Gc(args) => maintain::gc(&context, &args, out),
        Command::Verify { references, repair } => {
            maintain::verify(&context, &references, repair, &progress, out)
        }
        Command::Index {
            command: IndexCommand::Create(args),
        } => index::create(&context, &args, &progress, out),
        Command::Copy(args) => copy::copy(&context, &args, &progress, out),
        Command::Du => maintain::du(&context, out),
        Command::Import { files, name, .. } => {
            archives::import(&context, &files, name.as_deref(), &progress, out)
        }
        Command::Export {
            references,
            output,
            flatten: true,
            ..
        } => archives::export_flat(&context, &references, &output, &progress, out),
        Command::Export {
            references,
            output,
            format,
            flatten: false,
            ..
        } => archives::export(&context, &references, &output, format, &progress, out),
        Command::Unpack(args) => rootfs::unpack(&context, &args, &progress, out),
        Command::Build(args) => rootfs::build(&context, &args, &progress, out),
        Command::Login(_) | Command::Logout { .. } | Command::Generate { .. } => {
            unreachable!("handled above")
        }
    };
    report_registries(&context, cli.global.verbose, out);
    if context.store.skipped_records() {
        out.note(&format!(
            "note: the cache {} is read-only here: last-used times (and layer sizes) were not \
             recorded",
            context.store.root().display()
        ));
    }
    result
}

/// Notes what the command's registry clients met: mirrors skipped and rate
/// limits nearly spent (the library's log says both with `-v`), and with
/// `-v` the requests made per host.
fn report_registries(context: &Context, verbose: u8, out: Output) {
    let usage = context.usage();
    if verbose == 0 {
        for skipped in context.skipped_mirrors() {
            out.note(&format!(
                "warning: mirror {} for {} failed and was skipped for the rest of this run: {}",
                skipped.mirror, skipped.registry, skipped.reason
            ));
        }
        for host in &usage {
            if ocidist::accounting::is_low(host.ratelimit_limit, host.ratelimit_remaining) {
                out.note(&format!(
                    "warning: {} has {} of its {} requests left (rate limit)",
                    host.host,
                    host.ratelimit_remaining.unwrap_or_default(),
                    host.ratelimit_limit.unwrap_or_default()
                ));
            }
        }
    } else if !out.quiet {
        for host in &usage {
            eprintln!("{}", describe_usage(host));
        }
    }
}

/// `requests to HOST: 1 manifest HEAD, …` for `-v`.
fn describe_usage(host: &ocidist::HostUsage) -> String {
    let mut text = format!(
        "requests to {}{}: {} manifest HEAD, {} manifest GET, {} blob GET, {} token, {} other; {} received, {} retries",
        host.host,
        if host.mirror { " (mirror)" } else { "" },
        host.manifest_head,
        host.manifest_get,
        host.blob_get,
        host.token,
        host.other,
        crate::output::human_bytes(host.bytes),
        host.retries,
    );
    if let (Some(limit), Some(remaining)) = (host.ratelimit_limit, host.ratelimit_remaining) {
        text.push_str(&format!("; rate limit {remaining}/{limit} left"));
    }
    if let Some(seconds) = host.retry_after_seconds {
        text.push_str(&format!("; retry after {seconds} s"));
    }
    text
}

/// Prints shell completions, the man page or the `--json` shapes on
/// stdout.
fn generate(what: Generated) -> Result<(), CliError> {
    use clap_complete::Shell;
    let mut command = crate::help::command();
    let mut stdout = std::io::stdout();
    let shell = match what {
        Generated::Bash => Shell::Bash,
        Generated::Zsh => Shell::Zsh,
        Generated::Fish => Shell::Fish,
        Generated::JsonShapes => {
            print!("{}", crate::help::json_shapes());
            return Ok(());
        }
        Generated::Man => {
            return clap_mangen::Man::new(command)
                .render(&mut stdout)
                .map_err(|source| CliError::Io {
                    what: "writing the man page".into(),
                    source,
                });
        }
    };
    clap_complete::generate(shell, &mut command, "cachectl", &mut stdout);
    Ok(())
}

/// A runtime for the commands that talk to registries.
fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Io {
            what: "starting the async runtime".into(),
            source,
        })
}
