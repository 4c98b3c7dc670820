//! The bypass list (`no_proxy`): parsing and matching.

use std::net::IpAddr;

/// The hosts that bypass the proxy (`no_proxy`); see [`crate::proxy`] for
/// the entry forms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NoProxy {
    everything: bool,
    entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    pattern: Pattern,
    port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    Domain(String),
    Cidr(IpAddr, u8),
}

impl NoProxy {
    /// Parses a `no_proxy` list. Entries that are none of the forms listed
    /// in [`crate::proxy`] are skipped (as curl does).
    pub fn parse(list: &str) -> Self {
        let mut no_proxy = NoProxy::default();
        for item in list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|item| !item.is_empty())
        {
            if item == "*" {
                no_proxy.everything = true;
            } else if let Some(entry) = Entry::parse(&item.to_ascii_lowercase()) {
                no_proxy.entries.push(entry);
            } else {
                tracing::debug!(
                    entry = item,
                    "no_proxy entry skipped: not a host, address or CIDR block"
                );
            }
        }
        no_proxy
    }

    /// Whether a request to `host` (as written in a URL: a name, an IPv4
    /// address or a bracketed IPv6 address) on `port` bypasses the proxy.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.everything {
            return true;
        }
        let host = host.to_ascii_lowercase();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = host.strip_suffix('.').unwrap_or(host);
        let ip = host.parse::<IpAddr>().ok();
        self.entries.iter().any(|entry| {
            entry.port.is_none_or(|p| p == port)
                && match &entry.pattern {
                    Pattern::Domain(domain) => {
                        host == domain
                            || host
                                .strip_suffix(domain.as_str())
                                .is_some_and(|rest| rest.ends_with('.'))
                    }
                    Pattern::Cidr(network, bits) => {
                        ip.is_some_and(|ip| in_block(ip, *network, *bits))
                    }
                }
        })
    }
}

impl Entry {
    fn parse(item: &str) -> Option<Entry> {
        // `[v6]`, `[v6]:port`, `[v6/bits]`.
        if let Some(rest) = item.strip_prefix('[') {
            let (inside, after) = rest.split_once(']')?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':')?.parse().ok()?),
            };
            return Some(Entry {
                pattern: address_pattern(inside)?,
                port,
            });
        }
        // A bare IPv6 address or block has several colons and no port.
        if item.matches(':').count() > 1 {
            return Some(Entry {
                pattern: address_pattern(item)?,
                port: None,
            });
        }
        let (name, port) = match item.split_once(':') {
            Some((name, port)) => (name, Some(port.parse().ok()?)),
            None => (item, None),
        };
        let looks_numeric = name
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '/');
        let pattern = if looks_numeric && name.chars().any(|c| c.is_ascii_digit()) {
            address_pattern(name)?
        } else {
            let name = name.strip_prefix('.').unwrap_or(name);
            let name = name.strip_suffix('.').unwrap_or(name);
            if name.is_empty() || name.contains('/') {
                return None;
            }
            Pattern::Domain(name.to_owned())
        };
        Some(Entry { pattern, port })
    }
}

/// An address (a block of one) or a CIDR block.
fn address_pattern(text: &str) -> Option<Pattern> {
    let (address, bits) = match text.split_once('/') {
        Some((address, bits)) => (address, Some(bits.parse::<u8>().ok()?)),
        None => (text, None),
    };
    let address: IpAddr = address.parse().ok()?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some(Pattern::Cidr(address, bits))
}

fn in_block(ip: IpAddr, network: IpAddr, bits: u8) -> bool {
    let (ip, network, width) = match (ip, network) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    if bits == 0 {
        return true;
    }
    let shift = width - u32::from(bits);
    (ip >> shift) == (network >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_forms() {
        let list = NoProxy::parse(
            "Example.COM .corp.io,10.0.0.0/8 ,192.168.1.7 fd00::/8, [::1]:5000, reg.internal:5000 127.0.0.1:6000",
        );
        for (host, port, bypass) in [
            ("example.com", 443, true),
            ("reg.EXAMPLE.com", 443, true),
            ("badexample.com", 443, false),
            ("corp.io", 80, true),
            ("a.b.corp.io", 80, true),
            ("10.200.3.4", 5000, true),
            ("11.0.0.1", 5000, false),
            ("192.168.1.7", 1, true),
            ("192.168.1.8", 1, false),
            ("[fd12::1]", 443, true),
            ("[fe80::1]", 443, false),
            ("[::1]", 5000, true),
            ("[::1]", 5001, false),
            ("reg.internal", 5000, true),
            ("reg.internal", 443, false),
            ("127.0.0.1", 6000, true),
            ("127.0.0.1", 5000, false),
            ("localhost", 5000, false),
        ] {
            assert_eq!(list.matches(host, port), bypass, "{host}:{port}");
        }
        assert!(NoProxy::parse("*").matches("anything.io", 1));
        assert!(NoProxy::parse("a.io, *").matches("b.io", 1));
        assert!(!NoProxy::parse("").matches("a.io", 1));
        assert!(NoProxy::parse("0.0.0.0/0").matches("8.8.8.8", 53));
        assert!(!NoProxy::parse("0.0.0.0/0").matches("[::2]", 53));
        assert!(NoProxy::parse("::/0").matches("[::2]", 53));
        // Malformed entries are skipped, the rest still apply.
        let list = NoProxy::parse("10.0.0.0/99, a.io:x, [::1, b.io");
        assert!(!list.matches("10.0.0.1", 1));
        assert!(list.matches("b.io", 1));
    }
}
