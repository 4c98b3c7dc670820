//! `prune`, `gc`, `verify`, `du`.

use super::runtime;
use crate::cli::{GcArgs, PruneArgs};
use crate::error::CliError;
use crate::output::{Output, human_bytes, known_time, table};
use crate::progress::Progress;
use crate::settings::{Context, parse_references};
use ocistore::PrunePolicy;
use serde::Serialize;

pub(super) fn prune(context: &Context, args: &PruneArgs, out: Output) -> Result<(), CliError> {
    if args.keep.is_none() && args.max_size.is_none() && args.older_than.is_none() {
        return Err(CliError::Usage(
            "prune needs at least one of --keep, --max-size, --older-than".into(),
        ));
    }
    let report = context.store.prune(&PrunePolicy {
        keep: args.keep,
        max_bytes: args.max_size,
        older_than: args.older_than,
        dry_run: args.dry_run,
        partial_grace: Some(args.partials.keep_partials),
    })?;
    // The store's collection removed the builds of removed images and what
    // killed builds left in the store; the sweep adds what they left
    // outside it (on /dev/shm, beside unpack targets).
    let (builds, work_dirs) = match (&report.gc, args.dry_run) {
        (Some(gc), false) => (
            rootfs::BuildFiles::collected(&gc.derived),
            left_by_killed(&gc.derived) + rootfs::remove_stale_work(&context.store)?,
        ),
        _ => (rootfs::BuildFiles::default(), 0),
    };
    let builds = RemovedBuilds::from(builds);
    let report = Pruned {
        removed: report.removed,
        kept: report.kept,
        bytes_freed: report.bytes_freed,
        gc: report.gc.map(|blobs| Collected {
            blobs,
            builds,
            removed_work_dirs: work_dirs,
        }),
        builds,
    };
    out.result(&report, || {
        let builds = report.builds.line();
        let verb = if args.dry_run {
            "would remove"
        } else {
            "removed"
        };
        let mut text: Vec<String> = report
            .removed
            .iter()
            .map(|r| format!("{verb} {r}"))
            .collect();
        text.push(format!(
            "{} {} image(s), {} {}",
            verb,
            report.removed.len(),
            human_bytes(report.bytes_freed),
            if args.dry_run {
                "would be freed"
            } else {
                "freed"
            }
        ));
        text.extend(builds);
        text.join("\n")
    });
    Ok(())
}

/// `prune --json`: the store's report, its collection in the `gc` shape,
/// and the build counts of that collection again at the top.
#[derive(Serialize)]
struct Pruned {
    removed: Vec<String>,
    kept: Vec<String>,
    bytes_freed: u64,
    gc: Option<Collected>,
    #[serde(flatten)]
    builds: RemovedBuilds,
}

/// The ext4 builds and layer tars `gc` and `prune` removed, in their
/// `--json` names (`build_bytes_freed` counts both).
#[derive(Clone, Copy, Serialize)]
struct RemovedBuilds {
    removed_builds: usize,
    removed_layer_tars: usize,
    build_bytes_freed: u64,
}

impl From<rootfs::BuildFiles> for RemovedBuilds {
    fn from(builds: rootfs::BuildFiles) -> RemovedBuilds {
        RemovedBuilds {
            removed_builds: builds.images,
            removed_layer_tars: builds.layer_tars,
            build_bytes_freed: builds.bytes,
        }
    }
}

impl RemovedBuilds {
    /// The line people read, when something was removed.
    fn line(&self) -> Option<String> {
        (self.removed_builds > 0 || self.removed_layer_tars > 0).then(|| {
            format!(
                "removed {} image build(s) (ext4, squashfs, erofs) and {} layer tar(s) of removed \
                 images, freed {}",
                self.removed_builds,
                self.removed_layer_tars,
                human_bytes(self.build_bytes_freed)
            )
        })
    }
}

/// `du --json`: the store's usage, plus the cached ext4 builds and layer
/// tars.
#[derive(Serialize)]
struct Usage {
    #[serde(flatten)]
    blobs: ocistore::DiskUsage,
    builds: rootfs::BuildFiles,
}

/// `gc --json`: the store's report, plus the ext4 builds of images that
/// are gone.
#[derive(Serialize)]
struct Collected {
    #[serde(flatten)]
    blobs: ocistore::GcReport,
    #[serde(flatten)]
    builds: RemovedBuilds,
    removed_work_dirs: usize,
}

/// What killed builds left in the store that `gc` removed: work
/// directories and partial files.
fn left_by_killed(derived: &ocistore::DerivedFiles) -> usize {
    derived.work_entries + derived.partial_files
}

pub(super) fn gc(context: &Context, args: &GcArgs, out: Output) -> Result<(), CliError> {
    let blobs = context.store.gc_keeping_partials(args.keep_partials)?;
    let builds = rootfs::BuildFiles::collected(&blobs.derived);
    let work_dirs = left_by_killed(&blobs.derived) + rootfs::remove_stale_work(&context.store)?;
    let report = Collected {
        blobs,
        builds: RemovedBuilds::from(builds),
        removed_work_dirs: work_dirs,
    };
    out.result(&report, || {
        let blobs = &report.blobs;
        let mut text = format!(
            "removed {} blob(s) and {} stale download(s), freed {}; kept {} blob(s)",
            blobs.removed_blobs,
            blobs.removed_ingest_files,
            human_bytes(blobs.bytes_freed),
            blobs.kept_blobs
        );
        if blobs.kept_partials > 0 {
            text.push_str(&format!(
                "\nkept {} partial download(s) ({}) that a pull can resume (--keep-partials)",
                blobs.kept_partials,
                human_bytes(blobs.kept_partial_bytes)
            ));
        }
        if let Some(line) = report.builds.line() {
            text.push('\n');
            text.push_str(&line);
        }
        if work_dirs > 0 {
            text.push_str(&format!(
                "\nremoved {work_dirs} work directory(ies) and partial image(s) left by killed unpacks \
                 or builds"
            ));
        }
        text
    });
    Ok(())
}

/// `verify --json`.
#[derive(Serialize)]
struct Verified {
    blobs_checked: usize,
    corrupt: Vec<Problem>,
    missing: Vec<Problem>,
    repaired: Vec<String>,
    unrepaired: Vec<Problem>,
}

#[derive(Serialize)]
struct Problem {
    digest: String,
    references: Vec<String>,
    quarantined_to: Option<String>,
    reason: Option<String>,
}

/// `corrupt DIGEST (moved to PATH), breaks REF, …`: a corrupt blob, and
/// where it is now (left in place when the cache is read-only).
fn corrupt_line(p: &Problem) -> String {
    let aside = match p.quarantined_to.as_deref() {
        Some(aside) => format!("moved to {aside}"),
        None => "left in place: the cache is read-only".to_owned(),
    };
    format!(
        "corrupt {} ({aside}), breaks {}",
        p.digest,
        p.references.join(", ")
    )
}

pub(super) fn verify(
    context: &Context,
    references: &[String],
    repair: bool,
    progress: &Progress,
    out: Output,
) -> Result<(), CliError> {
    let only: Vec<String> = parse_references(references)?
        .iter()
        .map(ToString::to_string)
        .collect();
    require_cached(context, &only)?;
    // A problem names `index.json` entries: `REF`, or `REF@platform` for a
    // further platform of REF; both concern REF.
    let concerns = |refs: &[String]| {
        only.is_empty()
            || refs
                .iter()
                .any(|r| only.iter().any(|o| o == ocistore::split_entry_name(r).0))
    };
    let report = context.store.verify()?;
    let problem = |p: &ocistore::VerifyProblem| Problem {
        digest: p.digest.to_string(),
        references: p.references.clone(),
        quarantined_to: p.quarantined_to.as_ref().map(|q| q.display().to_string()),
        reason: None,
    };
    let mut verified = Verified {
        blobs_checked: report.blobs_checked,
        corrupt: report
            .corrupt
            .iter()
            .filter(|p| concerns(&p.references))
            .map(problem)
            .collect(),
        // The store lists a blob it just quarantined as missing too: it is
        // reported once, as corrupt.
        missing: report
            .missing
            .iter()
            .filter(|p| concerns(&p.references))
            .filter(|p| !report.corrupt.iter().any(|c| c.digest == p.digest))
            .map(problem)
            .collect(),
        repaired: Vec::new(),
        unrepaired: Vec::new(),
    };
    // A corrupt blob no image needs is quarantined and harms nothing.
    let broken = verified.missing.len()
        + verified
            .corrupt
            .iter()
            .filter(|p| !p.references.is_empty())
            .count();
    if repair && broken > 0 {
        let client = context.client(progress)?;
        let repaired = runtime()?.block_on(context.store.repair(&client));
        progress.finish();
        let repaired = repaired?;
        verified.repaired = repaired.repaired.iter().map(ToString::to_string).collect();
        verified.unrepaired = repaired
            .failed
            .iter()
            .filter(|f| concerns(&f.references))
            .map(|f| Problem {
                digest: f.digest.to_string(),
                references: f.references.clone(),
                quarantined_to: None,
                reason: Some(f.reason.clone()),
            })
            .collect();
    }
    // A corrupt blob a read-only cache left in place stays broken.
    let in_place = (verified.corrupt.iter())
        .filter(|p| p.quarantined_to.is_none() && !p.references.is_empty());
    let remaining = if repair {
        verified.unrepaired.len() + in_place.count()
    } else {
        broken
    };
    out.result(&verified, || {
        let mut lines = vec![format!("checked {} blob(s)", verified.blobs_checked)];
        lines.extend(verified.corrupt.iter().map(corrupt_line));
        for p in &verified.missing {
            lines.push(format!(
                "missing {}, breaks {}",
                p.digest,
                p.references.join(", ")
            ));
        }
        for d in &verified.repaired {
            lines.push(format!("repaired {d}"));
        }
        for p in &verified.unrepaired {
            lines.push(format!(
                "could not repair {}: {}",
                p.digest,
                p.reason.as_deref().unwrap_or("")
            ));
        }
        if remaining == 0 {
            lines.push("ok".into());
        }
        lines.join("\n")
    });
    if remaining > 0 {
        return Err(CliError::Broken {
            problems: remaining,
        });
    }
    Ok(())
}

/// [`CliError::NotCached`] naming each of `references` the cache lacks.
fn require_cached(context: &Context, references: &[String]) -> Result<(), CliError> {
    let cached: Vec<String> = context
        .store
        .list()?
        .into_iter()
        .map(|entry| entry.image_reference)
        .collect();
    let absent: Vec<String> = references
        .iter()
        .filter(|r| !cached.contains(r))
        .cloned()
        .collect();
    if absent.is_empty() {
        Ok(())
    } else {
        Err(CliError::NotCached { references: absent })
    }
}

pub(super) fn du(context: &Context, out: Output) -> Result<(), CliError> {
    let usage = Usage {
        blobs: context.store.disk_usage()?,
        builds: rootfs::cached_builds(&context.store)?,
    };
    let mut json = serde_json::to_value(&usage).expect("because usage serializes");
    for (image, measured) in json["images"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .zip(&usage.blobs.images)
    {
        image["last_used_at"] = known_time(measured.last_used_at).into();
    }
    out.result(&json, || {
        let (builds, usage) = (&usage.builds, &usage.blobs);
        let rows: Vec<Vec<String>> = usage
            .images
            .iter()
            .map(|i| {
                vec![
                    i.reference.clone(),
                    human_bytes(i.total),
                    human_bytes(i.shared),
                    human_bytes(i.unique),
                ]
            })
            .collect();
        let mut text = format!(
            "{}\n\nblobs {}  (unreferenced {}), partial downloads {}, quarantined {}\n\
             image builds (ext4, squashfs, erofs) and layer tars {} ({} image(s), {} tar(s))",
            table(&["REFERENCE", "TOTAL", "SHARED", "UNIQUE"], &rows),
            human_bytes(usage.blobs_bytes),
            human_bytes(usage.unreferenced_bytes),
            human_bytes(usage.ingest_bytes),
            human_bytes(usage.quarantine_bytes),
            human_bytes(builds.bytes),
            builds.images,
            builds.layer_tars
        );
        if builds.partial_images > 0 {
            text.push_str(&format!(
                "\npartial images {} ({} of running or killed builds; the next build or gc \
                 removes those of killed ones)",
                human_bytes(builds.partial_bytes),
                builds.partial_images
            ));
        }
        text
    });
    Ok(())
}
