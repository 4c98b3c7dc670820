//! `fetch-blob REFERENCE DIGEST SIZE`: streams one blob from a registry with
//! `ocidist`, discards it, and prints the bytes received and this process's
//! peak resident memory, so a test can measure memory in a clean process.

use std::process::ExitCode;
use std::sync::Arc;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [reference, digest, size] = args.as_slice() else {
        eprintln!("usage: fetch-blob REFERENCE DIGEST SIZE");
        return ExitCode::from(2);
    };
    match run(reference, digest, size).await {
        Ok(received) => {
            println!("received={received} peak_rss_kib={}", peak_rss_kib());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("fetch-blob: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(reference: &str, digest: &str, size: &str) -> Result<u64, Box<dyn std::error::Error>> {
    let reference: ociref::Reference = reference.parse()?;
    let descriptor = ocidist::Descriptor {
        media_type: "application/octet-stream".into(),
        digest: digest.parse()?,
        size: size.parse()?,
    };
    let client = ocidist::Client::new(
        ocidist::ClientConfig::default(),
        Arc::new(ocidist::credentials::StaticCredentials::new()),
    )?;
    let mut sink = tokio::io::sink();
    client
        .blob_to_writer(&reference, &descriptor, &mut sink)
        .await?;
    Ok(descriptor.size)
}

/// `VmHWM` from /proc/self/status, in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}
