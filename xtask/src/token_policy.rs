//! Who gets what from the test token issuer.
//!
//! - The test user (valid Basic credentials) gets `pull` and `push` on every
//!   repository.
//! - Anonymous clients get `pull` on repositories under `public/`, nothing
//!   elsewhere: they still get a token, with empty access, and the registry
//!   then refuses them, as real registries do.
//! - Nobody gets other actions (`delete`, `*`) or other resource types
//!   (`registry:catalog:*`).

use crate::token_scope::Scope;

/// Who asks for a token, as the issuer established it from the credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Requester {
    /// No credentials.
    Anonymous,
    /// The test user, with the right password.
    User,
}

/// Prefix of the repositories anonymous clients may pull.
pub(crate) const PUBLIC_PREFIX: &str = "public/";

/// The part of `asked` that `requester` is granted, or `None` when nothing is.
pub(crate) fn grant(requester: Requester, asked: &Scope) -> Option<Scope> {
    if asked.resource_type != "repository" {
        return None;
    }
    let allowed: &[&str] = match requester {
        Requester::User => &["pull", "push"],
        Requester::Anonymous if asked.name.starts_with(PUBLIC_PREFIX) => &["pull"],
        Requester::Anonymous => &[],
    };
    let mut actions: Vec<String> = Vec::new();
    for action in &asked.actions {
        if allowed.contains(&action.as_str()) && !actions.contains(action) {
            actions.push(action.clone());
        }
    }
    if actions.is_empty() {
        return None;
    }
    Some(Scope {
        actions,
        ..asked.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(requester: Requester, scope: &str) -> Option<String> {
        let asked = Scope::parse(scope).expect("test scopes are valid");
        grant(requester, &asked).map(|scope| scope.to_string())
    }

    #[test]
    fn user_gets_pull_and_push_everywhere() {
        assert_eq!(
            granted(Requester::User, "repository:x/y:pull,push").as_deref(),
            Some("repository:x/y:pull,push")
        );
        assert_eq!(
            granted(Requester::User, "repository:public/z:push").as_deref(),
            Some("repository:public/z:push")
        );
    }

    #[test]
    fn user_gets_no_delete_wildcard_or_catalog() {
        assert_eq!(
            granted(Requester::User, "repository:x/y:pull,delete,*,pull").as_deref(),
            Some("repository:x/y:pull")
        );
        assert_eq!(granted(Requester::User, "repository:x/y:delete"), None);
        assert_eq!(granted(Requester::User, "registry:catalog:*"), None);
    }

    #[test]
    fn anonymous_gets_pull_on_public_only() {
        assert_eq!(
            granted(Requester::Anonymous, "repository:public/a:pull,push").as_deref(),
            Some("repository:public/a:pull")
        );
        assert_eq!(granted(Requester::Anonymous, "repository:x/y:pull"), None);
        assert_eq!(
            granted(Requester::Anonymous, "repository:publicity/y:pull"),
            None
        );
        assert_eq!(
            granted(Requester::Anonymous, "repository:public/a:push"),
            None
        );
    }

    #[test]
    fn class_is_kept_in_the_grant() {
        assert_eq!(
            granted(Requester::User, "repository(plugin):x:pull").as_deref(),
            Some("repository(plugin):x:pull")
        );
    }
}
