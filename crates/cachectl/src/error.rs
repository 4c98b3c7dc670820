//! The one error type of the command line, its exit codes, and how it is
//! printed: one sentence, then its causes.

use ociref::ErrorKind;
use std::path::PathBuf;

/// Exit codes, as documented in docs/cli.md.
pub(crate) mod code {
    /// Success.
    pub(crate) const OK: u8 = 0;
    /// Any other error.
    pub(crate) const ERROR: u8 = 1;
    /// Bad arguments.
    pub(crate) const USAGE: u8 = 2;
    /// The image is not in the cache (offline pull, inspect, rm, push…).
    pub(crate) const NOT_CACHED: u8 = 3;
    /// The registry refused the credentials or wanted some.
    pub(crate) const AUTH: u8 = 4;
    /// The registry could not be reached, or kept failing.
    pub(crate) const NETWORK: u8 = 5;
    /// Content did not match its digest, or `verify` found problems.
    pub(crate) const INTEGRITY: u8 = 6;

    /// The one place kinds of failure become exit codes.
    pub(crate) fn of(kind: ociref::ErrorKind) -> u8 {
        use ociref::ErrorKind as K;
        match kind {
            K::Usage => USAGE,
            K::NotCached => NOT_CACHED,
            K::Auth => AUTH,
            K::Network => NETWORK,
            K::Integrity => INTEGRITY,
            K::Other => ERROR,
        }
    }
}

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// An argument is not valid (beyond what the parser checks).
    #[error("{0}")]
    Usage(String),
    /// A reference, digest or platform did not parse (its message names
    /// the input and the reason).
    #[error("{source}")]
    Parse {
        /// `reference`, `platform`.
        what: &'static str,
        /// What was given.
        input: String,
        /// Why.
        source: ociref::Error,
    },
    /// The settings file is unreadable or invalid.
    #[error("settings file {} is not valid: {reason}", path.display())]
    Settings {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The cache directory setting is empty or names something other
    /// than a directory.
    #[error("cache directory {value:?} (set by {setting}) {reason}", value = value.display().to_string())]
    Root {
        /// Where it was set: `--root`, `CACHECTL_ROOT`, `root in FILE`
        /// (the settings file's key).
        setting: String,
        /// The value.
        value: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The cache failed.
    #[error(transparent)]
    Store(#[from] ocistore::Error),
    /// Unpacking or building failed.
    #[error(transparent)]
    Rootfs(#[from] rootfs::Error),
    /// The registry client failed outside the store.
    #[error(transparent)]
    Dist(#[from] ocidist::Error),
    /// Reading the terminal or standard input failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `verify` (or `verify --repair`) left problems.
    #[error("{problems} blob(s) are missing or corrupt")]
    Broken {
        /// How many.
        problems: usize,
    },
    /// Some of the images named are not cached (the others were handled).
    #[error("not cached: {}", references.join(", "))]
    NotCached {
        /// The references.
        references: Vec<String>,
    },
}

impl CliError {
    /// What kind of failure this is; each library error says its own.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            CliError::Usage(_) | CliError::Settings { .. } | CliError::Root { .. } => {
                ErrorKind::Usage
            }
            CliError::Parse { source, .. } => source.kind(),
            CliError::Store(err) => err.kind(),
            CliError::Dist(err) => err.kind(),
            CliError::Rootfs(err) => err.kind(),
            CliError::Io { .. } => ErrorKind::Other,
            CliError::Broken { .. } => ErrorKind::Integrity,
            CliError::NotCached { .. } => ErrorKind::NotCached,
        }
    }

    /// The exit code for this error.
    pub(crate) fn exit_code(&self) -> u8 {
        code::of(self.kind())
    }

    /// How to get past it, when that is known: the command that fetches
    /// an image that is not cached, the one that lists a repository's tags
    /// when a tag is not there.
    pub(crate) fn hint(&self) -> Option<String> {
        let store = match self {
            CliError::Store(err) => Some(err),
            CliError::Rootfs(rootfs::Error::Store(err)) => Some(err),
            _ => None,
        };
        let dist = match (self, store) {
            (CliError::Dist(err), _) | (_, Some(ocistore::Error::Dist(err))) => Some(err),
            _ => None,
        };
        if let Some(ocistore::Error::ImageNotCached { reference }) = store {
            return Some(format!(
                "`cachectl pull {reference}` fetches it; `cachectl images` lists what is cached"
            ));
        }
        match dist {
            Some(ocidist::Error::NotFound { what, .. }) if what.starts_with("tag ") => what
                .split_once(" in ")
                .map(|(_, repository)| format!("`cachectl tags {repository}` lists its tags")),
            Some(ocidist::Error::NotFound { what, .. }) if what.starts_with("repository ") => Some(
                "check the repository's name; a private one may need `cachectl login`".to_owned(),
            ),
            _ => None,
        }
    }

    /// The message and its causes, one per line: `error: …` then
    /// `  caused by: …`, and a hint (`  hint: …`) when one is known.
    pub(crate) fn render(&self) -> String {
        let mut text = format!("error: {self}");
        let mut source = std::error::Error::source(self);
        // `transparent` variants (and `Parse`) show their inner error's
        // message as their own, and it is also their first source: a cause
        // that says exactly what was just said is skipped. No message
        // embeds its source's text: a cause is always its own line.
        let mut last = self.to_string();
        while let Some(cause) = source {
            let line = cause.to_string();
            if line != last {
                text.push_str("\n  caused by: ");
                text.push_str(&line);
            }
            last = line;
            source = cause.source();
        }
        let hint = self.hint().or_else(|| tls_hint(&text).map(str::to_owned));
        if let Some(hint) = hint {
            text.push_str("\n  hint: ");
            text.push_str(&hint);
        }
        text
    }
}

/// What to do about a TLS failure, recognized by rustls's words in the
/// causes: the registry refused our client certificate (or its absence),
/// or we do not trust its certificate.
fn tls_hint(text: &str) -> Option<&'static str> {
    if text.contains("fatal alert: BadCertificate")
        || text.contains("fatal alert: CertificateRequired")
        || text.contains("fatal alert: UnknownCA")
    {
        Some(
            "the registry refused the TLS handshake over the client certificate: it wants              one its CA signed (--cert-dir DIR with DIR/client.cert and DIR/client.key)",
        )
    } else if text.contains("invalid peer certificate") {
        Some(
            "the registry's TLS certificate is not trusted here: add its CA with --cert-dir              DIR (DIR/ca.crt), or accept any certificate with --tls-verify=false",
        )
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_documented_exit_codes() {
        let not_cached = CliError::Store(ocistore::Error::ImageNotCached {
            reference: "docker.io/library/alpine:3.20".into(),
        });
        assert_eq!(
            not_cached.render(),
            "error: image docker.io/library/alpine:3.20 is not cached\n  hint: `cachectl pull \
             docker.io/library/alpine:3.20` fetches it; `cachectl images` lists what is cached"
        );
        let parse = "A:b".parse::<ociref::Reference>().unwrap_err();
        let cases = [
            (CliError::Usage("x".into()), 2),
            (
                CliError::Parse {
                    what: "reference",
                    input: "A:b".into(),
                    source: parse,
                },
                2,
            ),
            (
                CliError::Settings {
                    path: "/s.toml".into(),
                    reason: "x".into(),
                },
                2,
            ),
            (
                CliError::Root {
                    setting: "--root".into(),
                    value: "/etc/passwd".into(),
                    reason: "is not a directory",
                },
                2,
            ),
            (not_cached, 3),
            (
                CliError::Store(ocistore::Error::PlatformNotCached {
                    reference: "a:1".into(),
                    platform: "linux/arm64".into(),
                }),
                3,
            ),
            (
                CliError::Dist(ocidist::Error::Unauthorized {
                    registry: "ghcr.io".into(),
                    reason: "no credentials".into(),
                }),
                4,
            ),
            (
                CliError::Rootfs(rootfs::Error::Store(ocistore::Error::Dist(
                    ocidist::Error::Stalled {
                        registry: "r".into(),
                        what: "blob".into(),
                        seconds: 30,
                    },
                ))),
                5,
            ),
            (
                CliError::Store(ocistore::Error::ArchiveDigestMismatch {
                    archive: "/a.tar".into(),
                    entry: "blobs/sha256/00".into(),
                    expected: ociref::Digest::sha256_of(b"a"),
                    actual: ociref::Digest::sha256_of(b"b"),
                }),
                6,
            ),
            (CliError::Broken { problems: 2 }, 6),
            (
                CliError::NotCached {
                    references: vec!["a:1".into()],
                },
                3,
            ),
            (
                CliError::Io {
                    what: "reading standard input".into(),
                    source: std::io::Error::other("x"),
                },
                1,
            ),
        ];
        for (err, expected) in cases {
            assert_eq!(err.exit_code(), expected, "{}", err.render());
        }
    }

    #[test]
    fn every_kind_has_the_code_docs_cli_md_gives_it() {
        let docs = include_str!("../../../docs/cli.md");
        let documented = |code: u8, words: &str| {
            let row = docs
                .lines()
                .find(|line| line.starts_with(&format!("| {code} |")))
                .unwrap_or_else(|| panic!("docs/cli.md has no row for exit code {code}"));
            assert!(row.contains(words), "exit code {code}: {row}");
        };
        let kinds = [
            (ErrorKind::Other, "any other error"),
            (ErrorKind::Usage, "usage"),
            (ErrorKind::NotCached, "not in the cache"),
            (ErrorKind::Auth, "authentication"),
            (ErrorKind::Network, "network"),
            (ErrorKind::Integrity, "integrity"),
        ];
        for (kind, words) in kinds {
            documented(code::of(kind), words);
        }
    }

    #[test]
    fn tls_failures_get_a_hint_naming_the_flag() {
        let refused = "error: network error\n  caused by: received fatal alert: BadCertificate";
        assert!(tls_hint(refused).is_some_and(|h| h.contains("--cert-dir")));
        let untrusted = "error: x\n  caused by: invalid peer certificate: UnknownIssuer";
        assert!(tls_hint(untrusted).is_some_and(|h| h.contains("--tls-verify=false")));
        assert_eq!(tls_hint("error: connection refused"), None);
    }

    #[test]
    fn causes_are_listed_once_each() {
        let err = CliError::Io {
            what: "reading the password from standard input".into(),
            source: std::io::Error::other("broken pipe"),
        };
        assert_eq!(
            err.render(),
            "error: reading the password from standard input\n  caused by: broken pipe"
        );
        // Through a library's transparent variant: the cause once, on its
        // own line.
        let parse = serde_json::from_slice::<serde_json::Value>(b"{").unwrap_err();
        let err = CliError::Store(ocistore::Error::InvalidJson {
            path: "/r/index.json".into(),
            source: parse,
        });
        assert_eq!(
            err.render(),
            "error: /r/index.json is not valid JSON\n  caused by: EOF while parsing an object at line 1 column 1"
        );
    }
}
