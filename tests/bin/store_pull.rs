//! `store-pull ROOT REFERENCE`: pulls one image into the store at ROOT and
//! exits. The SIGKILL test runs it as a separate process and kills it at
//! chosen moments of the pull.

use std::process::ExitCode;
use std::sync::Arc;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root, reference] = args.as_slice() else {
        eprintln!("usage: store-pull ROOT REFERENCE");
        return ExitCode::from(2);
    };
    match pull(root, reference).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("store-pull: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn pull(root: &str, reference: &str) -> Result<(), Box<dyn std::error::Error>> {
    let reference: ociref::Reference = reference.parse()?;
    let client = ocidist::Client::new(
        ocidist::ClientConfig::default(),
        Arc::new(ocidist::credentials::StaticCredentials::new()),
    )?;
    let store = ocistore::Store::open(root)?;
    store
        .pull(&client, &reference, &ocistore::PullOptions::default())
        .await?;
    Ok(())
}
