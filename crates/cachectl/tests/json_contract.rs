//! The `--json` contract: every command's output, run against the real
//! test registry, checked field by field against the shapes docs/cli.md
//! writes (exact key sets, types, RFC 3339 UTC times); and the promise
//! that a successful `--json` run prints nothing on stderr.

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use support::shapes::{Type, check, is_rfc3339_utc, names_in, parse_docs};
use support::{cachectl, env, fixture, stderr};

fn documented_shapes() -> BTreeMap<String, Type> {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli.md");
    let text = std::fs::read_to_string(&docs).expect("docs/cli.md");
    parse_docs(&text).unwrap_or_else(|err| panic!("docs/cli.md shapes: {err}"))
}

/// Holds JSON outputs to the documented shapes and remembers which shapes
/// were checked.
struct Contract {
    shapes: BTreeMap<String, Type>,
    checked: BTreeSet<String>,
}

impl Contract {
    fn check(&mut self, name: &str, value: &Value) {
        let shape = self
            .shapes
            .get(name)
            .unwrap_or_else(|| panic!("docs/cli.md has no shape {name}"))
            .clone();
        let problems = check(value, &shape, &self.shapes, name);
        assert!(
            problems.is_empty(),
            "`{name} --json` departs from docs/cli.md:\n{}\noutput: {value:#}",
            problems.join("\n")
        );
        self.checked.insert(name.to_owned());
        let mut todo = names_in(&shape);
        while let Some(used) = todo.pop() {
            if let Some(inner) = self.shapes.get(&used)
                && self.checked.insert(used)
            {
                todo.extend(names_in(inner));
            }
        }
    }

    /// Runs `cachectl ARGS` (which include `--json`), expects success, an
    /// empty stderr, and output of the shape `name`.
    fn run(&mut self, home: &Path, name: &str, args: &[&str]) -> Value {
        self.run_with(home, name, args, None)
    }

    fn run_with(&mut self, home: &Path, name: &str, args: &[&str], stdin: Option<&str>) -> Value {
        let mut command = cachectl(home);
        command.args(args);
        if let Some(input) = stdin {
            command.write_stdin(input.to_owned());
        }
        let output = command.output().expect("runs");
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        assert!(
            output.stderr.is_empty(),
            "{args:?} --json printed on stderr: {}",
            stderr(&output)
        );
        let value: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
        self.check(name, &value);
        value
    }
}

#[test]
fn the_shape_checker_catches_every_kind_of_drift() {
    let shapes = parse_docs(
        "```shape\nthing = { \"id\": digest, \"at\": time | null, \"tags\": [string] }\n```\n",
    )
    .expect("parses");
    let thing = &shapes["thing"];
    let digest = format!("sha256:{}", "ab".repeat(32));
    let good = serde_json::json!({"id": digest, "at": "2026-12-06T15:04:05Z", "tags": ["a"]});
    assert!(check(&good, thing, &shapes, "thing").is_empty());
    let fractional =
        serde_json::json!({"id": digest, "at": "2026-12-06T15:04:05.123Z", "tags": []});
    assert!(check(&fractional, thing, &shapes, "thing").is_empty());
    let null_time = serde_json::json!({"id": digest, "at": null, "tags": []});
    assert!(check(&null_time, thing, &shapes, "thing").is_empty());
    for (bad, why) in [
        (
            serde_json::json!({"id": digest, "at": 1_765_033_445_000_u64, "tags": []}),
            "epoch ms",
        ),
        (
            serde_json::json!({"id": digest, "at": 0, "tags": []}),
            "0 for unknown",
        ),
        (
            serde_json::json!({"id": digest, "at": "2026-12-06 15:04:05", "tags": []}),
            "no T/Z",
        ),
        (
            serde_json::json!({"id": digest, "at": "2026-12-06T15:04:05+01:00", "tags": []}),
            "not UTC",
        ),
        (
            serde_json::json!({"id": digest, "tags": []}),
            "a removed field",
        ),
        (
            serde_json::json!({"id": digest, "at": null, "tags": [], "new": 1}),
            "an added field",
        ),
        (
            serde_json::json!({"digest": digest, "at": null, "tags": []}),
            "a renamed field",
        ),
        (
            serde_json::json!({"id": "sha256:abc", "at": null, "tags": []}),
            "a short digest",
        ),
        (
            serde_json::json!({"id": digest, "at": null, "tags": [1]}),
            "a wrong element type",
        ),
    ] {
        assert!(
            !check(&bad, thing, &shapes, "thing").is_empty(),
            "{why} passed: {bad}"
        );
    }
    assert!(is_rfc3339_utc("2000-02-29T00:00:00Z"));
    assert!(!is_rfc3339_utc("2000-13-29T00:00:00Z"));
    assert!(parse_docs("```shape\na = { \"x\": nosuchtype }\n```\n").is_err());
    assert!(parse_docs("```shape\na = { \"x\": count, \"x\": count }\n```\n").is_err());
}

/// The layer digest of the first layer of the stored manifest `digest`.
fn first_layer(home: &Path, digest: &str) -> String {
    let blobs = home.join("cache/blobs/sha256");
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(blobs.join(digest.trim_start_matches("sha256:"))).expect("manifest"),
    )
    .expect("JSON");
    manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer")
        .to_owned()
}

/// Overwrites the stored blob `digest` with bytes that do not hash to it.
fn corrupt(home: &Path, digest: &str) {
    let path = home
        .join("cache/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    std::fs::write(path, b"rot").expect("corrupted");
}

#[test]
fn every_command_prints_the_json_docs_cli_md_documents() {
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();
    let mut contract = Contract {
        shapes: documented_shapes(),
        checked: BTreeSet::new(),
    };
    let (small, _) = fixture("small");
    let (layered, layered_digest) = fixture("layered");
    let (sbom, _) = fixture("with-sbom");
    let pulled = contract.run(home, "pull", &["pull", "--json", &small, &layered]);
    assert_eq!(pulled[1]["digest"], layered_digest.as_str());
    contract.run(home, "pull", &["pull", "--json", "--referrers", &sbom]);
    let (multiarch, _) = fixture("multiarch");
    let all = contract.run(
        home,
        "pull",
        &["pull", "--json", "--all-platforms", &multiarch],
    );
    assert!(
        all[0]["platform"].is_null(),
        "an index entry has no one platform: {all}"
    );
    contract.run(home, "inspect", &["inspect", "--json", &multiarch]);
    let resolved = contract.run(home, "remote_digest", &["digest", "--json", &multiarch]);
    assert!(resolved["platform"].is_null(), "{resolved}");
    let arm = contract.run(
        home,
        "remote_digest",
        &["--platform", "linux/arm64", "digest", "--json", &multiarch],
    );
    assert_ne!(arm["digest"], resolved["digest"], "{arm}");
    let listed = contract.run(home, "tags", &["tags", "--json", &multiarch]);
    assert!(
        listed["tags"].as_array().is_some_and(|t| !t.is_empty()),
        "{listed}"
    );
    contract.run(
        home,
        "inspect",
        &["inspect", "--remote", "--json", &multiarch],
    );
    let sboms = contract.run(home, "referrers", &["referrers", "--json", &sbom]);
    assert_eq!(
        sboms["referrers"].as_array().map(Vec::len),
        Some(1),
        "{sboms}"
    );
    let registry = env("CACHECTL_TEST_REGISTRY");
    let arch_tagged = format!("{registry}/jsoncontract/multiarch:v1");
    let pushed = contract.run(
        home,
        "push",
        &["push", "--json", "--arch-tags", &multiarch, &arch_tagged],
    );
    assert_eq!(
        pushed["arch_tags"].as_array().map(Vec::len),
        Some(3),
        "{pushed}"
    );
    let indexed = format!("{registry}/jsoncontract/index:v1");
    let created = contract.run(
        home,
        "index_create",
        &["index", "create", "--json", "--push", &indexed, &small],
    );
    assert!(created["push"].is_object(), "{created}");
    let copy = "example.com/copy:1";
    contract.run(home, "tag", &["tag", "--json", &small, copy]);
    let images = contract.run(home, "images", &["images", "--json"]);
    assert!(images[0]["last_used"].is_string(), "{images}");
    let inspected = contract.run(home, "inspect", &["inspect", "--json", &layered]);
    assert!(
        inspected["record"]["stored_at"].is_string()
            && inspected["record"]["last_used_at"].is_string(),
        "inspect names the record's times: {inspected}"
    );
    let rootfs = home.join("rootfs");
    let rootfs = rootfs.to_str().expect("UTF-8");
    contract.run(home, "unpack", &["unpack", "--json", &layered, rootfs]);
    contract.run(home, "build", &["build", "--json", &layered]);
    let image = home.join("vm.ext4");
    let image = image.to_str().expect("UTF-8");
    let built = contract.run(
        home,
        "build",
        &["build", "--json", &layered, "-o", image, "--provenance"],
    );
    let written = std::fs::read(format!("{image}.json")).expect("FILE.json");
    let provenance: Value = serde_json::from_slice(&written).expect("JSON");
    assert_eq!(built["provenance"], format!("{image}.json"), "{built}");
    contract.check("provenance", &provenance);
    contract.run(
        home,
        "build_per_layer",
        &["build", "--json", "--per-layer", &layered],
    );
    let usage = contract.run(home, "du", &["du", "--json"]);
    assert!(usage["images"][0]["last_used_at"].is_string(), "{usage}");

    let destination = format!("{}/jsoncontract/small:v1", env("CACHECTL_TEST_REGISTRY"));
    contract.run(home, "push", &["push", "--json", &small, &destination]);
    let archive = home.join("small.tar");
    let archive = archive.to_str().expect("UTF-8");
    contract.run(home, "export", &["export", "--json", &small, "-o", archive]);
    let flat = home.join("flat.tar");
    let flat = flat.to_str().expect("UTF-8");
    contract.run(
        home,
        "export_flat",
        &["export", "--json", "--flatten", &layered, "-o", flat],
    );
    let other = tempfile::tempdir().expect("tempdir");
    contract.run(other.path(), "import", &["import", "--json", archive]);
    let copied = home.join("copied.tar");
    let copied = format!("oci-archive:{}", copied.display());
    contract.run(home, "copy", &["copy", "--json", &small, &copied]);

    let layer = first_layer(home, &layered_digest);
    corrupt(home, &layer);
    let broken = cachectl(home)
        .args(["verify", "--json"])
        .output()
        .expect("runs");
    assert_eq!(broken.status.code(), Some(6), "{}", stderr(&broken));
    let report: Value = serde_json::from_slice(&broken.stdout).expect("JSON");
    contract.check("verify", &report);
    let repaired = contract.run(home, "verify", &["verify", "--json", "--repair"]);
    assert_eq!(repaired["repaired"][0], layer.as_str(), "{repaired}");

    contract.run(home, "rm", &["rm", "--json", copy]);
    let one = contract.run(
        home,
        "rm",
        &["--platform", "linux/amd64", "rm", "--json", &small],
    );
    assert_eq!(one["platform"], "linux/amd64", "{one}");
    let pruned = contract.run(home, "prune", &["prune", "--json", "--keep", "1"]);
    assert!(pruned["gc"].is_object(), "prune ran a collection: {pruned}");
    contract.run(home, "gc", &["gc", "--json"]);

    let basic = env("CACHECTL_TEST_REGISTRY_BASIC");
    let user = env("CACHECTL_TEST_REGISTRY_BASIC_USER");
    let password = env("CACHECTL_TEST_REGISTRY_BASIC_PASSWORD");
    contract.run_with(
        home,
        "login",
        &["login", "--json", &basic, "-u", &user, "--password-stdin"],
        Some(&format!("{password}\n")),
    );
    contract.run(home, "logout", &["logout", "--json", &basic]);

    let unchecked: Vec<&String> = contract
        .shapes
        .keys()
        .filter(|name| !contract.checked.contains(*name))
        .collect();
    assert!(
        unchecked.is_empty(),
        "docs/cli.md documents shapes no command was checked against: {unchecked:?}"
    );
}

/// Stderr holds only the error and its causes: no log line, no note.
fn assert_only_errors(output: &std::process::Output, what: &str) {
    let text = stderr(output);
    assert!(
        text.lines()
            .all(|line| line.starts_with("error: ") || line.starts_with("caused by: ")),
        "{what}: stderr holds more than the error: {text}"
    );
}

#[test]
fn verify_reports_a_corrupt_blob_once_and_logs_nothing_unasked() {
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();
    let (reference, digest) = fixture("layered");
    let pulled = cachectl(home)
        .args(["pull", "-q", &reference])
        .output()
        .expect("runs");
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    let layer = first_layer(home, &digest);
    let verify = |args: &[&str]| {
        cachectl(home)
            .arg("verify")
            .args(args)
            .output()
            .expect("runs")
    };

    corrupt(home, &layer);
    let plain = verify(&[]);
    assert_eq!(plain.status.code(), Some(6), "{}", stderr(&plain));
    let text = support::stdout(&plain);
    assert_eq!(
        text.matches(layer.as_str()).count(),
        1,
        "the corrupt blob is printed once: {text}"
    );
    assert!(text.contains(&format!("corrupt {layer}")), "{text}");
    assert_only_errors(&plain, "verify without -v");
    assert_eq!(
        stderr(&plain).trim(),
        "error: 1 blob(s) are missing or corrupt"
    );

    // Once quarantined, the blob is simply missing.
    let missing = verify(&["--json"]);
    assert_eq!(missing.status.code(), Some(6));
    let report: Value = serde_json::from_slice(&missing.stdout).expect("JSON");
    assert_eq!(report["corrupt"], serde_json::json!([]), "{report}");
    assert_eq!(report["missing"][0]["digest"], layer.as_str(), "{report}");
    assert!(verify(&["--repair", "-q"]).status.success());

    corrupt(home, &layer);
    let repaired = verify(&["--json", "--repair"]);
    assert!(repaired.status.success(), "{}", stderr(&repaired));
    assert!(
        repaired.stderr.is_empty(),
        "a successful --json run keeps stderr empty: {}",
        stderr(&repaired)
    );
    let report: Value = serde_json::from_slice(&repaired.stdout).expect("JSON");
    assert_eq!(
        report["corrupt"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    assert_eq!(report["corrupt"][0]["digest"], layer.as_str());
    assert_eq!(
        report["missing"],
        serde_json::json!([]),
        "listed once: {report}"
    );
    assert_eq!(report["repaired"], serde_json::json!([layer]), "{report}");

    corrupt(home, &layer);
    let quiet = verify(&["-q"]);
    assert_eq!(quiet.status.code(), Some(6));
    assert_only_errors(&quiet, "verify -q");
    assert!(verify(&["--repair", "-q"]).status.success());
    corrupt(home, &layer);
    let verbose = verify(&["-v"]);
    assert_eq!(verbose.status.code(), Some(6));
    assert!(
        stderr(&verbose).contains("corrupt blob moved aside"),
        "-v shows the logs: {}",
        stderr(&verbose)
    );
}

#[test]
fn verify_of_an_image_not_cached_exits_3_and_names_it() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, _) = fixture("small");
    let pulled = cachectl(home.path())
        .args(["pull", "-q", &reference])
        .output()
        .expect("runs");
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    for args in [
        vec!["verify", "notcached:1"],
        vec!["verify", "--json", "notcached:1"],
        vec!["verify", reference.as_str(), "notcached:1"],
    ] {
        let verified = cachectl(home.path()).args(&args).output().expect("runs");
        assert_eq!(
            verified.status.code(),
            Some(3),
            "{args:?}: {}",
            stderr(&verified)
        );
        assert!(
            verified.stdout.is_empty(),
            "{args:?}: nothing on stdout (no `ok`): {}",
            support::stdout(&verified)
        );
        assert_eq!(
            stderr(&verified).trim(),
            "error: not cached: docker.io/library/notcached:1",
            "{args:?}"
        );
    }
}

#[test]
fn per_layer_refuses_output_size_and_init_as_the_docs_say() {
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli.md"))
            .expect("docs/cli.md");
    let said = docs.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        said.contains(
            "`--per-layer` does not go with `-o`, `--size` or `--init` (a usage error, exit 2)"
        ),
        "docs/cli.md says which flags --per-layer refuses"
    );
    let home = tempfile::tempdir().expect("tempdir");
    for flags in [["-o", "vm.ext4"], ["--size", "1GiB"], ["--init", "/bin/sh"]] {
        let built = cachectl(home.path())
            .args(["build", "--per-layer", "--offline", "example.com/any:1"])
            .args(flags)
            .output()
            .expect("runs");
        assert_eq!(
            built.status.code(),
            Some(2),
            "{flags:?}: {}",
            stderr(&built)
        );
        assert!(
            stderr(&built).contains("cannot be used with")
                && stderr(&built).contains("--per-layer"),
            "{flags:?}: {}",
            stderr(&built)
        );
    }
}
