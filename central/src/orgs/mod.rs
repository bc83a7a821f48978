//! MODULO 3, organizations: tenants, their members and organization roles, and their plan.
//!
//! Who may do what: members see their organizations; admins and viewers see all. Organization
//! owners and admins (and global admins) change an organization and its members; only owners
//! (and global admins) grant or take away ownership or delete it; anyone may leave. An
//! organization always keeps at least one owner.

pub mod service;
pub mod store;

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    audit::RequestMeta,
    auth::principal::{OrgsRead, OrgsWrite, Scoped},
    docs::{ApiErrorBody, Envelope, PageEnvelope},
    http::{
        Result,
        extract::{Json, Path, Query},
        pagination::{ListParams, ListQuery, Listed, Order, Sort, SortSpec, TimeBound},
        response::{Created, Data, NoContent, Page},
        validate::{self, FieldErrors, FieldProblem, Text, Validate},
    },
    state::AppState,
};

/// An organization's name.
type OrgName = Text<1, 200>;
/// An organization's description.
type Description = Text<0, 2000>;

/// The longest slug.
pub const SLUG_MAX: usize = 63;

/// What [`validate_slug`] accepts, as a pattern.
const SLUG_PATTERN: &str = "^[a-z0-9]+(-[a-z0-9]+)*$";

/// The schema of a slug a body may omit.
pub fn optional_slug() -> utoipa::openapi::ObjectBuilder {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            utoipa::openapi::Type::String,
            utoipa::openapi::Type::Null,
        ]))
        .max_length(Some(SLUG_MAX))
        .pattern(Some(SLUG_PATTERN))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_orgs, create_org))
        .routes(routes!(get_org, update_org, delete_org))
        .routes(routes!(list_members, add_member))
        .routes(routes!(update_member, remove_member))
        .routes(routes!(subscription))
}

/// A role inside one organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum MemberRole {
    Owner,
    Admin,
    Member,
}

impl MemberRole {
    /// Owners and admins manage the organization and its members.
    pub fn manages(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    pub logo_url: Option<String>,
    pub website: Option<String>,
    pub billing_email: Option<String>,
    pub subscription_status: Option<String>,
    pub settings: serde_json::Value,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Code of the subscription plan.
    pub plan_code: Option<String>,
}

/// An organization a user belongs to, with the user's role there.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Membership {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub role: MemberRole,
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Member {
    pub user_id: Uuid,
    pub email: String,
    pub full_name: Option<String>,
    pub role: MemberRole,
    pub joined_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Plan {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub description: Option<String>,
    /// Minor units of `currency`.
    pub price_cents: i64,
    pub currency: String,
    pub billing_interval: String,
    pub trial_days: i32,
    /// `null` = unlimited.
    pub max_members: Option<i32>,
    pub max_licenses: Option<i32>,
    pub max_products: Option<i32>,
    pub ai_requests_per_month: Option<i32>,
    pub features: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct SubscriptionFacts {
    pub status: Option<String>,
    pub current_period_start: Option<DateTime<Utc>>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub trial_ends_at: Option<DateTime<Utc>>,
    pub members: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Subscription {
    pub organization_id: Uuid,
    /// `null` when the organization has no plan.
    pub plan: Option<Plan>,
    pub status: Option<String>,
    pub current_period_start: Option<DateTime<Utc>>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub trial_ends_at: Option<DateTime<Utc>>,
    pub usage: SubscriptionUsage,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubscriptionUsage {
    pub members: i64,
    pub max_members: Option<i32>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrgFilters {
    pub is_active: Option<bool>,
    /// Plan code, e.g. `pro`.
    #[param(schema_with = validate::query_text)]
    pub plan: Option<String>,
    /// Substring of name or slug.
    #[param(schema_with = validate::query_text)]
    pub q: Option<String>,
    #[param(schema_with = TimeBound::schema)]
    pub created_after: Option<TimeBound>,
    #[param(schema_with = TimeBound::schema)]
    pub created_before: Option<TimeBound>,
}

const ORG_SORT: SortSpec = SortSpec {
    allowed: &[
        ("created_at", "o.created_at"),
        ("name", "o.name"),
        ("slug", "o.slug"),
    ],
    default: Sort {
        column: "o.created_at",
        order: Order::Desc,
    },
};

impl Listed for Organization {
    const SORT: SortSpec = ORG_SORT;
}

const MEMBER_SORT: SortSpec = SortSpec {
    allowed: &[
        ("joined_at", "m.created_at"),
        ("email", "u.email"),
        ("role", "m.role"),
    ],
    default: Sort {
        column: "m.created_at",
        order: Order::Asc,
    },
};

impl Listed for Member {
    const SORT: SortSpec = MEMBER_SORT;
}

/// Organizations: all for admins and viewers, otherwise those the caller belongs to.
#[utoipa::path(get, path = "/api/organizations", tag = "organizations", params(ListQuery<Organization>, OrgFilters),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = PageEnvelope<Organization>), (status = 401, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
async fn list_orgs(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<OrgsRead>,
    Query(params): Query<ListParams>,
    Query(filters): Query<OrgFilters>,
) -> Result<Page<Organization>> {
    let list = params.validate(&ORG_SORT)?;
    let (items, total) = service::list(&state, &principal, &filters, &list).await?;
    Ok(Page::new(items, list.page, total))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    #[schema(schema_with = OrgName::schema)]
    pub name: String,
    /// Lowercase kebab-case; derived from the name when absent.
    #[schema(schema_with = optional_slug)]
    pub slug: Option<String>,
    #[schema(schema_with = Description::optional)]
    pub description: Option<String>,
    #[schema(schema_with = validate::optional_url)]
    pub website: Option<String>,
    #[schema(schema_with = validate::optional_url)]
    pub logo_url: Option<String>,
    #[schema(schema_with = validate::optional_email)]
    pub billing_email: Option<String>,
    /// Plan code (default `free`).
    #[schema(schema_with = validate::optional_plain_text)]
    pub plan: Option<String>,
}

pub fn validate_slug(errors: &mut FieldErrors, slug: &str) {
    let ok = !slug.is_empty()
        && slug.len() <= SLUG_MAX
        && slug.split('-').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if !ok {
        errors.add(
            "slug",
            FieldProblem::InvalidFormat {
                expected: "lowercase-kebab-case, at most 63 characters",
            },
        );
    }
}

impl Validate for CreateOrg {
    fn validate(&self, errors: &mut FieldErrors) {
        OrgName::check(errors, "name", &self.name);
        if let Some(slug) = &self.slug {
            validate_slug(errors, slug);
        }
        Description::check_opt(errors, "description", self.description.as_deref());
        validate::check_url(errors, "website", self.website.as_deref());
        validate::check_url(errors, "logo_url", self.logo_url.as_deref());
        if let Some(email) = &self.billing_email {
            validate::check_email(errors, "billing_email", email);
        }
    }
}

/// Creates an organization; the caller becomes its owner.
#[utoipa::path(post, path = "/api/organizations", tag = "organizations", request_body = CreateOrg,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Envelope<Organization>), (status = 403, body = ApiErrorBody), (status = 409, body = ApiErrorBody),
              (status = 422, body = ApiErrorBody)))]
async fn create_org(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<OrgsWrite>,
    meta: RequestMeta,
    Json(body): Json<CreateOrg>,
) -> Result<Created<Organization>> {
    service::create(&state, &principal, body, &meta)
        .await
        .map(Created)
}

/// One organization.
#[utoipa::path(get, path = "/api/organizations/{id}", tag = "organizations", params(("id" = Uuid, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<Organization>), (status = 404, body = ApiErrorBody)))]
async fn get_org(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<OrgsRead>,
    Path(id): Path<Uuid>,
) -> Result<Data<Organization>> {
    service::get(&state, &principal, id).await.map(Data)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrg {
    #[schema(schema_with = OrgName::optional)]
    pub name: Option<String>,
    #[schema(schema_with = optional_slug)]
    pub slug: Option<String>,
    #[schema(schema_with = Description::optional)]
    pub description: Option<String>,
    #[schema(schema_with = validate::optional_url)]
    pub website: Option<String>,
    #[schema(schema_with = validate::optional_url)]
    pub logo_url: Option<String>,
    #[schema(schema_with = validate::optional_email)]
    pub billing_email: Option<String>,
    /// Replaces the settings object.
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
    /// Global admins only.
    pub is_active: Option<bool>,
}

impl Validate for UpdateOrg {
    fn validate(&self, errors: &mut FieldErrors) {
        OrgName::check_opt(errors, "name", self.name.as_deref());
        if let Some(slug) = &self.slug {
            validate_slug(errors, slug);
        }
        Description::check_opt(errors, "description", self.description.as_deref());
        validate::check_url(errors, "website", self.website.as_deref());
        validate::check_url(errors, "logo_url", self.logo_url.as_deref());
        if let Some(email) = &self.billing_email {
            validate::check_email(errors, "billing_email", email);
        }
        if self.settings.as_ref().is_some_and(|s| !s.is_object()) {
            errors.add(
                "settings",
                FieldProblem::InvalidType {
                    expected: "object".into(),
                },
            );
        }
    }
}

/// Changes an organization (its owners and admins, or global admins).
#[utoipa::path(patch, path = "/api/organizations/{id}", tag = "organizations", params(("id" = Uuid, Path)), request_body = UpdateOrg,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<Organization>), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
              (status = 409, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
async fn update_org(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<OrgsWrite>,
    meta: RequestMeta,
    Path(id): Path<Uuid>,
    Json(body): Json<UpdateOrg>,
) -> Result<Data<Organization>> {
    service::update(&state, &principal, id, body, &meta)
        .await
        .map(Data)
}

/// Deletes an organization (its owners, or global admins).
#[utoipa::path(delete, path = "/api/organizations/{id}", tag = "organizations", params(("id" = Uuid, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 204, description = "Deleted"), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn delete_org(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<OrgsWrite>,
    meta: RequestMeta,
    Path(id): Path<Uuid>,
) -> Result<NoContent> {
    service::delete(&state, &principal, id, &meta)
        .await
        .map(|()| NoContent)
}

/// The members of an organization.
#[utoipa::path(get, path = "/api/organizations/{id}/members", tag = "organizations", params(("id" = Uuid, Path), ListQuery<Member>),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = PageEnvelope<Member>), (status = 404, body = ApiErrorBody)))]
async fn list_members(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<OrgsRead>,
    Path(id): Path<Uuid>,
    Query(params): Query<ListParams>,
) -> Result<Page<Member>> {
    let list = params.validate(&MEMBER_SORT)?;
    let (items, total) = service::members(&state, &principal, id, &list).await?;
    Ok(Page::new(items, list.page, total))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    /// The user to add (or give `email`).
    pub user_id: Option<Uuid>,
    #[schema(schema_with = validate::optional_email)]
    pub email: Option<String>,
    /// Default `member`.
    pub role: Option<MemberRole>,
}

impl Validate for AddMember {
    fn validate(&self, errors: &mut FieldErrors) {
        match (&self.user_id, &self.email) {
            (None, None) => errors.add("user_id", FieldProblem::Required),
            (Some(_), Some(_)) => errors.add(
                "email",
                FieldProblem::Custom {
                    code: "ONE_OF",
                    es: "indique user_id o email, no ambos",
                    en: "give user_id or email, not both",
                },
            ),
            (None, Some(email)) => validate::check_email(errors, "email", email),
            (Some(_), None) => {}
        }
    }
}

/// [`AddMember`] as documented: `user_id` or `email`, exactly one.
pub struct AddMemberBody;

impl utoipa::PartialSchema for AddMemberBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::Type;
        validate::with_rule(
            AddMember::schema(),
            validate::exactly_one_of(&[("user_id", Type::String), ("email", Type::String)]),
        )
    }
}

impl ToSchema for AddMemberBody {}

/// Adds a member (organization owners and admins; only owners add owners).
#[utoipa::path(post, path = "/api/organizations/{id}/members", tag = "organizations", params(("id" = Uuid, Path)), request_body = AddMemberBody,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Envelope<Member>), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
              (status = 409, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
async fn add_member(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<OrgsWrite>,
    meta: RequestMeta,
    Path(id): Path<Uuid>,
    Json(body): Json<AddMember>,
) -> Result<Created<Member>> {
    service::add_member(&state, &principal, id, body, &meta)
        .await
        .map(Created)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    pub role: MemberRole,
}

impl Validate for UpdateMember {}

/// Changes a member's role (the last owner cannot be demoted).
#[utoipa::path(patch, path = "/api/organizations/{id}/members/{user_id}", tag = "organizations",
    params(("id" = Uuid, Path), ("user_id" = Uuid, Path)), request_body = UpdateMember,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<Member>), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
              (status = 409, description = "`LAST_OWNER`", body = ApiErrorBody)))]
async fn update_member(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<OrgsWrite>,
    meta: RequestMeta,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
    Json(body): Json<UpdateMember>,
) -> Result<Data<Member>> {
    service::update_member(&state, &principal, id, user_id, body.role, &meta)
        .await
        .map(Data)
}

/// Removes a member, or leaves (the last owner cannot be removed).
#[utoipa::path(delete, path = "/api/organizations/{id}/members/{user_id}", tag = "organizations",
    params(("id" = Uuid, Path), ("user_id" = Uuid, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 204, description = "Removed"), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
              (status = 409, description = "`LAST_OWNER`", body = ApiErrorBody)))]
async fn remove_member(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<OrgsWrite>,
    meta: RequestMeta,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
) -> Result<NoContent> {
    service::remove_member(&state, &principal, id, user_id, &meta)
        .await
        .map(|()| NoContent)
}

/// The organization's subscription and its plan.
#[utoipa::path(get, path = "/api/organizations/{id}/subscription", tag = "organizations", params(("id" = Uuid, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<Subscription>), (status = 404, body = ApiErrorBody)))]
async fn subscription(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<OrgsRead>,
    Path(id): Path<Uuid>,
) -> Result<Data<Subscription>> {
    service::subscription(&state, &principal, id)
        .await
        .map(Data)
}
