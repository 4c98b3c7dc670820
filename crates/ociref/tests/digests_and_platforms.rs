//! Digests, streaming verification, and platform normalization and matching.

use ociref::{
    Algorithm, Digest, DigestReason, DigestVerifier, Error, Hasher, HashingReader, HashingWriter,
    Platform, PlatformReason,
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
    let sha256 = Algorithm::Sha256;
    let cases = [
        ("", DigestReason::Empty),
        ("sha256", DigestReason::MissingColon),
        (":ab", DigestReason::EmptyAlgorithm),
        ("sha256:", DigestReason::EmptyEncoded),
        (
            "sha256:abc",
            DigestReason::WrongLength {
                algorithm: sha256,
                expected: 64,
                actual: 3,
            },
        ),
        (
            "sha512:abc",
            DigestReason::WrongLength {
                algorithm: Algorithm::Sha512,
                expected: 128,
                actual: 3,
            },
        ),
        (
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            DigestReason::NotLowercaseHex { algorithm: sha256 },
        ),
        (
            "sha256:é",
            DigestReason::NotLowercaseHex { algorithm: sha256 },
        ),
        ("other:a b", DigestReason::InvalidEncoded),
        ("other:a+b", DigestReason::InvalidEncoded),
        ("Sha256:aa", DigestReason::InvalidAlgorithm),
        ("a..b:aa", DigestReason::InvalidAlgorithm),
        ("+a:aa", DigestReason::InvalidAlgorithm),
        ("ä:aa", DigestReason::InvalidAlgorithm),
    ];
    for (input, reason) in cases {
        assert_eq!(
            input.parse::<Digest>().expect_err(input),
            Error::InvalidDigest {
                input: input.into(),
                reason
            }
        );
    }
    let err = format!("sha256:{}", "a".repeat(63))
        .parse::<Digest>()
        .expect_err("short");
    assert!(
        err.to_string()
            .ends_with(": digest hex has wrong length for sha256 (expected 64, got 63)"),
        "{err}"
    );
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
    let empty = |part| PlatformReason::EmptyPart { part };
    for (input, reason) in [
        ("", PlatformReason::Shape),
        ("linux", PlatformReason::Shape),
        ("linux/amd64/v3/x", PlatformReason::Shape),
        ("/amd64", empty("os")),
        ("linux/", empty("architecture")),
        ("linux/amd64/", empty("variant")),
        (
            "li nux/amd64",
            PlatformReason::InvalidPart {
                part: "os",
                value: "li nux".into(),
            },
        ),
        (
            "linux/ämd64",
            PlatformReason::InvalidPart {
                part: "architecture",
                value: "ämd64".into(),
            },
        ),
    ] {
        let message = format!("invalid platform {input:?}: {reason}");
        let err = input.parse::<Platform>().expect_err(input);
        assert_eq!(err.to_string(), message);
        assert_eq!(
            err,
            Error::InvalidPlatform {
                input: input.into(),
                reason
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

fn platform(text: &str) -> Platform {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn arm64_with_and_without_variant_are_one_platform() {
    let arm64 = platform("linux/arm64");
    assert_eq!(arm64, platform("linux/arm64/v8"));
    assert_eq!(arm64, platform("linux/aarch64"));
    assert_eq!(arm64.match_rank("linux", "arm64", Some("v8")), Some(0));
    assert_eq!(arm64.match_rank("linux", "arm64", None), Some(0));
    assert_eq!(arm64.match_rank("linux", "aarch64", None), Some(0));
    assert!(platform("linux/arm64/v8").matches(&platform("linux/arm64")));
}

#[test]
fn mismatches() {
    let arm64 = platform("linux/arm64");
    assert_eq!(arm64.match_rank("linux", "amd64", None), None);
    assert_eq!(arm64.match_rank("windows", "arm64", None), None);
    assert_eq!(
        arm64.match_rank("linux", "arm", Some("v7")),
        None,
        "no cross-architecture fallback"
    );
    assert_eq!(
        arm64.match_rank("linux", "arm64", Some("v9")),
        None,
        "newer variant"
    );
    assert_eq!(
        arm64.match_rank("linux", "", None),
        None,
        "unparsable candidate"
    );
    let amd64 = platform("linux/amd64");
    assert!(amd64.matches(&platform("linux/x86_64")));
    assert!(!amd64.matches(&arm64));
    assert!(!amd64.matches(&platform("linux/386")));
    assert!(
        !amd64.matches(&platform("linux/amd64/v3")),
        "baseline host, v3 image"
    );
    assert!(!platform("linux/arm/v6").matches(&platform("linux/arm/v7")));
}

#[test]
fn arm_falls_back_v7_then_v6_then_v5() {
    let armv7 = platform("linux/arm/v7");
    let rank = |variant| armv7.match_rank("linux", "arm", Some(variant));
    let (v7, v6, v5) = (rank("v7"), rank("v6"), rank("v5"));
    assert_eq!(v7, Some(0));
    assert!(v7 < v6 && v6 < v5 && v5.is_some(), "{v7:?} {v6:?} {v5:?}");
    assert_eq!(rank("v8"), None, "v8 code cannot run on v7");
    assert_eq!(armv7.match_rank("linux", "armhf", None), Some(0));
    assert_eq!(
        armv7.match_rank("linux", "arm", None),
        Some(0),
        "bare arm is v7"
    );

    let index = [
        ("linux", "amd64", None),
        ("linux", "arm", Some("v5")),
        ("linux", "arm", Some("v6")),
        ("linux", "arm64", Some("v8")),
    ];
    let best = |wanted: &str| {
        platform(wanted).best_match(&index, |(os, arch, variant)| Some((*os, *arch, *variant)))
    };
    assert_eq!(best("linux/arm/v7"), Some(&index[2]));
    assert_eq!(best("linux/arm/v6"), Some(&index[2]));
    assert_eq!(best("linux/arm/v5"), Some(&index[1]));
    assert_eq!(best("linux/arm64"), Some(&index[3]));
    assert_eq!(best("linux/riscv64"), None);
}

#[test]
fn other_ordered_variants() {
    let v9 = platform("linux/arm64/v9");
    let v8 = v9
        .match_rank("linux", "arm64", None)
        .expect("v8 runs on v9");
    let v8_2 = v9
        .match_rank("linux", "arm64", Some("v8.2"))
        .expect("v8.2 runs on v9");
    assert!(0 < v8_2 && v8_2 < v8);
    let amd64_v3 = platform("linux/amd64/v3");
    assert!(
        amd64_v3.match_rank("linux", "amd64", Some("v2"))
            < amd64_v3.match_rank("linux", "amd64", None)
    );
    assert_eq!(amd64_v3.match_rank("linux", "amd64", Some("v4")), None);
    let power9 = platform("linux/ppc64le/power9");
    assert!(
        power9.match_rank("linux", "ppc64le", None).is_some(),
        "generic image serves any variant"
    );
    assert_eq!(power9.match_rank("linux", "ppc64le", Some("power10")), None);
}

#[test]
fn platform_serde_is_the_normalized_string() {
    let json = serde_json::to_string(&platform("linux/aarch64")).expect("json");
    assert_eq!(json, "\"linux/arm64/v8\"");
    assert_eq!(
        serde_json::from_str::<Platform>(&json).expect("back"),
        platform("linux/arm64")
    );
    assert!(serde_json::from_str::<Platform>("\"linux\"").is_err());
}

/// A writer that takes at most two bytes a call, like a short socket write.
struct Trickle(Vec<u8>);

impl Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(2);
        self.0.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn hashing_writer_hashes_exactly_what_the_inner_writer_took() {
    let mut writer = HashingWriter::new(Trickle(Vec::new()), Algorithm::Sha256);
    assert_eq!(writer.write(b"abcde").expect("write"), 2);
    assert_eq!(writer.bytes_written(), 2);
    assert_eq!(writer.get_ref().0, b"ab");
    writer.write_all(b"c").expect("write");
    let inner = writer
        .verify(&ABC_SHA256.parse().expect("valid"))
        .expect("abc");
    assert_eq!(inner.0, b"abc");

    let mut wrong = HashingWriter::new(Vec::new(), Algorithm::Sha256);
    wrong.write_all(b"abd").expect("write");
    assert_eq!(
        wrong
            .verify(&Digest::sha256_of(b"abc"))
            .expect_err("mismatch"),
        Error::DigestMismatch {
            expected: Digest::sha256_of(b"abc"),
            actual: Digest::sha256_of(b"abd"),
        }
    );
}

#[test]
fn one_shot_helpers() {
    assert_eq!(Digest::sha512_of(b"abc").to_string(), ABC_SHA512);
    assert_eq!(
        Digest::of(Algorithm::Sha256, b"abc").to_string(),
        ABC_SHA256
    );
    let abc: Digest = ABC_SHA256.parse().expect("valid");
    abc.verify(b"abc").expect("matches");
    assert!(matches!(
        abc.verify(b"abd"),
        Err(Error::DigestMismatch { .. })
    ));
    let odd: Digest = "md5:abc".parse().expect("grammar allows it");
    assert!(!odd.is_supported());
    assert_eq!(
        odd.verify(b""),
        Err(Error::UnsupportedAlgorithm {
            algorithm: "md5".into()
        })
    );
    let mut hasher = Hasher::new(Algorithm::Sha512);
    hasher.write_all(b"ab").expect("write");
    assert_eq!(hasher.bytes_seen(), 2);
    assert_eq!(hasher.algorithm(), Algorithm::Sha512);
    assert_eq!(Algorithm::from_name("sha512"), Some(Algorithm::Sha512));
    assert_eq!(Algorithm::Sha256.to_string(), "sha256");
}

#[test]
fn digests_order_and_hash_by_text() {
    let set: std::collections::BTreeSet<Digest> =
        [ABC_SHA512, ABC_SHA256, EMPTY_SHA256, ABC_SHA256]
            .iter()
            .map(|t| t.parse().expect("valid"))
            .collect();
    let texts: Vec<String> = set.iter().map(ToString::to_string).collect();
    assert_eq!(texts, [ABC_SHA256, EMPTY_SHA256, ABC_SHA512]);
    let hashed: std::collections::HashSet<Digest> = set.into_iter().collect();
    assert!(hashed.contains(&Digest::sha256_of(b"")));
}
