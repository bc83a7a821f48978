//! The schema: the 35 tables of the spec, with the database enforcing what it can.

use sqlx::PgPool;

const SPEC_TABLES: [&str; 35] = [
    // V001
    "organizations",
    "users_profile",
    "subscription_plans",
    "licenses",
    "license_usage_log",
    "ai_models",
    "ai_api_pool",
    "prompts_master",
    "task_batches",
    "processed_tasks",
    "roi_metrics",
    "audit_logs",
    "telemetry_events",
    "system_config",
    "feature_flags",
    // V002
    "product_categories",
    "products",
    "product_reviews",
    "product_releases",
    "customer_assets",
    "asset_downloads",
    "payment_methods",
    "payment_gateways",
    "orders",
    "order_items",
    "invoices",
    "tax_rates",
    "coupons",
    "user_sessions",
    "user_api_keys",
    "webhooks",
    "webhook_deliveries",
    "license_ip_bindings",
    "license_validations",
    "license_collisions",
];

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn migrations_create_every_table_of_the_spec(db: PgPool) {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    for table in SPEC_TABLES {
        assert!(tables.iter().any(|t| t == table), "{table} missing");
    }
    // Beyond the spec's 35, only what the design adds, each in its own later migration.
    let mut added: Vec<&String> = tables
        .iter()
        .filter(|t| !SPEC_TABLES.contains(&t.as_str()))
        .collect();
    added.sort();
    assert_eq!(
        added,
        [
            "edges",
            "organization_members",
            "replication_log",
            "replication_report_batches",
            "replication_state"
        ],
        "unexpected tables"
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn closed_sets_and_money_are_enforced_by_the_database(db: PgPool) {
    let rejected = [
        "INSERT INTO users_profile (id, email, role) VALUES (gen_random_uuid(), 'a@b.c', 'superuser')",
        "INSERT INTO products (code, name, slug, product_type) VALUES ('AB', 'x', 'x', 'hardware')",
        "INSERT INTO products (code, name, slug, product_type, price_cents) VALUES ('AB', 'x', 'x', 'saas', -1)",
        "INSERT INTO coupons (code, coupon_type) VALUES ('SAVE10', 'bogus')",
    ];
    for sql in rejected {
        let err = sqlx::query(sql).execute(&db).await.expect_err(sql);
        assert_eq!(
            err.as_database_error().and_then(|e| e.code()).as_deref(),
            Some("23514"),
            "{sql}: {err}"
        );
    }
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn updated_at_is_maintained_by_the_database(db: PgPool) {
    let id: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO product_categories (name, slug, created_at, updated_at)
         VALUES ('A', 'a', now() - interval '1 day', now() - interval '1 day') RETURNING id",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let (created, updated): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("UPDATE product_categories SET name = 'B' WHERE id = $1 RETURNING created_at, updated_at")
            .bind(id)
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(
        updated > created + chrono::Duration::hours(23),
        "{created} {updated}"
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn the_audit_trail_is_append_only(db: PgPool) {
    sqlx::query("INSERT INTO audit_logs (actor_type, action, entity_type) VALUES ('system', 'settings.changed', 'settings')")
        .execute(&db)
        .await
        .unwrap();
    assert!(
        sqlx::query("UPDATE audit_logs SET action = 'user.login'")
            .execute(&db)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("DELETE FROM audit_logs")
            .execute(&db)
            .await
            .is_err()
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn seeding_twice_changes_nothing(db: PgPool) {
    let first = celaest_central::seed::run(&db).await.unwrap();
    assert!(
        first.plans >= 3 && first.users >= 4 && first.products >= 3 && first.ai_models >= 5,
        "{first:?}"
    );
    let second = celaest_central::seed::run(&db).await.unwrap();
    assert_eq!(first, second);
}
