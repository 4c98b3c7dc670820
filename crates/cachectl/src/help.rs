//! What `--help` says beyond the flags: the commands in groups, and
//! examples for each command.

use clap::CommandFactory;

/// The commands of `cachectl --help`, by what they work on.
const GROUPS: &[(&str, &[&str])] = &[
    (
        "Images in the cache",
        &[
            "pull", "images", "inspect", "tag", "rm", "import", "export", "copy",
        ],
    ),
    ("Root filesystems", &["unpack", "build"]),
    (
        "Registries",
        &[
            "digest",
            "tags",
            "referrers",
            "push",
            "index",
            "login",
            "logout",
        ],
    ),
    ("Maintenance", &["du", "prune", "gc", "verify", "generate"]),
];

/// Width the command list wraps at, as clap's own help.
const WIDTH: usize = 100;

/// The command line, its commands listed in [`GROUPS`] in `--help`; the
/// flags every command takes are listed once, under "Global options",
/// after each command's own.
pub(crate) fn command() -> clap::Command {
    let command = crate::cli::Cli::command();
    let groups = command_groups(&command);
    command.help_template(format!(
        "{{before-help}}{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n\
         {groups}Global options:\n{{options}}{{after-help}}"
    ))
}

/// The groups of commands, each command with its one-line description.
fn command_groups(command: &clap::Command) -> String {
    let mut text = String::new();
    for (title, names) in GROUPS {
        text.push_str(&format!("{title}:\n"));
        for name in *names {
            let about = command
                .find_subcommand(name)
                .and_then(|sub| sub.get_about())
                .map(|about| about.to_string())
                .unwrap_or_default();
            let mut line = format!("  {name:<10}");
            for word in about.split_whitespace() {
                if line.len() + 1 + word.len() > WIDTH {
                    text.push_str(&line);
                    text.push('\n');
                    line = " ".repeat(12);
                }
                line.push(' ');
                line.push_str(word);
            }
            text.push_str(&line);
            text.push('\n');
        }
        text.push('\n');
    }
    text
}

/// Examples of `pull`.
pub(crate) const PULL: &str = "Examples:
  cachectl pull alpine:3.20 debian:12             # only what is missing; prints each digest
  cachectl pull --platform linux/arm64 alpine:3.20
  cachectl pull --all-platforms --referrers ghcr.io/org/app:1.0";

/// Examples of `images`.
pub(crate) const IMAGES: &str = "Examples:
  cachectl images
  cachectl images --json | jq -r '.[].reference'";

/// Examples of `tag`.
pub(crate) const TAG: &str = "Examples:
  cachectl tag alpine:3.20 registry.example/base:stable
  cachectl tag ghcr.io/org/app@sha256:… app:pinned";

/// Examples of `rm`.
pub(crate) const RM: &str = "Examples:
  cachectl rm alpine:3.20
  cachectl rm alpine:3.20 debian:12 && cachectl gc   # gc frees the blobs";

/// Examples of `prune`.
pub(crate) const PRUNE: &str = "Examples:
  cachectl prune --dry-run --max-size 20GiB   # what would go
  cachectl prune --keep 10 --older-than 7d";

/// Examples of `gc`.
pub(crate) const GC: &str = "Examples:
  cachectl gc
  cachectl gc --keep-partials 0s   # also partial downloads of interrupted pulls";

/// Examples of `verify`.
pub(crate) const VERIFY: &str = "Examples:
  cachectl verify
  cachectl verify --repair alpine:3.20   # fetch what is missing or corrupt again";

/// Examples of `du`.
pub(crate) const DU: &str = "Examples:
  cachectl du
  cachectl du --json | jq '.images[] | {reference, unique}'";

/// Examples of `import`.
pub(crate) const IMPORT: &str = "Examples:
  cachectl import alpine.tar                          # skopeo's oci-archive or docker save
  cachectl import --name registry.example/app:1 app.tar.zst";

/// Examples of `unpack`.
pub(crate) const UNPACK: &str = "Examples:
  cachectl unpack alpine:3.20 ./rootfs
  cachectl unpack --offline --rootless alpine:3.20 ./rootfs
  cachectl unpack --format tar alpine:3.20 - | tar -t";

/// Examples of `build`.
pub(crate) const BUILD: &str = "Examples:
  cachectl build alpine:3.20                       # prints the cached image's path
  cachectl build alpine:3.20 -o vm.ext4 --init ./init --size 1GiB
  cachectl build --per-layer ghcr.io/org/app:1.0   # one image per layer, for overlayfs
  cachectl build --fs squashfs --compressor zstd,3 alpine:3.20 -o rootfs.sqfs
  cachectl build alpine:3.20 -o vm.ext4 --provenance   # also vm.ext4.json: what it was built from";

/// Examples of `login`.
pub(crate) const LOGIN: &str = "Examples:
  echo \"$TOKEN\" | cachectl login ghcr.io -u me --password-stdin
  cachectl --authfile ./auth.json login registry.example -u ci --password-stdin < pass.txt";

/// Examples of `logout`.
pub(crate) const LOGOUT: &str = "Examples:
  cachectl logout ghcr.io
  cachectl --authfile ./auth.json logout registry.example";

/// Examples of `generate`.
pub(crate) const GENERATE: &str = "Examples:
  cachectl generate bash > /etc/bash_completion.d/cachectl
  cachectl generate man > /usr/local/share/man/man1/cachectl.1
  cachectl generate json-shapes | less   # what each command's --json prints";

/// The `--json` shapes of every command, as docs/cli.md documents them.
pub(crate) fn json_shapes() -> String {
    let doc = include_str!("../../../docs/cli.md");
    let mut shapes = String::new();
    let mut inside = false;
    for line in doc.lines() {
        match (inside, line.trim()) {
            (false, "```shape") => inside = true,
            (true, "```") => {
                inside = false;
                shapes.push('\n');
            }
            (true, _) => {
                shapes.push_str(line);
                shapes.push('\n');
            }
            _ => {}
        }
    }
    shapes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_in_one_group_and_every_group_name_is_a_command() {
        let command = crate::cli::Cli::command();
        let listed: Vec<&str> = GROUPS
            .iter()
            .flat_map(|(_, names)| names.iter().copied())
            .collect();
        for sub in command.get_subcommands() {
            let name = sub.get_name();
            assert_eq!(
                listed.iter().filter(|n| **n == name).count(),
                1,
                "{name} is in one group"
            );
        }
        for name in &listed {
            assert!(
                command.find_subcommand(name).is_some(),
                "{name} is a command"
            );
        }
        let groups = command_groups(&command);
        assert!(
            groups.contains("  build      Build an ext4, squashfs or erofs image"),
            "{groups}"
        );
        assert!(groups.lines().all(|line| line.len() <= WIDTH), "{groups}");
    }

    #[test]
    fn a_command_lists_its_own_flags_then_the_global_ones_in_their_own_group() {
        let mut command = self::command();
        command.build();
        let mut help = |name: &str| {
            command
                .find_subcommand_mut(name)
                .expect("a command")
                .render_long_help()
                .to_string()
        };
        let gc = help("gc");
        let own = gc.find("--keep-partials").expect("its own flag");
        let global = gc.find("Global options:").expect("a group of their own");
        let root = gc.find("--root").expect("a global flag");
        assert!(own < global && global < root, "its own flags first: {gc}");
        assert_eq!(gc.matches("--root").count(), 1, "{gc}");
        assert!(gc.contains("[default: 24h]"), "defaults shown: {gc}");
        assert!(
            !gc.contains("--platform"),
            "a flag that does not apply: {gc}"
        );
        let pull = help("pull");
        let own = pull.find("--platform").expect("pull picks a platform");
        assert!(
            own < pull.find("Global options:").expect("globals"),
            "{pull}"
        );
        let top = command.render_long_help().to_string();
        assert!(top.contains("Root filesystems:\n  unpack"), "{top}");
        assert!(!top.contains("Commands:"), "listed once, in groups: {top}");
        assert!(top.contains("[default: 4]"), "{top}");
    }

    #[test]
    fn every_command_has_examples() {
        let mut command = self::command();
        command.build();
        let mut missing = Vec::new();
        // clap's own `help` subcommands are left out.
        let ours = |c: &&clap::Command| c.get_name() != "help";
        for sub in command.get_subcommands().filter(ours) {
            let with_examples = |c: &clap::Command| {
                c.get_after_help()
                    .is_some_and(|text| text.to_string().contains("Examples:"))
            };
            let nested_ok = sub.get_subcommands().filter(ours).all(with_examples);
            if !(with_examples(sub) || (sub.has_subcommands() && nested_ok)) {
                missing.push(sub.get_name().to_owned());
            }
        }
        assert!(missing.is_empty(), "no examples: {missing:?}");
    }

    #[test]
    fn the_build_examples_parse_and_show_the_file_systems_and_provenance() {
        let lines: Vec<&str> = BUILD
            .lines()
            .filter_map(|line| line.trim().strip_prefix("cachectl "))
            .map(|line| line.split('#').next().unwrap_or("").trim())
            .collect();
        assert!(lines.len() >= 5, "{BUILD}");
        for line in &lines {
            let words = std::iter::once("cachectl").chain(line.split_whitespace());
            let parsed = command().try_get_matches_from(words).and_then(|matches| {
                <crate::cli::Cli as clap::FromArgMatches>::from_arg_matches(&matches)
            });
            assert!(parsed.is_ok(), "{line}: {:?}", parsed.err());
        }
        assert!(lines.iter().any(|l| l.contains("--fs squashfs")), "{BUILD}");
        assert!(lines.iter().any(|l| l.contains("--provenance")), "{BUILD}");
    }

    #[test]
    fn the_json_shapes_are_those_of_the_docs() {
        let shapes = json_shapes();
        for name in ["pull =", "build =", "copy =", "images =", "export_flat ="] {
            assert!(shapes.contains(name), "{name} missing from {shapes}");
        }
        assert!(!shapes.contains("```"));
    }
}
