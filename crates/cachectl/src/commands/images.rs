//! `pull`, `images`, `inspect`, `tag`, `rm`, `push`.

use super::runtime;
use crate::cli::PullArgs;
use crate::error::CliError;
use crate::output::{Output, ago, human_bytes, known_time, now_ms, short_digest, table};
use crate::progress::Progress;
use crate::settings::{Context, parse_reference, parse_references};
use ocistore::PullOptions;
use serde::Serialize;

/// `pull --json`: one object per reference, in the order given.
#[derive(Serialize)]
struct Pulled {
    r#ref: String,
    digest: String,
    index_digest: Option<String>,
    platform: Option<String>,
    platforms: Vec<String>,
    referrers: Vec<String>,
    fetched_blobs: usize,
    reused_blobs: usize,
    up_to_date: bool,
    /// Mirrors skipped during this run (the same list in every object).
    skipped_mirrors: Vec<ocidist::SkippedMirror>,
    /// Requests made during this run, per host (the same in every object).
    requests: Vec<ocidist::HostUsage>,
    /// The registry could not be reached: the cached digest was used.
    stale: bool,
    /// With `stale`, how long ago a registry last confirmed the cached
    /// entry (else when it was stored).
    cached_age_seconds: Option<u64>,
}

pub(super) fn pull(
    context: &Context,
    args: &PullArgs,
    progress: &Progress,
    out: Output,
) -> Result<(), CliError> {
    let references = parse_references(&args.references)?;
    let mut options = PullOptions::default().with_concurrency(context.concurrency);
    options.platform = context.platform.clone();
    options.offline = args.offline;
    options.always = args.always;
    options.all_platforms = args.all_platforms;
    options.referrers = args.referrers;
    options.stale_fallback = context.stale_fallback && !args.no_stale;
    // An offline pull makes no request; the client is built all the same.
    let client = context.client(progress)?;
    let outcomes = runtime()?.block_on(context.store.pull_many(&client, &references, &options));
    progress.finish();
    let skipped_mirrors = client.skipped_mirrors();
    let requests = client.usage();
    let mut results = Vec::new();
    let mut first_error = None;
    for outcome in outcomes {
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(err) => {
                first_error.get_or_insert(err);
                continue;
            }
        };
        let stale = outcome.stale.as_ref();
        let cached_age_seconds =
            stale.and_then(|s| s.confirmed_at.map(|at| now_ms().saturating_sub(at) / 1000));
        if let Some(stale) = stale {
            out.note(&format!(
                "warning: {}: the registry could not be reached ({}); using the cached {} (last confirmed {})",
                outcome.reference,
                stale.reason,
                short_digest(&outcome.manifest_digest),
                stale.confirmed_at.map_or_else(
                    || "at an unknown time".to_owned(),
                    |at| ago(at, now_ms())
                ),
            ));
        }
        out.note(&format!(
            "{}: {}",
            outcome.reference,
            if outcome.stale.is_some() {
                "stale (cached)".to_owned()
            } else if outcome.up_to_date {
                "up to date".to_owned()
            } else {
                format!(
                    "pulled ({} blob(s) fetched, {} reused)",
                    outcome.fetched_blobs, outcome.reused_blobs
                )
            }
        ));
        results.push(Pulled {
            r#ref: outcome.reference,
            digest: outcome.manifest_digest.to_string(),
            index_digest: outcome.index_digest.map(|d| d.to_string()),
            platform: outcome.platform.map(|p| p.to_string()),
            platforms: outcome.platforms.iter().map(ToString::to_string).collect(),
            referrers: outcome.referrers.iter().map(ToString::to_string).collect(),
            fetched_blobs: outcome.fetched_blobs,
            reused_blobs: outcome.reused_blobs,
            up_to_date: outcome.up_to_date,
            skipped_mirrors: skipped_mirrors.clone(),
            requests: requests.clone(),
            stale: outcome.stale.is_some(),
            cached_age_seconds,
        });
    }
    out.result(&results, || {
        results
            .iter()
            .map(|p| p.digest.clone())
            .collect::<Vec<_>>()
            .join("\n")
    });
    match first_error {
        Some(err) => Err(err.into()),
        None => Ok(()),
    }
}

/// `images --json`: one object per `index.json` entry (reference and
/// platform), most recently used first.
#[derive(Serialize)]
struct Listed {
    r#ref: String,
    /// The `index.json` entry name (`ref`, or `ref@platform` for a
    /// further platform of it): what skopeo and umoci take.
    name: String,
    digest: String,
    media_type: String,
    platform: Option<String>,
    size: Option<u64>,
    uncompressed_size: Option<u64>,
    last_used: Option<String>,
    stored_at: Option<String>,
    source: Option<String>,
}

pub(super) fn list(context: &Context, out: Output) -> Result<(), CliError> {
    let entries = context.store.list()?;
    let listed: Vec<Listed> = entries
        .iter()
        .map(|entry| {
            let record = entry.record.as_ref();
            Listed {
                r#ref: entry.image_reference.clone(),
                name: entry.reference.clone(),
                digest: entry.digest.to_string(),
                media_type: entry.media_type.clone(),
                platform: entry
                    .platform
                    .as_ref()
                    .map(ToString::to_string)
                    .or_else(|| {
                        let r = record?;
                        r.platform.as_ref().map(ToString::to_string).or_else(|| {
                            (!r.platforms.is_empty()).then(|| {
                                r.platforms
                                    .iter()
                                    .map(ToString::to_string)
                                    .collect::<Vec<_>>()
                                    .join(",")
                            })
                        })
                    }),
                size: record.map(|r| r.compressed_size),
                uncompressed_size: record.and_then(|r| r.uncompressed_size),
                last_used: record.and_then(|r| known_time(r.last_used_at)),
                stored_at: record.and_then(|r| known_time(r.stored_at)),
                source: record.map(|r| r.source.clone()),
            }
        })
        .collect();
    let now = now_ms();
    out.result(&listed, || {
        let rows: Vec<Vec<String>> = entries
            .iter()
            .zip(&listed)
            .map(|(entry, l)| {
                vec![
                    l.r#ref.clone(),
                    short_digest(&entry.digest),
                    l.platform.clone().unwrap_or_else(|| "-".into()),
                    l.size.map(human_bytes).unwrap_or_else(|| "-".into()),
                    entry
                        .record
                        .as_ref()
                        .map(|r| ago(r.last_used_at, now))
                        .unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        table(
            &["REFERENCE", "DIGEST", "PLATFORM", "SIZE", "LAST USED"],
            &rows,
        )
    });
    Ok(())
}

/// `inspect --json`'s `record`: the store's record with RFC 3339 times
/// (`null` when unknown) instead of milliseconds.
#[derive(Serialize)]
struct Recorded {
    reference: String,
    source: String,
    manifest_digest: String,
    index_digest: Option<String>,
    platform: Option<String>,
    platforms: Vec<String>,
    compressed_size: u64,
    uncompressed_size: Option<u64>,
    referrers: Vec<String>,
    stored_at: Option<String>,
    last_used_at: Option<String>,
}

impl From<&ocistore::Record> for Recorded {
    fn from(record: &ocistore::Record) -> Recorded {
        Recorded {
            reference: record.reference.clone(),
            source: record.source.clone(),
            manifest_digest: record.manifest_digest.to_string(),
            index_digest: record.index_digest.as_ref().map(ToString::to_string),
            platform: record.platform.as_ref().map(ToString::to_string),
            platforms: record.platforms.iter().map(ToString::to_string).collect(),
            compressed_size: record.compressed_size,
            uncompressed_size: record.uncompressed_size,
            referrers: record.referrers.iter().map(ToString::to_string).collect(),
            stored_at: known_time(record.stored_at),
            last_used_at: known_time(record.last_used_at),
        }
    }
}

pub(super) fn inspect(context: &Context, reference: &str, out: Output) -> Result<(), CliError> {
    let reference = parse_reference(reference)?;
    let inspection = context
        .store
        .inspect_platform(&reference, context.platform.as_ref())?;
    let mut json = serde_json::to_value(&inspection).expect("because inspections serialize");
    json["record"] = serde_json::to_value(inspection.record.as_ref().map(Recorded::from))
        .expect("because records serialize");
    out.result(&json, || describe(&inspection));
    Ok(())
}

/// `inspect`'s text: the reference, its platforms, and each image's
/// config, layers and history.
pub(super) fn describe(inspection: &ocistore::Inspection) -> String {
    let mut text = format!(
        "reference: {}\ndigest:    {} ({})\n",
        inspection.reference, inspection.top.digest, inspection.top.media_type
    );
    if let Some(index) = &inspection.index_digest {
        text.push_str(&format!("index:     {index}\n"));
    }
    text.push_str("platforms:\n");
    for p in &inspection.platforms {
        text.push_str(&format!(
            "  {:<16} {}{}\n",
            p.platform
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| "(none)".into()),
            short_digest(&p.manifest.digest),
            if p.stored { "  stored" } else { "" }
        ));
    }
    for image in &inspection.images {
        let c = &image.config;
        text.push_str(&format!("image {}:\n", image.manifest.digest));
        text.push_str(&format!(
            "  created: {}\n  entrypoint: {:?}\n  cmd: {:?}\n  workdir: {}\n  user: {}\n  env:\n",
            c.created.as_deref().unwrap_or("-"),
            c.entrypoint,
            c.cmd,
            c.working_dir.as_deref().unwrap_or("/"),
            c.user.as_deref().unwrap_or("root"),
        ));
        for var in &c.env {
            text.push_str(&format!("    {var}\n"));
        }
        text.push_str("  layers:\n");
        for layer in &image.layers {
            text.push_str(&format!(
                "    {}  {:>10}  {:>10} unpacked  {}\n",
                short_digest(&layer.descriptor.digest),
                human_bytes(layer.descriptor.size),
                layer
                    .uncompressed_size
                    .map(human_bytes)
                    .unwrap_or_else(|| "?".into()),
                layer.descriptor.media_type
            ));
        }
        text.push_str("  history:\n");
        for step in &c.history {
            text.push_str(&format!(
                "    {}{}\n",
                step.created_by.as_deref().unwrap_or("-"),
                if step.empty_layer { "  (no layer)" } else { "" }
            ));
        }
    }
    text
}

pub(super) fn tag(
    context: &Context,
    source: &str,
    target: &str,
    out: Output,
) -> Result<(), CliError> {
    let (source, target) = (parse_reference(source)?, parse_reference(target)?);
    context.store.tag(&source, &target)?;
    out.result(
        &serde_json::json!({"source": source.to_string(), "target": target.to_string()}),
        String::new,
    );
    Ok(())
}

pub(super) fn remove(
    context: &Context,
    references: &[String],
    platform: Option<&ociref::Platform>,
    out: Output,
) -> Result<(), CliError> {
    let references = parse_references(references)?;
    let (mut removed, mut absent) = (Vec::new(), Vec::new());
    for reference in &references {
        let done = match platform {
            Some(platform) => context.store.remove_platform(reference, platform)?,
            None => context.store.remove(reference)?,
        };
        if done {
            removed.push(reference.to_string());
        } else {
            absent.push(reference.to_string());
        }
    }
    // In text, each line says which platform went.
    let shown = |names: &[String]| -> Vec<String> {
        names
            .iter()
            .map(|name| match platform {
                Some(platform) => format!("{name} ({platform})"),
                None => name.clone(),
            })
            .collect()
    };
    out.result(
        &serde_json::json!({
            "removed": removed,
            "not_cached": absent,
            "platform": platform.map(ToString::to_string),
        }),
        || shown(&removed).join("\n"),
    );
    if !absent.is_empty() {
        return Err(CliError::NotCached {
            references: shown(&absent),
        });
    }
    out.note("run `cachectl gc` to free the space");
    Ok(())
}

pub(super) fn push(
    context: &Context,
    (source, destination): (&str, &str),
    arch_tags: bool,
    progress: &Progress,
    out: Output,
) -> Result<(), CliError> {
    let (source, destination) = (parse_reference(source)?, parse_reference(destination)?);
    let client = context.client(progress)?;
    let mut options = ocistore::PushOptions::default().with_concurrency(context.concurrency);
    options.arch_tags = arch_tags;
    let outcome = runtime()?.block_on(context.store.push_with(
        &client,
        &source,
        &destination,
        &options,
    ));
    progress.finish();
    let outcome = outcome?;
    let mut json = serde_json::to_value(&outcome).expect("because a push outcome serializes");
    json["requests"] = serde_json::to_value(context.usage()).expect("because usage serializes");
    out.result(&json, || {
        let mut text = format!("{}@{}", outcome.destination, outcome.digest);
        for tagged in &outcome.arch_tags {
            text.push_str(&format!("\n{}@{}", tagged.reference, tagged.digest));
        }
        text
    });
    Ok(())
}
