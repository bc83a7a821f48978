//! Validations answered from memory with central's exact contract: every code, the envelope and
//! its languages, the field errors for malformed input, signed answers that verify with the key
//! central publishes, readiness, freshness and the offline policy. The store is loaded directly;
//! no central is running, so every new IP meets the offline policy.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test that cannot go on should stop right there"
)]

pub mod common;

use celaest_edge::{EdgeConfig, EdgeState, store::Snapshot};
use celaest_protocol::{
    LicenseKey, LicenseStatus, ValidationCode,
    replication::{Change, ReplicatedLicense, SequencedChange},
    signing::{KeySet, VerifyingKey},
};
use chrono::{TimeDelta, Utc};
use common::{config, license, new_key, post, product, serve_http, validate};
use serde_json::{Value, json};

const BOUND: &str = "198.51.100.7";

/// An edge holding `licenses` as of sequence 10, served over HTTP.
async fn edge_with(
    config: EdgeConfig,
    licenses: Vec<ReplicatedLicense>,
) -> (EdgeState, String, tokio::sync::oneshot::Sender<()>) {
    let state = EdgeState::new(config);
    let mut snapshot = Snapshot::new();
    snapshot.add_chunk(licenses, vec![product(true)]);
    state.store.install(snapshot, 10);
    let (base, stop) = serve_http(state.clone()).await;
    (state, base, stop)
}

fn code_of(answer: &common::Answer) -> &str {
    answer.json["data"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn every_code_is_answered_from_memory_with_200() {
    let active = new_key();
    let full = new_key();
    let revoked = new_key();
    let suspended = new_key();
    let expired = new_key();
    let past_expiry = new_key();
    let inactive = new_key();
    let unknown = new_key();
    let other_product = celaest_protocol::ProductCode::parse("OFF").unwrap();
    let mut off = license(&inactive, LicenseStatus::Active, 5, &[BOUND]);
    off.product_code = other_product;
    let mut lapsed = license(&past_expiry, LicenseStatus::Active, 5, &[BOUND]);
    lapsed.expires_at = Some(Utc::now() - TimeDelta::minutes(1));
    let licenses = vec![
        license(&active, LicenseStatus::Active, 5, &[BOUND, "198.51.100.8"]),
        license(&full, LicenseStatus::Active, 2, &["192.0.2.1", "192.0.2.2"]),
        license(&revoked, LicenseStatus::Revoked, 5, &[BOUND]),
        license(&suspended, LicenseStatus::Suspended, 5, &[BOUND]),
        license(&expired, LicenseStatus::Expired, 5, &[BOUND]),
        lapsed,
        off,
    ];
    let (state, base, _stop) = edge_with(config(&[]), licenses).await;
    // The OFF product is known and switched off.
    state
        .store
        .apply(vec![SequencedChange {
            seq: 11,
            change: Change::ProductUpsert(celaest_protocol::replication::ReplicatedProduct {
                id: uuid::Uuid::from_u128(2),
                code: other_product,
                active: false,
            }),
        }])
        .unwrap();

    let cases: Vec<(String, &str, ValidationCode)> = vec![
        (active.as_str().into(), BOUND, ValidationCode::Valid),
        (
            unknown.as_str().into(),
            BOUND,
            ValidationCode::LicenseNotFound,
        ),
        (
            revoked.as_str().into(),
            BOUND,
            ValidationCode::LicenseRevoked,
        ),
        (
            suspended.as_str().into(),
            BOUND,
            ValidationCode::LicenseSuspended,
        ),
        (
            expired.as_str().into(),
            BOUND,
            ValidationCode::LicenseExpired,
        ),
        (
            past_expiry.as_str().into(),
            BOUND,
            ValidationCode::LicenseExpired,
        ),
        (
            inactive.as_str().into(),
            BOUND,
            ValidationCode::ProductInactive,
        ),
        (full.as_str().into(), BOUND, ValidationCode::IpLimitReached),
        (
            "CELAEST-MKT-A8F9D2E1-0000".into(),
            BOUND,
            ValidationCode::InvalidKeyFormat,
        ),
        ("not a key".into(), BOUND, ValidationCode::InvalidKeyFormat),
        // No central: a new IP with a free slot cannot be bound, and the default refuses it.
        (
            active.as_str().into(),
            "203.0.113.50",
            ValidationCode::BindingUnavailable,
        ),
    ];
    for (key, ip, code) in &cases {
        let answer = validate(&base, key, ip).await;
        assert_eq!(answer.status, 200, "{code:?}: {}", answer.json);
        assert_eq!(answer.json["success"], true);
        let data = &answer.json["data"];
        assert_eq!(code_of(&answer), code.as_str(), "{key} from {ip}");
        assert_eq!(data["valid"], code.is_valid());
        assert_eq!(data["message"], code.message(celaest_protocol::Lang::Es));
        assert_eq!(data["answered_by"], common::EDGE_ID);
        assert_eq!(data["nonce"], "n-1");
        assert!(data["state_age_ms"].is_u64(), "{data}");
    }

    let valid = validate(&base, active.as_str(), BOUND).await;
    let data = &valid.json["data"];
    assert_eq!(data["remaining_ips"], 3);
    assert_eq!(data["license"]["status"], "active");
    assert_eq!(data["license"]["product_code"], "MKT");
    let lapsed = validate(&base, past_expiry.as_str(), BOUND).await;
    assert_eq!(lapsed.json["data"]["license"]["status"], "expired");
    let not_found = validate(&base, unknown.as_str(), BOUND).await;
    assert_eq!(not_found.json["data"]["license"], Value::Null);
    let limit = validate(&base, full.as_str(), BOUND).await;
    assert_eq!(limit.json["data"]["remaining_ips"], 0);

    // Every answer was counted (here nothing consumes reports: they are dropped).
    let counted = |code: ValidationCode| {
        let base = base.clone();
        async move {
            common::metric(
                &base,
                &format!(
                    "celaest_edge_validations_total{{code=\"{}\"}}",
                    code.as_str()
                ),
            )
            .await
        }
    };
    assert_eq!(counted(ValidationCode::Valid).await, Some(2.0));
    assert_eq!(counted(ValidationCode::InvalidKeyFormat).await, Some(2.0));
}

#[tokio::test]
async fn the_source_address_takes_the_slot_not_the_body() {
    let key = new_key();
    let (_, base, _stop) = edge_with(
        config(&[]),
        vec![license(&key, LicenseStatus::Active, 1, &[BOUND])],
    )
    .await;
    // The body claims the bound address, but the request comes from elsewhere.
    let body = json!({ "license_key": key.as_str(), "ip_address": BOUND });
    let answer = post(&base, "/api/licenses/validate", "203.0.113.9", &body, None).await;
    assert_eq!(code_of(&answer), "IP_LIMIT_REACHED");
    // The body's address must still be a valid one.
    let body = json!({ "license_key": key.as_str(), "ip_address": "not-an-ip" });
    let answer = post(&base, "/api/licenses/validate", BOUND, &body, None).await;
    assert_eq!(code_of(&answer), "INVALID_IP_ADDRESS");
}

#[tokio::test]
async fn answers_are_signed_with_the_key_central_publishes() {
    let key = new_key();
    let (_, base, _stop) = edge_with(
        config(&[]),
        vec![license(&key, LicenseStatus::Active, 5, &[BOUND])],
    )
    .await;
    // What a client fetched from central's /api/licenses/signing-keys.
    let published = common::signing_key().verifying_key().to_jwk();
    let mut keys = KeySet::default();
    keys.insert(VerifyingKey::from_jwk(&published).unwrap())
        .unwrap();

    let one = validate(&base, key.as_str(), BOUND).await;
    let header = one.headers["celaest-signature"].to_str().unwrap();
    keys.verify(&one.bytes, header).unwrap();
    assert_eq!(one.headers["content-type"], "application/json");

    let batch = post(
        &base,
        "/api/licenses/batch-validate",
        BOUND,
        &json!({ "items": [
            { "license_key": key.as_str(), "ip_address": BOUND },
            { "license_key": "garbage", "ip_address": BOUND },
        ]}),
        Some("en"),
    )
    .await;
    assert_eq!(batch.status, 200);
    let header = batch.headers["celaest-signature"].to_str().unwrap();
    keys.verify(&batch.bytes, header).unwrap();
    let results = batch.json["data"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["code"], "VALID");
    assert_eq!(results[1]["code"], "INVALID_KEY_FORMAT");
    assert_eq!(results[1]["message"], "The license key format is invalid");

    // A tampered body no longer verifies.
    let mut tampered = one.bytes.clone();
    tampered[10] ^= 1;
    let header = one.headers["celaest-signature"].to_str().unwrap();
    assert!(keys.verify(&tampered, header).is_err());
}

#[tokio::test]
async fn malformed_input_gets_centrals_errors() {
    let (_, base, _stop) = edge_with(config(&[]), vec![]).await;
    let client = common::http_client();
    let url = format!("{base}/api/licenses/validate");

    let broken = common::into_answer(
        client
            .post(&url)
            .header("content-type", "application/json")
            .body("{\"license_key\": ")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(broken.status, 400);
    assert_eq!(broken.json["error"]["code"], "MALFORMED_JSON");
    assert!(broken.json["error"]["details"]["line"].is_u64());
    assert!(broken.json["error"]["details"]["column"].is_u64());

    let not_json = common::into_answer(
        client
            .post(&url)
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(not_json.status, 415);
    assert_eq!(not_json.json["error"]["code"], "UNSUPPORTED_MEDIA_TYPE");

    let huge = common::into_answer(
        client
            .post(&url)
            .header("content-type", "application/json")
            .body(vec![b' '; 2 * 1024 * 1024])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(huge.status, 413);
    assert_eq!(huge.json["error"]["code"], "PAYLOAD_TOO_LARGE");

    let fields = post(
        &base,
        "/api/licenses/validate",
        BOUND,
        &json!({ "license_key": "k".repeat(65), "ip_address": "", "device_info": 7, "extra": 1 }),
        Some("en"),
    )
    .await;
    assert_eq!(fields.status, 422);
    assert_eq!(fields.json["error"]["code"], "VALIDATION_FAILED");
    assert_eq!(fields.json["error"]["message"], "Some fields are invalid");
    // serde stops at the first type error, as at central.
    assert_eq!(
        fields.json["error"]["details"]["fields"],
        json!([{ "field": "device_info", "code": "INVALID_TYPE", "message": "invalid type, expected a string" }])
    );

    let limits = post(
        &base,
        "/api/licenses/validate",
        BOUND,
        &json!({ "license_key": "k".repeat(65), "ip_address": "", "nonce": "x".repeat(257) }),
        None,
    )
    .await;
    assert_eq!(limits.status, 422);
    assert_eq!(
        limits.json["error"]["details"]["fields"],
        json!([
            { "field": "license_key", "code": "TOO_LONG", "message": "debe tener como máximo 64 caracteres" },
            { "field": "ip_address", "code": "REQUIRED", "message": "es obligatorio" },
            { "field": "nonce", "code": "TOO_LONG", "message": "debe tener como máximo 256 caracteres" },
        ])
    );

    let unknown = post(
        &base,
        "/api/licenses/batch-validate",
        BOUND,
        &json!({ "items": [{ "license_key": "k", "ip_address": "1.2.3.4", "extra": true }] }),
        None,
    )
    .await;
    assert_eq!(unknown.status, 422);
    assert_eq!(
        unknown.json["error"]["details"]["fields"][0]["field"],
        "items[0].extra"
    );
    assert_eq!(
        unknown.json["error"]["details"]["fields"][0]["code"],
        "UNKNOWN_FIELD"
    );

    let empty = post(
        &base,
        "/api/licenses/batch-validate",
        BOUND,
        &json!({ "items": [] }),
        None,
    )
    .await;
    assert_eq!(empty.status, 422);
    assert_eq!(
        empty.json["error"]["details"]["fields"],
        json!([{ "field": "items", "code": "OUT_OF_RANGE", "message": "debe estar entre 1 y 100" }])
    );
}

#[tokio::test]
async fn validations_wait_for_the_first_snapshot() {
    let state = EdgeState::new(config(&[]));
    let (base, _stop) = serve_http(state.clone()).await;
    let answer = validate(&base, new_key().as_str(), BOUND).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.json["error"]["code"], "NOT_READY");
    assert_eq!(answer.json["error"]["details"]["reason"], "no_snapshot");

    state.store.install(Snapshot::new(), 3);
    let ready = common::get(&base, "/health/ready").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json["data"]["applied_seq"], 3);
    let answer = validate(&base, new_key().as_str(), BOUND).await;
    assert_eq!(code_of(&answer), "LICENSE_NOT_FOUND");
}

#[tokio::test]
async fn past_the_offline_limit_the_edge_stops_answering() {
    let key = new_key();
    let (_, base, _stop) = edge_with(
        config(&[("EDGE_OFFLINE_MAX_SECS", "0".into())]),
        vec![license(&key, LicenseStatus::Active, 5, &[BOUND])],
    )
    .await;
    // Not connected since the snapshot: as soon as any time passes, the state is too old.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let answer = validate(&base, key.as_str(), BOUND).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.json["error"]["code"], "NOT_READY");
    assert_eq!(
        answer.json["error"]["details"]["reason"],
        "offline_too_long"
    );
    let ready = common::get(&base, "/health/ready").await;
    assert_eq!(ready.status, 503);
}

#[tokio::test]
async fn while_central_is_away_answers_say_how_old_the_state_is() {
    let key = new_key();
    let (_, base, _stop) = edge_with(
        config(&[]),
        vec![license(&key, LicenseStatus::Active, 5, &[BOUND])],
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let answer = validate(&base, key.as_str(), BOUND).await;
    assert_eq!(code_of(&answer), "VALID");
    assert!(answer.json["data"]["state_age_ms"].as_u64().unwrap() >= 30);
}

#[tokio::test]
async fn the_allow_policy_admits_new_ips_provisionally_within_the_free_slots() {
    let key = new_key();
    let (_, base, _stop) = edge_with(
        config(&[("EDGE_OFFLINE_NEW_IPS", "allow".into())]),
        vec![license(&key, LicenseStatus::Active, 3, &[BOUND])],
    )
    .await;
    let first = validate(&base, key.as_str(), "203.0.113.1").await;
    assert_eq!(code_of(&first), "VALID");
    assert_eq!(first.json["data"]["remaining_ips"], 1);
    let again = validate(&base, key.as_str(), "203.0.113.1").await;
    assert_eq!(code_of(&again), "VALID");
    let second = validate(&base, key.as_str(), "203.0.113.2").await;
    assert_eq!(second.json["data"]["remaining_ips"], 0);
    let third = validate(&base, key.as_str(), "203.0.113.3").await;
    assert_eq!(code_of(&third), "IP_LIMIT_REACHED");
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_every_declared_series() {
    let key: LicenseKey = new_key();
    let (_, base, _stop) = edge_with(
        config(&[]),
        vec![license(&key, LicenseStatus::Active, 5, &[BOUND])],
    )
    .await;
    validate(&base, key.as_str(), BOUND).await;
    let page = common::get(&base, "/metrics").await;
    assert_eq!(page.status, 200);
    assert!(
        page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = String::from_utf8(page.bytes).unwrap();
    for line in [
        "celaest_edge_validations_total{code=\"VALID\"} 1",
        "celaest_edge_validation_duration_seconds_count 1",
        "celaest_edge_applied_seq 10",
        "celaest_edge_licenses 1",
        "celaest_edge_connection_state{state=\"disconnected\"} 1",
        "celaest_edge_reports_buffered 0",
        "celaest_edge_ready 1",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    assert!(text.contains("celaest_edge_validation_duration_seconds_bucket{le=\"+Inf\"} 1"));
    assert!(text.contains("celaest_edge_seconds_since_last_change "));
    assert!(text.contains("celaest_edge_reports_dropped_total 1"));
    // Declarations and the page cannot drift: every declared series is there, with its type.
    for series in celaest_edge::metrics::ALL {
        let (name, kind) = (series.name, series.kind.as_str());
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} ({kind}) is declared but not on the page:\n{text}"
        );
    }
    assert!(!text.contains("quantile="), "histograms, not summaries");
}

#[tokio::test]
async fn one_license_used_from_two_addresses_is_one_collision_here() {
    let key = new_key();
    let bound = [BOUND, "198.51.100.8", "198.51.100.9"];
    let (_, base, _stop) = edge_with(
        config(&[]),
        vec![license(&key, LicenseStatus::Active, 5, &bound)],
    )
    .await;
    let collisions = || async {
        let text = String::from_utf8(common::get(&base, "/metrics").await.bytes).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("celaest_edge_collisions_total "))
            .map(str::to_owned)
    };
    assert_eq!(
        code_of(&validate(&base, key.as_str(), bound[0]).await),
        "VALID"
    );
    assert_eq!(collisions().await.as_deref(), Some("0"));
    // A second address within the window opens the episode; a third joins it, not a new one.
    validate(&base, key.as_str(), bound[1]).await;
    assert_eq!(collisions().await.as_deref(), Some("1"));
    validate(&base, key.as_str(), bound[2]).await;
    validate(&base, key.as_str(), bound[0]).await;
    assert_eq!(collisions().await.as_deref(), Some("1"));
}
