//! The client's IP address: the extractor and resolver of `celaest_net::http::client_ip`,
//! shared with the edge, reading `TRUSTED_PROXIES` (plus loopback) from central's config.

pub use celaest_net::http::client_ip::{ClientIp, TrustedProxies, client_ip, client_ip_of};

use crate::state::AppState;

impl TrustedProxies for AppState {
    fn trusted_proxies(&self) -> &[ipnetwork::IpNetwork] {
        &self.config.http.trusted_proxies
    }
}
