//! Properties: every generated valid reference survives print-and-parse, and
//! no input whatsoever makes a parser panic.

use ociref::{Digest, Platform, Reference};
use proptest::prelude::*;

fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,6}((\\.|_|__|-{1,3})[a-z0-9]{1,6}){0,2}"
}

fn domain() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        "[a-z0-9]{1,8}(\\.[a-z0-9]{1,8}){1,2}".prop_map(Some),
        Just(Some("localhost".to_owned())),
        (1u16..65535).prop_map(|port| Some(format!("localhost:{port}"))),
        (1u16..65535).prop_map(|port| Some(format!("127.0.0.1:{port}"))),
        (1u16..65535).prop_map(|port| Some(format!("[::1]:{port}"))),
    ]
}

fn reference_text() -> impl Strategy<Value = String> {
    (
        domain(),
        proptest::collection::vec(component(), 1..4),
        proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        proptest::option::of("[0-9a-f]{64}"),
    )
        .prop_map(|(domain, mut path, tag, hex)| {
            let mut text = match domain {
                Some(domain) => format!("{domain}/{}", path.join("/")),
                None => {
                    // Without a registry, a first component with a dot would
                    // be read as one (docker's rule): keep it dot-free.
                    path[0] = path[0].replace('.', "-");
                    path.join("/")
                }
            };
            if let Some(tag) = tag {
                text.push(':');
                text.push_str(&tag);
            }
            if let Some(hex) = hex {
                text.push_str("@sha256:");
                text.push_str(&hex);
            }
            text
        })
}

proptest! {
    #[test]
    fn display_parses_back_to_the_same_reference(text in reference_text()) {
        let parsed: Reference = match text.parse() {
            Ok(parsed) => parsed,
            // A 64-hex single component is refused by design.
            Err(err) => { prop_assert!(err.to_string().contains("64-character")); return Ok(()); }
        };
        let shown = parsed.to_string();
        let again: Reference = shown.parse().expect("display output parses");
        prop_assert_eq!(&again, &parsed);
        prop_assert_eq!(again.to_string(), shown);
        let familiar: Reference = parsed.familiar().parse().expect("familiar form parses");
        prop_assert_eq!(familiar, parsed);
    }

    #[test]
    fn arbitrary_strings_never_panic(text in "\\PC{0,80}") {
        let _ = text.parse::<Reference>();
        let _ = text.parse::<Digest>();
        let _ = text.parse::<Platform>();
    }

    #[test]
    fn arbitrary_ascii_never_panics(text in "[ -~]{0,120}") {
        if let Ok(reference) = text.parse::<Reference>() {
            prop_assert_eq!(reference.to_string().parse::<Reference>().expect("reparses"), reference);
        }
        if let Ok(platform) = text.parse::<Platform>() {
            prop_assert_eq!(platform.to_string().parse::<Platform>().expect("reparses"), platform);
        }
    }
}
