//! `import` and `export` of image archives.

use crate::cli::ArchiveFormat;
use crate::error::CliError;
use crate::output::{Output, human_bytes};
use crate::progress::Progress;
use crate::settings::{Context, parse_reference, parse_references};
use ocistore::{ExportFormat, ImportOptions};
use std::path::{Path, PathBuf};

pub(super) fn import(
    context: &Context,
    files: &[PathBuf],
    name: Option<&str>,
    progress: &Progress,
    out: Output,
) -> Result<(), CliError> {
    let mut options = ImportOptions::default();
    if let Some(name) = name {
        options = options.with_name(parse_reference(name)?);
    }
    if let Some(platform) = &context.platform {
        options = options.with_platform(platform.clone());
    }
    let mut results = Vec::new();
    for file in files {
        let step = progress.step(format!("importing {}", file.display()));
        let mut options = options.clone();
        options.progress = progress.callback();
        let report = context.store.import(file, &options);
        drop(step);
        let report = report?;
        for image in &report.images {
            out.note(&format!(
                "{}: imported {} from {}",
                image.reference,
                image.manifest_digest,
                file.display()
            ));
        }
        results.push(serde_json::json!({
            "file": file.display().to_string(),
            "images": report.images.iter().map(|i| serde_json::json!({
                "ref": i.reference,
                "digest": i.manifest_digest.to_string(),
            })).collect::<Vec<_>>(),
            "blobs_written": report.blobs_written,
            "blobs_reused": report.blobs_reused,
            "bytes_written": report.bytes_written,
        }));
    }
    progress.finish();
    out.result(&results, || {
        results
            .iter()
            .flat_map(|r| r["images"].as_array().cloned().unwrap_or_default())
            .map(|i| {
                format!(
                    "{} {}",
                    i["digest"].as_str().unwrap_or(""),
                    i["ref"].as_str().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

pub(super) fn export(
    context: &Context,
    references: &[String],
    output: &Path,
    format: ArchiveFormat,
    progress: &Progress,
    out: Output,
) -> Result<(), CliError> {
    let references = parse_references(references)?;
    let format = match format {
        ArchiveFormat::Oci => ExportFormat::Oci,
        ArchiveFormat::Docker => ExportFormat::Docker,
    };
    let step = progress.step(format!("writing {}", output.display()));
    let report = context.store.export(&references, format, output);
    drop(step);
    let report = report?;
    let result = serde_json::json!({
        "file": output.display().to_string(),
        "references": references.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "blobs_written": report.blobs_written,
        "bytes_written": report.bytes_written,
    });
    out.result(&result, || {
        format!(
            "wrote {} ({}, {} blob(s))",
            output.display(),
            human_bytes(report.bytes_written),
            report.blobs_written
        )
    });
    Ok(())
}

/// `export --flatten`: the final file system of one cached image as a tar
/// (`rootfs::export_tar_to`: written beside `output`, synced, renamed) or
/// to stdout for `-`.
pub(super) fn export_flat(
    context: &Context,
    references: &[String],
    output: &Path,
    progress: &Progress,
    out: Output,
) -> Result<(), CliError> {
    let [reference] = references else {
        return Err(CliError::Usage(
            "export --flatten writes one image's file system: give one reference".into(),
        ));
    };
    let to_stdout = output == Path::new("-");
    if to_stdout && out.json {
        return Err(CliError::Usage(
            "export --flatten -o - writes the tar on stdout: --json cannot share it".into(),
        ));
    }
    let reference = parse_reference(reference)?;
    let image = context.store.image(&reference, context.platform.as_ref())?;
    write_flat(&reference, &image, output, progress, out)
}

/// Writes the file system of `image` (`reference`) as one tar to `output`
/// (replaced atomically) or, for `-`, to stdout.
pub(super) fn write_flat(
    reference: &ociref::Reference,
    image: &ocistore::StoredImage,
    output: &Path,
    progress: &Progress,
    out: Output,
) -> Result<(), CliError> {
    let to_stdout = output == Path::new("-");
    let step = progress.step(format!("writing the file system of {reference}"));
    let report = if to_stdout {
        let stdout = std::io::stdout().lock();
        rootfs::export_tar(image, std::io::BufWriter::with_capacity(1 << 20, stdout))?
    } else {
        rootfs::export_tar_to(image, output)?
    };
    drop(step);
    let result = serde_json::json!({
        "file": output.display().to_string(),
        "ref": reference.to_string(),
        "digest": image.manifest().digest.to_string(),
        "entries": report.entries,
        "bytes": report.bytes,
    });
    if !to_stdout {
        out.result(&result, || {
            format!(
                "wrote the file system of {reference} to {} ({} entries, {})",
                output.display(),
                report.entries,
                human_bytes(report.bytes)
            )
        });
    }
    Ok(())
}
