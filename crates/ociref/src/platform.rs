//! Platforms `os/arch[/variant]`, normalized, and the one rule used
//! everywhere to pick a platform's manifest from an index.

use crate::error::Error;
use std::fmt;
use std::str::FromStr;

/// A normalized platform.
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

impl Platform {
    /// A platform from its parts, normalized (`x86_64` → `amd64`, `aarch64`
    /// → `arm64/v8`, `armhf` → `arm/v7`, …).
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Result<Platform, Error> {
        let input = match variant {
            Some(v) => format!("{os}/{architecture}/{v}"),
            None => format!("{os}/{architecture}"),
        };
        normalize(os, architecture, variant)
            .map_err(|reason| Error::InvalidPlatform { input, reason })
    }

    /// The platform this program runs on.
    pub fn host() -> Platform {
        normalize(std::env::consts::OS, std::env::consts::ARCH, None).unwrap_or_else(|_| Platform {
            os: std::env::consts::OS.to_owned(),
            architecture: std::env::consts::ARCH.to_owned(),
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

    /// The variant, e.g. `v8` (always set for arm64), `v7`.
    pub fn variant(&self) -> Option<&str> {
        self.variant.as_deref()
    }

    /// How well a candidate (from an index entry) serves this platform:
    /// `Some(0)` for an exact match, a larger number for a compatible
    /// fallback (an `arm/v7` host runs `v6` and `v5` images, in that order of
    /// preference), `None` when it cannot run. A candidate that cannot be
    /// normalized never matches.
    pub fn match_rank(&self, os: &str, architecture: &str, variant: Option<&str>) -> Option<u32> {
        let candidate = normalize(os, architecture, variant).ok()?;
        if candidate.os != self.os || candidate.architecture != self.architecture {
            return None;
        }
        match (self.variant.as_deref(), candidate.variant.as_deref()) {
            (wanted, offered) if wanted == offered => Some(0),
            (None, Some(_)) => Some(1),
            (Some(wanted), Some(offered)) if self.architecture == "arm" => {
                let wanted = arm_level(wanted)?;
                let offered = arm_level(offered)?;
                (offered <= wanted).then(|| wanted - offered)
            }
            (Some(_), None) => Some(10),
            _ => None,
        }
    }

    /// Whether a candidate can serve this platform at all.
    pub fn matches(&self, other: &Platform) -> bool {
        self.match_rank(&other.os, &other.architecture, other.variant.as_deref())
            .is_some()
    }

    /// Picks the best of `candidates` for this platform (lowest rank, first
    /// one on ties), each given as `(os, architecture, variant)`.
    pub fn best_match<'a, T>(
        &self,
        candidates: impl IntoIterator<Item = &'a T>,
        parts: impl Fn(&T) -> Option<(String, String, Option<String>)>,
    ) -> Option<&'a T>
    where
        T: 'a,
    {
        candidates
            .into_iter()
            .filter_map(|candidate| {
                let (os, arch, variant) = parts(candidate)?;
                let rank = self.match_rank(&os, &arch, variant.as_deref())?;
                Some((rank, candidate))
            })
            .min_by_key(|(rank, _)| *rank)
            .map(|(_, candidate)| candidate)
    }
}

fn arm_level(variant: &str) -> Option<u32> {
    variant.strip_prefix('v')?.parse().ok()
}

fn normalize(os: &str, architecture: &str, variant: Option<&str>) -> Result<Platform, String> {
    let os = os.to_ascii_lowercase();
    let os = match os.as_str() {
        "macos" | "osx" => "darwin".to_owned(),
        _ => os,
    };
    check_part("os", &os)?;
    let arch = architecture.to_ascii_lowercase();
    let variant = variant.map(str::to_ascii_lowercase);
    let (architecture, variant) = match (arch.as_str(), variant.as_deref()) {
        ("x86_64" | "x86-64" | "amd64", None | Some("v1")) => ("amd64".to_owned(), None),
        ("x86_64" | "x86-64" | "amd64", Some(v)) => ("amd64".to_owned(), Some(v.to_owned())),
        ("aarch64" | "arm64", None | Some("v8" | "8")) => {
            ("arm64".to_owned(), Some("v8".to_owned()))
        }
        ("aarch64" | "arm64", Some(v)) => ("arm64".to_owned(), Some(v.to_owned())),
        ("armhf", None) => ("arm".to_owned(), Some("v7".to_owned())),
        ("armel", None) => ("arm".to_owned(), Some("v6".to_owned())),
        ("arm", None) => ("arm".to_owned(), Some("v7".to_owned())),
        ("arm", Some(v @ ("5" | "6" | "7" | "8"))) => ("arm".to_owned(), Some(format!("v{v}"))),
        ("arm", Some(v)) => ("arm".to_owned(), Some(v.to_owned())),
        ("i386" | "i486" | "i586" | "i686" | "x86" | "386", v) => {
            ("386".to_owned(), v.map(str::to_owned))
        }
        (other, v) => (other.to_owned(), v.map(str::to_owned)),
    };
    check_part("architecture", &architecture)?;
    if let Some(variant) = &variant {
        check_part("variant", variant)?;
    }
    Ok(Platform {
        os,
        architecture,
        variant,
    })
}

fn check_part(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("empty {what}"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(format!(
            "{what} {value:?} may only contain letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

impl FromStr for Platform {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidPlatform {
            input: input.to_owned(),
            reason,
        };
        let parts: Vec<&str> = input.split('/').collect();
        match parts.as_slice() {
            [os, arch] => normalize(os, arch, None),
            [os, arch, variant] => normalize(os, arch, Some(variant)),
            _ => Err("expected os/arch or os/arch/variant".to_owned()),
        }
        .map_err(invalid)
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
