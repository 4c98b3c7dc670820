//! `build -o FILE --provenance`: `FILE.json` says what the image was
//! built from (as `inspect` and the registry say it) and with, its
//! SHA-256 is what `sha256sum` says, a rebuild writes the same bytes, and
//! a failed build leaves neither `FILE.json` nor a temp file.

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use support::{cachectl, fixture, stderr, stdout};

/// What `sha256sum` prints for `path`: the hex digest.
fn sha256sum(path: &Path) -> String {
    let output = Command::new("sha256sum").arg(path).output().expect("runs");
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_owned()
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("listed")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn provenance_says_what_the_image_was_built_from_and_a_rebuild_writes_the_same_bytes() {
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();
    let (reference, digest) = fixture("layered");
    let out = tempfile::tempdir().expect("tempdir");
    let image = out.path().join("vm.ext4");
    let init = out.path().join("init");
    std::fs::write(&init, b"#!/bin/sh\nexec /bin/sh\n").expect("written");
    let init_arg = format!("{}:/sbin/init", init.display());
    let build = || {
        let built = cachectl(home)
            .args(["build", &reference, "--rootless", "--json", "--provenance"])
            .args(["--label", "vm", "--init", &init_arg, "-o"])
            .arg(&image)
            .output()
            .expect("runs");
        assert!(built.status.success(), "{}", stderr(&built));
        serde_json::from_slice::<Value>(&built.stdout).expect("JSON")
    };
    let built = build();
    let file = out.path().join("vm.ext4.json");
    assert_eq!(built["provenance"], file.display().to_string(), "{built}");
    assert_eq!(names(out.path()), ["init", "vm.ext4", "vm.ext4.json"]);
    let text = std::fs::read_to_string(&file).expect("FILE.json");
    let provenance: Value = serde_json::from_str(&text).expect("JSON");

    let inspected = cachectl(home)
        .args(["inspect", "--json", &reference])
        .output()
        .expect("runs");
    assert!(inspected.status.success(), "{}", stderr(&inspected));
    let inspected: Value = serde_json::from_slice(&inspected.stdout).expect("JSON");
    let stored = &inspected["images"][0];
    assert_eq!(
        provenance["manifest_digest"],
        digest.as_str(),
        "the registry's"
    );
    assert_eq!(provenance["manifest_digest"], stored["manifest"]["digest"]);
    let layers: Vec<&Value> = stored["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|layer| &layer["descriptor"]["digest"])
        .collect();
    assert!(layers.len() > 1, "{inspected}");
    assert_eq!(
        provenance["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .collect::<Vec<_>>(),
        layers,
        "base first"
    );
    for key in ["os", "architecture", "variant"] {
        assert_eq!(provenance["platform"][key], stored["config"][key], "{key}");
    }
    assert_eq!(provenance["platform"]["os"], "linux");
    assert_eq!(provenance["reference"]["given"], reference.as_str());
    assert_eq!(provenance["reference"]["normalized"], built["ref"]);
    assert_eq!(provenance["fs"], "ext4");
    let options = &provenance["options"];
    assert_eq!(options["size"], Value::Null);
    assert_eq!(options["headroom"], 64 << 20);
    assert_eq!(options["label"], "vm");
    assert_eq!(options["init"]["path"], "/sbin/init");
    assert_eq!(options["init"]["sha256"], sha256sum(&init).as_str());
    assert_eq!(options["input"], built["input"]);
    assert_eq!(options["compressor"], Value::Null);
    // The writer made it (the default); no mke2fs ran.
    let writer = provenance["tools"]["cachectl"].as_str().expect("writer");
    assert!(writer.contains("ext4 writer"), "{provenance}");
    assert_eq!(provenance["tools"].as_object().map(|t| t.len()), Some(1));
    assert_eq!(provenance["image"]["path"], "vm.ext4");
    let size = std::fs::metadata(&image).expect("image").len();
    assert_eq!(provenance["image"]["size"], size);
    assert_eq!(provenance["image"]["sha256"], sha256sum(&image).as_str());
    let version = cachectl(home).arg("--version").output().expect("runs");
    assert_eq!(
        format!(
            "cachectl {}",
            provenance["cachectl"].as_str().expect("version")
        ),
        stdout(&version).trim()
    );
    // The keys in the documented order, pretty-printed, no time.
    let order = [
        "reference",
        "manifest_digest",
        "platform",
        "layers",
        "fs",
        "options",
        "tools",
        "image",
        "cachectl",
    ];
    let at: Vec<usize> = order
        .iter()
        .map(|key| text.find(&format!("\n  \"{key}\": ")).expect(key))
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert_eq!(provenance.as_object().expect("object").len(), order.len());

    let rebuilt = build();
    assert_eq!(rebuilt["cached"], true, "{rebuilt}");
    assert_eq!(std::fs::read_to_string(&file).expect("again"), text);
    // A build whose image is not cached: the same bytes too.
    let gc = cachectl(home)
        .args(["rm", &reference])
        .output()
        .expect("runs");
    assert!(gc.status.success(), "{}", stderr(&gc));
    let gc = cachectl(home)
        .args(["gc", "--keep-partials", "0s"])
        .output()
        .expect("runs");
    assert!(gc.status.success(), "{}", stderr(&gc));
    let fresh = build();
    assert_eq!(fresh["cached"], false, "{fresh}");
    assert_eq!(std::fs::read_to_string(&file).expect("again"), text);
    assert_eq!(names(out.path()), ["init", "vm.ext4", "vm.ext4.json"]);
}

/// A `mke2fs` that fails at once, in `dir`.
fn failing_mke2fs(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("mke2fs-failing");
    std::fs::write(&script, "#!/bin/sh\necho broken >&2\nexit 1\n").expect("written");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("mode");
    script.display().to_string()
}

#[test]
fn a_failed_build_leaves_no_provenance_and_no_temp_file() {
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();
    let (reference, _) = fixture("small");
    let tools = tempfile::tempdir().expect("tempdir");
    let failing = failing_mke2fs(tools.path());
    let missing = format!(
        "{}/provenance/absent:1",
        support::env("CACHECTL_TEST_REGISTRY")
    );
    let build = |reference: &str, image: &Path, options: &[&str]| {
        cachectl(home)
            .args(["build", reference, "--rootless", "--provenance", "-o"])
            .arg(image)
            .args(options)
            .output()
            .expect("runs")
    };
    let kept = tempfile::tempdir().expect("tempdir");
    let image = kept.path().join("vm.ext4");
    let built = build(&reference, &image, &[]);
    assert!(built.status.success(), "{}", stderr(&built));
    let file = kept.path().join("vm.ext4.json");
    let (old_image, old_file) = (
        std::fs::read(&image).expect("FILE"),
        std::fs::read(&file).expect("FILE.json"),
    );
    let fresh = tempfile::tempdir().expect("tempdir");
    let failures: &[(&str, &[&str])] = &[
        (&reference, &["--mke2fs", "/nonexistent/mke2fs"]),
        (&missing, &[]),
        (&reference, &["--input", "tree", "--mke2fs", &failing]),
    ];
    for (what, options) in failures {
        // Where nothing was: nothing is left.
        let failed = build(what, &fresh.path().join("vm.ext4"), options);
        assert!(!failed.status.success(), "{what} {options:?}");
        assert_eq!(
            names(fresh.path()),
            Vec::<String>::new(),
            "{what} {options:?}"
        );
        // Where an image and its provenance were: both stay as they were
        // (FILE.json still describes FILE).
        let failed = build(what, &image, options);
        assert!(!failed.status.success(), "{what} {options:?}");
        assert_eq!(
            names(kept.path()),
            ["vm.ext4", "vm.ext4.json"],
            "{what} {options:?}"
        );
        assert!(
            std::fs::read(&image).expect("FILE") == old_image,
            "{what} {options:?}"
        );
        assert_eq!(
            std::fs::read(&file).expect("FILE.json"),
            old_file,
            "{what} {options:?}"
        );
    }
    // FILE.json cannot be written (a directory is there): the build fails
    // once FILE is in place, naming FILE.json, and leaves no temp file.
    let blocked = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(blocked.path().join("vm.ext4.json")).expect("made");
    let failed = build(&reference, &blocked.path().join("vm.ext4"), &[]);
    let message = stderr(&failed);
    assert_eq!(failed.status.code(), Some(1), "{message}");
    assert!(message.contains("vm.ext4.json"), "{message}");
    assert_eq!(
        names(blocked.path()),
        ["vm.ext4", "vm.ext4.json"],
        "{message}"
    );
}
