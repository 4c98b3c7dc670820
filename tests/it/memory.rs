//! Streaming, measured: fetching a 1 GiB blob keeps the fetching process's
//! peak RSS under 64 MiB. The fetch runs in its own process (`fetch-blob`)
//! so that the figure is not the test harness's.

use cachectl_tests::{registries, unique};
use ocidist::{BlobSource, Client, ClientConfig, Descriptor};
use ociref::{Algorithm, HashingWriter, Reference};
use std::io::Write;
use std::sync::Arc;

const SIZE: u64 = 1 << 30;
const PEAK_RSS_LIMIT_KIB: u64 = 64 * 1024;

/// Writes `SIZE` bytes of a cheap deterministic pattern, hashing as it goes.
fn write_blob(path: &std::path::Path) -> ociref::Digest {
    let file = std::fs::File::create(path).expect("blob file created");
    let mut writer = HashingWriter::new(std::io::BufWriter::new(file), Algorithm::Sha256);
    let mut chunk = vec![0u8; 1 << 20];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..(SIZE >> 20) {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        writer.write_all(&chunk).expect("blob written");
    }
    let (mut inner, digest) = writer.finish();
    inner.flush().expect("blob flushed");
    digest
}

#[tokio::test]
async fn fetching_a_1_gib_blob_stays_under_64_mib_rss() {
    let registries = registries();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("big");
    let digest = tokio::task::spawn_blocking({
        let path = path.clone();
        move || write_blob(&path)
    })
    .await
    .expect("writer thread");
    let target: Reference = format!("{}/{}:big", registries.plain, unique("memory/blob"))
        .parse()
        .expect("valid");
    let descriptor = Descriptor {
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        digest: digest.clone(),
        size: SIZE,
    };
    let client = Client::new(
        ClientConfig::default(),
        Arc::new(ocidist::credentials::StaticCredentials::new()),
    )
    .expect("client");
    let started = std::time::Instant::now();
    client
        .push_blob(&target, &descriptor, BlobSource::File(&path))
        .await
        .expect("1 GiB pushed in chunks");
    let pushed = started.elapsed();
    drop(dir);

    let started = std::time::Instant::now();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_fetch-blob"))
        .args([target.to_string(), digest.to_string(), SIZE.to_string()])
        .output()
        .await
        .expect("fetch-blob runs");
    let fetched = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "fetch-blob failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(&format!("received={SIZE}")), "{stdout}");
    let peak: u64 = stdout
        .split_whitespace()
        .find_map(|field| field.strip_prefix("peak_rss_kib="))
        .and_then(|v| v.parse().ok())
        .expect("peak RSS printed");
    println!(
        "1 GiB blob: push {:.1} s, fetch+verify {:.1} s ({:.0} MiB/s), fetcher peak RSS {} KiB",
        pushed.as_secs_f64(),
        fetched.as_secs_f64(),
        1024.0 / fetched.as_secs_f64(),
        peak
    );
    assert!(peak > 0 && peak < PEAK_RSS_LIMIT_KIB, "peak RSS {peak} KiB");
}
