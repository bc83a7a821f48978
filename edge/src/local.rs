//! What this edge alone knows about a license, beside central's state: the collision window of
//! the validations it answered (central is authoritative, from every edge's reports; this is the
//! early local signal), and the IP addresses it let through provisionally while central could not
//! be asked to bind them (`EDGE_OFFLINE_NEW_IPS=allow`).
//!
//! Kept apart from the [`crate::store::Store`] because validations write it: only licenses with
//! recent traffic have an entry, each behind its own mutex, so two validations contend only when
//! they are for the same license, and never with the replication writer.

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use celaest_protocol::{
    LicenseState,
    collision::{CollisionEpisode, CollisionWindow},
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Debug, Default)]
struct LocalLicense {
    window: CollisionWindow,
    /// Addresses answered valid without a bind since central went out of reach.
    provisional: Vec<IpAddr>,
}

/// Per-license local state, for licenses with recent traffic only.
#[derive(Default)]
pub struct LocalTracker {
    licenses: papaya::HashMap<Uuid, Mutex<LocalLicense>>,
}

impl std::fmt::Debug for LocalTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTracker")
            .field("licenses", &self.licenses.len())
            .finish()
    }
}

impl LocalTracker {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, license: Uuid, f: impl FnOnce(&mut LocalLicense) -> T) -> T {
        let licenses = self.licenses.pin();
        let entry = licenses.get_or_insert_with(license, || Mutex::new(LocalLicense::default()));
        let mut local = entry.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut local)
    }

    /// Records a validation of `license` from `ip` at `at`; `Some` when it opens a collision
    /// episode (two or more addresses within the window).
    pub fn observe(
        &self,
        license: Uuid,
        ip: IpAddr,
        at: DateTime<Utc>,
    ) -> Option<CollisionEpisode> {
        self.with(license, |local| local.window.observe(ip, at))
    }

    /// Lets `ip` use `state` without a bind, if a slot is still free counting the addresses
    /// already let through here. Returns the slots left, or `None` when there is none.
    pub fn admit_provisionally(&self, state: &LicenseState, ip: IpAddr) -> Option<u32> {
        let ip = ip.to_canonical();
        self.with(state.id, |local| {
            let known = local.provisional.contains(&ip);
            let taken = state.bound_ips.len() + local.provisional.len();
            let max = usize::try_from(state.max_ips).unwrap_or(usize::MAX);
            if !known {
                if taken >= max {
                    return None;
                }
                local.provisional.push(ip);
            }
            let taken = state.bound_ips.len() + local.provisional.len();
            Some(u32::try_from(max.saturating_sub(taken)).unwrap_or(u32::MAX))
        })
    }

    /// Forgets every provisional address: central is reachable again and binds from now on.
    pub fn clear_provisional(&self) {
        for (_, entry) in &self.licenses.pin() {
            entry
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .provisional
                .clear();
        }
    }

    /// Drops the entries with nothing left to remember at `now`.
    pub fn prune(&self, now: DateTime<Utc>) {
        self.licenses.pin().retain(|_, entry| {
            let local = entry.lock().unwrap_or_else(PoisonError::into_inner);
            !(local.window.is_idle(now) && local.provisional.is_empty())
        });
    }

    /// Licenses tracked.
    pub fn len(&self) -> usize {
        self.licenses.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use celaest_protocol::{LicenseStatus, ProductCode};
    use chrono::TimeDelta;

    use super::*;

    fn state(bound: u8, max_ips: u32) -> LicenseState {
        LicenseState {
            id: Uuid::from_u128(7),
            product_code: ProductCode::parse("MKT").unwrap(),
            product_active: true,
            status: LicenseStatus::Active,
            expires_at: None,
            max_ips,
            bound_ips: (1..=bound).map(|n| IpAddr::from([10, 0, 0, n])).collect(),
        }
    }

    #[test]
    fn two_addresses_within_the_window_open_one_episode() {
        let local = LocalTracker::new();
        let now = Utc::now();
        let id = Uuid::from_u128(7);
        assert!(local.observe(id, IpAddr::from([1, 1, 1, 1]), now).is_none());
        assert!(
            local
                .observe(id, IpAddr::from([2, 2, 2, 2]), now + TimeDelta::seconds(1))
                .is_some()
        );
        assert!(
            local
                .observe(id, IpAddr::from([3, 3, 3, 3]), now + TimeDelta::seconds(2))
                .is_none()
        );
        local.prune(now + TimeDelta::minutes(1));
        assert_eq!(local.len(), 1);
        local.prune(now + TimeDelta::minutes(10));
        assert!(local.is_empty());
    }

    #[test]
    fn provisional_addresses_count_against_the_free_slots() {
        let local = LocalTracker::new();
        let license = state(3, 5);
        let new = |n: u8| IpAddr::from([192, 0, 2, n]);
        assert_eq!(local.admit_provisionally(&license, new(1)), Some(1));
        assert_eq!(local.admit_provisionally(&license, new(1)), Some(1));
        assert_eq!(local.admit_provisionally(&license, new(2)), Some(0));
        assert_eq!(local.admit_provisionally(&license, new(3)), None);
        // Kept while central is away, even once the window is idle.
        local.prune(Utc::now() + TimeDelta::hours(1));
        assert_eq!(local.admit_provisionally(&license, new(3)), None);
        local.clear_provisional();
        assert_eq!(local.admit_provisionally(&license, new(3)), Some(1));
    }
}
