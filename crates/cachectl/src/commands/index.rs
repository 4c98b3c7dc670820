//! `index create`: a multi-platform index of cached images, stored (and
//! with `--push`, pushed).

use super::runtime;
use crate::cli::IndexCreateArgs;
use crate::error::CliError;
use crate::output::{Output, short_digest};
use crate::progress::Progress;
use crate::settings::{Context, parse_reference, parse_references};
use serde::Serialize;

/// `index create --json`.
#[derive(Serialize)]
struct Created {
    r#ref: String,
    index: ocistore::ocidist::Descriptor,
    manifests: Vec<ocistore::IndexMember>,
    /// What `--push` did (`push --json`'s shape), else `None`.
    push: Option<serde_json::Value>,
}

pub(super) fn create(
    context: &Context,
    args: &IndexCreateArgs,
    progress: &Progress,
    out: Output,
) -> Result<(), CliError> {
    let name = parse_reference(&args.name)?;
    let sources = parse_references(&args.references)?;
    let created = context.store.create_index(&name, &sources)?;
    let push = if args.push {
        let client = context.client(progress)?;
        let options = ocistore::PushOptions::default().with_concurrency(context.concurrency);
        let pushed = runtime()?.block_on(context.store.push_with(&client, &name, &name, &options));
        progress.finish();
        let mut json = serde_json::to_value(pushed?).expect("because a push outcome serializes");
        json["requests"] = serde_json::to_value(context.usage()).expect("because usage serializes");
        Some(json)
    } else {
        None
    };
    let shown = Created {
        r#ref: created.reference,
        index: created.index,
        manifests: created.manifests,
        push,
    };
    out.result(&shown, || {
        let mut text = format!("{}@{}", shown.r#ref, shown.index.digest);
        for member in &shown.manifests {
            text.push_str(&format!(
                "\n  {:<16} {}  {}",
                member.platform.to_string(),
                short_digest(&member.manifest.digest),
                member.source
            ));
        }
        if shown.push.is_some() {
            text.push_str(&format!("\npushed {}", shown.r#ref));
        }
        text
    });
    Ok(())
}
