//! `store-pull ROOT REFERENCE`: pulls one image into the store at ROOT and
//! exits. The SIGKILL test runs it as a separate process and kills it at
//! chosen moments of the pull.
//!
//! With `STORE_PULL_REPORT=1` in the environment it prints, after a
//! successful pull, one JSON line to stdout for `cargo xtask bench pull`:
//! `{"fetched_blobs":N,"up_to_date":B,"peak_rss_kib":K}`, the peak resident
//! set size being `VmHWM` of `/proc/self/status` (null when unreadable).

use std::process::ExitCode;
use std::sync::Arc;

/// The environment variable that asks for the JSON report.
const REPORT_ENV: &str = "STORE_PULL_REPORT";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root, reference] = args.as_slice() else {
        eprintln!("usage: store-pull ROOT REFERENCE");
        return ExitCode::from(2);
    };
    match pull(root, reference).await {
        Ok(outcome) => {
            if std::env::var(REPORT_ENV).is_ok_and(|value| value == "1") {
                println!("{}", report(&outcome, peak_rss_kib()));
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("store-pull: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn pull(
    root: &str,
    reference: &str,
) -> Result<ocistore::PullOutcome, Box<dyn std::error::Error>> {
    let reference: ociref::Reference = reference.parse()?;
    // A loopback registry is spoken to over plain HTTP by default.
    let client = ocidist::Client::new(
        ocidist::ClientConfig::default(),
        Arc::new(ocidist::credentials::StaticCredentials::new()),
    )?;
    let store = ocistore::Store::open(root)?;
    let outcome = store
        .pull(&client, &reference, &ocistore::PullOptions::default())
        .await?;
    Ok(outcome)
}

/// The JSON line of the report.
fn report(outcome: &ocistore::PullOutcome, peak_rss_kib: Option<u64>) -> String {
    serde_json::json!({
        "fetched_blobs": outcome.fetched_blobs,
        "up_to_date": outcome.up_to_date,
        "peak_rss_kib": peak_rss_kib,
    })
    .to_string()
}

/// `VmHWM` (peak resident set size) of this process, in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
