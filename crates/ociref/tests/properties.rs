//! Properties: every reference generated from the grammar survives
//! print-and-parse, and no input whatsoever makes a parser panic.

use ociref::{Digest, Platform, Reference};
use proptest::prelude::*;

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, short.
fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,6}((\\.|_|__|-{1,3})[a-z0-9]{1,6}){0,2}"
}

/// A first component that docker would not take for a registry: no `.`.
fn hub_first_component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,6}((_|__|-{1,3})[a-z0-9]{1,6}){0,2}"
}

fn port() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        any::<u16>().prop_map(|p| format!(":{p}"))
    ]
}

fn domain() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            "[a-zA-Z0-9]{1,8}(\\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?){1,2}",
            port()
        )
            .prop_map(|(host, port)| host + &port),
        port().prop_map(|port| format!("localhost{port}")),
        (any::<[u8; 4]>(), port())
            .prop_map(|(ip, port)| { format!("{}.{}.{}.{}{port}", ip[0], ip[1], ip[2], ip[3]) }),
        (any::<std::net::Ipv6Addr>(), port()).prop_map(|(ip, port)| format!("[{ip}]{port}")),
        prop::sample::select(vec!["docker.io", "index.docker.io", "registry-1.docker.io"])
            .prop_map(str::to_owned),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        (domain(), prop::collection::vec(component(), 1..4))
            .prop_map(|(domain, path)| format!("{domain}/{}", path.join("/"))),
        component(),
        (
            hub_first_component(),
            prop::collection::vec(component(), 1..3)
        )
            .prop_map(|(first, rest)| format!("{first}/{}", rest.join("/"))),
    ]
}

fn digest_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{64}".prop_map(|hex| format!("sha256:{hex}")),
        "[0-9a-f]{128}".prop_map(|hex| format!("sha512:{hex}")),
        "[a-z0-9]{1,5}([+._-][a-z0-9]{1,5}){0,2}:[a-zA-Z0-9=_-]{1,40}",
    ]
}

fn reference_text() -> impl Strategy<Value = String> {
    (
        name(),
        prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"),
        prop::option::of(digest_text()),
    )
        .prop_map(|(name, tag, digest)| {
            let mut text = name;
            if let Some(tag) = tag {
                text.push(':');
                text.push_str(&tag);
            }
            if let Some(digest) = digest {
                text.push('@');
                text.push_str(&digest);
            }
            text
        })
}

/// A valid reference with one character inserted or replaced anywhere.
fn mutated_reference_text() -> impl Strategy<Value = String> {
    (
        reference_text(),
        any::<prop::sample::Index>(),
        any::<char>(),
        any::<bool>(),
    )
        .prop_map(|(text, at, c, replace)| {
            let mut chars: Vec<char> = text.chars().collect();
            let i = at.index(chars.len() + 1);
            if replace && i < chars.len() {
                chars[i] = c;
            } else {
                chars.insert(i, c);
            }
            chars.into_iter().collect()
        })
}

fn assert_round_trip(parsed: &Reference) -> Result<(), TestCaseError> {
    let shown = parsed.to_string();
    let again: Reference = shown
        .parse()
        .map_err(|e| TestCaseError::fail(format!("{shown}: {e}")))?;
    prop_assert_eq!(&again, parsed);
    prop_assert_eq!(again.to_string(), shown);
    let familiar = parsed.familiar();
    let again: Reference = familiar
        .parse()
        .map_err(|e| TestCaseError::fail(format!("{familiar}: {e}")))?;
    prop_assert_eq!(&again, parsed);
    Ok(())
}

proptest! {
    #[test]
    fn generated_references_parse_and_print_back(text in reference_text()) {
        let parsed: Reference = text
            .parse()
            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
        assert_round_trip(&parsed)?;
    }

    #[test]
    fn mutated_references_never_panic_and_round_trip(text in mutated_reference_text()) {
        if let Ok(parsed) = text.parse::<Reference>() {
            assert_round_trip(&parsed)?;
        }
    }

    #[test]
    fn arbitrary_strings_never_panic(text in any::<String>()) {
        if let Ok(parsed) = text.parse::<Reference>() {
            assert_round_trip(&parsed)?;
        }
        if let Ok(digest) = text.parse::<Digest>() {
            prop_assert_eq!(digest.to_string(), text.clone());
        }
        if let Ok(platform) = text.parse::<Platform>() {
            prop_assert_eq!(platform.to_string().parse::<Platform>().ok(), Some(platform));
        }
    }

    #[test]
    fn arbitrary_ascii_never_panics(text in "[ -~]{0,120}") {
        if let Ok(parsed) = text.parse::<Reference>() {
            assert_round_trip(&parsed)?;
        }
        let _ = text.parse::<Digest>();
    }

    #[test]
    fn generated_digests_print_as_parsed(text in digest_text()) {
        let digest: Digest = text.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(digest.to_string(), text);
    }

    #[test]
    fn platforms_normalize_once(
        parts in prop::collection::vec("[a-zA-Z0-9_.-]{1,8}|arm|arm64|aarch64|amd64|x86_64|v[5-9]|[5-8]", 2..=3)
    ) {
        let text = parts.join("/");
        let platform: Platform = text.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let shown = platform.to_string();
        prop_assert_eq!(shown.parse::<Platform>().ok(), Some(platform));
    }
}
