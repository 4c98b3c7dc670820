//! The `cachectl` binary end to end, against the real test registry that
//! `cargo xtask test` starts (`CACHECTL_TEST_REGISTRY`, fixtures pushed
//! and summarized at `CACHECTL_TEST_FIXTURES`).

mod support;

use proptest::prelude::*;
use std::path::Path;
use support::{cachectl, env, fixture, stderr, stdout};

#[test]
fn the_readme_path_pull_images_inspect_rm_gc() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, digest) = fixture("small");
    let pulled = cachectl(home.path())
        .args(["pull", &reference])
        .output()
        .expect("runs");
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    assert_eq!(stdout(&pulled).trim(), digest, "pull prints the digest");
    // Not a terminal: plain progress lines, no bars.
    assert!(
        stderr(&pulled).contains("fetched sha256:"),
        "{}",
        stderr(&pulled)
    );

    let warm = cachectl(home.path())
        .args(["pull", "--json", &reference])
        .output()
        .expect("runs");
    assert!(warm.status.success());
    let json: serde_json::Value = serde_json::from_slice(&warm.stdout).expect("JSON");
    assert_eq!(json[0]["up_to_date"], true);
    assert_eq!(json[0]["digest"], digest);
    assert!(
        warm.stderr.is_empty(),
        "--json keeps stderr quiet: {}",
        stderr(&warm)
    );

    let listed = cachectl(home.path())
        .args(["images", "--json"])
        .output()
        .expect("runs");
    let images: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    let image = &images[0];
    for key in ["ref", "digest", "platform", "size", "last_used"] {
        assert!(!image[key].is_null(), "images --json has {key}: {image}");
    }
    assert_eq!(image["platform"], "linux/amd64");
    let table = cachectl(home.path()).arg("ls").output().expect("runs");
    assert!(
        stdout(&table).starts_with("REFERENCE"),
        "{}",
        stdout(&table)
    );
    assert!(stdout(&table).contains(&reference));

    let inspected = cachectl(home.path())
        .args(["inspect", "--json", &reference])
        .output()
        .expect("runs");
    assert!(inspected.status.success(), "{}", stderr(&inspected));
    let inspection: serde_json::Value = serde_json::from_slice(&inspected.stdout).expect("JSON");
    assert_eq!(inspection["top"]["digest"], digest);
    assert!(
        inspection["images"][0]["layers"]
            .as_array()
            .is_some_and(|l| !l.is_empty())
    );

    let tagged = cachectl(home.path())
        .args(["tag", &reference, "example.com/copy:1"])
        .output()
        .expect("runs");
    assert!(tagged.status.success(), "{}", stderr(&tagged));
    let removed = cachectl(home.path())
        .args(["rm", &reference, "example.com/copy:1"])
        .output()
        .expect("runs");
    assert!(removed.status.success(), "{}", stderr(&removed));
    let gc = cachectl(home.path())
        .args(["gc", "--json"])
        .output()
        .expect("runs");
    let report: serde_json::Value = serde_json::from_slice(&gc.stdout).expect("JSON");
    assert!(
        report["removed_blobs"].as_u64().is_some_and(|n| n >= 3),
        "{report}"
    );
    let empty = cachectl(home.path())
        .args(["images", "--json"])
        .output()
        .expect("runs");
    assert_eq!(stdout(&empty).trim(), "[]");
}

#[test]
fn exit_codes_say_what_kind_of_failure_it_was() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, _) = fixture("small");
    let offline = cachectl(home.path())
        .args(["pull", "--offline", &reference])
        .output()
        .expect("runs");
    assert_eq!(offline.status.code(), Some(3), "{}", stderr(&offline));
    assert_eq!(
        stderr(&offline).trim(),
        format!(
            "error: image {reference} is not cached\n  hint: `cachectl pull {reference}` \
             fetches it; `cachectl images` lists what is cached"
        )
    );
    let inspect = cachectl(home.path())
        .args(["inspect", &reference])
        .output()
        .expect("runs");
    assert_eq!(inspect.status.code(), Some(3));
    for args in [
        vec!["build", "--offline", reference.as_str()],
        vec!["unpack", "--offline", reference.as_str(), "rootfs"],
    ] {
        let output = cachectl(home.path())
            .current_dir(home.path())
            .args(&args)
            .output()
            .expect("runs");
        assert_eq!(
            output.status.code(),
            Some(3),
            "{args:?}: {}",
            stderr(&output)
        );
        assert_eq!(
            stderr(&output).trim(),
            format!(
                "error: image {reference} is not cached\n  hint: `cachectl pull {reference}` \
                 fetches it; `cachectl images` lists what is cached"
            ),
            "{args:?}"
        );
    }
    assert!(
        !home.path().join("rootfs").exists(),
        "a failed unpack creates nothing"
    );

    for args in [
        vec!["frobnicate"],
        vec!["pull"],
        vec!["pull", "UPPER/Case:x"],
        vec!["prune"],
        vec!["prune", "--max-size", "12 parsecs"],
        vec!["--platform", "linux", "images"],
        vec!["build"],
        vec!["unpack", "alpine:3.20"],
        vec!["build", "--size", "huge", "alpine:3.20"],
        vec!["build", "--per-layer", "--init", "init", "alpine:3.20"],
        vec!["unpack", "--offline", "UPPER:x", "dir"],
        vec![
            "build",
            "--offline",
            "--label",
            "x",
            "--headroom",
            "-5",
            "a:1",
        ],
    ] {
        let output = cachectl(home.path()).args(&args).output().expect("runs");
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(!stderr(&output).contains("panicked"));
    }

    // A registry that wants credentials we do not have: 4.
    let basic = env("CACHECTL_TEST_REGISTRY_BASIC");
    let unauthorized = cachectl(home.path())
        .args(["pull", &format!("{basic}/fixtures/small:v1")])
        .output()
        .expect("runs");
    assert_eq!(
        unauthorized.status.code(),
        Some(4),
        "{}",
        stderr(&unauthorized)
    );
    // Nothing listens: 5.
    let unreachable = cachectl(home.path())
        .args(["pull", "127.0.0.1:9/nothing/here:v1"])
        .output()
        .expect("runs");
    assert_eq!(
        unreachable.status.code(),
        Some(5),
        "{}",
        stderr(&unreachable)
    );
}

#[test]
fn verify_exits_6_on_a_corrupt_blob_and_repair_fixes_it() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, digest) = fixture("layered");
    let pulled = cachectl(home.path())
        .args(["pull", "-q", &reference])
        .output()
        .expect("runs");
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    assert!(
        pulled.stderr.is_empty(),
        "-q prints no progress: {}",
        stderr(&pulled)
    );
    let manifest_path = home
        .path()
        .join("cache/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("JSON");
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer")
        .to_owned();
    let layer_path = home
        .path()
        .join("cache/blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    std::fs::write(&layer_path, b"rot").expect("corrupted");
    let verify = cachectl(home.path())
        .args(["verify", "--json"])
        .output()
        .expect("runs");
    assert_eq!(verify.status.code(), Some(6), "{}", stderr(&verify));
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).expect("JSON");
    assert_eq!(report["corrupt"][0]["digest"], layer);
    assert_eq!(report["corrupt"][0]["references"][0], reference);
    let repaired = cachectl(home.path())
        .args(["verify", "--repair"])
        .output()
        .expect("runs");
    assert!(repaired.status.success(), "{}", stderr(&repaired));
    assert!(stdout(&repaired).contains(&format!("repaired {layer}")));
    let clean = cachectl(home.path()).arg("verify").output().expect("runs");
    assert!(clean.status.success(), "{}", stdout(&clean));
}

#[test]
fn login_stores_credentials_0600_and_logout_removes_them() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().expect("tempdir");
    let basic = env("CACHECTL_TEST_REGISTRY_BASIC");
    let user = env("CACHECTL_TEST_REGISTRY_BASIC_USER");
    let password = env("CACHECTL_TEST_REGISTRY_BASIC_PASSWORD");
    let login = cachectl(home.path())
        .args(["login", &basic, "-u", &user, "--password-stdin"])
        .write_stdin(format!("{password}\n"))
        .output()
        .expect("runs");
    assert!(login.status.success(), "{}", stderr(&login));
    assert!(!stdout(&login).contains(&password) && !stderr(&login).contains(&password));
    let config = home.path().join("docker/config.json");
    let mode = std::fs::metadata(&config)
        .expect("written")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).expect("read")).expect("JSON");
    assert!(stored["auths"][&basic]["auth"].is_string(), "{stored}");
    // With the credentials, the registry lets us in (the repository does
    // not exist there: not found, not unauthorized).
    let pull = cachectl(home.path())
        .args(["pull", &format!("{basic}/absent/repo:v1")])
        .output()
        .expect("runs");
    assert_eq!(pull.status.code(), Some(1), "{}", stderr(&pull));
    let logout = cachectl(home.path())
        .args(["logout", &basic])
        .output()
        .expect("runs");
    assert!(logout.status.success(), "{}", stderr(&logout));
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).expect("read")).expect("JSON");
    assert!(stored["auths"][&basic].is_null(), "{stored}");
}

#[test]
fn settings_file_and_flags_choose_the_root() {
    let home = tempfile::tempdir().expect("tempdir");
    let settings = home.path().join("settings.toml");
    let root = home.path().join("from-settings");
    std::fs::write(
        &settings,
        format!("root = {:?}\n", root.display().to_string()),
    )
    .expect("written");
    let listed = cachectl(home.path())
        .env_remove("CACHECTL_ROOT")
        .args(["images", "--config"])
        .arg(&settings)
        .output()
        .expect("runs");
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(
        root.join("oci-layout").is_file(),
        "the settings' root was used"
    );
    let bad = home.path().join("bad.toml");
    std::fs::write(&bad, "concurrency = \"many\"\n").expect("written");
    let refused = cachectl(home.path())
        .args(["images", "--config"])
        .arg(&bad)
        .output()
        .expect("runs");
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("bad.toml"),
        "{}",
        stderr(&refused)
    );
}

/// Words the argument generator draws from: every offline command and
/// flag, and values of each kind (never a registry command: the test must
/// stay offline).
const WORDS: &[&str] = &[
    "images",
    "ls",
    "inspect",
    "tag",
    "rm",
    "prune",
    "gc",
    "verify",
    "du",
    "export",
    "import",
    "logout",
    "--json",
    "-q",
    "-v",
    "-vv",
    "--platform",
    "linux/arm64",
    "windows",
    "--keep",
    "3",
    "-1",
    "--max-size",
    "10GiB",
    "--older-than",
    "7d",
    "--dry-run",
    "--format",
    "docker",
    "-o",
    "/dev/null",
    "--root",
    "alpine:3.20",
    "a@sha256:00",
    "--concurrency",
    "0",
    "--",
    "",
    "--help",
    "--version",
    "--name",
];

fn argument() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(WORDS).prop_map(str::to_owned),
        1 => "[ -~]{0,12}",
        1 => any::<String>().prop_map(|s| s.chars().filter(|c| *c != '\0').take(12).collect()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_arguments_give_a_clear_error_never_a_panic(args in proptest::collection::vec(argument(), 0..6)) {
        let home = tempfile::tempdir().expect("tempdir");
        let output = cachectl(home.path()).args(&args).output().expect("runs");
        let err = stderr(&output);
        let code = output.status.code();
        prop_assert!(matches!(code, Some(0..=6)), "{args:?}: exit {code:?}: {err}");
        prop_assert!(!err.contains("panicked"), "{args:?}: {err}");
        prop_assert!(!err.contains("RUST_BACKTRACE"), "{args:?}: {err}");
        // A Debug dump of an error looks like `Io { what: …`.
        prop_assert!(!err.contains(" { "), "{args:?}: {err}");
        if code != Some(0) {
            prop_assert!(!err.trim().is_empty(), "{args:?}: a failure says why");
        }
    }
}

#[test]
fn completions_and_man_page_are_generated_for_the_release() {
    let home = tempfile::tempdir().expect("tempdir");
    for (what, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef cachectl"),
        ("fish", "complete -c cachectl"),
        ("man", ".TH cachectl 1"),
    ] {
        let output = cachectl(home.path())
            .args(["generate", what])
            .output()
            .expect("runs");
        assert!(output.status.success(), "{what}: {}", stderr(&output));
        let text = stdout(&output);
        assert!(text.contains(marker), "{what} output lacks {marker:?}");
        if what != "man" {
            assert!(text.contains("prune"), "{what} completes subcommands");
        }
    }
}

#[test]
fn several_references_pull_together_and_print_in_order() {
    let home = tempfile::tempdir().expect("tempdir");
    let (layered, layered_digest) = fixture("layered");
    let (small, small_digest) = fixture("small");
    let (absent, _) = fixture("small");
    let absent = absent.replace("/small:", "/no-such-image:");
    let pulled = cachectl(home.path())
        .args(["pull", "-q", &layered, &small])
        .output()
        .expect("runs");
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    assert_eq!(
        stdout(&pulled),
        format!("{layered_digest}\n{small_digest}\n")
    );
    // One missing: the others are still pulled and printed, and the exit
    // code says it failed.
    let mixed = cachectl(home.path())
        .args(["pull", "-q", &absent, &small])
        .output()
        .expect("runs");
    assert_eq!(mixed.status.code(), Some(1), "{}", stderr(&mixed));
    assert_eq!(stdout(&mixed), format!("{small_digest}\n"));
    assert!(
        stderr(&mixed).contains("no-such-image"),
        "{}",
        stderr(&mixed)
    );
}

/// `e2fsck -fn FILE` passes and `debugfs -R "cat PATH"` prints `content`.
fn assert_ext4_holds(image: &Path, path: &str, content: &str) {
    let checked = std::process::Command::new("e2fsck")
        .arg("-fn")
        .arg(image)
        .output()
        .expect("e2fsck runs (e2fsprogs is installed by the test command)");
    assert!(
        checked.status.success(),
        "e2fsck -fn {}: {}",
        image.display(),
        String::from_utf8_lossy(&checked.stdout)
    );
    let read = std::process::Command::new("debugfs")
        .args(["-R", &format!("cat {path}")])
        .arg(image)
        .output()
        .expect("debugfs runs");
    assert_eq!(
        String::from_utf8_lossy(&read.stdout),
        content,
        "{path} in {}",
        image.display()
    );
}

#[test]
fn the_readme_path_build_unpack_rm_gc() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, digest) = fixture("small");
    // Not cached: build pulls first, then prints the path of the image.
    let built = cachectl(home.path())
        .args(["build", &reference])
        .output()
        .expect("runs");
    assert!(built.status.success(), "{}", stderr(&built));
    assert!(
        stderr(&built).contains("is not cached: pulling it"),
        "{}",
        stderr(&built)
    );
    // Not a terminal: a line per step and per layer applied.
    assert!(
        stderr(&built).contains("applied layer sha256:"),
        "{}",
        stderr(&built)
    );
    let path = std::path::PathBuf::from(stdout(&built).trim());
    assert!(
        path.starts_with(home.path().join("cache")),
        "the image is kept in the cache: {}",
        path.display()
    );
    assert_ext4_holds(&path, "/var/lib/hello/greeting.txt", "hello, world\n");

    // Asked again: the cached image, reported as such.
    let again = cachectl(home.path())
        .args(["build", "--json", &reference])
        .output()
        .expect("runs");
    assert!(again.status.success(), "{}", stderr(&again));
    let json: serde_json::Value = serde_json::from_slice(&again.stdout).expect("JSON");
    assert_eq!(json["cached"], true, "{json}");
    assert_eq!(json["digest"], digest);
    assert_eq!(json["path"], path.display().to_string());
    assert_eq!(json["config"]["working_dir"], "/var/lib/hello", "{json}");

    // A copy where asked, with an init placed in the image.
    let init = home.path().join("init.sh");
    std::fs::write(&init, "#!/bin/sh\nexec /bin/hello\n").expect("write init");
    let copy = home.path().join("vm.ext4");
    let copied = cachectl(home.path())
        .args(["build", &reference, "-o"])
        .arg(&copy)
        .arg("--init")
        .arg(format!("{}:/init", init.display()))
        .output()
        .expect("runs");
    assert!(copied.status.success(), "{}", stderr(&copied));
    assert_eq!(stdout(&copied).trim(), copy.display().to_string());
    assert_ext4_holds(&copy, "/init", "#!/bin/sh\nexec /bin/hello\n");
    let relative_init = cachectl(home.path())
        .args(["build", &reference, "--init"])
        .arg(format!("{}:init", init.display()))
        .output()
        .expect("runs");
    assert_eq!(
        relative_init.status.code(),
        Some(2),
        "{}",
        stderr(&relative_init)
    );

    // Unpack into a directory; a second unpack into it is refused.
    let rootfs = home.path().join("rootfs");
    let unpacked = cachectl(home.path())
        .args(["unpack", "--json", &reference])
        .arg(&rootfs)
        .output()
        .expect("runs");
    assert!(unpacked.status.success(), "{}", stderr(&unpacked));
    let report: serde_json::Value = serde_json::from_slice(&unpacked.stdout).expect("JSON");
    assert_eq!(report["digest"], digest);
    assert!(unpacked.stderr.is_empty(), "--json: nothing on stderr");
    assert_eq!(report["entries"], 8, "{report}");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("var/lib/hello/greeting.txt")).expect("unpacked"),
        "hello, world\n"
    );
    let twice = cachectl(home.path())
        .args(["unpack", &reference])
        .arg(&rootfs)
        .output()
        .expect("runs");
    assert_eq!(twice.status.code(), Some(2), "{}", stderr(&twice));
    assert!(
        stderr(&twice).contains("must be absent or an empty directory"),
        "{}",
        stderr(&twice)
    );

    // du counts the cached builds (the one without, the one with an init).
    let du = cachectl(home.path())
        .args(["du", "--json"])
        .output()
        .expect("runs");
    let usage: serde_json::Value = serde_json::from_slice(&du.stdout).expect("JSON");
    assert_eq!(usage["builds"]["images"], 2, "{usage}");
    assert_eq!(usage["builds"]["layer_tars"], 0, "{usage}");
    assert!(usage["builds"]["bytes"].as_u64().is_some_and(|b| b > 0));

    // Removing the image and collecting garbage removes its build too.
    let removed = cachectl(home.path())
        .args(["rm", &reference])
        .output()
        .expect("runs");
    assert!(removed.status.success(), "{}", stderr(&removed));
    let gc = cachectl(home.path())
        .args(["gc", "--json"])
        .output()
        .expect("runs");
    assert!(gc.status.success(), "{}", stderr(&gc));
    let collected: serde_json::Value = serde_json::from_slice(&gc.stdout).expect("JSON");
    // Two builds were cached: without and with the init.
    assert_eq!(collected["removed_builds"], 2, "{collected}");
    assert_eq!(collected["removed_layer_tars"], 0, "{collected}");
    let build_bytes = usage["builds"]["bytes"].as_u64();
    assert_eq!(collected["build_bytes_freed"].as_u64(), build_bytes);
    assert!(!path.exists(), "the build of a removed image is gone");
    assert!(copy.exists(), "a copy outside the cache is the user's");

    // Offline and not cached: exit 3, nothing pulled.
    let offline = cachectl(home.path())
        .args(["build", "--offline", &reference])
        .output()
        .expect("runs");
    assert_eq!(offline.status.code(), Some(3), "{}", stderr(&offline));
}

#[test]
fn build_per_layer_prints_one_image_per_layer_base_first() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, _) = fixture("layered");
    let pulled = cachectl(home.path())
        .args(["pull", "-q", &reference])
        .output()
        .expect("runs");
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    let inspected = cachectl(home.path())
        .args(["inspect", "--json", &reference])
        .output()
        .expect("runs");
    let inspection: serde_json::Value = serde_json::from_slice(&inspected.stdout).expect("JSON");
    let layers: Vec<String> = inspection["images"][0]["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            l["descriptor"]["digest"]
                .as_str()
                .expect("digest")
                .to_owned()
        })
        .collect();
    assert!(layers.len() > 1, "{inspection}");
    let built = cachectl(home.path())
        .args(["build", "--per-layer", "--offline", "--json", &reference])
        .output()
        .expect("runs");
    assert!(built.status.success(), "{}", stderr(&built));
    let json: serde_json::Value = serde_json::from_slice(&built.stdout).expect("JSON");
    let built_layers: Vec<String> = json
        .as_array()
        .expect("an array")
        .iter()
        .map(|l| l["layer"].as_str().expect("layer").to_owned())
        .collect();
    assert_eq!(built_layers, layers, "base first, one per layer");
    for layer in json.as_array().expect("an array") {
        let path = Path::new(layer["path"].as_str().expect("path"));
        let checked = std::process::Command::new("e2fsck")
            .arg("-fn")
            .arg(path)
            .output()
            .expect("e2fsck runs");
        assert!(checked.status.success(), "{}", path.display());
    }
    let conflicting = cachectl(home.path())
        .args(["build", "--per-layer", "-o", "x.ext4", &reference])
        .output()
        .expect("runs");
    assert_eq!(conflicting.status.code(), Some(2));
}
