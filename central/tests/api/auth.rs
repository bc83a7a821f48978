//! MODULO 4: Supabase tokens (HS256 and ES256 via JWKS), sessions, verify/refresh/me/logout.

use std::sync::atomic::Ordering;

use jsonwebtoken::Algorithm;
use reqwest::Method;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{ES256_KID, GOOD_REFRESH_TOKEN, IdentityApp, TokenSpec};

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn an_hs256_token_reaches_me_with_profile_role_organizations_and_permissions(db: PgPool) {
    let id = IdentityApp::start(db).await;
    let dev = id.user("developer").await;
    let org = id.org(&dev, "acme").await;
    let response = id.send(Some(&dev), Method::GET, "/api/auth/me", None).await;
    let me = response.assert_ok();
    assert_eq!(me["user"]["id"], dev.id.to_string());
    assert_eq!(me["role"], "developer");
    assert_eq!(me["organizations"][0]["id"], org.to_string());
    assert_eq!(me["organizations"][0]["role"], "owner");
    assert!(
        me["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "licenses:write")
    );
    assert_eq!(me["authenticated_with"], "jwt");
    assert_eq!(response.header("x-ratelimit-limit"), Some("100"));
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn an_es256_token_is_verified_with_the_projects_jwks(db: PgPool) {
    let id = IdentityApp::start(db).await;
    let user = id.user("client").await;
    let mut spec = user.spec.clone();
    spec.alg = Algorithm::ES256;
    spec.kid = Some(ES256_KID.into());
    let token = id.tokens.mint(&spec);
    let response = crate::helpers::TestResponse::from(
        id.app
            .request(Method::GET, "/api/auth/me")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(response.assert_ok()["user"]["id"], user.id.to_string());
    assert_eq!(id.supabase.log.jwks_fetches.load(Ordering::SeqCst), 1);
    // A second request uses the cached keys.
    let again = id
        .app
        .request(Method::GET, "/api/auth/me")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(id.supabase.log.jwks_fetches.load(Ordering::SeqCst), 1);
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn bad_tokens_are_refused_with_a_code_that_says_why(db: PgPool) {
    let id = IdentityApp::start(db).await;
    let user = id.user("client").await;
    let with = |f: &dyn Fn(&mut TokenSpec)| {
        let mut spec = user.spec.clone();
        f(&mut spec);
        id.tokens.mint(&spec)
    };
    let forged = {
        let mut parts: Vec<String> = user.token.split('.').map(str::to_owned).collect();
        parts[2] = "c2lnbmF0dXJlLW9mLXNvbWVib2R5LWVsc2U".into();
        parts.join(".")
    };
    let cases = [
        (with(&|s| s.exp_in_secs = -120), "TOKEN_EXPIRED"),
        (with(&|s| s.aud = json!("anon")), "TOKEN_INVALID"),
        (
            with(&|s| s.issuer = Some("https://other.supabase.co/auth/v1".into())),
            "TOKEN_INVALID",
        ),
        (forged, "TOKEN_INVALID"),
        ("not.a.jwt".to_owned(), "TOKEN_INVALID"),
        (
            with(&|s| {
                s.alg = Algorithm::ES256;
                s.kid = Some("unknown-kid".into());
            }),
            "TOKEN_INVALID",
        ),
    ];
    for (token, code) in cases {
        let response = crate::helpers::TestResponse::from(
            id.app
                .request(Method::GET, "/api/auth/me")
                .bearer_auth(&token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        response.assert_error(401, code);
        assert_eq!(response.header("www-authenticate"), Some("Bearer"));
    }
    id.send(None, Method::GET, "/api/auth/me", None)
        .await
        .assert_error(401, "AUTH_REQUIRED");
    let basic = id
        .app
        .request(Method::GET, "/api/auth/me")
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await;
    crate::helpers::TestResponse::from(basic.unwrap())
        .await
        .assert_error(401, "TOKEN_INVALID");
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn unknown_kids_do_not_cause_a_fetch_storm(db: PgPool) {
    let id = IdentityApp::start(db).await;
    let user = id.user("client").await;
    let mut requests = Vec::new();
    for i in 0..20 {
        let mut spec = user.spec.clone();
        spec.alg = Algorithm::ES256;
        spec.kid = Some(format!("made-up-{i}"));
        let token = id.tokens.mint(&spec);
        requests.push(
            id.app
                .request(Method::GET, "/api/auth/me")
                .bearer_auth(token)
                .send(),
        );
    }
    for response in futures::future::join_all(requests).await {
        assert_eq!(response.unwrap().status(), 401);
    }
    assert_eq!(
        id.supabase.log.jwks_fetches.load(Ordering::SeqCst),
        1,
        "one fetch, then rate-limited"
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn a_first_request_creates_the_profile_with_the_role_of_app_metadata(db: PgPool) {
    let id = IdentityApp::start(db).await;
    for (role, expected) in [
        (Some("developer"), "developer"),
        (None, "client"),
        (Some("superuser"), "client"),
    ] {
        let mut spec = TokenSpec::new(
            Uuid::new_v4(),
            &format!("new-{}@example.test", Uuid::new_v4()),
        );
        spec.app_role = role.map(str::to_owned);
        let token = id.tokens.mint(&spec);
        let me = crate::helpers::TestResponse::from(
            id.app
                .request(Method::GET, "/api/auth/me")
                .bearer_auth(token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            me.assert_ok()["role"],
            expected,
            "app_metadata.role = {role:?}"
        );
    }
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn a_role_change_takes_effect_on_the_next_request(db: PgPool) {
    let id = IdentityApp::start(db).await;
    let admin = id.user("admin").await;
    let user = id.user("client").await;
    id.send(Some(&user), Method::GET, "/api/users", None)
        .await
        .assert_error(403, "INSUFFICIENT_ROLE");
    let path = format!("/api/users/{}", user.id);
    id.send(
        Some(&admin),
        Method::PATCH,
        &path,
        Some(json!({"role": "viewer"})),
    )
    .await
    .assert_ok();
    // Same token, next request: the new role applies.
    id.send(Some(&user), Method::GET, "/api/users", None)
        .await
        .assert_ok();
    let audit: serde_json::Value = sqlx::query_scalar(
        "SELECT changes FROM audit_logs WHERE action = 'user.updated' AND entity_id = $1",
    )
    .bind(user.id.to_string())
    .fetch_one(&id.db)
    .await
    .unwrap();
    assert_eq!(audit, json!({"role": ["client", "viewer"]}));
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn logout_revokes_the_session_on_every_instance(db: PgPool) {
    let prefix = format!("test:{}:", Uuid::now_v7());
    let a = IdentityApp::start_with(db.clone(), &[("REDIS_KEY_PREFIX", &prefix)]).await;
    // The same project (Supabase URL) and Redis behind both instances.
    let b = IdentityApp::start_with(
        db,
        &[
            ("REDIS_KEY_PREFIX", &prefix),
            ("SUPABASE_URL", &a.supabase.url),
        ],
    )
    .await;
    let user = a.user("client").await;
    let mut other_session = user.spec.clone();
    other_session.session_id = Some(Uuid::new_v4());
    let other_token = a.tokens.mint(&other_session);
    let via = |app: &IdentityApp, token: &str| {
        app.app
            .request(Method::GET, "/api/auth/me")
            .bearer_auth(token.to_owned())
            .send()
    };
    // Instance B has seen the session (and cached it) before the logout on A.
    assert_eq!(via(&b, &user.token).await.unwrap().status(), 200);

    let logout = a
        .send(Some(&user), Method::POST, "/api/auth/logout", None)
        .await;
    assert_eq!(logout.status, 204, "{}", logout.text);
    for app in [&a, &b] {
        let refused =
            crate::helpers::TestResponse::from(via(app, &user.token).await.unwrap()).await;
        refused.assert_error(401, "SESSION_REVOKED");
    }
    assert_eq!(
        via(&b, &other_token).await.unwrap().status(),
        200,
        "other sessions keep working"
    );
    assert_eq!(
        a.supabase.log.logouts.load(Ordering::SeqCst),
        1,
        "Supabase was told too"
    );
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_logs WHERE user_id = $1 ORDER BY created_at")
            .bind(user.id)
            .fetch_all(&a.db)
            .await
            .unwrap();
    assert!(
        actions.contains(&"user.login".to_owned()) && actions.contains(&"user.logout".to_owned()),
        "{actions:?}"
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn sessions_are_listed_and_revoked_by_their_owner(db: PgPool) {
    let id = IdentityApp::start(db).await;
    let user = id.user("client").await;
    let session = user.spec.session_id.unwrap();
    let list = id
        .send(
            Some(&user),
            Method::GET,
            &format!("/api/users/{}/sessions", user.id),
            None,
        )
        .await;
    let sessions = list.assert_ok().as_array().unwrap().clone();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["id"], session.to_string());
    assert_eq!(sessions[0]["current"], true);
    assert_eq!(sessions[0]["ip_address"], "127.0.0.1");

    let path = format!("/api/users/{}/sessions/{session}", user.id);
    assert_eq!(
        id.send(Some(&user), Method::DELETE, &path, None)
            .await
            .status,
        204
    );
    id.send(Some(&user), Method::GET, "/api/auth/me", None)
        .await
        .assert_error(401, "SESSION_REVOKED");
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn verify_reports_validity_and_claims_without_needing_auth(db: PgPool) {
    let id = IdentityApp::start(db).await;
    let user = id.user("client").await;
    let ok = id
        .send(
            None,
            Method::POST,
            "/api/auth/verify",
            Some(json!({"token": user.token})),
        )
        .await;
    let data = ok.assert_ok();
    assert_eq!(data["valid"], true);
    assert_eq!(data["claims"]["sub"], user.id.to_string());
    assert_eq!(data["claims"]["email"], user.email);

    let mut expired = user.spec.clone();
    expired.exp_in_secs = -300;
    let bad = id
        .send(
            None,
            Method::POST,
            "/api/auth/verify",
            Some(json!({"token": id.tokens.mint(&expired)})),
        )
        .await;
    assert_eq!(bad.assert_ok()["code"], "TOKEN_EXPIRED");
    assert!(bad.json["data"].get("claims").is_none());

    id.send(None, Method::POST, "/api/auth/verify", Some(json!({})))
        .await
        .assert_error(422, "VALIDATION_FAILED");
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn refresh_goes_through_supabase(db: PgPool) {
    let id = IdentityApp::start(db.clone()).await;
    let ok = id
        .send(
            None,
            Method::POST,
            "/api/auth/refresh",
            Some(json!({"refresh_token": GOOD_REFRESH_TOKEN})),
        )
        .await;
    let session = ok.assert_ok();
    assert_eq!(session["access_token"], "new-access-token");
    assert_eq!(session["refresh_token"], "rotated-refresh-token");
    id.send(
        None,
        Method::POST,
        "/api/auth/refresh",
        Some(json!({"refresh_token": "stolen"})),
    )
    .await
    .assert_error(401, "REFRESH_TOKEN_INVALID");

    let unconfigured = crate::helpers::TestApp::spawn(db).await;
    unconfigured
        .post_json(
            "/api/auth/refresh",
            &json!({"refresh_token": GOOD_REFRESH_TOKEN}),
        )
        .await
        .assert_error(503, "AUTH_PROVIDER_UNAVAILABLE");
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn a_token_without_the_projects_issuer_is_refused(db: PgPool) {
    let id = IdentityApp::start(db).await;
    let user = id.user("client").await;
    let tokens = crate::support::Tokens { issuer: None };
    let token = tokens.mint(&user.spec);
    let response = crate::helpers::TestResponse::from(
        id.app
            .request(Method::GET, "/api/auth/me")
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    response.assert_error(401, "TOKEN_INVALID");
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn refresh_works_even_when_the_expired_token_is_sent_along(db: PgPool) {
    let id = IdentityApp::start(db).await;
    let user = id.user("client").await;
    let mut expired = user.spec.clone();
    expired.exp_in_secs = -600;
    let response = id
        .app
        .request(Method::POST, "/api/auth/refresh")
        .bearer_auth(id.tokens.mint(&expired))
        .json(&json!({"refresh_token": GOOD_REFRESH_TOKEN}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
