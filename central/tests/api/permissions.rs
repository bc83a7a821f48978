//! The permission matrix of modules 2–4: for every endpoint, every role and anonymous callers,
//! the expected answer — and tenancy: a client never reads or changes another client's user or
//! organization (they are invisible to it: 404).

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{IdentityApp, TestUser};

struct Row {
    method: Method,
    path: String,
    body: Option<Value>,
    /// Expected status for anonymous, viewer, client (another tenant), developer, admin.
    expect: [u16; 5],
}

fn row(method: Method, path: String, body: Option<Value>, expect: [u16; 5]) -> Row {
    Row {
        method,
        path,
        body,
        expect,
    }
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn every_role_gets_exactly_its_permissions(db: PgPool) {
    let id = IdentityApp::start(db).await;
    let admin = id.user("admin").await;
    let developer = id.user("developer").await;
    let client_a = id.user("client").await;
    let viewer = id.user("viewer").await;
    // The other tenant: client B and its organization.
    let client_b = id.user("client").await;
    let org_b = id.org(&client_b, "tenant-b").await;
    let newcomer = id.user("client").await;
    let b = client_b.id;
    let ghost_session = Uuid::new_v4();

    let new_user = |n: u8| {
        Some(
            json!({"email": format!("created-{n}-{}@example.test", Uuid::new_v4()), "id": Uuid::new_v4()}),
        )
    };
    let new_org = |n: u8| Some(json!({"name": format!("Org {n}")}));
    let key = Some(json!({"name": "k", "scopes": ["users:read"]}));
    let name = Some(json!({"full_name": "Renamed"}));
    use Method as M;
    let rows = vec![
        row(
            M::GET,
            "/api/auth/me".into(),
            None,
            [401, 200, 200, 200, 200],
        ),
        row(M::GET, "/api/users".into(), None, [401, 200, 403, 403, 200]),
        row(
            M::POST,
            "/api/users".into(),
            new_user(1),
            [401, 403, 403, 403, 201],
        ),
        row(
            M::GET,
            format!("/api/users/{b}"),
            None,
            [401, 200, 404, 404, 200],
        ),
        row(
            M::PATCH,
            format!("/api/users/{b}"),
            name.clone(),
            [401, 403, 404, 404, 200],
        ),
        row(
            M::GET,
            format!("/api/users/{b}/profile"),
            None,
            [401, 200, 404, 404, 200],
        ),
        row(
            M::PATCH,
            format!("/api/users/{b}/profile"),
            name,
            [401, 403, 404, 404, 200],
        ),
        row(
            M::GET,
            format!("/api/users/{b}/sessions"),
            None,
            [401, 200, 404, 404, 200],
        ),
        row(
            M::DELETE,
            format!("/api/users/{b}/sessions/{ghost_session}"),
            None,
            [401, 403, 404, 404, 404],
        ),
        row(
            M::GET,
            format!("/api/users/{b}/api-keys"),
            None,
            [401, 200, 404, 404, 200],
        ),
        row(
            M::POST,
            format!("/api/users/{b}/api-keys"),
            key,
            [401, 403, 404, 404, 201],
        ),
        row(
            M::GET,
            "/api/organizations".into(),
            None,
            [401, 200, 200, 200, 200],
        ),
        row(
            M::POST,
            "/api/organizations".into(),
            new_org(1),
            [401, 403, 201, 201, 201],
        ),
        row(
            M::GET,
            format!("/api/organizations/{org_b}"),
            None,
            [401, 200, 404, 404, 200],
        ),
        row(
            M::PATCH,
            format!("/api/organizations/{org_b}"),
            Some(json!({"description": "x"})),
            [401, 403, 404, 404, 200],
        ),
        row(
            M::GET,
            format!("/api/organizations/{org_b}/members"),
            None,
            [401, 200, 404, 404, 200],
        ),
        row(
            M::GET,
            format!("/api/organizations/{org_b}/subscription"),
            None,
            [401, 200, 404, 404, 200],
        ),
        row(
            M::POST,
            format!("/api/organizations/{org_b}/members"),
            Some(json!({"user_id": newcomer.id})),
            [401, 403, 404, 404, 201],
        ),
        row(
            M::PATCH,
            format!("/api/organizations/{org_b}/members/{}", newcomer.id),
            Some(json!({"role": "admin"})),
            [401, 403, 404, 404, 200],
        ),
        row(
            M::DELETE,
            format!("/api/organizations/{org_b}/members/{}", newcomer.id),
            None,
            [401, 403, 404, 404, 204],
        ),
        row(
            M::DELETE,
            format!("/api/organizations/{org_b}"),
            None,
            [401, 403, 404, 404, 204],
        ),
        row(
            M::DELETE,
            format!("/api/users/{b}"),
            None,
            [401, 403, 404, 404, 204],
        ),
    ];
    let callers: [Option<&TestUser>; 5] = [
        None,
        Some(&viewer),
        Some(&client_a),
        Some(&developer),
        Some(&admin),
    ];
    let names = ["anonymous", "viewer", "client", "developer", "admin"];
    let mut failures = Vec::new();
    for row in &rows {
        for (i, caller) in callers.iter().enumerate() {
            // A body that creates something gets a fresh name per caller (names are unique).
            let body = row.body.clone().map(|mut b| {
                if let Some(name) = b.get("name").and_then(Value::as_str).map(str::to_owned) {
                    b["name"] = json!(format!("{name} {i}"));
                }
                b
            });
            let response = id.send(*caller, row.method.clone(), &row.path, body).await;
            if response.status.as_u16() != row.expect[i] {
                failures.push(format!(
                    "{} {} as {}: {} (expected {}) {}",
                    row.method, row.path, names[i], response.status, row.expect[i], response.text
                ));
            }
            if response.status.as_u16() >= 400 {
                assert_eq!(
                    response.json["success"], false,
                    "{} {}: not an envelope",
                    row.method, row.path
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "permission matrix mismatches:\n{}",
        failures.join("\n")
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn everyone_manages_their_own_things_but_not_their_own_role(db: PgPool) {
    let id = IdentityApp::start(db).await;
    for role in ["client", "developer", "viewer"] {
        let user = id.user(role).await;
        let me = format!("/api/users/{}", user.id);
        id.send(Some(&user), Method::GET, &me, None)
            .await
            .assert_ok();
        id.send(Some(&user), Method::GET, &format!("{me}/sessions"), None)
            .await
            .assert_ok();
        let keys = id
            .send(
                Some(&user),
                Method::POST,
                &format!("{me}/api-keys"),
                Some(json!({"name": "mine", "scopes": ["users:read"]})),
            )
            .await;
        assert_eq!(keys.status, 201, "{role}: {}", keys.text);
        let escalate = id
            .send(
                Some(&user),
                Method::PATCH,
                &me,
                Some(json!({"role": "admin"})),
            )
            .await;
        escalate.assert_error(403, "INSUFFICIENT_ROLE");
        let rename = id
            .send(
                Some(&user),
                Method::PATCH,
                &format!("{me}/profile"),
                Some(json!({"full_name": "Me"})),
            )
            .await;
        if role == "viewer" {
            rename.assert_error(403, "INSUFFICIENT_ROLE");
        } else {
            assert_eq!(rename.assert_ok()["full_name"], "Me");
        }
    }
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn lists_only_show_what_the_caller_may_see(db: PgPool) {
    let id = IdentityApp::start(db).await;
    let a = id.user("client").await;
    let b = id.user("client").await;
    let org_a = id.org(&a, "only-a").await;
    id.org(&b, "only-b").await;
    let orgs = id
        .send(Some(&a), Method::GET, "/api/organizations", None)
        .await;
    let ids: Vec<&str> = orgs
        .assert_ok()
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [org_a.to_string()]);
    assert_eq!(orgs.json["meta"]["total"], 1);

    let viewer = id.user("viewer").await;
    let all = id
        .send(
            Some(&viewer),
            Method::GET,
            "/api/organizations?sort=name&order=asc",
            None,
        )
        .await;
    assert_eq!(all.json["meta"]["total"], 2);
    let users = id
        .send(
            Some(&viewer),
            Method::GET,
            "/api/users?role=client&sort=email&per_page=1",
            None,
        )
        .await;
    assert_eq!(users.json["meta"]["total"], 2);
    assert_eq!(users.json["meta"]["total_pages"], 2);
    assert_eq!(users.assert_ok().as_array().unwrap().len(), 1);
    let bad = id
        .send(Some(&viewer), Method::GET, "/api/users?role=root", None)
        .await;
    bad.assert_error(422, "VALIDATION_FAILED");
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn an_organization_always_keeps_an_owner(db: PgPool) {
    let id = IdentityApp::start(db).await;
    let owner = id.user("client").await;
    let org = id.org(&owner, "solo").await;
    let me = format!("/api/organizations/{org}/members/{}", owner.id);
    id.send(Some(&owner), Method::DELETE, &me, None)
        .await
        .assert_error(409, "LAST_OWNER");
    id.send(
        Some(&owner),
        Method::PATCH,
        &me,
        Some(json!({"role": "member"})),
    )
    .await
    .assert_error(409, "LAST_OWNER");

    let partner = id.user("client").await;
    let add = id
        .send(
            Some(&owner),
            Method::POST,
            &format!("/api/organizations/{org}/members"),
            Some(json!({"email": partner.email, "role": "owner"})),
        )
        .await;
    assert_eq!(add.status, 201, "{}", add.text);
    assert_eq!(add.json["data"]["role"], "owner");
    let again = id
        .send(
            Some(&owner),
            Method::POST,
            &format!("/api/organizations/{org}/members"),
            Some(json!({"user_id": partner.id})),
        )
        .await;
    again.assert_error(409, "ALREADY_MEMBER");
    // Now the first owner may step down and leave.
    id.send(
        Some(&owner),
        Method::PATCH,
        &me,
        Some(json!({"role": "member"})),
    )
    .await
    .assert_ok();
    assert_eq!(
        id.send(Some(&owner), Method::DELETE, &me, None)
            .await
            .status,
        204
    );
    let actions = id.audit_actions(&org.to_string()).await;
    assert_eq!(
        actions,
        [
            "organization.member_added",
            "organization.member_role_changed",
            "organization.member_removed"
        ]
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn a_plain_member_cannot_learn_who_has_an_account(db: PgPool) {
    let id = IdentityApp::start(db).await;
    let owner = id.user("client").await;
    let member = id.user("client").await;
    let outsider = id.user("client").await;
    let org = id.org(&owner, "private").await;
    let members = format!("/api/organizations/{org}/members");
    id.send(
        Some(&owner),
        Method::POST,
        &members,
        Some(json!({"user_id": member.id})),
    )
    .await
    .assert_ok();
    for body in [
        json!({"email": outsider.email}),
        json!({"email": "nobody@example.test"}),
        json!({"user_id": outsider.id}),
        json!({"user_id": Uuid::new_v4()}),
    ] {
        id.send(Some(&member), Method::POST, &members, Some(body))
            .await
            .assert_error(403, "INSUFFICIENT_ROLE");
    }
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn organization_admins_manage_members_but_not_owners(db: PgPool) {
    let id = IdentityApp::start(db).await;
    let owner = id.user("client").await;
    let org_admin = id.user("client").await;
    let member = id.user("client").await;
    let org = id.org(&owner, "managed").await;
    let members = format!("/api/organizations/{org}/members");
    id.send(
        Some(&owner),
        Method::POST,
        &members,
        Some(json!({"user_id": org_admin.id, "role": "admin"})),
    )
    .await
    .assert_ok();
    id.send(
        Some(&org_admin),
        Method::POST,
        &members,
        Some(json!({"user_id": member.id})),
    )
    .await
    .assert_ok();
    let promote = id
        .send(
            Some(&org_admin),
            Method::PATCH,
            &format!("{members}/{}", member.id),
            Some(json!({"role": "owner"})),
        )
        .await;
    promote.assert_error(403, "INSUFFICIENT_ROLE");
    let demote_owner = id
        .send(
            Some(&org_admin),
            Method::DELETE,
            &format!("{members}/{}", owner.id),
            None,
        )
        .await;
    demote_owner.assert_error(403, "INSUFFICIENT_ROLE");
    let by_member = id
        .send(
            Some(&member),
            Method::PATCH,
            &format!("/api/organizations/{org}"),
            Some(json!({"name": "Mine"})),
        )
        .await;
    by_member.assert_error(403, "INSUFFICIENT_ROLE");
    id.send(
        Some(&org_admin),
        Method::PATCH,
        &format!("/api/organizations/{org}"),
        Some(json!({"name": "Renamed"})),
    )
    .await
    .assert_ok();
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn creating_organizations_makes_the_creator_owner_and_validates(db: PgPool) {
    let id = IdentityApp::start(db).await;
    let user = id.user("client").await;
    let created = id
        .send(
            Some(&user),
            Method::POST,
            "/api/organizations",
            Some(json!({"name": "Compañía Ñandú"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let org = created.assert_ok().clone();
    assert_eq!(org["slug"], "compania-nandu");
    assert_eq!(
        org["plan_code"],
        serde_json::Value::Null,
        "no plans exist in a fresh database"
    );
    let members = id
        .send(
            Some(&user),
            Method::GET,
            &format!("/api/organizations/{}/members", org["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(members.assert_ok()[0]["role"], "owner");
    let sub = id
        .send(
            Some(&user),
            Method::GET,
            &format!(
                "/api/organizations/{}/subscription",
                org["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(sub.assert_ok()["plan"], serde_json::Value::Null);
    assert_eq!(sub.json["data"]["usage"]["members"], 1);

    let unknown_plan = id
        .send(
            Some(&user),
            Method::POST,
            "/api/organizations",
            Some(json!({"name": "P", "plan": "platinum"})),
        )
        .await;
    // A well-formed request naming something that does not exist conflicts with the state.
    assert_eq!(
        unknown_plan.assert_error(409, "CONFLICT")["details"]["fields"][0]["field"],
        "plan"
    );
    let dup = id
        .send(
            Some(&user),
            Method::POST,
            "/api/organizations",
            Some(json!({"name": "Other", "slug": "compania-nandu"})),
        )
        .await;
    assert_eq!(
        dup.assert_error(409, "ALREADY_EXISTS")["details"]["field"],
        "slug"
    );
    let bad = id
        .send(Some(&user), Method::POST, "/api/organizations", Some(json!({"name": "", "slug": "Bad Slug", "billing_email": "nope", "website": "ftp://x"})))
        .await;
    let fields: Vec<&str> = bad.assert_error(422, "VALIDATION_FAILED")["details"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "slug", "website", "billing_email"]);
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn admins_create_users_through_supabase_and_delete_them_with_their_access(db: PgPool) {
    let id = IdentityApp::start(db).await;
    let admin = id.user("admin").await;
    let created = id
        .send(Some(&admin), Method::POST, "/api/users", Some(json!({"email": "New.Person@Example.test", "role": "developer", "password": "s3cret-pass"})))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let user = created.assert_ok();
    assert_eq!(user["email"], "new.person@example.test");
    assert_eq!(user["role"], "developer");
    let supabase_id = id.supabase.log.created_users.lock().unwrap()[0].0;
    assert_eq!(user["id"], supabase_id.to_string());
    let dup = id
        .send(
            Some(&admin),
            Method::POST,
            "/api/users",
            Some(json!({"email": "new.person@example.test"})),
        )
        .await;
    dup.assert_error(409, "ALREADY_EXISTS");
    let invalid = id
        .send(
            Some(&admin),
            Method::POST,
            "/api/users",
            Some(json!({"email": "not-an-email", "role": "god"})),
        )
        .await;
    invalid.assert_error(422, "VALIDATION_FAILED");
    let nowhere = id
        .send(
            Some(&admin),
            Method::POST,
            "/api/users",
            Some(json!({"email": "x@example.test", "organization_id": Uuid::new_v4()})),
        )
        .await;
    let field = &nowhere.assert_error(409, "CONFLICT")["details"]["fields"][0];
    assert_eq!(
        (field["field"].as_str(), field["code"].as_str()),
        (Some("organization_id"), Some("NOT_FOUND"))
    );

    // Deleting a user revokes its sessions and keys.
    let victim = id.user("client").await;
    let key = id
        .send(
            Some(&victim),
            Method::POST,
            &format!("/api/users/{}/api-keys", victim.id),
            Some(json!({"name": "k", "scopes": ["*"]})),
        )
        .await;
    let secret = key.json["data"]["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        id.send(
            Some(&admin),
            Method::DELETE,
            &format!("/api/users/{}", victim.id),
            None
        )
        .await
        .status,
        204
    );
    id.send(Some(&victim), Method::GET, "/api/auth/me", None)
        .await
        .assert_error(401, "SESSION_REVOKED");
    let by_key = id
        .app
        .request(Method::GET, "/api/auth/me")
        .header("x-api-key", secret)
        .send()
        .await
        .unwrap();
    crate::helpers::TestResponse::from(by_key)
        .await
        .assert_error(401, "API_KEY_REVOKED");
    id.send(
        Some(&admin),
        Method::GET,
        &format!("/api/users/{}", victim.id),
        None,
    )
    .await
    .assert_error(404, "NOT_FOUND");
    assert!(
        id.audit_actions(&victim.id.to_string())
            .await
            .contains(&"user.deleted".to_owned())
    );
}
