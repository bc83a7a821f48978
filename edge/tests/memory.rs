//! Memory per license held at the edge (issue target: at most 200 bytes), measured with a
//! counting global allocator: every byte the store asks the allocator for — the map's table,
//! each entry, each license's bound-IP block — divided by the licenses held. The only test in
//! this binary, so nothing else allocates meanwhile.

use std::alloc::System;
use std::net::IpAddr;

use cap::Cap;
use celaest_edge::store::{Snapshot, Store};
use celaest_protocol::{
    KeyHash, LicenseStatus, ProductCode,
    replication::{ReplicatedLicense, ReplicatedProduct},
};
use uuid::Uuid;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const LICENSES: u32 = 200_000;
const CHUNK: u32 = 5_000;

fn chunk(start: u32, code: ProductCode) -> Vec<ReplicatedLicense> {
    (start..start + CHUNK)
        .map(|n| {
            let mut hash = [0u8; 32];
            hash[..4].copy_from_slice(&n.to_be_bytes());
            hash[4..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9).to_le_bytes());
            ReplicatedLicense {
                id: Uuid::from_u128(u128::from(n)),
                key_hash: KeyHash::from_bytes(hash),
                product_code: code,
                status: LicenseStatus::Active,
                expires_at: None,
                max_ips: 5,
                // The common case: one machine bound.
                bound_ips: [IpAddr::from(n.to_be_bytes())].into_iter().collect(),
            }
        })
        .collect()
}

#[test]
fn a_license_takes_at_most_200_bytes_in_the_store() {
    let code = ProductCode::parse("MKT").unwrap();
    let store = Store::new();
    let before = ALLOCATOR.allocated();
    let mut snapshot = Snapshot::new();
    let product = ReplicatedProduct {
        id: Uuid::from_u128(1),
        code,
        active: true,
    };
    let mut start = 0;
    while start < LICENSES {
        // Each chunk is dropped after it is added, as when it arrives from central.
        snapshot.add_chunk(chunk(start, code), vec![product]);
        start += CHUNK;
    }
    store.install(snapshot, 1);
    let after = ALLOCATOR.allocated();
    assert_eq!(store.license_count(), LICENSES as usize);
    let per_license = (after - before) as f64 / f64::from(LICENSES);
    eprintln!(
        "store memory: {per_license:.1} bytes per license ({} licenses, {} bytes)",
        LICENSES,
        after - before
    );
    assert!(per_license <= 200.0, "{per_license:.1} bytes per license");
}
