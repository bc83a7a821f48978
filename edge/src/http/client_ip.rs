//! The client's IP address, by central's rule: the connection's peer, or — when the peer is a
//! trusted proxy (loopback plus `EDGE_TRUSTED_PROXIES`) — the nearest untrusted address in
//! `X-Forwarded-For`, read from the right so a client cannot forge its way past our proxies.
//! This address is what takes an IP slot; the body's `ip_address` cannot choose it.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRef, FromRequestParts},
    http::{HeaderMap, request::Parts},
};
use ipnetwork::IpNetwork;

use crate::EdgeState;

/// The address the request came from, after trusted proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl<S> FromRequestParts<S> for ClientIp
where
    S: Send + Sync,
    EdgeState: FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = EdgeState::from_ref(state);
        // Unspecified when served without peer information (never in production).
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(addr)| addr.ip());
        Ok(Self(resolve(
            peer,
            &parts.headers,
            &state.config.trusted_proxies,
        )))
    }
}

fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNetwork]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
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

    fn trusted() -> Vec<IpNetwork> {
        vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ]
    }

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(resolve(peer, &headers("1.2.3.4"), &trusted()), peer);
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_hop_counts() {
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let h = headers("6.6.6.6, 198.51.100.7, 10.1.2.3");
        assert_eq!(
            resolve(peer, &h, &trusted()),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn a_trusted_peer_without_forwarding_is_the_client() {
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(resolve(peer, &HeaderMap::new(), &trusted()), peer);
        assert_eq!(resolve(peer, &headers("garbage"), &trusted()), peer);
    }

    #[test]
    fn an_ipv4_mapped_peer_is_its_ipv4_address() {
        let peer: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let h = headers("198.51.100.7");
        assert_eq!(
            resolve(peer, &h, &trusted()),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }
}
