//! Authentication driven by the registry's challenge.
//!
//! A request goes out with whatever authorization is cached for its registry
//! and scope. When the registry answers 401 (or 403 with a Bearer challenge
//! such as `insufficient_scope`), the challenge says what to do: fetch a token
//! from the `Bearer` realm (with credentials when we have them, anonymously
//! otherwise), or send `Basic` credentials. The request is then retried once.
//! Tokens are cached per (registry, scope) until they expire.

mod challenge;
mod token;

pub(crate) use challenge::challenges_in;
pub use challenge::{Challenge, parse_challenges};
pub(crate) use token::{AuthCache, Authorizer};

/// What a request needs to be allowed to do on one repository.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    /// Repository name, e.g. `library/alpine`.
    pub repository: String,
    /// Whether the request writes (push) or only reads (pull).
    pub push: bool,
}

impl Scope {
    /// Read access to `repository`.
    pub fn pull(repository: &str) -> Self {
        Scope {
            repository: repository.to_owned(),
            push: false,
        }
    }

    /// Read and write access to `repository`.
    pub fn push(repository: &str) -> Self {
        Scope {
            repository: repository.to_owned(),
            push: true,
        }
    }

    /// The scope string of the token protocol: `repository:NAME:pull[,push]`.
    pub fn to_token_scope(&self) -> String {
        let actions = if self.push { "pull,push" } else { "pull" };
        format!("repository:{}:{actions}", self.repository)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_scope_strings() {
        assert_eq!(
            Scope::pull("library/alpine").to_token_scope(),
            "repository:library/alpine:pull"
        );
        assert_eq!(
            Scope::push("a/b").to_token_scope(),
            "repository:a/b:pull,push"
        );
    }
}
