//! Request extractors that answer every malformed input with an envelope instead of axum's
//! plain-text rejections: [`Json`] (400 on broken JSON, 415 on a wrong content type, 413 on an
//! oversized body, 422 on wrong types or failed [`Validate`] rules), [`Query`] (422 naming the
//! parameter) and [`Path`] (400 `INVALID_PATH_PARAMETER`).

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{StatusCode, header, request::Parts},
};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{
    codes::ErrorCode,
    error::Error,
    validate::{FieldErrors, Validate},
};
use celaest_protocol::input::{JsonProblem, describe_data_error};

/// A JSON body that deserialized and passed its [`Validate`] rules.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(req.headers().get(header::CONTENT_TYPE)) {
            return Err(Error::api(ErrorCode::UnsupportedMediaType));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::api(ErrorCode::PayloadTooLarge)
            } else {
                Error::api(ErrorCode::BadRequest)
            }
        })?;
        let value: T = parse_json(&bytes)?;
        let mut errors = FieldErrors::new();
        value.validate(&mut errors);
        errors.into_result()?;
        Ok(Self(value))
    }
}

/// An optional JSON body: absent when the request has no `Content-Type` and no body.
impl<S, T> axum::extract::OptionalFromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        let empty = req.headers().get(header::CONTENT_TYPE).is_none()
            && req
                .headers()
                .get(header::CONTENT_LENGTH)
                .is_none_or(|len| len == "0");
        if empty {
            return Ok(None);
        }
        <Self as FromRequest<S>>::from_request(req, state)
            .await
            .map(Some)
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

/// Deserializes JSON, telling broken syntax (400) from well-formed JSON of the wrong shape (422);
/// integral numbers written as floats (`5.0`) count as integers, as the schema says.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    celaest_protocol::input::parse_json_integral(bytes).map_err(|problem| match problem {
        JsonProblem::Malformed { line, column } => Error::with_details(
            ErrorCode::MalformedJson,
            json!({ "line": line, "column": column }),
        ),
        JsonProblem::Fields(fields) => Error::Validation(fields),
    })
}

/// Query-string parameters, with a 422 naming the parameter that did not parse.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.query().unwrap_or_default();
        parse_query(raw).map(Self)
    }
}

/// Parses a query string, reporting the offending parameter.
pub fn parse_query<T: DeserializeOwned>(raw: &str) -> Result<T, Error> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(raw.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        let (field, problem) = describe_data_error(&path, &message);
        Error::Validation(FieldErrors::single(field, problem))
    })
}

/// Path parameters, with a 400 `INVALID_PATH_PARAMETER` when one has the wrong shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|rejection| {
                Error::with_details(
                    ErrorCode::InvalidPathParameter,
                    json!({ "reason": rejection.body_text() }),
                )
            })
    }
}

#[cfg(test)]
mod tests {
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

    fn field_of(err: Error) -> (String, &'static str) {
        match err {
            Error::Validation(fields) => {
                let body = fields.render(celaest_protocol::Lang::En).remove(0);
                (body.field, body.code)
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn broken_syntax_is_malformed_json() {
        for raw in [
            "{",
            "{\"name\": }",
            "not json",
            "{\"name\":\"a\",\"count\":1} trailing",
        ] {
            match parse_json::<Body>(raw.as_bytes()) {
                Err(Error::Api {
                    code: ErrorCode::MalformedJson,
                    ..
                }) => {}
                other => panic!("{raw}: {other:?}"),
            }
        }
    }

    #[test]
    fn wrong_shapes_name_the_field() {
        assert_eq!(
            field_of(parse_json::<Body>(br#"{"count":1}"#).unwrap_err()),
            ("name".into(), "REQUIRED")
        );
        assert_eq!(
            field_of(parse_json::<Body>(br#"{"name":"a","count":"x"}"#).unwrap_err()),
            ("count".into(), "INVALID_TYPE")
        );
        assert_eq!(
            field_of(parse_json::<Body>(br#"{"name":"a","count":300}"#).unwrap_err()),
            ("count".into(), "INVALID_TYPE")
        );
        assert_eq!(
            field_of(parse_json::<Body>(br#"{"name":"a","count":1,"extra":true}"#).unwrap_err()),
            ("extra".into(), "UNKNOWN_FIELD")
        );
        assert_eq!(
            field_of(parse_json::<Body>(br#"{"name":"a","count":1,"nested":{}}"#).unwrap_err()),
            ("nested.flag".into(), "REQUIRED")
        );
        assert_eq!(
            field_of(parse_json::<Body>(br#""text""#).unwrap_err()).0,
            "body"
        );
    }

    #[test]
    fn query_errors_name_the_parameter() {
        #[derive(Debug, Deserialize)]
        #[expect(dead_code, reason = "fields exist to be deserialized")]
        struct Q {
            page: Option<u32>,
        }
        assert!(parse_query::<Q>("page=2").is_ok());
        assert_eq!(
            field_of(parse_query::<Q>("page=two").unwrap_err()),
            ("page".into(), "INVALID_TYPE")
        );
    }
}
