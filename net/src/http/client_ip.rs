//! The client's IP address as an extractor, by the rule of `celaest_protocol::client_ip`: the
//! connection's peer, or — when the peer is a trusted proxy (loopback plus the configured CIDRs)
//! — the nearest untrusted hop of `X-Forwarded-For`, read from the right so a client cannot forge
//! its way past the proxies. This address is what takes an IP slot at central and at the edge.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{Extensions, HeaderMap, request::Parts},
};
use ipnetwork::IpNetwork;

/// A state that knows which peers' `X-Forwarded-For` to believe.
pub trait TrustedProxies {
    /// The trusted proxies' networks (loopback included by configuration).
    fn trusted_proxies(&self) -> &[IpNetwork];
}

/// The address the request came from, after trusted proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl<S> FromRequestParts<S> for ClientIp
where
    S: TrustedProxies + Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(client_ip(parts, state.trusted_proxies())))
    }
}

/// Resolves the client address of a request (unspecified when the server has no peer info).
pub fn client_ip(parts: &Parts, trusted: &[IpNetwork]) -> IpAddr {
    client_ip_of(&parts.extensions, &parts.headers, trusted)
}

/// [`client_ip`] from a request's extensions and headers.
pub fn client_ip_of(extensions: &Extensions, headers: &HeaderMap, trusted: &[IpNetwork]) -> IpAddr {
    // Unspecified when served without peer information (never in production).
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(addr)| addr.ip());
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    celaest_protocol::client_ip::resolve(peer, forwarded, |ip| {
        trusted.iter().any(|net| net.contains(ip))
    })
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    fn parts(peer: &str, forwarded: Option<&str>) -> Parts {
        let mut request = Request::builder();
        if let Some(hops) = forwarded {
            request = request.header("x-forwarded-for", hops);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        parts
            .extensions
            .insert(ConnectInfo(SocketAddr::new(peer.parse().unwrap(), 40_000)));
        parts
    }

    fn loopback() -> Vec<IpNetwork> {
        vec!["127.0.0.0/8".parse().unwrap()]
    }

    #[test]
    fn a_trusted_peer_forwards_the_nearest_untrusted_hop() {
        let forwarded = parts("127.0.0.1", Some("6.6.6.6, 198.51.100.7"));
        assert_eq!(
            client_ip(&forwarded, &loopback()),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let direct = parts("203.0.113.9", Some("1.2.3.4"));
        assert_eq!(
            client_ip(&direct, &loopback()),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn without_peer_information_the_address_is_unspecified() {
        let (parts, ()) = Request::builder().body(()).unwrap().into_parts();
        assert_eq!(client_ip(&parts, &loopback()), IpAddr::from([0, 0, 0, 0]));
    }
}
