//! MODULO 5, licensing: license keys, validation with IP binding and collision detection,
//! signed answers, and the outbox that carries every change to the edges.

pub mod recorder;
pub mod service;
pub mod store;
pub mod validate;

use axum::{extract::State, response::Response};
use celaest_protocol::{
    ValidateRequest, ValidationAnswer,
    signing::{JwkSet, KeyRing},
    validation::{BatchRequest, parse_ip},
};
use chrono::{DateTime, NaiveDate, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    audit::RequestMeta,
    auth::principal::{LicensesRead, LicensesWrite, Scoped},
    docs::{ApiErrorBody, Envelope, PageEnvelope},
    http::{
        Error, Result,
        client_ip::ClientIp,
        context::current_lang,
        extract::{Json, Path, Query},
        pagination::{ListParams, ListQuery, Listed, Order, Sort, SortSpec, TimeBound},
        response::{Created, Data, NoContent, Page},
        validate::{
            Creates, FieldErrors, FieldProblem, Int, New, Text, Validate, exactly_one_of,
            ip_address, one_of_schema, query_text, with_rule,
        },
    },
    state::AppState,
};

pub const LICENSE_STATUSES: &[&str] = &["active", "suspended", "revoked", "expired"];
/// The statuses an update may set (revoke and reactivate have their own endpoints).
const SETTABLE_STATUSES: &[&str] = &["active", "suspended"];
/// Where a renewal counts from.
const RENEW_FROM: &[&str] = &["expiry", "now"];

/// How many IP addresses a license may bind.
type MaxIps = Int<1, 1000>;
/// A license's notes.
type Notes = Text<0, 5000>;
/// Why a license was suspended, revoked or reactivated.
type ReasonText = Text<1, 1000>;
/// Days a renewal adds.
type RenewDays = Int<1, 36_500>;

fn license_status() -> utoipa::openapi::ObjectBuilder {
    one_of_schema(LICENSE_STATUSES, false)
}

fn optional_settable_status() -> utoipa::openapi::ObjectBuilder {
    one_of_schema(SETTABLE_STATUSES, true)
}

fn optional_renew_from() -> utoipa::openapi::ObjectBuilder {
    one_of_schema(RENEW_FROM, true)
}

/// Routes for licensed software: no credentials, limited per client IP.
pub fn public_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signing_keys))
        .routes(routes!(validate_one))
        .routes(routes!(validate_batch))
}

/// Routes that need a principal.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_licenses, create_license))
        .routes(routes!(get_license, update_license, delete_license))
        .routes(routes!(bind_ip))
        .routes(routes!(unbind_ip))
        .routes(routes!(list_ips))
        .routes(routes!(list_collisions))
        .routes(routes!(list_validations))
        .routes(routes!(renew))
        .routes(routes!(revoke))
        .routes(routes!(reactivate))
        .routes(routes!(usage))
}

/// A license as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct License {
    pub id: Uuid,
    /// The full key for its owner and managers; masked for viewers.
    pub license_key: String,
    pub product_id: Uuid,
    pub product_code: String,
    pub user_id: Option<Uuid>,
    pub organization_id: Option<Uuid>,
    pub order_id: Option<Uuid>,
    /// active, suspended, revoked, expired.
    pub status: String,
    pub max_ips: i32,
    /// IPs bound now.
    pub bound_ips: i64,
    pub expires_at: Option<DateTime<Utc>>,
    pub activated_at: Option<DateTime<Utc>>,
    pub suspended_at: Option<DateTime<Utc>>,
    pub suspended_reason: Option<String>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
    pub collision_count: i32,
    pub validation_count: i64,
    pub last_validated_at: Option<DateTime<Utc>>,
    pub notes: Option<String>,
    pub metadata: serde_json::Value,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Binding {
    pub ip_address: String,
    /// `auto` (bound by a validation) or `manual`.
    pub source: String,
    pub device_info: Option<String>,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub validation_count: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Ips {
    pub max_ips: i32,
    pub remaining_ips: i64,
    pub bindings: Vec<Binding>,
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Collision {
    pub id: Uuid,
    pub ip_addresses: Vec<String>,
    pub ip_count: i32,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub detected_by: String,
    pub status: String,
    pub auto_revoked: bool,
    pub detected_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct ValidationRow {
    pub id: Uuid,
    /// Empty only on a row coalescing validations from several addresses.
    pub ip_address: Option<String>,
    pub device_info: Option<String>,
    pub result_code: String,
    pub valid: bool,
    /// `central` or the edge that answered.
    pub answered_by: String,
    pub region: Option<String>,
    /// The latest validation's time, on a coalesced row.
    pub validated_at: DateTime<Utc>,
    /// How many validations the row stands for: 1, or more when the recorder coalesced the
    /// same license, address, result and minute under overload.
    #[schema(minimum = 1)]
    pub count: i32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageDay {
    pub usage_date: NaiveDate,
    pub validation_count: i64,
    pub success_count: i64,
    pub failure_count: i64,
    /// Distinct bound IPs seen that day.
    pub unique_ip_count: i32,
    pub last_ip: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Usage {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub validations: i64,
    pub successes: i64,
    pub failures: i64,
    pub days: Vec<UsageDay>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LicenseFilters {
    #[param(schema_with = license_status)]
    pub status: Option<String>,
    pub product_id: Option<Uuid>,
    #[param(schema_with = query_text)]
    pub product_code: Option<String>,
    pub user_id: Option<Uuid>,
    pub organization_id: Option<Uuid>,
    #[param(schema_with = TimeBound::schema)]
    pub created_after: Option<TimeBound>,
    #[param(schema_with = TimeBound::schema)]
    pub created_before: Option<TimeBound>,
    #[param(schema_with = TimeBound::schema)]
    pub expires_after: Option<TimeBound>,
    #[param(schema_with = TimeBound::schema)]
    pub expires_before: Option<TimeBound>,
}

const LICENSE_SORT: SortSpec = SortSpec {
    allowed: &[
        ("created_at", "l.created_at"),
        ("expires_at", "l.expires_at"),
        ("status", "l.status"),
        ("last_validated_at", "l.last_validated_at"),
        ("validation_count", "l.validation_count"),
    ],
    default: Sort {
        column: "l.created_at",
        order: Order::Desc,
    },
};

impl Listed for License {
    const SORT: SortSpec = LICENSE_SORT;
}

/// Licenses: all for admins, developers and viewers; a client's own and its organizations'.
#[utoipa::path(get, path = "/api/licenses", tag = "licenses", params(ListQuery<License>, LicenseFilters),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = PageEnvelope<License>), (status = 401, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
async fn list_licenses(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<LicensesRead>,
    Query(params): Query<ListParams>,
    Query(filters): Query<LicenseFilters>,
) -> Result<Page<License>> {
    let list = params.validate(&LICENSE_SORT)?;
    if let Some(status) = &filters.status
        && !LICENSE_STATUSES.contains(&status.as_str())
    {
        return Err(Error::field(
            "status",
            FieldProblem::NotOneOf {
                allowed: LICENSE_STATUSES.to_vec(),
            },
        ));
    }
    let (items, total) =
        store::list(&state.db, service::visibility(&principal), &filters, &list).await?;
    let items = items
        .into_iter()
        .map(|l| service::present(&principal, l))
        .collect();
    Ok(Page::new(
        items,
        list.page,
        u64::try_from(total).unwrap_or(0),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLicense {
    pub product_id: Uuid,
    pub user_id: Option<Uuid>,
    pub organization_id: Option<Uuid>,
    /// Default: the product's (5 unless it says otherwise).
    #[schema(schema_with = MaxIps::optional)]
    pub max_ips: Option<i32>,
    /// Default: now plus the product's license duration; perpetual when it has none.
    pub expires_at: Option<DateTime<Utc>>,
    #[schema(schema_with = Notes::optional)]
    pub notes: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

fn validate_common(
    errors: &mut FieldErrors,
    max_ips: Option<i32>,
    notes: Option<&str>,
    metadata: Option<&serde_json::Value>,
) {
    MaxIps::check_opt(errors, "max_ips", max_ips.map(i64::from));
    Notes::check_opt(errors, "notes", notes);
    if metadata.is_some_and(|m| !m.is_object()) {
        errors.add(
            "metadata",
            FieldProblem::InvalidType {
                expected: "object".into(),
            },
        );
    }
}

impl Validate for CreateLicense {
    fn validate(&self, errors: &mut FieldErrors) {
        validate_common(
            errors,
            self.max_ips,
            self.notes.as_deref(),
            self.metadata.as_ref(),
        );
    }
}

/// Issues a license for a product (admins and developers).
#[utoipa::path(post, path = "/api/licenses", tag = "licenses", request_body = CreateLicense,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Envelope<License>), (status = 403, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
async fn create_license(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<LicensesWrite>,
    meta: RequestMeta,
    Json(body): Json<CreateLicense>,
) -> Result<Created<License>> {
    service::create(&state, &state.licensing, &principal, body, &meta)
        .await
        .map(Created)
}

/// One license.
#[utoipa::path(get, path = "/api/licenses/{id}", tag = "licenses", params(("id" = Uuid, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<License>), (status = 404, body = ApiErrorBody)))]
async fn get_license(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<LicensesRead>,
    Path(id): Path<Uuid>,
) -> Result<Data<License>> {
    let license = service::visible(&state, &principal, id).await?;
    Ok(Data(service::present(&principal, license)))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateLicense {
    pub user_id: Option<Uuid>,
    pub organization_id: Option<Uuid>,
    #[schema(schema_with = MaxIps::optional)]
    pub max_ips: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
    #[schema(schema_with = Notes::optional)]
    pub notes: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// `suspended` (from active) or `active` (from suspended); revoke and reactivate have their
    /// own endpoints.
    #[schema(schema_with = optional_settable_status)]
    pub status: Option<String>,
    /// Why, for a suspension.
    #[schema(schema_with = ReasonText::optional)]
    pub reason: Option<String>,
}

impl Validate for UpdateLicense {
    fn validate(&self, errors: &mut FieldErrors) {
        validate_common(
            errors,
            self.max_ips,
            self.notes.as_deref(),
            self.metadata.as_ref(),
        );
        if let Some(status) = &self.status {
            errors.one_of("status", status, SETTABLE_STATUSES);
        }
        ReasonText::check_opt(errors, "reason", self.reason.as_deref());
    }
}

/// Changes a license (admins and developers).
#[utoipa::path(patch, path = "/api/licenses/{id}", tag = "licenses", params(("id" = Uuid, Path)), request_body = UpdateLicense,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<License>), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
              (status = 409, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
async fn update_license(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<LicensesWrite>,
    meta: RequestMeta,
    Path(id): Path<Uuid>,
    Json(body): Json<UpdateLicense>,
) -> Result<Data<License>> {
    service::update(&state, &principal, id, body, &meta)
        .await
        .map(Data)
}

/// Deletes a license; edges forget it. Its validations stay, without the link.
#[utoipa::path(delete, path = "/api/licenses/{id}", tag = "licenses", params(("id" = Uuid, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 204, description = "Deleted"), (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn delete_license(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<LicensesWrite>,
    meta: RequestMeta,
    Path(id): Path<Uuid>,
) -> Result<NoContent> {
    service::delete(&state, &principal, id, &meta)
        .await
        .map(|()| NoContent)
}

// ----- validation -------------------------------------------------------------------------

/// `POST /api/licenses/validate`'s body, as documented (the wire type is `protocol`'s
/// `ValidateRequest`, shared with the edges; a test keeps the two in step). `Deserialize` only
/// so that the schema carries serde's refusal of unknown fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "documentation only")]
pub struct ValidateBody {
    /// `CELAEST-{PRODUCT_CODE}-{RANDOM_8}-{CHECKSUM_4}`; a key of another shape is answered
    /// 200 with `INVALID_KEY_FORMAT`.
    #[schema(schema_with = Text::<1, { protocol_limits::KEY }>::schema)]
    license_key: String,
    /// The client's address as it sees it; the request's source address is what binds a slot.
    /// One that is not an address is answered 200 with `INVALID_IP_ADDRESS`.
    #[schema(schema_with = Text::<1, { protocol_limits::IP }>::schema)]
    ip_address: String,
    #[schema(schema_with = Text::<0, { protocol_limits::DEVICE_INFO }>::optional)]
    device_info: Option<String>,
    /// Echoed in the signed answer, so the client can reject a replayed one.
    #[schema(schema_with = Text::<1, { protocol_limits::NONCE }>::optional)]
    nonce: Option<String>,
}

/// The field limits `celaest_protocol::validation::check_request_fields` applies.
mod protocol_limits {
    pub use celaest_protocol::validation::limits::{DEVICE_INFO, IP, KEY, NONCE};
}

/// `POST /api/licenses/batch-validate`'s body, as documented (`protocol`'s `BatchRequest`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "documentation only")]
pub struct BatchBody {
    #[schema(schema_with = batch_items)]
    items: Vec<ValidateBody>,
}

/// 1–[`BATCH_MAX`](celaest_protocol::validation::BATCH_MAX) validations.
fn batch_items() -> utoipa::openapi::ArrayBuilder {
    utoipa::openapi::ArrayBuilder::new()
        .items(utoipa::openapi::Ref::from_schema_name("ValidateBody"))
        .min_items(Some(1))
        .max_items(Some(celaest_protocol::validation::BATCH_MAX))
}

/// The verdict of one validation, as documented (the wire type is `protocol`'s
/// `ValidationAnswer`; a test keeps the two in step).
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationAnswerDoc {
    pub valid: bool,
    /// VALID, INVALID_KEY_FORMAT, LICENSE_NOT_FOUND, LICENSE_EXPIRED, LICENSE_REVOKED,
    /// LICENSE_SUSPENDED, PRODUCT_INACTIVE, IP_LIMIT_REACHED, INVALID_IP_ADDRESS, BINDING_UNAVAILABLE.
    #[schema(example = "VALID")]
    pub code: String,
    pub message: String,
    /// IP slots left after this validation (`null` when the license was not looked at).
    pub remaining_ips: Option<u32>,
    pub license: Option<LicenseSummaryDoc>,
    /// The request's nonce, echoed.
    pub nonce: Option<String>,
    /// When the answer was made: with the nonce, what lets a client reject a replay.
    pub timestamp: DateTime<Utc>,
    /// `central` or the edge that answered.
    pub answered_by: String,
    /// How old the answering edge's state was (edges only).
    pub state_age_ms: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LicenseSummaryDoc {
    pub id: Uuid,
    pub status: String,
    pub product_code: String,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchAnswer {
    #[schema(value_type = Vec<ValidationAnswerDoc>)]
    pub results: Vec<ValidationAnswer>,
}

/// The answer as the protocol signs it: the envelope's exact bytes and their signature.
fn signed<T: Serialize>(keys: &KeyRing, data: T) -> Result<Response> {
    Ok(celaest_net::http::signed::signed(keys.current(), data)?)
}

/// Validates a license key for licensed software (no credentials needed; limited per client IP).
/// Always 200 for a well-formed request: `data.valid` and `data.code` say the verdict. The answer
/// is signed (`Celaest-Signature`, Ed25519, keys at `/api/licenses/signing-keys`).
#[utoipa::path(post, path = "/api/licenses/validate", tag = "licenses", request_body = ValidateBody,
    responses((status = 200, description = "The verdict, signed", body = Envelope<ValidationAnswerDoc>,
               headers(("Celaest-Signature" = String, description = "keyid, algorithm, signature over the exact body"))),
              (status = 400, body = ApiErrorBody), (status = 422, body = ApiErrorBody), (status = 429, body = ApiErrorBody)))]
async fn validate_one(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(request): Json<ValidateRequest>,
) -> Result<Response> {
    let answer =
        validate::validate(&state.db, &state.licensing, &request, ip, current_lang()).await?;
    signed(&state.licensing.keys, answer)
}

/// How many items of one batch are validated at the same time.
const BATCH_CONCURRENCY: usize = 8;

/// Validates up to 100 keys in one request; one signature covers the whole answer.
#[utoipa::path(post, path = "/api/licenses/batch-validate", tag = "licenses", request_body = BatchBody,
    responses((status = 200, description = "One verdict per item, in order, signed", body = Envelope<BatchAnswer>),
              (status = 400, body = ApiErrorBody), (status = 422, body = ApiErrorBody), (status = 429, body = ApiErrorBody)))]
async fn validate_batch(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<BatchRequest>,
) -> Result<Response> {
    let lang = current_lang();
    // Items run concurrently, as at the edge, a few at a time so that one batch cannot take the
    // whole connection pool; answers keep the items' order.
    let validations: Vec<_> = body
        .items
        .iter()
        .map(|item| validate::validate(&state.db, &state.licensing, item, ip, lang))
        .collect();
    let results = futures::stream::iter(validations)
        .buffered(BATCH_CONCURRENCY)
        .try_collect()
        .await?;
    signed(&state.licensing.keys, BatchAnswer { results })
}

/// The public keys that verify signed answers (JWK, OKP/Ed25519): the current one and earlier
/// ones still trusted, so a rotation does not break clients holding the previous key.
#[utoipa::path(get, path = "/api/licenses/signing-keys", tag = "licenses",
    responses((status = 200, body = Envelope<Object>)))]
async fn signing_keys(State(state): State<AppState>) -> Data<JwkSet> {
    Data(state.licensing.keys.jwks())
}

// ----- IP slots ---------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IpInput {
    #[schema(schema_with = ip_address)]
    pub ip_address: String,
}

/// `?ip_address=` of an unbind, for the document (required: the body alternative is not
/// documented, and without either the answer is 422).
pub struct UnbindQuery;

impl IntoParams for UnbindQuery {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::{
            Required,
            path::{ParameterBuilder, ParameterIn},
        };
        vec![
            ParameterBuilder::new()
                .name("ip_address")
                .parameter_in(ParameterIn::Query)
                .required(Required::True)
                .description(Some("The address to free"))
                .schema(Some(ip_address()))
                .build(),
        ]
    }
}

impl Validate for IpInput {
    fn validate(&self, errors: &mut FieldErrors) {
        if parse_ip(&self.ip_address).is_err() {
            errors.add(
                "ip_address",
                FieldProblem::InvalidFormat {
                    expected: "an IPv4 or IPv6 host address",
                },
            );
        }
    }
}

fn checked_ip(raw: &str) -> Result<std::net::IpAddr> {
    parse_ip(raw).map_err(|_| {
        Error::field(
            "ip_address",
            FieldProblem::InvalidFormat {
                expected: "an IPv4 or IPv6 host address",
            },
        )
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Bound {
    pub ip_address: String,
    pub remaining_ips: u32,
}

/// Binds an IP by hand (owners and managers); 409 `IP_LIMIT_REACHED` when every slot is taken.
#[utoipa::path(post, path = "/api/licenses/{id}/bind-ip", tag = "licenses", params(("id" = Uuid, Path)), request_body = IpInput,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Envelope<Bound>), (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody),
              (status = 422, body = ApiErrorBody)))]
async fn bind_ip(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<LicensesWrite>,
    meta: RequestMeta,
    Path(id): Path<Uuid>,
    Json(body): Json<IpInput>,
) -> Result<Created<Bound>> {
    let ip = checked_ip(&body.ip_address)?;
    let remaining_ips = service::bind(&state, &principal, id, ip, &meta).await?;
    Ok(Created(Bound {
        ip_address: ip.to_string(),
        remaining_ips,
    }))
}

/// Frees an IP slot (owners and managers). The address goes in the query string
/// (`?ip_address=…`) or a JSON body.
#[utoipa::path(delete, path = "/api/licenses/{id}/unbind-ip", tag = "licenses", params(("id" = Uuid, Path), UnbindQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 204, description = "Unbound"), (status = 404, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
async fn unbind_ip(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<LicensesWrite>,
    meta: RequestMeta,
    Path(id): Path<Uuid>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    body: Option<Json<IpInput>>,
) -> Result<NoContent> {
    let raw = match (query.get("ip_address"), body) {
        (Some(ip), _) => ip.clone(),
        (None, Some(Json(body))) => body.ip_address,
        (None, None) => return Err(Error::field("ip_address", FieldProblem::Required)),
    };
    let ip = checked_ip(&raw)?;
    service::unbind(&state, &principal, id, ip, &meta)
        .await
        .map(|()| NoContent)
}

/// The IPs bound to a license and the slots left.
#[utoipa::path(get, path = "/api/licenses/{id}/ips", tag = "licenses", params(("id" = Uuid, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<Ips>), (status = 404, body = ApiErrorBody)))]
async fn list_ips(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<LicensesRead>,
    Path(id): Path<Uuid>,
) -> Result<Data<Ips>> {
    let license = service::visible(&state, &principal, id).await?;
    let bindings = store::bindings(&state.db, id).await?;
    let remaining_ips =
        (i64::from(license.max_ips) - i64::try_from(bindings.len()).unwrap_or(0)).max(0);
    Ok(Data(Ips {
        max_ips: license.max_ips,
        remaining_ips,
        bindings,
    }))
}

const COLLISION_SORT: SortSpec = SortSpec {
    allowed: &[("detected_at", "c.detected_at")],
    default: Sort {
        column: "c.detected_at",
        order: Order::Desc,
    },
};

impl Listed for Collision {
    const SORT: SortSpec = COLLISION_SORT;
}

/// Concurrent-use episodes detected for a license.
#[utoipa::path(get, path = "/api/licenses/{id}/collisions", tag = "licenses", params(("id" = Uuid, Path), ListQuery<Collision>),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = PageEnvelope<Collision>), (status = 404, body = ApiErrorBody)))]
async fn list_collisions(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<LicensesRead>,
    Path(id): Path<Uuid>,
    Query(params): Query<ListParams>,
) -> Result<Page<Collision>> {
    let list = params.validate(&COLLISION_SORT)?;
    service::visible(&state, &principal, id).await?;
    let (items, total) = store::collisions(&state.db, id, &list).await?;
    Ok(Page::new(
        items,
        list.page,
        u64::try_from(total).unwrap_or(0),
    ))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ValidationFilters {
    pub valid: Option<bool>,
    #[param(schema_with = query_text)]
    pub result_code: Option<String>,
}

const VALIDATION_SORT: SortSpec = SortSpec {
    allowed: &[("validated_at", "v.validated_at")],
    default: Sort {
        column: "v.validated_at",
        order: Order::Desc,
    },
};

impl Listed for ValidationRow {
    const SORT: SortSpec = VALIDATION_SORT;
}

/// The validation history of a license.
#[utoipa::path(get, path = "/api/licenses/{id}/validations", tag = "licenses", params(("id" = Uuid, Path), ListQuery<ValidationRow>, ValidationFilters),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = PageEnvelope<ValidationRow>), (status = 404, body = ApiErrorBody)))]
async fn list_validations(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<LicensesRead>,
    Path(id): Path<Uuid>,
    Query(params): Query<ListParams>,
    Query(filters): Query<ValidationFilters>,
) -> Result<Page<ValidationRow>> {
    let list = params.validate(&VALIDATION_SORT)?;
    service::visible(&state, &principal, id).await?;
    let (items, total) =
        store::validations(&state.db, id, filters.valid, filters.result_code, &list).await?;
    Ok(Page::new(
        items,
        list.page,
        u64::try_from(total).unwrap_or(0),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewLicense {
    /// Days to add.
    #[schema(schema_with = RenewDays::optional)]
    pub days: Option<i32>,
    /// `expiry` (default: add to the current expiry while it is in the future) or `now`.
    #[schema(schema_with = optional_renew_from)]
    pub from: Option<String>,
    /// Or an exact new expiry.
    pub until: Option<DateTime<Utc>>,
}

impl Validate for RenewLicense {
    fn validate(&self, errors: &mut FieldErrors) {
        match (self.days, self.until) {
            (None, None) => errors.add("days", FieldProblem::Required),
            (Some(_), Some(_)) => errors.add(
                "until",
                FieldProblem::Custom {
                    code: "ONE_OF",
                    es: "indique days o until, no ambos",
                    en: "give days or until, not both",
                },
            ),
            (Some(days), None) => RenewDays::check(errors, "days", i64::from(days)),
            (None, Some(_)) => {}
        }
        if let Some(from) = &self.from {
            errors.one_of("from", from, RENEW_FROM);
        }
    }
}

/// [`RenewLicense`] as documented: `days` or `until`, exactly one.
pub struct RenewBody;

impl utoipa::PartialSchema for RenewBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::Type;
        with_rule(
            RenewLicense::schema(),
            exactly_one_of(&[("days", Type::Integer), ("until", Type::String)]),
        )
    }
}

impl ToSchema for RenewBody {}

/// Extends a license's expiry (an expired license becomes active again).
#[utoipa::path(post, path = "/api/licenses/{id}/renew", tag = "licenses", params(("id" = Uuid, Path)), request_body = RenewBody,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<License>), (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody),
              (status = 422, body = ApiErrorBody)))]
async fn renew(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<LicensesWrite>,
    meta: RequestMeta,
    Path(id): Path<Uuid>,
    Json(body): Json<RenewLicense>,
) -> Result<Data<License>> {
    service::renew(&state, &principal, id, body, &meta)
        .await
        .map(Data)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    #[schema(schema_with = ReasonText::optional)]
    pub reason: Option<String>,
}

impl Validate for Reason {
    fn validate(&self, errors: &mut FieldErrors) {
        ReasonText::check_opt(errors, "reason", self.reason.as_deref());
    }
}

impl Creates for Reason {
    const REQUIRED: &'static [&'static str] = &["reason"];

    fn has(&self, field: &str) -> bool {
        field != "reason" || self.reason.is_some()
    }
}

/// The body of a revocation, for the document: a [`Reason`] that is given.
pub struct RevokeReason;

impl utoipa::PartialSchema for RevokeReason {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        New::<Reason>::schema()
    }
}

impl ToSchema for RevokeReason {}

/// Revokes a license, with a reason: every edge refuses it from its next change on.
#[utoipa::path(post, path = "/api/licenses/{id}/revoke", tag = "licenses", params(("id" = Uuid, Path)), request_body = RevokeReason,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<License>), (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody),
              (status = 422, body = ApiErrorBody)))]
async fn revoke(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<LicensesWrite>,
    meta: RequestMeta,
    Path(id): Path<Uuid>,
    Json(New(body)): Json<New<Reason>>,
) -> Result<Data<License>> {
    let reason = body
        .reason
        .ok_or_else(|| Error::field("reason", FieldProblem::Required))?;
    service::revoke(&state, &principal, id, reason, &meta)
        .await
        .map(Data)
}

/// Reactivates a revoked or suspended license (409 `LICENSE_EXPIRED` when past its expiry).
#[utoipa::path(post, path = "/api/licenses/{id}/reactivate", tag = "licenses", params(("id" = Uuid, Path)), request_body = Reason,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<License>), (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody)))]
async fn reactivate(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<LicensesWrite>,
    meta: RequestMeta,
    Path(id): Path<Uuid>,
    body: Option<Json<Reason>>,
) -> Result<Data<License>> {
    let reason = body.and_then(|Json(b)| b.reason);
    service::reactivate(&state, &principal, id, reason, &meta)
        .await
        .map(Data)
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageRange {
    /// First day (default: 30 days ago).
    pub from: Option<NaiveDate>,
    /// Last day (default: today).
    pub to: Option<NaiveDate>,
}

/// Validations per day.
#[utoipa::path(get, path = "/api/licenses/{id}/usage", tag = "licenses", params(("id" = Uuid, Path), UsageRange),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<Usage>), (status = 404, body = ApiErrorBody), (status = 422, body = ApiErrorBody)))]
async fn usage(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<LicensesRead>,
    Path(id): Path<Uuid>,
    Query(range): Query<UsageRange>,
) -> Result<Data<Usage>> {
    service::visible(&state, &principal, id).await?;
    let to = range.to.unwrap_or_else(|| Utc::now().date_naive());
    let from = range.from.unwrap_or(to - chrono::Duration::days(30));
    if from > to || (to - from).num_days() > 366 {
        return Err(Error::field(
            "from",
            FieldProblem::Custom {
                code: "BAD_RANGE",
                es: "rango de hasta 366 días con from <= to",
                en: "a range of at most 366 days with from <= to",
            },
        ));
    }
    let days = store::usage(&state.db, id, from, to).await?;
    Ok(Data(Usage {
        from,
        to,
        validations: days.iter().map(|d| d.validation_count).sum(),
        successes: days.iter().map(|d| d.success_count).sum(),
        failures: days.iter().map(|d| d.failure_count).sum(),
        days,
    }))
}
