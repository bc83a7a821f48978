//! Successful answers in the spec's envelope.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use celaest_protocol::{Meta, SuccessEnvelope};
use serde::Serialize;

use super::pagination::PageRequest;

/// `200 OK` with `{"success":true,"data":…}`.
#[derive(Debug)]
pub struct Data<T>(pub T);

/// `201 Created` with `{"success":true,"data":…}`.
#[derive(Debug)]
pub struct Created<T>(pub T);

/// `204 No Content`.
#[derive(Debug)]
pub struct NoContent;

/// `200 OK` with a list in `data` and its pagination in `meta`.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub meta: Meta,
}

impl<T> Page<T> {
    pub fn new(items: Vec<T>, request: PageRequest, total: u64) -> Self {
        Self {
            items,
            meta: Meta::new(request.page, request.per_page, total),
        }
    }
}

impl<T: Serialize> IntoResponse for Data<T> {
    fn into_response(self) -> Response {
        axum::Json(SuccessEnvelope::new(self.0)).into_response()
    }
}

impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        (
            StatusCode::CREATED,
            axum::Json(SuccessEnvelope::new(self.0)),
        )
            .into_response()
    }
}

impl IntoResponse for NoContent {
    fn into_response(self) -> Response {
        StatusCode::NO_CONTENT.into_response()
    }
}

impl<T: Serialize> IntoResponse for Page<T> {
    fn into_response(self) -> Response {
        axum::Json(SuccessEnvelope::paginated(self.items, self.meta)).into_response()
    }
}
