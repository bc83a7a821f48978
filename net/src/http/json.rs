//! How a JSON body is read at central and at the edge, so both refuse bad input alike: 415
//! `UNSUPPORTED_MEDIA_TYPE` without a JSON content type, 413 `PAYLOAD_TOO_LARGE` past the body
//! limit, 400 `MALFORMED_JSON` (with `line` and `column`) for broken syntax, and field errors
//! (422 `VALIDATION_FAILED`) for wrong types, unknown fields and failed [`Validate`] rules.
//!
//! The rules themselves live in `celaest_protocol::input`; this reads the body and says what was
//! wrong as a [`JsonRejection`], which each crate turns into its own error.

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::{HeaderValue, StatusCode, header},
};
use celaest_protocol::{
    ErrorCode,
    input::{FieldErrors, JsonProblem, Validate},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Why a body was refused.
#[derive(Debug)]
pub enum JsonRejection {
    /// Refused before its fields were looked at: the code and its `details` (`Null` if none).
    Code(ErrorCode, Value),
    /// Well-formed JSON whose fields are wrong (422 `VALIDATION_FAILED`).
    Fields(FieldErrors),
}

/// How a body's numbers are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numbers {
    /// As serde reads them: `5.0` is not an integer. The edge's validation bodies have no
    /// integer fields, and this is the fast path.
    Exact,
    /// A number with a zero fraction or an exponent (`5.0`, `1e3`) is the integer it is, as in
    /// JSON Schema, so a body central's OpenAPI document allows is read.
    Integral,
}

/// Reads the body of `req` as a `T` that passes its [`Validate`] rules.
pub async fn read_json<S, T>(req: Request, state: &S, numbers: Numbers) -> Result<T, JsonRejection>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    if !is_json_content_type(req.headers().get(header::CONTENT_TYPE)) {
        return Err(JsonRejection::Code(
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
        JsonRejection::Code(code, Value::Null)
    })?;
    parse_valid(&bytes, numbers)
}

/// Whether a `Content-Type` is JSON: `application/json` or any `application/*+json`.
pub fn is_json_content_type(value: Option<&HeaderValue>) -> bool {
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
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8], numbers: Numbers) -> Result<T, JsonRejection> {
    let parsed = match numbers {
        Numbers::Exact => celaest_protocol::input::parse_json(bytes),
        Numbers::Integral => celaest_protocol::input::parse_json_integral(bytes),
    };
    parsed.map_err(|problem| match problem {
        JsonProblem::Malformed { line, column } => JsonRejection::Code(
            ErrorCode::MalformedJson,
            json!({ "line": line, "column": column }),
        ),
        JsonProblem::Fields(fields) => JsonRejection::Fields(fields),
    })
}

/// [`parse_json`], then the value's [`Validate`] rules.
pub fn parse_valid<T: DeserializeOwned + Validate>(
    bytes: &[u8],
    numbers: Numbers,
) -> Result<T, JsonRejection> {
    let value: T = parse_json(bytes, numbers)?;
    let mut errors = FieldErrors::new();
    value.validate(&mut errors);
    errors
        .into_result()
        .map(|()| value)
        .map_err(JsonRejection::Fields)
}

#[cfg(test)]
mod tests {
    use celaest_protocol::{Lang, ValidateRequest, validation::BatchRequest};
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "fields exist to be deserialized")]
    struct Body {
        name: String,
        count: u8,
        nested: Option<Nested>,
    }

    #[derive(Debug, Deserialize)]
    #[expect(dead_code, reason = "fields exist to be deserialized")]
    struct Nested {
        flag: bool,
    }

    fn fields_of<T>(result: Result<T, JsonRejection>) -> Vec<(String, &'static str)> {
        match result {
            Err(JsonRejection::Fields(fields)) => fields
                .render(Lang::En)
                .into_iter()
                .map(|f| (f.field, f.code))
                .collect(),
            Err(JsonRejection::Code(code, _)) => panic!("expected field errors, got {code:?}"),
            Ok(_) => panic!("expected field errors, got a value"),
        }
    }

    fn field(name: &str, code: &'static str) -> Vec<(String, &'static str)> {
        vec![(name.to_owned(), code)]
    }

    #[test]
    fn json_content_types_are_told_from_others() {
        for json in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            assert!(
                is_json_content_type(Some(&HeaderValue::from_static(json))),
                "{json}"
            );
        }
        for other in ["text/plain", "application/xml", "json", "text/json"] {
            assert!(
                !is_json_content_type(Some(&HeaderValue::from_static(other))),
                "{other}"
            );
        }
        assert!(!is_json_content_type(None));
    }

    #[test]
    fn broken_syntax_is_malformed_json_with_its_position() {
        for raw in [
            "{",
            "{\"name\": }",
            "not json",
            "{\"name\":\"a\",\"count\":1} trailing",
        ] {
            match parse_json::<Body>(raw.as_bytes(), Numbers::Exact) {
                Err(JsonRejection::Code(ErrorCode::MalformedJson, details)) => {
                    assert!(details["line"].is_u64() && details["column"].is_u64());
                }
                other => panic!("{raw}: {other:?}"),
            }
        }
    }

    #[test]
    fn wrong_shapes_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            (r#"{"count":1}"#, "name", "REQUIRED"),
            (r#"{"name":"a","count":"x"}"#, "count", "INVALID_TYPE"),
            (r#"{"name":"a","count":300}"#, "count", "INVALID_TYPE"),
            (
                r#"{"name":"a","count":1,"extra":true}"#,
                "extra",
                "UNKNOWN_FIELD",
            ),
            (
                r#"{"name":"a","count":1,"nested":{}}"#,
                "nested.flag",
                "REQUIRED",
            ),
            (r#""text""#, "body", "INVALID_TYPE"),
        ];
        for (raw, name, code) in cases {
            assert_eq!(
                fields_of(parse_json::<Body>(raw.as_bytes(), Numbers::Exact)),
                field(name, code),
                "{raw}"
            );
        }
    }

    #[test]
    fn integral_floats_are_integers_only_when_asked() {
        let raw = br#"{"name":"a","count":5.0}"#;
        assert_eq!(
            fields_of(parse_json::<Body>(raw, Numbers::Exact)),
            field("count", "INVALID_TYPE")
        );
        assert!(parse_json::<Body>(raw, Numbers::Integral).is_ok());
        assert_eq!(
            fields_of(parse_json::<Body>(
                br#"{"name":"a","count":5.5}"#,
                Numbers::Integral
            )),
            field("count", "INVALID_TYPE")
        );
    }

    #[test]
    fn validation_rules_run_after_the_shape_and_name_every_field() {
        let cases: &[(&str, Vec<(&str, &str)>)] = &[
            (
                r#"{"license_key":1,"ip_address":"1.2.3.4"}"#,
                vec![("license_key", "INVALID_TYPE")],
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
        ];
        for (raw, expected) in cases {
            let expected: Vec<(String, &str)> = expected
                .iter()
                .map(|(f, c)| ((*f).to_owned(), *c))
                .collect();
            assert_eq!(
                fields_of(parse_valid::<ValidateRequest>(
                    raw.as_bytes(),
                    Numbers::Exact
                )),
                expected,
                "{raw}"
            );
        }
        assert!(
            parse_valid::<ValidateRequest>(
                br#"{"license_key":"k","ip_address":"1.2.3.4"}"#,
                Numbers::Exact
            )
            .is_ok()
        );
    }

    #[test]
    fn batch_items_are_counted_and_named_by_index() {
        assert_eq!(
            fields_of(parse_valid::<BatchRequest>(
                br#"{"items":[]}"#,
                Numbers::Exact
            )),
            field("items", "OUT_OF_RANGE")
        );
        let item = r#"{"license_key":"k","ip_address":"1.2.3.4"}"#;
        let many = format!(r#"{{"items":[{}]}}"#, vec![item; 101].join(","));
        assert_eq!(
            fields_of(parse_valid::<BatchRequest>(many.as_bytes(), Numbers::Exact)),
            field("items", "OUT_OF_RANGE")
        );
        assert_eq!(
            fields_of(parse_valid::<BatchRequest>(
                br#"{"items":[{"license_key":"k","ip_address":""}]}"#,
                Numbers::Exact
            )),
            field("items[0].ip_address", "REQUIRED")
        );
        assert_eq!(
            fields_of(parse_valid::<BatchRequest>(
                br#"{"items":[{"license_key":"k"}]}"#,
                Numbers::Exact
            )),
            field("items[0].ip_address", "REQUIRED")
        );
        let one = format!(r#"{{"items":[{item}]}}"#);
        assert!(parse_valid::<BatchRequest>(one.as_bytes(), Numbers::Exact).is_ok());
    }
}
