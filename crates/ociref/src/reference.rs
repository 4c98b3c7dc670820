//! Image references: `[registry/]repository[:tag][@digest]`, parsed and
//! normalized as docker does.

use crate::digest::Digest;
use crate::error::{Error, ReferenceReason};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

/// Docker Hub's canonical registry name.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// The tag used when a reference names neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
/// Longest allowed full name (`registry/repository`), as in the
/// distribution reference grammar.
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// Longest allowed tag.
pub const TAG_LENGTH_MAX: usize = 128;

/// A normalized image reference: registry, repository, and a tag, a digest
/// or both.
///
/// Every value is valid: the only ways to build one are parsing and the
/// `with_*` methods, which check their input. `Display` prints the full
/// normalized form (`docker.io/library/alpine:3.20`,
/// `ghcr.io/o/r:v1@sha256:…`), which parses back to an equal value;
/// [`Reference::familiar`] prints docker's short form. Serde uses the
/// `Display` string and parses on the way in. The rules for ambiguous cases
/// are in [`crate::design`].
///
/// ```
/// let r: ociref::Reference = "alpine:3.20".parse()?;
/// assert_eq!(r.to_string(), "docker.io/library/alpine:3.20");
/// assert_eq!(r.familiar(), "alpine:3.20");
/// assert_eq!(r.registry(), "docker.io");
/// assert_eq!(r.repository(), "library/alpine");
/// assert_eq!(r.tag(), Some("3.20"));
///
/// let err = "Alpine".parse::<ociref::Reference>().unwrap_err();
/// assert_eq!(err.to_string(), "invalid reference \"Alpine\": repository must be lowercase");
/// # Ok::<(), ociref::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// The registry: `docker.io`, `ghcr.io`, `localhost:5000`, `[::1]:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path within the registry, e.g. `library/alpine`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any. `latest` when neither tag nor digest was given.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The host (and port) to send API requests to: Docker Hub's API lives
    /// on `registry-1.docker.io`.
    pub fn registry_api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// Whether the registry is on this machine (`localhost`, `127.0.0.0/8`,
    /// `[::1]`): such registries are reached over plain HTTP by default.
    pub fn is_loopback(&self) -> bool {
        is_loopback_registry(&self.registry)
    }

    /// The short form docker prints: `alpine:3.20`, `user/app:1`; other
    /// registries unchanged.
    pub fn familiar(&self) -> String {
        let mut out = self.familiar_name();
        self.push_suffix(&mut out);
        out
    }

    /// The short name docker prints, without tag or digest: Docker Hub's
    /// registry and `library/` are dropped, other registries are kept.
    ///
    /// The result always parses back to the same name: a Hub repository
    /// whose first component would read as a registry (`docker.io/foo.com/x`)
    /// keeps its `docker.io/`.
    pub fn familiar_name(&self) -> String {
        if self.registry != DOCKER_HUB {
            return self.name();
        }
        let short = match self.repository.strip_prefix("library/") {
            Some(rest) if !rest.contains('/') => rest,
            _ => self.repository.as_str(),
        };
        match short.split_once('/') {
            Some((first, _)) if looks_like_registry(first) => self.name(),
            _ => short.to_owned(),
        }
    }

    /// The same repository with tag `tag` and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, Error> {
        check_tag(tag).map_err(|reason| Error::InvalidReference {
            input: format!("{}:{tag}", self.name()),
            reason,
        })?;
        Ok(Reference {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same reference pinned to `digest` (the tag, if any, is kept for
    /// display; requests use the digest).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same repository pinned to `digest`, without a tag.
    pub fn by_digest_only(&self, digest: Digest) -> Reference {
        Reference {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    fn push_suffix(&self, out: &mut String) {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest.as_str());
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.name();
        self.push_suffix(&mut out);
        f.write_str(&out)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self, Error> {
        parse(input).map_err(|reason| Error::InvalidReference {
            input: input.to_owned(),
            reason,
        })
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether a registry `host[:port]` is a loopback host: `localhost`, an
/// address in `127.0.0.0/8`, or `[::1]` (also written as the IPv4-mapped
/// `[::ffff:127.x.y.z]`), with any port.
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => registry.rsplit_once(':').map_or(registry, |(host, _)| host),
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

fn parse(input: &str) -> Result<Reference, ReferenceReason> {
    if input.is_empty() {
        return Err(ReferenceReason::Empty);
    }
    if let Some(bad) = input.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(ReferenceReason::InvalidCharacter(bad));
    }
    if input.len() == 64 && input.bytes().all(is_lower_alnum_hex) {
        return Err(ReferenceReason::HexRepository);
    }
    let (name_and_tag, digest) = match input.split_once('@') {
        Some((before, text)) => {
            let digest = Digest::parse_text(text).map_err(ReferenceReason::Digest)?;
            (before, Some(digest))
        }
        None => (input, None),
    };
    // A tag is a `:` after the last `/`; a `:` before it belongs to a port.
    let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_and_tag[last_slash..].find(':') {
        Some(i) => {
            let colon = last_slash + i;
            (&name_and_tag[..colon], Some(&name_and_tag[colon + 1..]))
        }
        None => (name_and_tag, None),
    };
    if name.is_empty() {
        return Err(ReferenceReason::EmptyName);
    }
    let (registry, repository) = split_registry(name)?;
    check_repository(&repository)?;
    let length = registry.len() + 1 + repository.len();
    if length > NAME_TOTAL_LENGTH_MAX {
        return Err(ReferenceReason::NameTooLong { length });
    }
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    let tag = match (tag, &digest) {
        (Some(tag), _) => Some(tag.to_owned()),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_TAG.to_owned()),
    };
    Ok(Reference {
        registry,
        repository,
        tag,
        digest,
    })
}

fn is_lower_alnum_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// Whether the first component of a name is a registry, by docker's rule:
/// it contains `.` or `:`, or is `localhost`.
fn looks_like_registry(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost"
}

/// Splits off and normalizes the registry; names without one are on Docker
/// Hub, where one-component repositories live under `library/`.
fn split_registry(name: &str) -> Result<(String, String), ReferenceReason> {
    let (registry, remainder) = match name.split_once('/') {
        Some((first, rest)) if looks_like_registry(first) => {
            check_registry(first)?;
            (normalize_registry(first), rest)
        }
        _ => (DOCKER_HUB.to_owned(), name),
    };
    let repository = if registry == DOCKER_HUB && !remainder.contains('/') {
        format!("library/{remainder}")
    } else {
        remainder.to_owned()
    };
    Ok((registry, repository))
}

/// Lowercase (host names are case-insensitive), and Docker Hub's aliases
/// become `docker.io`.
fn normalize_registry(registry: &str) -> String {
    let registry = registry.to_ascii_lowercase();
    match registry.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
        _ => registry,
    }
}

/// `host[:port]`, host a domain name, an IPv4 address or `[IPv6]`.
fn check_registry(registry: &str) -> Result<(), ReferenceReason> {
    if let Some(rest) = registry.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or(ReferenceReason::UnterminatedIpv6)?;
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err(ReferenceReason::InvalidIpv6 {
                address: inside.to_owned(),
            });
        }
        if after.is_empty() {
            return Ok(());
        }
        let port = after
            .strip_prefix(':')
            .ok_or(ReferenceReason::TextAfterIpv6)?;
        return check_port(port);
    }
    let (host, port) = match registry.split_once(':') {
        Some((_, port)) if port.contains(':') => return Err(ReferenceReason::UnbracketedIpv6),
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    if host.is_empty() {
        return Err(ReferenceReason::EmptyHost);
    }
    if !host.split('.').all(is_host_label) {
        return Err(ReferenceReason::InvalidHost {
            host: host.to_owned(),
        });
    }
    match port {
        Some(port) => check_port(port),
        None => Ok(()),
    }
}

/// `[A-Za-z0-9]` or `[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]`.
fn is_host_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
}

/// Decimal digits naming a port that exists (0 to 65535).
fn check_port(port: &str) -> Result<(), ReferenceReason> {
    // Digits only: `u16::from_str` would also take a leading `+`.
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.parse::<u16>().is_err()
    {
        return Err(ReferenceReason::InvalidPort {
            port: port.to_owned(),
        });
    }
    Ok(())
}

/// Path components `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, joined by `/`.
fn check_repository(repository: &str) -> Result<(), ReferenceReason> {
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReferenceReason::Uppercase);
    }
    repository.split('/').try_for_each(check_path_component)
}

fn check_path_component(component: &str) -> Result<(), ReferenceReason> {
    let is_alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return Err(ReferenceReason::EmptyPathComponent);
    };
    if !is_alnum(first) || !is_alnum(last) {
        return Err(ReferenceReason::PathComponentEdge {
            component: component.to_owned(),
        });
    }
    // Runs of non-alphanumerics between alphanumerics are the separators.
    for separator in component.split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        if separator.is_empty() {
            continue;
        }
        if let Some(character) = separator.chars().find(|c| !matches!(c, '.' | '_' | '-')) {
            return Err(ReferenceReason::PathComponentCharacter {
                character,
                component: component.to_owned(),
            });
        }
        let valid = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !valid {
            return Err(ReferenceReason::InvalidSeparator {
                separator: separator.to_owned(),
                component: component.to_owned(),
            });
        }
    }
    Ok(())
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), ReferenceReason> {
    let Some(first) = tag.bytes().next() else {
        return Err(ReferenceReason::EmptyTag);
    };
    if tag.len() > TAG_LENGTH_MAX {
        return Err(ReferenceReason::TagTooLong { length: tag.len() });
    }
    if !(first.is_ascii_alphanumeric() || first == b'_') {
        return Err(ReferenceReason::TagStart);
    }
    if !tag
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Err(ReferenceReason::TagCharacter);
    }
    Ok(())
}
