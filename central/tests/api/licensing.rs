//! MODULO 5 through the HTTP API: the spec's validation flow, IP binding, collisions, signed
//! answers, the administrative actions, and the outbox rows that feed the edges.

use celaest_central::licensing::recorder::ValidationRecord;
use celaest_protocol::{
    LicenseKey, ProductCode,
    signing::{JwkSet, KeySet, SIGNATURE_HEADER},
};
use chrono::{Duration, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    helpers::TestResponse,
    support::{IdentityApp, TestUser},
};

struct Fixture {
    id: IdentityApp,
    admin: TestUser,
    product: Uuid,
}

impl Fixture {
    async fn new(db: PgPool) -> Self {
        let id = IdentityApp::start(db).await;
        let admin = id.user("admin").await;
        let created = id
            .send(Some(&admin), Method::POST, "/api/products", Some(json!({"code": "MKT", "name": "Marketing Suite", "product_type": "software", "status": "published", "price_cents": 4900})))
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        let product = created.json["data"]["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        Self { id, admin, product }
    }

    async fn license(&self, body: Value) -> Value {
        let mut body = body;
        body["product_id"] = json!(self.product);
        let created = self
            .id
            .send(Some(&self.admin), Method::POST, "/api/licenses", Some(body))
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        created.json["data"].clone()
    }

    async fn validate_from(&self, key: &str, ip: impl Into<String>) -> TestResponse {
        let ip: String = ip.into();
        let ip = ip.as_str();
        let request = self
            .id
            .app
            .request(Method::POST, "/api/licenses/validate")
            .header("x-forwarded-for", ip)
            .json(&json!({"license_key": key, "ip_address": ip, "device_info": "Windows 11", "nonce": "n-1"}));
        TestResponse::from(request.send().await.unwrap()).await
    }

    async fn flush(&self) {
        assert!(
            self.id.app.state.licensing.recorder.flush().await,
            "every record stored"
        );
    }

    async fn act(&self, method: Method, path: &str, body: Option<Value>) -> TestResponse {
        self.id.send(Some(&self.admin), method, path, body).await
    }
}

fn key_of(license: &Value) -> String {
    license["license_key"].as_str().unwrap().to_owned()
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn a_fresh_license_validated_from_one_ip_is_valid_with_four_ips_left(db: PgPool) {
    let f = Fixture::new(db).await;
    let license = f.license(json!({})).await;
    let key = key_of(&license);
    assert!(
        key.starts_with("CELAEST-MKT-") && key.len() == "CELAEST-MKT-A8F9D2E1-7B3C".len(),
        "{key}"
    );
    assert_eq!(license["max_ips"], 5);

    let answer = f.validate_from(&key, "203.0.113.1").await;
    let data = answer.assert_ok();
    assert_eq!(data["valid"], true);
    assert_eq!(data["code"], "VALID");
    assert_eq!(data["remaining_ips"], 4);
    assert_eq!(data["license"]["id"], license["id"]);
    assert_eq!(data["license"]["product_code"], "MKT");
    assert_eq!(data["license"]["status"], "active");
    assert_eq!(data["nonce"], "n-1");
    assert_eq!(data["answered_by"], "central");
    assert_eq!(
        data["message"],
        celaest_protocol::ValidationCode::Valid.message(celaest_protocol::Lang::Es)
    );
    // The same IP again: still 4 left, nothing new bound.
    assert_eq!(
        f.validate_from(&key, "203.0.113.1").await.json["data"]["remaining_ips"],
        4
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn the_sixth_ip_is_refused_and_bound_ips_keep_working(db: PgPool) {
    let f = Fixture::new(db).await;
    let key = key_of(&f.license(json!({})).await);
    for (i, left) in (1..=5).zip([4, 3, 2, 1, 0]) {
        let answer = f.validate_from(&key, format!("198.51.100.{i}")).await;
        assert_eq!(
            answer.json["data"]["remaining_ips"], left,
            "{}",
            answer.text
        );
    }
    let sixth = f.validate_from(&key, "198.51.100.6").await;
    assert_eq!(sixth.status, 200);
    assert_eq!(sixth.json["data"]["valid"], false);
    assert_eq!(sixth.json["data"]["code"], "IP_LIMIT_REACHED");
    assert_eq!(sixth.json["data"]["remaining_ips"], 0);
    assert_eq!(
        f.validate_from(&key, "198.51.100.3").await.json["data"]["valid"],
        true
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn concurrent_validations_from_new_ips_never_exceed_the_limit(db: PgPool) {
    let f = Fixture::new(db).await;
    let license = f.license(json!({"max_ips": 3})).await;
    let key = key_of(&license);
    let requests = (0..20).map(|i| f.validate_from(&key, format!("192.0.2.{}", i + 10)));
    let answers = futures::future::join_all(requests).await;
    let valid = answers
        .iter()
        .filter(|a| a.json["data"]["valid"] == true)
        .count();
    let refused = answers
        .iter()
        .filter(|a| a.json["data"]["code"] == "IP_LIMIT_REACHED")
        .count();
    assert_eq!((valid, refused), (3, 17));
    let bound: i64 =
        sqlx::query_scalar("SELECT count(*) FROM license_ip_bindings WHERE license_id = $1::uuid")
            .bind(license["id"].as_str().unwrap())
            .fetch_one(&f.id.db)
            .await
            .unwrap();
    assert_eq!(bound, 3);
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn every_verdict_has_its_stable_code(db: PgPool) {
    let f = Fixture::new(db).await;
    let checksum = &f.id.app.state.licensing.checksum;
    let forged = {
        let mut key = key_of(&f.license(json!({})).await);
        let last = key.pop().unwrap();
        key.push(if last == 'A' { 'B' } else { 'A' });
        key
    };
    let unknown = LicenseKey::generate(
        &ProductCode::parse("MKT").unwrap(),
        checksum,
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    let revoked = f.license(json!({})).await;
    f.act(
        Method::POST,
        &format!("/api/licenses/{}/revoke", revoked["id"].as_str().unwrap()),
        Some(json!({"reason": "chargeback"})),
    )
    .await
    .assert_ok();
    let suspended = f.license(json!({})).await;
    f.act(
        Method::PATCH,
        &format!("/api/licenses/{}", suspended["id"].as_str().unwrap()),
        Some(json!({"status": "suspended", "reason": "audit"})),
    )
    .await
    .assert_ok();
    let expired = f.license(json!({})).await;
    sqlx::query("UPDATE licenses SET expires_at = now() - interval '1 second' WHERE id = $1::uuid")
        .bind(expired["id"].as_str().unwrap())
        .execute(&f.id.db)
        .await
        .unwrap();
    let inactive = {
        let draft = f
            .act(
                Method::POST,
                "/api/products",
                Some(json!({"code": "DRAFT", "name": "Draft", "product_type": "saas"})),
            )
            .await;
        let product = draft.json["data"]["id"].clone();
        let created = f
            .act(
                Method::POST,
                "/api/licenses",
                Some(json!({"product_id": product})),
            )
            .await;
        key_of(&created.json["data"])
    };
    let cases = [
        ("not-a-key".to_owned(), "INVALID_KEY_FORMAT"),
        (forged, "INVALID_KEY_FORMAT"),
        (unknown.as_str().to_owned(), "LICENSE_NOT_FOUND"),
        (key_of(&revoked), "LICENSE_REVOKED"),
        (key_of(&suspended), "LICENSE_SUSPENDED"),
        (key_of(&expired), "LICENSE_EXPIRED"),
        (inactive, "PRODUCT_INACTIVE"),
    ];
    for (key, code) in cases {
        let answer = f.validate_from(&key, "203.0.113.9").await;
        assert_eq!(answer.status, 200, "{code}: {}", answer.text);
        assert_eq!(answer.json["data"]["valid"], false, "{code}");
        assert_eq!(answer.json["data"]["code"], code, "{}", answer.text);
    }
    let english =
        f.id.app
            .request(Method::POST, "/api/licenses/validate")
            .header("accept-language", "en")
            .json(&json!({"license_key": "nope", "ip_address": "203.0.113.9"}))
            .send()
            .await
            .unwrap();
    let english = TestResponse::from(english).await;
    assert_eq!(
        english.json["data"]["message"],
        celaest_protocol::ValidationCode::InvalidKeyFormat.message(celaest_protocol::Lang::En)
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn malformed_validation_requests_are_400_or_422(db: PgPool) {
    let f = Fixture::new(db).await;
    let raw =
        f.id.app
            .post_raw(
                "/api/licenses/validate",
                "application/json",
                "{\"license_key\": ",
            )
            .await;
    raw.assert_error(400, "MALFORMED_JSON");
    let missing =
        f.id.app
            .post_json(
                "/api/licenses/validate",
                &json!({"license_key": "CELAEST-MKT-00000000-0000"}),
            )
            .await;
    assert_eq!(
        missing.assert_error(422, "VALIDATION_FAILED")["details"]["fields"][0]["field"],
        "ip_address"
    );
    let long_nonce = json!({"license_key": "x", "ip_address": "1.2.3.4", "nonce": "n".repeat(300)});
    f.id.app
        .post_json("/api/licenses/validate", &long_nonce)
        .await
        .assert_error(422, "VALIDATION_FAILED");
    let too_many = json!({"items": (0..101).map(|_| json!({"license_key": "x", "ip_address": "1.2.3.4"})).collect::<Vec<_>>()});
    f.id.app
        .post_json("/api/licenses/batch-validate", &too_many)
        .await
        .assert_error(422, "VALIDATION_FAILED");
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn answers_are_signed_and_verify_with_the_published_keys(db: PgPool) {
    let f = Fixture::new(db).await;
    let key = key_of(&f.license(json!({})).await);
    let jwks: JwkSet = serde_json::from_value(
        f.id.app.get("/api/licenses/signing-keys").await.json["data"].clone(),
    )
    .unwrap();
    assert_eq!(jwks.keys[0].kty, "OKP");
    assert_eq!(jwks.keys[0].crv, "Ed25519");
    let keys = KeySet::from_jwks(&jwks).unwrap();

    let response =
        f.id.app
            .request(Method::POST, "/api/licenses/batch-validate")
            .header("x-forwarded-for", "203.0.113.20")
            .json(&json!({"items": [
                {"license_key": key, "ip_address": "203.0.113.20", "nonce": "a"},
                {"license_key": "bogus", "ip_address": "203.0.113.20", "nonce": "b"}
            ]}))
            .send()
            .await
            .unwrap();
    let signature = response.headers()[SIGNATURE_HEADER]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.bytes().await.unwrap();
    keys.verify(&body, &signature)
        .expect("the signature verifies with the published key");
    let mut tampered = body.to_vec();
    let at = tampered.iter().position(|b| *b == b'a').unwrap();
    tampered[at] = b'b';
    assert!(keys.verify(&tampered, &signature).is_err());
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["data"]["results"][0]["code"], "VALID");
    assert_eq!(json["data"]["results"][1]["code"], "INVALID_KEY_FORMAT");
    assert_eq!(json["data"]["results"][1]["nonce"], "b");
    assert!(json["data"]["results"][0]["timestamp"].is_string());
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn validations_are_recorded_off_the_request_path(db: PgPool) {
    let f = Fixture::new(db).await;
    let license = f.license(json!({})).await;
    let key = key_of(&license);
    for ip in ["203.0.113.1", "203.0.113.1", "203.0.113.2"] {
        f.validate_from(&key, ip).await.assert_ok();
    }
    f.validate_from("garbage", "203.0.113.1").await.assert_ok();
    f.flush().await;
    let id = license["id"].as_str().unwrap();
    let history = f
        .act(
            Method::GET,
            &format!("/api/licenses/{id}/validations?sort=validated_at&order=asc"),
            None,
        )
        .await;
    assert_eq!(history.json["meta"]["total"], 3);
    assert_eq!(history.json["data"][0]["answered_by"], "central");
    assert_eq!(history.json["data"][0]["ip_address"], "203.0.113.1");
    let usage = f
        .act(Method::GET, &format!("/api/licenses/{id}/usage"), None)
        .await;
    let data = usage.assert_ok();
    assert_eq!(data["validations"], 3);
    assert_eq!(data["days"][0]["success_count"], 3);
    assert_eq!(data["days"][0]["unique_ip_count"], 2);
    let license = f
        .act(Method::GET, &format!("/api/licenses/{id}"), None)
        .await;
    assert_eq!(license.json["data"]["validation_count"], 3);
    let ips = f
        .act(Method::GET, &format!("/api/licenses/{id}/ips"), None)
        .await;
    assert_eq!(ips.json["data"]["remaining_ips"], 3);
    assert_eq!(ips.json["data"]["bindings"][0]["validation_count"], 2);
    // Two IPs within five minutes: a collision episode, recorded once.
    assert_eq!(
        f.id.audit_actions(id).await,
        [
            "license.created",
            "license.validated",
            "license.collision_detected"
        ]
    );
    let unknown: i64 =
        sqlx::query_scalar("SELECT count(*) FROM license_validations WHERE license_id IS NULL")
            .fetch_one(&f.id.db)
            .await
            .unwrap();
    assert_eq!(
        unknown, 1,
        "malformed keys are recorded too, without a license"
    );
}

fn record(license: Uuid, ip: &str, minutes_ago: i64) -> ValidationRecord {
    ValidationRecord {
        id: Uuid::now_v7(),
        license_id: Some(license),
        key_hash: None,
        ip: ip.parse().unwrap(),
        device_info: None,
        result_code: "VALID",
        valid: true,
        answered_by: "edge-eu-1".into(),
        region: Some("eu-west".into()),
        validated_at: Utc::now() - Duration::minutes(minutes_ago),
    }
}

async fn collisions(f: &Fixture, license: &str) -> Value {
    f.act(
        Method::GET,
        &format!("/api/licenses/{license}/collisions"),
        None,
    )
    .await
    .json
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn two_ips_within_five_minutes_are_one_collision_episode(db: PgPool) {
    let f = Fixture::new(db).await;
    let license = f.license(json!({})).await;
    let key = key_of(&license);
    let id = license["id"].as_str().unwrap();
    f.validate_from(&key, "203.0.113.1").await.assert_ok();
    f.validate_from(&key, "203.0.113.2").await.assert_ok();
    f.flush().await;
    f.validate_from(&key, "203.0.113.3").await.assert_ok();
    f.validate_from(&key, "203.0.113.1").await.assert_ok();
    f.flush().await;
    let found = collisions(&f, id).await;
    assert_eq!(
        found["meta"]["total"], 1,
        "one episode, however many requests: {found}"
    );
    assert_eq!(found["data"][0]["ip_count"], 2);
    assert_eq!(found["data"][0]["auto_revoked"], false);
    assert_eq!(
        f.act(Method::GET, &format!("/api/licenses/{id}"), None)
            .await
            .json["data"]["collision_count"],
        1
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn two_ips_more_than_five_minutes_apart_are_no_collision(db: PgPool) {
    let f = Fixture::new(db).await;
    let license = f.license(json!({})).await;
    let id: Uuid = license["id"].as_str().unwrap().parse().unwrap();
    let recorder = &f.id.app.state.licensing.recorder;
    recorder.record(record(id, "203.0.113.1", 12));
    recorder.record(record(id, "203.0.113.2", 6));
    recorder.record(record(id, "203.0.113.3", 0));
    f.flush().await;
    assert_eq!(collisions(&f, &id.to_string()).await["meta"]["total"], 0);
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn a_collision_inside_one_late_batch_is_found(db: PgPool) {
    // An edge's report batch arriving late, newest first: the two uses 12 and 11 minutes ago
    // collide although a use from now is in the same batch.
    let f = Fixture::new(db).await;
    let license = f.license(json!({})).await;
    let id: Uuid = license["id"].as_str().unwrap().parse().unwrap();
    let recorder = &f.id.app.state.licensing.recorder;
    recorder.record(record(id, "203.0.113.3", 0));
    recorder.record(record(id, "203.0.113.2", 11));
    recorder.record(record(id, "203.0.113.1", 12));
    f.flush().await;
    let found = collisions(&f, &id.to_string()).await;
    assert_eq!(found["meta"]["total"], 1, "{found}");
    assert_eq!(found["data"][0]["ip_count"], 2);
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn past_the_products_threshold_a_license_is_revoked_automatically(db: PgPool) {
    let f = Fixture::new(db).await;
    f.act(
        Method::PATCH,
        &format!("/api/products/{}", f.product),
        Some(json!({"collision_threshold": 1})),
    )
    .await
    .assert_ok();
    let license = f.license(json!({})).await;
    let id: Uuid = license["id"].as_str().unwrap().parse().unwrap();
    let key = key_of(&license);
    let recorder = &f.id.app.state.licensing.recorder;
    recorder.record(record(id, "203.0.113.1", 30));
    recorder.record(record(id, "203.0.113.2", 29));
    f.flush().await;
    assert_eq!(
        f.validate_from(&key, "203.0.113.1").await.json["data"]["valid"],
        true,
        "one collision is within the threshold"
    );

    // A later, separate episode (the first one's window has closed).
    let redis = &f.id.app.state.redis;
    let mut conn = redis.conn().await.unwrap();
    let _: i64 =
        redis::AsyncCommands::del(&mut conn, redis.key(&format!("collision:episode:{id}")))
            .await
            .unwrap();
    recorder.record(record(id, "203.0.113.7", 1));
    recorder.record(record(id, "203.0.113.8", 0));
    f.flush().await;

    let found = collisions(&f, &id.to_string()).await;
    assert_eq!(found["meta"]["total"], 2);
    assert_eq!(found["data"][0]["auto_revoked"], true);
    let revoked = f.validate_from(&key, "203.0.113.1").await;
    assert_eq!(revoked.json["data"]["code"], "LICENSE_REVOKED");
    let actions = f.id.audit_actions(&id.to_string()).await;
    assert!(
        actions.contains(&"license.revoked".to_owned()),
        "{actions:?}"
    );
    // The same revocation an administrator makes, by the system and said to be automatic.
    let (actor, changes, metadata): (String, Value, Value) = sqlx::query_as(
        "SELECT actor_type, changes, metadata FROM audit_logs WHERE entity_id = $1 AND action = 'license.revoked'",
    )
    .bind(id.to_string())
    .fetch_one(&f.id.db)
    .await
    .unwrap();
    assert_eq!(actor, "system");
    assert_eq!(changes["status"], json!(["active", "revoked"]));
    assert!(
        changes["revoked_reason"][1]
            .as_str()
            .is_some_and(|r| r.starts_with("automatic: 2 collisions")),
        "{changes}"
    );
    assert_eq!(metadata["automatic"], true);
    let outbox: Vec<String> = sqlx::query_scalar(
        "SELECT payload->>'status' FROM replication_log WHERE entity_id = $1 ORDER BY seq",
    )
    .bind(id)
    .fetch_all(&f.id.db)
    .await
    .unwrap();
    assert_eq!(
        outbox.last().map(String::as_str),
        Some("revoked"),
        "the revocation reaches the edges: {outbox:?}"
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn renew_revoke_and_reactivate_change_the_verdict(db: PgPool) {
    let f = Fixture::new(db).await;
    let license = f
        .license(json!({"expires_at": (Utc::now() + Duration::days(10)).to_rfc3339()}))
        .await;
    let id = license["id"].as_str().unwrap();
    let key = key_of(&license);
    let revoke = f
        .act(
            Method::POST,
            &format!("/api/licenses/{id}/revoke"),
            Some(json!({"reason": "refund"})),
        )
        .await;
    assert_eq!(revoke.assert_ok()["revoked_reason"], "refund");
    assert_eq!(
        f.validate_from(&key, "203.0.113.5").await.json["data"]["code"],
        "LICENSE_REVOKED"
    );
    f.act(
        Method::POST,
        &format!("/api/licenses/{id}/revoke"),
        Some(json!({"reason": "again"})),
    )
    .await
    .assert_error(409, "INVALID_LICENSE_STATE");
    f.act(
        Method::POST,
        &format!("/api/licenses/{id}/revoke"),
        Some(json!({})),
    )
    .await
    .assert_error(422, "VALIDATION_FAILED");
    f.act(
        Method::POST,
        &format!("/api/licenses/{id}/reactivate"),
        None,
    )
    .await
    .assert_ok();
    assert_eq!(
        f.validate_from(&key, "203.0.113.5").await.json["data"]["code"],
        "VALID"
    );

    let before =
        chrono::DateTime::parse_from_rfc3339(license["expires_at"].as_str().unwrap()).unwrap();
    let renewed = f
        .act(
            Method::POST,
            &format!("/api/licenses/{id}/renew"),
            Some(json!({"days": 30})),
        )
        .await;
    let after =
        chrono::DateTime::parse_from_rfc3339(renewed.json["data"]["expires_at"].as_str().unwrap())
            .unwrap();
    assert_eq!(
        (after - before).num_days(),
        30,
        "renewal extends from the current expiry"
    );

    sqlx::query("UPDATE licenses SET expires_at = now() - interval '1 day' WHERE id = $1::uuid")
        .bind(id)
        .execute(&f.id.db)
        .await
        .unwrap();
    f.act(
        Method::POST,
        &format!("/api/licenses/{id}/revoke"),
        Some(json!({"reason": "x"})),
    )
    .await
    .assert_ok();
    f.act(
        Method::POST,
        &format!("/api/licenses/{id}/reactivate"),
        None,
    )
    .await
    .assert_error(409, "LICENSE_EXPIRED");
    let actions = f.id.audit_actions(id).await;
    assert_eq!(
        actions,
        [
            "license.created",
            "license.revoked",
            "license.reactivated",
            "license.renewed",
            "license.revoked"
        ]
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn ip_slots_are_managed_by_hand(db: PgPool) {
    let f = Fixture::new(db).await;
    let license = f.license(json!({"max_ips": 1})).await;
    let id = license["id"].as_str().unwrap();
    let bound = f
        .act(
            Method::POST,
            &format!("/api/licenses/{id}/bind-ip"),
            Some(json!({"ip_address": "10.1.1.1"})),
        )
        .await;
    assert_eq!(bound.status, 201);
    assert_eq!(bound.json["data"]["remaining_ips"], 0);
    f.act(
        Method::POST,
        &format!("/api/licenses/{id}/bind-ip"),
        Some(json!({"ip_address": "10.1.1.2"})),
    )
    .await
    .assert_error(409, "IP_LIMIT_REACHED");
    f.act(
        Method::POST,
        &format!("/api/licenses/{id}/bind-ip"),
        Some(json!({"ip_address": "10.1.1.999"})),
    )
    .await
    .assert_error(422, "VALIDATION_FAILED");
    assert_eq!(
        f.act(
            Method::DELETE,
            &format!("/api/licenses/{id}/unbind-ip?ip_address=10.1.1.1"),
            None
        )
        .await
        .status,
        204
    );
    f.act(
        Method::DELETE,
        &format!("/api/licenses/{id}/unbind-ip?ip_address=10.1.1.1"),
        None,
    )
    .await
    .assert_error(404, "NOT_FOUND");
    assert_eq!(
        f.act(Method::GET, &format!("/api/licenses/{id}/ips"), None)
            .await
            .json["data"]["remaining_ips"],
        1
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn every_change_reaches_the_outbox_gapless_and_in_order(db: PgPool) {
    let f = Fixture::new(db).await;
    let license = f.license(json!({})).await;
    let id = license["id"].as_str().unwrap();
    let key = key_of(&license);
    let concurrent = (0..5).map(|i| f.validate_from(&key, format!("203.0.113.{}", 50 + i)));
    futures::future::join_all(concurrent).await;
    f.act(
        Method::POST,
        &format!("/api/licenses/{id}/revoke"),
        Some(json!({"reason": "x"})),
    )
    .await
    .assert_ok();
    f.act(
        Method::PATCH,
        &format!("/api/products/{}", f.product),
        Some(json!({"status": "archived"})),
    )
    .await
    .assert_ok();
    f.act(Method::DELETE, &format!("/api/licenses/{id}"), None)
        .await;

    let rows: Vec<(i64, String, Value)> =
        sqlx::query_as("SELECT seq, kind, payload FROM replication_log ORDER BY seq")
            .fetch_all(&f.id.db)
            .await
            .unwrap();
    let seqs: Vec<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(
        seqs,
        (1..=i64::try_from(rows.len()).unwrap()).collect::<Vec<_>>(),
        "gapless from 1"
    );
    let kinds: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(
        kinds.first(),
        Some(&"product.upsert"),
        "the product was published first"
    );
    assert_eq!(kinds.last(), Some(&"license.delete"));
    // Each bind is one row whose payload has one more bound IP than the last: commit order.
    let bound: Vec<usize> = rows
        .iter()
        .filter(|r| r.1 == "license.upsert")
        .map(|r| r.2["bound_ips"].as_array().unwrap().len())
        .collect();
    assert_eq!(&bound[..6], &[0, 1, 2, 3, 4, 5], "{bound:?}");
    let last_upsert = rows.iter().rev().find(|r| r.1 == "license.upsert").unwrap();
    assert_eq!(last_upsert.2["status"], "revoked");
    assert!(
        last_upsert.2.get("license_key").is_none(),
        "the edges never get the key"
    );
    assert_eq!(last_upsert.2["key_hash"].as_str().unwrap().len(), 64);
    let product = rows.iter().rev().find(|r| r.1 == "product.upsert").unwrap();
    assert_eq!(
        product.2["active"], true,
        "archived products still honour their licenses"
    );
    let counter: i64 = sqlx::query_scalar("SELECT last_seq FROM replication_state")
        .fetch_one(&f.id.db)
        .await
        .unwrap();
    assert_eq!(counter, *seqs.last().unwrap());
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn clients_see_their_own_licenses_and_viewers_never_see_keys(db: PgPool) {
    let f = Fixture::new(db).await;
    let client = f.id.user("client").await;
    let other = f.id.user("client").await;
    let mine = f.license(json!({"user_id": client.id})).await;
    f.license(json!({"user_id": other.id})).await;
    let org_owner = f.id.user("client").await;
    let org = f.id.org(&org_owner, "buyers").await;
    f.license(json!({"organization_id": org})).await;

    let listed =
        f.id.send(Some(&client), Method::GET, "/api/licenses", None)
            .await;
    assert_eq!(listed.json["meta"]["total"], 1);
    assert_eq!(
        listed.json["data"][0]["license_key"], mine["license_key"],
        "the owner reads its key"
    );
    let by_org =
        f.id.send(Some(&org_owner), Method::GET, "/api/licenses", None)
            .await;
    assert_eq!(
        by_org.json["meta"]["total"], 1,
        "organization members see its licenses"
    );
    let other_id = f.license(json!({"user_id": other.id})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    f.id.send(
        Some(&client),
        Method::GET,
        &format!("/api/licenses/{other_id}"),
        None,
    )
    .await
    .assert_error(404, "NOT_FOUND");
    f.id.send(
        Some(&client),
        Method::POST,
        "/api/licenses",
        Some(json!({"product_id": f.product})),
    )
    .await
    .assert_error(403, "INSUFFICIENT_ROLE");
    f.id.send(
        Some(&client),
        Method::POST,
        &format!("/api/licenses/{other_id}/revoke"),
        Some(json!({"reason": "x"})),
    )
    .await
    .assert_error(404, "NOT_FOUND");

    let viewer = f.id.user("viewer").await;
    let seen =
        f.id.send(
            Some(&viewer),
            Method::GET,
            &format!("/api/licenses/{}", mine["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert!(
        seen.json["data"]["license_key"]
            .as_str()
            .unwrap()
            .ends_with("****-****")
    );
    f.id.send(
        Some(&viewer),
        Method::GET,
        "/api/licenses?status=bogus",
        None,
    )
    .await
    .assert_error(422, "VALIDATION_FAILED");
    let filtered =
        f.id.send(
            Some(&viewer),
            Method::GET,
            &format!("/api/licenses?status=active&product_id={}", f.product),
            None,
        )
        .await;
    assert_eq!(filtered.json["meta"]["total"], 4);
    let by_code =
        f.id.send(
            Some(&viewer),
            Method::GET,
            "/api/licenses?product_code=MKT",
            None,
        )
        .await;
    assert_eq!(by_code.json["meta"]["total"], 4);
    assert_eq!(by_code.json["data"].as_array().unwrap().len(), 4);
    let other_code =
        f.id.send(
            Some(&viewer),
            Method::GET,
            "/api/licenses?product_code=NONE",
            None,
        )
        .await;
    assert_eq!(other_code.json["meta"]["total"], 0);
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn products_and_categories_are_managed_by_developers_and_read_by_everyone(db: PgPool) {
    let f = Fixture::new(db).await;
    let dev = f.id.user("developer").await;
    let client = f.id.user("client").await;
    let category =
        f.id.send(
            Some(&dev),
            Method::POST,
            "/api/categories",
            Some(json!({"name": "Software"})),
        )
        .await;
    assert_eq!(category.status, 201, "{}", category.text);
    assert_eq!(category.json["data"]["slug"], "software");
    let draft = f
        .id
        .send(Some(&dev), Method::POST, "/api/products", Some(json!({"code": "CRM", "name": "CRM Pro", "product_type": "saas", "category_id": category.json["data"]["id"]})))
        .await;
    assert_eq!(draft.json["data"]["status"], "draft");
    let dup =
        f.id.send(
            Some(&dev),
            Method::POST,
            "/api/products",
            Some(json!({"code": "CRM", "name": "Other", "product_type": "saas"})),
        )
        .await;
    assert_eq!(
        dup.assert_error(409, "ALREADY_EXISTS")["details"]["field"],
        "code"
    );
    let bad =
        f.id.send(
            Some(&dev),
            Method::POST,
            "/api/products",
            Some(json!({"code": "crm!", "name": "", "product_type": "toaster", "price_cents": -1})),
        )
        .await;
    let fields: Vec<&str> = bad.assert_error(422, "VALIDATION_FAILED")["details"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["code", "name", "product_type", "price_cents"]);

    let seen_by_client =
        f.id.send(Some(&client), Method::GET, "/api/products", None)
            .await;
    assert_eq!(
        seen_by_client.json["meta"]["total"], 1,
        "drafts are invisible to clients"
    );
    f.id.send(
        Some(&client),
        Method::GET,
        &format!(
            "/api/products/{}",
            draft.json["data"]["id"].as_str().unwrap()
        ),
        None,
    )
    .await
    .assert_error(404, "NOT_FOUND");
    f.id.send(
        Some(&client),
        Method::POST,
        "/api/products",
        Some(json!({"code": "X1", "name": "X", "product_type": "api"})),
    )
    .await
    .assert_error(403, "INSUFFICIENT_ROLE");
    assert_eq!(
        f.id.send(Some(&dev), Method::GET, "/api/products?status=draft", None)
            .await
            .json["meta"]["total"],
        1
    );
    assert_eq!(
        f.id.send(Some(&client), Method::GET, "/api/categories", None)
            .await
            .json["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let mkt = f.license(json!({})).await;
    let change_code = f
        .act(
            Method::PATCH,
            &format!("/api/products/{}", f.product),
            Some(json!({"code": "NEW"})),
        )
        .await;
    assert_eq!(
        change_code.assert_error(422, "VALIDATION_FAILED")["details"]["fields"][0]["code"],
        "IMMUTABLE"
    );
    assert_eq!(
        f.act(
            Method::DELETE,
            &format!("/api/products/{}", f.product),
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        f.validate_from(&key_of(&mkt), "203.0.113.70").await.json["data"]["code"],
        "PRODUCT_INACTIVE"
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn the_documented_answer_matches_the_one_on_the_wire(db: PgPool) {
    let f = Fixture::new(db).await;
    let key = key_of(&f.license(json!({})).await);
    let answer = f.validate_from(&key, "203.0.113.80").await;
    let mut wire: Vec<String> = answer.json["data"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let mut license: Vec<String> = answer.json["data"]["license"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let doc = f.id.app.get("/openapi.json").await.json;
    let schemas = &doc["components"]["schemas"];
    let mut documented: Vec<String> = schemas["ValidationAnswerDoc"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let mut documented_license: Vec<String> = schemas["LicenseSummaryDoc"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    for list in [
        &mut wire,
        &mut license,
        &mut documented,
        &mut documented_license,
    ] {
        list.sort();
    }
    assert_eq!(wire, documented);
    assert_eq!(license, documented_license);

    // And the request body: every field the wire type takes is documented, and no other.
    let request = celaest_protocol::ValidateRequest {
        license_key: key,
        ip_address: "203.0.113.80".into(),
        device_info: Some("pc".into()),
        nonce: Some("n".into()),
    };
    let mut taken: Vec<String> = serde_json::to_value(&request)
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let mut documented_body: Vec<String> = schemas["ValidateBody"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    taken.sort();
    documented_body.sort();
    assert_eq!(taken, documented_body);
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn after_a_key_rotation_the_previous_key_is_still_published(db: PgPool) {
    use celaest_protocol::signing::SigningKey;
    let previous = SigningKey::from_seed(&[9u8; 32]).unwrap().verifying_key();
    let encoded = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        previous.as_bytes(),
    );
    let id = IdentityApp::start_with(db, &[("LICENSE_SIGNING_PREVIOUS_KEYS", &encoded)]).await;
    let jwks: JwkSet =
        serde_json::from_value(id.app.get("/api/licenses/signing-keys").await.json["data"].clone())
            .unwrap();
    assert_eq!(jwks.keys.len(), 2);
    assert!(
        jwks.keys
            .iter()
            .any(|k| k.kid.as_deref() == Some(previous.kid()))
    );
    // Answers are signed with the current key, which is the other one.
    let response = id
        .app
        .request(Method::POST, "/api/licenses/validate")
        .json(&json!({"license_key": "x", "ip_address": "1.2.3.4"}))
        .send()
        .await
        .unwrap();
    let signature = response.headers()[SIGNATURE_HEADER]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!signature.contains(previous.kid()));
    let body = response.bytes().await.unwrap();
    KeySet::from_jwks(&jwks)
        .unwrap()
        .verify(&body, &signature)
        .unwrap();
}

#[tokio::test]
async fn a_flush_says_when_records_could_not_be_stored_and_keeps_them() {
    use celaest_central::{cache::Redis, licensing::recorder::Recorder};
    let config = crate::helpers::test_config(&[]);
    let unreachable = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(100))
        .connect_lazy("postgres://postgres@127.0.0.1:1/nowhere")
        .unwrap();
    let recorder = Recorder::spawn(unreachable, Redis::new(&config.redis).unwrap());
    recorder.record(record(Uuid::now_v7(), "203.0.113.1", 0));
    assert!(
        !recorder.flush().await,
        "an unwritten record must not be reported stored"
    );
    assert_eq!(recorder.held().validations, 1, "held, not dropped");
    assert!(!recorder.flush().await, "still not stored");
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn a_product_code_changed_before_any_license_reaches_the_edges(db: PgPool) {
    let f = Fixture::new(db).await;
    f.act(
        Method::PATCH,
        &format!("/api/products/{}", f.product),
        Some(json!({"code": "MKS"})),
    )
    .await
    .assert_ok();
    let codes: Vec<String> = sqlx::query_scalar(
        "SELECT payload->>'code' FROM replication_log \
         WHERE kind = 'product.upsert' AND entity_id = $1 ORDER BY seq",
    )
    .bind(f.product)
    .fetch_all(&f.id.db)
    .await
    .unwrap();
    assert_eq!(codes, ["MKT", "MKS"]);
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn binding_to_a_license_deleted_meanwhile_is_not_found(db: PgPool) {
    use celaest_central::licensing::store;
    use celaest_protocol::replication::BindOutcome;

    let ip = std::net::IpAddr::from([192, 0, 2, 9]);
    let outcome = store::bind_ip_now(&db, Uuid::now_v7(), ip, None)
        .await
        .unwrap();
    assert_eq!(outcome, BindOutcome::NotFound);
}
