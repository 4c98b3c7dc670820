//! `build` options wrong in themselves (a label longer than ext4 holds, an
//! init path that is not absolute, the root or has `..`, a size below the
//! least ext4 image) are usage errors (exit 2) said in words, found before
//! anything is pulled or unpacked; a size too small for the content is
//! said in words too, not with mke2fs's output. `--input` picks what
//! mke2fs reads.

mod support;

use support::{cachectl, cached_images, fixture, stderr};

#[test]
fn options_wrong_in_themselves_fail_before_any_pull_or_unpack() {
    let (reference, _) = fixture("small");
    let label = "a".repeat(17);
    let cases: &[(&[&str], &str)] = &[
        (
            &["--label", &label],
            "is 17 bytes long; an ext4 label holds at most 16",
        ),
        (
            &["--per-layer", "--label", &label],
            "is 17 bytes long; an ext4 label holds at most 16",
        ),
        (
            &["--init", "/bin/true:sbin/init"],
            "\"sbin/init\" in the image: the path is not absolute",
        ),
        (
            &["--init", "/bin/true:/"],
            "--init /bin/true:/: cannot place \"/\" in the image: the path is the root",
        ),
        (&["--init", "/bin/true:/sbin/../init"], "`..`"),
        (
            &["--size", "1MiB"],
            "size 1.0 MiB is below 8.0 MiB, the least an ext4 image with a journal takes",
        ),
    ];
    for (options, words) in cases {
        let home = tempfile::tempdir().expect("tempdir");
        let started = std::time::Instant::now();
        let built = cachectl(home.path())
            .arg("build")
            .arg(&reference)
            .args(*options)
            .output()
            .expect("runs");
        let elapsed = started.elapsed();
        let message = stderr(&built);
        assert_eq!(built.status.code(), Some(2), "{options:?}: {message}");
        assert!(message.contains(words), "{options:?}: {message}");
        assert_eq!(
            cached_images(home.path()),
            serde_json::json!([]),
            "{options:?}: checked before the image was pulled ({elapsed:?})"
        );
        assert!(
            !home.path().join("cache/.cachectl/rootfs-tmp").exists(),
            "{options:?}: nothing was unpacked"
        );
    }
}

#[test]
fn a_size_too_small_for_the_content_is_said_in_words() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, _) = fixture("big");
    // 256 MiB of data into 100 MiB.
    let built = cachectl(home.path())
        .args(["build", &reference, "--size", "100MiB"])
        .output()
        .expect("runs");
    let message = stderr(&built);
    assert_eq!(built.status.code(), Some(2), "{message}");
    assert!(
        message.contains("size 100.0 MiB is too small for the content of the image"),
        "{message}"
    );
    assert!(
        !message.contains("mke2fs"),
        "no raw mke2fs output: {message}"
    );
    let ext4 = home.path().join("cache/.cachectl/ext4");
    let left: Vec<_> = std::fs::read_dir(&ext4)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name())
                // Hidden files: the store's marker of a derived directory
                // and what rootfs learned about mke2fs.
                .filter(|name| !name.to_string_lossy().starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "no partial image stays: {left:?}");
}

#[test]
fn input_chooses_how_the_image_is_made_and_the_writer_is_the_default() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, _) = fixture("small");
    let build = |options: &[&str]| {
        let built = cachectl(home.path())
            .args(["build", &reference, "--rootless", "--json"])
            .args(options)
            .output()
            .expect("runs");
        assert!(built.status.success(), "{options:?}: {}", stderr(&built));
        let json: serde_json::Value = serde_json::from_slice(&built.stdout).expect("JSON");
        (json["input"].as_str().expect("input").to_owned(), json)
    };
    let (tree, tree_json) = build(&["--input", "tree"]);
    let (stream, stream_json) = build(&["--input", "tar-stream"]);
    let (writer, writer_json) = build(&["--input", "writer"]);
    let (default, default_json) = build(&[]);
    assert_eq!(
        (tree.as_str(), stream.as_str(), writer.as_str()),
        ("tree", "tar-stream", "writer")
    );
    assert_ne!(tree_json["path"], stream_json["path"], "one cache key each");
    assert_ne!(
        writer_json["path"], stream_json["path"],
        "one cache key each"
    );
    assert_eq!(default, "writer");
    assert_eq!(default_json["path"], writer_json["path"]);
    assert_eq!(default_json["cached"], serde_json::json!(true));
    // Per-layer images take either input too: their own cache keys.
    let layers = |input: &str| {
        let built = cachectl(home.path())
            .args([
                "build",
                &reference,
                "--per-layer",
                "--json",
                "--input",
                input,
            ])
            .output()
            .expect("runs");
        assert!(built.status.success(), "{input}: {}", stderr(&built));
        let json: serde_json::Value = serde_json::from_slice(&built.stdout).expect("JSON");
        json.as_array().expect("one entry per layer")[0]["path"].clone()
    };
    let keys = [layers("tree"), layers("tar-stream"), layers("writer")];
    assert_ne!(keys[0], keys[1], "one cache key each");
    assert_ne!(keys[1], keys[2], "one cache key each");
    let unknown = cachectl(home.path())
        .args(["build", &reference, "--input", "squashfs"])
        .output()
        .expect("runs");
    let message = stderr(&unknown);
    assert_eq!(unknown.status.code(), Some(2), "{message}");
    assert!(
        message.contains("tar-stream"),
        "the choices are listed: {message}"
    );
}
