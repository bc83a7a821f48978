//! The client's IP address, by the rule of `celaest_protocol::client_ip` (shared with the edge):
//! the peer, or behind a trusted proxy (loopback plus `TRUSTED_PROXIES`) the nearest untrusted
//! hop of `X-Forwarded-For`.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRef, FromRequestParts},
    http::{HeaderMap, request::Parts},
};

use crate::state::AppState;

/// The address the request came from, after trusted proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl<S> FromRequestParts<S> for ClientIp
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        Ok(Self(client_ip(parts, &state.config.http.trusted_proxies)))
    }
}

/// Resolves the client address of a request (unspecified when the server has no peer info).
pub fn client_ip(parts: &Parts, trusted: &[ipnetwork::IpNetwork]) -> IpAddr {
    client_ip_of(&parts.extensions, &parts.headers, trusted)
}

/// [`client_ip`] from a request's extensions and headers.
pub fn client_ip_of(
    extensions: &axum::http::Extensions,
    headers: &HeaderMap,
    trusted: &[ipnetwork::IpNetwork],
) -> IpAddr {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(addr)| addr.ip());
    resolve(peer, headers, trusted)
}

fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnetwork::IpNetwork]) -> IpAddr {
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    celaest_protocol::client_ip::resolve(peer, forwarded, |ip| {
        trusted.iter().any(|net| net.contains(ip))
    })
}
