//! The SQL of the catalogue: categories and products.

use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{Category, Product, ProductFilters};
use crate::http::pagination::{Filters, ListRequest};

/// Which products a caller may see.
#[derive(Debug, Clone, Copy)]
pub enum Catalogue {
    /// Every product not deleted (managers).
    All,
    /// Published and coming-soon products only.
    Public,
}

const PRODUCT_COLUMNS: &str = "p.id, p.code, p.name, p.slug, p.short_description, p.description, p.category_id, \
    p.product_type, p.status, p.price_cents, p.compare_at_price_cents, p.currency, p.billing_interval, \
    p.license_duration_days, p.default_max_ips, p.collision_threshold, p.is_featured, p.thumbnail_url, p.tags, \
    p.features, p.metadata, p.rating_avg::float8 AS rating_avg, p.rating_count, p.sales_count, p.owner_id, \
    p.published_at, p.created_at, p.updated_at";

pub async fn list_categories(db: &PgPool, include_inactive: bool) -> sqlx::Result<Vec<Category>> {
    sqlx::query_as!(
        Category,
        r#"SELECT id, name, slug, description, parent_id, icon, sort_order, is_active, created_at, updated_at
           FROM product_categories WHERE is_active OR $1 ORDER BY sort_order, name"#,
        include_inactive
    )
    .fetch_all(db)
    .await
}

pub async fn get_category(db: &PgPool, id: Uuid) -> sqlx::Result<Option<Category>> {
    sqlx::query_as!(
        Category,
        r#"SELECT id, name, slug, description, parent_id, icon, sort_order, is_active, created_at, updated_at
           FROM product_categories WHERE id = $1"#,
        id
    )
    .fetch_optional(db)
    .await
}

pub async fn save_category(conn: &mut PgConnection, c: &Category) -> sqlx::Result<Category> {
    sqlx::query_as!(
        Category,
        r#"INSERT INTO product_categories (id, name, slug, description, parent_id, icon, sort_order, is_active)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (id) DO UPDATE SET name = $2, slug = $3, description = $4, parent_id = $5, icon = $6,
                                          sort_order = $7, is_active = $8
           RETURNING id, name, slug, description, parent_id, icon, sort_order, is_active, created_at, updated_at"#,
        c.id,
        c.name,
        c.slug,
        c.description,
        c.parent_id,
        c.icon,
        c.sort_order,
        c.is_active
    )
    .fetch_one(conn)
    .await
}

pub async fn delete_category(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<bool> {
    Ok(
        sqlx::query!("DELETE FROM product_categories WHERE id = $1", id)
            .execute(conn)
            .await?
            .rows_affected()
            == 1,
    )
}

pub async fn list_products(
    db: &PgPool,
    catalogue: Catalogue,
    filters: &ProductFilters,
    list: &ListRequest,
) -> sqlx::Result<(Vec<Product>, i64)> {
    let apply = |qb: &mut QueryBuilder<Postgres>| {
        let mut f = Filters::new(qb);
        f.raw("p.deleted_at IS NULL");
        if let Catalogue::Public = catalogue {
            f.raw("p.status IN ('published', 'coming_soon')");
        }
        f.eq("p.status", filters.status.clone())
            .eq("p.product_type", filters.product_type.clone())
            .eq("p.category_id", filters.category_id)
            .eq("p.is_featured", filters.is_featured)
            .eq("p.code", filters.code.clone())
            .after("p.created_at", filters.created_after)
            .before("p.created_at", filters.created_before)
            .search(
                &["p.name", "p.code", "p.short_description"],
                filters.q.clone(),
            );
        if let Some(min) = filters.min_price {
            f.condition("p.price_cents >= ", min, "");
        }
        if let Some(max) = filters.max_price {
            f.condition("p.price_cents <= ", max, "");
        }
    };
    let mut count = QueryBuilder::new("SELECT count(*) FROM products p");
    apply(&mut count);
    let total = count.build_query_scalar::<i64>().fetch_one(db).await?;
    let mut rows = QueryBuilder::new(format!("SELECT {PRODUCT_COLUMNS} FROM products p"));
    apply(&mut rows);
    list.push_order_and_page(&mut rows, "p.id");
    Ok((rows.build_query_as::<Product>().fetch_all(db).await?, total))
}

pub async fn get_product(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Product>> {
    let mut qb = QueryBuilder::new(format!(
        "SELECT {PRODUCT_COLUMNS} FROM products p WHERE p.deleted_at IS NULL AND p.id = "
    ));
    qb.push_bind(id);
    qb.build_query_as::<Product>().fetch_optional(conn).await
}

/// Inserts or updates every column of `p` (the service decided the values).
pub async fn save_product(conn: &mut PgConnection, p: &Product) -> sqlx::Result<()> {
    sqlx::query!(
        r#"INSERT INTO products (id, code, name, slug, short_description, description, category_id, product_type, status,
                                price_cents, compare_at_price_cents, currency, billing_interval, license_duration_days,
                                default_max_ips, collision_threshold, is_featured, thumbnail_url, tags, features,
                                metadata, owner_id, published_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)
           ON CONFLICT (id) DO UPDATE SET
             code = $2, name = $3, slug = $4, short_description = $5, description = $6, category_id = $7,
             product_type = $8, status = $9, price_cents = $10, compare_at_price_cents = $11, currency = $12,
             billing_interval = $13, license_duration_days = $14, default_max_ips = $15, collision_threshold = $16,
             is_featured = $17, thumbnail_url = $18, tags = $19, features = $20, metadata = $21, published_at = $23"#,
        p.id,
        p.code,
        p.name,
        p.slug,
        p.short_description,
        p.description,
        p.category_id,
        p.product_type,
        p.status,
        p.price_cents,
        p.compare_at_price_cents,
        p.currency,
        p.billing_interval,
        p.license_duration_days,
        p.default_max_ips,
        p.collision_threshold,
        p.is_featured,
        p.thumbnail_url,
        &p.tags,
        p.features,
        p.metadata,
        p.owner_id,
        p.published_at
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn soft_delete_product(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE products SET deleted_at = now(), status = 'archived' WHERE id = $1",
        id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes the product's availability to the edges' outbox.
pub async fn replicate(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<()> {
    sqlx::query!("SELECT replicate_product($1)", id)
        .fetch_one(conn)
        .await?;
    Ok(())
}
