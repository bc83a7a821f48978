//! Pagination, whitelisted sorting and filters, as every list endpoint uses them, over a real
//! table (the seeded products) through a probe route wrapped in the real stack.

use axum::{Router, extract::State, routing::get};
use celaest_central::{
    http::{
        self,
        extract::Query,
        pagination::{Filters, ListParams, Order, Sort, SortSpec, TimeBound},
        response::Page,
    },
    state::AppState,
};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Postgres, QueryBuilder};

use crate::helpers::{TestApp, test_config};

const SORT: SortSpec = SortSpec {
    allowed: &[
        ("created_at", "p.created_at"),
        ("name", "p.name"),
        ("price", "p.price_cents"),
    ],
    default: Sort {
        column: "p.created_at",
        order: Order::Desc,
    },
};

#[derive(Debug, Deserialize)]
struct ProductFilters {
    status: Option<String>,
    product_type: Option<String>,
    created_after: Option<TimeBound>,
    q: Option<String>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct Row {
    code: String,
    name: String,
    price_cents: i64,
}

async fn list(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
    Query(filters): Query<ProductFilters>,
) -> celaest_central::http::Result<Page<Row>> {
    let list = params.validate(&SORT)?;
    let apply = |qb: &mut QueryBuilder<Postgres>| {
        Filters::new(qb)
            .eq("p.status", filters.status.clone())
            .eq("p.product_type", filters.product_type.clone())
            .after("p.created_at", filters.created_after)
            .search(&["p.name", "p.code"], filters.q.clone());
    };
    let mut count = QueryBuilder::new("SELECT count(*) FROM products p");
    apply(&mut count);
    let total: i64 = count.build_query_scalar().fetch_one(&state.db).await?;
    let mut rows = QueryBuilder::new("SELECT p.code, p.name, p.price_cents FROM products p");
    apply(&mut rows);
    list.push_order_and_page(&mut rows, "p.id");
    let items = rows.build_query_as::<Row>().fetch_all(&state.db).await?;
    Ok(Page::new(
        items,
        list.page,
        u64::try_from(total).unwrap_or(0),
    ))
}

async fn app(db: PgPool) -> TestApp {
    celaest_central::seed::run(&db).await.unwrap();
    let state = AppState::new(test_config(&[]), db).unwrap();
    let router = http::with_middleware(
        Router::new().route("/probe/products", get(list)),
        &state.config,
    )
    .with_state(state.clone());
    TestApp::serve(state, router).await
}

fn codes(data: &serde_json::Value) -> Vec<&str> {
    data.as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect()
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn pages_carry_meta_and_honour_per_page(db: PgPool) {
    let app = app(db).await;
    let first = app
        .get("/probe/products?per_page=2&sort=name&order=asc")
        .await;
    assert_eq!(codes(first.assert_ok()), ["CRM", "DATA"]);
    assert_eq!(
        first.json["meta"],
        serde_json::json!({"page": 1, "per_page": 2, "total": 3, "total_pages": 2})
    );
    let second = app
        .get("/probe/products?per_page=2&page=2&sort=name&order=asc")
        .await;
    assert_eq!(codes(second.assert_ok()), ["MKT"]);
    let beyond = app.get("/probe/products?per_page=2&page=9").await;
    assert!(beyond.assert_ok().as_array().unwrap().is_empty());
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn sorting_follows_the_whitelist(db: PgPool) {
    let app = app(db).await;
    let by_price = app.get("/probe/products?sort=price&order=desc").await;
    assert_eq!(codes(by_price.assert_ok()), ["CRM", "MKT", "DATA"]);
    let error = app
        .get("/probe/products?sort=password")
        .await
        .assert_error(422, "VALIDATION_FAILED")
        .clone();
    assert_eq!(error["details"]["fields"][0]["field"], "sort");
    assert!(
        error["details"]["fields"][0]["message"]
            .as_str()
            .unwrap()
            .contains("created_at, name, price")
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn filters_narrow_the_list(db: PgPool) {
    let app = app(db).await;
    let published = app
        .get("/probe/products?status=published&sort=name&order=asc")
        .await;
    assert_eq!(codes(published.assert_ok()), ["CRM", "MKT"]);
    assert_eq!(published.json["meta"]["total"], 2);
    let saas = app.get("/probe/products?product_type=saas").await;
    assert_eq!(codes(saas.assert_ok()), ["CRM"]);
    let searched = app.get("/probe/products?q=suite").await;
    assert_eq!(codes(searched.assert_ok()), ["MKT"]);
    let future = app.get("/probe/products?created_after=2999-01-01").await;
    assert_eq!(future.json["meta"]["total"], 0);
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn out_of_range_or_malformed_parameters_are_422(db: PgPool) {
    let app = app(db).await;
    for (query, field) in [
        ("per_page=101", "per_page"),
        ("per_page=0", "per_page"),
        ("page=0", "page"),
        ("page=abc", "page"),
        ("order=up", "order"),
        ("created_after=yesterday", "created_after"),
    ] {
        let response = app.get(&format!("/probe/products?{query}")).await;
        let error = response.assert_error(422, "VALIDATION_FAILED");
        assert_eq!(error["details"]["fields"][0]["field"], field, "{query}");
    }
}
