//! Feeds arbitrary bytes to the reference, digest and platform parsers: none
//! may panic, and whatever parses must print a form that parses back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ociref::{Digest, Platform, Reference};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(reference) = text.parse::<Reference>() {
        let shown = reference.to_string();
        let again: Reference = shown.parse().expect("display output parses");
        assert_eq!(again, reference);
        let familiar: Reference = reference.familiar().parse().expect("familiar output parses");
        assert_eq!(familiar, reference);
    }
    if let Ok(digest) = text.parse::<Digest>() {
        assert_eq!(digest.to_string(), text);
    }
    if let Ok(platform) = text.parse::<Platform>() {
        assert_eq!(platform.to_string().parse::<Platform>().ok(), Some(platform));
    }
});
