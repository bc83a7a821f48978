//! MODULO 7, the part licensing needs: product categories and products.
//!
//! Admins and developers manage the catalogue and see every product; everyone else who is
//! authenticated reads published (and coming-soon) products. A product's `code` is the
//! `PRODUCT_CODE` inside its license keys; whether its licenses validate follows its status
//! (published or archived: yes; draft or coming soon: not yet; deleted: no), and every change of
//! that reaches the edges through the outbox.

pub mod store;

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use self::store::Catalogue;
use crate::{
    audit::{self, AuditEvent, RequestMeta},
    auth::principal::{Principal, ProductsRead, ProductsWrite, Scoped},
    docs::{ApiErrorBody, Envelope, PageEnvelope},
    http::{
        Error, ErrorCode, Result, ResultExt,
        extract::{Json, Path, Query},
        pagination::{ListParams, ListQuery, Listed, Order, Sort, SortSpec, TimeBound},
        response::{Created, Data, NoContent, Page},
        validate::{
            self, Creates, FieldErrors, FieldProblem, Int, New, Text, Validate, one_of_schema,
        },
    },
    orgs::{optional_slug, service::derived_slug, validate_slug},
    state::AppState,
};

pub const PRODUCT_TYPES: &[&str] = &[
    "software", "saas", "api", "template", "dataset", "course", "service",
];
pub const PRODUCT_STATUSES: &[&str] = &["draft", "published", "archived", "coming_soon"];
pub const BILLING_INTERVALS: &[&str] = &["one_time", "month", "year"];

/// A category's name.
type CategoryName = Text<1, 100>;
/// A category's or product's description.
type CategoryDescription = Text<0, 2000>;
/// A category's icon name.
type Icon = Text<1, 100>;
/// A category's place among its siblings.
type SortOrder = Int<-10_000, 10_000>;
/// A product's name.
type ProductName = Text<1, 200>;
type ShortDescription = Text<0, 500>;
type ProductDescription = Text<0, 20_000>;
/// A price in cents.
type Price = Int<0, 100_000_000_000>;
type DurationDays = Int<1, 36_500>;
type MaxIps = Int<1, 1000>;
type CollisionThreshold = Int<1, 1_000_000>;

/// Most tags a product carries, and the longest tag.
const TAGS_MAX: usize = 50;

fn optional_product_type() -> utoipa::openapi::ObjectBuilder {
    one_of_schema(PRODUCT_TYPES, true)
}

fn optional_product_status() -> utoipa::openapi::ObjectBuilder {
    one_of_schema(PRODUCT_STATUSES, true)
}

fn optional_billing_interval() -> utoipa::openapi::ObjectBuilder {
    one_of_schema(BILLING_INTERVALS, true)
}

fn nullable_string() -> utoipa::openapi::ObjectBuilder {
    utoipa::openapi::ObjectBuilder::new().schema_type(
        utoipa::openapi::schema::SchemaType::from_iter([
            utoipa::openapi::Type::String,
            utoipa::openapi::Type::Null,
        ]),
    )
}

/// A product code: what `celaest_protocol::ProductCode::parse` accepts.
fn optional_product_code() -> utoipa::openapi::ObjectBuilder {
    nullable_string().pattern(Some(format!(
        "^[A-Z0-9]{{{},{}}}$",
        celaest_protocol::ProductCode::MIN_LEN,
        celaest_protocol::ProductCode::MAX_LEN
    )))
}

/// An ISO 4217 currency code.
fn optional_currency() -> utoipa::openapi::ObjectBuilder {
    nullable_string().pattern(Some("^[A-Z]{3}$"))
}

fn optional_tags() -> utoipa::openapi::ArrayBuilder {
    utoipa::openapi::ArrayBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            utoipa::openapi::Type::Array,
            utoipa::openapi::Type::Null,
        ]))
        .items(
            validate::query_text()
                .min_length(Some(1))
                .max_length(Some(TAGS_MAX)),
        )
        .max_items(Some(TAGS_MAX))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_categories, create_category))
        .routes(routes!(get_category, update_category, delete_category))
        .routes(routes!(list_products, create_product))
        .routes(routes!(get_product, update_product, delete_product))
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Category {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    pub parent_id: Option<Uuid>,
    pub icon: Option<String>,
    pub sort_order: i32,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Product {
    pub id: Uuid,
    /// The `PRODUCT_CODE` of license keys, e.g. `MKT`.
    pub code: String,
    pub name: String,
    pub slug: String,
    pub short_description: Option<String>,
    pub description: Option<String>,
    pub category_id: Option<Uuid>,
    /// software, saas, api, template, dataset, course, service.
    pub product_type: String,
    /// draft, published, archived, coming_soon.
    pub status: String,
    /// Minor units of `currency`.
    pub price_cents: i64,
    pub compare_at_price_cents: Option<i64>,
    pub currency: String,
    pub billing_interval: String,
    /// Licenses last this long; `null` = perpetual.
    pub license_duration_days: Option<i32>,
    pub default_max_ips: i32,
    /// Collisions before a license is revoked automatically; `null` = the global setting.
    pub collision_threshold: Option<i32>,
    pub is_featured: bool,
    pub thumbnail_url: Option<String>,
    pub tags: Vec<String>,
    pub features: serde_json::Value,
    pub metadata: serde_json::Value,
    pub rating_avg: Option<f64>,
    pub rating_count: i32,
    pub sales_count: i32,
    pub owner_id: Option<Uuid>,
    pub published_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProductFilters {
    #[param(schema_with = validate::query_text)]
    pub status: Option<String>,
    #[param(schema_with = validate::query_text)]
    pub product_type: Option<String>,
    pub category_id: Option<Uuid>,
    pub is_featured: Option<bool>,
    #[param(schema_with = validate::query_text)]
    pub code: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    /// Substring of name, code or short description.
    #[param(schema_with = validate::query_text)]
    pub q: Option<String>,
    #[param(schema_with = TimeBound::schema)]
    pub created_after: Option<TimeBound>,
    #[param(schema_with = TimeBound::schema)]
    pub created_before: Option<TimeBound>,
}

const PRODUCT_SORT: SortSpec = SortSpec {
    allowed: &[
        ("created_at", "p.created_at"),
        ("name", "p.name"),
        ("price", "p.price_cents"),
        ("published_at", "p.published_at"),
        ("code", "p.code"),
    ],
    default: Sort {
        column: "p.created_at",
        order: Order::Desc,
    },
};

impl Listed for Product {
    const SORT: SortSpec = PRODUCT_SORT;
}

fn ensure_manager(principal: &Principal) -> Result<()> {
    principal.ensure(principal.manages_catalogue())
}

fn slug_conflict() -> Error {
    Error::with_details(ErrorCode::AlreadyExists, json!({ "field": "slug" }))
}

// ----- categories -------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryInput {
    /// Required to create a category.
    #[schema(schema_with = CategoryName::optional)]
    pub name: Option<String>,
    #[schema(schema_with = optional_slug)]
    pub slug: Option<String>,
    #[schema(schema_with = CategoryDescription::optional)]
    pub description: Option<String>,
    pub parent_id: Option<Uuid>,
    #[schema(schema_with = Icon::optional)]
    pub icon: Option<String>,
    #[schema(schema_with = SortOrder::optional)]
    pub sort_order: Option<i32>,
    pub is_active: Option<bool>,
}

impl Validate for CategoryInput {
    fn validate(&self, errors: &mut FieldErrors) {
        CategoryName::check_opt(errors, "name", self.name.as_deref());
        if let Some(slug) = &self.slug {
            validate_slug(errors, slug);
        }
        CategoryDescription::check_opt(errors, "description", self.description.as_deref());
        Icon::check_opt(errors, "icon", self.icon.as_deref());
        SortOrder::check_opt(errors, "sort_order", self.sort_order.map(i64::from));
    }
}

impl Creates for CategoryInput {
    const REQUIRED: &'static [&'static str] = &["name"];

    fn has(&self, field: &str) -> bool {
        match field {
            "name" => self.name.is_some(),
            _ => true,
        }
    }
}

/// The body creating a category, for the document: [`CategoryInput`] with a name.
pub struct NewCategory;

impl utoipa::PartialSchema for NewCategory {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        New::<CategoryInput>::schema()
    }
}

impl ToSchema for NewCategory {}

/// Product categories (inactive ones only for admins and developers).
#[utoipa::path(get, path = "/api/categories", tag = "products", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<Vec<Category>>), (status = 401, body = ApiErrorBody)))]
async fn list_categories(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<ProductsRead>,
) -> Result<Data<Vec<Category>>> {
    Ok(Data(
        store::list_categories(&state.db, principal.manages_catalogue()).await?,
    ))
}

/// One category.
#[utoipa::path(get, path = "/api/categories/{id}", tag = "products", params(("id" = Uuid, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<Category>), (status = 404, body = ApiErrorBody)))]
async fn get_category(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<ProductsRead>,
    Path(id): Path<Uuid>,
) -> Result<Data<Category>> {
    let category = store::get_category(&state.db, id)
        .await?
        .filter(|c| c.is_active || principal.manages_catalogue());
    category.map(Data).ok_or_else(Error::not_found)
}

/// Creates a category (admins and developers).
#[utoipa::path(post, path = "/api/categories", tag = "products", request_body = NewCategory,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Envelope<Category>), (status = 403, body = ApiErrorBody), (status = 409, body = ApiErrorBody),
              (status = 422, body = ApiErrorBody)))]
async fn create_category(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<ProductsWrite>,
    meta: RequestMeta,
    Json(New(body)): Json<New<CategoryInput>>,
) -> Result<Created<Category>> {
    ensure_manager(&principal)?;
    let name = body
        .name
        .clone()
        .ok_or_else(|| Error::field("name", FieldProblem::Required))?;
    let now = Utc::now();
    let category = Category {
        id: Uuid::now_v7(),
        slug: body
            .slug
            .clone()
            .unwrap_or_else(|| derived_slug(&name, "category")),
        name: name.trim().to_owned(),
        description: body.description,
        parent_id: body.parent_id,
        icon: body.icon,
        sort_order: body.sort_order.unwrap_or(0),
        is_active: body.is_active.unwrap_or(true),
        created_at: now,
        updated_at: now,
    };
    save_category(&state, &principal, &meta, category, "category.created")
        .await
        .map(Created)
}

async fn save_category(
    state: &AppState,
    principal: &Principal,
    meta: &RequestMeta,
    category: Category,
    action: &'static str,
) -> Result<Category> {
    if category.slug.is_empty() {
        return Err(Error::field("slug", FieldProblem::Required));
    }
    let mut tx = state.db.begin().await?;
    let saved = store::save_category(&mut tx, &category)
        .await
        .on_constraint("product_categories_slug_key", slug_conflict)
        .on_constraint("product_categories_parent_id_fkey", || {
            Error::conflict("parent_id", FieldProblem::NotFound)
        })
        .on_constraint("product_categories_parent_id_check", || {
            Error::field(
                "parent_id",
                FieldProblem::Custom {
                    code: "SELF_PARENT",
                    es: "no puede ser su propia categoría padre",
                    en: "cannot be its own parent",
                },
            )
        })?;
    let event = AuditEvent::new(action, "category", saved.id).meta("slug", &saved.slug);
    audit::record(&mut tx, principal.into(), Some(meta), event).await?;
    tx.commit().await?;
    Ok(saved)
}

/// Changes a category (admins and developers).
#[utoipa::path(patch, path = "/api/categories/{id}", tag = "products", params(("id" = Uuid, Path)), request_body = CategoryInput,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<Category>), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
              (status = 409, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
async fn update_category(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<ProductsWrite>,
    meta: RequestMeta,
    Path(id): Path<Uuid>,
    Json(body): Json<CategoryInput>,
) -> Result<Data<Category>> {
    ensure_manager(&principal)?;
    let mut category = store::get_category(&state.db, id)
        .await?
        .ok_or_else(Error::not_found)?;
    if let Some(name) = body.name {
        category.name = name.trim().to_owned();
    }
    category.slug = body.slug.unwrap_or(category.slug);
    category.description = body.description.or(category.description);
    category.parent_id = body.parent_id.or(category.parent_id);
    category.icon = body.icon.or(category.icon);
    category.sort_order = body.sort_order.unwrap_or(category.sort_order);
    category.is_active = body.is_active.unwrap_or(category.is_active);
    save_category(&state, &principal, &meta, category, "category.updated")
        .await
        .map(Data)
}

/// Deletes a category; its products and subcategories are left without one.
#[utoipa::path(delete, path = "/api/categories/{id}", tag = "products", params(("id" = Uuid, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 204, description = "Deleted"), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn delete_category(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<ProductsWrite>,
    meta: RequestMeta,
    Path(id): Path<Uuid>,
) -> Result<NoContent> {
    ensure_manager(&principal)?;
    let mut tx = state.db.begin().await?;
    if !store::delete_category(&mut tx, id).await? {
        return Err(Error::not_found());
    }
    audit::record(
        &mut tx,
        (&principal).into(),
        Some(&meta),
        AuditEvent::new("category.deleted", "category", id),
    )
    .await?;
    tx.commit().await?;
    Ok(NoContent)
}

// ----- products ---------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductInput {
    /// 2–10 of `A-Z0-9`; cannot change once licenses exist. Required to create a product.
    #[schema(schema_with = optional_product_code)]
    pub code: Option<String>,
    /// Required to create a product.
    #[schema(schema_with = ProductName::optional)]
    pub name: Option<String>,
    #[schema(schema_with = optional_slug)]
    pub slug: Option<String>,
    #[schema(schema_with = ShortDescription::optional)]
    pub short_description: Option<String>,
    #[schema(schema_with = ProductDescription::optional)]
    pub description: Option<String>,
    pub category_id: Option<Uuid>,
    /// Required to create a product.
    #[schema(schema_with = optional_product_type)]
    pub product_type: Option<String>,
    #[schema(schema_with = optional_product_status)]
    pub status: Option<String>,
    #[schema(schema_with = Price::optional)]
    pub price_cents: Option<i64>,
    #[schema(schema_with = Price::optional)]
    pub compare_at_price_cents: Option<i64>,
    /// ISO 4217, e.g. `USD`.
    #[schema(schema_with = optional_currency)]
    pub currency: Option<String>,
    #[schema(schema_with = optional_billing_interval)]
    pub billing_interval: Option<String>,
    #[schema(schema_with = DurationDays::optional)]
    pub license_duration_days: Option<i32>,
    #[schema(schema_with = MaxIps::optional)]
    pub default_max_ips: Option<i32>,
    #[schema(schema_with = CollisionThreshold::optional)]
    pub collision_threshold: Option<i32>,
    pub is_featured: Option<bool>,
    #[schema(schema_with = validate::optional_url)]
    pub thumbnail_url: Option<String>,
    #[schema(schema_with = optional_tags)]
    pub tags: Option<Vec<String>>,
    #[schema(value_type = Option<Vec<serde_json::Value>>)]
    pub features: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

impl Validate for ProductInput {
    fn validate(&self, errors: &mut FieldErrors) {
        if let Some(code) = &self.code
            && celaest_protocol::ProductCode::parse(code).is_err()
        {
            errors.add(
                "code",
                FieldProblem::InvalidFormat {
                    expected: "2-10 characters A-Z 0-9",
                },
            );
        }
        ProductName::check_opt(errors, "name", self.name.as_deref());
        if let Some(slug) = &self.slug {
            validate_slug(errors, slug);
        }
        ShortDescription::check_opt(
            errors,
            "short_description",
            self.short_description.as_deref(),
        );
        ProductDescription::check_opt(errors, "description", self.description.as_deref());
        if let Some(t) = &self.product_type {
            errors.one_of("product_type", t, PRODUCT_TYPES);
        }
        if let Some(s) = &self.status {
            errors.one_of("status", s, PRODUCT_STATUSES);
        }
        if let Some(b) = &self.billing_interval {
            errors.one_of("billing_interval", b, BILLING_INTERVALS);
        }
        Price::check_opt(errors, "price_cents", self.price_cents);
        Price::check_opt(
            errors,
            "compare_at_price_cents",
            self.compare_at_price_cents,
        );
        if let Some(c) = &self.currency
            && !(c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
        {
            errors.add(
                "currency",
                FieldProblem::InvalidFormat {
                    expected: "ISO 4217 code, e.g. USD",
                },
            );
        }
        DurationDays::check_opt(
            errors,
            "license_duration_days",
            self.license_duration_days.map(i64::from),
        );
        MaxIps::check_opt(
            errors,
            "default_max_ips",
            self.default_max_ips.map(i64::from),
        );
        CollisionThreshold::check_opt(
            errors,
            "collision_threshold",
            self.collision_threshold.map(i64::from),
        );
        validate::check_url(errors, "thumbnail_url", self.thumbnail_url.as_deref());
        if self.tags.as_ref().is_some_and(|t| {
            t.len() > TAGS_MAX
                || t.iter()
                    .any(|t| t.is_empty() || t.chars().count() > TAGS_MAX)
        }) {
            errors.add(
                "tags",
                FieldProblem::InvalidFormat {
                    expected: "up to 50 tags of 1-50 characters each",
                },
            );
        }
        if self.features.as_ref().is_some_and(|f| !f.is_array()) {
            errors.add(
                "features",
                FieldProblem::InvalidType {
                    expected: "array".into(),
                },
            );
        }
        if self.metadata.as_ref().is_some_and(|m| !m.is_object()) {
            errors.add(
                "metadata",
                FieldProblem::InvalidType {
                    expected: "object".into(),
                },
            );
        }
    }
}

impl Creates for ProductInput {
    const REQUIRED: &'static [&'static str] = &["code", "name", "product_type"];

    fn has(&self, field: &str) -> bool {
        match field {
            "code" => self.code.is_some(),
            "name" => self.name.is_some(),
            "product_type" => self.product_type.is_some(),
            _ => true,
        }
    }
}

/// The body creating a product, for the document: [`ProductInput`] with a code, a name and a
/// type.
pub struct NewProduct;

impl utoipa::PartialSchema for NewProduct {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        New::<ProductInput>::schema()
    }
}

impl ToSchema for NewProduct {}

/// Products: all for admins and developers, published and coming-soon ones for everyone else.
#[utoipa::path(get, path = "/api/products", tag = "products", params(ListQuery<Product>, ProductFilters),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = PageEnvelope<Product>), (status = 401, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
async fn list_products(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<ProductsRead>,
    Query(params): Query<ListParams>,
    Query(filters): Query<ProductFilters>,
) -> Result<Page<Product>> {
    let list = params.validate(&PRODUCT_SORT)?;
    let catalogue = if principal.manages_catalogue() {
        Catalogue::All
    } else {
        Catalogue::Public
    };
    let (items, total) = store::list_products(&state.db, catalogue, &filters, &list).await?;
    Ok(Page::new(
        items,
        list.page,
        u64::try_from(total).unwrap_or(0),
    ))
}

async fn visible_product(state: &AppState, principal: &Principal, id: Uuid) -> Result<Product> {
    let mut conn = state.db.acquire().await?;
    let product = store::get_product(&mut conn, id)
        .await?
        .ok_or_else(Error::not_found)?;
    if principal.manages_catalogue()
        || matches!(product.status.as_str(), "published" | "coming_soon")
    {
        Ok(product)
    } else {
        Err(Error::not_found())
    }
}

/// One product.
#[utoipa::path(get, path = "/api/products/{id}", tag = "products", params(("id" = Uuid, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<Product>), (status = 404, body = ApiErrorBody)))]
async fn get_product(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<ProductsRead>,
    Path(id): Path<Uuid>,
) -> Result<Data<Product>> {
    visible_product(&state, &principal, id).await.map(Data)
}

/// Creates a product (admins and developers).
#[utoipa::path(post, path = "/api/products", tag = "products", request_body = NewProduct,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Envelope<Product>), (status = 403, body = ApiErrorBody), (status = 409, body = ApiErrorBody),
              (status = 422, body = ApiErrorBody)))]
async fn create_product(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<ProductsWrite>,
    meta: RequestMeta,
    Json(New(body)): Json<New<ProductInput>>,
) -> Result<Created<Product>> {
    ensure_manager(&principal)?;
    let now = Utc::now();
    let name = body.name.clone().unwrap_or_default().trim().to_owned();
    let status = body.status.clone().unwrap_or_else(|| "draft".into());
    let product = Product {
        id: Uuid::now_v7(),
        code: body.code.clone().unwrap_or_default(),
        slug: body
            .slug
            .clone()
            .unwrap_or_else(|| derived_slug(&name, "product")),
        name,
        short_description: body.short_description,
        description: body.description,
        category_id: body.category_id,
        product_type: body.product_type.unwrap_or_default(),
        published_at: (status == "published").then_some(now),
        status,
        price_cents: body.price_cents.unwrap_or(0),
        compare_at_price_cents: body.compare_at_price_cents,
        currency: body.currency.unwrap_or_else(|| "USD".into()),
        billing_interval: body.billing_interval.unwrap_or_else(|| "one_time".into()),
        license_duration_days: body.license_duration_days,
        default_max_ips: body.default_max_ips.unwrap_or(5),
        collision_threshold: body.collision_threshold,
        is_featured: body.is_featured.unwrap_or(false),
        thumbnail_url: body.thumbnail_url,
        tags: body.tags.unwrap_or_default(),
        features: body.features.unwrap_or_else(|| json!([])),
        metadata: body.metadata.unwrap_or_else(|| json!({})),
        rating_avg: Some(0.0),
        rating_count: 0,
        sales_count: 0,
        owner_id: Some(principal.user_id),
        created_at: now,
        updated_at: now,
    };
    save_product(&state, &principal, &meta, &product, None)
        .await
        .map(Created)
}

async fn save_product(
    state: &AppState,
    principal: &Principal,
    meta: &RequestMeta,
    product: &Product,
    before: Option<&Product>,
) -> Result<Product> {
    if product.slug.is_empty() {
        return Err(Error::field("slug", FieldProblem::Required));
    }
    let mut tx = state.db.begin().await?;
    store::save_product(&mut tx, product)
        .await
        .on_constraint("products_code_key", || {
            Error::with_details(ErrorCode::AlreadyExists, json!({ "field": "code" }))
        })
        .on_constraint("products_slug_key", slug_conflict)
        .on_constraint("products_category_id_fkey", || {
            Error::conflict("category_id", FieldProblem::NotFound)
        })?;
    let event = match before {
        None => {
            AuditEvent::new("product.created", "product", product.id).meta("code", &product.code)
        }
        Some(before) => AuditEvent::new("product.updated", "product", product.id)
            .change("name", &before.name, &product.name)
            .change("status", &before.status, &product.status)
            .change("price_cents", &before.price_cents, &product.price_cents)
            .change(
                "default_max_ips",
                &before.default_max_ips,
                &product.default_max_ips,
            )
            .change(
                "collision_threshold",
                &before.collision_threshold,
                &product.collision_threshold,
            )
            .change(
                "license_duration_days",
                &before.license_duration_days,
                &product.license_duration_days,
            ),
    };
    audit::record(&mut tx, principal.into(), Some(meta), event).await?;
    // Every save reaches the edges (product writes are rare): availability and code both matter
    // there, and deciding from `before` would trust a row read outside this transaction.
    store::replicate(&mut tx, product.id).await?;
    let saved = store::get_product(&mut tx, product.id)
        .await?
        .ok_or_else(Error::not_found)?;
    tx.commit().await?;
    Ok(saved)
}

/// Changes a product (admins and developers).
#[utoipa::path(patch, path = "/api/products/{id}", tag = "products", params(("id" = Uuid, Path)), request_body = ProductInput,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<Product>), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
              (status = 409, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
async fn update_product(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<ProductsWrite>,
    meta: RequestMeta,
    Path(id): Path<Uuid>,
    Json(body): Json<ProductInput>,
) -> Result<Data<Product>> {
    ensure_manager(&principal)?;
    let before = visible_product(&state, &principal, id).await?;
    let mut p = before.clone();
    if let Some(code) = body.code
        && code != p.code
    {
        let has_licenses: bool = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM licenses WHERE product_id = $1) AS "e!""#,
            id
        )
        .fetch_one(&state.db)
        .await?;
        if has_licenses {
            return Err(Error::field(
                "code",
                FieldProblem::Custom {
                    code: "IMMUTABLE",
                    es: "no puede cambiar: ya hay licencias con este código",
                    en: "cannot change: licenses already carry this code",
                },
            ));
        }
        p.code = code;
    }
    if let Some(name) = body.name {
        p.name = name.trim().to_owned();
    }
    p.slug = body.slug.unwrap_or(p.slug);
    p.short_description = body.short_description.or(p.short_description);
    p.description = body.description.or(p.description);
    p.category_id = body.category_id.or(p.category_id);
    p.product_type = body.product_type.unwrap_or(p.product_type);
    if let Some(status) = body.status {
        if status == "published" && p.published_at.is_none() {
            p.published_at = Some(Utc::now());
        }
        p.status = status;
    }
    p.price_cents = body.price_cents.unwrap_or(p.price_cents);
    p.compare_at_price_cents = body.compare_at_price_cents.or(p.compare_at_price_cents);
    p.currency = body.currency.unwrap_or(p.currency);
    p.billing_interval = body.billing_interval.unwrap_or(p.billing_interval);
    p.license_duration_days = body.license_duration_days.or(p.license_duration_days);
    p.default_max_ips = body.default_max_ips.unwrap_or(p.default_max_ips);
    p.collision_threshold = body.collision_threshold.or(p.collision_threshold);
    p.is_featured = body.is_featured.unwrap_or(p.is_featured);
    p.thumbnail_url = body.thumbnail_url.or(p.thumbnail_url);
    p.tags = body.tags.unwrap_or(p.tags);
    p.features = body.features.unwrap_or(p.features);
    p.metadata = body.metadata.unwrap_or(p.metadata);
    save_product(&state, &principal, &meta, &p, Some(&before))
        .await
        .map(Data)
}

/// Deletes a product: it leaves the catalogue and its licenses stop validating
/// (`PRODUCT_INACTIVE`); the row stays for the licenses and orders that refer to it.
#[utoipa::path(delete, path = "/api/products/{id}", tag = "products", params(("id" = Uuid, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 204, description = "Deleted"), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn delete_product(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<ProductsWrite>,
    meta: RequestMeta,
    Path(id): Path<Uuid>,
) -> Result<NoContent> {
    ensure_manager(&principal)?;
    let product = visible_product(&state, &principal, id).await?;
    let mut tx = state.db.begin().await?;
    store::soft_delete_product(&mut tx, id).await?;
    store::replicate(&mut tx, id).await?;
    let event = AuditEvent::new("product.deleted", "product", id).meta("code", &product.code);
    audit::record(&mut tx, (&principal).into(), Some(&meta), event).await?;
    tx.commit().await?;
    Ok(NoContent)
}
