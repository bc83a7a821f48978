//! The validation endpoints' request bodies and central's answers to malformed input, reproduced
//! exactly: 415 `UNSUPPORTED_MEDIA_TYPE` without a JSON content type, 413 `PAYLOAD_TOO_LARGE`
//! past the body limit, 400 `MALFORMED_JSON` (with `line` and `column`) for broken syntax, and
//! 422 `VALIDATION_FAILED` with `details.fields` — `[{field, code, message}]` in the caller's
//! language — for wrong types, unknown fields and out-of-range values.
//!
//! Central's versions live in `central/src/http/{extract,validate}.rs` and
//! `central/src/licensing/mod.rs`; the edge cannot depend on central, so the few rules the
//! validation bodies use are written again here, message for message, and the contract tests
//! hold both to the same answers.

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::{StatusCode, header},
};
use celaest_protocol::{ErrorCode, Lang, ValidateRequest};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use super::EdgeError;

/// Most validations one batch request may carry (central's `BATCH_MAX`).
pub const BATCH_MAX: usize = 100;

/// `POST /api/licenses/validate`'s body, as central declares it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateBody {
    pub license_key: String,
    pub ip_address: String,
    pub device_info: Option<String>,
    pub nonce: Option<String>,
}

impl From<ValidateBody> for ValidateRequest {
    fn from(b: ValidateBody) -> Self {
        Self {
            license_key: b.license_key,
            ip_address: b.ip_address,
            device_info: b.device_info,
            nonce: b.nonce,
        }
    }
}

/// `POST /api/licenses/batch-validate`'s body: 1–100 validations.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    pub items: Vec<ValidateBody>,
}

/// Rules beyond the types, checked once a body deserialized.
pub trait Validate {
    fn validate(&self, errors: &mut FieldErrors);
}

impl Validate for ValidateBody {
    fn validate(&self, errors: &mut FieldErrors) {
        validate_request(errors, "", self);
    }
}

impl Validate for BatchBody {
    fn validate(&self, errors: &mut FieldErrors) {
        if self.items.is_empty() || self.items.len() > BATCH_MAX {
            errors.add(
                "items",
                FieldProblem::OutOfRange {
                    min: 1,
                    max: BATCH_MAX,
                },
            );
        }
        for (i, item) in self.items.iter().enumerate() {
            validate_request(errors, &format!("items[{i}]."), item);
        }
    }
}

/// Central's field limits of a validation request.
fn validate_request(errors: &mut FieldErrors, prefix: &str, r: &ValidateBody) {
    errors.text(&format!("{prefix}license_key"), &r.license_key, 1, 64);
    errors.text(&format!("{prefix}ip_address"), &r.ip_address, 1, 64);
    if let Some(device) = &r.device_info {
        errors.text(&format!("{prefix}device_info"), device, 0, 512);
    }
    if let Some(nonce) = &r.nonce {
        errors.text(&format!("{prefix}nonce"), nonce, 1, 256);
    }
}

/// What is wrong with one field (the subset of central's problems these bodies can have).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldProblem {
    Required,
    InvalidType { expected: String },
    Unknown,
    InvalidFormat { expected: &'static str },
    TooShort { min: usize },
    TooLong { max: usize },
    OutOfRange { min: usize, max: usize },
}

impl FieldProblem {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Required => "REQUIRED",
            Self::InvalidType { .. } => "INVALID_TYPE",
            Self::Unknown => "UNKNOWN_FIELD",
            Self::InvalidFormat { .. } => "INVALID_FORMAT",
            Self::TooShort { .. } => "TOO_SHORT",
            Self::TooLong { .. } => "TOO_LONG",
            Self::OutOfRange { .. } => "OUT_OF_RANGE",
        }
    }

    pub fn message(&self, lang: Lang) -> String {
        match (self, lang) {
            (Self::Required, Lang::Es) => "es obligatorio".into(),
            (Self::Required, Lang::En) => "is required".into(),
            (Self::InvalidType { expected }, Lang::Es) => {
                format!("tipo inválido, se esperaba {expected}")
            }
            (Self::InvalidType { expected }, Lang::En) => {
                format!("invalid type, expected {expected}")
            }
            (Self::Unknown, Lang::Es) => "campo no admitido".into(),
            (Self::Unknown, Lang::En) => "field not accepted".into(),
            (Self::InvalidFormat { expected }, Lang::Es) => {
                format!("formato inválido, se esperaba {expected}")
            }
            (Self::InvalidFormat { expected }, Lang::En) => {
                format!("invalid format, expected {expected}")
            }
            (Self::TooShort { min }, Lang::Es) => format!("debe tener al menos {min} caracteres"),
            (Self::TooShort { min }, Lang::En) => format!("must be at least {min} characters long"),
            (Self::TooLong { max }, Lang::Es) => format!("debe tener como máximo {max} caracteres"),
            (Self::TooLong { max }, Lang::En) => format!("must be at most {max} characters long"),
            (Self::OutOfRange { min, max }, Lang::Es) => format!("debe estar entre {min} y {max}"),
            (Self::OutOfRange { min, max }, Lang::En) => format!("must be between {min} and {max}"),
        }
    }
}

/// The problems of one request, the first per field, in the order found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors {
    entries: Vec<(String, FieldProblem)>,
}

/// One offending field in `error.details.fields`.
#[derive(Debug, Serialize)]
pub struct FieldErrorBody {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

impl FieldErrors {
    pub fn add(&mut self, field: impl Into<String>, problem: FieldProblem) {
        let field = field.into();
        if !self.entries.iter().any(|(f, _)| *f == field) {
            self.entries.push((field, problem));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn render(&self, lang: Lang) -> Vec<FieldErrorBody> {
        self.entries
            .iter()
            .map(|(field, problem)| FieldErrorBody {
                field: field.clone(),
                code: problem.code(),
                message: problem.message(lang),
            })
            .collect()
    }

    /// A required text: trimmed length within `min..=max` characters, and no control
    /// characters but tab and line breaks.
    pub fn text(&mut self, field: &str, value: &str, min: usize, max: usize) {
        let len = value.trim().chars().count();
        if value
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            self.add(
                field,
                FieldProblem::InvalidFormat {
                    expected: "text without control characters",
                },
            );
        } else if len == 0 && min > 0 {
            self.add(field, FieldProblem::Required);
        } else if len < min {
            self.add(field, FieldProblem::TooShort { min });
        } else if len > max {
            self.add(field, FieldProblem::TooLong { max });
        }
    }
}

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
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        json_error(&path, &err.into_inner())
    })?;
    // Anything after the value (`{...} trailing`) is broken syntax too.
    de.end().map_err(|e| json_error(".", &e))?;
    Ok(value)
}

fn json_error(path: &str, err: &serde_json::Error) -> InputError {
    match err.classify() {
        serde_json::error::Category::Data => {
            let (field, problem) = describe_data_error(path, &err.to_string());
            let mut errors = FieldErrors::default();
            errors.add(field, problem);
            InputError::Fields(errors)
        }
        _ => InputError::Code(
            ErrorCode::MalformedJson,
            json!({ "line": err.line(), "column": err.column() }),
        ),
    }
}

/// Turns serde's message for a data error into a field path and a problem (as central does).
fn describe_data_error(path: &str, message: &str) -> (String, FieldProblem) {
    let join = |name: &str| {
        if path == "." || path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    let quoted = |m: &str| m.split('`').nth(1).map(str::to_owned);
    if let Some(name) = message.strip_prefix("missing field ").and_then(quoted) {
        return (join(&name), FieldProblem::Required);
    }
    if let Some(name) = message.strip_prefix("unknown field ").and_then(quoted) {
        // The path already ends at the unknown field.
        let at_field = path.rsplit('.').next() == Some(name.as_str());
        let field = if at_field {
            path.to_owned()
        } else {
            join(&name)
        };
        return (field, FieldProblem::Unknown);
    }
    let expected = message
        .split(", expected ")
        .nth(1)
        .map(|e| e.split(" at line ").next().unwrap_or(e).to_owned())
        .unwrap_or_else(|| "a valid value".into());
    let field = if path == "." || path.is_empty() {
        "body".to_owned()
    } else {
        path.to_owned()
    };
    (field, FieldProblem::InvalidType { expected })
}

#[cfg(test)]
mod tests {
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
            match parse_json::<ValidateBody>(raw.as_bytes()) {
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
            let got = fields_of(checked::<ValidateBody>(raw).err().unwrap());
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
            fields_of(checked::<BatchBody>(r#"{"items":[]}"#).err().unwrap()),
            vec![("items".to_owned(), "OUT_OF_RANGE")]
        );
        let item = r#"{"license_key":"k","ip_address":"1.2.3.4"}"#;
        let many = format!(r#"{{"items":[{}]}}"#, vec![item; 101].join(","));
        assert_eq!(
            fields_of(checked::<BatchBody>(&many).err().unwrap()),
            vec![("items".to_owned(), "OUT_OF_RANGE")]
        );
        assert_eq!(
            fields_of(
                checked::<BatchBody>(r#"{"items":[{"license_key":"k","ip_address":""}]}"#)
                    .err()
                    .unwrap()
            ),
            vec![("items[0].ip_address".to_owned(), "REQUIRED")]
        );
        assert_eq!(
            fields_of(
                checked::<BatchBody>(r#"{"items":[{"license_key":"k"}]}"#)
                    .err()
                    .unwrap()
            ),
            vec![("items[0].ip_address".to_owned(), "REQUIRED")]
        );
        assert!(checked::<BatchBody>(&format!(r#"{{"items":[{item}]}}"#)).is_ok());
    }

    #[test]
    fn messages_follow_the_language() {
        let p = FieldProblem::OutOfRange { min: 1, max: 100 };
        assert_eq!(p.message(Lang::Es), "debe estar entre 1 y 100");
        assert_eq!(p.message(Lang::En), "must be between 1 and 100");
    }
}
