//! Platforms `os/arch[/variant]`, normalized, and the one rule used
//! everywhere to pick a platform's manifest from an index.

use crate::error::{Error, PlatformReason};
use std::fmt;
use std::str::FromStr;

/// A normalized platform: `os/architecture[/variant]` in OCI terms.
///
/// Only parsing and [`Platform::new`] build one, and both normalize, so equal
/// platforms compare equal: `linux/aarch64`, `linux/arm64` and
/// `linux/arm64/v8` are one value. `Display` prints the normalized form,
/// with arm64's default variant spelled out (`linux/arm64/v8`), so what it
/// prints parses back to the same value and shows exactly what is compared.
///
/// ```
/// let p: ociref::Platform = "linux/aarch64".parse()?;
/// assert_eq!(p.to_string(), "linux/arm64/v8");
/// assert_eq!(p, "linux/arm64/v8".parse()?);
/// # Ok::<(), ociref::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

/// A candidate's platform as borrowed parts: `(os, architecture, variant)`.
pub type PlatformParts<'a> = (&'a str, &'a str, Option<&'a str>);

impl Platform {
    /// A platform from its parts, normalized (`x86_64` → `amd64`, `aarch64`
    /// → `arm64/v8`, `armhf` → `arm/v7`, …).
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Result<Platform, Error> {
        normalize(os, architecture, variant).map_err(|reason| Error::InvalidPlatform {
            input: match variant {
                Some(v) => format!("{os}/{architecture}/{v}"),
                None => format!("{os}/{architecture}"),
            },
            reason,
        })
    }

    /// The platform this program was built for, from
    /// [`std::env::consts`], in OCI terms (`x86_64` → `amd64`, `aarch64` →
    /// `arm64/v8`, `powerpc64` little-endian → `ppc64le`, …). 32-bit `arm`
    /// is taken as `arm/v7`, as containerd does.
    pub fn host() -> Platform {
        let little = cfg!(target_endian = "little");
        let architecture = match std::env::consts::ARCH {
            "powerpc64" if little => "ppc64le",
            "powerpc64" => "ppc64",
            "powerpc" => "ppc",
            "mips64" if little => "mips64le",
            "mips" if little => "mipsle",
            "loongarch64" => "loong64",
            other => other,
        };
        normalize(std::env::consts::OS, architecture, None).unwrap_or_else(|_| Platform {
            os: std::env::consts::OS.to_owned(),
            architecture: architecture.to_owned(),
            variant: None,
        })
    }

    /// The operating system, e.g. `linux`.
    pub fn os(&self) -> &str {
        &self.os
    }

    /// The architecture, e.g. `amd64`, `arm64`, `arm`.
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// The variant, e.g. `v8` (always set for arm64), `v7` (always set for
    /// arm); `None` for `amd64` baseline (`v1`).
    pub fn variant(&self) -> Option<&str> {
        self.variant.as_deref()
    }

    /// How well a candidate (from an index entry) serves this platform:
    /// `Some(0)` for an exact match, a larger number for a worse but
    /// compatible fallback, `None` when it cannot run here. The candidate is
    /// normalized first; one that cannot be never matches.
    ///
    /// Fallbacks, within one os and architecture only:
    /// - `arm`: an older variant (`v7` accepts `v6`, then `v5`);
    /// - `arm64`: an older variant (`v9` accepts `v8.x`, then `v8`);
    /// - `amd64`: a lower level (`v3` accepts `v2`, then baseline);
    /// - other architectures: a candidate without variant serves any
    ///   variant, last.
    ///
    /// A newer variant never matches: its code may not run here.
    ///
    /// ```
    /// let wanted: ociref::Platform = "linux/arm/v7".parse()?;
    /// assert_eq!(wanted.match_rank("linux", "arm", Some("v7")), Some(0));
    /// let v6 = wanted.match_rank("linux", "arm", Some("v6")).unwrap();
    /// let v5 = wanted.match_rank("linux", "arm", Some("v5")).unwrap();
    /// assert!(0 < v6 && v6 < v5);
    /// assert_eq!(wanted.match_rank("linux", "arm", Some("v8")), None);
    /// assert_eq!(wanted.match_rank("linux", "arm64", None), None);
    /// # Ok::<(), ociref::Error>(())
    /// ```
    pub fn match_rank(&self, os: &str, architecture: &str, variant: Option<&str>) -> Option<u32> {
        let candidate = normalize(os, architecture, variant).ok()?;
        self.rank(&candidate)
    }

    /// [`Platform::match_rank`] for a candidate already parsed.
    pub fn rank(&self, candidate: &Platform) -> Option<u32> {
        if candidate.os != self.os || candidate.architecture != self.architecture {
            return None;
        }
        let wanted = self.variant.as_deref();
        let offered = candidate.variant.as_deref();
        if wanted == offered {
            return Some(0);
        }
        let arch = self.architecture.as_str();
        if let (Some(wanted), Some(offered)) = (level(arch, wanted), level(arch, offered)) {
            return (offered <= wanted).then(|| wanted - offered);
        }
        match (wanted, offered) {
            (Some(_), None) => Some(UNVARIANT_RANK),
            _ => None,
        }
    }

    /// Whether a candidate can run here at all (any rank). `linux/arm64`
    /// and `linux/arm64/v8` are the same platform and match each other.
    pub fn matches(&self, candidate: &Platform) -> bool {
        self.rank(candidate).is_some()
    }

    /// Picks the best of `candidates` for this platform: the lowest
    /// [`rank`](Platform::match_rank), the first one on ties. `parts` gives
    /// each candidate's `(os, architecture, variant)`, or `None` for entries
    /// that name no platform. This is the one resolver every crate uses to
    /// choose a manifest from an index.
    ///
    /// ```
    /// struct Entry { os: String, arch: String, variant: Option<String> }
    /// let entry = |os: &str, arch: &str, variant: Option<&str>| Entry {
    ///     os: os.into(), arch: arch.into(), variant: variant.map(Into::into),
    /// };
    /// let index = [entry("linux", "arm", Some("v5")), entry("linux", "arm", Some("v6"))];
    /// let wanted: ociref::Platform = "linux/arm/v7".parse()?;
    /// let best = wanted.best_match(&index, |e| Some((&e.os, &e.arch, e.variant.as_deref())));
    /// assert_eq!(best.and_then(|e| e.variant.as_deref()), Some("v6"));
    /// # Ok::<(), ociref::Error>(())
    /// ```
    pub fn best_match<'c, T, F>(
        &self,
        candidates: impl IntoIterator<Item = &'c T>,
        parts: F,
    ) -> Option<&'c T>
    where
        T: 'c,
        F: for<'x> Fn(&'x T) -> Option<PlatformParts<'x>>,
    {
        let mut best: Option<(u32, &'c T)> = None;
        for candidate in candidates {
            let Some((os, arch, variant)) = parts(candidate) else {
                continue;
            };
            let Some(rank) = self.match_rank(os, arch, variant) else {
                continue;
            };
            if best.is_none_or(|(best_rank, _)| rank < best_rank) {
                best = Some((rank, candidate));
            }
        }
        best.map(|(_, candidate)| candidate)
    }
}

/// Rank of a candidate without variant for a wanted variant of an
/// architecture whose variants have no order: after every ordered fallback.
const UNVARIANT_RANK: u32 = 10_000;

/// The order of variants for architectures where an older variant runs on
/// a newer CPU: `major * 100 + minor` (`v8.2` → 802); amd64 baseline is 100.
fn level(architecture: &str, variant: Option<&str>) -> Option<u32> {
    let ordered = matches!(architecture, "arm" | "arm64" | "amd64");
    if !ordered {
        return None;
    }
    let Some(variant) = variant else {
        return (architecture == "amd64").then_some(100);
    };
    let number = variant.strip_prefix('v')?;
    let (major, minor) = number.split_once('.').unwrap_or((number, "0"));
    let all_digits =
        |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(major) || !all_digits(minor) {
        return None;
    }
    Some(major.parse::<u32>().ok()? * 100 + minor.parse::<u32>().ok()?)
}

fn normalize(
    os: &str,
    architecture: &str,
    variant: Option<&str>,
) -> Result<Platform, PlatformReason> {
    check_part("os", os)?;
    check_part("architecture", architecture)?;
    if let Some(variant) = variant {
        check_part("variant", variant)?;
    }
    let os = os.to_ascii_lowercase();
    let os = match os.as_str() {
        "macos" | "osx" => "darwin".to_owned(),
        _ => os,
    };
    let arch = architecture.to_ascii_lowercase();
    let variant = variant.map(str::to_ascii_lowercase);
    let owned = |v: Option<&str>| v.map(str::to_owned);
    let (architecture, variant) = match (arch.as_str(), variant.as_deref()) {
        ("x86_64" | "x86-64" | "amd64", None | Some("v1")) => ("amd64", None),
        ("x86_64" | "x86-64" | "amd64", v) => ("amd64", owned(v)),
        ("aarch64" | "arm64", None | Some("v8" | "8")) => ("arm64", Some("v8".to_owned())),
        ("aarch64" | "arm64", v) => ("arm64", owned(v)),
        ("armhf", None) => ("arm", Some("v7".to_owned())),
        ("armel", None) => ("arm", Some("v6".to_owned())),
        ("arm", None) => ("arm", Some("v7".to_owned())),
        ("arm", Some(v @ ("5" | "6" | "7" | "8"))) => ("arm", Some(format!("v{v}"))),
        ("arm", v) => ("arm", owned(v)),
        ("i386" | "i486" | "i586" | "i686" | "x86" | "386", v) => ("386", owned(v)),
        ("ppc64el", v) => ("ppc64le", owned(v)),
        ("loongarch64", v) => ("loong64", owned(v)),
        (other, v) => (other, owned(v)),
    };
    Ok(Platform {
        os,
        architecture: architecture.to_owned(),
        variant,
    })
}

fn check_part(part: &'static str, value: &str) -> Result<(), PlatformReason> {
    if value.is_empty() {
        return Err(PlatformReason::EmptyPart { part });
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(PlatformReason::InvalidPart {
            part,
            value: value.to_owned(),
        });
    }
    Ok(())
}

impl FromStr for Platform {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self, Error> {
        let mut parts = input.split('/');
        let result = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(os), Some(arch), variant, None) => normalize(os, arch, variant),
            _ => Err(PlatformReason::Shape),
        };
        result.map_err(|reason| Error::InvalidPlatform {
            input: input.to_owned(),
            reason,
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Platform({self})")
    }
}

impl serde::Serialize for Platform {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Platform {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
