//! The client's address behind trusted reverse proxies (`--trusted-proxies`).
//!
//! Every per-IP decision (rate limits, login, activation and bad-credential throttles)
//! reads the request's `ConnectInfo`, which the accept loop sets from [`client`]: the
//! socket peer, unless the peer is a trusted proxy, in which case the address comes from
//! `X-Forwarded-For`.
//!
//! Invariants:
//! - With no trusted proxies (the default) the header is ignored: the address is always
//!   the socket peer, so a client cannot choose its own address.
//! - `X-Forwarded-For` is read right to left (every instance of the header, in order), and
//!   the first address that is not a trusted proxy is the client: entries to its left
//!   were written by the client itself and are never believed.
//! - An entry that does not parse stops the walk, and the last trusted hop (the nearest
//!   proxy that vouched for what follows) stands for the client: a malformed header never
//!   lets a request pass as someone else.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

/// Networks whose connections may name the client in `X-Forwarded-For`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses addresses and networks: `10.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8`.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut networks = Vec::with_capacity(entries.len());
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            let (ip, prefix) = match entry.split_once('/') {
                Some((ip, prefix)) => (ip, Some(prefix)),
                None => (entry, None),
            };
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| format!("trusted proxy {entry:?} is not an IP address or network"))?;
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => bits,
                Some(p) => p.parse::<u8>().ok().filter(|p| *p <= bits).ok_or_else(|| {
                    format!("trusted proxy {entry:?}: the prefix must be 0 to {bits}")
                })?,
            };
            networks.push((ip, prefix));
        }
        Ok(TrustedProxies(networks))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is in one of the networks (an IPv4-mapped IPv6 address counts as its
    /// IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0
            .iter()
            .any(|&(network, prefix)| in_network(ip, network, prefix))
    }
}

/// The client's address for a request from `peer` with `headers`.
pub fn client(proxies: &TrustedProxies, peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
    if proxies.is_empty() || !proxies.contains(peer.ip()) {
        return peer;
    }
    let mut hop = peer.ip();
    let entries = headers
        .get_all("x-forwarded-for")
        .iter()
        .rev()
        .flat_map(|value| value.to_str().unwrap_or("\u{0}").rsplit(','));
    for entry in entries {
        let Some(ip) = forwarded_ip(entry.trim()) else {
            break;
        };
        hop = ip;
        if !proxies.contains(ip) {
            break;
        }
    }
    SocketAddr::new(hop, peer.port())
}

/// An `X-Forwarded-For` entry: an address, or an address with a port (`1.2.3.4:5`,
/// `[::1]:5`).
fn forwarded_ip(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(canonical)
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_network(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    match (ip, canonical(network)) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append("x-forwarded-for", v.parse().unwrap());
        }
        map
    }

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 4000)
    }

    #[test]
    fn networks_parse_and_match() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8", "192.168.1.7", "fd00::/8"]).unwrap();
        for inside in ["10.1.2.3", "192.168.1.7", "fd12::1", "::ffff:10.9.9.9"] {
            assert!(proxies.contains(inside.parse().unwrap()), "{inside}");
        }
        for outside in ["11.0.0.1", "192.168.1.8", "fe80::1", "::1"] {
            assert!(!proxies.contains(outside.parse().unwrap()), "{outside}");
        }
        assert!(TrustedProxies::parse(&["0.0.0.0/0"])
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        for bad in ["10.0.0.0/33", "proxy.local", "10.0.0.0/x", "::/129"] {
            assert!(TrustedProxies::parse(&[bad]).is_err(), "{bad}");
        }
        assert!(TrustedProxies::parse(&["", " "]).unwrap().is_empty());
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_peer() {
        let none = TrustedProxies::default();
        let forwarded = headers(&["203.0.113.9"]);
        assert_eq!(
            client(&none, peer("127.0.0.1"), &forwarded),
            peer("127.0.0.1")
        );
        let proxies = TrustedProxies::parse(&["127.0.0.1"]).unwrap();
        assert_eq!(
            client(&proxies, peer("198.51.100.1"), &forwarded),
            peer("198.51.100.1")
        );
        assert_eq!(
            client(&proxies, peer("127.0.0.1"), &forwarded),
            peer("203.0.113.9")
        );
        assert_eq!(
            client(&proxies, peer("127.0.0.1"), &HeaderMap::new()),
            peer("127.0.0.1")
        );
    }

    #[test]
    fn the_rightmost_untrusted_entry_is_the_client() {
        let proxies = TrustedProxies::parse(&["127.0.0.1", "10.0.0.0/8"]).unwrap();
        let local = peer("127.0.0.1");
        // The client wrote the first entry itself; the proxies appended the rest.
        let chain = headers(&["1.1.1.1, 203.0.113.9", "10.0.0.2"]);
        assert_eq!(client(&proxies, local, &chain), peer("203.0.113.9"));
        let with_ports = headers(&["203.0.113.9:5000, [2001:db8::1]:443"]);
        assert_eq!(client(&proxies, local, &with_ports), peer("2001:db8::1"));
        // Only proxies: the farthest one stands for the client.
        assert_eq!(
            client(&proxies, local, &headers(&["10.0.0.3, 10.0.0.2"])),
            peer("10.0.0.3")
        );
        // A malformed entry stops the walk at the last trusted hop.
        let garbage = headers(&["203.0.113.9, not-an-ip, 10.0.0.2"]);
        assert_eq!(client(&proxies, local, &garbage), peer("10.0.0.2"));
        assert_eq!(client(&proxies, local, &headers(&["unknown"])), local);
    }
}
