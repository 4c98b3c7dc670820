//! Digests, streaming verification, and platform normalization and matching.

use ociref::{
    Algorithm, Digest, DigestVerifier, Error, Hasher, HashingReader, HashingWriter, Platform,
};
use std::io::{Read, Write};

const EMPTY_SHA256: &str =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const ABC_SHA256: &str = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const ABC_SHA512: &str = "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";

#[test]
fn known_vectors() {
    assert_eq!(Digest::sha256_of(b"").to_string(), EMPTY_SHA256);
    assert_eq!(Digest::sha256_of(b"abc").to_string(), ABC_SHA256);
    let mut sha512 = Hasher::new(Algorithm::Sha512);
    sha512.update(b"abc");
    assert_eq!(sha512.finish().to_string(), ABC_SHA512);
}

#[test]
fn digests_round_trip_and_expose_parts() {
    for text in [EMPTY_SHA256, ABC_SHA512] {
        let digest: Digest = text.parse().expect("valid");
        assert_eq!(digest.to_string(), text);
        assert_eq!(format!("{digest:?}"), text);
        assert_eq!(format!("{}:{}", digest.algorithm(), digest.hex()), text);
        assert!(digest.supported_algorithm().is_ok());
    }
    let json = serde_json::to_string(&Digest::sha256_of(b"")).expect("json");
    assert_eq!(json, format!("\"{EMPTY_SHA256}\""));
}

#[test]
fn unknown_algorithms_parse_but_are_unsupported() {
    let digest: Digest = "blake3+x.v1:abcDEF012=_-"
        .parse()
        .expect("grammar allows it");
    assert_eq!(digest.algorithm(), "blake3+x.v1");
    assert_eq!(
        DigestVerifier::new(digest.clone()).expect_err("cannot verify"),
        Error::UnsupportedAlgorithm {
            algorithm: "blake3+x.v1".into()
        }
    );
    assert!(
        digest
            .supported_algorithm()
            .expect_err("unsupported")
            .to_string()
            .contains("unsupported digest algorithm \"blake3+x.v1\"")
    );
}

#[test]
fn malformed_digests_are_specific() {
    let cases = [
        ("", "empty digest"),
        ("sha256", "missing ':' between algorithm and hex"),
        (":ab", "empty algorithm"),
        ("sha256:", "empty encoded part"),
        (
            "sha256:abc",
            "digest hex has wrong length for sha256 (expected 64, got 3)",
        ),
        (
            "sha512:abc",
            "digest hex has wrong length for sha512 (expected 128, got 3)",
        ),
        (
            "other:a b",
            "encoded part must be letters, digits, '=', '_' or '-'",
        ),
        (
            "Sha256:aa",
            "algorithm \"Sha256\" is not lowercase letters and digits joined by '+', '.', '_' or '-'",
        ),
        (
            "a..b:aa",
            "algorithm \"a..b\" is not lowercase letters and digits joined by '+', '.', '_' or '-'",
        ),
    ];
    for (input, reason) in cases {
        assert_eq!(
            input.parse::<Digest>().expect_err(input),
            Error::InvalidDigest {
                input: input.into(),
                reason: reason.into()
            }
        );
    }
}

#[test]
fn verifier_reports_expected_and_actual() {
    let expected: Digest = ABC_SHA256.parse().expect("valid");
    let mut ok = DigestVerifier::new(expected.clone()).expect("sha256");
    ok.write_all(b"ab").expect("write");
    ok.update(b"c");
    assert_eq!(ok.bytes_seen(), 3);
    assert_eq!(ok.finish().expect("matches"), expected);

    let mut bad = DigestVerifier::new(expected.clone()).expect("sha256");
    bad.update(b"abd");
    let err = bad.finish().expect_err("mismatch");
    assert_eq!(
        err,
        Error::DigestMismatch {
            expected: expected.clone(),
            actual: Digest::sha256_of(b"abd")
        }
    );
    assert_eq!(
        err.to_string(),
        format!(
            "digest mismatch: expected {expected}, got {}",
            Digest::sha256_of(b"abd")
        )
    );
}

#[test]
fn hashing_adapters_pass_bytes_through() {
    let mut writer = HashingWriter::new(Vec::new(), Algorithm::Sha256);
    writer.write_all(b"abc").expect("write");
    assert_eq!(writer.bytes_written(), 3);
    let (inner, digest) = writer.finish();
    assert_eq!(inner, b"abc");
    assert_eq!(digest.to_string(), ABC_SHA256);

    let mut reader = HashingReader::new(&b"abc"[..], Algorithm::Sha256);
    let mut out = String::new();
    reader.read_to_string(&mut out).expect("read");
    assert_eq!(out, "abc");
    assert_eq!(reader.bytes_read(), 3);
    assert_eq!(reader.finish().1.to_string(), ABC_SHA256);
}

#[test]
fn platform_normalization_table() {
    let cases = [
        ("linux/amd64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/x86-64", "linux/amd64"),
        ("Linux/AMD64", "linux/amd64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("linux/amd64/v3", "linux/amd64/v3"),
        ("linux/arm64", "linux/arm64/v8"),
        ("linux/aarch64", "linux/arm64/v8"),
        ("linux/arm64/v8", "linux/arm64/v8"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/armel", "linux/arm/v6"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/7", "linux/arm/v7"),
        ("linux/arm/v5", "linux/arm/v5"),
        ("linux/i386", "linux/386"),
        ("linux/i686", "linux/386"),
        ("macos/arm64", "darwin/arm64/v8"),
        ("windows/amd64", "windows/amd64"),
        ("linux/riscv64", "linux/riscv64"),
        ("linux/s390x", "linux/s390x"),
    ];
    for (input, normalized) in cases {
        let platform: Platform = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(platform.to_string(), normalized, "{input}");
        assert_eq!(
            normalized.parse::<Platform>().expect("normalized parses"),
            platform
        );
    }
    assert_eq!(
        "linux/arm64".parse::<Platform>().expect("valid"),
        "linux/arm64/v8".parse::<Platform>().expect("valid")
    );
}

#[test]
fn malformed_platforms_are_specific() {
    for (input, reason) in [
        ("linux", "expected os/arch or os/arch/variant"),
        ("linux/amd64/v3/x", "expected os/arch or os/arch/variant"),
        ("/amd64", "empty os"),
        ("linux/", "empty architecture"),
        ("linux/amd64/", "empty variant"),
        (
            "li nux/amd64",
            "os \"li nux\" may only contain letters, digits, '.', '_' and '-'",
        ),
    ] {
        assert_eq!(
            input.parse::<Platform>().expect_err(input),
            Error::InvalidPlatform {
                input: input.into(),
                reason: reason.into()
            }
        );
    }
}

#[test]
fn host_platform_parses_back() {
    let host = Platform::host();
    assert_eq!(
        host.to_string().parse::<Platform>().expect("round trip"),
        host
    );
    assert_eq!(host.os(), std::env::consts::OS);
}

#[test]
fn matching_and_arm_fallbacks() {
    let arm64: Platform = "linux/arm64".parse().expect("valid");
    assert_eq!(arm64.match_rank("linux", "arm64", Some("v8")), Some(0));
    assert_eq!(arm64.match_rank("linux", "arm64", None), Some(0));
    assert_eq!(arm64.match_rank("linux", "aarch64", None), Some(0));
    assert_eq!(arm64.match_rank("linux", "amd64", None), None);
    assert_eq!(arm64.match_rank("windows", "arm64", None), None);

    let armv7: Platform = "linux/arm/v7".parse().expect("valid");
    let v7 = armv7.match_rank("linux", "arm", Some("v7")).expect("exact");
    let v6 = armv7
        .match_rank("linux", "arm", Some("v6"))
        .expect("fallback");
    let v5 = armv7
        .match_rank("linux", "arm", Some("v5"))
        .expect("fallback");
    assert!(v7 < v6 && v6 < v5, "{v7} {v6} {v5}");
    assert_eq!(
        armv7.match_rank("linux", "arm", Some("v8")),
        None,
        "v8 code cannot run on v7"
    );

    let candidates = [
        ("linux", "amd64", None),
        ("linux", "arm", Some("v5")),
        ("linux", "arm", Some("v6")),
    ];
    let best = armv7.best_match(&candidates, |(os, arch, variant)| {
        Some(((*os).into(), (*arch).into(), variant.map(Into::into)))
    });
    assert_eq!(best, Some(&("linux", "arm", Some("v6"))));

    let amd64: Platform = "linux/amd64".parse().expect("valid");
    assert!(amd64.matches(&"linux/x86_64".parse().expect("valid")));
    assert!(!amd64.matches(&arm64));
}
