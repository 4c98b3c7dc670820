//! Ages and sizes as people type them on the command line and in the
//! settings file (`7d`, `12h`; `10GiB`, `500MB`, `1.5G`, `4096`).

use std::time::Duration;

/// Parses a prune age such as `7d`, `12h`, `30m`, `45s` or `2w`.
pub(crate) fn age(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    number.checked_mul(seconds).map(Duration::from_secs)
}

/// Parses a byte size such as `10GiB`, `500MB`, `1.5G` or `4096`.
pub(crate) fn size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return None,
    };
    let bytes = number * multiplier as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then(|| bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_sizes_parse_with_units() {
        assert_eq!(age("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(age("90s"), Some(Duration::from_secs(90)));
        assert_eq!(age("2w"), Some(Duration::from_secs(2 * 604_800)));
        assert_eq!(age("7"), None);
        assert_eq!(age("d"), None);
        assert_eq!(age("7y"), None);
        assert_eq!(size("10GiB"), Some(10 << 30));
        assert_eq!(size("500MB"), Some(500_000_000));
        assert_eq!(size("1.5G"), Some(3 << 29));
        assert_eq!(size("4096"), Some(4096));
        assert_eq!(size("-1"), None);
        assert_eq!(size("12 parsecs"), None);
    }
}
