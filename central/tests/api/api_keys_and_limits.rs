//! API keys (hashed, scoped, expiring, rotating) and rate limiting.

use std::time::Duration;

use redis::AsyncCommands;
use reqwest::Method;
use serde_json::json;
use sqlx::PgPool;

use crate::{
    helpers::TestResponse,
    support::{IdentityApp, TestUser},
};

async fn create_key(id: &IdentityApp, user: &TestUser, scopes: &[&str]) -> (String, String) {
    let path = format!("/api/users/{}/api-keys", user.id);
    let created = id
        .send(
            Some(user),
            Method::POST,
            &path,
            Some(json!({"name": "ci", "scopes": scopes})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let data = created.assert_ok();
    (
        data["id"].as_str().unwrap().to_owned(),
        data["secret"].as_str().unwrap().to_owned(),
    )
}

async fn with_key(
    id: &IdentityApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> TestResponse {
    let mut request = id.app.request(method, path).header("x-api-key", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    TestResponse::from(request.send().await.unwrap()).await
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn a_key_is_shown_once_stored_hashed_and_authenticates(db: PgPool) {
    let id = IdentityApp::start(db).await;
    let user = id.user("developer").await;
    let (key_id, secret) = create_key(&id, &user, &["users:read"]).await;
    assert!(secret.starts_with("celaest_"));

    let listed = id
        .send(
            Some(&user),
            Method::GET,
            &format!("/api/users/{}/api-keys", user.id),
            None,
        )
        .await;
    assert!(!listed.text.contains(&secret), "the secret is never listed");
    assert_eq!(listed.assert_ok()[0]["key_prefix"], &secret[..16]);
    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT key_hash FROM user_api_keys WHERE id = $1::uuid")
            .bind(&key_id)
            .fetch_one(&id.db)
            .await
            .unwrap();
    assert_eq!(stored.len(), 32);
    let columns: String =
        sqlx::query_scalar("SELECT row_to_json(k)::text FROM user_api_keys k WHERE id = $1::uuid")
            .bind(&key_id)
            .fetch_one(&id.db)
            .await
            .unwrap();
    assert!(
        !columns.contains(&secret[16..]),
        "no column holds the secret"
    );

    let me = with_key(&id, &secret, Method::GET, "/api/auth/me", None).await;
    assert_eq!(me.assert_ok()["authenticated_with"], "api_key");
    assert_eq!(me.json["data"]["user"]["id"], user.id.to_string());
    assert_eq!(id.audit_actions(&key_id).await, ["api_key.created"]);
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn scopes_limit_what_a_key_may_do(db: PgPool) {
    let id = IdentityApp::start(db).await;
    let user = id.user("client").await;
    let (_, read_only) = create_key(&id, &user, &["users:read"]).await;
    let path = format!("/api/users/{}/profile", user.id);
    with_key(&id, &read_only, Method::GET, &path, None)
        .await
        .assert_ok();
    let refused = with_key(
        &id,
        &read_only,
        Method::PATCH,
        &path,
        Some(json!({"full_name": "X"})),
    )
    .await;
    assert_eq!(
        refused.assert_error(403, "INSUFFICIENT_SCOPE")["details"]["required"],
        "users:write"
    );
    with_key(&id, &read_only, Method::GET, "/api/organizations", None)
        .await
        .assert_error(403, "INSUFFICIENT_SCOPE");

    let (_, writer) = create_key(&id, &user, &["users:write"]).await;
    with_key(
        &id,
        &writer,
        Method::PATCH,
        &path,
        Some(json!({"full_name": "X"})),
    )
    .await
    .assert_ok();
    // A key never exceeds its owner's role.
    with_key(&id, &writer, Method::GET, "/api/users", None)
        .await
        .assert_error(403, "INSUFFICIENT_ROLE");

    let bad_scope = id
        .send(
            Some(&user),
            Method::POST,
            &format!("/api/users/{}/api-keys", user.id),
            Some(json!({"name": "x", "scopes": ["root"]})),
        )
        .await;
    assert_eq!(
        bad_scope.assert_error(422, "VALIDATION_FAILED")["details"]["fields"][0]["field"],
        "scopes[0]"
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn unknown_expired_and_deleted_keys_are_refused_with_their_code(db: PgPool) {
    let id = IdentityApp::start(db).await;
    let user = id.user("client").await;
    let made_up = format!("celaest_{}", "A".repeat(43));
    with_key(&id, &made_up, Method::GET, "/api/auth/me", None)
        .await
        .assert_error(401, "API_KEY_INVALID");
    with_key(&id, "garbage", Method::GET, "/api/auth/me", None)
        .await
        .assert_error(401, "API_KEY_INVALID");

    let (expiring_id, expiring) = create_key(&id, &user, &["*"]).await;
    sqlx::query(
        "UPDATE user_api_keys SET expires_at = now() - interval '1 second' WHERE id = $1::uuid",
    )
    .bind(&expiring_id)
    .execute(&id.db)
    .await
    .unwrap();
    with_key(&id, &expiring, Method::GET, "/api/auth/me", None)
        .await
        .assert_error(401, "API_KEY_EXPIRED");

    let (key_id, secret) = create_key(&id, &user, &["*"]).await;
    with_key(&id, &secret, Method::GET, "/api/auth/me", None)
        .await
        .assert_ok();
    let path = format!("/api/users/{}/api-keys/{key_id}", user.id);
    assert_eq!(
        id.send(Some(&user), Method::DELETE, &path, None)
            .await
            .status,
        204
    );
    with_key(&id, &secret, Method::GET, "/api/auth/me", None)
        .await
        .assert_error(401, "API_KEY_REVOKED");
    assert_eq!(
        id.audit_actions(&key_id).await,
        ["api_key.created", "api_key.deleted"]
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn rotation_issues_a_new_key_and_retires_the_old_after_its_overlap(db: PgPool) {
    let id = IdentityApp::start(db).await;
    let user = id.user("client").await;
    let (old_id, old) = create_key(&id, &user, &["users:read"]).await;
    let rotate = format!("/api/users/{}/api-keys/{old_id}/rotate", user.id);
    let rotated = id
        .send(
            Some(&user),
            Method::POST,
            &rotate,
            Some(json!({"overlap_seconds": 60})),
        )
        .await;
    assert_eq!(rotated.status, 201, "{}", rotated.text);
    let new = rotated.json["data"]["secret"].as_str().unwrap().to_owned();
    assert_eq!(rotated.json["data"]["rotated_from_id"], old_id);
    assert_eq!(rotated.json["data"]["scopes"], json!(["users:read"]));
    with_key(&id, &new, Method::GET, "/api/auth/me", None)
        .await
        .assert_ok();
    with_key(&id, &old, Method::GET, "/api/auth/me", None)
        .await
        .assert_ok();

    // Without overlap the old key stops at once; a retired key cannot be rotated again.
    let (second_id, second) = create_key(&id, &user, &["users:read"]).await;
    let rotate = format!("/api/users/{}/api-keys/{second_id}/rotate", user.id);
    assert_eq!(
        id.send(Some(&user), Method::POST, &rotate, None)
            .await
            .status,
        201
    );
    with_key(&id, &second, Method::GET, "/api/auth/me", None)
        .await
        .assert_error(401, "API_KEY_REVOKED");
    id.send(Some(&user), Method::POST, &rotate, None)
        .await
        .assert_error(404, "NOT_FOUND");
    let invalid = id
        .send(
            Some(&user),
            Method::POST,
            &rotate,
            Some(json!({"overlap_seconds": 999_999})),
        )
        .await;
    invalid.assert_error(422, "VALIDATION_FAILED");
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn last_use_is_recorded_off_the_request_path(db: PgPool) {
    let id = IdentityApp::start(db).await;
    let user = id.user("client").await;
    let (key_id, secret) = create_key(&id, &user, &["*"]).await;
    with_key(&id, &secret, Method::GET, "/api/auth/me", None)
        .await
        .assert_ok();
    let before: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT last_used_at FROM user_api_keys WHERE id = $1::uuid")
            .bind(&key_id)
            .fetch_one(&id.db)
            .await
            .unwrap();
    assert!(before.is_none(), "the request itself wrote nothing");

    // The worker's job moves it to PostgreSQL (every 15 s, and once more when it stops).
    let stop = tokio_util::sync::CancellationToken::new();
    let workers = tokio::spawn(celaest_central::workers::run(
        id.app.state.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    stop.cancel();
    workers.await.unwrap().unwrap();
    let (used_at, ip): (Option<chrono::DateTime<chrono::Utc>>, Option<String>) = sqlx::query_as(
        "SELECT last_used_at, host(last_used_ip) FROM user_api_keys WHERE id = $1::uuid",
    )
    .bind(&key_id)
    .fetch_one(&id.db)
    .await
    .unwrap();
    assert!(used_at.is_some_and(|t| (chrono::Utc::now() - t).num_seconds() < 30));
    assert_eq!(ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        celaest_central::auth::usage::flush(&id.app.state)
            .await
            .unwrap(),
        0,
        "flushed entries are gone"
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn the_request_after_the_limit_gets_429_until_the_window_resets(db: PgPool) {
    let id = IdentityApp::start_with(db, &[("RATE_LIMIT_PER_MIN", "3")]).await;
    let user = id.user("client").await;
    for remaining in ["2", "1", "0"] {
        let response = id
            .send(Some(&user), Method::GET, "/api/auth/me", None)
            .await;
        response.assert_ok();
        assert_eq!(response.header("x-ratelimit-remaining"), Some(remaining));
        assert_eq!(response.header("x-ratelimit-limit"), Some("3"));
    }
    let limited = id
        .send(Some(&user), Method::GET, "/api/auth/me", None)
        .await;
    limited.assert_error(429, "RATE_LIMITED");
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));

    // Another principal has its own budget.
    let other = id.user("client").await;
    id.send(Some(&other), Method::GET, "/api/auth/me", None)
        .await
        .assert_ok();

    // When the window ends, the budget is back.
    let redis = &id.app.state.redis;
    let mut conn = redis.conn().await.unwrap();
    let _: bool = conn
        .pexpire(redis.key(&format!("ratelimit:user:{}", user.id)), 50)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    id.send(Some(&user), Method::GET, "/api/auth/me", None)
        .await
        .assert_ok();
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn anonymous_requests_are_limited_per_client_ip(db: PgPool) {
    let id = IdentityApp::start_with(db, &[("RATE_LIMIT_PER_MIN", "2")]).await;
    let body = json!({"token": "x.y.z"});
    id.send(None, Method::POST, "/api/auth/verify", Some(body.clone()))
        .await
        .assert_ok();
    id.send(None, Method::POST, "/api/auth/verify", Some(body.clone()))
        .await
        .assert_ok();
    id.send(None, Method::POST, "/api/auth/verify", Some(body))
        .await
        .assert_error(429, "RATE_LIMITED");
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn without_redis_requests_are_still_authenticated_and_answered(db: PgPool) {
    let id = IdentityApp::start_with(db, &[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let user = id.user("client").await;
    let response = id
        .send(Some(&user), Method::GET, "/api/auth/me", None)
        .await;
    response.assert_ok();
    assert!(
        response.header("x-ratelimit-limit").is_none(),
        "fail-open: no limit applied"
    );
    // Revocation still holds, read from PostgreSQL.
    assert_eq!(
        id.send(Some(&user), Method::POST, "/api/auth/logout", None)
            .await
            .status,
        204
    );
    id.send(Some(&user), Method::GET, "/api/auth/me", None)
        .await
        .assert_error(401, "SESSION_REVOKED");
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn a_key_cannot_mint_a_key_with_more_scopes_than_its_own(db: PgPool) {
    let id = IdentityApp::start(db).await;
    let user = id.user("client").await;
    let (_, writer) = create_key(&id, &user, &["users:write"]).await;
    let path = format!("/api/users/{}/api-keys", user.id);
    let wider = with_key(
        &id,
        &writer,
        Method::POST,
        &path,
        Some(json!({"name": "escalate", "scopes": ["*"]})),
    )
    .await;
    wider.assert_error(403, "INSUFFICIENT_SCOPE");
    let same = with_key(
        &id,
        &writer,
        Method::POST,
        &path,
        Some(json!({"name": "same", "scopes": ["users:read"]})),
    )
    .await;
    assert_eq!(same.status, 201, "{}", same.text);
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn failed_authentications_count_against_the_client_ip(db: PgPool) {
    let id = IdentityApp::start_with(db, &[("RATE_LIMIT_PER_MIN", "2")]).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = id
            .app
            .request(Method::GET, "/api/auth/me")
            .bearer_auth("not.a.jwt")
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 429]);
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn an_unknown_key_costs_the_client_ip_one_request(db: PgPool) {
    let id = IdentityApp::start_with(db, &[("RATE_LIMIT_PER_MIN", "3")]).await;
    let first = format!("celaest_{}", "A".repeat(43));
    let second = format!("celaest_{}", "B".repeat(43));
    // A key this instance has not seen, the same key again (remembered as unknown), another one.
    for (key, remaining) in [(&first, "2"), (&first, "1"), (&second, "0")] {
        let refused = with_key(&id, key, Method::GET, "/api/auth/me", None).await;
        refused.assert_error(401, "API_KEY_INVALID");
        assert_eq!(refused.header("x-ratelimit-remaining"), Some(remaining));
    }
    with_key(&id, &second, Method::GET, "/api/auth/me", None)
        .await
        .assert_error(429, "RATE_LIMITED");
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn a_role_change_and_a_deleted_key_reach_every_instance(db: PgPool) {
    let prefix = format!("test:{}:", uuid::Uuid::now_v7());
    let a = IdentityApp::start_with(db.clone(), &[("REDIS_KEY_PREFIX", &prefix)]).await;
    let b = IdentityApp::start_with(
        db,
        &[
            ("REDIS_KEY_PREFIX", &prefix),
            ("SUPABASE_URL", &a.supabase.url),
        ],
    )
    .await;
    let admin = a.user("admin").await;
    let user = a.user("client").await;
    let (key_id, secret) = create_key(&a, &user, &["*"]).await;
    // Both instances have the key cached before the changes made on A.
    for app in [&a, &b] {
        let me = with_key(app, &secret, Method::GET, "/api/auth/me", None).await;
        assert_eq!(me.assert_ok()["role"], "client");
    }

    let user_path = format!("/api/users/{}", user.id);
    a.send(
        Some(&admin),
        Method::PATCH,
        &user_path,
        Some(json!({"role": "viewer"})),
    )
    .await
    .assert_ok();
    for app in [&a, &b] {
        let me = with_key(app, &secret, Method::GET, "/api/auth/me", None).await;
        assert_eq!(me.assert_ok()["role"], "viewer");
    }

    let key_path = format!("/api/users/{}/api-keys/{key_id}", user.id);
    assert_eq!(
        a.send(Some(&admin), Method::DELETE, &key_path, None)
            .await
            .status,
        204
    );
    for app in [&a, &b] {
        with_key(app, &secret, Method::GET, "/api/auth/me", None)
            .await
            .assert_error(401, "API_KEY_REVOKED");
    }
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn text_postgres_cannot_store_is_a_client_error_not_a_crash(db: PgPool) {
    let id = IdentityApp::start(db).await;
    let user = id.user("viewer").await;
    let search = id
        .send(Some(&user), Method::GET, "/api/organizations?q=%00", None)
        .await;
    assert!(
        search.status.is_client_error() || search.status.is_success(),
        "{}",
        search.text
    );
    assert_ne!(search.status.as_u16(), 500);
    let client = id.user("client").await;
    let path = format!("/api/users/{}/profile", client.id);
    let nul = id
        .send(
            Some(&client),
            Method::PATCH,
            &path,
            Some(json!({"full_name": "a\u{0}b"})),
        )
        .await;
    nul.assert_error(422, "VALIDATION_FAILED");
    let metadata = id
        .send(
            Some(&client),
            Method::PATCH,
            &path,
            Some(json!({"metadata": {"k": "a\u{0}b"}})),
        )
        .await;
    metadata.assert_error(422, "VALIDATION_FAILED");
}
