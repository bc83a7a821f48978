//! The client's IP address: the extractor of `celaest_net::http::client_ip`, shared with central,
//! reading `EDGE_TRUSTED_PROXIES` (plus loopback) from the edge's config. This address is what
//! takes an IP slot; the body's `ip_address` cannot choose it.

pub use celaest_net::http::client_ip::ClientIp;
use celaest_net::http::client_ip::TrustedProxies;
use ipnetwork::IpNetwork;

use crate::EdgeState;

impl TrustedProxies for EdgeState {
    fn trusted_proxies(&self) -> &[IpNetwork] {
        &self.config.trusted_proxies
    }
}
