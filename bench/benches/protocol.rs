//! Micro benchmarks of what every validation runs, central and edge alike: reading and checking
//! a key, the decision, building and signing the answer; and of the replication frames a
//! snapshot and its changes travel in.
//!
//! `cargo bench -p celaest-bench --bench protocol` (`make bench` runs it briefly and puts the
//! medians in its report).
#![expect(
    clippy::expect_used,
    reason = "a benchmark's fixtures are known good; one that is not should stop the run loudly"
)]

use std::{hint::black_box, net::IpAddr};

use celaest_bench::seed::DEV_CHECKSUM_SECRET;
use celaest_protocol::{
    ChecksumKey, Decision, Lang, LicenseKey, LicenseState, LicenseStatus, ProductCode,
    SuccessEnvelope, ValidateRequest, ValidationAnswer, decide,
    replication::{
        CentralFrame, Change, ReplicatedLicense, SNAPSHOT_CHUNK, SequencedChange, decode, encode,
    },
    signing::SigningKey,
    validation::BoundIps,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use uuid::Uuid;

fn secret() -> ChecksumKey {
    ChecksumKey::new(DEV_CHECKSUM_SECRET.as_bytes()).expect("a 32-byte secret")
}

fn key() -> LicenseKey {
    let code = ProductCode::parse("BENCH").expect("a product code");
    LicenseKey::generate(&code, &secret(), &ring::rand::SystemRandom::new()).expect("randomness")
}

fn license(bound: u8) -> LicenseState {
    LicenseState {
        id: Uuid::now_v7(),
        product_code: ProductCode::parse("BENCH").expect("a product code"),
        product_active: true,
        status: LicenseStatus::Active,
        expires_at: Some(chrono::Utc::now() + chrono::TimeDelta::days(365)),
        max_ips: 5,
        bound_ips: (1..=bound).map(|n| IpAddr::from([10, 0, 0, n])).collect(),
    }
}

fn replicated(n: u32) -> ReplicatedLicense {
    let key = key();
    ReplicatedLicense {
        id: Uuid::now_v7(),
        key_hash: key.hash(),
        product_code: key.product_code(),
        status: LicenseStatus::Active,
        expires_at: None,
        max_ips: 5,
        bound_ips: BoundIps::from(vec![IpAddr::from(std::net::Ipv4Addr::from(
            0x0A00_0000 + n,
        ))]),
    }
}

fn keys(c: &mut Criterion) {
    let secret = secret();
    let key = key();
    let text = key.as_str().to_owned();
    let forged = format!("{}-0000", text.rsplit_once('-').expect("a dash").0);
    let mut group = c.benchmark_group("license_key");
    group.bench_function("parse_and_check", |b| {
        b.iter(|| LicenseKey::parse(black_box(&text), &secret));
    });
    group.bench_function("refuse_bad_checksum", |b| {
        b.iter(|| LicenseKey::parse(black_box(&forged), &secret));
    });
    group.bench_function("sha256_hash", |b| b.iter(|| black_box(&key).hash()));
    group.finish();
}

fn validation(c: &mut Criterion) {
    let secret = secret();
    let request = ValidateRequest {
        license_key: key().as_str().to_owned(),
        ip_address: "10.0.0.1".to_owned(),
        device_info: Some("celaest-bench".to_owned()),
        nonce: Some("bench".to_owned()),
    };
    let now = chrono::Utc::now();
    let bound = license(1);
    let full = license(5);
    let revoked = LicenseState {
        status: LicenseStatus::Revoked,
        ..license(1)
    };
    let known = IpAddr::from([10, 0, 0, 1]);
    let new = IpAddr::from([10, 9, 9, 9]);
    let signing = SigningKey::from_seed(b"dev-only-license-signing-seed-32").expect("a seed");

    let mut group = c.benchmark_group("validation");
    group.bench_function("parse_request", |b| {
        b.iter(|| black_box(&request).parse(&secret));
    });
    group.bench_function("decide_bound_ip", |b| {
        b.iter(|| decide(Some(black_box(&bound)), known, now));
    });
    group.bench_function("decide_new_ip_free_slot", |b| {
        b.iter(|| decide(Some(black_box(&bound)), new, now));
    });
    group.bench_function("decide_new_ip_no_slot", |b| {
        b.iter(|| decide(Some(black_box(&full)), new, now));
    });
    group.bench_function("decide_revoked", |b| {
        b.iter(|| decide(Some(black_box(&revoked)), known, now));
    });
    group.bench_function("answer_serialize_and_sign", |b| {
        b.iter(|| {
            let decision = decide(Some(&bound), known, now);
            let answer = ValidationAnswer::from_decision(
                decision,
                Some(&bound),
                Some("bench".to_owned()),
                now,
                "edge-1",
                Lang::Es,
            );
            let body = serde_json::to_vec(&SuccessEnvelope::new(answer)).expect("json");
            signing.sign(&body).to_header_value()
        });
    });
    group.bench_function("sign_only", |b| {
        let body = serde_json::to_vec(&SuccessEnvelope::new(ValidationAnswer::from_decision(
            Decision::Valid { remaining_ips: 4 },
            Some(&bound),
            None,
            now,
            "edge-1",
            Lang::Es,
        )))
        .expect("json");
        b.iter(|| signing.sign(black_box(&body)));
    });
    group.finish();
}

fn frames(c: &mut Criterion) {
    let one = CentralFrame::Changes(vec![SequencedChange {
        seq: 42,
        change: Change::LicenseUpsert(replicated(1)),
    }]);
    let one_bytes = encode(&one).expect("encodes");
    let count = u32::try_from(SNAPSHOT_CHUNK).expect("a small chunk");
    let chunk = CentralFrame::SnapshotChunk {
        licenses: (0..count).map(replicated).collect(),
        products: Vec::new(),
    };
    let chunk_bytes = encode(&chunk).expect("encodes");

    let mut group = c.benchmark_group("replication_frame");
    group.bench_function("encode_one_change", |b| b.iter(|| encode(black_box(&one))));
    group.bench_function("decode_one_change", |b| {
        b.iter(|| decode::<CentralFrame>(black_box(&one_bytes)));
    });
    group.throughput(Throughput::Elements(u64::from(count)));
    group.bench_function("encode_snapshot_chunk", |b| {
        b.iter(|| encode(black_box(&chunk)));
    });
    group.bench_function("decode_snapshot_chunk", |b| {
        b.iter(|| decode::<CentralFrame>(black_box(&chunk_bytes)));
    });
    group.finish();
}

criterion_group!(benches, keys, validation, frames);
criterion_main!(benches);
