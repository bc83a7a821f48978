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
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    celaest_protocol::client_ip::resolve(peer, forwarded, |ip| {
        trusted.iter().any(|net| net.contains(ip))
    })
}
