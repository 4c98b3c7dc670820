//! `referrers`: the signatures, SBOMs and other artifacts stored with a
//! cached image, or one of their manifests.

use super::remote::write_raw;
use crate::error::CliError;
use crate::output::{Output, human_bytes};
use crate::settings::{Context, parse_reference};
use serde::Serialize;
use std::collections::BTreeMap;

/// `referrers --json`.
#[derive(Serialize)]
struct Listed {
    r#ref: String,
    referrers: Vec<Referrer>,
}

/// One referrer in `referrers --json`.
#[derive(Serialize)]
struct Referrer {
    digest: String,
    media_type: String,
    artifact_type: Option<String>,
    size: u64,
    subject: String,
    annotations: BTreeMap<String, String>,
}

pub(super) fn list(
    context: &Context,
    reference: &str,
    raw: Option<&str>,
    out: Output,
) -> Result<(), CliError> {
    let reference = parse_reference(reference)?;
    if let Some(digest) = raw {
        let digest = digest.parse().map_err(|source| CliError::Parse {
            what: "digest",
            input: digest.to_owned(),
            source,
        })?;
        return write_raw(&context.store.referrer_bytes(&reference, &digest)?);
    }
    let listed = Listed {
        r#ref: reference.to_string(),
        referrers: context
            .store
            .referrers(&reference)?
            .into_iter()
            .map(|r| Referrer {
                digest: r.manifest.digest.to_string(),
                media_type: r.manifest.media_type,
                artifact_type: r.artifact_type,
                size: r.manifest.size,
                subject: r.subject.to_string(),
                annotations: r.annotations,
            })
            .collect(),
    };
    out.result(&listed, || {
        let mut text = String::new();
        for r in &listed.referrers {
            text.push_str(&format!(
                "{}  {:<40} {:>10}\n",
                r.digest,
                r.artifact_type.as_deref().unwrap_or("-"),
                human_bytes(r.size)
            ));
            for (key, value) in &r.annotations {
                text.push_str(&format!("  {key}={value}\n"));
            }
        }
        text
    });
    if listed.referrers.is_empty() {
        out.note(&format!(
            "{}: no referrers stored (`cachectl pull --referrers {}` stores them)",
            listed.r#ref, listed.r#ref
        ));
    }
    Ok(())
}
