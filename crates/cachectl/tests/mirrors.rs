//! `--hosts-dir` (mirrors in containerd's layout) end to end: where the
//! directory comes from, a malformed file, and a mirror that fails being
//! skipped, noted on stderr and listed in `--json`, while the pull
//! succeeds from the registry; and the requests `build` and `push` report
//! in their `--json`.

mod support;

use std::path::Path;
use support::{cachectl, fixture, stderr, stdout};

/// A hosts directory that sends pulls from `registry` to `mirror_url`.
fn hosts_dir(root: &Path, registry: &str, text: &str) -> std::path::PathBuf {
    let dir = root.join("hosts.d");
    std::fs::create_dir_all(dir.join(registry)).expect("namespace directory");
    std::fs::write(dir.join(registry).join("hosts.toml"), text).expect("hosts.toml");
    dir
}

/// `http://127.0.0.1:PORT` where nothing listens.
fn dead_mirror() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = listener.local_addr().expect("an address");
    drop(listener);
    format!("http://{addr}")
}

#[test]
fn a_malformed_hosts_file_is_a_usage_error_naming_the_file_and_line() {
    let home = tempfile::tempdir().expect("tempdir");
    let dir = hosts_dir(
        home.path(),
        "reg.example:5000",
        "[host.\"http://m:1\"]\n  capabilities = [\"pull\", \"teleport\"]\n",
    );
    let (reference, _) = fixture("small");
    for how in ["flag", "env"] {
        let mut command = cachectl(home.path());
        command.args(["pull", &reference]);
        match how {
            "flag" => command.arg("--hosts-dir").arg(&dir),
            _ => command.env("CACHECTL_HOSTS_DIR", &dir),
        };
        let run = command.output().expect("runs");
        assert_eq!(run.status.code(), Some(2), "{how}: {}", stderr(&run));
        let file = dir.join("reg.example:5000").join("hosts.toml");
        assert!(
            stderr(&run).contains(&format!("{}, line 2", file.display())),
            "{how}: {}",
            stderr(&run)
        );
        assert!(stderr(&run).contains("teleport"), "{how}: {}", stderr(&run));
    }
    // An empty CACHECTL_HOSTS_DIR turns mirrors off: the pull goes on.
    let run = cachectl(home.path())
        .args(["pull", "-q", &reference])
        .env("CACHECTL_HOSTS_DIR", "")
        .output()
        .expect("runs");
    assert!(run.status.success(), "{}", stderr(&run));
}

#[test]
fn a_dead_mirror_is_skipped_noted_and_listed_in_json_and_the_pull_succeeds() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, digest) = fixture("small");
    let registry = reference.split('/').next().expect("a registry").to_owned();
    let mirror = dead_mirror();
    let dir = hosts_dir(
        home.path(),
        &registry,
        &format!("[host.\"{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"),
    );
    let run = cachectl(home.path())
        .args(["pull", "--json", &reference])
        .arg("--hosts-dir")
        .arg(&dir)
        .output()
        .expect("runs");
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(stderr(&run), "", "--json keeps stderr quiet");
    let json: serde_json::Value = serde_json::from_str(&stdout(&run)).expect("JSON");
    assert_eq!(json[0]["digest"], digest.as_str());
    let skipped = json[0]["skipped_mirrors"].as_array().expect("an array");
    assert_eq!(skipped.len(), 1, "{json}");
    assert_eq!(skipped[0]["mirror"], format!("{mirror}/").as_str());
    assert_eq!(skipped[0]["registry"], registry.as_str());
    assert!(
        skipped[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("network error")),
        "{json}"
    );
    // What the run spent: the registry served it all (manifest, config
    // and one layer); the dead mirror got connection attempts only.
    let requests = json[0]["requests"].as_array().expect("an array");
    let at = |host: &str| {
        requests
            .iter()
            .find(|r| r["host"] == host)
            .unwrap_or_else(|| panic!("{host} in {json}"))
            .clone()
    };
    let origin = at(&registry);
    assert_eq!(origin["blob_get"], 2, "{json}");
    assert_eq!(origin["manifest_head"], 1, "{json}");
    assert_eq!(origin["manifest_get"], 1, "{json}");
    assert_eq!(origin["mirror"], false, "{json}");
    let dead = at(mirror.trim_start_matches("http://"));
    assert_eq!(dead["mirror"], true, "{json}");
    assert_eq!(dead["bytes"], 0, "{json}");
    // Without --json, one note on stderr, from a settings file this time.
    let settings = home.path().join("config.toml");
    std::fs::write(
        &settings,
        format!("hosts_dir = {:?}\n", dir.display().to_string()),
    )
    .expect("settings");
    let again = home.path().join("second");
    let run = cachectl(home.path())
        .args(["pull", &reference, "--config"])
        .arg(&settings)
        .env("CACHECTL_ROOT", &again)
        .output()
        .expect("runs");
    assert!(run.status.success(), "{}", stderr(&run));
    let notes: Vec<&str> = std::str::from_utf8(&run.stderr)
        .expect("UTF-8")
        .lines()
        .filter(|line| line.contains("mirror"))
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains(&mirror), "{notes:?}");
    // -v prints the requests per host.
    let verbose = cachectl(home.path())
        .args(["pull", "-v", &reference, "--hosts-dir"])
        .arg(&dir)
        .env("CACHECTL_ROOT", home.path().join("third"))
        .output()
        .expect("runs");
    assert!(verbose.status.success(), "{}", stderr(&verbose));
    let line = format!("requests to {registry}: 1 manifest HEAD, 1 manifest GET, 2 blob GET");
    assert!(stderr(&verbose).contains(&line), "{}", stderr(&verbose));
}

#[test]
fn build_and_push_report_the_requests_they_made() {
    let home = tempfile::tempdir().expect("tempdir");
    let (small, _) = fixture("small");
    let registry = small.split('/').next().expect("a registry").to_owned();
    let requests_of = |json: &serde_json::Value| -> serde_json::Value {
        json["requests"]
            .as_array()
            .expect("requests")
            .iter()
            .find(|host| host["host"] == registry.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("no requests to {registry}: {json}"))
    };
    // Not cached: the build pulls first, and says what that cost.
    let built = cachectl(home.path())
        .args(["build", "--json", "--rootless", &small])
        .output()
        .expect("runs");
    assert!(built.status.success(), "{}", stderr(&built));
    let json: serde_json::Value = serde_json::from_str(&stdout(&built)).expect("JSON");
    let spent = requests_of(&json);
    assert!(spent["blob_get"].as_u64() >= Some(2), "{json}");
    assert!(spent["bytes"].as_u64() > Some(0), "{json}");
    // Cached: nothing asked of any registry.
    let again = cachectl(home.path())
        .args(["build", "--json", "--rootless", "--offline", &small])
        .output()
        .expect("runs");
    let json: serde_json::Value = serde_json::from_str(&stdout(&again)).expect("JSON");
    assert_eq!(json["requests"], serde_json::json!([]), "{json}");
    let destination = format!("{registry}/requests/pushed-{}:v1", std::process::id());
    let pushed = cachectl(home.path())
        .args(["push", "--json", &small, &destination])
        .output()
        .expect("runs");
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    let json: serde_json::Value = serde_json::from_str(&stdout(&pushed)).expect("JSON");
    let spent = requests_of(&json);
    assert!(
        spent["other"].as_u64() >= Some(2),
        "uploads count as other: {json}"
    );
}
