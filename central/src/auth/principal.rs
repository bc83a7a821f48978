//! Who is calling: the [`Principal`] every authorized handler receives, its [`Role`], and the
//! extractors that hand it over.
//!
//! The gate middleware ([`super::gate`]) authenticates the request once and leaves the outcome in
//! the request's extensions; handlers ask for [`Authenticated`] (any valid caller) or
//! [`Scoped<S>`] (a caller whose API key, if that is how it came, carries scope `S`). There is no
//! way to reach a handler that needs a principal without one.

use std::marker::PhantomData;

use axum::{extract::FromRequestParts, http::request::Parts};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::{Error, ErrorCode, Result};

/// The spec's roles. `users_profile.role` is authoritative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Products and licenses.
    Developer,
    /// Only its own resources.
    Client,
    /// Read-only.
    Viewer,
}

impl Role {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "admin" => Some(Self::Admin),
            "developer" => Some(Self::Developer),
            "client" => Some(Self::Client),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Developer => "developer",
            Self::Client => "client",
            Self::Viewer => "viewer",
        }
    }
}

/// How the caller proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A Supabase access token, with its session when the token names one.
    Jwt { session_id: Option<Uuid> },
    /// A personal API key and its scopes.
    ApiKey { key_id: Uuid, scopes: Vec<String> },
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Uuid,
    pub role: Role,
    pub credential: Credential,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Admins and viewers read every tenant's data; the others only their own.
    pub fn reads_everything(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Viewer)
    }

    /// Admins and developers manage products and licenses.
    pub fn manages_catalogue(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Developer)
    }

    /// Viewers are read-only everywhere.
    pub fn can_write(&self) -> bool {
        self.role != Role::Viewer
    }

    pub fn is(&self, user_id: Uuid) -> bool {
        self.user_id == user_id
    }

    /// `Ok` when `allowed`, else 403 `INSUFFICIENT_ROLE`.
    pub fn ensure(&self, allowed: bool) -> Result<()> {
        if allowed {
            Ok(())
        } else {
            Err(Error::api(ErrorCode::InsufficientRole))
        }
    }

    /// Whether this principal's credential carries `scope` (tokens carry every scope).
    pub fn has_scope(&self, scope: &str) -> bool {
        match &self.credential {
            Credential::Jwt { .. } => true,
            Credential::ApiKey { scopes, .. } => scopes::grants(scopes, scope),
        }
    }

    /// The API key id, when the caller came with one (for the audit trail).
    pub fn api_key_id(&self) -> Option<Uuid> {
        match &self.credential {
            Credential::ApiKey { key_id, .. } => Some(*key_id),
            Credential::Jwt { .. } => None,
        }
    }

    /// The session of a token-authenticated caller.
    pub fn session_id(&self) -> Option<Uuid> {
        match &self.credential {
            Credential::Jwt { session_id } => *session_id,
            Credential::ApiKey { .. } => None,
        }
    }
}

/// API key scopes: `<area>:read`, `<area>:write` (which implies read), or `*`.
pub mod scopes {
    pub const ALL: &str = "*";
    /// Every scope a key may be given.
    pub const KNOWN: &[&str] = &[
        "*",
        "users:read",
        "users:write",
        "organizations:read",
        "organizations:write",
        "licenses:read",
        "licenses:write",
        "products:read",
        "products:write",
        "billing:read",
        "billing:write",
        "ai:use",
        "settings:read",
        "settings:write",
        "analytics:read",
        "audit:read",
    ];

    /// Whether `granted` allows `wanted`.
    pub fn grants(granted: &[String], wanted: &str) -> bool {
        granted.iter().any(|g| {
            g == ALL
                || g == wanted
                || wanted
                    .strip_suffix(":read")
                    .is_some_and(|area| g.strip_suffix(":write") == Some(area))
        })
    }
}

/// What a role may do, in the scope vocabulary (for `GET /api/auth/me` and the frontend).
pub fn permissions(role: Role) -> Vec<&'static str> {
    let all = scopes::KNOWN.iter().copied().filter(|s| *s != scopes::ALL);
    match role {
        Role::Admin => all.collect(),
        Role::Viewer => all.filter(|s| s.ends_with(":read")).collect(),
        Role::Developer => vec![
            "users:read",
            "users:write",
            "organizations:read",
            "organizations:write",
            "licenses:read",
            "licenses:write",
            "products:read",
            "products:write",
            "ai:use",
            "analytics:read",
        ],
        Role::Client => vec![
            "users:read",
            "users:write",
            "organizations:read",
            "organizations:write",
            "licenses:read",
            "products:read",
            "billing:read",
            "billing:write",
            "ai:use",
        ],
    }
}

/// What the gate found out about the request, left in its extensions.
#[derive(Debug, Clone)]
pub enum AuthOutcome {
    Anonymous,
    Authenticated(Principal),
}

fn principal_of(parts: &Parts) -> Result<Principal> {
    match parts.extensions.get::<AuthOutcome>() {
        Some(AuthOutcome::Authenticated(principal)) => Ok(principal.clone()),
        _ => Err(Error::api(ErrorCode::AuthRequired)),
    }
}

/// Any authenticated caller.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        principal_of(parts).map(Self)
    }
}

/// The scope an endpoint needs from an API key.
pub trait RequiredScope: Send + Sync {
    const SCOPE: &'static str;
}

/// An authenticated caller whose credential carries the scope `S`.
#[derive(Debug, Clone)]
pub struct Scoped<S: RequiredScope>(pub Principal, pub PhantomData<S>);

impl<St: Send + Sync, S: RequiredScope> FromRequestParts<St> for Scoped<S> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &St) -> Result<Self, Self::Rejection> {
        let principal = principal_of(parts)?;
        if principal.has_scope(S::SCOPE) {
            Ok(Self(principal, PhantomData))
        } else {
            Err(Error::with_details(
                ErrorCode::InsufficientScope,
                serde_json::json!({ "required": S::SCOPE }),
            ))
        }
    }
}

macro_rules! required_scopes {
    ($($name:ident => $scope:literal),* $(,)?) => {
        $(
            #[doc = concat!("Requires the `", $scope, "` scope.")]
            #[derive(Debug, Clone, Copy)]
            pub struct $name;
            impl RequiredScope for $name {
                const SCOPE: &'static str = $scope;
            }
        )*
    };
}

required_scopes! {
    UsersRead => "users:read",
    UsersWrite => "users:write",
    OrgsRead => "organizations:read",
    OrgsWrite => "organizations:write",
    ProductsRead => "products:read",
    ProductsWrite => "products:write",
    LicensesRead => "licenses:read",
    LicensesWrite => "licenses:write",
    SettingsRead => "settings:read",
}

#[cfg(test)]
mod tests {
    use super::scopes::grants;

    #[test]
    fn write_implies_read_and_star_implies_everything() {
        let keys = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert!(grants(&keys(&["users:write"]), "users:read"));
        assert!(grants(&keys(&["users:write"]), "users:write"));
        assert!(!grants(&keys(&["users:read"]), "users:write"));
        assert!(!grants(&keys(&["users:write"]), "organizations:read"));
        assert!(grants(&keys(&["*"]), "organizations:write"));
        assert!(!grants(&[], "users:read"));
    }
}
