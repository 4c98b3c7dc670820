//! A flattened tar stream of an image's final file system, as
//! `docker export` gives.

use crate::error::{Error, Result};
use crate::merge::{MergeOptions, TarSink, merge_entries};
use crate::unpack::UnpackReport;
use ocistore::StoredImage;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes the final file system of a stored image to `writer` as one tar
/// stream: whiteouts resolved, parents
/// before children, names sorted, each directory followed by what it
/// holds, hardlinks as link entries to the first path of their inode;
/// owners, modes, mtimes, device nodes and extended attributes
/// (`SCHILY.xattr.*`) as the layers give them, also when running
/// unprivileged. Nothing is unpacked: the layers are merged as a stream
/// ([`crate::merged_tar`] in path order), read from their uncompressed
/// tars ([`crate::layer_tars`], made under the store when missing).
/// Blocking.
pub fn export_tar(image: &StoredImage, writer: impl Write) -> Result<UnpackReport> {
    let mut sink = TarSink::new(writer);
    let options = MergeOptions {
        layer_tars: true,
        sorted: true,
    };
    let merged = merge_entries(image, &mut sink, &options)?;
    sink.finish().map_err(|source| Error::Io {
        what: "ending the exported tar of",
        path: PathBuf::from(image.reference().to_string()),
        source,
    })?;
    Ok(UnpackReport {
        manifest_digest: Some(merged.manifest_digest),
        layers: merged.layers,
        entries: merged.entries,
        bytes: merged.bytes,
        whiteouts: merged.whiteouts,
        rootless: true,
        ..UnpackReport::default()
    })
}

/// [`export_tar`] into the file `output`, replaced atomically as
/// [`crate::BuildOptions::output`] is: written to a temp file beside it
/// (one a killed process left is removed first), synced, renamed over it,
/// the directory synced; a failure leaves `output` as it was. Blocking.
pub fn export_tar_to(image: &StoredImage, output: &Path) -> Result<UnpackReport> {
    let mut report = None;
    crate::output::write_output(image.store(), output, |file, _| {
        let writer = std::io::BufWriter::with_capacity(1 << 20, file);
        report = Some(export_tar(image, writer)?);
        Ok(())
    })?;
    Ok(report.expect("because a successful write made the report"))
}
