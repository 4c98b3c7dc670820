//! `digest`, `tags` and `inspect --remote`/`--raw`: look-ups at a
//! registry that store nothing, and a manifest's exact bytes.

use super::runtime;
use crate::error::CliError;
use crate::output::Output;
use crate::progress::Progress;
use crate::settings::{Context, parse_reference};
use ociref::Platform;
use serde::Serialize;

/// `digest --json`.
#[derive(Serialize)]
struct Resolved {
    r#ref: String,
    digest: String,
    media_type: String,
    size: u64,
    /// The platform asked for, when one was.
    platform: Option<String>,
}

pub(super) fn digest(
    context: &Context,
    reference: &str,
    platform: Option<&Platform>,
    progress: &Progress,
    out: Output,
) -> Result<(), CliError> {
    let reference = parse_reference(reference)?;
    let client = context.client(progress)?;
    let found = runtime()?.block_on(client.resolve_platform(&reference, platform))?;
    let resolved = Resolved {
        r#ref: reference.to_string(),
        digest: found.digest.to_string(),
        media_type: found.media_type,
        size: found.size,
        platform: platform.map(ToString::to_string),
    };
    out.result(&resolved, || resolved.digest.clone());
    Ok(())
}

/// `tags --json`.
#[derive(Serialize)]
struct Listed {
    repository: String,
    tags: Vec<String>,
}

pub(super) fn tags(
    context: &Context,
    repository: &str,
    progress: &Progress,
    out: Output,
) -> Result<(), CliError> {
    let reference = parse_reference(repository)?;
    let client = context.client(progress)?;
    let tags = runtime()?.block_on(client.tags(&reference))?;
    let listed = Listed {
        repository: format!("{}/{}", reference.registry(), reference.repository()),
        tags,
    };
    out.result(&listed, || listed.tags.join("\n"));
    Ok(())
}

/// How `inspect` was asked to look.
pub(super) struct Inspect<'a> {
    /// `--remote`: the registry, not the cache.
    pub(super) remote: bool,
    /// `--raw`: the manifest's exact bytes.
    pub(super) raw: bool,
    /// `--platform` given as a flag (not from the settings file).
    pub(super) flag: Option<&'a Platform>,
}

/// `inspect`: of the cache, or with `--remote` of the registry; with
/// `--raw` the manifest's bytes. `--raw` prints the bytes as they are, with
/// or without `--json` (they are JSON already).
pub(super) fn inspect(
    context: &Context,
    reference: &str,
    how: Inspect<'_>,
    progress: &Progress,
    out: Output,
) -> Result<(), CliError> {
    if !how.raw && !how.remote {
        return super::images::inspect(context, reference, out);
    }
    let reference = parse_reference(reference)?;
    if how.raw && !how.remote {
        let (_, bytes) = context
            .store
            .raw_manifest(&reference, context.platform.as_ref())?;
        return write_raw(&bytes);
    }
    let client = context.client(progress)?;
    if how.raw {
        let manifest = runtime()?.block_on(client.manifest_for_platform(&reference, how.flag))?;
        return write_raw(&manifest.bytes);
    }
    let inspection = runtime()?.block_on(ocistore::inspect_remote(
        &client,
        &reference,
        context.platform.as_ref(),
    ))?;
    out.result(&inspection, || super::images::describe(&inspection));
    Ok(())
}

/// Writes `bytes` to stdout unchanged (no newline added).
pub(super) fn write_raw(bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|source| CliError::Io {
            what: "writing the manifest to stdout".into(),
            source,
        })
}
