//! MODULO 2, users: accounts and profiles, sessions, and personal API keys.
//!
//! Who may do what: admins manage every user; viewers read every user; everyone reads and edits
//! their own profile, sessions and keys. Other users' resources are invisible (404) to those who
//! may not see them, so their existence does not leak.

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
    auth::principal::{Role, Scoped, UsersRead, UsersWrite},
    docs::{ApiErrorBody, Envelope, PageEnvelope},
    http::{
        Result,
        extract::{Json, Path, Query},
        pagination::{ListParams, ListQuery, Listed, Order, Sort, SortSpec, TimeBound},
        response::{Created, Data, NoContent, Page},
        validate::{self, FieldErrors, FieldProblem, Int, Text, Validate, one_of_schema},
    },
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user, delete_user))
        .routes(routes!(get_profile, update_profile))
        .routes(routes!(list_sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(list_api_keys, create_api_key))
        .routes(routes!(delete_api_key))
        .routes(routes!(rotate_api_key))
}

/// A user's account and profile.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct UserProfile {
    pub id: Uuid,
    pub email: String,
    pub full_name: Option<String>,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub phone: Option<String>,
    pub role: Role,
    /// Primary organization.
    pub organization_id: Option<Uuid>,
    /// `es` or `en`.
    pub locale: String,
    pub timezone: String,
    pub metadata: serde_json::Value,
    pub is_active: bool,
    pub last_login_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A Supabase session seen by the API.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
    /// Whether this is the session of the request that listed it.
    pub current: bool,
}

/// An API key as listed: never its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: Uuid,
    pub name: String,
    /// The visible start of the key, e.g. `celaest_AbC123xY`.
    pub key_prefix: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub last_used_ip: Option<String>,
    /// When the key stops (stopped) working; in the future during a rotation overlap.
    pub revoked_at: Option<DateTime<Utc>>,
    pub rotated_from_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// A key just created or rotated: the only time its secret is shown.
#[derive(Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// The full key. Store it now: it cannot be shown again.
    pub secret: String,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserFilters {
    pub role: Option<Role>,
    pub is_active: Option<bool>,
    pub organization_id: Option<Uuid>,
    /// Substring of email or name.
    #[param(schema_with = validate::query_text)]
    pub q: Option<String>,
    /// `YYYY-MM-DD` or RFC 3339.
    #[param(schema_with = TimeBound::schema)]
    pub created_after: Option<TimeBound>,
    #[param(schema_with = TimeBound::schema)]
    pub created_before: Option<TimeBound>,
}

const USER_SORT: SortSpec = SortSpec {
    allowed: &[
        ("created_at", "u.created_at"),
        ("email", "u.email"),
        ("full_name", "u.full_name"),
        ("last_login_at", "u.last_login_at"),
        ("role", "u.role"),
    ],
    default: Sort {
        column: "u.created_at",
        order: Order::Desc,
    },
};

impl Listed for UserProfile {
    const SORT: SortSpec = USER_SORT;
}

/// Users (admins and viewers see everyone; others see themselves).
#[utoipa::path(get, path = "/api/users", tag = "users", params(ListQuery<UserProfile>, UserFilters),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = PageEnvelope<UserProfile>), (status = 401, body = ApiErrorBody), (status = 403, body = ApiErrorBody),
              (status = 422, body = ApiErrorBody)))]
async fn list_users(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<UsersRead>,
    Query(params): Query<ListParams>,
    Query(filters): Query<UserFilters>,
) -> Result<Page<UserProfile>> {
    let list = params.validate(&USER_SORT)?;
    let (items, total) = service::list(&state, &principal, &filters, &list).await?;
    Ok(Page::new(items, list.page, total))
}

/// A user's full name.
type FullName = Text<1, 200>;
/// A user's display name.
type DisplayName = Text<1, 100>;
/// An initial password.
type Password = Text<8, 128>;
/// An IANA time zone name.
type Timezone = Text<1, 64>;
/// An API key's name.
type KeyName = Text<1, 100>;
/// How long a rotated key keeps working, in seconds.
type Overlap = Int<0, 86_400>;

/// The languages a user can choose.
pub const LOCALES: &[&str] = &["es", "en"];

fn optional_locale() -> utoipa::openapi::ObjectBuilder {
    one_of_schema(LOCALES, true)
}

/// What a phone number may hold.
const PHONE_MAX: usize = 32;

fn check_phone(errors: &mut FieldErrors, phone: Option<&str>) {
    if let Some(phone) = phone
        && (phone.len() > PHONE_MAX
            || !phone
                .chars()
                .all(|c| c.is_ascii_digit() || "+-() ".contains(c)))
    {
        errors.add(
            "phone",
            FieldProblem::InvalidFormat {
                expected: "phone number",
            },
        );
    }
}

fn optional_phone() -> utoipa::openapi::ObjectBuilder {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            utoipa::openapi::Type::String,
            utoipa::openapi::Type::Null,
        ]))
        .max_length(Some(PHONE_MAX))
        .pattern(Some(r"^[0-9+\-() ]*$"))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(schema_with = validate::email)]
    pub email: String,
    #[schema(schema_with = FullName::optional)]
    pub full_name: Option<String>,
    /// Default `client`.
    pub role: Option<Role>,
    pub organization_id: Option<Uuid>,
    /// `es` (default) or `en`.
    #[schema(schema_with = optional_locale)]
    pub locale: Option<String>,
    /// Initial password for the Supabase account (omit to let the user set one by recovery).
    #[schema(schema_with = Password::optional)]
    pub password: Option<String>,
    /// Id of an existing Supabase user: creates only the profile.
    pub id: Option<Uuid>,
}

impl std::fmt::Debug for CreatedApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedApiKey")
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl std::fmt::Debug for CreateUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateUser")
            .field("email", &self.email)
            .field("role", &self.role)
            .field("id", &self.id)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl Validate for CreateUser {
    fn validate(&self, errors: &mut FieldErrors) {
        validate::check_email(errors, "email", &self.email);
        FullName::check_opt(errors, "full_name", self.full_name.as_deref());
        if let Some(locale) = &self.locale {
            errors.one_of("locale", locale, LOCALES);
        }
        Password::check_opt(errors, "password", self.password.as_deref());
        if self.id.is_some() && self.password.is_some() {
            errors.add(
                "password",
                FieldProblem::Custom {
                    code: "NOT_WITH_ID",
                    es: "no se admite junto con id (el usuario ya existe en Supabase)",
                    en: "not accepted with id (the user already exists in Supabase)",
                },
            );
        }
    }
}

/// [`CreateUser`] as documented: `id` (an existing Supabase user) and `password` (for a new
/// one) are not given together.
pub struct CreateUserBody;

impl utoipa::PartialSchema for CreateUserBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        validate::with_rule(CreateUser::schema(), validate::not_both("id", "password"))
    }
}

impl ToSchema for CreateUserBody {}

/// Creates a user (admins): the Supabase account (unless `id` names one) and its profile.
#[utoipa::path(post, path = "/api/users", tag = "users", request_body = CreateUserBody,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Envelope<UserProfile>), (status = 403, body = ApiErrorBody), (status = 409, body = ApiErrorBody),
              (status = 422, body = ApiErrorBody), (status = 503, body = ApiErrorBody)))]
async fn create_user(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<UsersWrite>,
    meta: RequestMeta,
    Json(body): Json<CreateUser>,
) -> Result<Created<UserProfile>> {
    service::create(&state, &principal, body, &meta)
        .await
        .map(Created)
}

/// One user.
#[utoipa::path(get, path = "/api/users/{id}", tag = "users", params(("id" = Uuid, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<UserProfile>), (status = 404, body = ApiErrorBody)))]
async fn get_user(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<UsersRead>,
    Path(id): Path<Uuid>,
) -> Result<Data<UserProfile>> {
    service::get(&state, &principal, id).await.map(Data)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfile {
    #[schema(schema_with = FullName::optional)]
    pub full_name: Option<String>,
    #[schema(schema_with = DisplayName::optional)]
    pub display_name: Option<String>,
    #[schema(schema_with = validate::optional_url)]
    pub avatar_url: Option<String>,
    #[schema(schema_with = optional_phone)]
    pub phone: Option<String>,
    #[schema(schema_with = optional_locale)]
    pub locale: Option<String>,
    #[schema(schema_with = Timezone::optional)]
    pub timezone: Option<String>,
    /// Replaces the profile's free-form metadata (a JSON object).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

impl Validate for UpdateProfile {
    fn validate(&self, errors: &mut FieldErrors) {
        FullName::check_opt(errors, "full_name", self.full_name.as_deref());
        DisplayName::check_opt(errors, "display_name", self.display_name.as_deref());
        validate::check_url(errors, "avatar_url", self.avatar_url.as_deref());
        check_phone(errors, self.phone.as_deref());
        if let Some(locale) = &self.locale {
            errors.one_of("locale", locale, LOCALES);
        }
        Timezone::check_opt(errors, "timezone", self.timezone.as_deref());
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

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[serde(flatten)]
    #[schema(inline)]
    pub profile: UpdateProfile,
    /// Admins only.
    pub role: Option<Role>,
    /// Admins only.
    pub is_active: Option<bool>,
    /// Admins only: the primary organization.
    pub organization_id: Option<Uuid>,
}

impl Validate for UpdateUser {
    fn validate(&self, errors: &mut FieldErrors) {
        self.profile.validate(errors);
    }
}

/// Changes a user: profile fields (self or admins), role, state and organization (admins).
#[utoipa::path(patch, path = "/api/users/{id}", tag = "users", params(("id" = Uuid, Path)), request_body = UpdateUser,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<UserProfile>), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
              (status = 422, body = ApiErrorBody)))]
async fn update_user(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<UsersWrite>,
    meta: RequestMeta,
    Path(id): Path<Uuid>,
    Json(body): Json<UpdateUser>,
) -> Result<Data<UserProfile>> {
    service::update(&state, &principal, id, body, &meta)
        .await
        .map(Data)
}

/// Deletes a user (admins): the profile is kept for the trail; sessions and keys are revoked.
#[utoipa::path(delete, path = "/api/users/{id}", tag = "users", params(("id" = Uuid, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 204, description = "Deleted"), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn delete_user(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<UsersWrite>,
    meta: RequestMeta,
    Path(id): Path<Uuid>,
) -> Result<NoContent> {
    service::delete(&state, &principal, id, &meta)
        .await
        .map(|()| NoContent)
}

/// A user's profile.
#[utoipa::path(get, path = "/api/users/{id}/profile", tag = "users", params(("id" = Uuid, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<UserProfile>), (status = 404, body = ApiErrorBody)))]
async fn get_profile(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<UsersRead>,
    Path(id): Path<Uuid>,
) -> Result<Data<UserProfile>> {
    service::get(&state, &principal, id).await.map(Data)
}

/// Changes a user's profile fields (self or admins).
#[utoipa::path(patch, path = "/api/users/{id}/profile", tag = "users", params(("id" = Uuid, Path)), request_body = UpdateProfile,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<UserProfile>), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
              (status = 422, body = ApiErrorBody)))]
async fn update_profile(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<UsersWrite>,
    meta: RequestMeta,
    Path(id): Path<Uuid>,
    Json(body): Json<UpdateProfile>,
) -> Result<Data<UserProfile>> {
    let body = UpdateUser {
        profile: body,
        ..UpdateUser::default()
    };
    service::update(&state, &principal, id, body, &meta)
        .await
        .map(Data)
}

/// A user's sessions, newest first.
#[utoipa::path(get, path = "/api/users/{id}/sessions", tag = "users", params(("id" = Uuid, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<Vec<SessionView>>), (status = 404, body = ApiErrorBody)))]
async fn list_sessions(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<UsersRead>,
    Path(id): Path<Uuid>,
) -> Result<Data<Vec<SessionView>>> {
    service::sessions(&state, &principal, id).await.map(Data)
}

/// Revokes a session: tokens carrying it are refused from now on, on every instance.
#[utoipa::path(delete, path = "/api/users/{id}/sessions/{session_id}", tag = "users",
    params(("id" = Uuid, Path), ("session_id" = Uuid, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 204, description = "Revoked"), (status = 404, body = ApiErrorBody)))]
async fn revoke_session(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<UsersWrite>,
    meta: RequestMeta,
    Path((id, session_id)): Path<(Uuid, Uuid)>,
) -> Result<NoContent> {
    service::revoke_session(
        &state,
        &principal,
        id,
        session_id,
        service::SessionEnd::Revoked,
        &meta,
    )
    .await
    .map(|()| NoContent)
}

/// A user's API keys (never their secrets).
#[utoipa::path(get, path = "/api/users/{id}/api-keys", tag = "users", params(("id" = Uuid, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<Vec<ApiKeyView>>), (status = 404, body = ApiErrorBody)))]
async fn list_api_keys(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<UsersRead>,
    Path(id): Path<Uuid>,
) -> Result<Data<Vec<ApiKeyView>>> {
    service::api_keys(&state, &principal, id).await.map(Data)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    #[schema(schema_with = KeyName::schema)]
    pub name: String,
    /// Scopes such as `licenses:read`, `users:write` (implies read), or `*`.
    #[schema(schema_with = scopes_schema)]
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Validate for CreateApiKey {
    fn validate(&self, errors: &mut FieldErrors) {
        KeyName::check(errors, "name", &self.name);
        if self.scopes.is_empty() || self.scopes.len() > SCOPES_MAX {
            errors.add(
                "scopes",
                FieldProblem::OutOfRange {
                    min: 1,
                    max: SCOPES_MAX as i64,
                },
            );
        }
        for (i, scope) in self.scopes.iter().enumerate() {
            errors.one_of(
                &format!("scopes[{i}]"),
                scope,
                crate::auth::principal::scopes::KNOWN,
            );
        }
    }
}

/// Most scopes one key may carry.
const SCOPES_MAX: usize = 32;

fn scopes_schema() -> utoipa::openapi::ArrayBuilder {
    utoipa::openapi::ArrayBuilder::new()
        .items(one_of_schema(crate::auth::principal::scopes::KNOWN, false))
        .min_items(Some(1))
        .max_items(Some(SCOPES_MAX))
}

/// Creates an API key; the response is the only time its secret is shown.
#[utoipa::path(post, path = "/api/users/{id}/api-keys", tag = "users", params(("id" = Uuid, Path)), request_body = CreateApiKey,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Envelope<CreatedApiKey>), (status = 404, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
async fn create_api_key(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<UsersWrite>,
    meta: RequestMeta,
    Path(id): Path<Uuid>,
    Json(body): Json<CreateApiKey>,
) -> Result<Created<CreatedApiKey>> {
    service::create_api_key(&state, &principal, id, body, &meta)
        .await
        .map(Created)
}

/// Deletes an API key: it stops working at once, on every instance (it stays listed as revoked).
#[utoipa::path(delete, path = "/api/users/{id}/api-keys/{key_id}", tag = "users",
    params(("id" = Uuid, Path), ("key_id" = Uuid, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 204, description = "Deleted"), (status = 404, body = ApiErrorBody)))]
async fn delete_api_key(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<UsersWrite>,
    meta: RequestMeta,
    Path((id, key_id)): Path<(Uuid, Uuid)>,
) -> Result<NoContent> {
    service::delete_api_key(&state, &principal, id, key_id, &meta)
        .await
        .map(|()| NoContent)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateApiKey {
    /// Seconds the old key keeps working (default 0: retired at once).
    #[schema(schema_with = Overlap::optional)]
    pub overlap_seconds: Option<i64>,
}

impl Validate for RotateApiKey {
    fn validate(&self, errors: &mut FieldErrors) {
        Overlap::check_opt(errors, "overlap_seconds", self.overlap_seconds);
    }
}

/// Issues a new key with the same name, scopes and expiry, and retires the old one (optionally
/// after a short overlap).
#[utoipa::path(post, path = "/api/users/{id}/api-keys/{key_id}/rotate", tag = "users",
    params(("id" = Uuid, Path), ("key_id" = Uuid, Path)), request_body = RotateApiKey,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Envelope<CreatedApiKey>), (status = 404, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
async fn rotate_api_key(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<UsersWrite>,
    meta: RequestMeta,
    Path((id, key_id)): Path<(Uuid, Uuid)>,
    body: Option<Json<RotateApiKey>>,
) -> Result<Created<CreatedApiKey>> {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    service::rotate_api_key(&state, &principal, id, key_id, body, &meta)
        .await
        .map(Created)
}
