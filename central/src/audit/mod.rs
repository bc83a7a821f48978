//! The audit trail (MODULO 12's format): every state-changing action writes one `audit_logs` row
//! in the same transaction as the change, so the trail can never disagree with the data. Rows are
//! append-only — the database refuses updates and deletes — and nothing here offers either.

use std::net::IpAddr;

use axum::{
    extract::{FromRef, FromRequestParts},
    http::{header, request::Parts},
};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    auth::principal::Principal,
    http::{client_ip::client_ip, context::RequestId},
    state::AppState,
};

/// Where a request came from, for the trail.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub ip: IpAddr,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl<S> FromRequestParts<S> for RequestMeta
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        Ok(Self::from_parts(parts, &state.config.http.trusted_proxies))
    }
}

impl RequestMeta {
    pub fn from_parts(parts: &Parts, trusted: &[ipnetwork::IpNetwork]) -> Self {
        Self {
            ip: client_ip(parts, trusted),
            user_agent: parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|ua| ua.chars().take(512).collect()),
            request_id: parts.extensions.get::<RequestId>().map(|r| r.0.clone()),
        }
    }
}

/// Who did it.
#[derive(Debug, Clone, Copy)]
pub enum Actor {
    User {
        user_id: Uuid,
        api_key_id: Option<Uuid>,
    },
    System,
}

impl From<&Principal> for Actor {
    fn from(principal: &Principal) -> Self {
        Self::User {
            user_id: principal.user_id,
            api_key_id: principal.api_key_id(),
        }
    }
}

/// One audited action, e.g. `AuditEvent::new("user.created", "user", id)`.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub action: &'static str,
    pub entity_type: &'static str,
    pub entity_id: String,
    pub organization_id: Option<Uuid>,
    pub changes: Map<String, Value>,
    pub metadata: Map<String, Value>,
}

impl AuditEvent {
    #[expect(
        clippy::needless_pass_by_value,
        reason = "ids read best passed by value at call sites"
    )]
    pub fn new(action: &'static str, entity_type: &'static str, entity_id: impl ToString) -> Self {
        Self {
            action,
            entity_type,
            entity_id: entity_id.to_string(),
            organization_id: None,
            changes: Map::new(),
            metadata: Map::new(),
        }
    }

    pub fn in_organization(mut self, organization_id: Uuid) -> Self {
        self.organization_id = Some(organization_id);
        self
    }

    /// Records `field: [before, after]` when the value changed.
    pub fn change<T: Serialize + PartialEq>(mut self, field: &str, before: &T, after: &T) -> Self {
        if before != after {
            self.changes
                .insert(field.to_owned(), json!([before, after]));
        }
        self
    }

    pub fn meta(mut self, key: &str, value: impl Serialize) -> Self {
        self.metadata.insert(key.to_owned(), json!(value));
        self
    }
}

/// Writes `event` on `conn` — pass the transaction that makes the change.
pub async fn record(
    conn: &mut PgConnection,
    actor: Actor,
    request: Option<&RequestMeta>,
    event: AuditEvent,
) -> sqlx::Result<()> {
    let (actor_type, user_id, api_key_id) = match actor {
        Actor::User {
            user_id,
            api_key_id: Some(key),
        } => ("api_key", Some(user_id), Some(key)),
        Actor::User {
            user_id,
            api_key_id: None,
        } => ("user", Some(user_id), None),
        Actor::System => ("system", None, None),
    };
    sqlx::query!(
        r#"INSERT INTO audit_logs (user_id, actor_type, api_key_id, organization_id, action, entity_type,
                                   entity_id, changes, metadata, ip_address, user_agent, request_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"#,
        user_id,
        actor_type,
        api_key_id,
        event.organization_id,
        event.action,
        event.entity_type,
        event.entity_id,
        Value::Object(event.changes),
        Value::Object(event.metadata),
        request.map(|r| ipnetwork::IpNetwork::from(r.ip)),
        request.and_then(|r| r.user_agent.as_deref()),
        request.and_then(|r| r.request_id.as_deref()),
    )
    .execute(conn)
    .await?;
    Ok(())
}
