//! The catalogue of stable error codes: each with its HTTP status and its message in both languages.
//!
//! Codes are the contract with clients (`error.code`), identical at central and at every edge;
//! they never change once published. Modules add their codes here, one line each, so the whole
//! vocabulary stays in one place. Statuses are plain numbers: this crate has no HTTP dependency.

use crate::Lang;

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident => ($status:literal, $code:literal, $es:literal, $en:literal), )*) => {
        /// A stable, machine-readable error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, for documentation and exhaustiveness tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The wire constant, e.g. `VALIDATION_FAILED`.
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The HTTP status this code is answered with.
            pub const fn status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }

            /// The human-readable message in `lang`.
            pub const fn message(self, lang: Lang) -> &'static str {
                match (self, lang) {
                    $((ErrorCode::$variant, Lang::Es) => $es, (ErrorCode::$variant, Lang::En) => $en,)*
                }
            }
        }
    };
}

error_codes! {
    /// The request could not be understood (bad query string, header, …).
    BadRequest => (400, "BAD_REQUEST", "La solicitud no es válida", "The request is invalid"),
    /// The body is not syntactically valid JSON.
    MalformedJson => (400, "MALFORMED_JSON", "El cuerpo de la solicitud no es JSON válido", "The request body is not valid JSON"),
    /// A path segment has the wrong shape (e.g. an id that is not a UUID).
    InvalidPathParameter => (400, "INVALID_PATH_PARAMETER", "Un parámetro de la ruta no es válido", "A path parameter is invalid"),
    /// Missing or invalid credentials.
    Unauthorized => (401, "UNAUTHORIZED", "Se requiere autenticación", "Authentication is required"),
    /// No credentials were sent (`Authorization: Bearer` or `X-API-Key`).
    AuthRequired => (401, "AUTH_REQUIRED", "Se requiere un token o una API key", "A token or an API key is required"),
    /// The bearer token is malformed, wrongly signed, or for another audience or issuer.
    TokenInvalid => (401, "TOKEN_INVALID", "El token no es válido", "The token is invalid"),
    /// The bearer token has expired.
    TokenExpired => (401, "TOKEN_EXPIRED", "El token ha expirado", "The token has expired"),
    /// The token's session was closed (logout or revocation).
    SessionRevoked => (401, "SESSION_REVOKED", "La sesión fue cerrada", "The session has been revoked"),
    /// The API key does not exist.
    ApiKeyInvalid => (401, "API_KEY_INVALID", "La API key no es válida", "The API key is invalid"),
    /// The API key has expired.
    ApiKeyExpired => (401, "API_KEY_EXPIRED", "La API key ha expirado", "The API key has expired"),
    /// The API key was revoked, deleted or rotated out.
    ApiKeyRevoked => (401, "API_KEY_REVOKED", "La API key fue revocada", "The API key has been revoked"),
    /// The refresh token was refused by the identity provider.
    RefreshTokenInvalid => (401, "REFRESH_TOKEN_INVALID", "El refresh token no es válido", "The refresh token is invalid"),
    /// The account is deactivated or deleted.
    UserDisabled => (403, "USER_DISABLED", "La cuenta está desactivada", "The account is disabled"),
    /// The caller's role does not allow this action.
    InsufficientRole => (403, "INSUFFICIENT_ROLE", "Su rol no permite esta acción", "Your role does not allow this action"),
    /// The API key lacks the scope this endpoint needs.
    InsufficientScope => (403, "INSUFFICIENT_SCOPE", "La API key no tiene el alcance necesario", "The API key lacks the required scope"),
    /// An organization must keep at least one owner.
    LastOwner => (409, "LAST_OWNER", "La organización debe conservar al menos un propietario", "The organization must keep at least one owner"),
    /// The user is already a member of the organization.
    AlreadyMember => (409, "ALREADY_MEMBER", "El usuario ya es miembro de la organización", "The user is already a member of the organization"),
    /// Every IP slot of the license is taken.
    IpLimitReached => (409, "IP_LIMIT_REACHED", "La licencia no tiene más IPs disponibles", "The license has no IP slots left"),
    /// The license's expiry has passed; renew it first.
    LicenseExpired => (409, "LICENSE_EXPIRED", "La licencia ha expirado", "The license has expired"),
    /// The action does not apply to the license's current status.
    InvalidLicenseState => (409, "INVALID_LICENSE_STATE", "La acción no es posible en el estado actual de la licencia", "The action is not possible in the license's current state"),
    /// The identity provider (Supabase) is not configured or did not answer.
    AuthProviderUnavailable => (503, "AUTH_PROVIDER_UNAVAILABLE", "El proveedor de identidad no está disponible", "The identity provider is unavailable"),
    /// Authenticated but not allowed.
    Forbidden => (403, "FORBIDDEN", "No tiene permiso para realizar esta acción", "You are not allowed to perform this action"),
    /// The addressed resource does not exist (or is not visible to the caller).
    NotFound => (404, "NOT_FOUND", "El recurso no existe", "The resource does not exist"),
    /// No route matches the path.
    RouteNotFound => (404, "ROUTE_NOT_FOUND", "La ruta solicitada no existe", "The requested route does not exist"),
    /// The route exists but not with this method.
    MethodNotAllowed => (405, "METHOD_NOT_ALLOWED", "Método HTTP no permitido para esta ruta", "HTTP method not allowed for this route"),
    /// The request conflicts with existing state (duplicate, stale version, …).
    Conflict => (409, "CONFLICT", "La solicitud entra en conflicto con el estado actual", "The request conflicts with the current state"),
    /// A unique value is already taken.
    AlreadyExists => (409, "ALREADY_EXISTS", "Ya existe un recurso con ese valor", "A resource with that value already exists"),
    /// The body is larger than allowed.
    PayloadTooLarge => (413, "PAYLOAD_TOO_LARGE", "El cuerpo de la solicitud es demasiado grande", "The request body is too large"),
    /// The body is not JSON (wrong or missing `Content-Type`).
    UnsupportedMediaType => (415, "UNSUPPORTED_MEDIA_TYPE", "Se esperaba Content-Type: application/json", "Expected Content-Type: application/json"),
    /// The body is well-formed but some fields are wrong; `details.fields` lists them.
    ValidationFailed => (422, "VALIDATION_FAILED", "Algunos campos no son válidos", "Some fields are invalid"),
    /// Too many requests; retry after `Retry-After` seconds.
    RateLimited => (429, "RATE_LIMITED", "Demasiadas solicitudes, inténtelo más tarde", "Too many requests, try again later"),
    /// Something failed on our side; the request id identifies it in the logs.
    Internal => (500, "INTERNAL_ERROR", "Error interno del servidor", "Internal server error"),
    /// The request took longer than the server allows.
    RequestTimeout => (503, "REQUEST_TIMEOUT", "La solicitud tardó demasiado en procesarse", "The request took too long to process"),
    /// A dependency (database, cache, provider) is unavailable.
    ServiceUnavailable => (503, "SERVICE_UNAVAILABLE", "Servicio no disponible temporalmente", "Service temporarily unavailable"),
    /// The service is up but not ready to take traffic.
    NotReady => (503, "NOT_READY", "El servicio aún no está listo", "The service is not ready yet"),
}

impl ErrorCode {
    /// The code a bare error status (one produced by a lower layer with no body) stands for.
    pub fn for_status(status: u16) -> Self {
        match status {
            400 => Self::BadRequest,
            401 => Self::Unauthorized,
            403 => Self::Forbidden,
            404 => Self::RouteNotFound,
            405 => Self::MethodNotAllowed,
            409 => Self::Conflict,
            413 => Self::PayloadTooLarge,
            415 => Self::UnsupportedMediaType,
            422 => Self::ValidationFailed,
            429 => Self::RateLimited,
            408 | 503 | 504 => Self::RequestTimeout,
            _ => Self::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn codes_are_unique_upper_snake_case_constants() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(s.chars().all(|c| c.is_ascii_uppercase() || c == '_'), "{s}");
        }
    }

    #[test]
    fn every_code_has_two_distinct_messages_and_an_error_status() {
        for code in ErrorCode::ALL {
            assert!((400..600).contains(&code.status()), "{code:?}");
            assert_ne!(code.message(Lang::Es), code.message(Lang::En), "{code:?}");
        }
    }
}
