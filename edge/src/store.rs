//! The edge's copy of central's licensing state, in memory: every license by the hash of its key
//! (never the key), each product's availability, the sequence applied and how fresh it all is.
//!
//! One writer (the replication session) and many readers (validations). Readers never wait on the
//! writer and never take a lock: the tables sit behind an [`ArcSwap`], and the license map is a
//! lock-free [`papaya`] map into which deltas are written in place. A snapshot is built aside as a
//! new set of tables and swapped in whole, so a validation sees either the old state or the new,
//! never half of one. Deltas apply strictly in sequence order and idempotently: a change at or
//! below the applied sequence is skipped, and one past the next is a [`Gap`], on which the caller
//! reconnects and resumes from [`Store::applied_seq`].
//!
//! Per license the store keeps the protocol's [`LicenseState`] (64 bytes: id, product code,
//! status, expiry, `max_ips`, and the bound IPs — a single IPv4 address inline, more in one
//! exact-size heap block) under its 32-byte [`KeyHash`]. The product flag inside it is a cache:
//! the products table is the truth, read on every validation, so switching a product off is one
//! atomic write.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};
use std::time::Instant;

use arc_swap::ArcSwap;
use celaest_protocol::{
    KeyHash, LicenseState, ProductCode,
    replication::{Change, ReplicatedLicense, ReplicatedProduct, SequencedChange},
};
use papaya::ResizeMode;
use uuid::Uuid;

/// A change arrived out of order: the edge must resume from its applied sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("replication gap: expected change {expected}, got {got}")]
pub struct Gap {
    pub expected: u64,
    pub got: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProductEntry {
    id: Uuid,
    active: bool,
}

/// One complete, consistent state: replaced whole by a snapshot, updated in place by deltas.
struct Tables {
    licenses: papaya::HashMap<KeyHash, LicenseState>,
    products: papaya::HashMap<ProductCode, ProductEntry>,
}

impl Tables {
    fn new() -> Self {
        Self {
            // One writer: a resize is done at once by it rather than spread over later writes,
            // so two tables are never kept alive for long.
            licenses: papaya::HashMap::builder()
                .resize_mode(ResizeMode::Blocking)
                .build(),
            products: papaya::HashMap::new(),
        }
    }

    fn product_active(&self, code: &ProductCode) -> bool {
        // A license whose product is unknown here does not validate (central always sends a
        // product before its licenses).
        self.products.pin().get(code).is_some_and(|p| p.active)
    }

    fn upsert_license(&self, license: ReplicatedLicense) {
        // Moved field by field: the bound IPs' heap block is kept, not copied.
        let ReplicatedLicense {
            id,
            key_hash,
            product_code,
            status,
            expires_at,
            max_ips,
            bound_ips,
        } = license;
        let state = LicenseState {
            id,
            product_code,
            product_active: self.product_active(&product_code),
            status,
            expires_at,
            max_ips,
            bound_ips,
        };
        self.licenses.pin().insert(key_hash, state);
    }

    fn delete_license(&self, id: Uuid, key_hash: &KeyHash) {
        let licenses = self.licenses.pin();
        if licenses.get(key_hash).is_some_and(|state| state.id == id) {
            licenses.remove(key_hash);
        }
    }

    fn upsert_product(&self, product: ReplicatedProduct) {
        let products = self.products.pin();
        // A product's code is part of its license keys and should never change; if it did, the
        // old code must not keep validating.
        products.retain(|code, entry| entry.id != product.id || *code == product.code);
        products.insert(
            product.code,
            ProductEntry {
                id: product.id,
                active: product.active,
            },
        );
    }

    fn apply(&self, change: Change) {
        match change {
            Change::LicenseUpsert(license) => self.upsert_license(license),
            Change::LicenseDelete { id, key_hash } => self.delete_license(id, &key_hash),
            Change::ProductUpsert(product) => self.upsert_product(product),
        }
    }
}

/// A snapshot being received: built aside, then installed with [`Store::install`].
pub struct Snapshot {
    tables: Tables,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self::new()
    }
}

impl Snapshot {
    pub fn new() -> Self {
        Self {
            tables: Tables::new(),
        }
    }

    /// Adds one chunk. Products first, so that the licenses of this chunk see their product.
    pub fn add_chunk(
        &mut self,
        licenses: Vec<ReplicatedLicense>,
        products: Vec<ReplicatedProduct>,
    ) {
        for product in products {
            self.tables.upsert_product(product);
        }
        self.tables.licenses.pin().reserve(licenses.len());
        for license in licenses {
            self.tables.upsert_license(license);
        }
    }

    /// Licenses received so far.
    pub fn len(&self) -> usize {
        self.tables.licenses.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How current the edge's state is, as every answer reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Connected to central and caught up with it.
    pub live: bool,
    /// 0 while live; otherwise milliseconds since the state was last known to be central's.
    pub age_ms: u64,
}

/// The licensing state and its replication bookkeeping.
pub struct Store {
    tables: ArcSwap<Tables>,
    applied_seq: AtomicU64,
    has_state: AtomicBool,
    live: AtomicBool,
    /// Monotonic clock origin of the millisecond instants below.
    epoch: Instant,
    /// When the last change (or snapshot) was applied; `u64::MAX` before any.
    last_change_ms: AtomicU64,
    /// When the state was last known to equal central's (moves to "now" when a live connection
    /// ends); `u64::MAX` before any state.
    known_current_ms: AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("licenses", &self.license_count())
            .field("applied_seq", &self.applied_seq())
            .field("live", &self.live.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// An empty store: not ready until a snapshot is installed.
    pub fn new() -> Self {
        Self {
            tables: ArcSwap::from_pointee(Tables::new()),
            applied_seq: AtomicU64::new(0),
            has_state: AtomicBool::new(false),
            live: AtomicBool::new(false),
            epoch: Instant::now(),
            last_change_ms: AtomicU64::new(u64::MAX),
            known_current_ms: AtomicU64::new(u64::MAX),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// Runs `f` on the license with this key hash (`None`: no such license), with its product's
    /// current availability. Lock-free; `f` must not block (it runs while the map is pinned).
    pub fn with_license<T>(&self, hash: &KeyHash, f: impl FnOnce(Option<&LicenseState>) -> T) -> T {
        let tables = self.tables.load();
        let licenses = tables.licenses.pin();
        let Some(state) = licenses.get(hash) else {
            return f(None);
        };
        let active = tables.product_active(&state.product_code);
        if state.product_active == active {
            f(Some(state))
        } else {
            // The product changed after this license was written: rare, so a copy is fine.
            f(Some(&LicenseState {
                product_active: active,
                ..state.clone()
            }))
        }
    }

    /// Swaps in a complete snapshot that reflects every change up to `seq`.
    pub fn install(&self, snapshot: Snapshot, seq: u64) {
        self.tables.store(Arc::new(snapshot.tables));
        self.applied_seq.store(seq, Ordering::Release);
        self.has_state.store(true, Ordering::Release);
        let now = self.now_ms();
        self.last_change_ms.store(now, Ordering::Release);
        self.known_current_ms.store(now, Ordering::Release);
    }

    /// Applies changes in sequence order; returns the sequence applied afterwards. Changes at or
    /// below it are skipped (a resend), and the first one beyond the next is a [`Gap`]: what came
    /// before it stays applied.
    pub fn apply(&self, changes: Vec<SequencedChange>) -> Result<u64, Gap> {
        let tables = self.tables.load();
        let mut applied = self.applied_seq.load(Ordering::Acquire);
        let mut touched = false;
        let mut result = Ok(());
        for SequencedChange { seq, change } in changes {
            if seq <= applied {
                continue;
            }
            if seq != applied + 1 {
                result = Err(Gap {
                    expected: applied + 1,
                    got: seq,
                });
                break;
            }
            tables.apply(change);
            applied = seq;
            self.applied_seq.store(seq, Ordering::Release);
            touched = true;
        }
        if touched {
            let now = self.now_ms();
            self.last_change_ms.store(now, Ordering::Release);
            self.known_current_ms.store(now, Ordering::Release);
        }
        result.map(|()| applied)
    }

    /// Whether a complete snapshot has been installed (the edge can answer).
    pub fn is_ready(&self) -> bool {
        self.has_state.load(Ordering::Acquire)
    }

    /// The last sequence applied; `None` before the first snapshot.
    pub fn applied_seq(&self) -> Option<u64> {
        self.is_ready()
            .then(|| self.applied_seq.load(Ordering::Acquire))
    }

    /// Records whether the edge is connected to central and caught up. Losing a live connection
    /// starts the clock of the state's age.
    pub fn set_live(&self, live: bool) {
        let was = self.live.swap(live, Ordering::AcqRel);
        if was != live && self.is_ready() {
            self.known_current_ms
                .store(self.now_ms(), Ordering::Release);
        }
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// How fresh the state is (`None` before any state).
    pub fn freshness(&self) -> Option<Freshness> {
        if !self.is_ready() {
            return None;
        }
        if self.is_live() {
            return Some(Freshness {
                live: true,
                age_ms: 0,
            });
        }
        let since = self.known_current_ms.load(Ordering::Acquire);
        Some(Freshness {
            live: false,
            age_ms: self.now_ms().saturating_sub(since),
        })
    }

    /// Seconds since the last change from central was applied (`None` before any).
    pub fn seconds_since_last_change(&self) -> Option<f64> {
        let at = self.last_change_ms.load(Ordering::Acquire);
        (at != u64::MAX).then(|| self.now_ms().saturating_sub(at) as f64 / 1000.0)
    }

    /// Licenses held.
    pub fn license_count(&self) -> usize {
        self.tables.load().licenses.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use celaest_protocol::LicenseStatus;

    use super::*;

    fn code() -> ProductCode {
        ProductCode::parse("MKT").unwrap()
    }

    fn product(active: bool) -> ReplicatedProduct {
        ReplicatedProduct {
            id: Uuid::from_u128(1),
            code: code(),
            active,
        }
    }

    fn license(n: u8, status: LicenseStatus) -> ReplicatedLicense {
        ReplicatedLicense {
            id: Uuid::from_u128(u128::from(n)),
            key_hash: KeyHash::from_bytes([n; 32]),
            product_code: code(),
            status,
            expires_at: None,
            max_ips: 5,
            bound_ips: [IpAddr::from([10, 0, 0, n])].into_iter().collect(),
        }
    }

    fn status_of(store: &Store, n: u8) -> Option<LicenseStatus> {
        store.with_license(&KeyHash::from_bytes([n; 32]), |s| s.map(|s| s.status))
    }

    fn change(seq: u64, change: Change) -> SequencedChange {
        SequencedChange { seq, change }
    }

    fn ready_store() -> Store {
        let store = Store::new();
        let mut snapshot = Snapshot::new();
        snapshot.add_chunk(
            vec![
                license(1, LicenseStatus::Active),
                license(2, LicenseStatus::Active),
            ],
            vec![product(true)],
        );
        store.install(snapshot, 10);
        store
    }

    #[test]
    fn a_store_is_not_ready_until_a_snapshot_is_installed() {
        let store = Store::new();
        assert!(!store.is_ready());
        assert_eq!(store.applied_seq(), None);
        assert_eq!(store.freshness(), None);
        assert_eq!(status_of(&store, 1), None);

        let store = ready_store();
        assert!(store.is_ready());
        assert_eq!(store.applied_seq(), Some(10));
        assert_eq!(store.license_count(), 2);
        assert_eq!(status_of(&store, 1), Some(LicenseStatus::Active));
    }

    #[test]
    fn a_new_snapshot_replaces_the_whole_state_at_once() {
        let store = ready_store();
        let mut snapshot = Snapshot::new();
        snapshot.add_chunk(vec![license(3, LicenseStatus::Active)], vec![product(true)]);
        // Built aside: the old state still answers.
        assert_eq!(status_of(&store, 1), Some(LicenseStatus::Active));
        assert_eq!(status_of(&store, 3), None);
        store.install(snapshot, 40);
        assert_eq!(status_of(&store, 1), None);
        assert_eq!(status_of(&store, 3), Some(LicenseStatus::Active));
        assert_eq!(store.applied_seq(), Some(40));
    }

    #[test]
    fn changes_apply_in_order_and_a_resend_is_ignored() {
        let store = ready_store();
        let revoke = change(
            11,
            Change::LicenseUpsert(license(1, LicenseStatus::Revoked)),
        );
        assert_eq!(store.apply(vec![revoke.clone()]), Ok(11));
        assert_eq!(status_of(&store, 1), Some(LicenseStatus::Revoked));

        // The same change again, and an older one, change nothing.
        let stale = change(9, Change::LicenseUpsert(license(1, LicenseStatus::Active)));
        assert_eq!(store.apply(vec![stale, revoke]), Ok(11));
        assert_eq!(status_of(&store, 1), Some(LicenseStatus::Revoked));

        let delete = change(
            12,
            Change::LicenseDelete {
                id: Uuid::from_u128(2),
                key_hash: KeyHash::from_bytes([2; 32]),
            },
        );
        assert_eq!(store.apply(vec![delete]), Ok(12));
        assert_eq!(status_of(&store, 2), None);
        assert_eq!(store.license_count(), 1);
    }

    #[test]
    fn a_gap_stops_at_the_last_change_in_order() {
        let store = ready_store();
        let result = store.apply(vec![
            change(
                11,
                Change::LicenseUpsert(license(1, LicenseStatus::Suspended)),
            ),
            change(
                13,
                Change::LicenseUpsert(license(2, LicenseStatus::Revoked)),
            ),
        ]);
        assert_eq!(
            result,
            Err(Gap {
                expected: 12,
                got: 13
            })
        );
        assert_eq!(store.applied_seq(), Some(11));
        assert_eq!(status_of(&store, 1), Some(LicenseStatus::Suspended));
        assert_eq!(status_of(&store, 2), Some(LicenseStatus::Active));
    }

    #[test]
    fn a_product_switched_off_refuses_its_licenses_at_once() {
        let store = ready_store();
        let active = |store: &Store| {
            store.with_license(&KeyHash::from_bytes([1; 32]), |s| {
                s.map(|s| s.product_active)
            })
        };
        assert_eq!(active(&store), Some(true));
        assert_eq!(
            store.apply(vec![change(11, Change::ProductUpsert(product(false)))]),
            Ok(11)
        );
        assert_eq!(active(&store), Some(false));
        // A license written after the product change carries the new flag.
        assert_eq!(
            store.apply(vec![change(
                12,
                Change::LicenseUpsert(license(1, LicenseStatus::Active))
            )]),
            Ok(12)
        );
        assert_eq!(active(&store), Some(false));
    }

    #[test]
    fn a_delete_for_another_license_under_the_same_hash_is_ignored() {
        let store = ready_store();
        let wrong = change(
            11,
            Change::LicenseDelete {
                id: Uuid::from_u128(99),
                key_hash: KeyHash::from_bytes([1; 32]),
            },
        );
        assert_eq!(store.apply(vec![wrong]), Ok(11));
        assert_eq!(status_of(&store, 1), Some(LicenseStatus::Active));
    }

    #[test]
    fn freshness_is_zero_while_live_and_counts_from_the_disconnection() {
        let installed = std::time::Instant::now();
        let store = ready_store();
        store.set_live(true);
        std::thread::sleep(std::time::Duration::from_millis(60));
        assert_eq!(
            store.freshness(),
            Some(Freshness {
                live: true,
                age_ms: 0
            }),
            "no age while live, however long ago the state arrived"
        );
        store.set_live(false);
        std::thread::sleep(std::time::Duration::from_millis(30));
        let freshness = store.freshness().unwrap();
        assert!(!freshness.live);
        // Counted from the disconnection (30 ms ago), not from the snapshot (60 ms earlier).
        let since_install = u64::try_from(installed.elapsed().as_millis()).unwrap();
        assert!(freshness.age_ms >= 30, "{}", freshness.age_ms);
        assert!(
            freshness.age_ms + 55 <= since_install,
            "{} of {since_install}",
            freshness.age_ms
        );
        assert!(store.seconds_since_last_change().unwrap() < 1.0);
    }
}
