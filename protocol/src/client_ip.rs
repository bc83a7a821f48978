//! Which address a request comes from — the same rule at central and at the edge, since it
//! decides which IP slot a validation takes.
//!
//! The connection's peer, unless the peer is a trusted proxy: then the nearest untrusted hop of
//! `X-Forwarded-For`, read from the right so a client cannot forge its way past the proxies the
//! operator runs. IPv4-mapped IPv6 addresses count as the IPv4 address they carry.

use std::net::IpAddr;

/// Resolves the client of a request from its `peer` and its `X-Forwarded-For` header values.
pub fn resolve<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    is_trusted: impl Fn(IpAddr) -> bool,
) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = forwarded_for
        .into_iter()
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect();
    hops.iter()
        .rev()
        .copied()
        .find(|ip| !is_trusted(*ip))
        .or_else(|| hops.first().copied())
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => v4.is_loopback() || v4.octets()[0] == 10,
            IpAddr::V6(v6) => v6.is_loopback(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        assert_eq!(
            resolve(ip("203.0.113.9"), ["1.2.3.4"], trusted),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_hop_counts() {
        assert_eq!(
            resolve(
                ip("127.0.0.1"),
                ["6.6.6.6, 198.51.100.7", "10.1.2.3"],
                trusted
            ),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn a_trusted_peer_without_forwarding_is_the_client() {
        assert_eq!(resolve(ip("127.0.0.1"), [], trusted), ip("127.0.0.1"));
        assert_eq!(
            resolve(ip("127.0.0.1"), ["garbage"], trusted),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn ipv4_mapped_addresses_are_their_ipv4() {
        assert_eq!(
            resolve(ip("::ffff:203.0.113.9"), [], trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            resolve(ip("::1"), ["::ffff:198.51.100.1"], trusted),
            ip("198.51.100.1")
        );
    }
}
