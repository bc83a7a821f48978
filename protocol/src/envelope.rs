//! The JSON envelope every HTTP response of central and edge uses (spec, ESTANDARES).
//!
//! Success: `{"success":true,"data":…,"meta":{page,per_page,total,total_pages}}` (`meta` only on
//! paginated lists). Failure: `{"success":false,"error":{"code","message","details"}}`.

use serde::{Deserialize, Serialize};

/// A successful answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuccessEnvelope<T> {
    /// Always `true`.
    pub success: bool,
    pub data: T,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
}

impl<T> SuccessEnvelope<T> {
    pub fn new(data: T) -> Self {
        Self {
            success: true,
            data,
            meta: None,
        }
    }

    pub fn paginated(data: T, meta: Meta) -> Self {
        Self {
            success: true,
            data,
            meta: Some(meta),
        }
    }
}

/// Pagination facts of a list answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub page: u32,
    pub per_page: u32,
    pub total: u64,
    pub total_pages: u64,
}

impl Meta {
    /// Builds the meta block for `total` rows shown `per_page` at a time (`per_page` ≥ 1).
    pub fn new(page: u32, per_page: u32, total: u64) -> Self {
        let per_page = per_page.max(1);
        Self {
            page,
            per_page,
            total,
            total_pages: total.div_ceil(u64::from(per_page)),
        }
    }
}

/// A failed answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    /// Always `false`.
    pub success: bool,
    pub error: ErrorBody,
}

/// What went wrong: a stable machine code, a human message, and optional structured details.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable, machine-readable constant such as `LICENSE_EXPIRED` or `VALIDATION_FAILED`.
    pub code: String,
    /// Human-readable, in the caller's language.
    pub message: String,
    /// Structured context (offending fields, limits, …); `null` when there is none.
    #[serde(default)]
    pub details: serde_json::Value,
}

impl ErrorEnvelope {
    pub fn new(
        code: impl Into<String>,
        message: impl Into<String>,
        details: serde_json::Value,
    ) -> Self {
        Self {
            success: false,
            error: ErrorBody {
                code: code.into(),
                message: message.into(),
                details,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_rounds_total_pages_up() {
        assert_eq!(Meta::new(1, 20, 150).total_pages, 8);
        assert_eq!(Meta::new(1, 20, 160).total_pages, 8);
        assert_eq!(Meta::new(1, 20, 0).total_pages, 0);
        assert_eq!(Meta::new(1, 20, 1).total_pages, 1);
    }

    #[test]
    fn success_without_meta_omits_the_field() {
        let json = serde_json::to_value(SuccessEnvelope::new(42)).unwrap();
        assert_eq!(json, serde_json::json!({"success": true, "data": 42}));
    }

    #[test]
    fn error_envelope_has_the_spec_shape() {
        let json = serde_json::to_value(ErrorEnvelope::new(
            "LICENSE_EXPIRED",
            "La licencia ha expirado",
            serde_json::json!({"expired_at": "2026-01-15T00:00:00Z"}),
        ))
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "success": false,
                "error": {
                    "code": "LICENSE_EXPIRED",
                    "message": "La licencia ha expirado",
                    "details": {"expired_at": "2026-01-15T00:00:00Z"}
                }
            })
        );
    }
}
