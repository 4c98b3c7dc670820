//! `cargo xtask bench unpack|build`: rootfs against its peers on the same
//! ~100 MB gzip image, alternating, 5 rounds.
//!
//! The image is one gzip layer written by GNU tar from parts of the host
//! (`/usr/lib/python3*`, `/usr/share/perl`, `/usr/sbin`, `/etc`,
//! `/usr/share/zoneinfo`), in a layout under `target/bench/`. rootfs runs as
//! the release build of the `rootfs-build` test binary; the peers are
//! `umoci raw unpack` and, for `build`, `umoci raw unpack` followed by
//! `mke2fs -t ext4 -d` with the size rootfs chose. Rounds alternate
//! (rootfs, peer, rootfs, …) so both see the same machine load.

use crate::cmd::{self, Error};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: cargo xtask bench unpack|build [--rounds N]";
const REFERENCE: &str = "example.com/bench/host:v1";

/// Entry point of `cargo xtask bench`.
pub(crate) fn run(args: &[String]) -> Result<(), Error> {
    let mut rounds = 5;
    let mut what = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "unpack" | "build" => what = Some(arg.clone()),
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or(USAGE.to_owned())?;
            }
            other => return Err(format!("unexpected argument `{other}`; {USAGE}")),
        }
    }
    let what = what.ok_or(USAGE.to_owned())?;
    let root = cmd::workspace_root();
    cmd::run(cmd::cargo().args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "cachectl-tests",
        "--bin",
        "rootfs-build",
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let exe = target.join("release/rootfs-build");
    let bench = target.join("bench");
    let store = bench.join("store");
    if !store.join("index.json").is_file() {
        make_image(&bench, &store)?;
    }
    let rootless = !is_root()?;
    let mut ours = Vec::new();
    let mut peers = Vec::new();
    for round in 0..rounds {
        let ours_dir = bench.join("ours");
        let peer_dir = bench.join("peer");
        for dir in [&ours_dir, &peer_dir] {
            remove(dir)?;
        }
        std::fs::create_dir_all(&peer_dir)
            .map_err(|err| format!("creating {}: {err}", peer_dir.display()))?;
        let (ours_time, peer_time) = match what.as_str() {
            "unpack" => {
                let ours_time = timed(
                    Command::new(&exe)
                        .arg(&store)
                        .arg(REFERENCE)
                        .arg("--unpack")
                        .arg(&ours_dir),
                )?;
                let peer_time = timed(&mut umoci(&store, &peer_dir, rootless))?;
                (ours_time, peer_time)
            }
            _ => {
                remove(&store.join(".cachectl/ext4"))?;
                cmd::output(&mut Command::new("sync"))?;
                let started = Instant::now();
                let image = cmd::output(Command::new(&exe).arg(&store).arg(REFERENCE))?;
                let ours_time = started.elapsed();
                let size = std::fs::metadata(image.trim())
                    .map_err(|err| format!("reading {}: {err}", image.trim()))?
                    .len();
                let peer_image = bench.join("peer.ext4");
                let _ = std::fs::remove_file(&peer_image);
                cmd::output(&mut Command::new("sync"))?;
                let started = Instant::now();
                cmd::output(&mut umoci(&store, &peer_dir, rootless))?;
                cmd::output(
                    Command::new("mke2fs")
                        .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-d"])
                        .arg(peer_dir.join("rootfs"))
                        .arg(&peer_image)
                        .arg(format!("{}k", size / 1024)),
                )?;
                (ours_time, started.elapsed())
            }
        };
        println!(
            "round {}: rootfs {ours_time:.2?}, peer {peer_time:.2?}",
            round + 1
        );
        ours.push(ours_time);
        peers.push(peer_time);
    }
    let (ours, peers) = (median(&mut ours), median(&mut peers));
    let peer_name = if what == "unpack" {
        "umoci raw unpack"
    } else {
        "umoci raw unpack + mke2fs -d"
    };
    println!(
        "{what}: rootfs median {ours:.2?}, {peer_name} median {peers:.2?}, ratio {:.2}",
        ours.as_secs_f64() / peers.as_secs_f64()
    );
    Ok(())
}

fn umoci(store: &Path, dir: &Path, rootless: bool) -> Command {
    let mut command = Command::new("umoci");
    command.args(["raw", "unpack"]);
    if rootless {
        command.arg("--rootless");
    }
    command
        .arg("--image")
        .arg(format!("{}:{REFERENCE}", store.display()))
        .arg(dir.join("rootfs"));
    command
}

/// Runs `command` and returns how long it took, after writing back what
/// earlier rounds left dirty (`sync`), so no round pays for another.
fn timed(command: &mut Command) -> Result<Duration, Error> {
    cmd::output(&mut Command::new("sync"))?;
    let started = Instant::now();
    cmd::output(command)?;
    Ok(started.elapsed())
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn remove(path: &Path) -> Result<(), Error> {
    match std::fs::remove_dir_all(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("removing {}: {err}", path.display()))
        }
        _ => Ok(()),
    }
}

fn is_root() -> Result<bool, Error> {
    Ok(cmd::output(Command::new("id").arg("-u"))?.trim() == "0")
}

/// Writes the one-layer image into a new OCI layout at `store`.
fn make_image(bench: &Path, store: &Path) -> Result<(), Error> {
    let blobs = store.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)
        .map_err(|err| format!("creating {}: {err}", blobs.display()))?;
    let parts: Vec<&str> = [
        "usr/lib/python3.11",
        "usr/lib/python3",
        "usr/share/perl",
        "usr/sbin",
        "etc",
        "usr/share/zoneinfo",
    ]
    .into_iter()
    .filter(|p| Path::new("/").join(p).exists())
    .collect();
    let tar = bench.join("layer.tar");
    cmd::run(
        Command::new("tar")
            .args(["-C", "/", "--numeric-owner", "-cf"])
            .arg(&tar)
            .args(&parts),
    )?;
    let tar_bytes =
        std::fs::read(&tar).map_err(|err| format!("reading {}: {err}", tar.display()))?;
    let diff_id = sha256(&tar_bytes);
    cmd::run(Command::new("gzip").args(["-6", "-n", "-f"]).arg(&tar))?;
    let gz = bench.join("layer.tar.gz");
    let layer = std::fs::read(&gz).map_err(|err| format!("reading {}: {err}", gz.display()))?;
    println!(
        "bench image: {} MB uncompressed, {} MB gzip, from {}",
        tar_bytes.len() >> 20,
        layer.len() >> 20,
        parts.join(", ")
    );
    let layer_digest = put(&blobs, &layer)?;
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    })
    .to_string();
    let config_digest = put(&blobs, config.as_bytes())?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest, "size": layer.len()}],
    })
    .to_string();
    let manifest_digest = put(&blobs, manifest.as_bytes())?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": manifest_digest, "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": REFERENCE}}],
    });
    write(
        &store.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    write(&store.join("index.json"), index.to_string().as_bytes())
}

fn sha256(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn put(blobs: &Path, bytes: &[u8]) -> Result<String, Error> {
    let digest = sha256(bytes);
    write(&blobs.join(&digest["sha256:".len()..]), bytes)?;
    Ok(digest)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    std::fs::write(path, bytes).map_err(|err| format!("writing {}: {err}", path.display()))
}
