//! `digest` and `tags`: look-ups at a registry that store nothing.

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
