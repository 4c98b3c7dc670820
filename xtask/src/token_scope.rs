//! Scopes of the registry token protocol (`repository:NAME:pull,push`),
//! parsed strictly so that a client sending a malformed scope gets a 400
//! from the test issuer instead of a token that happens to work.
//!
//! Grammar (token auth spec, "Resource Scope Grammar"):
//! `type[(class)]:name:action[,action]*`, where the name is
//! `[hostname[:port]/]component[/component]*` and a component is lowercase
//! alphanumerics joined by `.`, `_`, `__` or runs of `-`.

use std::fmt;

/// One resource scope: what a client asks for, or what a token grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Scope {
    /// Resource type, e.g. `repository` (without the class).
    pub(crate) resource_type: String,
    /// Resource class in parentheses after the type, e.g. `plugin`.
    pub(crate) class: Option<String>,
    /// Resource name, e.g. `library/alpine`.
    pub(crate) name: String,
    /// Actions, e.g. `pull`, `push`, or `*`.
    pub(crate) actions: Vec<String>,
}

impl Scope {
    /// Parses one resource scope, rejecting anything outside the grammar.
    pub(crate) fn parse(text: &str) -> Result<Scope, String> {
        let bad = |why: &str| format!("malformed scope {text:?}: {why}");
        let (type_part, rest) = text.split_once(':').ok_or_else(|| bad("no `:`"))?;
        let (name, actions) = rest.rsplit_once(':').ok_or_else(|| bad("no actions"))?;
        let (resource_type, class) = match type_part.split_once('(') {
            None => (type_part, None),
            Some((base, class)) => {
                let class = class
                    .strip_suffix(')')
                    .ok_or_else(|| bad("unclosed `(` in the type"))?;
                (base, Some(class))
            }
        };
        if !is_lower_alnum(resource_type) {
            return Err(bad("the type is not lowercase alphanumeric"));
        }
        if class.is_some_and(|class| !is_lower_alnum(class)) {
            return Err(bad("the class is not lowercase alphanumeric"));
        }
        if !is_resource_name(name) {
            return Err(bad("invalid resource name"));
        }
        let actions: Vec<String> = actions.split(',').map(str::to_owned).collect();
        if !actions
            .iter()
            .all(|action| action == "*" || is_lower_alpha(action))
        {
            return Err(bad(
                "actions must be lowercase words or `*`, separated by `,`",
            ));
        }
        Ok(Scope {
            resource_type: resource_type.to_owned(),
            class: class.map(str::to_owned),
            name: name.to_owned(),
            actions,
        })
    }

    /// Parses a `scope` parameter, which may hold several scopes separated
    /// by single spaces.
    pub(crate) fn parse_list(text: &str) -> Result<Vec<Scope>, String> {
        text.split(' ').map(Scope::parse).collect()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.resource_type)?;
        if let Some(class) = &self.class {
            write!(f, "({class})")?;
        }
        write!(f, ":{}:{}", self.name, self.actions.join(","))
    }
}

fn is_lower_alnum(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn is_lower_alpha(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase())
}

/// `[hostname[:port]/]component[/component]*`.
fn is_resource_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    let (first, rest) = parts.split_first().expect("split yields at least one part");
    let first_ok = is_component(first) || (!rest.is_empty() && is_hostname(first));
    first_ok && rest.iter().all(|part| is_component(part))
}

/// Lowercase alphanumeric runs joined by `.`, `_`, `__` or one or more `-`.
fn is_component(s: &str) -> bool {
    let mut separator = String::new();
    let mut seen_alnum = false;
    for c in s.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if !separator.is_empty() {
                let ok = matches!(separator.as_str(), "." | "_" | "__")
                    || separator.chars().all(|c| c == '-');
                if !ok || !seen_alnum {
                    return false;
                }
                separator.clear();
            }
            seen_alnum = true;
        } else if matches!(c, '.' | '_' | '-') {
            separator.push(c);
        } else {
            return false;
        }
    }
    seen_alnum && separator.is_empty()
}

/// `host.name[:port]`, each label alphanumeric with inner hyphens.
fn is_hostname(s: &str) -> bool {
    let (host, port) = match s.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    };
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    host.split('.').all(label_ok)
        && port.is_none_or(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_repository_scope() {
        let scope = Scope::parse("repository:x/y:pull,push").expect("valid");
        assert_eq!(scope.resource_type, "repository");
        assert_eq!(scope.class, None);
        assert_eq!(scope.name, "x/y");
        assert_eq!(scope.actions, ["pull", "push"]);
        assert_eq!(scope.to_string(), "repository:x/y:pull,push");
    }

    #[test]
    fn parses_a_class_and_a_host_with_port() {
        let scope = Scope::parse("repository(plugin):localhost:5000/a/b:pull").expect("valid");
        assert_eq!(scope.class.as_deref(), Some("plugin"));
        assert_eq!(scope.name, "localhost:5000/a/b");
        assert_eq!(scope.actions, ["pull"]);
        assert_eq!(
            scope.to_string(),
            "repository(plugin):localhost:5000/a/b:pull"
        );
    }

    #[test]
    fn parses_catalog_wildcard_and_separators() {
        let scope = Scope::parse("registry:catalog:*").expect("valid");
        assert_eq!(scope.actions, ["*"]);
        Scope::parse("repository:a.b/c__d/e---f/g_h:pull").expect("valid separators");
    }

    #[test]
    fn parses_space_separated_lists() {
        let scopes = Scope::parse_list("repository:a:pull repository:b:push").expect("valid");
        assert_eq!(scopes.len(), 2);
        assert_eq!(scopes[1].name, "b");
    }

    #[test]
    fn rejects_malformed_scopes() {
        for bad in [
            "",
            "repository",
            "repository:x",
            "repository:x:",
            "repository::pull",
            "repository:x:pull,",
            "repository:x:pull,,push",
            "repository:x:PULL",
            "repository:x/Y:pull",
            "repository:X:pull",
            "repository:x//y:pull",
            "repository:/x:pull",
            "repository:x/:pull",
            "repository:-x:pull",
            "repository:x-:pull",
            "repository:x..y:pull",
            "repository:x___y:pull",
            "repository:x y:pull",
            "Repository:x:pull",
            "repository(plugin:x:pull",
            "repository():x:pull",
            "repository:host:port/x:pull",
            "repository:x:pull push",
        ] {
            assert!(Scope::parse(bad).is_err(), "accepted {bad:?}");
        }
        assert!(Scope::parse_list("repository:a:pull  repository:b:pull").is_err());
    }
}
