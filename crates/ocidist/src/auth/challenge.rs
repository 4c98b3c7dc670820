//! Parsing `WWW-Authenticate` challenges (RFC 7235), as registries send them.
//!
//! Registries differ: Docker Hub's `/v2/` challenge has no `scope`, Quay may
//! omit it, ECR answers `Basic realm=…`, and a header may carry several
//! challenges separated by commas, with commas also inside quoted values
//! (`scope="repository:a:pull,push"`).

/// One challenge from a `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Challenge {
    /// `Bearer realm=…,service=…,scope=…`: fetch a token from `realm`.
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// `service` parameter to pass on, if given.
        service: Option<String>,
        /// `scope` the registry asked for, if given (may hold several
        /// space-separated scopes).
        scope: Option<String>,
        /// `error` (e.g. `insufficient_scope`, `invalid_token`), if given.
        error: Option<String>,
    },
    /// `Basic realm=…`: send the user name and password with each request.
    Basic {
        /// Realm, informational.
        realm: Option<String>,
    },
    /// Any other scheme, kept so errors can name it.
    Other {
        /// The scheme as sent, e.g. `Negotiate`.
        scheme: String,
    },
}

/// Every challenge of every `WWW-Authenticate` header of a response
/// (values that are not text are skipped).
pub(crate) fn challenges_in(headers: &reqwest::header::HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_challenges)
        .collect()
}

/// Parses every challenge in one `WWW-Authenticate` header value.
///
/// Never fails: unparseable parts are skipped, so a partly broken header still
/// yields the challenges that can be read.
///
/// ```
/// use ocidist::auth::{parse_challenges, Challenge};
/// let parsed = parse_challenges(
///     r#"Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push""#,
/// );
/// assert_eq!(parsed, vec![Challenge::Bearer {
///     realm: "https://auth.example/token".into(),
///     service: Some("reg".into()),
///     scope: Some("repository:a/b:pull,push".into()),
///     error: None,
/// }]);
/// ```
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut challenges = Vec::new();
    let mut rest = header.trim_start();
    while !rest.is_empty() {
        let (scheme, after_scheme) = take_token(rest);
        if scheme.is_empty() {
            // Not a token: skip one character (a stray comma) and go on.
            rest = skip_one(rest).trim_start();
            continue;
        }
        let (params, after_params) = take_params(after_scheme);
        challenges.push(build(scheme, params));
        rest = after_params.trim_start_matches([',', ' ', '\t']);
    }
    challenges
}

fn build(scheme: &str, params: Vec<(String, String)>) -> Challenge {
    let get = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        Challenge::Bearer {
            realm: get("realm").unwrap_or_default(),
            service: get("service"),
            scope: get("scope"),
            error: get("error"),
        }
    } else if scheme.eq_ignore_ascii_case("basic") {
        Challenge::Basic {
            realm: get("realm"),
        }
    } else {
        Challenge::Other {
            scheme: scheme.to_owned(),
        }
    }
}

/// Reads `key=value` pairs (value a token or a quoted string) separated by
/// commas, stopping where the next challenge's scheme begins.
fn take_params(mut rest: &str) -> (Vec<(String, String)>, &str) {
    let mut params = Vec::new();
    loop {
        let trimmed = rest.trim_start_matches([' ', '\t', ',']);
        let (key, after_key) = take_token(trimmed);
        let after_key_ws = after_key.trim_start();
        if key.is_empty() || !after_key_ws.starts_with('=') {
            // Either the end, or a new challenge's scheme (a token not
            // followed by `=`).
            return (params, trimmed);
        }
        let after_eq = after_key_ws[1..].trim_start();
        let (value, after_value) = if let Some(quoted) = after_eq.strip_prefix('"') {
            take_quoted(quoted)
        } else {
            let (token, after) = take_value_token(after_eq);
            (token.to_owned(), after)
        };
        params.push((key.to_owned(), value));
        rest = after_value;
    }
}

/// A token: RFC 7230 tchar run.
fn take_token(s: &str) -> (&str, &str) {
    let end = s
        .char_indices()
        .find(|(_, c)| !is_tchar(*c))
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    s.split_at(end)
}

/// An unquoted parameter value: tolerant, up to a comma or whitespace
/// (some servers put `/` or `:` in unquoted values).
fn take_value_token(s: &str) -> (&str, &str) {
    let end = s
        .char_indices()
        .find(|(_, c)| *c == ',' || c.is_whitespace())
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    s.split_at(end)
}

/// A quoted string after its opening quote, with backslash escapes.
fn take_quoted(s: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (value, &s[i + 1..]),
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            _ => value.push(c),
        }
    }
    // Unterminated: take what is there.
    (value, "")
}

fn skip_one(s: &str) -> &str {
    let mut chars = s.chars();
    chars.next();
    chars.as_str()
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(realm: &str, service: Option<&str>, scope: Option<&str>) -> Challenge {
        Challenge::Bearer {
            realm: realm.into(),
            service: service.map(Into::into),
            scope: scope.map(Into::into),
            error: None,
        }
    }

    #[test]
    fn docker_hub_v2_challenge_has_no_scope() {
        assert_eq!(
            parse_challenges(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#
            ),
            vec![bearer(
                "https://auth.docker.io/token",
                Some("registry.docker.io"),
                None
            )]
        );
    }

    #[test]
    fn quoted_commas_stay_inside_the_scope() {
        let parsed = parse_challenges(
            r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:o/r:pull,push""#,
        );
        assert_eq!(
            parsed,
            vec![bearer(
                "https://ghcr.io/token",
                Some("ghcr.io"),
                Some("repository:o/r:pull,push")
            )]
        );
    }

    #[test]
    fn ecr_basic_challenge() {
        assert_eq!(
            parse_challenges(
                r#"Basic realm="https://1234.dkr.ecr.us-east-1.amazonaws.com/",service="ecr.amazonaws.com""#
            ),
            vec![Challenge::Basic {
                realm: Some("https://1234.dkr.ecr.us-east-1.amazonaws.com/".into())
            }]
        );
    }

    #[test]
    fn several_challenges_in_one_header() {
        let parsed = parse_challenges(
            r#"Negotiate, Basic realm="r1", Bearer realm="https://a/token",service="s",error="insufficient_scope""#,
        );
        assert_eq!(parsed.len(), 3, "{parsed:?}");
        assert_eq!(
            parsed[0],
            Challenge::Other {
                scheme: "Negotiate".into()
            }
        );
        assert_eq!(
            parsed[1],
            Challenge::Basic {
                realm: Some("r1".into())
            }
        );
        assert_eq!(
            parsed[2],
            Challenge::Bearer {
                realm: "https://a/token".into(),
                service: Some("s".into()),
                scope: None,
                error: Some("insufficient_scope".into()),
            }
        );
    }

    #[test]
    fn scheme_and_keys_are_case_insensitive_and_spacing_is_loose() {
        let parsed = parse_challenges(r#"bearer  Realm = "https://q/token" , SERVICE=quay.io"#);
        assert_eq!(
            parsed,
            vec![bearer("https://q/token", Some("quay.io"), None)]
        );
    }

    #[test]
    fn escapes_in_quoted_strings() {
        let parsed = parse_challenges(r#"Basic realm="a \"quoted\" realm""#);
        assert_eq!(
            parsed,
            vec![Challenge::Basic {
                realm: Some(r#"a "quoted" realm"#.into())
            }]
        );
    }

    #[test]
    fn broken_headers_do_not_panic_and_keep_what_parses() {
        assert_eq!(parse_challenges(""), vec![]);
        assert_eq!(parse_challenges(",,,"), vec![]);
        let parsed = parse_challenges(r#"Bearer realm="unterminated"#);
        assert_eq!(parsed, vec![bearer("unterminated", None, None)]);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(header in ".{0,200}") {
            let _ = parse_challenges(&header);
        }
    }
}
