//! `copy SRC DST`: an image between registries, archives, layout
//! directories and the cache, with skopeo's names (`ocistore::Store::copy`).

use super::runtime;
use crate::cli::CopyArgs;
use crate::error::CliError;
use crate::output::Output;
use crate::progress::Progress;
use crate::settings::Context;
use ocistore::{CopyOptions, Location};

pub(super) fn copy(
    context: &Context,
    args: &CopyArgs,
    progress: &Progress,
    out: Output,
) -> Result<(), CliError> {
    let source: Location = args.source.parse()?;
    let destination: Location = args.destination.parse()?;
    let mut options = CopyOptions::default();
    options.platform = context.platform.clone();
    options.all_platforms = args.all_platforms;
    options.referrers = args.referrers;
    options.concurrency = context.concurrency;
    options.progress = progress.callback();
    let client = context.client(progress)?;
    let step = progress.step(format!("copying {source} to {destination}"));
    let outcome = runtime()?.block_on(context.store.copy(&client, &source, &destination, &options));
    drop(step);
    progress.finish();
    let outcome = outcome?;
    out.note(&format!(
        "{}: copied to {} through the cache entry {} ({} blob(s) in, {} out, {} mounted, {} already there{})",
        outcome.source,
        outcome.destination,
        outcome.cached_as,
        outcome.blobs_in,
        outcome.blobs_out,
        outcome.mounted_blobs,
        outcome.existing_blobs,
        match outcome.referrers.len() {
            0 => String::new(),
            n => format!(", {n} referrer(s)"),
        }
    ));
    let mut json = serde_json::to_value(&outcome).expect("because a copy outcome serializes");
    json["requests"] = serde_json::to_value(context.usage()).expect("because usage serializes");
    out.result(&json, || outcome.digest.to_string());
    Ok(())
}
