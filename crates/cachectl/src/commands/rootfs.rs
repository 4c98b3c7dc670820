//! `unpack` and `build`: a cached image (pulled when absent, unless
//! `--offline`, and read while its layers download) to a directory or an
//! ext4, squashfs or erofs image (with `--provenance`, and the file that
//! says how it was made).

use super::runtime;
use crate::cli::{BuildArgs, BuildInput, UnpackArgs, UnpackFormat};
use crate::error::CliError;
use crate::output::{Output, human_bytes};
use crate::progress::Progress;
use crate::settings::{Context, TOOLS, ToolPath, parse_reference};
use ociref::Reference;
use ocistore::{PullOptions, StoredImage};
use std::collections::BTreeMap;

/// The options of the pulls these commands make.
fn pull_options(context: &Context, offline: bool) -> PullOptions {
    let mut options = PullOptions::default().with_concurrency(context.concurrency);
    options.platform = context.platform.clone();
    options.offline = offline;
    options
}

/// The note that a pull starts.
fn tell_pull<'a>(
    context: &'a Context,
    reference: &'a Reference,
    out: Output,
) -> impl FnOnce() + 'a {
    move || match &context.platform {
        Some(platform) => out.note(&format!(
            "{reference} ({platform}) is not cached: pulling it"
        )),
        None => out.note(&format!("{reference} is not cached: pulling it")),
    }
}

/// The stored image of `reference` (for the platform asked for, when one
/// is): an offline lookup first (no request, also for a pinned digest),
/// then a pull of what is missing unless `offline`, waited for whole.
fn ensure_cached(
    context: &Context,
    reference: &Reference,
    offline: bool,
    progress: &Progress,
    out: Output,
) -> Result<StoredImage, CliError> {
    let client = context.client(progress)?;
    let options = pull_options(context, offline);
    let image = runtime()?.block_on(context.store.ensure_image(
        &client,
        reference,
        &options,
        tell_pull(context, reference, out),
    ));
    progress.finish();
    Ok(image?)
}

/// `work` on the image of `reference`, as [`ensure_cached`] finds or pulls
/// it, but started as soon as the pull stored the manifest and config: the
/// layers are read as they download. The pull's error wins; when the pull
/// succeeded but `work` failed, `work` runs again on the stored image (a
/// download that restarted under a reader fails that reader, and the
/// stored blobs are whole), so its own errors are what a plain run gives.
fn with_image<T>(
    context: &Context,
    reference: &Reference,
    offline: bool,
    progress: &Progress,
    out: Output,
    work: impl Fn(&StoredImage) -> Result<T, CliError>,
) -> Result<T, CliError> {
    let client = context.client(progress)?;
    let options = pull_options(context, offline);
    let runtime = runtime()?;
    let following = runtime.block_on(context.store.pull_following(
        &client,
        reference,
        &options,
        tell_pull(context, reference, out),
    ))?;
    let done = work(following.image());
    let pulled = following.pulled();
    let outcome = runtime.block_on(following.finish());
    progress.finish();
    outcome?;
    match done {
        Err(err) if pulled => {
            tracing::info!(%reference, "read while it downloaded, failed ({err}): again from the store");
            work(&context.store.image(reference, context.platform.as_ref())?)
        }
        done => done,
    }
}

pub(super) fn unpack(
    context: &Context,
    args: &UnpackArgs,
    progress: &Progress,
    out: Output,
) -> Result<(), CliError> {
    let reference = parse_reference(&args.reference)?;
    let to_stdout = args.directory == std::path::Path::new("-");
    if args.format == UnpackFormat::Tar && to_stdout && out.json {
        return Err(CliError::Usage(
            "unpack --format tar - writes the tar on stdout: --json cannot share it".into(),
        ));
    }
    if args.format == UnpackFormat::Tar {
        // Written once: stdout cannot take a second try.
        let image = ensure_cached(context, &reference, args.offline, progress, out)?;
        return super::archives::write_flat(&reference, &image, &args.directory, progress, out);
    }
    let mut options = rootfs::UnpackOptions::default();
    options.rootless = args.rootless;
    options.progress = progress.callback();
    let report = with_image(context, &reference, args.offline, progress, out, |image| {
        let _step = progress.step(format!(
            "unpacking {reference} into {}",
            args.directory.display()
        ));
        Ok(rootfs::unpack(image, &args.directory, &options)?)
    });
    progress.finish();
    let report = report?;
    let json = serde_json::json!({
        "ref": reference.to_string(),
        "directory": args.directory.display().to_string(),
        "digest": report.manifest_digest.as_ref().map(ToString::to_string),
        "layers": report.layers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "entries": report.entries,
        "bytes": report.bytes,
        "whiteouts": report.whiteouts,
        "rootless": report.rootless,
        "not_applied": {
            "ownership": report.not_applied.ownership,
            "devices": report.not_applied.devices,
            "xattrs": report.not_applied.xattrs,
        },
        "requests": context.usage(),
    });
    out.result(&json, || {
        let mut text = format!(
            "unpacked {} ({} entries, {}) into {}",
            reference,
            report.entries,
            human_bytes(report.bytes),
            args.directory.display()
        );
        let skipped = &report.not_applied;
        if skipped.ownership + skipped.devices + skipped.xattrs > 0 {
            text.push_str(&format!(
                "\nnot applied without root: {} owner(s), {} device node(s), {} extended attribute(s) \
                 (`cachectl build` puts them inside the ext4 image)",
                skipped.ownership, skipped.devices, skipped.xattrs
            ));
        }
        text
    });
    Ok(())
}

pub(super) fn build(
    context: &Context,
    args: &BuildArgs,
    progress: &Progress,
    out: Output,
) -> Result<(), CliError> {
    let reference = parse_reference(&args.reference)?;
    let options = build_options(context, args, progress)?;
    let fs = options.fs.as_str();
    let building = || progress.step(format!("building {} image of {reference}", a_or_an(fs)));
    if args.per_layer {
        let layers = with_image(context, &reference, args.offline, progress, out, |image| {
            let _step = building();
            Ok(rootfs::build_layers(image, &options)?)
        });
        progress.finish();
        let layers = layers?;
        let json: Vec<_> = layers
            .iter()
            .map(|layer| {
                serde_json::json!({
                    "layer": layer.layer.to_string(),
                    "path": layer.path.display().to_string(),
                    "size": layer.size,
                    "cached": layer.cached,
                    "fs": layer.fs.as_str(),
                })
            })
            .collect();
        out.note(&format!(
            "{} {fs} layer image(s) of {reference}, base first",
            layers.len()
        ));
        out.result(&json, || {
            layers
                .iter()
                .map(|layer| layer.path.display().to_string())
                .collect::<Vec<_>>()
                .join("\n")
        });
        return Ok(());
    }
    let built = with_image(context, &reference, args.offline, progress, out, |image| {
        let _step = building();
        Ok(rootfs::build(image, &options)?)
    });
    progress.finish();
    let built = built?;
    let provenance = match (&args.output, args.provenance) {
        (Some(image), true) => Some(crate::provenance::write(
            image,
            &args.reference,
            &reference,
            &built,
            &options,
        )?),
        _ => None,
    };
    let json = serde_json::json!({
        "ref": reference.to_string(),
        "path": built.path.display().to_string(),
        "digest": built.manifest_digest.to_string(),
        "layers": built.layers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "size": built.size,
        "cached": built.cached,
        "config": built.config,
        "fs": built.fs.as_str(),
        "input": (options.fs == rootfs::FsType::Ext4).then(|| built.input.as_str()),
        "provenance": provenance.as_ref().map(|path| path.display().to_string()),
        "requests": context.usage(),
    });
    if options.fs == rootfs::FsType::Ext4 {
        tracing::info!(
            input = built.input.as_str(),
            "{}",
            match built.input {
                rootfs::Ext4Input::Writer => "cachectl's ext4 writer read the merged layers",
                rootfs::Ext4Input::TarStream =>
                    "mke2fs -d read the merged tar stream of the layers",
                _ => "mke2fs -d read an unpacked tree",
            }
        );
    }
    out.note(&format!(
        "{} {fs} image of {reference} ({})",
        if built.cached { "cached" } else { "built" },
        human_bytes(built.size)
    ));
    if let Some(path) = &provenance {
        out.note(&format!("provenance in {}", path.display()));
    }
    out.result(&json, || built.path.display().to_string());
    Ok(())
}

/// The [`rootfs::BuildOptions`] of `build`'s arguments (`--init FILE` puts
/// FILE at `/sbin/init`; a program's flag wins over its settings key),
/// checked: options wrong in themselves fail before any pull or unpack,
/// as usage errors naming the flag.
fn build_options(
    context: &Context,
    args: &BuildArgs,
    progress: &Progress,
) -> Result<rootfs::BuildOptions, CliError> {
    let mut options = rootfs::BuildOptions::default();
    options.fs = args.fs.fs_type();
    let fs = options.fs.as_str();
    if options.fs != rootfs::FsType::Ext4 && args.input.is_some() {
        return Err(CliError::Usage(format!(
            "--input applies to ext4 (what mke2fs reads); {} image is made from the merged tar \
             stream",
            a_or_an(fs)
        )));
    }
    if options.fs != rootfs::FsType::Ext4 && args.headroom.is_some() {
        return Err(CliError::Usage(format!(
            "--headroom applies to ext4; {} image is as large as its content",
            a_or_an(fs)
        )));
    }
    if options.fs == rootfs::FsType::Squashfs && args.label.is_some() {
        return Err(CliError::Usage(
            "--label applies to ext4 and erofs; squashfs has no label".to_owned(),
        ));
    }
    if let Some(compressor) = &args.compressor
        && options.fs == rootfs::FsType::Ext4
    {
        return Err(CliError::Usage(format!(
            "--compressor {compressor} applies to --fs squashfs and --fs erofs; ext4 is not \
             compressed"
        )));
    }
    options.compressor = args.compressor.clone();
    options.tool_paths = tool_paths(context, args, options.fs)?;
    options.size = args.size;
    if let Some(headroom) = args.headroom {
        options.headroom = headroom;
    }
    if let Some(label) = &args.label {
        options.label = label.clone();
    }
    options.output = args.output.clone();
    options.unpack.rootless = args.rootless;
    options.unpack.progress = progress.callback();
    options.input = args.input.map(|input| match input {
        BuildInput::Tree => rootfs::Ext4Input::Tree,
        BuildInput::TarStream => rootfs::Ext4Input::TarStream,
        BuildInput::Writer => rootfs::Ext4Input::Writer,
    });
    if let Some(init) = &args.init {
        let (file, path) = match init.split_once(':') {
            Some((file, path)) => (file, path),
            None => (init.as_str(), "/sbin/init"),
        };
        options.init = Some((file.into(), path.to_owned()));
    }
    options.check().map_err(|err| match (&err, &args.init) {
        (rootfs::Error::PlacePath { .. }, Some(init)) => {
            CliError::Usage(format!("--init {init}: {err}"))
        }
        _ => err.into(),
    })?;
    Ok(options)
}

/// The programs a build of `fs` runs from given paths, by name: each flag
/// (`--mke2fs`) wins over its settings key (`mke2fs`). A path that is not
/// a file is a usage error naming the flag or key, the path and the
/// program; the programs of other file system types are not looked at (a
/// settings file naming a stale `tar2sqfs` does not stop ext4 builds).
fn tool_paths(
    context: &Context,
    args: &BuildArgs,
    fs: rootfs::FsType,
) -> Result<BTreeMap<String, std::path::PathBuf>, CliError> {
    let used: &[&str] = match fs {
        rootfs::FsType::Squashfs => &["tar2sqfs"],
        rootfs::FsType::Erofs => &["mkfs.erofs"],
        _ => &["mke2fs", "debugfs"],
    };
    let mut paths = BTreeMap::new();
    for ((name, flag, _), given) in TOOLS.iter().zip(args.tools.given()) {
        if !used.contains(name) {
            continue;
        }
        let chosen = match given {
            Some(path) => ToolPath {
                path: path.clone(),
                setting: (*flag).to_owned(),
            },
            None => match context.tool_paths.get(*name) {
                Some(from_file) => from_file.clone(),
                None => continue,
            },
        };
        if !chosen.path.is_file() {
            return Err(CliError::Usage(format!(
                "{} names {} as the {name} to run, which is not a file",
                chosen.setting,
                chosen.path.display()
            )));
        }
        paths.insert((*name).to_owned(), chosen.path);
    }
    Ok(paths)
}

/// `a squashfs`, `an ext4`, `an erofs`.
fn a_or_an(fs: &str) -> String {
    match fs.starts_with('s') {
        true => format!("a {fs}"),
        false => format!("an {fs}"),
    }
}
