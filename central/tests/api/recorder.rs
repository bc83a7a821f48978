//! The validation recorder under overload: PostgreSQL paused (the table locked by the test), far
//! more validations than the queue holds, and afterwards every one of them counted exactly once —
//! in `license_validations`, the licenses' counters and the daily usage log — within the memory
//! bound; and an edge's report batch acknowledged only once stored, never counted twice.

use std::collections::HashMap;

use celaest_central::licensing::recorder::{
    BatchOutcome, Caps, Limits, Recorder, ValidationRecord,
};
use celaest_protocol::ValidationCode;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use reqwest::Method;
use serde_json::json;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::support::IdentityApp;

/// The app (for its Redis), and `n` licenses of one product.
async fn licenses(db: PgPool, n: usize) -> (IdentityApp, Vec<Uuid>) {
    let id = IdentityApp::start(db).await;
    let admin = id.user("admin").await;
    let product = id
        .send(Some(&admin), Method::POST, "/api/products", Some(json!({"code": "REC", "name": "Recorder Suite", "product_type": "software", "status": "published", "price_cents": 100})))
        .await;
    assert_eq!(product.status, 201, "{}", product.text);
    let mut licenses = Vec::new();
    for _ in 0..n {
        let created = id
            .send(
                Some(&admin),
                Method::POST,
                "/api/licenses",
                Some(json!({"product_id": product.json["data"]["id"], "max_ips": 50})),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        licenses.push(
            created.json["data"]["id"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
        );
    }
    (id, licenses)
}

fn record(license: Uuid, ip: u8, code: ValidationCode, at: DateTime<Utc>) -> ValidationRecord {
    ValidationRecord {
        id: Uuid::now_v7(),
        license_id: Some(license),
        key_hash: None,
        ip: std::net::IpAddr::from([203, 0, 113, ip]),
        device_info: Some("load test".to_owned()),
        result_code: code.as_str(),
        valid: code.is_valid(),
        answered_by: "central".to_owned(),
        region: None,
        validated_at: at,
    }
}

/// Holds `license_validations` locked, as a stalled PostgreSQL would hold the writer.
async fn pause_writes(db: &PgPool) -> Transaction<'static, Postgres> {
    let mut lock = db.begin().await.unwrap();
    sqlx::query("LOCK TABLE license_validations IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    lock
}

/// Waits until the recorder's writer is blocked on the lock.
async fn writer_blocked(db: &PgPool) {
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'license_validations'::regclass",
        )
        .fetch_one(db)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Validations stored per license and code, counting each row as its `count`.
async fn stored(db: &PgPool) -> HashMap<(Uuid, String), i64> {
    sqlx::query_as::<_, (Uuid, String, i64)>(
        "SELECT license_id, result_code, sum(count)::bigint FROM license_validations GROUP BY 1, 2",
    )
    .fetch_all(db)
    .await
    .unwrap()
    .into_iter()
    .map(|(l, c, n)| ((l, c), n))
    .collect()
}

async fn license_counters(db: &PgPool) -> HashMap<Uuid, (i64, i64, i64)> {
    sqlx::query_as::<_, (Uuid, i64, i64, i64)>(
        "SELECT l.id, l.validation_count, coalesce(sum(u.validation_count), 0)::bigint, coalesce(sum(u.success_count), 0)::bigint
         FROM licenses l LEFT JOIN license_usage_log u ON u.license_id = l.id GROUP BY l.id",
    )
    .fetch_all(db)
    .await
    .unwrap()
    .into_iter()
    .map(|(l, total, logged, ok)| (l, (total, logged, ok)))
    .collect()
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn a_flood_while_postgres_is_paused_is_counted_exactly_once_it_is_back(db: PgPool) {
    let (app, licenses) = licenses(db.clone(), 20).await;
    // Small limits keep the test fast: 20 licenses × 10 addresses × 2 codes = 400 exact keys
    // for 100 places, so validations fold into level 1 (40 keys) too.
    let limits = Limits {
        queue: 50,
        caps: Caps {
            by_ip: 100,
            by_license: 64,
            by_minute: 8,
        },
        reports: 100,
    };
    let recorder = Recorder::with_limits(db.clone(), app.app.state.redis.clone(), limits);
    let minute = Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap();
    let lock = pause_writes(&db).await;

    let mut expected: HashMap<(Uuid, String), i64> = HashMap::new();
    let mut pushed = 0u64;
    let mut push = |n: usize| {
        for _ in 0..n {
            let i = usize::try_from(pushed).unwrap();
            let license = licenses[i % licenses.len()];
            let code = if i % 3 == 0 {
                ValidationCode::IpLimitReached
            } else {
                ValidationCode::Valid
            };
            let at = minute + TimeDelta::seconds(i64::try_from(i % 60).unwrap());
            // Ten addresses per license, independent of the license and the code.
            let ip = u8::try_from(i / licenses.len() % 10).unwrap();
            recorder.record(record(license, ip, code, at));
            *expected
                .entry((license, code.as_str().to_owned()))
                .or_default() += 1;
            pushed += 1;
        }
    };
    push(500);
    writer_blocked(&db).await;
    push(19_500);
    let held = recorder.held();
    assert!(held.coalesced > 0, "the overflow was coalesced: {held:?}");
    assert!(
        held.peak_rows <= limits.max_waiting(),
        "memory stayed within its bound: {held:?}, bound {}",
        limits.max_waiting()
    );
    // What is not held is the one batch the blocked writer took.
    assert!(
        held.validations <= pushed && pushed - held.validations <= 1_000,
        "{held:?}"
    );

    lock.commit().await.unwrap();
    assert!(
        recorder.flush().await,
        "everything stored once PostgreSQL is back"
    );
    assert_eq!(recorder.held().rows, 0);

    assert_eq!(
        stored(&db).await,
        expected,
        "per license and code, nothing dropped or doubled"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM license_validations")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(rows < 20_000, "coalesced rows were stored: {rows} rows");
    let folded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM license_validations WHERE ip_address IS NULL")
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(
        folded > 0,
        "some validations folded into level 1 (license, code, minute)"
    );
    let counters = license_counters(&db).await;
    for license in &licenses {
        let total = expected
            .iter()
            .filter(|((l, _), _)| l == license)
            .map(|(_, n)| n)
            .sum::<i64>();
        let ok = expected[&(*license, "VALID".to_owned())];
        assert_eq!(counters[license], (total, total, ok), "license {license}");
    }
}

fn reports(licenses: &[Uuid], n: usize, at: DateTime<Utc>) -> Vec<ValidationRecord> {
    (0..n)
        .map(|i| ValidationRecord {
            answered_by: "edge-eu-1".to_owned(),
            region: Some("eu".to_owned()),
            ..record(
                licenses[i % licenses.len()],
                u8::try_from(i % 4).unwrap(),
                ValidationCode::Valid,
                at,
            )
        })
        .collect()
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn an_edge_batch_sent_again_is_acknowledged_and_not_counted_twice(db: PgPool) {
    let (app, licenses) = licenses(db.clone(), 2).await;
    let recorder = app.app.state.licensing.recorder.clone();
    let batch = Uuid::now_v7();
    let sent = reports(&licenses, 300, Utc::now());
    assert_eq!(
        recorder
            .record_batch(batch, "edge-eu-1", sent.clone())
            .await,
        Some(BatchOutcome::Stored)
    );
    assert_eq!(
        recorder.record_batch(batch, "edge-eu-1", sent).await,
        Some(BatchOutcome::AlreadyStored)
    );
    let total: i64 = stored(&db).await.values().sum();
    assert_eq!(total, 300);
    let counters = license_counters(&db).await;
    assert_eq!(counters[&licenses[0]], (150, 150, 150));
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn under_overload_an_edge_batch_is_coalesced_and_acknowledged_only_once_stored(db: PgPool) {
    let (app, licenses) = licenses(db.clone(), 2).await;
    let limits = Limits {
        queue: 1,
        caps: Caps::default(),
        reports: 1_000,
    };
    let recorder = Recorder::with_limits(db.clone(), app.app.state.redis.clone(), limits);
    let now = Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap();
    let lock = pause_writes(&db).await;
    // Central's own validations overflow the queue of one: the recorder is coalescing.
    for i in 0..10u8 {
        recorder.record(record(licenses[0], i, ValidationCode::Valid, now));
    }
    writer_blocked(&db).await;
    assert!(recorder.held().coalesced > 0);

    let batch = Uuid::now_v7();
    let sent = reports(&licenses, 400, now);
    let first = tokio::spawn({
        let (recorder, sent) = (recorder.clone(), sent.clone());
        async move { recorder.record_batch(batch, "edge-eu-1", sent).await }
    });
    // While PostgreSQL is paused the batch waits: nothing to acknowledge yet.
    while recorder.held().validations < 400 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!first.is_finished(), "not answered before it is stored");
    lock.commit().await.unwrap();
    assert_eq!(first.await.unwrap(), Some(BatchOutcome::Stored));
    // Its 400 reports, of 4 license and address pairs in one minute, became 4 rows.
    let rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM license_validations WHERE answered_by = 'edge-eu-1'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(rows, 4);
    // Sent again (its acknowledgement lost): recognised, not counted twice.
    assert_eq!(
        recorder.record_batch(batch, "edge-eu-1", sent).await,
        Some(BatchOutcome::AlreadyStored)
    );
    assert!(recorder.flush().await);
    let edge_total: i64 = sqlx::query_scalar(
        "SELECT sum(count)::bigint FROM license_validations WHERE answered_by = 'edge-eu-1'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(edge_total, 400);
    let counters = license_counters(&db).await;
    assert_eq!(counters[&licenses[0]].0, 200 + 10);
    assert_eq!(counters[&licenses[1]].0, 200);
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn a_row_the_database_refuses_is_given_up_alone(db: PgPool) {
    let (app, licenses) = licenses(db.clone(), 1).await;
    let recorder = app.app.state.licensing.recorder.clone();
    let now = Utc::now();
    // PostgreSQL refuses a NUL character in text: no retry can store that row.
    let poisoned = ValidationRecord {
        device_info: Some("bad\0device".to_owned()),
        ..record(licenses[0], 9, ValidationCode::Valid, now)
    };
    recorder.record(record(licenses[0], 1, ValidationCode::Valid, now));
    recorder.record(poisoned.clone());
    recorder.record(record(licenses[0], 2, ValidationCode::Valid, now));
    assert!(!recorder.flush().await, "a refused row is reported");
    assert!(recorder.flush().await, "and not held or retried");
    let mut batch = reports(&licenses, 3, now);
    batch.push(poisoned);
    assert_eq!(
        recorder
            .record_batch(Uuid::now_v7(), "edge-eu-1", batch)
            .await,
        Some(BatchOutcome::Stored),
        "the batch's other reports are stored and it is acknowledged"
    );
    let total: i64 = stored(&db).await.values().sum();
    assert_eq!(total, 2 + 3);
    assert_eq!(license_counters(&db).await[&licenses[0]].0, 5);
}
