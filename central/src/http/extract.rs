//! Request extractors that answer every malformed input with an envelope instead of axum's
//! plain-text rejections: [`Json`] (400 on broken JSON, 415 on a wrong content type, 413 on an
//! oversized body, 422 on wrong types or failed [`Validate`] rules), [`Query`] (422 naming the
//! parameter) and [`Path`] (400 `INVALID_PATH_PARAMETER`).

use axum::{
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts},
};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{
    codes::ErrorCode,
    error::Error,
    validate::{FieldErrors, Validate},
};
use celaest_net::http::json::{JsonRejection, Numbers, read_json};
use celaest_protocol::input::describe_data_error;

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
        read_json(req, state, Numbers::Integral)
            .await
            .map(Self)
            .map_err(Error::from)
    }
}

/// A refused body as central's error (the rules are shared with the edge).
impl From<JsonRejection> for Error {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::Code(code, details) => Error::with_details(code, details),
            JsonRejection::Fields(fields) => Error::Validation(fields),
        }
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
