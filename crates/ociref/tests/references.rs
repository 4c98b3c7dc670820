//! The reference grammar, case by case: what users type, what it normalizes
//! to, and the precise reason for every refusal.

use ociref::{Error, Reference};

const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// `(input, display, familiar, registry, repository, tag, digest)`.
type Valid = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    bool,
);

fn valid_cases() -> Vec<Valid> {
    vec![
        (
            "alpine",
            "docker.io/library/alpine:latest",
            "alpine:latest",
            "docker.io",
            "library/alpine",
            Some("latest"),
            false,
        ),
        (
            "alpine:3.20",
            "docker.io/library/alpine:3.20",
            "alpine:3.20",
            "docker.io",
            "library/alpine",
            Some("3.20"),
            false,
        ),
        (
            "library/alpine",
            "docker.io/library/alpine:latest",
            "alpine:latest",
            "docker.io",
            "library/alpine",
            Some("latest"),
            false,
        ),
        (
            "docker.io/library/alpine:3.20",
            "docker.io/library/alpine:3.20",
            "alpine:3.20",
            "docker.io",
            "library/alpine",
            Some("3.20"),
            false,
        ),
        (
            "docker.io/alpine",
            "docker.io/library/alpine:latest",
            "alpine:latest",
            "docker.io",
            "library/alpine",
            Some("latest"),
            false,
        ),
        (
            "index.docker.io/x/y",
            "docker.io/x/y:latest",
            "x/y:latest",
            "docker.io",
            "x/y",
            Some("latest"),
            false,
        ),
        (
            "index.docker.io/alpine",
            "docker.io/library/alpine:latest",
            "alpine:latest",
            "docker.io",
            "library/alpine",
            Some("latest"),
            false,
        ),
        (
            "registry-1.docker.io/library/x",
            "docker.io/library/x:latest",
            "x:latest",
            "docker.io",
            "library/x",
            Some("latest"),
            false,
        ),
        (
            "user/app",
            "docker.io/user/app:latest",
            "user/app:latest",
            "docker.io",
            "user/app",
            Some("latest"),
            false,
        ),
        (
            "user/app:v1",
            "docker.io/user/app:v1",
            "user/app:v1",
            "docker.io",
            "user/app",
            Some("v1"),
            false,
        ),
        (
            "library/a/b",
            "docker.io/library/a/b:latest",
            "library/a/b:latest",
            "docker.io",
            "library/a/b",
            Some("latest"),
            false,
        ),
        (
            "localhost/a",
            "localhost/a:latest",
            "localhost/a:latest",
            "localhost",
            "a",
            Some("latest"),
            false,
        ),
        (
            "localhost:5000/a/b:t",
            "localhost:5000/a/b:t",
            "localhost:5000/a/b:t",
            "localhost:5000",
            "a/b",
            Some("t"),
            false,
        ),
        (
            "localhost:5000",
            "docker.io/library/localhost:5000",
            "localhost:5000",
            "docker.io",
            "library/localhost",
            Some("5000"),
            false,
        ),
        (
            "127.0.0.1:5000/x",
            "127.0.0.1:5000/x:latest",
            "127.0.0.1:5000/x:latest",
            "127.0.0.1:5000",
            "x",
            Some("latest"),
            false,
        ),
        (
            "[::1]:5000/a",
            "[::1]:5000/a:latest",
            "[::1]:5000/a:latest",
            "[::1]:5000",
            "a",
            Some("latest"),
            false,
        ),
        (
            "[::1]/a:t",
            "[::1]/a:t",
            "[::1]/a:t",
            "[::1]",
            "a",
            Some("t"),
            false,
        ),
        (
            "[2001:db8::1]/a",
            "[2001:db8::1]/a:latest",
            "[2001:db8::1]/a:latest",
            "[2001:db8::1]",
            "a",
            Some("latest"),
            false,
        ),
        (
            "[2001:db8::1]:443/a/b",
            "[2001:db8::1]:443/a/b:latest",
            "[2001:db8::1]:443/a/b:latest",
            "[2001:db8::1]:443",
            "a/b",
            Some("latest"),
            false,
        ),
        (
            "ghcr.io/o/r",
            "ghcr.io/o/r:latest",
            "ghcr.io/o/r:latest",
            "ghcr.io",
            "o/r",
            Some("latest"),
            false,
        ),
        (
            "quay.io/org/repo:1.0.0-rc.1",
            "quay.io/org/repo:1.0.0-rc.1",
            "quay.io/org/repo:1.0.0-rc.1",
            "quay.io",
            "org/repo",
            Some("1.0.0-rc.1"),
            false,
        ),
        (
            "Registry.Example.COM/a",
            "Registry.Example.COM/a:latest",
            "Registry.Example.COM/a:latest",
            "Registry.Example.COM",
            "a",
            Some("latest"),
            false,
        ),
        (
            "my-registry.local:8443/team/svc",
            "my-registry.local:8443/team/svc:latest",
            "my-registry.local:8443/team/svc:latest",
            "my-registry.local:8443",
            "team/svc",
            Some("latest"),
            false,
        ),
        (
            "a.b.c.d/e/f/g/h",
            "a.b.c.d/e/f/g/h:latest",
            "a.b.c.d/e/f/g/h:latest",
            "a.b.c.d",
            "e/f/g/h",
            Some("latest"),
            false,
        ),
        (
            "a__b",
            "docker.io/library/a__b:latest",
            "a__b:latest",
            "docker.io",
            "library/a__b",
            Some("latest"),
            false,
        ),
        (
            "a--b",
            "docker.io/library/a--b:latest",
            "a--b:latest",
            "docker.io",
            "library/a--b",
            Some("latest"),
            false,
        ),
        (
            "a---b",
            "docker.io/library/a---b:latest",
            "a---b:latest",
            "docker.io",
            "library/a---b",
            Some("latest"),
            false,
        ),
        (
            "a.b_c-d",
            "docker.io/library/a.b_c-d:latest",
            "a.b_c-d:latest",
            "docker.io",
            "library/a.b_c-d",
            Some("latest"),
            false,
        ),
        (
            "0",
            "docker.io/library/0:latest",
            "0:latest",
            "docker.io",
            "library/0",
            Some("latest"),
            false,
        ),
        (
            "a:_tag",
            "docker.io/library/a:_tag",
            "a:_tag",
            "docker.io",
            "library/a",
            Some("_tag"),
            false,
        ),
        (
            "a:T.a-G_9",
            "docker.io/library/a:T.a-G_9",
            "a:T.a-G_9",
            "docker.io",
            "library/a",
            Some("T.a-G_9"),
            false,
        ),
    ]
}

fn valid_digest_cases() -> Vec<(String, String, String, Option<&'static str>)> {
    vec![
        (
            format!("ghcr.io/o/r@{D}"),
            format!("ghcr.io/o/r@{D}"),
            format!("ghcr.io/o/r@{D}"),
            None,
        ),
        (
            format!("alpine@{D}"),
            format!("docker.io/library/alpine@{D}"),
            format!("alpine@{D}"),
            None,
        ),
        (
            format!("alpine:3.20@{D}"),
            format!("docker.io/library/alpine:3.20@{D}"),
            format!("alpine:3.20@{D}"),
            Some("3.20"),
        ),
        (
            format!("localhost:5000/a:t@{D}"),
            format!("localhost:5000/a:t@{D}"),
            format!("localhost:5000/a:t@{D}"),
            Some("t"),
        ),
        (
            format!("x.io/y@sha512:{}", "ab".repeat(64)),
            format!("x.io/y@sha512:{}", "ab".repeat(64)),
            format!("x.io/y@sha512:{}", "ab".repeat(64)),
            None,
        ),
    ]
}

fn invalid_cases() -> Vec<(String, &'static str)> {
    vec![
        (String::new(), "empty reference"),
        ("Alpine".into(), "repository must be lowercase"),
        ("library/Alpine".into(), "repository must be lowercase"),
        ("ghcr.io/Owner/repo".into(), "repository must be lowercase"),
        (" alpine".into(), "invalid character ' '"),
        ("alpine ".into(), "invalid character ' '"),
        ("alp ine".into(), "invalid character ' '"),
        ("alpine\n".into(), "invalid character '\\n'"),
        ("alpïne".into(), "invalid character 'ï'"),
        ("镜像".into(), "invalid character '镜'"),
        ("alpine:".into(), "empty tag"),
        (
            "alpine:-x".into(),
            "tag must start with a letter, digit or '_'",
        ),
        (
            "alpine:.x".into(),
            "tag must start with a letter, digit or '_'",
        ),
        (
            "alpine:a+b".into(),
            "tag may only contain letters, digits, '_', '.' and '-'",
        ),
        (
            format!("alpine:{}", "t".repeat(129)),
            "tag is longer than 128 characters",
        ),
        (
            "a___b".into(),
            "invalid separator \"___\" in path component \"a___b\"",
        ),
        (
            "a..b".into(),
            "invalid separator \"..\" in path component \"a..b\"",
        ),
        (
            "a.-b".into(),
            "invalid separator \".-\" in path component \"a.-b\"",
        ),
        (
            "a-_b".into(),
            "invalid separator \"-_\" in path component \"a-_b\"",
        ),
        (
            "-a".into(),
            "path component \"-a\" must start and end with a lowercase letter or digit",
        ),
        (
            "a-".into(),
            "path component \"a-\" must start and end with a lowercase letter or digit",
        ),
        (
            ".a".into(),
            "path component \".a\" must start and end with a lowercase letter or digit",
        ),
        (
            "_a".into(),
            "path component \"_a\" must start and end with a lowercase letter or digit",
        ),
        ("a//b".into(), "empty path component"),
        ("/a".into(), "empty path component"),
        ("a/".into(), "empty path component"),
        ("ghcr.io/".into(), "empty path component"),
        ("ghcr.io//a".into(), "empty path component"),
        ("localhost:/a".into(), "invalid port \"\" in registry"),
        ("localhost:abc/a".into(), "invalid port \"abc\" in registry"),
        (
            "localhost:123456/a".into(),
            "invalid port \"123456\" in registry",
        ),
        (
            "::1/a".into(),
            "IPv6 address in registry must be enclosed in brackets",
        ),
        (
            "2001:db8::1/a".into(),
            "IPv6 address in registry must be enclosed in brackets",
        ),
        ("[::1/a".into(), "unterminated IPv6 address in registry"),
        (
            "[zz::1]/a".into(),
            "invalid IPv6 address \"zz::1\" in registry",
        ),
        (
            "[::1]x/a".into(),
            "unexpected text after IPv6 address in registry",
        ),
        ("-bad.io/a".into(), "invalid registry host \"-bad.io\""),
        ("bad..io/a".into(), "invalid registry host \"bad..io\""),
        (
            "bad_host.io/a".into(),
            "invalid registry host \"bad_host.io\"",
        ),
        ("alpine@".into(), "invalid digest: empty digest"),
        ("alpine@:abc".into(), "invalid digest: empty algorithm"),
        (
            "alpine@sha256".into(),
            "invalid digest: missing ':' between algorithm and hex",
        ),
        (
            "alpine@sha256:abc".into(),
            "invalid digest: digest hex has wrong length for sha256 (expected 64, got 3)",
        ),
        (
            format!("alpine@sha256:{}", "A".repeat(64)),
            "invalid digest: sha256 hex must be lowercase hexadecimal",
        ),
        (
            format!("alpine@sha256:{}", "g".repeat(64)),
            "invalid digest: sha256 hex must be lowercase hexadecimal",
        ),
        (
            format!("alpine@SHA256:{}", "a".repeat(64)),
            "invalid digest: algorithm \"SHA256\" is not lowercase letters and digits joined by '+', '.', '_' or '-'",
        ),
        (
            format!("alpine@sha256:{}@sha256:{}", "a".repeat(64), "b".repeat(64)),
            "invalid digest: sha256 hex must be lowercase hexadecimal",
        ),
        (":tag".into(), "empty name"),
        (
            "@sha256:abc".into(),
            "invalid digest: digest hex has wrong length for sha256 (expected 64, got 3)",
        ),
        (
            "a".repeat(64),
            "repository name cannot be a 64-character hexadecimal string",
        ),
        (
            format!("x.io/{}", "a".repeat(251)),
            "name is longer than 255 characters (256)",
        ),
        ("a".repeat(250), "name is longer than 255 characters (268)"),
    ]
}

#[test]
fn valid_references_normalize_as_docker_does() {
    for (input, display, familiar, registry, repository, tag, _) in valid_cases() {
        let r: Reference = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(r.to_string(), display, "display of {input}");
        assert_eq!(r.familiar(), familiar, "familiar of {input}");
        assert_eq!(r.registry(), registry, "registry of {input}");
        assert_eq!(r.repository(), repository, "repository of {input}");
        assert_eq!(r.tag(), tag, "tag of {input}");
        assert_eq!(r.digest(), None, "digest of {input}");
        let again: Reference = display.parse().unwrap_or_else(|e| panic!("{display}: {e}"));
        assert_eq!(again, r, "normalized form of {input} parses back");
    }
}

#[test]
fn references_with_digests() {
    for (input, display, familiar, tag) in valid_digest_cases() {
        let r: Reference = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(r.to_string(), display);
        assert_eq!(r.familiar(), familiar);
        assert_eq!(
            r.tag(),
            tag,
            "no default tag when a digest is given: {input}"
        );
        let digest = r.digest().expect("digest kept");
        assert!(input.ends_with(digest.as_str()));
    }
}

#[test]
fn invalid_references_say_exactly_what_is_wrong() {
    for (input, reason) in invalid_cases() {
        let err = input.parse::<Reference>().expect_err(&input);
        assert_eq!(
            err,
            Error::InvalidReference {
                input: input.clone(),
                reason: reason.to_owned()
            },
            "for {input:?}"
        );
        assert!(
            err.to_string()
                .starts_with(&format!("invalid reference {input:?}: "))
        );
    }
}

#[test]
fn the_table_has_at_least_sixty_cases() {
    let total = valid_cases().len() + valid_digest_cases().len() + invalid_cases().len();
    assert!(total >= 60, "{total} cases");
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
fn name_length_limit_is_inclusive_at_255() {
    // "x.io/" is 5 characters: 250 more make exactly 255.
    let at_limit = format!("x.io/{}", "a".repeat(250 - 1) + "b");
    assert_eq!(at_limit.len(), 255);
    at_limit.parse::<Reference>().expect("255 is allowed");
    let tag_128 = format!("a:{}", "t".repeat(128));
    tag_128
        .parse::<Reference>()
        .expect("a 128-character tag is allowed");
}

#[test]
fn accessors_and_builders() {
    let r: Reference = "ghcr.io/o/r:1".parse().expect("valid");
    assert_eq!(r.name(), "ghcr.io/o/r");
    assert_eq!(r.registry_api_host(), "ghcr.io");
    assert!(!r.is_loopback());
    let hub: Reference = "alpine".parse().expect("valid");
    assert_eq!(hub.registry_api_host(), "registry-1.docker.io");
    assert_eq!(hub.familiar_name(), "alpine");
    let retagged = r.with_tag("2").expect("valid tag");
    assert_eq!(retagged.to_string(), "ghcr.io/o/r:2");
    assert!(r.with_tag("-bad").is_err());
    let digest: ociref::Digest = D.parse().expect("valid");
    let pinned = r.with_digest(digest.clone());
    assert_eq!(pinned.to_string(), format!("ghcr.io/o/r:1@{D}"));
    assert_eq!(
        r.by_digest_only(digest).to_string(),
        format!("ghcr.io/o/r@{D}")
    );
    for loopback in [
        "localhost/a",
        "localhost:5000/a",
        "127.0.0.1:5000/a",
        "127.9.9.9/a",
        "[::1]:5000/a",
    ] {
        assert!(
            loopback.parse::<Reference>().expect("valid").is_loopback(),
            "{loopback}"
        );
    }
    for remote in [
        "ghcr.io/a",
        "10.0.0.1:5000/a",
        "[2001:db8::1]/a",
        "localhost.example.com/a",
    ] {
        assert!(
            !remote.parse::<Reference>().expect("valid").is_loopback(),
            "{remote}"
        );
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
