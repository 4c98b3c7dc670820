//! The reference grammar, case by case: what users type, what it normalizes
//! to, and the precise reason for every refusal.

use ociref::{Algorithm, Digest, DigestReason, Error, Reference, ReferenceReason as R};

/// sha256 of the empty string.
const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// One valid case a line:
/// `input | display | familiar | registry | repository | tag | digest`,
/// `-` for none, `$D` for the digest [`D`].
const VALID: &str = r"
alpine                         | docker.io/library/alpine:latest      | alpine:latest                  | docker.io          | library/alpine   | latest | -
alpine:3.20                    | docker.io/library/alpine:3.20        | alpine:3.20                    | docker.io          | library/alpine   | 3.20   | -
library/alpine                 | docker.io/library/alpine:latest      | alpine:latest                  | docker.io          | library/alpine   | latest | -
docker.io/library/alpine:3.20  | docker.io/library/alpine:3.20        | alpine:3.20                    | docker.io          | library/alpine   | 3.20   | -
docker.io/library/alpine       | docker.io/library/alpine:latest      | alpine:latest                  | docker.io          | library/alpine   | latest | -
docker.io/alpine               | docker.io/library/alpine:latest      | alpine:latest                  | docker.io          | library/alpine   | latest | -
index.docker.io/x/y            | docker.io/x/y:latest                 | x/y:latest                     | docker.io          | x/y              | latest | -
index.docker.io/alpine         | docker.io/library/alpine:latest      | alpine:latest                  | docker.io          | library/alpine   | latest | -
registry-1.docker.io/library/x | docker.io/library/x:latest           | x:latest                       | docker.io          | library/x        | latest | -
Docker.IO/alpine               | docker.io/library/alpine:latest      | alpine:latest                  | docker.io          | library/alpine   | latest | -
docker.io/library/a/b          | docker.io/library/a/b:latest         | library/a/b:latest             | docker.io          | library/a/b      | latest | -
user/repo:tag                  | docker.io/user/repo:tag              | user/repo:tag                  | docker.io          | user/repo        | tag    | -
a/b/c                          | docker.io/a/b/c:latest               | a/b/c:latest                   | docker.io          | a/b/c            | latest | -
0/1                            | docker.io/0/1:latest                 | 0/1:latest                     | docker.io          | 0/1              | latest | -
docker.io/foo.com/bar          | docker.io/foo.com/bar:latest         | docker.io/foo.com/bar:latest   | docker.io          | foo.com/bar      | latest | -
docker.io/localhost/bar        | docker.io/localhost/bar:latest       | docker.io/localhost/bar:latest | docker.io          | localhost/bar    | latest | -
a.b                            | docker.io/library/a.b:latest         | a.b:latest                     | docker.io          | library/a.b      | latest | -
a.b/c                          | a.b/c:latest                         | a.b/c:latest                   | a.b                | c                | latest | -
ghcr.io/o/r                    | ghcr.io/o/r:latest                   | ghcr.io/o/r:latest             | ghcr.io            | o/r              | latest | -
ghcr.io/o/r:v1                 | ghcr.io/o/r:v1                       | ghcr.io/o/r:v1                 | ghcr.io            | o/r              | v1     | -
ghcr.io/o/r@$D                 | ghcr.io/o/r@$D                       | ghcr.io/o/r@$D                 | ghcr.io            | o/r              | -      | $D
ghcr.io/o/r:v1@$D              | ghcr.io/o/r:v1@$D                    | ghcr.io/o/r:v1@$D              | ghcr.io            | o/r              | v1     | $D
alpine@$D                      | docker.io/library/alpine@$D          | alpine@$D                      | docker.io          | library/alpine   | -      | $D
alpine:3.20@$D                 | docker.io/library/alpine:3.20@$D     | alpine:3.20@$D                 | docker.io          | library/alpine   | 3.20   | $D
alpine@blake3:abcDEF=_-        | docker.io/library/alpine@blake3:abcDEF=_- | alpine@blake3:abcDEF=_-   | docker.io          | library/alpine   | -      | blake3:abcDEF=_-
localhost/a                    | localhost/a:latest                   | localhost/a:latest             | localhost          | a                | latest | -
localhost:5000/a/b:t           | localhost:5000/a/b:t                 | localhost:5000/a/b:t           | localhost:5000     | a/b              | t      | -
localhost:5000/a@$D            | localhost:5000/a@$D                  | localhost:5000/a@$D            | localhost:5000     | a                | -      | $D
localhost:5000                 | docker.io/library/localhost:5000     | localhost:5000                 | docker.io          | library/localhost | 5000  | -
localhost                      | docker.io/library/localhost:latest   | localhost:latest               | docker.io          | library/localhost | latest | -
[::1]:5000/a                   | [::1]:5000/a:latest                  | [::1]:5000/a:latest            | [::1]:5000         | a                | latest | -
[::1]/a                        | [::1]/a:latest                       | [::1]/a:latest                 | [::1]              | a                | latest | -
[2001:db8::1]/a                | [2001:db8::1]/a:latest               | [2001:db8::1]/a:latest         | [2001:db8::1]      | a                | latest | -
[2001:DB8::1]:443/a/b:x        | [2001:db8::1]:443/a/b:x              | [2001:db8::1]:443/a/b:x        | [2001:db8::1]:443  | a/b              | x      | -
127.0.0.1:5000/x:1             | 127.0.0.1:5000/x:1                   | 127.0.0.1:5000/x:1             | 127.0.0.1:5000     | x                | 1      | -
1.2.3.4/x                      | 1.2.3.4/x:latest                     | 1.2.3.4/x:latest               | 1.2.3.4            | x                | latest | -
example.com:65535/x            | example.com:65535/x:latest           | example.com:65535/x:latest     | example.com:65535  | x                | latest | -
example.com:0/x                | example.com:0/x:latest               | example.com:0/x:latest         | example.com:0      | x                | latest | -
a:5000/b                       | a:5000/b:latest                      | a:5000/b:latest                | a:5000             | b                | latest | -
My.Registry.IO/app             | my.registry.io/app:latest            | my.registry.io/app:latest      | my.registry.io     | app              | latest | -
foo-bar.example.com/a/b/c/d/e  | foo-bar.example.com/a/b/c/d/e:latest | foo-bar.example.com/a/b/c/d/e:latest | foo-bar.example.com | a/b/c/d/e | latest | -
xn--bcher-kva.example/a        | xn--bcher-kva.example/a:latest       | xn--bcher-kva.example/a:latest | xn--bcher-kva.example | a             | latest | -
a__b                           | docker.io/library/a__b:latest        | a__b:latest                    | docker.io          | library/a__b     | latest | -
a--b                           | docker.io/library/a--b:latest        | a--b:latest                    | docker.io          | library/a--b     | latest | -
a---b                          | docker.io/library/a---b:latest       | a---b:latest                   | docker.io          | library/a---b    | latest | -
a_b/c.d-e                      | docker.io/a_b/c.d-e:latest           | a_b/c.d-e:latest               | docker.io          | a_b/c.d-e        | latest | -
a.b_c__d-e--f                  | docker.io/library/a.b_c__d-e--f:latest | a.b_c__d-e--f:latest         | docker.io          | library/a.b_c__d-e--f | latest | -
a:UPPER_tag                    | docker.io/library/a:UPPER_tag        | a:UPPER_tag                    | docker.io          | library/a        | UPPER_tag | -
a:_x                           | docker.io/library/a:_x               | a:_x                           | docker.io          | library/a        | _x     | -
a:1.0-rc.1                     | docker.io/library/a:1.0-rc.1         | a:1.0-rc.1                     | docker.io          | library/a        | 1.0-rc.1 | -
a:sha256-abc                   | docker.io/library/a:sha256-abc       | a:sha256-abc                   | docker.io          | library/a        | sha256-abc | -
a:latest                       | docker.io/library/a:latest           | a:latest                       | docker.io          | library/a        | latest | -
";

fn column(text: &str) -> Option<String> {
    match text.trim() {
        "-" => None,
        other => Some(other.replace("$D", D)),
    }
}

#[test]
fn valid_references_normalize_as_docker_does() {
    let mut count = 0;
    for line in VALID.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<Option<String>> = line.split('|').map(column).collect();
        let [
            Some(input),
            Some(display),
            Some(familiar),
            Some(registry),
            Some(repository),
            tag,
            digest,
        ] = fields.as_slice()
        else {
            panic!("malformed table line {line:?}");
        };
        let r: Reference = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(&r.to_string(), display, "display of {input}");
        assert_eq!(&r.familiar(), familiar, "familiar of {input}");
        assert_eq!(r.registry(), registry, "registry of {input}");
        assert_eq!(r.repository(), repository, "repository of {input}");
        assert_eq!(r.tag(), tag.as_deref(), "tag of {input}");
        assert_eq!(
            r.digest().map(Digest::as_str),
            digest.as_deref(),
            "digest of {input}"
        );
        assert_eq!(r.name(), format!("{registry}/{repository}"), "{input}");
        for form in [display, familiar] {
            let again: Reference = form.parse().unwrap_or_else(|e| panic!("{form}: {e}"));
            assert_eq!(again, r, "{form} parses back to {input}");
        }
        count += 1;
    }
    assert!(count >= 50, "only {count} valid cases");
}

fn hex(c: char, n: usize) -> String {
    std::iter::repeat_n(c, n).collect()
}

fn invalid_cases() -> Vec<(String, R)> {
    let component = |c: &str| c.to_owned();
    let separator = |s: &str, c: &str| R::InvalidSeparator {
        separator: s.into(),
        component: c.into(),
    };
    let edge = |c: &str| R::PathComponentEdge {
        component: component(c),
    };
    let port = |p: &str| R::InvalidPort { port: p.into() };
    let host = |h: &str| R::InvalidHost { host: h.into() };
    let digest = R::Digest;
    vec![
        // Characters that never occur.
        ("".into(), R::Empty),
        (" ".into(), R::InvalidCharacter(' ')),
        ("\t".into(), R::InvalidCharacter('\t')),
        (" alpine".into(), R::InvalidCharacter(' ')),
        ("alpine ".into(), R::InvalidCharacter(' ')),
        ("alpine:3.20 ".into(), R::InvalidCharacter(' ')),
        ("alpine\n".into(), R::InvalidCharacter('\n')),
        ("alpïne".into(), R::InvalidCharacter('ï')),
        ("日本/app".into(), R::InvalidCharacter('日')),
        ("a:tag\u{301}".into(), R::InvalidCharacter('\u{301}')),
        // Case.
        ("Alpine".into(), R::Uppercase),
        ("library/Alpine".into(), R::Uppercase),
        ("ghcr.io/Org/repo".into(), R::Uppercase),
        ("Foo/bar".into(), R::Uppercase),
        ("LOCALHOST/a".into(), R::Uppercase),
        // Path components.
        ("-a".into(), edge("-a")),
        (".a".into(), edge(".a")),
        ("_a".into(), edge("_a")),
        ("a-".into(), edge("a-")),
        ("x/a.".into(), edge("a.")),
        ("a___b".into(), separator("___", "a___b")),
        ("a..b".into(), separator("..", "a..b")),
        ("a.-b".into(), separator(".-", "a.-b")),
        ("a_-b".into(), separator("_-", "a_-b")),
        (
            "a!b".into(),
            R::PathComponentCharacter {
                character: '!',
                component: "a!b".into(),
            },
        ),
        ("a//b".into(), R::EmptyPathComponent),
        ("/a".into(), R::EmptyPathComponent),
        ("a/".into(), R::EmptyPathComponent),
        ("ghcr.io/".into(), R::EmptyPathComponent),
        ("ghcr.io//a".into(), R::EmptyPathComponent),
        ("docker.io/".into(), R::EmptyPathComponent),
        (":tag".into(), R::EmptyName),
        (format!("@{D}"), R::EmptyName),
        (hex('a', 64), R::HexRepository),
        // Tags.
        ("alpine:".into(), R::EmptyTag),
        ("ghcr.io/o/r:".into(), R::EmptyTag),
        ("localhost:5000/a:".into(), R::EmptyTag),
        ("alpine:-x".into(), R::TagStart),
        ("alpine:.x".into(), R::TagStart),
        ("alpine:a+b".into(), R::TagCharacter),
        ("a:b:c".into(), R::TagCharacter),
        (
            format!("a:{}", hex('t', 129)),
            R::TagTooLong { length: 129 },
        ),
        // Registries.
        ("localhost:/a".into(), port("")),
        ("localhost:abc/a".into(), port("abc")),
        ("localhost:+80/a".into(), port("+80")),
        ("localhost:65536/a".into(), port("65536")),
        ("example.com:5000x/a".into(), port("5000x")),
        ("[::1]:x/a".into(), port("x")),
        ("[::1]:/a".into(), port("")),
        ("::1/a".into(), R::UnbracketedIpv6),
        ("2001:db8::1/a".into(), R::UnbracketedIpv6),
        ("[::1/a".into(), R::UnterminatedIpv6),
        (
            "[::g]/a".into(),
            R::InvalidIpv6 {
                address: "::g".into(),
            },
        ),
        (
            "[1.2.3.4]/a".into(),
            R::InvalidIpv6 {
                address: "1.2.3.4".into(),
            },
        ),
        ("[::1]x/a".into(), R::TextAfterIpv6),
        (":5000/a".into(), R::EmptyHost),
        ("-bad.io/a".into(), host("-bad.io")),
        ("bad-.io/a".into(), host("bad-.io")),
        ("bad..io/a".into(), host("bad..io")),
        ("bad_host.io/a".into(), host("bad_host.io")),
        (".io/a".into(), host(".io")),
        // Digests.
        ("alpine@".into(), digest(DigestReason::Empty)),
        ("alpine@sha256".into(), digest(DigestReason::MissingColon)),
        ("alpine@:abc".into(), digest(DigestReason::EmptyAlgorithm)),
        (
            "alpine@sha256:abc".into(),
            digest(DigestReason::WrongLength {
                algorithm: Algorithm::Sha256,
                expected: 64,
                actual: 3,
            }),
        ),
        (
            format!("alpine@sha256:{}", hex('a', 63)),
            digest(DigestReason::WrongLength {
                algorithm: Algorithm::Sha256,
                expected: 64,
                actual: 63,
            }),
        ),
        (
            format!("alpine@sha256:{}", hex('A', 64)),
            digest(DigestReason::NotLowercaseHex {
                algorithm: Algorithm::Sha256,
            }),
        ),
        (
            format!("alpine@SHA256:{}", hex('a', 64)),
            digest(DigestReason::InvalidAlgorithm),
        ),
        (
            format!("alpine@sha256:{}@{D}", hex('a', 64)),
            digest(DigestReason::NotLowercaseHex {
                algorithm: Algorithm::Sha256,
            }),
        ),
        // Length of the full normalized name, `docker.io/library/` included.
        (hex('a', 238), R::NameTooLong { length: 256 }),
        (
            format!("x.io/{}", hex('a', 251)),
            R::NameTooLong { length: 256 },
        ),
    ]
}

#[test]
fn invalid_references_say_exactly_what_is_wrong() {
    let cases = invalid_cases();
    assert!(cases.len() >= 60, "only {} invalid cases", cases.len());
    for (input, reason) in cases {
        let err = input.parse::<Reference>().expect_err(&input);
        let message = format!("invalid reference {input:?}: {reason}");
        assert_eq!(err, Error::InvalidReference { input, reason });
        assert_eq!(err.to_string(), message);
    }
}

#[test]
fn error_message_shape() {
    let err = "Alpine".parse::<Reference>().expect_err("uppercase");
    assert_eq!(
        err.to_string(),
        "invalid reference \"Alpine\": repository must be lowercase"
    );
}

#[test]
fn reasons_read_as_documented() {
    let cases = [
        (
            R::TagTooLong { length: 129 },
            "tag is longer than 128 characters",
        ),
        (
            R::NameTooLong { length: 256 },
            "name is longer than 255 characters",
        ),
        (R::EmptyPathComponent, "empty path component"),
        (R::InvalidPort { port: "x".into() }, "invalid port \"x\""),
        (
            R::Digest(DigestReason::WrongLength {
                algorithm: Algorithm::Sha256,
                expected: 64,
                actual: 63,
            }),
            "invalid digest: digest hex has wrong length for sha256 (expected 64, got 63)",
        ),
    ];
    for (reason, text) in cases {
        assert_eq!(reason.to_string(), text);
    }
}

#[test]
fn length_limits_are_inclusive() {
    // "docker.io/library/" is 18 characters: 237 more make exactly 255.
    let hub = hex('a', 237);
    let r: Reference = hub.parse().expect("255 characters are allowed");
    assert_eq!(r.name().len(), 255);
    let at_limit = format!("x.io/{}", hex('a', 250));
    assert_eq!(at_limit.parse::<Reference>().expect("255").name(), at_limit);
    let tag_128 = format!("a:{}", hex('t', 128));
    assert_eq!(
        tag_128
            .parse::<Reference>()
            .expect("128")
            .tag()
            .map(str::len),
        Some(128)
    );
}

#[test]
fn accessors_and_builders() {
    let r: Reference = "ghcr.io/o/r:1".parse().expect("valid");
    assert_eq!(r.name(), "ghcr.io/o/r");
    assert_eq!(r.registry_api_host(), "ghcr.io");
    let hub: Reference = "alpine".parse().expect("valid");
    assert_eq!(hub.registry_api_host(), "registry-1.docker.io");
    assert_eq!(hub.familiar_name(), "alpine");

    let retagged = r.with_tag("2").expect("valid tag");
    assert_eq!(retagged.to_string(), "ghcr.io/o/r:2");
    assert_eq!(
        r.with_tag("-x").expect_err("invalid tag"),
        Error::InvalidReference {
            input: "ghcr.io/o/r:-x".into(),
            reason: R::TagStart
        }
    );

    let digest: Digest = D.parse().expect("valid");
    let pinned = r.with_digest(digest.clone());
    assert_eq!(pinned.to_string(), format!("ghcr.io/o/r:1@{D}"));
    assert_eq!(
        pinned.with_tag("3").expect("valid").to_string(),
        "ghcr.io/o/r:3",
        "a new tag drops the old pin"
    );
    assert_eq!(
        r.by_digest_only(digest).to_string(),
        format!("ghcr.io/o/r@{D}")
    );
}

#[test]
fn loopback_registries() {
    for loopback in [
        "localhost/a",
        "localhost:5000/a",
        "127.0.0.1/a",
        "127.0.0.1:5000/a",
        "127.1.2.3:80/a",
        "[::1]/a",
        "[::1]:5000/a",
        "[::ffff:127.0.0.1]:5000/a",
    ] {
        let r: Reference = loopback.parse().expect("valid");
        assert!(r.is_loopback(), "{loopback}");
    }
    for remote in [
        "alpine",
        "ghcr.io/o/r",
        "10.0.0.1:5000/a",
        "[2001:db8::1]/a",
        "localhost.example.com/a",
        "128.0.0.1/a",
        "docker.io/localhost/a",
    ] {
        let r: Reference = remote.parse().expect("valid");
        assert!(!r.is_loopback(), "{remote}");
    }
}

#[test]
fn serde_uses_the_normalized_string() {
    let r: Reference = "alpine:3.20".parse().expect("valid");
    let json = serde_json::to_string(&r).expect("serializes");
    assert_eq!(json, "\"docker.io/library/alpine:3.20\"");
    let back: Reference = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, r);
    let err = serde_json::from_str::<Reference>("\"Alpine\"").expect_err("validated");
    assert!(err.to_string().contains("repository must be lowercase"));
}

/// Regression: docker's familiar form of `docker.io/foo.com/bar` is
/// `foo.com/bar`, which parses as registry `foo.com`. Ours keeps the
/// registry so the short form names the same image.
#[test]
fn familiar_form_of_hub_repository_that_looks_like_a_registry() {
    let r: Reference = "docker.io/foo.com/bar:1".parse().expect("valid");
    assert_eq!(r.familiar(), "docker.io/foo.com/bar:1");
    assert_eq!(r.familiar().parse::<Reference>().expect("parses"), r);
}
