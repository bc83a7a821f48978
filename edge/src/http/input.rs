//! Central's answers to malformed input at the validation endpoints, reproduced
//! exactly: 415 `UNSUPPORTED_MEDIA_TYPE` without a JSON content type, 413 `PAYLOAD_TOO_LARGE`
//! past the body limit, 400 `MALFORMED_JSON` (with `line` and `column`) for broken syntax, and
//! 422 `VALIDATION_FAILED` with `details.fields` — `[{field, code, message}]` in the caller's
//! language — for wrong types, unknown fields and out-of-range values.
//!
//! The rules themselves — field limits, messages, how broken JSON is told from a wrong shape —
//! live in `celaest_protocol` (`input`, `validation`), shared with central; this module is the
//! edge's axum glue around them.

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::{StatusCode, header},
};
use celaest_protocol::{
    ErrorCode, Lang,
    input::{FieldErrors, JsonProblem, Validate},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::EdgeError;

/// Why a body was refused before any validation ran.
#[derive(Debug)]
pub enum InputError {
    Code(ErrorCode, Value),
    Fields(FieldErrors),
}

impl InputError {
    /// The error in the caller's language (field messages are rendered here).
    pub fn into_edge_error(self, lang: Lang) -> EdgeError {
        match self {
            InputError::Code(code, details) => EdgeError { code, details },
            InputError::Fields(fields) => EdgeError {
                code: ErrorCode::ValidationFailed,
                details: json!({ "fields": fields.render(lang) }),
            },
        }
    }
}

/// A JSON body that deserialized and passed its [`Validate`] rules.
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = EdgeError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let lang = req.extensions().get::<Lang>().copied().unwrap_or_default();
        read_json(req, state)
            .await
            .map(Json)
            .map_err(|e| e.into_edge_error(lang))
    }
}

async fn read_json<S: Send + Sync, T: DeserializeOwned + Validate>(
    req: Request,
    state: &S,
) -> Result<T, InputError> {
    if !is_json_content_type(req.headers().get(header::CONTENT_TYPE)) {
        return Err(InputError::Code(
            ErrorCode::UnsupportedMediaType,
            Value::Null,
        ));
    }
    let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
        let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorCode::PayloadTooLarge
        } else {
            ErrorCode::BadRequest
        };
        InputError::Code(code, Value::Null)
    })?;
    let value: T = parse_json(&bytes)?;
    let mut errors = FieldErrors::default();
    value.validate(&mut errors);
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(InputError::Fields(errors))
    }
}

fn is_json_content_type(value: Option<&header::HeaderValue>) -> bool {
    let Some(mime) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = mime
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Deserializes JSON, telling broken syntax (400) from well-formed JSON of the wrong shape (422).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, InputError> {
    celaest_protocol::input::parse_json(bytes).map_err(|problem| match problem {
        JsonProblem::Malformed { line, column } => InputError::Code(
            ErrorCode::MalformedJson,
            json!({ "line": line, "column": column }),
        ),
        JsonProblem::Fields(fields) => InputError::Fields(fields),
    })
}

#[cfg(test)]
mod tests {
    use celaest_protocol::{ValidateRequest, validation::BatchRequest};

    use super::*;

    fn fields_of(err: InputError) -> Vec<(String, &'static str)> {
        match err {
            InputError::Fields(fields) => fields
                .render(Lang::En)
                .into_iter()
                .map(|f| (f.field, f.code))
                .collect(),
            InputError::Code(code, _) => panic!("expected field errors, got {code:?}"),
        }
    }

    fn checked<T: DeserializeOwned + Validate>(raw: &str) -> Result<T, InputError> {
        let value: T = parse_json(raw.as_bytes())?;
        let mut errors = FieldErrors::default();
        value.validate(&mut errors);
        if errors.is_empty() {
            Ok(value)
        } else {
            Err(InputError::Fields(errors))
        }
    }

    #[test]
    fn broken_syntax_is_malformed_json_with_its_position() {
        for raw in [
            "{",
            "{\"license_key\": }",
            "not json",
            "{\"license_key\":\"a\",\"ip_address\":\"b\"} trailing",
        ] {
            match parse_json::<ValidateRequest>(raw.as_bytes()) {
                Err(InputError::Code(ErrorCode::MalformedJson, details)) => {
                    assert!(details["line"].is_u64() && details["column"].is_u64());
                }
                other => panic!("{raw}: {:?}", other.map(|_| ())),
            }
        }
    }

    #[test]
    fn wrong_shapes_and_limits_name_the_field() {
        let cases: &[(&str, Vec<(&str, &str)>)] = &[
            (
                r#"{"ip_address":"1.2.3.4"}"#,
                vec![("license_key", "REQUIRED")],
            ),
            (
                r#"{"license_key":1,"ip_address":"1.2.3.4"}"#,
                vec![("license_key", "INVALID_TYPE")],
            ),
            (
                r#"{"license_key":"k","ip_address":"1.2.3.4","extra":true}"#,
                vec![("extra", "UNKNOWN_FIELD")],
            ),
            (
                r#"{"license_key":"   ","ip_address":"1.2.3.4","nonce":""}"#,
                vec![("license_key", "REQUIRED"), ("nonce", "REQUIRED")],
            ),
            (
                &format!(
                    r#"{{"license_key":"{}","ip_address":"1.2.3.4","device_info":"{}"}}"#,
                    "K".repeat(65),
                    "d".repeat(513)
                ),
                vec![("license_key", "TOO_LONG"), ("device_info", "TOO_LONG")],
            ),
            (r#""text""#, vec![("body", "INVALID_TYPE")]),
        ];
        for (raw, expected) in cases {
            let got = fields_of(checked::<ValidateRequest>(raw).err().unwrap());
            let expected: Vec<(String, &str)> = expected
                .iter()
                .map(|(f, c)| ((*f).to_owned(), *c))
                .collect();
            assert_eq!(got, expected, "{raw}");
        }
    }

    #[test]
    fn batch_items_are_counted_and_named_by_index() {
        assert_eq!(
            fields_of(checked::<BatchRequest>(r#"{"items":[]}"#).err().unwrap()),
            vec![("items".to_owned(), "OUT_OF_RANGE")]
        );
        let item = r#"{"license_key":"k","ip_address":"1.2.3.4"}"#;
        let many = format!(r#"{{"items":[{}]}}"#, vec![item; 101].join(","));
        assert_eq!(
            fields_of(checked::<BatchRequest>(&many).err().unwrap()),
            vec![("items".to_owned(), "OUT_OF_RANGE")]
        );
        assert_eq!(
            fields_of(
                checked::<BatchRequest>(r#"{"items":[{"license_key":"k","ip_address":""}]}"#)
                    .err()
                    .unwrap()
            ),
            vec![("items[0].ip_address".to_owned(), "REQUIRED")]
        );
        assert_eq!(
            fields_of(
                checked::<BatchRequest>(r#"{"items":[{"license_key":"k"}]}"#)
                    .err()
                    .unwrap()
            ),
            vec![("items[0].ip_address".to_owned(), "REQUIRED")]
        );
        assert!(checked::<BatchRequest>(&format!(r#"{{"items":[{item}]}}"#)).is_ok());
    }
}
