//! `store-load ROOT OP REFERENCE [ARG]`: one store operation as the
//! `cachectl` command of that name does it, for the mixed-load test, which
//! runs many at once on one root:
//!
//! - `rm-gc REF`: untags REF, then `gc` and drops the builds no stored
//!   image owns any more (`cachectl rm REF && cachectl gc`);
//! - `verify REF`: re-hashes the store (exit 6 when it finds a problem);
//! - `export REF FILE`: writes an OCI archive of REF;
//! - `inspect REF`: describes REF;
//! - `build REF`: builds its ext4 image (`cachectl build REF`);
//! - `unpack REF DIR`: unpacks it into DIR (`cachectl unpack REF DIR`);
//!
//! Exit status: 0 done, 3 REF is not cached, 6 `verify` found a problem,
//! 1 any other failure, 2 usage.

use ociref::ErrorKind;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root, op, reference, rest @ ..] = args.as_slice() else {
        eprintln!(
            "usage: store-load ROOT (rm-gc|verify|export|inspect|build|unpack) REFERENCE [ARG]"
        );
        return ExitCode::from(2);
    };
    match run(root, op, reference, rest) {
        Ok(code) => ExitCode::from(code),
        Err((kind, message)) => {
            eprintln!("store-load {op}: {message}");
            match kind {
                Some(ErrorKind::NotCached) => ExitCode::from(3),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// A failure: its kind when the store or rootfs told one, and its text
/// with causes.
type Failure = (Option<ErrorKind>, String);

fn store_error(err: ocistore::Error) -> Failure {
    (Some(err.kind()), chain(&err))
}

fn rootfs_error(err: rootfs::Error) -> Failure {
    (Some(err.kind()), chain(&err))
}

fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!("; caused by: {cause}"));
        source = cause.source();
    }
    text
}

fn run(root: &str, op: &str, reference: &str, rest: &[String]) -> Result<u8, Failure> {
    let reference: ociref::Reference = reference
        .parse()
        .map_err(|err: ociref::Error| (None, err.to_string()))?;
    let store = ocistore::Store::open(root).map_err(store_error)?;
    match (op, rest) {
        ("rm-gc", []) => {
            store.remove(&reference).map_err(store_error)?;
            store.gc().map_err(store_error)?;
            Ok(0)
        }
        ("verify", []) => {
            let report = store.verify().map_err(store_error)?;
            if report.is_ok() {
                return Ok(0);
            }
            eprintln!("store-load verify: {report:?}");
            Ok(6)
        }
        ("export", [out]) => {
            let format = ocistore::ExportFormat::Oci;
            store
                .export(&[reference], format, std::path::Path::new(out))
                .map_err(store_error)?;
            Ok(0)
        }
        ("inspect", []) => {
            store.inspect(&reference).map_err(store_error)?;
            Ok(0)
        }
        ("build", []) => {
            let options = rootfs::BuildOptions::default();
            let image = store.image(&reference, None).map_err(store_error)?;
            rootfs::build(&image, &options).map_err(rootfs_error)?;
            Ok(0)
        }
        ("unpack", [dir]) => {
            let options = rootfs::UnpackOptions::rootless();
            let dir = std::path::Path::new(dir);
            let image = store.image(&reference, None).map_err(store_error)?;
            rootfs::unpack(&image, dir, &options).map_err(rootfs_error)?;
            Ok(0)
        }
        _ => Err((None, format!("unknown operation {op} {rest:?}"))),
    }
}
