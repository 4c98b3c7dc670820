//! What people see on a terminal: `cachectl` run in a real terminal (a
//! private tmux server, 120x40), its screen read back once it exits and
//! compared line by line with what it should show. Progress bars must
//! be gone by then, leaving only the notes and the results.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::fixture;

static SERVERS: AtomicUsize = AtomicUsize::new(0);

/// A private tmux server, killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        Tmux {
            socket: format!(
                "cachectl-test-{}-{}",
                std::process::id(),
                SERVERS.fetch_add(1, Ordering::SeqCst)
            ),
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket, "-f", "/dev/null"]);
        command
    }

    fn screen(&self) -> String {
        let output = self
            .command()
            .args(["capture-pane", "-p", "-J", "-S", "-"])
            .output()
            .expect("tmux capture-pane runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").output();
    }
}

fn quoted(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Runs `cachectl ARGS` in a fresh 120x40 terminal with its cache under
/// `home`, waits for it to exit, and returns the screen: every line,
/// trailing spaces and trailing empty lines removed, then `[exit CODE]`.
fn on_a_terminal(home: &Path, args: &[&str]) -> Vec<String> {
    let binary = assert_cmd::cargo::cargo_bin("cachectl");
    let mut line = quoted(binary.to_str().expect("UTF-8 path"));
    for arg in args {
        line.push(' ');
        line.push_str(&quoted(arg));
    }
    line.push_str("; echo \"[exit $?]\"; exec sleep 600");
    let tmux = Tmux::new();
    let started = tmux
        .command()
        .args(["new-session", "-d", "-x", "120", "-y", "40", "-c"])
        .arg(home)
        .arg(&line)
        .env("CACHECTL_ROOT", home.join("cache"))
        .env("HOME", home)
        .env("DOCKER_CONFIG", home.join("docker"))
        .env_remove("XDG_CACHE_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("CACHECTL_CONFIG")
        .env_remove("TMUX")
        .status()
        .expect("tmux runs (Debian package tmux; cargo xtask test installs it)");
    assert!(started.success(), "tmux new-session failed");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let screen = tmux.screen();
        if screen.lines().any(|l| l.starts_with("[exit ")) {
            let mut lines: Vec<String> = screen.lines().map(|l| l.trim_end().to_owned()).collect();
            while lines.last().is_some_and(String::is_empty) {
                lines.pop();
            }
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "cachectl {args:?} did not finish in 120 s; the screen:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `line` matches `pattern`, where each `*` stands for any text.
fn matches(line: &str, pattern: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = parts.split_first().expect("split yields one part");
    let Some(mut left) = line.strip_prefix(first) else {
        return false;
    };
    for (i, part) in rest.iter().enumerate() {
        if i + 1 == rest.len() {
            return left.ends_with(part);
        }
        match left.find(part) {
            Some(at) => left = &left[at + part.len()..],
            None => return false,
        }
    }
    left.is_empty()
}

/// The screen is exactly `expected` (patterns, see [`matches`]).
fn assert_screen(screen: &[String], expected: &[String], what: &str) {
    let shown = screen.join("\n");
    assert_eq!(
        screen.len(),
        expected.len(),
        "{what}: the screen holds other lines than expected (a leftover bar?):\n{shown}\n\
         expected:\n{}",
        expected.join("\n")
    );
    for (line, pattern) in screen.iter().zip(expected) {
        assert!(
            matches(line, pattern),
            "{what}: {line:?} is not {pattern:?}; the screen:\n{shown}"
        );
    }
}

#[test]
fn the_pattern_matcher_matches_what_it_should() {
    assert!(matches("built x (1.5 MiB)", "built x (*)"));
    assert!(matches("a b c", "a*c"));
    assert!(matches("abc", "abc"));
    assert!(!matches("abcd", "abc"));
    assert!(!matches("total 0 B/0 B built x (1 B)", "built x (*)"));
    assert!(matches("a1b2c", "a*b*c"));
    assert!(!matches("a1c", "a*b*c"));
}

#[test]
fn pull_shows_its_results_and_no_leftover_bar_cold_and_warm() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, digest) = fixture("layered");
    let cold = on_a_terminal(home.path(), &["pull", &reference]);
    let expected = [
        format!("{reference}: pulled (* blob(s) fetched, 0 reused)"),
        digest.clone(),
        "[exit 0]".to_owned(),
    ];
    assert_screen(&cold, &expected, "cold pull");
    let warm = on_a_terminal(home.path(), &["pull", &reference]);
    let expected = [
        format!("{reference}: up to date"),
        digest,
        "[exit 0]".to_owned(),
    ];
    assert_screen(&warm, &expected, "warm pull");
    let removed = on_a_terminal(home.path(), &["rm", &reference]);
    let expected = [
        reference.clone(),
        "run `cachectl gc` to free the space".to_owned(),
        "[exit 0]".to_owned(),
    ];
    assert_screen(&removed, &expected, "rm");
}

#[test]
fn build_shows_its_results_and_no_leftover_bar_cold_and_warm() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, _) = fixture("layered");
    let path = format!("{}/cache/.cachectl/ext4/*.ext4", home.path().display());
    let cold = on_a_terminal(home.path(), &["build", &reference]);
    let expected = [
        format!("{reference} is not cached: pulling it"),
        format!("built ext4 image of {reference} (*)"),
        path.clone(),
        "[exit 0]".to_owned(),
    ];
    assert_screen(&cold, &expected, "cold build");
    let warm = on_a_terminal(home.path(), &["build", &reference]);
    let expected = [
        format!("cached ext4 image of {reference} (*)"),
        path,
        "[exit 0]".to_owned(),
    ];
    assert_screen(&warm, &expected, "warm build");
}

#[test]
fn unpack_shows_its_results_and_no_leftover_bar_cold_and_warm() {
    let home = tempfile::tempdir().expect("tempdir");
    let (reference, _) = fixture("layered");
    // `--rootless`: the same screen as root or not.
    let skipped = "not applied without root: * owner(s), * device node(s), * extended \
                   attribute(s) (`cachectl build` puts them inside the ext4 image)";
    let cold = on_a_terminal(home.path(), &["unpack", "--rootless", &reference, "first"]);
    let expected = [
        format!("{reference} is not cached: pulling it"),
        format!("unpacked {reference} (* entries, *) into first"),
        skipped.to_owned(),
        "[exit 0]".to_owned(),
    ];
    assert_screen(&cold, &expected, "cold unpack");
    let warm = on_a_terminal(home.path(), &["unpack", "--rootless", &reference, "second"]);
    let expected = [
        format!("unpacked {reference} (* entries, *) into second"),
        skipped.to_owned(),
        "[exit 0]".to_owned(),
    ];
    assert_screen(&warm, &expected, "warm unpack");
}
