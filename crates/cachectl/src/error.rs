//! The one error type of the command line, its exit codes, and how it is
//! printed: one sentence, then its causes.

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
    /// The exit code for this error.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Parse { .. } | CliError::Settings { .. } => code::USAGE,
            CliError::Store(err) => store_code(err),
            CliError::Dist(err) => dist_code(err),
            CliError::Rootfs(err) => rootfs_code(err),
            CliError::Io { .. } => code::ERROR,
            CliError::Broken { .. } => code::INTEGRITY,
            CliError::NotCached { .. } => code::NOT_CACHED,
        }
    }

    /// The message and its causes, one per line: `error: …` then
    /// `  caused by: …`.
    pub(crate) fn render(&self) -> String {
        let mut text = format!("error: {self}");
        let mut source = std::error::Error::source(self);
        // `transparent` variants repeat their inner message as the first
        // source: skip causes that say what was already said.
        let mut last = self.to_string();
        while let Some(cause) = source {
            let line = cause.to_string();
            if line != last && !last.ends_with(&line) {
                text.push_str("\n  caused by: ");
                text.push_str(&line);
            }
            last = line;
            source = cause.source();
        }
        text
    }
}

fn store_code(err: &ocistore::Error) -> u8 {
    use ocistore::Error as E;
    match err {
        E::ImageNotCached { .. } => code::NOT_CACHED,
        E::Corrupt { .. } | E::BlobMissing { .. } | E::ImageIncomplete { .. } => code::INTEGRITY,
        E::Dist(err) => dist_code(err),
        E::Reference(_) => code::USAGE,
        _ => code::ERROR,
    }
}

fn rootfs_code(err: &rootfs::Error) -> u8 {
    use rootfs::Error as E;
    match err {
        E::Store(err) => store_code(err),
        E::NoImageForPlatform { .. } => code::NOT_CACHED,
        E::LayerMissing { .. } | E::DiffIdMismatch { .. } => code::INTEGRITY,
        E::InvalidOption { .. } | E::TargetNotEmpty { .. } => code::USAGE,
        _ => code::ERROR,
    }
}

fn dist_code(err: &ocidist::Error) -> u8 {
    use ocidist::Error as E;
    match err {
        E::Unauthorized { .. } => code::AUTH,
        E::Network { .. } | E::Stalled { .. } | E::RateLimited { .. } | E::Tls { .. } => {
            code::NETWORK
        }
        E::Status { status, .. } if *status >= 500 => code::NETWORK,
        E::DigestMismatch { .. } | E::SizeMismatch { .. } => code::INTEGRITY,
        E::Reference(_) => code::USAGE,
        _ => code::ERROR,
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
        assert_eq!(not_cached.exit_code(), 3);
        let auth = CliError::Dist(ocidist::Error::Unauthorized {
            registry: "ghcr.io".into(),
            reason: "no credentials".into(),
        });
        assert_eq!(auth.exit_code(), 4);
        assert_eq!(CliError::Broken { problems: 2 }.exit_code(), 6);
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        assert_eq!(
            not_cached.render(),
            "error: image docker.io/library/alpine:3.20 is not cached"
        );
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
    }
}
