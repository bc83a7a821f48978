//! Central's answers to malformed input at the validation endpoints, reproduced exactly: the
//! rules of `celaest_net::http::json` (415, 413, 400 `MALFORMED_JSON`, 422 with `details.fields`
//! in the caller's language), shared with central; this module turns their rejection into an
//! [`EdgeError`].

use axum::extract::{FromRequest, Request};
use celaest_net::http::json::{JsonRejection, Numbers, read_json};
use celaest_protocol::{ErrorCode, Lang, input::Validate};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::EdgeError;

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
        read_json(req, state, Numbers::Exact)
            .await
            .map(Json)
            .map_err(|rejection| refused(rejection, lang))
    }
}

/// The rejection as an error, field messages rendered in the caller's language.
fn refused(rejection: JsonRejection, lang: Lang) -> EdgeError {
    match rejection {
        JsonRejection::Code(code, details) => EdgeError { code, details },
        JsonRejection::Fields(fields) => EdgeError {
            code: ErrorCode::ValidationFailed,
            details: json!({ "fields": fields.render(lang) }),
        },
    }
}
